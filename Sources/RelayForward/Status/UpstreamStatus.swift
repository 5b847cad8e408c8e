// UpstreamStatus: what the forwarder is doing, for `/v1/status`, metrics and
// the logs. The loop is its only writer (through StatusBoard); readers take
// a snapshot under a lock, never touching the loop's own state.

import Synchronization

/// What the forwarder is doing, for `/v1/status` and the logs.
public struct UpstreamStatus: Sendable, Hashable, Codable {
    public enum State: String, Sendable, Codable {
        /// Sending normally (or nothing to send).
        case ok
        /// The last attempt failed; backing off.
        case retrying
        /// The upstream refused the credentials (401/403); paused.
        case pausedCredentials = "paused_credentials"
        /// The upstream said the request can never work as configured
        /// (3xx, 404, 405, another 4xx, 501, 505, 511); paused.
        case pausedConfiguration = "paused_configuration"
    }

    public var state: State = .ok
    /// When `state` began, unix milliseconds; nil while it is the first state, ok.
    public var stateSinceMillis: Int64?
    public var consecutiveFailures = 0
    public var lastError: String?
    /// When `lastError` happened, unix milliseconds.
    public var lastErrorAtMillis: Int64?
    public var lastSuccessAtMillis: Int64?
    public var nextAttemptAtMillis: Int64?
    public var requests: Int64 = 0
    public var delivered: Int64 = 0
    public var deadLettered: Int64 = 0
    /// Batches the upstream refused for an app's own write key (the relay
    /// has none): held back, not paused, so `state` does not show them.
    public var appKeyRefusals: Int64 = 0
    /// When the last of them was refused, unix milliseconds.
    public var appKeyRefusedAtMillis: Int64?

    /// Whole seconds until the next attempt while the forwarder backs off or
    /// is paused, from 1 to `cap`; nil while it delivers (room then comes
    /// back as fast as the upstream takes batches, or, when dead letters fill
    /// the spool, not until an operator acts). What a full spool tells apps
    /// to wait (`Retry-After`): room comes back only as batches go out.
    public func secondsUntilNextAttempt(nowMillis: Int64, cap: Int = 300) -> Int? {
        guard state != .ok else { return nil }
        guard let next = nextAttemptAtMillis, next > nowMillis else { return 1 }
        return Int(min(Int64(cap), max(1, (next - nowMillis + 999) / 1000)))
    }

    /// Sets `state`, noting when it changed.
    mutating func enter(_ new: State, at millis: Int64) {
        guard new != state else { return }
        state = new
        stateSinceMillis = millis
    }
}

/// The one place the status lives: written by the loop, read by anyone.
final class StatusBoard: Sendable {
    private let box = Mutex(UpstreamStatus())

    /// A consistent copy.
    var snapshot: UpstreamStatus { box.withLock { $0 } }

    /// Changes it under the lock.
    func update(_ change: (inout UpstreamStatus) -> Void) {
        box.withLock { change(&$0) }
    }
}
