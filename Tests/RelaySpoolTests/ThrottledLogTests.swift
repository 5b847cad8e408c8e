// The spool writer's throttled log lines.

import Testing
@testable import RelaySpool

/// What the writer logs at most once a minute (a failing disk, drop_oldest
/// under load): the first time at once, then the count since the last line.
@Suite struct ThrottledLogTests {
    @Test func theFirstIsLoggedThenOnceAMinuteWithWhatHappenedSince() {
        var log = ThrottledLog()
        #expect(log.note(3, nowMillis: 1_000).map { [$0.times, $0.count] } == [1, 3])
        for t in stride(from: Int64(2_000), to: 61_000, by: 1_000) { #expect(log.note(2, nowMillis: t) == nil) }
        #expect(log.note(2, nowMillis: 61_000).map { [$0.times, $0.count] } == [60, 120], "59 quiet notes and this one")
        #expect(log.note(1, nowMillis: 61_500) == nil)
    }
}
