// ProtocolSniffer: picks the protocol of a connection from its first byte.
// `{` starts the line protocol (where it is allowed on this listener);
// anything else is HTTP/1.1. The sniffer then installs that pipeline after
// itself, hands it the bytes it saw, and leaves. A connection that has sent
// nothing yet holds nothing: a shutdown closes it at once. One that keeps
// sending white space only is closed at its first byte past the request
// timeout (silent, it meets the idle timeout).

import NIOCore
import NIOHTTP1

final class ProtocolSniffer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let pipeline: IngestPipeline
    private let endpoints: OperatorEndpoints
    private let executors: EventLoopExecutors
    private let allowLineProtocol: Bool
    private let overUnixSocket: Bool
    private let head: ConnectionHead
    private let openedAt = NIODeadline.now()

    init(pipeline: IngestPipeline, endpoints: OperatorEndpoints, executors: EventLoopExecutors, allowLineProtocol: Bool,
         overUnixSocket: Bool, head: ConnectionHead) {
        self.head = head
        self.overUnixSocket = overUnixSocket
        self.pipeline = pipeline
        self.endpoints = endpoints
        self.executors = executors
        self.allowLineProtocol = allowLineProtocol
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        let isSpace: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }
        guard let first = buffer.readableBytesView.first(where: { !isSpace($0) }) else {
            // Only white space so far: wait for the first real byte, but not
            // longer than a request may take (each byte restarts the idle timer).
            if NIODeadline.now() - openedAt > .seconds(pipeline.options.requestTimeoutSeconds) { context.close(promise: nil) }
            return
        }
        do {
            let ops = context.pipeline.syncOperations
            if first == UInt8(ascii: "{") && allowLineProtocol {
                try ops.addHandler(ByteToMessageHandler(BoundedLineDecoder(maxLength: pipeline.options.maxRequestBytes)), position: .after(self))
                try ops.addHandler(LineProtocolHandler(pipeline: pipeline, executors: executors), position: .last)
                try context.channel.syncOptions?.setOption(.maxMessagesPerRead, value: LineProtocolHandler.readsPerTurn)
            } else {
                let deadline = RequestDeadline(timeout: .seconds(pipeline.options.requestTimeoutSeconds))
                head.speaksHTTP(deadline)  // (the read-ahead below asks through its read gate too)
                let start = RequestStartWatcher(deadline)
                try ops.addHandler(start, position: .after(self))
                // No check of outbound header names and values: the relay writes
                // only its own (fixed names, numbers), never a client's text.
                try ops.configureHTTPServerPipeline(position: .after(start), withPipeliningAssistance: true, withErrorHandling: true,
                                                    withOutboundHeaderValidation: false)
                try ops.addHandler(HTTPIngestHandler(pipeline: pipeline, endpoints: endpoints, executors: executors, deadline: deadline,
                                                     overUnixSocket: overUnixSocket), position: .last)
            }
        } catch {
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(data)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // The client closed its side before sending anything, or the relay is
        // stopping: nothing to answer.
        if (event as? ChannelEvent) == .inputClosed || event is ChannelShouldQuiesceEvent {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}
