// ConnectionHead: the first handler of every connection. It owns the
// connection's two clocks, on one timer, and for HTTP the read gate.
//
// - Idle: a connection that neither reads nor writes for
//   `idle_timeout_seconds` closes (whatever its protocol, before its first
//   byte too).
// - Request deadline (HTTP only, `RequestDeadline`): from a request's first
//   byte to its end, at most `request_timeout_seconds`; past it the client
//   gets `408` and the connection closes.
// - Read gate (HTTP only): no read while the connection's answers cannot
//   be written. NIO's pipelining handler lets the next request in once an
//   answer reaches the channel, not the socket, so without the gate a
//   client that pipelines and never reads would have its answers pile up
//   in memory. (The line protocol holds its reads itself.) It is NIO's
//   BackPressureHandler in the handler every event passes anyway: as a
//   handler of its own it cost one more hop for every read, write and flush.
//
// A read, a flush or a request's start only records the time: nothing is
// scheduled or cancelled per call. (NIO's IdleStateHandler makes a promise
// for every write it watches, and a timer scheduled and cancelled per
// request costs a search of the loop's timer heap each time: together 7% of
// the event loop's CPU at 32 clients.) Instead each connection has one timer
// that, when it fires, checks both clocks and arms itself for the first
// moment either could run out. While no request is being read that moment
// is at most one request timeout ahead, so a request that starts later is
// still checked on time, and a busy keep-alive connection wakes its timer
// about once a request timeout.
//
// Invariants: at most one timer per connection, none once it is inactive;
// a read held by the gate is passed on as soon as the channel is writable
// again; everything runs on the channel's loop.

import NIOCore

/// The connection's idle clock and, for HTTP, its request deadline and read
/// gate. The first handler of every connection.
final class ConnectionHead: ChannelDuplexHandler {
    typealias InboundIn = NIOAny
    typealias InboundOut = NIOAny
    typealias OutboundIn = NIOAny
    typealias OutboundOut = NIOAny

    private let idle: TimeAmount
    private var lastActivity = NIODeadline.now()
    private var timer: Scheduled<Void>?
    private var context: ChannelHandlerContext?
    /// The HTTP request deadline, once the connection speaks HTTP.
    private var deadline: RequestDeadline?
    /// A read asked for while the channel was not writable (HTTP).
    private var readHeld = false

    init(idleTimeout: TimeAmount) { self.idle = idleTimeout }

    /// The connection speaks HTTP: its requests get `deadline`'s clock, and
    /// its reads wait while its answers cannot be written.
    func speaksHTTP(_ deadline: RequestDeadline) {
        self.deadline = deadline
        if let context { arm(context) }  // once per connection: the next check may now be sooner
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { arm(context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        stop()
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        lastActivity = .now()
        arm(context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        stop()
        context.fireChannelInactive()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        lastActivity = .now()
        context.fireChannelReadComplete()
    }

    func flush(context: ChannelHandlerContext) {
        lastActivity = .now()
        context.flush()
    }

    func read(context: ChannelHandlerContext) {
        // (A deadline is set exactly when the connection speaks HTTP.)
        if deadline != nil && !context.channel.isWritable {
            readHeld = true
            return
        }
        context.read()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if readHeld && context.channel.isWritable {
            readHeld = false
            context.read()
        }
        context.fireChannelWritabilityChanged()
    }

    private func stop() {
        timer?.cancel()
        timer = nil
    }

    /// (Re)arms the timer for the first moment a clock could run out.
    private func arm(_ context: ChannelHandlerContext) {
        stop()
        let now = NIODeadline.now()
        var next = lastActivity + idle
        if let deadline { next = min(next, deadline.nextCheck(now: now)) }
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: next) { [self] in
            timer = nil
            check(context)
        }
    }

    private func check(_ context: ChannelHandlerContext) {
        guard context.channel.isActive else { return }
        let now = NIODeadline.now()
        if let deadline, deadline.hasRunOut(now: now) {
            deadline.refuse(context)  // closes once the 408 is written; the idle clock still runs meanwhile
            guard context.channel.isActive else { return }
        } else if now >= lastActivity + idle {
            context.close(promise: nil)
            return
        }
        arm(context)
    }
}
