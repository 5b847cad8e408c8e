// Pacer: at most `max_requests_per_second` upstream requests (DESIGN §5).
//
// A rate of 1 or more counts as the whole number below it (7.5: 7 a
// second); an interval is 1000/rate ms, rounded up. At most `burst`
// requests start in any `burst` intervals, where `burst` is the largest
// number up to 10 for which no window of one second can hold more starts
// than the rate: 10 at 100 requests/s (at most 10 starts in any 100 ms, so
// at most 100 in any second); 1, strict spacing, below 1 a second. Two
// starts are always at least half an interval apart, so after a quiet
// spell the upstream sees no burst at once. A round that started late
// (reading and encoding the next batches took longer than an interval)
// lets the next requests start sooner instead of losing that time for
// good, so a backlog drains at the rate asked for, not at that rate minus
// each round's lateness. Pure: the loop passes the time in and sleeps.

/// Keeps request starts under a maximum rate.
struct Pacer: Sendable, Hashable {
    /// Requests per second; 0 or less means no limit.
    var requestsPerSecond: Double
    /// The last starts, oldest first (at most `maxBurst`).
    private var starts: [Int64] = []

    static let maxBurst = 10

    init(requestsPerSecond: Double) {
        self.requestsPerSecond = requestsPerSecond
    }

    /// The rate as paced: the whole number below it from 1 on, so that no
    /// second holds more starts than asked; nil for no limit.
    private var pacedRate: Double? {
        guard requestsPerSecond > 0, requestsPerSecond.isFinite else { return nil }
        return requestsPerSecond >= 1 ? requestsPerSecond.rounded(.down) : requestsPerSecond
    }

    /// The interval (0: no limit): `burst` starts take at least `burst` of them; at most a day.
    var intervalMillis: Int64 {
        pacedRate.map { Int64(min((1000 / $0).rounded(.up), 86_400_000)) } ?? 0
    }

    /// How many requests may start within `burst` intervals: the most, up
    /// to `maxBurst`, for which every second still holds at most the rate.
    var burst: Int {
        let interval = intervalMillis
        guard interval > 0, let rate = pacedRate else { return 1 }
        let perSecond = max(1, Int64(rate))  // (below 1 a second, the interval alone keeps it)
        // A second is covered by ceil(1000 / window) windows of `n` starts each.
        return (1...Self.maxBurst).last { n in
            let window = Int64(n) * interval
            return (1000 + window - 1) / window * Int64(n) <= perSecond
        } ?? 1
    }

    /// How long to wait before the next request may start (0: now): never
    /// sooner than half an interval after the last start, nor than `burst`
    /// intervals after the start `burst` starts back.
    func delayMillis(nowMillis: Int64) -> Int64 {
        guard intervalMillis > 0, let last = starts.last else { return 0 }
        let n = burst
        let spaced = last + (intervalMillis + 1) / 2
        let windowed = starts.count >= n ? starts[starts.count - n] + Int64(n) * intervalMillis : 0
        return max(0, spaced - nowMillis, windowed - nowMillis)
    }

    /// Records that a request started now.
    mutating func recordStart(nowMillis: Int64) {
        if starts.count == Self.maxBurst { starts.removeFirst() }
        starts.append(nowMillis)
    }
}
