// RequestDeadline: how long a client may take to send one HTTP request.
//
// The idle timeout closes silent connections, but a client that sends a
// byte every few seconds (a slow-loris, or a broken app) never goes silent
// and would hold its connection, and a slot under max_connections, for
// ever. The deadline starts with the first byte of a request and ends when
// the request is complete (headers and body); past it the client gets
// `408` and the connection closes. Time spent waiting for the commit and
// writing the answer never counts, and neither does a keep-alive
// connection idling between requests (the idle timeout covers that). An
// answer sent before the request's end (the early `413` for a body over the
// limit) ends the deadline for good: the handler's own drain bounds what is
// left, and a `408` after that answer would only reset the connection before
// the client has read it.
//
// Two handlers share one RequestDeadline: the start watcher sits before the
// HTTP decoder and sees the first raw bytes; the HTTP handler sees the
// request's end and writes the answer's end. Neither schedules
// anything: the connection's first handler (`ConnectionHead`) asks the deadline
// when to look again and whether it has run out. All on the channel's loop.

import NIOCore
import NIOHTTP1

/// The state of the current request on one connection (loop-confined).
final class RequestDeadline {
    enum State { case idle, reading, answering, answeredEarly }
    private(set) var state = State.idle
    private var startedAt = NIODeadline.distantPast
    let timeout: TimeAmount

    init(timeout: TimeAmount) { self.timeout = timeout }

    /// A request's first bytes: start the clock (once per request).
    func requestStarted() {
        guard state == .idle else { return }
        state = .reading
        startedAt = .now()
    }

    /// The whole request has arrived: the rest is the relay's time.
    func requestComplete() {
        guard state != .answeredEarly else { return }
        state = .answering
    }

    /// The answer is written: the next request starts its own clock.
    func answered() {
        if state == .answering { state = .idle }
    }

    /// An answer before the request's end: the connection closes after a
    /// bounded drain, so no clock runs on it again.
    func answeredEarly() {
        state = .answeredEarly
    }

    /// When the clock must look again: the current request's deadline, or,
    /// between requests, one timeout from now (a request starting later ends
    /// its time after that).
    func nextCheck(now: NIODeadline) -> NIODeadline {
        switch state {
        case .reading: startedAt + timeout
        case .idle, .answering: now + timeout
        case .answeredEarly: .distantFuture
        }
    }

    /// The request being read has taken longer than the timeout.
    func hasRunOut(now: NIODeadline) -> Bool {
        state == .reading && now >= startedAt + timeout
    }

    /// Answers `408` (raw bytes from the connection's first handler: the
    /// request never reached the HTTP handlers whole) and closes.
    func refuse(_ context: ChannelHandlerContext) {
        state = .answeredEarly
        let seconds = timeout.nanoseconds / 1_000_000_000
        let body = String(decoding: IngestReply.failure(408, ["the request was not complete within \(seconds) s (listen.request_timeout_seconds)"]).body, as: UTF8.self)
        let head = "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: \(body.utf8.count)\r\nconnection: close\r\n\r\n"
        let buffer = context.channel.allocator.buffer(string: head + body)
        context.writeAndFlush(NIOAny(buffer)).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }
}

/// Before the HTTP decoder: starts the deadline on a request's first
/// bytes, and keeps the socket's read interest while a request is answered.
///
/// NIO's pipelining handler holds back the channel's next read while an
/// answer is pending (so a client that pipelines is not read without
/// bound), and NIO then takes the socket out of the poll set and puts it
/// back once the answer is written: two `epoll_ctl` calls a request, 5% of
/// the event loop's CPU at 32 clients, since every answer of ours waits for
/// a commit. A client that waits for its answer sends nothing meanwhile, so
/// this handler asks for the next read itself when the request is being
/// answered and no bytes came during the answer; once a client pipelines,
/// it stops asking and the pipelining handler's hold applies, one more read
/// (at most `maxMessagesPerRead` buffers) later than without it.
final class RequestStartWatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    let deadline: RequestDeadline
    /// Bytes arrived while a request was being answered (the client pipelines).
    private var readWhileAnswering = false
    init(_ deadline: RequestDeadline) { self.deadline = deadline }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if deadline.state != .idle && deadline.state != .reading { readWhileAnswering = true }
        deadline.requestStarted()
        context.fireChannelRead(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.fireChannelReadComplete()
        if deadline.state == .answering && !readWhileAnswering {
            context.read()
        }
        readWhileAnswering = false
    }
}
