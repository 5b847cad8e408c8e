// The line protocol's bound on calls in flight, by bytes: over a store
// whose commits wait (a stalled disk), a connection sending large calls
// stops being read after about a megabyte of them, not after a count of
// calls that could hold many megabytes, and is read again once they are
// answered, every reply in call order.

import Foundation
import NIOCore
import NIOEmbedded
import Testing
@testable import RelayIngest
import RelayMessage
import RelaySpool

@Suite struct LineBackpressureTests {
    /// Counts the reads that reach the socket (the handler holds back the others).
    final class ReadCounter: ChannelOutboundHandler, @unchecked Sendable {
        typealias OutboundIn = Any
        var reads = 0
        func read(context: ChannelHandlerContext) {
            reads += 1
            context.read()
        }
    }

    @Test func largeCallsStopTheReadingAfterAMegabyteInFlightAndAreAnsweredInOrder() throws {
        let store = PendingBoundTests.StalledStore()
        var options = IngestOptions()
        options.relayHasWriteKey = true
        let pipeline = IngestPipeline(options: options, store: store)
        let loop = EmbeddedEventLoop()
        let counter = ReadCounter()
        let channel = EmbeddedChannel(loop: loop)
        try channel.pipeline.syncOperations.addHandlers([
            counter,
            ByteToMessageHandler(BoundedLineDecoder(maxLength: options.maxRequestBytes)),
            LineProtocolHandler(pipeline: pipeline, executors: EventLoopExecutors(loop)),
        ])
        channel.read()
        #expect(counter.reads == 1)

        // 100 calls of about 12 KB: 1.2 MB, far fewer than the count bound.
        // One read (writeInbound: a read, then its end).
        let bio = String(repeating: "b", count: 12_000)
        let lines = (0..<100).map { #"{"type":"identify","userId":"u\#($0)","messageId":"big-\#($0)","traits":{"bio":"\#(bio)"}}"# + "\n" }
        try channel.writeInbound(channel.allocator.buffer(string: lines.joined()))
        #expect(store.waiting == 1, "the lines of one read go to the store together")
        channel.read()
        #expect(counter.reads == 1, "past a megabyte in flight the connection is not read")

        store.commitAll()
        loop.run()
        #expect(counter.reads == 2, "answered, the connection is read again")
        var replies: [String] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
            replies += String(buffer: buffer).split(separator: "\n").map(String.init)
        }
        #expect(replies.count == 100)
        #expect(replies.enumerated().allSatisfy { $0.element.contains(#""message_id":"big-\#($0.offset)""#) }, "in call order")
        _ = try? channel.finish()
    }
}
