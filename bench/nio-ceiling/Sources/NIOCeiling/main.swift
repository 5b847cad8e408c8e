// NIOCeiling PORT: HTTP/1.1 on 127.0.0.1:PORT, keep-alive, every request's
// body is read to its end and answered 200 {"ok":true} (the relay's reply
// size class). One event loop per core.
import NIOCore
import NIOHTTP1
import NIOPosix

final class FixedReply: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    private var keepAlive = true
    private var bodyBytes = 0
    private static let body = #"{"ok":true,"message_id":"00000000-0000-0000-0000-000000000000"}"#

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            keepAlive = head.isKeepAlive
            bodyBytes = 0
        case .body(let buf):
            bodyBytes += buf.readableBytes
        case .end:
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "application/json")
            headers.add(name: "Content-Length", value: String(Self.body.utf8.count))
            if !keepAlive { headers.add(name: "Connection", value: "close") }
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            var out = context.channel.allocator.buffer(capacity: Self.body.utf8.count)
            out.writeString(Self.body)
            context.write(wrapOutboundOut(.body(.byteBuffer(out))), promise: nil)
            let keep = keepAlive
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
                if !keep { context.close(promise: nil) }
            }
        }
    }
}

let port = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 18890 : 18890
let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
let bootstrap = ServerBootstrap(group: group)
    .serverChannelOption(ChannelOptions.backlog, value: 256)
    .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
    .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
    .childChannelInitializer { channel in
        channel.pipeline.configureHTTPServerPipeline(withErrorHandling: true).flatMap {
            channel.pipeline.addHandler(FixedReply())
        }
    }
let channel = try bootstrap.bind(host: "127.0.0.1", port: port).wait()
print("nio-ceiling listening on 127.0.0.1:\(port)")
try channel.closeFuture.wait()
