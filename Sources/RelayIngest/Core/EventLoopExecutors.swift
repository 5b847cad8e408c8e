// EventLoopExecutors: one CompletionExecutor per event loop, so the spool's
// writer hands each loop all of a commit's answers in one hop (one task, one
// wake-up) instead of one promise per call, and builds no reply on its own
// thread.

import NIOCore
import RelaySpool

/// Runs a commit's completions on one event loop, in one task.
final class EventLoopExecutor: CompletionExecutor {
    let loop: any EventLoop
    init(_ loop: any EventLoop) { self.loop = loop }

    func execute(_ jobs: [@Sendable () -> Void]) {
        loop.execute { for job in jobs { job() } }
    }
}

/// The executors of a group's loops, looked up by loop.
struct EventLoopExecutors: Sendable {
    private let byLoop: [ObjectIdentifier: EventLoopExecutor]

    init(_ group: any EventLoopGroup) {
        var map: [ObjectIdentifier: EventLoopExecutor] = [:]
        for loop in group.makeIterator() { map[ObjectIdentifier(loop)] = EventLoopExecutor(loop) }
        byLoop = map
    }

    /// The executor for `loop`; nil for a loop outside the group (completions then hop by themselves).
    func executor(for loop: any EventLoop) -> EventLoopExecutor? { byLoop[ObjectIdentifier(loop)] }
}

extension EventLoop {
    /// Runs `body` on this loop: now when already on it, else as a task.
    func runOnLoop(_ body: @escaping @Sendable () -> Void) {
        if inEventLoop { body() } else { execute(body) }
    }
}
