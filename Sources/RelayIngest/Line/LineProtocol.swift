// The line protocol: newline-delimited JSON, one call per line, one reply
// line per call, in order, each sent after the call's commit. Any language
// that can open a socket and write a line can use it.
//
// BoundedLineDecoder frames lines without ever buffering more than the
// request limit; LineProtocolHandler keeps replies in call order although
// validation failures answer at once and stored calls answer after a commit.
// The lines of one read go to the pipeline together, at the read's end, and
// are stored in one append: one hand-over to the spool writer and one back
// for all of them, where a client that pipelines sends dozens in one read.
// A line connection reads once per turn of its event loop (`readsPerTurn`),
// so a client that pipelines feeds the writer in steps of at most 64 KiB
// and never holds its loop for long.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import RelayMessage

struct LineTooLongError: Error {
    let limit: Int
}

/// Splits a byte stream into lines (`\n`, an optional `\r` before it is
/// dropped), refusing any line longer than `maxLength`.
struct BoundedLineDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer
    let maxLength: Int
    private var scanned = 0

    init(maxLength: Int) { self.maxLength = maxLength }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        // (memchr: a byte-by-byte search of the buffer's view was 5% of a
        // pipelined call's time on the event loop.)
        let found = buffer.withUnsafeReadableBytes { bytes -> Int? in
            assert(scanned <= bytes.count, "the decoder is handed the bytes it scanned again")
            guard bytes.count > scanned, let base = bytes.baseAddress,
                  let hit = memchr(base + scanned, Int32(UInt8(ascii: "\n")), bytes.count - scanned) else { return nil }
            return base.distance(to: UnsafeRawPointer(hit))
        }
        // The limit is on the line without its CR LF (+ 1: the CR may be there).
        guard let length = found else {
            scanned = buffer.readableBytes
            if scanned > maxLength + 1 { throw LineTooLongError(limit: maxLength) }
            return .needMoreData
        }
        scanned = 0
        let crlf = length > 0 && buffer.getInteger(at: buffer.readerIndex + length - 1, as: UInt8.self) == UInt8(ascii: "\r")
        if length - (crlf ? 1 : 0) > maxLength { throw LineTooLongError(limit: maxLength) }
        var line = buffer.readSlice(length: length)!
        buffer.moveReaderIndex(forwardBy: 1)
        if crlf { line = line.getSlice(at: line.readerIndex, length: line.readableBytes - 1)! }
        context.fireChannelRead(wrapInboundOut(line))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        if buffer.readableBytes > maxLength { throw LineTooLongError(limit: maxLength) }
        if buffer.readableBytes > 0, let rest = buffer.readSlice(length: buffer.readableBytes) {
            scanned = 0
            context.fireChannelRead(wrapInboundOut(rest))  // a last line without its newline
        }
        return .needMoreData
    }
}

