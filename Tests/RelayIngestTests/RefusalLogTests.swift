// What the operator reads while calls are refused for want of storage: a
// line when it starts, one a minute while it lasts, one when it is over.

import Testing
@testable import RelayIngest

@Suite struct RefusalLogTests {
    @Test func aFloodOfRefusalsIsOneLineAMinuteWithExactCounts() {
        var log = RefusalLog()
        let first = log.refused(1, reason: "the disk is stalled", nowMillis: 0)
        #expect(first == RefusalLog.Line(message: "refusing calls (503): the disk is stalled", metadata: ["messages": "1"]))
        for t in stride(from: Int64(1), to: 60_000, by: 600) {  // 100 more within the minute: quiet
            #expect(log.refused(1, reason: "the disk is stalled", nowMillis: t) == nil)
        }
        let still = log.refused(5, reason: "the disk is stalled", nowMillis: 60_000)
        #expect(still == RefusalLog.Line(message: "still refusing calls (503): the disk is stalled",
                                         metadata: ["refused_since_last_line": "105", "refused_total": "106"]))
        #expect(log.refused(1, reason: "the disk is stalled", nowMillis: 60_001) == nil)
    }

    @Test func theAllClearComesOnceNothingWasRefusedFor10Seconds() {
        var log = RefusalLog()
        #expect(log.stored(nowMillis: 0) == nil, "nothing to clear")
        _ = log.refused(3, reason: "busy", nowMillis: 1_000)
        // A slow disk: commits go on while other calls are refused.
        #expect(log.stored(nowMillis: 1_500) == nil)
        #expect(log.refused(2, reason: "busy", nowMillis: 5_000) == nil)
        #expect(log.stored(nowMillis: 14_999) == nil)
        #expect(log.stored(nowMillis: 15_000) == RefusalLog.Line(message: "calls are stored again", metadata: ["refused_total": "5", "last_reason": "busy"]))
        #expect(log.stored(nowMillis: 16_000) == nil, "told once")
        #expect(log.refused(1, reason: "busy", nowMillis: 17_000)?.message == "refusing calls (503): busy", "a new episode is told at once")
    }

    @Test func aQuietSpellEndsAnEpisodeOnlyWhereNoStoredCallCan() {
        // One app's refused key: the other apps' stored calls do not end it; 10 s without a refusal does.
        var key = RefusalLog(quietEndsEpisode: true)
        #expect(key.refused(1, reason: "key", nowMillis: 0)?.message == "refusing calls (503): key")
        #expect(key.refused(1, reason: "key", nowMillis: 9_999) == nil)
        #expect(key.refused(1, reason: "key", nowMillis: 19_999)?.message == "refusing calls (503): key", "told as a new episode")
        // Storage refusals end only when calls are stored again.
        var storage = RefusalLog()
        _ = storage.refused(1, reason: "full", nowMillis: 0)
        #expect(storage.refused(1, reason: "full", nowMillis: 30_000) == nil, "still the same episode")
    }

    @Test func reasonsThatAlternateAreOneEpisodeCountedByReason() {
        // A stalled, failing disk: the pending bound and failed commits, interleaved.
        var log = RefusalLog()
        #expect(log.refused(1, reason: "busy", nowMillis: 0)?.message == "refusing calls (503): busy")
        for t in Int64(1)...1_000 {
            #expect(log.refused(1, reason: t % 2 == 0 ? "busy" : "disk I/O error \(t % 7)", nowMillis: t) == nil)
        }
        let line = log.refused(1, reason: "busy", nowMillis: 60_000)
        #expect(line?.message == "still refusing calls (503): busy")
        #expect(line?.metadata["refused_since_last_line"] == "1001" && line?.metadata["refused_total"] == "1002")
        #expect(line?.metadata["reasons"] == "disk I/O error 1 (72); busy (501); disk I/O error 3 (72); other reasons (356)",
                "at most 3 reasons apart: \(line?.metadata["reasons"] ?? "none")")
    }
}
