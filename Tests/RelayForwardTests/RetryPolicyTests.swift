import Foundation
import Testing
@testable import RelayForward
import RelaySpool

@Suite struct RetryClassifierTests {
    static func response(_ status: Int) -> DeliveryOutcome { .response(status: status, retryAfter: nil, body: "") }

    @Test(arguments: [200, 201, 202, 204, 299])
    func successDeletes(_ status: Int) {
        #expect(RetryClassifier.classify(Self.response(status)) == .delivered)
    }

    @Test(arguments: [408, 410, 429, 460, 500, 502, 503, 504, 507, 599])
    func transientStatusesRetry(_ status: Int) {
        #expect(RetryClassifier.classify(Self.response(status)) == .retry(retryAfter: nil))
    }

    @Test(arguments: [400, 413, 422])
    func contentRefusalsSplit(_ status: Int) {
        #expect(RetryClassifier.classify(Self.response(status)) == .split)
    }

    @Test(arguments: [401, 403])
    func credentialRefusalsPause(_ status: Int) {
        #expect(RetryClassifier.classify(Self.response(status)) == .pauseForCredentials)
    }

    /// "This can never work as configured": pause like 401/403, drop nothing.
    @Test(arguments: [301, 302, 307, 308, 404, 405, 406, 409, 411, 415, 418, 451, 501, 505, 511, 100, 600])
    func configurationErrorsPause(_ status: Int) {
        #expect(RetryClassifier.classify(Self.response(status)) == .pauseForConfiguration)
    }

    @Test func onlyContentRefusalsSplit() {
        // Only 400/413/422 (after splitting to one message) make dead letters.
        for status in 100...699 {
            let decision = RetryClassifier.classify(Self.response(status))
            if [400, 413, 422].contains(status) { #expect(decision == .split) } else { #expect(decision != .split, "\(status)") }
        }
    }

    @Test func transportFailuresRetryAndCarryRetryAfter() {
        #expect(RetryClassifier.classify(.transportFailure(TransportFailure(code: 7, message: "refused"))) == .retry(retryAfter: nil))
        #expect(RetryClassifier.classify(.transportFailure(TransportFailure(code: 6, message: "could not resolve host"))) == .retry(retryAfter: nil))
        // A URL libcurl cannot use (a bad port, a scheme it lacks) or an unreadable CA file never works: the operator's to fix.
        for code in [1, 3, 4, 77] {
            #expect(RetryClassifier.classify(.transportFailure(TransportFailure(code: code, message: "x"))) == .pauseForConfiguration, "curl error \(code)")
        }
        #expect(RetryClassifier.classify(.response(status: 429, retryAfter: "2", body: "")) == .retry(retryAfter: "2"))
    }
}

@Suite struct BackoffTests {
    /// A seeded generator: the same draws on every run.
    struct SplitMix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    @Test func ceilingDoublesFromTheBaseAndStopsAtTheCap() {
        let p = BackoffPolicy()
        #expect((1...9).map { p.ceilingMillis(afterFailures: $0) } == [500, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000])
        #expect(p.ceilingMillis(afterFailures: 500) == 60000)
    }

    @Test func fullJitterDrawsFromZeroToTheCeiling() {
        let p = BackoffPolicy()
        var rng = SplitMix(state: 42)
        for n in 1...12 {
            let ceiling = p.ceilingMillis(afterFailures: n)
            let draws = (0..<200).map { _ in p.delayMillis(afterFailures: n, using: &rng) }
            #expect(draws.allSatisfy { (0...ceiling).contains($0) })
            // full jitter spreads over the whole window, not just near the top
            #expect(draws.min()! < ceiling / 4 && draws.max()! > ceiling * 3 / 4)
        }
    }

    @Test func retryAfterInSecondsOrAnHTTPDateIsCappedAt300s() {
        let p = BackoffPolicy()
        let now: Int64 = 784_111_777_000  // Sun, 06 Nov 1994 08:49:37 GMT
        #expect(p.retryAfterMillis("2", nowMillis: now) == 2000)
        #expect(p.retryAfterMillis(" 120 ", nowMillis: now) == 120_000)
        #expect(p.retryAfterMillis("86400", nowMillis: now) == 300_000)
        #expect(p.retryAfterMillis("Sun, 06 Nov 1994 08:49:47 GMT", nowMillis: now) == 10_000)
        #expect(p.retryAfterMillis("Sun, 06 Nov 1994 08:49:27 GMT", nowMillis: now) == 0, "a date in the past: at once")
        #expect(p.retryAfterMillis("Mon, 07 Nov 1994 08:49:37 GMT", nowMillis: now) == 300_000)
        #expect(p.retryAfterMillis("soon", nowMillis: now) == nil)
    }

