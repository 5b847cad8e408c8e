// Pause: forwarding stops because no request can work as configured.
//
//   running ──401/403──────────► paused(credentials, until)
//   running ──3xx/404/405/...──► paused(configuration, until)
//   paused ──resume() (SIGHUP) or `until` passed──► running (one probe goes)
//
// Nothing is dropped or dead-lettered while paused: the messages stay in
// the outbox. The slow probe uses `credential_retry` for both reasons. Pure:
// time and the resume request are passed in.

/// Why forwarding is paused.
public enum PauseReason: String, Sendable, Hashable {
    /// The upstream refused the write key (401/403).
    case credentials
    /// The upstream said the request can never work as configured (wrong
    /// URL, method or protocol: 3xx, 404, 405, another 4xx, 501, 505, 511).
    case configuration
}

/// The pause state machine.
struct PauseState: Sendable, Hashable {
    enum Check: Sendable, Hashable {
        /// Not paused.
        case running
        /// Was paused and is not any more: the next request is a probe.
        case resumed(PauseReason)
        /// Still paused: check again after at most this long.
        case paused(waitMillis: Int64)
    }

    private(set) var reason: PauseReason?
    private(set) var untilMillis: Int64 = 0

    /// Pauses until `nowMillis + retryMillis` (or a resume request).
    mutating func begin(_ reason: PauseReason, nowMillis: Int64, retryMillis: Int64) {
        self.reason = reason
        self.untilMillis = nowMillis + max(0, retryMillis)
    }

    /// Whether forwarding may go on; ends the pause on a resume request or when its time is up.
    mutating func check(nowMillis: Int64, resumeRequested: Bool) -> Check {
        guard let reason else { return .running }
        if resumeRequested || nowMillis >= untilMillis {
            self.reason = nil
            return .resumed(reason)
        }
        return .paused(waitMillis: untilMillis - nowMillis)
    }
}
