// RetryClassifier: what an upstream answer means for the batch (DESIGN §5).
// A pure function of the outcome, tested on its own; the forwarder acts on
// the decision and the backoff policy decides when.

/// How one delivery attempt ended, as the transport saw it.
public enum DeliveryOutcome: Sendable, Hashable {
    /// The upstream answered with an HTTP status.
    case response(status: Int, retryAfter: String?, body: String)
    /// No answer: connection refused or reset, DNS failure, TLS failure, timeout.
    case transportFailure(TransportFailure)
}

/// What to do with the batch after an attempt.
public enum RetryDecision: Sendable, Hashable {
    /// The upstream took it: delete the rows.
    case delivered
    /// Try the same messages again later; `retryAfter` is the upstream's own
    /// `Retry-After` header, when it sent one.
    case retry(retryAfter: String?)
    /// The upstream refused the content: split the batch to find the
    /// messages it refuses, dead-letter only those.
    case split
    /// The credentials are wrong: pause forwarding, keep everything.
    case pauseForCredentials
    /// The upstream will never take this batch as it is.
    case deadLetter
}

/// Maps an outcome to a decision.
public enum RetryClassifier {
    public static func classify(_ outcome: DeliveryOutcome) -> RetryDecision {
        switch outcome {
        case .transportFailure:
            return .retry(retryAfter: nil)
        case .response(let status, let retryAfter, _):
            switch status {
            case 200..<300: return .delivered
            case 408, 410, 429, 460: return .retry(retryAfter: retryAfter)
            case 501, 505, 511: return .deadLetter
            case 500..<600: return .retry(retryAfter: retryAfter)
            case 400, 413, 422: return .split
            case 401, 403: return .pauseForCredentials
            default: return .deadLetter
            }
        }
    }
}
