// A manual clock for the forwarder: virtual milliseconds that move only when
// the loop sleeps (by exactly the time it asked for), with actions scheduled
// at virtual times (a SIGHUP, a status read) and a horizon past which a sleep
// ends the run as a graceful shutdown would.

import RelayForward
import Synchronization

final class ManualClock: ForwardClock {
    private struct State {
        var now: Int64
        var scheduled: [(at: Int64, action: @Sendable () -> Void)] = []
        var sleeps = 0
    }
    private let state: Mutex<State>
    let stopAtMillis: Int64

    init(startMillis: Int64 = 0, stopAtMillis: Int64) {
        state = Mutex(State(now: startMillis))
        self.stopAtMillis = stopAtMillis
    }

    func nowMillis() -> Int64 { state.withLock { $0.now } }

    /// Runs `action` when the loop's clock first reaches `millis`.
    func at(_ millis: Int64, _ action: @escaping @Sendable () -> Void) {
        state.withLock { $0.scheduled.append((millis, action)) }
    }

    func sleep(millis: Int64) async throws {
        try Task.checkCancellation()
        let (now, due) = state.withLock { s -> (Int64, [@Sendable () -> Void]) in
            s.now += max(1, millis)
            s.sleeps += 1
            let due = s.scheduled.filter { $0.at <= s.now }.sorted { $0.at < $1.at }.map(\.action)
            s.scheduled.removeAll { $0.at <= s.now }
            return (s.now, due)
        }
        for action in due { action() }
        if now > stopAtMillis { throw CancellationError() }
        await Task.yield()
    }
}
