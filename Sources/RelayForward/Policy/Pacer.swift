// Pacer: at most `max_requests_per_second` upstream requests (DESIGN §5).
//
// Requests start at least 1000/rate ms apart (rounded up, so the rate is
// never exceeded), whatever the concurrency: with two in flight they still
// start one interval apart. Pure: the loop passes the time in and sleeps.

/// Spaces request starts to a maximum rate.
struct Pacer: Sendable, Hashable {
    /// Requests per second; 0 or less means no limit.
    var requestsPerSecond: Double
    private(set) var lastStartMillis: Int64?

    init(requestsPerSecond: Double) {
        self.requestsPerSecond = requestsPerSecond
    }

    /// The smallest gap between two starts.
    var intervalMillis: Int64 {
        requestsPerSecond > 0 ? Int64((1000.0 / requestsPerSecond).rounded(.up)) : 0
    }

    /// How long to wait before the next request may start (0: now).
    func delayMillis(nowMillis: Int64) -> Int64 {
        guard let last = lastStartMillis else { return 0 }
        return max(0, last + intervalMillis - nowMillis)
    }

    /// Records that a request started now.
    mutating func recordStart(nowMillis: Int64) {
        lastStartMillis = nowMillis
    }
}
