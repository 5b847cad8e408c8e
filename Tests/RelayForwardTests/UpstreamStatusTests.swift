import Testing
@testable import RelayForward

@Suite struct UpstreamStatusTests {
    /// What a full spool tells apps to wait: while the forwarder backs off or
    /// is paused, until its next attempt, in whole seconds rounded up, from 1
    /// (overdue) to 300; nothing of its own while it delivers.
    @Test func aFullSpoolsWaitIsTheTimeToTheNextAttempt() {
        var status = UpstreamStatus()
        status.nextAttemptAtMillis = 11_200
        #expect(status.secondsUntilNextAttempt(nowMillis: 10_000) == nil, "delivering: the relay's default")
        status.enter(.retrying, at: 10_000)
        #expect(status.secondsUntilNextAttempt(nowMillis: 10_000) == 2)
        status.nextAttemptAtMillis = 9_000
        #expect(status.secondsUntilNextAttempt(nowMillis: 10_000) == 1)
        status.nextAttemptAtMillis = nil
        #expect(status.secondsUntilNextAttempt(nowMillis: 10_000) == 1)
        status.enter(.pausedCredentials, at: 10_000)
        status.nextAttemptAtMillis = 10_000 + 600_000
        #expect(status.secondsUntilNextAttempt(nowMillis: 10_000) == 300)
    }
}
