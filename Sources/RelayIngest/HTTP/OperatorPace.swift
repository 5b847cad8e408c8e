// OperatorPace: how often /healthz, /v1/status and /metrics are answered.
//
// A monitoring agent asks every few seconds. A client asking in a tight loop
// keeps a core busy answering it, and on a small host a busy CPU slows every
// fsync, so every app's acknowledgement. Each operator endpoint therefore
// answers at most `perSecond` requests a second, after a burst of `burst`:
// a request over the pace waits for its turn (the asking loop slows down,
// nothing is refused), and one that would wait longer than `maxWait` is
// answered `429` with `Retry-After` at once.
//
// Invariants: one slot per endpoint, shared by every connection and event
// loop; a wait never exceeds `maxWait`; ingest routes are never paced.

import Synchronization

/// Spaces the answers of each operator endpoint.
final class OperatorPace: Sendable {
    enum Endpoint: Int, CaseIterable, Sendable {
        case healthz, status, metrics
    }

    enum Decision: Equatable, Sendable {
        /// Answer at once.
        case now
        /// Answer after this many nanoseconds.
        case after(nanos: UInt64)
        /// Too many waiting already: answer 429.
        case refuse
    }

    /// Answers a second per endpoint, after the burst.
    static let perSecond: UInt64 = 20
    static let burst: UInt64 = 10
    static let maxWaitNanos: UInt64 = 1_000_000_000

    private let intervalNanos = 1_000_000_000 / OperatorPace.perSecond
    /// Per endpoint: the earliest time the next answer may go (monotonic nanoseconds).
    private let nextSlot = Mutex([UInt64](repeating: 0, count: Endpoint.allCases.count))

    /// Takes the next slot for `endpoint` at `nowNanos` (a monotonic clock).
    func admit(_ endpoint: Endpoint, nowNanos: UInt64) -> Decision {
        nextSlot.withLock { slots in
            let credit = (Self.burst - 1) * intervalNanos  // slots up to now go at once: `burst` of them
            let burstStart = nowNanos > credit ? nowNanos - credit : 0
            let slot = max(slots[endpoint.rawValue], burstStart)
            if slot > nowNanos + Self.maxWaitNanos { return .refuse }
            slots[endpoint.rawValue] = slot + intervalNanos
            return slot <= nowNanos ? .now : .after(nanos: slot - nowNanos)
        }
    }
}
