// A real HTTP upstream on 127.0.0.1 for the end-to-end tests: it records
// every request (path, auth, headers, parsed body) and answers with the
// next scripted status, then with the default one.

import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

final class TestUpstream: @unchecked Sendable {
    struct Request: Sendable {
        let path: String
        let headers: [String: String]
        let body: Data
        let receivedAt: Date
        /// The write key from Basic auth.
        var writeKey: String? {
            guard let auth = headers["authorization"], auth.lowercased().hasPrefix("basic "),
                  let data = Data(base64Encoded: String(auth.dropFirst(6))) else { return nil }
            return String(decoding: data, as: UTF8.self).split(separator: ":", omittingEmptySubsequences: false).first.map(String.init)
        }
        /// The body as sent, un-gzipped when it came compressed.
        var plainBody: Data { headers["content-encoding"] == "gzip" ? ((try? gunzip(body)) ?? Data()) : body }
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: plainBody)) as? [String: Any] ?? [:] }
        var batch: [[String: Any]] { json["batch"] as? [[String: Any]] ?? [] }
    }

    /// What to answer: a status and extra headers; `hang` never answers.
    struct Answer: Sendable {
        var status: Int
        var headers: [(String, String)] = []
        var hang = false
        /// Answer this much later (the request counts as in flight meanwhile).
        var delayMillis: Int64 = 0
        /// The response body (not necessarily JSON).
        var body = "{}"
        /// Close the connection in the middle of the body (a truncated answer).
        var dropMidBody = false
        static func status(_ s: Int) -> Answer { Answer(status: s) }
    }

    private let lock = NIOLock()
    private var inFlight = 0
    /// The most requests the upstream was answering at the same time.
    private(set) var maxConcurrent = 0
    fileprivate func begin() { lock.withLock { inFlight += 1; maxConcurrent = max(maxConcurrent, inFlight) } }
    fileprivate func end() { lock.withLock { inFlight -= 1 } }
    var peakConcurrency: Int { lock.withLock { maxConcurrent } }
    private var _requests: [Request] = []
    private var script: [Answer]
    private var defaultAnswer: Answer
    /// Per-message decision: when it returns a status, a batch holding such a message gets it.
    private var refuse: (@Sendable ([String: Any]) -> Int?)?
    /// When set, any other write key gets 401.
    private var requiredKey: String?
    private let group: MultiThreadedEventLoopGroup
    private var channel: Channel?
    let port: Int

    /// Starts listening on 127.0.0.1 (`port` 0 picks a free one).
    init(port: Int = 0, script: [Answer] = [], defaultAnswer: Answer = .status(200)) throws {
        self.script = script
        self.defaultAnswer = defaultAnswer
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let box = Box()
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { ch in
                ch.eventLoop.makeCompletedFuture {
                    try ch.pipeline.syncOperations.configureHTTPServerPipeline()
                    try ch.pipeline.syncOperations.addHandler(Handler(upstream: { box.upstream }))
                }
            }
        let ch = try bootstrap.bind(host: "127.0.0.1", port: port).wait()
        channel = ch
        self.port = ch.localAddress!.port!
        box.upstream = self
    }

    /// Lets the handlers reach the upstream once it is fully initialized.
    private final class Box: @unchecked Sendable { var upstream: TestUpstream? }

    var url: String { "http://127.0.0.1:\(port)" }

    var requests: [Request] { lock.withLock { _requests } }

    /// Every message received in a 2xx-answered request, in arrival order.
    var delivered: [[String: Any]] { lock.withLock { accepted } }
    private var accepted: [[String: Any]] = []

    func setScript(_ answers: [Answer], default d: Answer? = nil) {
        lock.withLock { script = answers; if let d { defaultAnswer = d } }
    }

    func requireWriteKey(_ key: String?) { lock.withLock { requiredKey = key } }

    func refuseMessages(where decide: @escaping @Sendable ([String: Any]) -> Int?) {
        lock.withLock { refuse = decide }
    }

    func stop() {
        try? channel?.close().wait()
        try? group.syncShutdownGracefully()
    }

    fileprivate func answer(_ r: Request) -> Answer {
        lock.withLock {
            _requests.append(r)
            var a = script.isEmpty ? defaultAnswer : script.removeFirst()
            if let requiredKey, r.writeKey != requiredKey { a = .status(401) }
            if a.status / 100 == 2, let refuse, let refused = r.batch.lazy.compactMap(refuse).first {
                a = .status(refused)
            }
            if a.status / 100 == 2 && !a.hang && !a.dropMidBody { accepted += r.batch }
            return a
        }
    }

    private final class Handler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        /// nil for a request that arrives between the bind and the end of
        /// init (a relay of an earlier test retrying to a reused port).
        let upstream: () -> TestUpstream?
        var head: HTTPRequestHead?
        var body = Data()
        init(upstream: @escaping () -> TestUpstream?) { self.upstream = upstream }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let h): head = h; body = Data()
            case .body(let b): body.append(contentsOf: b.readableBytesView)
            case .end:
                guard let head else { return }
                var headers: [String: String] = [:]
                for (k, v) in head.headers { headers[k.lowercased()] = v }
                guard let up = upstream() else { context.close(promise: nil); return }
                up.begin()
                let a = up.answer(Request(path: head.uri, headers: headers, body: body, receivedAt: Date()))
                if a.hang { return }
                if a.delayMillis > 0 {
                    let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                    context.eventLoop.scheduleTask(in: .milliseconds(a.delayMillis)) {
                        let (handler, ctx) = loopBound.value
                        handler.respond(ctx, a)
                        up.end()
                    }
                    return
                }
                respond(context, a)
                up.end()
            }
        }

        func respond(_ context: ChannelHandlerContext, _ a: Answer) {
                let length = a.body.utf8.count + (a.dropMidBody ? 100 : 0)
                var h = HTTPHeaders([("content-type", "application/json"), ("content-length", String(length))])
                for (k, v) in a.headers { h.add(name: k, value: v) }
                context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .init(statusCode: a.status), headers: h))), promise: nil)
                var buf = context.channel.allocator.buffer(capacity: a.body.utf8.count)
                buf.writeString(a.body)
                if a.dropMidBody {
                    context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(buf)))).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
                    return
                }
                context.write(wrapOutboundOut(.body(.byteBuffer(buf))), promise: nil)
                context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}

/// Runs the system's gzip (independent of the relay's code) over `data`.
func systemGzip(_ args: [String], _ data: Data) throws -> Data {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/gzip")
    p.arguments = args
    let input = Pipe(), output = Pipe()
    p.standardInput = input
    p.standardOutput = output
    try p.run()
    let writer = Thread { input.fileHandleForWriting.write(data); try? input.fileHandleForWriting.close() }
    writer.start()
    let out = output.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return out
}

func gzip(_ data: Data) throws -> Data { try systemGzip(["-c"], data) }
func gunzip(_ data: Data) throws -> Data { try systemGzip(["-dc"], data) }

/// A free TCP port on 127.0.0.1, for an upstream the test starts later.
/// Chosen below the kernel's ephemeral range (32768-60999), so that nothing
/// else in the test run that binds port 0 can take it meanwhile.
func freePort() throws -> Int {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    defer { try? group.syncShutdownGracefully() }
    for _ in 0..<50 {
        let candidate = Int.random(in: 20_000..<32_000)
        if let ch = try? ServerBootstrap(group: group).bind(host: "127.0.0.1", port: candidate).wait() {
            try ch.close().wait()
            return candidate
        }
    }
    throw SocketError(description: "no free port found below the ephemeral range")
}
