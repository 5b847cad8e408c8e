// HTTPIngestHandler: HTTP/1.1 routes on top of NIOHTTP1's server pipeline
// (which keeps pipelined requests in order and answers malformed ones).
//
// Owns: reading one request body within the size limit, routing it, and
// writing the answer once the pipeline has it. The body is checked against
// the limit while it arrives, never buffered past it.

import CompressNIO
import NIOCore
import NIOHTTP1
import RelayMessage
import RelaySpool

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What the operator endpoints show; supplied by the composition root.
public struct OperatorEndpoints: Sendable {
    /// `GET /v1/status` body (JSON).
    public var status: @Sendable () -> [UInt8]
    /// `GET /metrics` body (Prometheus text format).
    public var metrics: @Sendable () -> [UInt8]
    /// Spaces the answers of each endpoint (shared by every connection).
    let pace = OperatorPace()

    public init(status: @escaping @Sendable () -> [UInt8], metrics: @escaping @Sendable () -> [UInt8]) {
        self.status = status
        self.metrics = metrics
    }
}

final class HTTPIngestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let pipeline: IngestPipeline
    private let endpoints: OperatorEndpoints
    private let executors: EventLoopExecutors
    private let maxBody: Int
    /// How long the client may take to send a request (started by `RequestStartWatcher`).
    private let deadline: RequestDeadline
    /// A request's head has come and its end not yet (a pipelined request is
    /// delivered only once the previous answer is written).
    private var requestOpen = false
    private var head: HTTPRequestHead?
    /// The body so far; its size is what it counts against the listener's
    /// receiving budget, until `takeBody()` hands it on or drops it.
    private var body: ByteBuffer?
    /// An early answer (413, or 503 past the receiving budget) was sent; the rest of this request is read, discarded and the connection closes.
    private var answeredEarly = false
    private var discarded = 0
    /// Requests read to their end and not yet answered.
    private var unanswered = 0
    /// The client closed its side (half-close): close ours once every request is answered.
    private var inputClosed = false
    /// After an early answer, at most this much more of the request is read (and this long) before closing.
    static let maxDiscardBytes = 8 << 20
    static let maxDiscardTime = TimeAmount.seconds(5)
    /// Gzip members a body may have (RFC 1952 allows several; clients send one).
    static let maxGzipMembers = 64

    /// The connection came in on the Unix socket (its own receiving budget).
    private let overUnixSocket: Bool

    init(pipeline: IngestPipeline, endpoints: OperatorEndpoints, executors: EventLoopExecutors, deadline: RequestDeadline, overUnixSocket: Bool) {
        self.deadline = deadline
        self.overUnixSocket = overUnixSocket
        self.pipeline = pipeline
        self.endpoints = endpoints
        self.executors = executors
        self.maxBody = pipeline.options.maxRequestBytes
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            requestOpen = true
            head = h
            body = nil  // the first chunk is kept as it comes; only a second one is appended
            let declared = h.headers.first(name: "content-length").flatMap(Int.init) ?? 0
            if declared > maxBody {
                refuseTooLarge(context, "request body is \(declared) bytes; the limit is \(maxBody)", alreadyRead: 0)
            } else {
                if h.version.major == 1 && h.version.minor >= 1,
                   h.headers[canonicalForm: "expect"].contains(where: { $0.lowercased() == "100-continue" }) {
                    // Many clients wait (curl: one second) for this before they send the body.
                    context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: h.version, status: .continue))), promise: nil)
                }
            }
        case .body(var chunk):
            if answeredEarly {
                discarded += chunk.readableBytes
                if discarded > Self.maxDiscardBytes { context.close(promise: nil) }
                return
            }
            let received = (body?.readableBytes ?? 0) + chunk.readableBytes
            if received > maxBody {
                // No declared length (chunked) and the limit crossed.
                refuseTooLarge(context, "request body is larger than \(maxBody) bytes", alreadyRead: chunk.readableBytes)
            } else if !pipeline.reserveReceiving(chunk.readableBytes, unix: overUnixSocket) {
                answerEarly(context, pipeline.receivingBusy(), alreadyRead: chunk.readableBytes)
            } else if body == nil {
                body = chunk  // counted as it arrives: a declared length holds nothing yet
            } else {
                body!.writeBuffer(&chunk)
            }
        case .end:
            requestOpen = false
            deadline.requestComplete()  // the rest is the relay's time
            if answeredEarly {
                context.close(promise: nil)  // all of it read: the client has had its answer
                return
            }
            guard let head else { return }
            self.head = nil
            let buffer = takeBody()  // from here on the pipeline's pending budget counts it
            unanswered += 1
            route(context: context, head: head, body: buffer)
        }
    }

    /// The client closed its side. The listener allows half-closed
    /// connections (for the line protocol), so HTTP closes its side itself:
    /// now when nothing is left to answer, else after the last answer.
    /// Otherwise every client that closes first would hold a connection
    /// until the idle timeout and count against `max_connections`.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if (event as? ChannelEvent) == .inputClosed {
            inputClosed = true
            if unanswered == 0 && !answeredEarly { context.close(promise: nil) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// The request body as the pipeline needs it: decompressed when the app
    /// sent `Content-Encoding: gzip`, never past `maxBody` bytes (checked
    /// while inflating, so a small bomb cannot expand in memory).
    private enum DecodedBody { case bytes([UInt8]), refuse(IngestReply) }

    private func decodedBody(_ head: HTTPRequestHead, _ buffer: ByteBuffer?) -> DecodedBody {
        guard var buffer else { return .bytes([]) }
        switch head.headers.first(name: "content-encoding")?.lowercased() {
        case nil, "identity":
            return .bytes(Array(buffer.readableBytesView))
        case "gzip", "x-gzip":
            // Every member (RFC 1952 allows several) to its checked end, and nothing after the
            // last: a byte past the body tells a stream that ended from one cut short.
            buffer.writeInteger(UInt8(0))
            var inflated: [UInt8] = []
            var members = 0
            repeat {
                members += 1
                // Each member is a decompressor of its own: a body of thousands of empty ones is not a request.
                if members > Self.maxGzipMembers { return .refuse(.failure(400, ["request body has more than \(Self.maxGzipMembers) gzip members"])) }
                do {
                    let member = try buffer.decompress(with: .gzip(), maxSize: maxBody - inflated.count + 1)
                    inflated += member.readableBytesView
                } catch let error as CompressNIOError where error == .bufferOverflow {
                    return .refuse(.failure(413, ["request body is larger than \(maxBody) bytes once decompressed"]))
                } catch {
                    let why = (error as? CompressNIOError) == .corruptData ? "the data is corrupt" : "it cannot be inflated"
                    return .refuse(.failure(400, ["request body is not valid gzip: \(why); send the body gzip-compressed whole, or without Content-Encoding"]))
                }
                if inflated.count > maxBody { return .refuse(.failure(413, ["request body is larger than \(maxBody) bytes once decompressed"])) }
                if buffer.readableBytes == 0 { return .refuse(.failure(400, ["request body is not valid gzip: the stream is cut short; send the body gzip-compressed whole"])) }
            } while buffer.readableBytes > 1 && buffer.readableBytesView.starts(with: [0x1f, 0x8b])
            if buffer.readableBytes > 1 { return .refuse(.failure(400, ["request body is not valid gzip: \(buffer.readableBytes - 1) bytes after the end of the stream"])) }
            return .bytes(inflated)
        case let other?:
            return .refuse(.failure(415, ["unsupported Content-Encoding: \(other); send gzip or no encoding"]))
        }
    }

    private func route(context: ChannelHandlerContext, head: HTTPRequestHead, body buffer: ByteBuffer?) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        switch (head.method, path) {
        case (.GET, "/healthz"):
            answerOperator(context, .healthz, keepAlive: head.isKeepAlive)
        case (.GET, "/v1/status"):
            answerOperator(context, .status, keepAlive: head.isKeepAlive)
        case (.GET, "/metrics"):
            answerOperator(context, .metrics, keepAlive: head.isKeepAlive)
        case (.POST, _):
            guard let route = Self.ingestRoute(path) else {
                respond(context, IngestReply.failure(404, ["no such endpoint: \(path)"]), keepAlive: head.isKeepAlive)
                return
            }
            let body: [UInt8]
            switch decodedBody(head, buffer) {
            case .bytes(let b): body = b
            case .refuse(let reply):
                respond(context, reply, keepAlive: head.isKeepAlive && reply.status != 413)
                return
            }
            // The answer comes at once (a refusal) or after the commit, with the
            // commit's other answers for this loop, in one hop.
            let loop = context.eventLoop
            let bound = NIOLoopBound((self, context), eventLoop: loop)
            let keepAlive = head.isKeepAlive
            pipeline.handle(route, body: body, writeKey: Self.basicAuthUser(head.headers), on: executors.executor(for: loop)) { reply in
                loop.runOnLoop {
                    let (handler, context) = bound.value
                    handler.respond(context, reply, keepAlive: keepAlive)
                }
            }
        default:
            let known = ["/healthz", "/v1/status", "/metrics"].contains(path) || Self.ingestRoute(path) != nil
            respond(context, IngestReply.failure(known ? 405 : 404, [known ? "method \(head.method.rawValue) not allowed on \(path)" : "no such endpoint: \(path)"]), keepAlive: head.isKeepAlive)
        }
    }

    /// Answers an operator endpoint at its pace: now, after a short wait
    /// (the body is built when it goes), or `429` when too many wait already.
    private func answerOperator(_ context: ChannelHandlerContext, _ endpoint: OperatorPace.Endpoint, keepAlive: Bool) {
        switch endpoints.pace.admit(endpoint, nowNanos: NIODeadline.now().uptimeNanoseconds) {
        case .now:
            respondOperator(context, endpoint, keepAlive: keepAlive)
        case .after(let nanos):
            context.eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(Int64(nanos))) { [self] in
                guard context.channel.isActive else { return }
                respondOperator(context, endpoint, keepAlive: keepAlive)
            }
        case .refuse:
            let error = "\(Self.operatorPath(endpoint)) is answered at most \(OperatorPace.perSecond) times a second and too many requests wait; ask again after Retry-After"
            respond(context, IngestReply.failure(429, [error], retryAfter: 1), keepAlive: keepAlive)
        }
    }

    private func respondOperator(_ context: ChannelHandlerContext, _ endpoint: OperatorPace.Endpoint, keepAlive: Bool) {
        switch endpoint {
        case .healthz:
            respond(context, IngestReply(status: 200, body: Array(#"{"ok":true}"#.utf8)), keepAlive: keepAlive)
        case .status:
            respond(context, IngestReply(status: 200, body: endpoints.status()), keepAlive: keepAlive)
        case .metrics:
            respond(context, IngestReply(status: 200, body: endpoints.metrics()), keepAlive: keepAlive, contentType: "text/plain; version=0.0.4")
        }
    }

    static func operatorPath(_ endpoint: OperatorPace.Endpoint) -> String {
        switch endpoint {
        case .healthz: "/healthz"
        case .status: "/v1/status"
        case .metrics: "/metrics"
        }
    }

    /// A body over the limit: answer `413` now rather than after a body we
    /// will not keep, then read and discard the rest (bounded), so the client
    /// reads the answer instead of a connection reset.
    private func refuseTooLarge(_ context: ChannelHandlerContext, _ error: String, alreadyRead: Int) {
        answerEarly(context, IngestReply.failure(413, [error]), alreadyRead: alreadyRead)
    }

    /// Answers before the request's end, then reads and discards the rest.
    private func answerEarly(_ context: ChannelHandlerContext, _ reply: IngestReply, alreadyRead: Int) {
        head = nil
        _ = takeBody()
        answeredEarly = true
        discarded = alreadyRead
        respond(context, reply, keepAlive: false, drainRequest: true)
    }

    /// The body, no longer counted against the receiving budget.
    private func takeBody() -> ByteBuffer? {
        defer { body = nil }
        pipeline.releaseReceiving(body?.readableBytes ?? 0, unix: overUnixSocket)
        return body
    }

    /// A connection closed in the middle of a body gives its budget back.
    func handlerRemoved(context: ChannelHandlerContext) {
        _ = takeBody()
    }

    static func ingestRoute(_ path: String) -> IngestRoute? {
        switch path {
        case "/v1/batch": return .batch(priority: .live)
        case "/v1/import": return .batch(priority: .bulk)
        default:
            guard path.hasPrefix("/v1/"), let type = CallType(rawValue: String(path.dropFirst(4))) else { return nil }
            return .single(type)
        }
    }

    /// The user name of `Authorization: Basic ...` (the write key), if any.
    static func basicAuthUser(_ headers: HTTPHeaders) -> String? {
        guard let value = headers.first(name: "authorization") else { return nil }
        let parts = value.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "basic",
              let data = Data(base64Encoded: String(parts[1].filter { $0 != " " && $0 != "\t" })) else { return nil }
        let decoded = String(decoding: data, as: UTF8.self)
        let user = decoded.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        return user.isEmpty ? nil : user
    }

    /// Writes the answer. Without keep-alive the connection then closes; with
    /// `drainRequest` (an answer before the request's end) only our side
    /// closes, and the rest of the request is read and discarded, bounded in
    /// bytes and time, so the client reads the answer rather than a reset.
    private func respond(_ context: ChannelHandlerContext, _ reply: IngestReply, keepAlive: Bool, drainRequest: Bool = false,
                         contentType: String = "application/json") {
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: contentType)
        headers.add(name: "content-length", value: String(reply.body.count))
        if let retry = reply.retryAfterSeconds { headers.add(name: "retry-after", value: String(retry)) }
        if !keepAlive { headers.add(name: "connection", value: "close") }
        let head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: reply.status), headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        var buffer = context.channel.allocator.buffer(capacity: reply.body.count)
        buffer.writeBytes(reply.body)
        context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        if !drainRequest { unanswered -= 1 }
        // The next request starts its own clock; an answer before the request's
        // end ends the deadline for good (the drain bounds the rest).
        if requestOpen { deadline.answeredEarly() } else { deadline.answered() }
        guard drainRequest || !keepAlive || (inputClosed && unanswered == 0) else {
            // The common case: nothing waits for this write (no promise to make and fulfil).
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            return
        }
        let done = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: done)
        if drainRequest {
            done.futureResult.assumeIsolated().whenComplete { _ in
                context.close(mode: .output, promise: nil)
                context.eventLoop.assumeIsolated().scheduleTask(in: Self.maxDiscardTime) { context.close(promise: nil) }
            }
        } else {
            done.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }
}