/// Calls of one line-protocol connection, answered in order, with
/// backpressure: past `maxPendingBytes` of calls waiting for their commit
/// (or `maxPendingCalls` of them), or while the client does not read its
/// replies (the channel is not writable), the connection is not read (TCP
/// flow control pushes back on the app), so memory does not grow with how
/// fast a client pipelines, nor with how large its calls are.
final class LineProtocolHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Calls in flight (read, not yet answered) past which reading stops,
    /// by bytes (a line's bytes plus `perCallBytes`) or by count, whichever
    /// comes first: about 1,200 typical 600-byte calls, or 70 of the largest.
    static let maxPendingBytes = 1 << 20
    static let maxPendingCalls = 4_096
    /// What a call in flight holds besides its line (its reply, bookkeeping).
    static let perCallBytes = 256
    /// Socket reads per turn of the event loop (NIO's `maxMessagesPerRead`;
    /// HTTP connections keep 16): each read, at most 64 KiB, about a hundred
    /// typical calls, goes to the writer as soon as it is framed, and the
    /// loop's other connections and the replies of finished commits come in
    /// between. With 16 reads a turn, a client that pipelines had up to
    /// 1 MiB parsed in one go (about 9 ms) while the writer waited and every
    /// other connection on that loop did too: a pipelined connection took
    /// 23-28% more calls a second this way (5 alternating pairs), and an
    /// identify sent beside it was answered in 6-7 ms (median) instead of 18-20.
    static let readsPerTurn: UInt = 1

    private let pipeline: IngestPipeline
    private let executors: EventLoopExecutors
    /// Calls answered since the connection opened; a call's index is its
    /// place among the calls read.
    private var answered = 0
    /// Calls read since the connection opened (the answered and those in flight).
    private var received: Int { answered + inFlight.count }
    /// The calls in flight, in call order (the first is call `answered`):
    /// what each counts against `maxPendingBytes`, and its reply once there.
    private var inFlight = CircularBuffer<(bytes: Int, reply: [UInt8]?)>()
    private var pendingBytes = 0
    /// Lines of the current read, not yet handed to the pipeline (the last
    /// calls in flight).
    private var lines: [[UInt8]] = []
    private var closeWhenDone = false
    /// A flush is queued on the loop: the replies of one commit (run as one
    /// loop task) leave in one write, not one system call each.
    private var flushQueued = false
    private var closing = false
    /// A read the pipeline asked for and we held back.
    private var readHeld = false

    init(pipeline: IngestPipeline, executors: EventLoopExecutors) {
        self.pipeline = pipeline
        self.executors = executors
    }

    /// Whether to read on: not once the connection is to close (input ended,
    /// or the relay is stopping), and not past the bounds on calls in flight.
    private func mayRead(_ context: ChannelHandlerContext) -> Bool {
        !closeWhenDone && inFlight.count < Self.maxPendingCalls && pendingBytes < Self.maxPendingBytes
            && context.channel.isWritable
    }

    func read(context: ChannelHandlerContext) {
        if mayRead(context) { context.read() } else { readHeld = true }
    }

    private func resumeReadingIfHeld(_ context: ChannelHandlerContext) {
        if readHeld && mayRead(context) {
            readHeld = false
            context.read()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        resumeReadingIfHeld(context)
        context.fireChannelWritabilityChanged()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let line = unwrapInboundIn(data)
        let bytes = Array(line.readableBytesView)
        if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { return }  // blank line: not a call
        lines.append(bytes)
        let size = bytes.count + Self.perCallBytes
        inFlight.append((size, nil))
        pendingBytes += size
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        handOver(context)
        context.fireChannelReadComplete()
    }

    /// Hands the lines read so far to the pipeline; their replies come back
    /// by call index (refusals at once, the others after their commit).
    private func handOver(_ context: ChannelHandlerContext) {
        guard !lines.isEmpty else { return }
        let first = received - lines.count  // the call index of the first line
        var bodies: [[UInt8]] = []
        swap(&bodies, &lines)
        let loop = context.eventLoop
        let bound = NIOLoopBound((self, context), eventLoop: loop)
        pipeline.handleSingles(bodies, writeKey: nil, on: executors.executor(for: loop)) { replies in
            loop.runOnLoop {
                let (handler, context) = bound.value
                for (index, reply) in replies { handler.answer(first + index, reply.body) }
                handler.flushInOrder(context)
            }
        }
    }

    /// Keeps the reply of call `index` until the calls before it are answered.
    private func answer(_ index: Int, _ reply: [UInt8]) {
        inFlight[inFlight.index(inFlight.startIndex, offsetBy: index - answered)].reply = reply
    }

    /// Writes the replies that are next in call order, each the JSON answer
    /// (failures carry their `"status"`) and a newline. The flush comes once
    /// the loop's current task (a whole commit's completions) is done.
    private func flushInOrder(_ context: ChannelHandlerContext) {
        // The replies next in order, in one buffer (one write, not one each).
        var count = 0, size = 0
        for call in inFlight {
            guard let reply = call.reply else { break }
            count += 1
            size += reply.count + 1
        }
        let wrote = count > 0
        if wrote {
            var buffer = context.channel.allocator.buffer(capacity: size)
            for _ in 0..<count {
                let call = inFlight.removeFirst()
                buffer.writeBytes(call.reply!)
                buffer.writeInteger(UInt8(ascii: "\n"))
                answered += 1
                pendingBytes -= call.bytes
            }
            context.write(wrapOutboundOut(buffer), promise: nil)
        }
        if closeWhenDone && inFlight.isEmpty {
            if closing { context.flush() } else { closeAfterReplies(context) }  // (closing: its flush has passed)
            return
        }
        if wrote && !flushQueued {
            flushQueued = true
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            context.eventLoop.execute {
                let (handler, context) = bound.value
                handler.flushQueued = false
                context.flush()
            }
        }
        resumeReadingIfHeld(context)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent || (event as? ChannelEvent) == .inputClosed {
            handOver(context)  // the last lines, framed at the end of input
            closeWhenDone = true
            if inFlight.isEmpty { closeAfterReplies(context) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// Closes once every reply written so far has reached the socket (NIO's
    /// close drops writes still pending, flushed or not): an empty write
    /// after them completes when they are written. A client that never reads
    /// them is left to the idle timeout.
    private func closeAfterReplies(_ context: ChannelHandlerContext) {
        guard !closing else { return }
        closing = true
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0)), promise: promise)
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        promise.futureResult.whenComplete { _ in bound.value.close(promise: nil) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        handOver(context)  // the lines before the error are answered first
        if let tooLong = error as? LineTooLongError {
            let reply = IngestReply.failure(413, ["line is longer than \(tooLong.limit) bytes"])
            inFlight.append((0, reply.body))
            closeWhenDone = true
            flushInOrder(context)
        } else if closeWhenDone, case .dataReceivedInErrorState? = error as? ByteToMessageDecoderError {
            return  // the rest of the over-long line: dropped, the 413 is on its way
        } else {
            closeAfterReplies(context)
        }
    }
}
