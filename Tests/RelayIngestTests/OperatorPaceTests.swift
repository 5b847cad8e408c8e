// The pace of the operator endpoints on a virtual clock: a burst at once,
// then one answer per interval, a bounded wait, 429 past it, and endpoints
// that do not share a budget.

import Testing
@testable import RelayIngest

@Suite struct OperatorPaceTests {
    let second: UInt64 = 1_000_000_000
    var interval: UInt64 { second / OperatorPace.perSecond }

    @Test func aBurstGoesAtOnceThenAnswersAreSpacedAndNeverWaitPastTheBound() {
        let pace = OperatorPace()
        let t0: UInt64 = 100 * second
        let decisions = (0..<60).map { _ in pace.admit(.metrics, nowNanos: t0) }  // 60 asked in the same instant
        let now = decisions.prefix { $0 == .now }.count
        #expect(now == Int(OperatorPace.burst), "the burst is answered at once")
        let waits = decisions.compactMap { d -> UInt64? in if case .after(let n) = d { n } else { nil } }
        #expect(waits == (1...waits.count).map { UInt64($0) * interval }, "then one per interval")
        #expect(waits.allSatisfy { $0 <= OperatorPace.maxWaitNanos })
        #expect(waits.count == Int(OperatorPace.maxWaitNanos / interval), "as many wait as fit in the bound")
        #expect(decisions.suffix(from: now + waits.count).allSatisfy { $0 == .refuse }, "the rest are refused at once")
    }

    @Test func aClientThatWaitsForEachAnswerIsHeldToThePace() {
        let pace = OperatorPace()
        var t: UInt64 = 50 * second
        var answered = 0
        while t < 60 * second {  // a tight loop for ten virtual seconds
            switch pace.admit(.status, nowNanos: t) {
            case .now: t += 1_000  // 1 µs to answer
            case .after(let n): t += n
            case .refuse: Issue.record("a single client is never refused")
            }
            answered += 1
        }
        #expect(answered <= Int(OperatorPace.burst + 10 * OperatorPace.perSecond + 1))
        #expect(answered >= Int(10 * OperatorPace.perSecond))
    }

    @Test func eachEndpointHasItsOwnBudgetAndAQuietSpellRestoresTheBurst() {
        let pace = OperatorPace()
        let t0: UInt64 = 10 * second
        for _ in 0..<40 { _ = pace.admit(.metrics, nowNanos: t0) }
        #expect(pace.admit(.healthz, nowNanos: t0) == .now, "a scraper of /metrics does not delay /healthz")
        #expect(pace.admit(.metrics, nowNanos: t0) == .refuse)
        let later = t0 + 5 * second
        #expect((0..<Int(OperatorPace.burst)).allSatisfy { _ in pace.admit(.metrics, nowNanos: later) == .now })
    }
}
