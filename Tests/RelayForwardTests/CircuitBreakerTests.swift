import Testing
@testable import RelayForward

@Suite struct CircuitBreakerTests {
    let top: (Int64) -> Int64 = { $0 }

    @Test func closedLetsRequestsThrough() {
        var b = CircuitBreaker()
        let r1 = b.acquire(nowMillis: 0)
        #expect(r1)
        let r2 = b.acquire(nowMillis: 0)
        #expect(r2, "closed: concurrency is the forwarder's business")
        #expect(b.state == .closed)
    }

    @Test func aFailureOpensItUntilTheBackoffHasPassed() {
        var b = CircuitBreaker()
        let r3 = b.recordFailure(nowMillis: 1_000, retryAfter: nil, draw: top)
        #expect(r3 == 1_500)
        #expect(b.state == .open(untilMillis: 1_500))
        let r4 = b.acquire(nowMillis: 1_499)
        #expect(!r4)
        #expect(b.reopensAtMillis == 1_500)
    }

    @Test func halfOpenAllowsExactlyOneProbe() {
        var b = CircuitBreaker()
        b.recordFailure(nowMillis: 0, retryAfter: nil, draw: top)
        let r5 = b.acquire(nowMillis: 600)
        #expect(r5)
        #expect(b.state == .halfOpen(probeInFlight: true))
        let r6 = b.acquire(nowMillis: 600)
        #expect(!r6, "a second request waits for the probe")
        let r7 = b.acquire(nowMillis: 10_000)
        #expect(!r7)
    }

    @Test func aSuccessfulProbeClosesIt() {
        var b = CircuitBreaker()
        b.recordFailure(nowMillis: 0, retryAfter: nil, draw: top)
        _ = b.acquire(nowMillis: 600)
        b.recordSuccess()
        #expect(b.state == .closed)
        #expect(b.consecutiveFailures == 0)
        let r8a = b.acquire(nowMillis: 600)
        let r8b = b.acquire(nowMillis: 600)
        #expect(r8a && r8b)
    }

    @Test func aFailedProbeReopensItForLonger() {
        var b = CircuitBreaker()
        b.recordFailure(nowMillis: 0, retryAfter: nil, draw: top)          // open until 500
        _ = b.acquire(nowMillis: 500)
        let r9 = b.recordFailure(nowMillis: 500, retryAfter: nil, draw: top)
        #expect(r9 == 1_500)  // 1000 ms window
        #expect(b.state == .open(untilMillis: 1_500))
        #expect(b.consecutiveFailures == 2)
    }

    @Test func retryAfterSetsTheOpenPeriod() {
        var b = CircuitBreaker()
        let r10 = b.recordFailure(nowMillis: 0, retryAfter: "2", draw: top)
        #expect(r10 == 2_000)
        let r11 = b.acquire(nowMillis: 1_999)
        #expect(!r11)
        let r12 = b.acquire(nowMillis: 2_000)
        #expect(r12)
    }
}
