// Backoff: when to try again after a failure. Exponential with full jitter
// (base 500 ms, cap 60 s), overridden by the upstream's Retry-After (capped
// at 300 s). Time is passed in as unix milliseconds and randomness as a
// generator, so tests drive it with a manual clock and a fixed sequence.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The exponential full-jitter backoff policy.
public struct BackoffPolicy: Sendable, Hashable {
    public var baseMillis: Int64
    public var capMillis: Int64
    public var retryAfterCapMillis: Int64

    public init(baseMillis: Int64 = 500, capMillis: Int64 = 60_000, retryAfterCapMillis: Int64 = 300_000) {
        self.baseMillis = baseMillis
        self.capMillis = capMillis
        self.retryAfterCapMillis = retryAfterCapMillis
    }

    /// The ceiling of the jitter window after `failures` consecutive failures (1-based).
    public func ceilingMillis(afterFailures failures: Int) -> Int64 {
        let exponent = max(0, min(failures - 1, 32))
        let raw = baseMillis.multipliedReportingOverflow(by: Int64(1) << exponent)
        return raw.overflow ? capMillis : min(capMillis, raw.partialValue)
    }

    /// A delay drawn uniformly from [0, ceiling] (full jitter).
    public func delayMillis(afterFailures failures: Int, using rng: inout some RandomNumberGenerator) -> Int64 {
        Int64.random(in: 0...ceilingMillis(afterFailures: failures), using: &rng)
    }

    /// Full jitter with the system's randomness: a uniform draw from [0, ceiling].
    public static let uniformDraw: @Sendable (Int64) -> Int64 = { Int64.random(in: 0...$0) }

    /// Parses a Retry-After value (delta-seconds or an HTTP date) into a delay, capped.
    public func retryAfterMillis(_ header: String, nowMillis: Int64) -> Int64? {
        let trimmed = header.trimming([" ", "\t"])
        if let seconds = Int64(trimmed), seconds >= 0 {
            return min(seconds.multipliedReportingOverflow(by: 1000).overflow ? retryAfterCapMillis : seconds * 1000, retryAfterCapMillis)
        }
        if let date = HTTPDate.parse(trimmed) {
            let delta = Int64(date.timeIntervalSince1970 * 1000) - nowMillis
            return min(max(0, delta), retryAfterCapMillis)
        }
        return nil
    }
}

/// Consecutive failures and the delay they earn. When a request may go is
/// the CircuitBreaker's business; this only says how long to wait.
public struct RetrySchedule: Sendable, Hashable {
    public let policy: BackoffPolicy
    public private(set) var consecutiveFailures = 0

    public init(policy: BackoffPolicy = BackoffPolicy()) {
        self.policy = policy
    }

    /// Records a success: the next request may go at once.
    public mutating func recordSuccess() {
        consecutiveFailures = 0
    }

    /// Records a retryable failure; returns when the next attempt may go.
    /// - Parameter draw: picks the delay from [0, ceiling] (full jitter);
    ///   tests pass a fixed choice.
    @discardableResult
    public mutating func recordFailure(nowMillis: Int64, retryAfter: String?, draw: (Int64) -> Int64 = BackoffPolicy.uniformDraw) -> Int64 {
        consecutiveFailures += 1
        let delay: Int64
        if let retryAfter, let upstream = policy.retryAfterMillis(retryAfter, nowMillis: nowMillis) {
            delay = upstream
        } else {
            let ceiling = policy.ceilingMillis(afterFailures: consecutiveFailures)
            delay = min(ceiling, max(0, draw(ceiling)))
        }
        return nowMillis + delay
    }
}

/// HTTP dates (RFC 9110 IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`).
enum HTTPDate {
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    static func parse(_ s: String) -> Date? {
        let parts = s.split(separator: " ")
        guard parts.count == 6, parts[5] == "GMT",
              let day = Int(parts[1]), let monthIndex = months.firstIndex(of: String(parts[2])),
              let year = Int(parts[3]) else { return nil }
        let hms = parts[4].split(separator: ":").compactMap { Int($0) }
        guard hms.count == 3 else { return nil }
        var comps = DateComponents()
        comps.year = year
        comps.month = monthIndex + 1
        comps.day = day
        comps.hour = hms[0]
        comps.minute = hms[1]
        comps.second = hms[2]
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = TimeZone(identifier: "GMT")!
        return cal.date(from: comps)
    }
}
