// RefusalLog: what the operator is told while calls are refused because the
// relay cannot store them (a full spool, a stalled or failing disk).
//
// Such refusals come in floods, one per call, for as long as the cause
// lasts, often for more than one reason at once (a stalled disk both fills
// the pending bound and fails commits, with varying errors); a line per call
// or per change of reason would bury the log. So one refusing period is one
// episode, whatever the reasons: a line when it starts, then at most one a
// minute with how many were refused meanwhile and for what, and one when
// calls are stored again with none refused for 10 s, with the total (calls
// committed while others are refused, as when the disk is slow, do not end
// it). Counts are exact; each refusal also counts in the `unavailable` metric.
//
// A value type with no clock of its own: the pipeline keeps it under a lock
// and passes the time, so it is tested with plain numbers.

/// Decides which refusal lines to log.
struct RefusalLog {
    /// A line to log.
    struct Line: Equatable {
        let message: String
        let metadata: [String: String]
    }

    /// At most one "still refusing" line per this many milliseconds.
    static let intervalMillis: Int64 = 60_000
    /// Refusing has ended once calls are stored with none refused for this long.
    static let quietMillis: Int64 = 10_000
    /// Reasons counted apart in one line; later ones are counted together.
    static let maxReasons = 3

    /// The latest reason while refusing; nil while calls are stored.
    private(set) var reason: String?
    /// Whether a quiet spell (`quietMillis` without a refusal) ends an
    /// episode by itself: for refusals that no stored call ends (those of
    /// one app's key, while the other apps' calls are stored).
    let quietEndsEpisode: Bool
    /// Refused since the last line, by reason, in first-seen order, and
    /// for the reasons past the first `maxReasons`.
    private var sinceLine: [(reason: String, count: Int)] = []
    private var otherSinceLine = 0
    private var refusedTotal = 0
    private var lastLineMillis: Int64 = 0
    private var lastRefusalMillis: Int64 = 0

    init(quietEndsEpisode: Bool = false) {
        self.quietEndsEpisode = quietEndsEpisode
    }

    /// `count` calls were refused for `reason`.
    mutating func refused(_ count: Int, reason: String, nowMillis: Int64) -> Line? {
        if quietEndsEpisode, self.reason != nil, nowMillis - lastRefusalMillis >= Self.quietMillis { endEpisode() }
        refusedTotal += count
        lastRefusalMillis = nowMillis
        guard self.reason != nil else {
            self.reason = reason
            lastLineMillis = nowMillis
            return Line(message: "refusing calls (503): \(reason)", metadata: ["messages": "\(count)"])
        }
        self.reason = reason
        if let i = sinceLine.firstIndex(where: { $0.reason == reason }) {
            sinceLine[i].count += count
        } else if sinceLine.count < Self.maxReasons {
            sinceLine.append((reason, count))
        } else {
            otherSinceLine += count
        }
        guard nowMillis - lastLineMillis >= Self.intervalMillis else { return nil }
        defer { sinceLine = []; otherSinceLine = 0; lastLineMillis = nowMillis }
        let named = sinceLine.map { "\($0.reason) (\($0.count))" } + (otherSinceLine > 0 ? ["other reasons (\(otherSinceLine))"] : [])
        var metadata = ["refused_since_last_line": "\(sinceLine.reduce(otherSinceLine) { $0 + $1.count })", "refused_total": "\(refusedTotal)"]
        if named.count > 1 { metadata["reasons"] = named.joined(separator: "; ") }
        return Line(message: "still refusing calls (503): \(reason)", metadata: metadata)
    }

    /// A call was stored; returns the all-clear once refusals have stopped.
    mutating func stored(nowMillis: Int64) -> Line? {
        guard let reason, nowMillis - lastRefusalMillis >= Self.quietMillis else { return nil }
        defer { endEpisode() }
        return Line(message: "calls are stored again", metadata: ["refused_total": "\(refusedTotal)", "last_reason": reason])
    }

    private mutating func endEpisode() {
        reason = nil
        refusedTotal = 0
        sinceLine = []
        otherSinceLine = 0
    }
}
