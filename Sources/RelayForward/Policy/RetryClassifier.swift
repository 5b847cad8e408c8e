// RetryClassifier: what an upstream answer means for the batch (DESIGN §5).
// A pure function of the outcome, tested on its own; the OutcomeHandler
// acts on the decision and the backoff policy decides when.
//
//   2xx                                  delivered
//   408 410 429 460, 5xx (not 501/505/511),
//   timeouts, connection errors          retry (backoff, Retry-After)
//   a URL or CA file libcurl cannot use  pause: configuration
//   400 413 422                          split; a lone refused message is a dead letter
//   401 403                              pause: credentials
//   anything else (1xx, 3xx, 404, 405, other 4xx, 501, 505, 511, odd codes)
//                                        pause: configuration
//
// Only 400/413/422 after splitting (and max_age, in the spool) make dead
// letters: an answer that says "this can never work as configured" is the
// operator's to fix, so forwarding pauses and nothing is dropped.

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
    /// No request can work as configured (wrong URL, method, protocol):
    /// pause forwarding, keep everything.
    case pauseForConfiguration
}

/// Maps an outcome to a decision.
public enum RetryClassifier {
    /// The decision for one attempt's outcome.
    public static func classify(_ outcome: DeliveryOutcome) -> RetryDecision {
        switch outcome {
        case .transportFailure(let failure):
            return failure.isConfigurationError ? .pauseForConfiguration : .retry(retryAfter: nil)
        case .response(let status, let retryAfter, _):
            switch status {
            case 200..<300: return .delivered
            case 408, 410, 429, 460: return .retry(retryAfter: retryAfter)
            case 501, 505, 511: return .pauseForConfiguration
            case 500..<600: return .retry(retryAfter: retryAfter)
            case 400, 413, 422: return .split
            case 401, 403: return .pauseForCredentials
            default: return .pauseForConfiguration
            }
        }
    }
}
