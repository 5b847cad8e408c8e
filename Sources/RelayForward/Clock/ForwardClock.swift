// ForwardClock: the forwarder's only source of time.
//
// Every deadline in the forwarder (flush, pace, backoff, pause) is computed
// from `nowMillis()` and waited for with `sleep(millis:)`, so a test can
// run the whole loop on a manual clock, with no wall-clock waits.

import RelaySpool

/// Time for the forwarder: unix milliseconds, and a way to wait.
public protocol ForwardClock: Sendable {
    /// The current time in unix milliseconds.
    func nowMillis() -> Int64
    /// Suspends for `millis` (at least 1 ms); throws `CancellationError`
    /// when the task is cancelled meanwhile.
    func sleep(millis: Int64) async throws
}

/// The real clock: a wall-clock reading and `Task.sleep`.
public struct SystemClock: ForwardClock {
    private let now: @Sendable () -> Int64

    /// - Parameter nowMillis: the time source (the wall clock by default).
    public init(nowMillis: @escaping @Sendable () -> Int64 = SystemClock.wallMillis) {
        self.now = nowMillis
    }

    /// Unix milliseconds from the system clock (the spool's, so both agree).
    public static let wallMillis: @Sendable () -> Int64 = Spool.wallClockMillis

    public func nowMillis() -> Int64 { now() }

    public func sleep(millis: Int64) async throws {
        try await Task.sleep(for: .milliseconds(max(1, millis)))
    }
}