    @Test func scheduleWithAManualClock() {
        // The schedule's delays, as the breaker applies them to requests.
        var breaker = CircuitBreaker()
        let high: (Int64) -> Int64 = { $0 }  // the top of each jitter window
        var clock: Int64 = 10_000
        let first = breaker.acquire(nowMillis: clock)
        #expect(first)
        // three failures: windows of 500, 1000, 2000 ms (upper end here)
        for expected in [500, 1000, 2000] as [Int64] {
            let next = breaker.recordFailure(nowMillis: clock, retryAfter: nil, draw: high)
            #expect(next == clock + expected)
            let early = breaker.acquire(nowMillis: next - 1)
            #expect(!early)
            clock = next
            let onTime = breaker.acquire(nowMillis: clock)
            #expect(onTime)
        }
        // Retry-After overrides the jitter
        let afterRetryAfter = breaker.recordFailure(nowMillis: clock, retryAfter: "7", draw: high)
        #expect(afterRetryAfter == clock + 7000)
        #expect(breaker.consecutiveFailures == 4)
        breaker.recordSuccess()
        #expect(breaker.consecutiveFailures == 0)
        let afterSuccess = breaker.acquire(nowMillis: clock)
        #expect(afterSuccess)
        // after a success the window starts from the base again
        let fresh = breaker.recordFailure(nowMillis: clock, retryAfter: nil, draw: high)
        #expect(fresh == clock + 500)
    }
}

@Suite struct BatchEncoderTests {
    @Test func theBodyIsTheStoredMessagesInABatchEnvelope() throws {
        let messages = (1...3).map { i in
            SpoolMessage(seq: Int64(i), messageID: "m\(i)", writeKey: "", receivedAtMillis: 0, attempts: 0,
                         payload: Array(#"{"message_id":"m\#(i)","type":"identify"}"#.utf8))
        }
        let body = BatchEncoder.encode(messages, sentAt: Date(timeIntervalSince1970: 1_486_642_112.387))
        let json = try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any]
        let batch = json?["batch"] as? [[String: Any]]
        #expect(batch?.map { $0["message_id"] as? String } == ["m1", "m2", "m3"])
        #expect(json?["sent_at"] as? String == "2017-02-09T12:08:32.387Z")
    }

    @Test func batchURLJoinsTheBase() {
        #expect(ForwarderOptions(upstream: "http://127.0.0.1:9/").batchURL == "http://127.0.0.1:9/v1/batch")
        #expect(ForwarderOptions(upstream: "https://pipe.plainflow.net").batchURL == "https://pipe.plainflow.net/v1/batch")
    }
}

@Suite struct TransportFailureTests {
    @Test func credentialsInAURLAreTakenOutOfLibcurlsMessage() throws {
        #expect(TransportFailure.withoutCredentials("Unsupported proxy scheme for 'socks9://bob:secret@proxy:1080'")
            == "Unsupported proxy scheme for 'socks9://***@proxy:1080'")
        #expect(TransportFailure.withoutCredentials("Unsupported proxy syntax in 'bob:secret@proxy:1:x'")
            == "Unsupported proxy syntax in '***@proxy:1:x'")
        #expect(TransportFailure.withoutCredentials("Failed to connect to 127.0.0.1 port 9 after 0 ms: Couldn't connect to server")
            == "Failed to connect to 127.0.0.1 port 9 after 0 ms: Couldn't connect to server", "nothing to take out")
        #expect(TransportFailure.withoutCredentials("a@b and 'x://u:p@h'") == "***@b and 'x://***@h'")
        // A password with a space, a quote or an @: only the proxy as written tells where it ends.
        let proxy = "http://relay:s3cr3t p4'ss@x@proxy:3128"
        let known = try #require(ProxyCredentials.of(proxy))
        #expect(known == "relay:s3cr3t p4'ss@x")
        #expect(TransportFailure.withoutCredentials("Unsupported proxy syntax in '\(proxy)'", known: [known])
            == "Unsupported proxy syntax in 'http://***@proxy:3128'")
        #expect(ProxyCredentials.of("proxy:3128") == nil && ProxyCredentials.of("u:pw@proxy") == "u:pw")
    }
}
