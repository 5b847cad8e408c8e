// RefusalLog: what the operator is told while calls are refused because the
// relay cannot store them (a full spool, a stalled or failing disk).
//
// Such refusals come in floods, one per call, for as long as the cause
// lasts; a line per call would bury the log and cost the disk more. So: one
// line when refusing starts or its reason changes, then at most one a
// minute with how many were refused meanwhile, and one when calls are
// stored again with none refused for 10 s, with the total refused (calls
// committed while others are refused, as when the disk is slow, do not end
// it: that would log two lines per commit). Counts are exact; nothing is
// dropped silently (each refusal also counts in the `unavailable` metric).
//
// A value type with no clock of its own: the pipeline keeps it under a lock
// and passes the time, so it is tested with plain numbers.

import Logging

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

    /// Why calls are refused now; nil while they are stored.
    private(set) var reason: String?
    private var refusedSinceLine = 0
    private var refusedTotal = 0
    private var lastLineMillis: Int64 = 0
    private var lastRefusalMillis: Int64 = 0

    /// `count` calls were refused for `reason`.
    mutating func refused(_ count: Int, reason: String, nowMillis: Int64) -> Line? {
        refusedTotal += count
        lastRefusalMillis = nowMillis
        if reason != self.reason {
            let was = self.reason
            self.reason = reason
            refusedSinceLine = 0
            lastLineMillis = nowMillis
            var metadata = ["messages": "\(count)"]
            if let was { metadata["was"] = was }
            return Line(message: "refusing calls (503): \(reason)", metadata: metadata)
        }
        refusedSinceLine += count
        guard nowMillis - lastLineMillis >= Self.intervalMillis else { return nil }
        defer { refusedSinceLine = 0; lastLineMillis = nowMillis }
        return Line(message: "still refusing calls (503): \(reason)",
                    metadata: ["refused_since_last_line": "\(refusedSinceLine)", "refused_total": "\(refusedTotal)"])
    }

    /// A call was stored; returns the all-clear once refusals have stopped.
    mutating func stored(nowMillis: Int64) -> Line? {
        guard let reason, nowMillis - lastRefusalMillis >= Self.quietMillis else { return nil }
        defer { self.reason = nil; refusedTotal = 0; refusedSinceLine = 0 }
        return Line(message: "calls are stored again", metadata: ["refused_total": "\(refusedTotal)", "was": reason])
    }
}
