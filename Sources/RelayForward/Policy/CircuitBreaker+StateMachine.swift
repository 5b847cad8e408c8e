// CircuitBreaker: whether a request may go to the upstream now.
//
//   closed ──failure──► open(until) ──time passes──► halfOpen ──probe ok──► closed
//                          ▲                             │
//                          └────────probe fails──────────┘
//
// Closed: requests go (up to the forwarder's concurrency). Open: nothing
// goes until the backoff (or the upstream's Retry-After) has passed.
// Half-open: exactly one probe goes; the others wait for its answer. So a
// sick upstream sees one request at a time, and a recovered one no burst
// beyond the configured concurrency. Pure: time is passed in.

/// The breaker's state machine.
public struct CircuitBreaker: Sendable, Hashable {
    public enum State: Sendable, Hashable {
        case closed
        case open(untilMillis: Int64)
        case halfOpen(probeInFlight: Bool)
    }

    public private(set) var state: State = .closed
    private var schedule: RetrySchedule

    public init(policy: BackoffPolicy = BackoffPolicy()) {
        schedule = RetrySchedule(policy: policy)
    }

    /// The backoff it applies.
    public var policy: BackoffPolicy { schedule.policy }

    /// Consecutive failures so far.
    public var consecutiveFailures: Int { schedule.consecutiveFailures }

    /// When an open breaker lets a probe through.
    public var reopensAtMillis: Int64? {
        if case .open(let until) = state { return until }
        return nil
    }

    /// Asks to send a request at `nowMillis`; true when it may go (and, half-open, marks the probe in flight).
    public mutating func acquire(nowMillis: Int64) -> Bool {
        switch state {
        case .closed:
            return true
        case .open(let until):
            guard nowMillis >= until else { return false }
            state = .halfOpen(probeInFlight: true)
            return true
        case .halfOpen(let probeInFlight):
            if probeInFlight { return false }
            state = .halfOpen(probeInFlight: true)
            return true
        }
    }

    /// The request got an answer the upstream was healthy for (delivered, or content refused).
    public mutating func recordSuccess() {
        schedule.recordSuccess()
        state = .closed
    }

    /// The request failed in a retryable way; returns when the breaker lets the next probe go.
    @discardableResult
    public mutating func recordFailure(nowMillis: Int64, retryAfter: String?, draw: (Int64) -> Int64 = BackoffPolicy.uniformDraw) -> Int64 {
        let until = schedule.recordFailure(nowMillis: nowMillis, retryAfter: retryAfter, draw: draw)
        state = .open(untilMillis: until)
        return until
    }
}
