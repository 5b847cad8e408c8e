// The whole forwarding loop on a manual clock, an in-memory queue and a fake
// upstream: what goes, when, and what happens after each answer. No
// wall-clock waits; every time below is virtual milliseconds.

import Foundation
import Logging
import Synchronization
import Testing
@testable import RelayForward
import RelaySpool

/// One forwarder on fakes, and the checks every run must pass.
struct Harness {
    let clock: ManualClock
    let queue = InMemoryQueue()
    let upstream: FakeUpstream
    let forwarder: Forwarder

    static func options(_ change: (inout ForwarderOptions) -> Void = { _ in }) -> ForwarderOptions {
        var o = ForwarderOptions(upstream: "http://127.0.0.1:9", credentialRetryMillis: 60_000)
        change(&o)
        return o
    }

    init(_ options: ForwarderOptions = Harness.options(), inFlight: Int = 2, stopAtMillis: Int64 = 100_000, logs: LogCapture? = nil,
         answer: @escaping @Sendable (FakeUpstream.Request) -> DeliveryOutcome = { _ in .response(status: 200, retryAfter: nil, body: "") }) {
        let clock = ManualClock(stopAtMillis: stopAtMillis)
        let upstream = FakeUpstream(clock: clock, answer: answer)
        let queue = queue
        self.clock = clock
        self.upstream = upstream
        self.forwarder = Forwarder(queue: { queue }, transports: Array(repeating: upstream, count: inFlight), options: options,
                                   logger: logs?.logger ?? Logger(label: "plainflow-relay.forward"),
                                   clock: clock, jitter: { $0 })  // the top of each jitter window
    }

    /// Runs the loop to the clock's horizon; then no lease may be left and
    /// nothing may have been settled without a lease.
    func run() async throws {
        try await forwarder.run()
        let s = queue.snapshot
        #expect(s.leased.isEmpty, "leases left: \(s.leased.count)")
        #expect(s.violations.isEmpty, "\(s.violations)")
    }

    static func status(_ code: Int, retryAfter: String? = nil) -> DeliveryOutcome {
        .response(status: code, retryAfter: retryAfter, body: "")
    }
}

/// A value captured at a virtual time.
final class Captured<T: Sendable>: Sendable {
    private let box = Mutex<T?>(nil)
    func set(_ v: T) { box.withLock { $0 = v } }
    var value: T? { box.withLock { $0 } }
}

// Each suite's time limit catches a loop that hangs; it counts the time a
// test waits for the shared pool too, which on CI's 2 cores, beside the
// end-to-end suites, came to 52 s of the 1 minute these had.
@Suite(.timeLimit(.minutes(5))) struct FlushTests {
    @Test func aBatchThatIsNotFullGoesAfterTheFlushIntervalWithWhatArrivedMeanwhile() async throws {
        let h = Harness(stopAtMillis: 2_000)
        for i in 0..<10 { h.queue.add("a\(i)", key: "key-a", receivedAtMillis: 0) }
        h.queue.add("b0", key: "key-b", receivedAtMillis: 50)
        h.queue.add("a-late", key: "key-a", receivedAtMillis: 100)
        try await h.run()

        let requests = h.upstream.requests
        try #require(requests.count == 2)
        let flush = h.forwarder.options.flushIntervalMillis
        #expect(requests[0].ids == (0..<10).map { "a\($0)" } + ["a-late"], "topped up with the later message of the same key")
        #expect(requests[0].atMillis == 0 + flush, "went when its oldest message had waited flush_interval")
        #expect(requests[0].writeKey == "key-a")
        #expect(requests[1].ids == ["b0"], "another key: its own batch")
        #expect(requests[1].atMillis == 50 + flush)
        #expect(h.queue.snapshot.nonEmptyLeases == 3, "each message leased once: the lease is kept while the batch waits")
        #expect(h.queue.snapshot.acknowledged.count == 12)
    }

    @Test func aBatchFullByBytesGoesAtOnce() async throws {
        let maxBytes = 2_000
        let h = Harness(Harness.options { $0.maxBatchBytes = maxBytes })
        for i in 0..<30 { h.queue.add("m\(i)", bytes: 200) }
        try await h.run()

        let requests = h.upstream.requests
        let flush = h.forwarder.options.flushIntervalMillis
        #expect(requests.flatMap(\.ids) == (0..<30).map { "m\($0)" }, "all, oldest first, once")
        #expect(requests.allSatisfy { $0.bodyBytes <= maxBytes })
        let early = requests.filter { $0.atMillis < flush }
        #expect(early.count >= 2, "full batches did not wait for the flush deadline: \(requests.map(\.atMillis))")
        #expect(early.allSatisfy { $0.bodyBytes * 10 >= maxBytes * 8 }, "and they were full: \(early.map(\.bodyBytes))")
        #expect(requests.filter { $0.atMillis >= flush }.count == 1, "only the remainder waited")
    }

    @Test func theMessageCountIsAnUpperBound() async throws {
        let h = Harness(Harness.options { $0.maxBatchCount = 4 })
        for i in 0..<10 { h.queue.add("m\(i)") }
        try await h.run()

        let requests = h.upstream.requests
        #expect(requests.map(\.ids.count) == [4, 4, 2])
        #expect(requests[0].atMillis < 200 && requests[1].atMillis < 200, "full by count: at once")
        #expect(requests[2].atMillis == 200)
    }

    @Test func aBacklogOf600ByteCallsDrainsAtAbout80000PerSecondAtTheDefaultPace() async throws {
        let options = Harness.options()
        #expect(options.maxBatchCount == 2_500 && options.maxBatchBytes == 500 * 1024 && options.maxRequestsPerSecond == 100)
        let h = Harness(options)
        let total = 20_000
        for i in 0..<total { h.queue.add("m\(i)", bytes: 600) }
        try await h.run()

        let requests = h.upstream.requests
        #expect(requests.reduce(0) { $0 + $1.ids.count } == total)
        #expect(Set(h.queue.snapshot.acknowledged).count == total)
        #expect(requests.allSatisfy { $0.bodyBytes <= options.maxBatchBytes && $0.ids.count <= options.maxBatchCount })
        #expect(requests.dropLast().allSatisfy { $0.bodyBytes * 10 >= options.maxBatchBytes * 9 }, "batches fill by bytes: \(requests.map { ($0.atMillis, $0.ids.count) })")
        let interval = Int64(1000 / options.maxRequestsPerSecond)
        let seconds = Double(requests.last!.atMillis - requests.first!.atMillis + interval) / 1000
        #expect(Double(total) / seconds >= 80_000, "\(Double(total) / seconds) calls/s over \(requests.count) requests")
    }
}

@Suite(.timeLimit(.minutes(5))) struct PacingTests {
    @Test(arguments: [20.0, 7.0])
    func requestsStartAtMostMaxRequestsPerSecond(_ rate: Double) async throws {
        let h = Harness(Harness.options { $0.maxBatchCount = 1; $0.maxRequestsPerSecond = rate })
        for i in 0..<12 { h.queue.add("m\(i)") }
        try await h.run()

        let starts = h.upstream.requests.map(\.atMillis)
        #expect(starts.count == 12)
        let gaps = zip(starts.dropFirst(), starts).map { $0 - $1 }
        let interval = 1000.0 / rate
        #expect(gaps.allSatisfy { Double($0) >= interval / 2 }, "never two at once: \(starts)")
        #expect(starts.indices.allSatisfy { i in starts[i...].prefix { $0 < starts[i] + 1000 }.count <= Int(rate) },
                "at most \(rate) in any second: \(starts)")
        #expect(Double(starts.last! - starts.first!) < 11 * interval + 2, "and no slower than the pace: \(gaps)")
        #expect(h.upstream.requests.contains { $0.peakConcurrency == 2 }, "two in flight, still spaced")
    }
}

@Suite(.timeLimit(.minutes(5))) struct FailureTests {
    @Test func aFailingUpstreamIsProbedOneRequestAtATimeWithBackoff() async throws {
        let h = Harness(Harness.options { $0.maxBatchCount = 5 }) { $0.index < 3 ? Harness.status(503) : Harness.status(200) }
        for i in 0..<40 { h.queue.add("m\(i)") }
        try await h.run()

        let requests = h.upstream.requests
        let retries = h.queue.snapshot.retries
        let firstFailureAt = try #require(retries.first?.atMillis)
        let firstSuccess = try #require(requests.firstIndex { $0.index >= 3 })
        let probes = requests[..<(firstSuccess + 1)].filter { $0.atMillis >= firstFailureAt + 1 }
        #expect(probes.count >= 2)
        #expect(probes.allSatisfy { $0.peakConcurrency == 1 }, "one probe at a time: \(probes.map(\.peakConcurrency))")
        #expect(requests[(firstSuccess + 1)...].contains { $0.peakConcurrency == 2 }, "healthy again: concurrency returns")
        // each probe waits for the breaker: the top of the window of its failure count
        let policy = BackoffPolicy()
        for (earlier, later) in zip(probes, probes.dropFirst()) {
            let failures = retries.filter { $0.atMillis <= earlier.atMillis }.count  // its own included
            #expect(later.atMillis - earlier.atMillis == policy.ceilingMillis(afterFailures: failures))
        }
        #expect(probes.first?.header("X-Retry-Count") == "1")
        #expect(Set(h.queue.snapshot.acknowledged) == Set((0..<40).map { "m\($0)" }))
        #expect(h.queue.snapshot.acknowledged.count == 40)
        #expect(h.forwarder.status.state == .ok && h.forwarder.status.consecutiveFailures == 0)
    }

    /// While the upstream is down, each probe reads one batch from the spool,
    /// not a whole round it would give back after the probe failed.
    @Test func whileProbingOnlyTheProbesBatchIsRead() async throws {
        let h = Harness(Harness.options { $0.maxBatchCount = 5 }) { $0.index < 6 ? Harness.status(503) : Harness.status(200) }
        for i in 0..<40 { h.queue.add("m\(i)") }
        try await h.run()

        let requests = h.upstream.requests
        let firstFailureAt = try #require(h.queue.snapshot.retries.first?.atMillis)
        let recoveredAt = try #require(requests.first { $0.index >= 6 }?.atMillis)
        // The probes that failed (the one that succeeded shares its moment with the next round's reads).
        let probes = requests.filter { $0.atMillis > firstFailureAt && $0.atMillis < recoveredAt }
        let leased = h.queue.snapshot.leases.filter { $0.atMillis > firstFailureAt && $0.atMillis < recoveredAt }
        #expect(probes.count >= 3)
        #expect(leased.reduce(0) { $0 + $1.count } <= probes.count * 5,
                "\(probes.count) probes, messages leased meanwhile: \(leased.map(\.count))")
        #expect(Set(h.queue.snapshot.acknowledged) == Set((0..<40).map { "m\($0)" }))
    }

    @Test func retryAfterIsHonoured() async throws {
        let h = Harness { $0.index == 0 ? Harness.status(429, retryAfter: "3") : Harness.status(200) }
        for i in 0..<3 { h.queue.add("m\(i)") }
        let during = Captured<UpstreamStatus>()
        h.clock.at(1_000) { during.set(h.forwarder.status) }
        try await h.run()

        let r = h.upstream.requests
        try #require(r.count == 2)
        #expect(r[1].atMillis - r[0].atMillis >= 3_000, "waited \(r[1].atMillis - r[0].atMillis) ms, not the 500 ms backoff")
        #expect(r[1].atMillis - r[0].atMillis < 3_000 + h.forwarder.options.flushIntervalMillis)
        #expect(r[1].ids == r[0].ids && r[1].header("X-Retry-Count") == "1" && r[0].header("X-Retry-Count") == nil)
        #expect(r[1].sentAt != r[0].sentAt, "sent_at restamped per attempt")
        #expect(during.value?.state == .retrying && during.value?.nextAttemptAtMillis == r[0].atMillis + 3_000)
    }

    @Test(arguments: [400, 413, 422])
    func splittingIsolatesTheOneRefusedMessageToDeadLetters(_ code: Int) async throws {
        let h = Harness { $0.ids.contains("m7") ? Harness.status(code) : Harness.status(200) }
        for i in 0..<16 { h.queue.add("m\(i)") }
        try await h.run()

        let s = h.queue.snapshot
        #expect(s.deadLetters.map(\.id) == ["m7"])
        #expect(s.deadLetters.first?.status == code)
        #expect(Set(s.acknowledged) == Set((0..<16).filter { $0 != 7 }.map { "m\($0)" }) && s.acknowledged.count == 15)
        let requests = h.upstream.requests
        #expect(requests.count <= 1 + 2 * 4, "halving: at most two requests per level")
        #expect(requests.contains { $0.ids == ["m7"] })
        #expect(h.forwarder.status.deadLettered == 1)
    }
}

@Suite(.timeLimit(.minutes(5))) struct OutageLogTests {
    @Test func anOutageIsLoggedWhenItBeginsOnceAMinuteWhileItLastsAndWhenItEnds() async throws {
        let logs = LogCapture()
        let h = Harness(stopAtMillis: 400_000, logs: logs) { r in
            r.atMillis < 200_000 ? Harness.status(503) : Harness.status(200)
        }
        h.queue.add("m0")
        try await h.run()

        let attempts = h.upstream.requests.count
        let loud = logs.messages.filter { $0.level >= .notice }.map(\.message)
        #expect(loud.filter { $0.hasPrefix("upstream delivery failed") }.count == 1, "\(loud)")
        let still = loud.filter { $0.hasPrefix("upstream delivery still failing") }.count
        #expect(still >= 2 && still <= 3, "about once a minute over 200 s: \(still)")
        #expect(loud.filter { $0.hasPrefix("forwarding recovered") }.count == 1)
        let recovered = logs.messages.first { $0.message.hasPrefix("forwarding recovered") }?.metadata ?? [:]
        let outage = recovered["outage_seconds"].flatMap { Int("\($0)") } ?? 0
        #expect(recovered["was"] == "retrying" && outage >= 200 && outage <= 260, "the 200 s of 503s, to the next probe: \(recovered)")
        #expect(recovered["failed_attempts"].map { "\($0)" } == "\(attempts - 1)", "every refused attempt: \(recovered)")
        #expect(attempts > loud.count, "fewer lines than attempts (\(attempts) attempts)")
        #expect(h.queue.snapshot.acknowledged == ["m0"])
    }
}

@Suite(.timeLimit(.minutes(5))) struct SpoolFailureTests {
    /// A full disk after the upstream took a batch: the batch is not sent
    /// again; its acknowledgement is tried later and later until the spool
    /// records it, and `delivered` counts it once.
    @Test func aDeliveryTheSpoolCannotRecordIsRecordedLaterNotSentAgain() async throws {
        let h = Harness(stopAtMillis: 200_000)
        h.queue.failAcknowledgements(untilMillis: 120_000)
        for i in 0..<5 { h.queue.add("m\(i)") }
        try await h.run()

        #expect(h.upstream.requests.count == 1, "the upstream has the batch: \(h.upstream.requests.map(\.atMillis))")
        #expect(h.queue.snapshot.acknowledged == (0..<5).map { "m\($0)" })
        #expect(h.forwarder.status.delivered == 5, "counted once, when the spool recorded it")
        let attempts = h.queue.snapshot.acknowledgeAttempts
        #expect(attempts.filter { !$0.failed }.count == 1 && attempts.last?.failed == false)
        let gaps = zip(attempts.dropFirst(), attempts).map { $0.atMillis - $1.atMillis }
        #expect(gaps == gaps.sorted() && (gaps.last ?? 0) >= 30_000, "a growing backoff: \(gaps)")
        #expect(attempts.count <= 10, "\(attempts.count) attempts in 120 s")
    }

    /// The same, with the upstream answering a message that must go to dead
    /// letters: the refused dead letter is retried with a growing backoff,
    /// not sent to the upstream as fast as the pace allows.
    @Test func aDeadLetterTheSpoolCannotRecordIsRetriedWithAGrowingBackoff() async throws {
        let h = Harness(stopAtMillis: 100_000) { _ in Harness.status(400) }
        h.queue.failDeadLetters(untilMillis: 60_000)
        h.queue.add("poison")
        try await h.run()

        let sent = h.upstream.requests.map(\.atMillis)
        #expect(sent.count <= 9, "at most one request per doubling backoff in 60 s: \(sent)")
        #expect(h.queue.snapshot.deadLetters.map(\.id) == ["poison"])
    }
}

@Suite(.timeLimit(.minutes(5))) struct PauseTests {
    @Test(arguments: [401, 403])
    func refusedCredentialsPauseUntilResume(_ code: Int) async throws {
        let logs = LogCapture()
        // The relay's own key: every batch carries it, so its refusal stops them all.
        let h = Harness(Harness.options { $0.writeKey = "relay-key" }, logs: logs) { $0.index == 0 ? Harness.status(code) : Harness.status(200) }
        for i in 0..<5 { h.queue.add("m\(i)") }
        let during = Captured<(UpstreamStatus, Int, [String])>()
        h.clock.at(5_000) { during.set((h.forwarder.status, h.upstream.requests.count, h.queue.queuedIDs)) }
        h.clock.at(10_000) { h.forwarder.resume() }
        try await h.run()

        #expect(during.value?.0.state == .pausedCredentials)
        #expect(during.value?.1 == 1, "paused: no further requests")
        #expect(during.value?.2.count == 5, "nothing dropped")
        let r = h.upstream.requests
        try #require(r.count == 2)
        #expect(r[1].atMillis >= 10_000 && r[1].atMillis <= 11_000, "resume() ends the pause at once: \(r[1].atMillis)")
        #expect(r[1].ids == r[0].ids)
        #expect(r[0].header("X-Retry-Count") == nil && r[1].header("X-Retry-Count") == "1", "the attempt after a pause is a retry")
        #expect(h.queue.snapshot.deadLetters.isEmpty && h.queue.snapshot.acknowledged.count == 5)
        #expect(h.forwarder.status.state == .ok)
        // The recovery line says what was wrong, with no retry counts: a pause is not an outage.
        let recovered = logs.messages.first { $0.message.hasPrefix("forwarding recovered") }?.metadata ?? [:]
        #expect(recovered["was"] == "paused_credentials" && recovered["last_error"].map { "\($0)" }?.contains("\(code)") == true, "\(recovered)")
        #expect(recovered["failed_attempts"] == nil && recovered["outage_seconds"] == nil, "\(recovered)")
    }

    /// Apps that send their own keys (the relay has none): one app's wrong
    /// key holds back that app's calls only, never the others'.
    @Test func anAppsRefusedKeyHoldsBackOnlyThatAppsCalls() async throws {
        let logs = LogCapture()
        let h = Harness(stopAtMillis: 200_000, logs: logs) { $0.writeKey?.hasPrefix("wrong") == true ? Harness.status(401) : Harness.status(200) }
        h.queue.add("bad-1", key: "wrong")
        for i in 0..<5 { h.queue.add("good-\(i)", key: "right") }
        h.queue.add("bad-2", key: "wrong")
        h.queue.add("other-bad", key: "wrong-too")
        for i in 5..<8 { h.queue.add("good-\(i)", key: "right") }
        try await h.run()

        #expect(Set(h.queue.snapshot.acknowledged) == Set((0..<8).map { "good-\($0)" }), "the other app's calls all went")
        #expect(h.queue.queuedIDs == ["bad-1", "bad-2", "other-bad"], "nothing dropped")
        let status = h.forwarder.status
        #expect(status.state == .ok, "no pause")
        #expect(status.lastError?.contains("refused the write key an app sent") == true, "\(String(describing: status.lastError))")
        let wrongTries = h.upstream.requests.filter { $0.writeKey?.hasPrefix("wrong") == true }.map(\.atMillis)
        #expect(wrongTries.count >= 4 && wrongTries.count <= 8, "each key tried again every 60 s (credential_retry here), not hammered: \(wrongTries)")
        #expect(status.appKeyRefusals == Int64(wrongTries.count) && status.appKeyRefusedAtMillis != nil, "shown in status and metrics")
        #expect(h.forwarder.refusedAppKeys.fingerprints(nowMillis: h.clock.nowMillis(), max: 0).total == 2, "both keys known refused at the end")
        #expect(!logs.messages.contains { $0.message.contains("wrong") || $0.metadata.description.contains("wrong") }, "never the key itself")
        let lines = logs.messages.filter { $0.message.contains("refused the write key an app sent") }
        #expect(Set(lines.compactMap { $0.metadata["message_id"].map { "\($0)" } }) == ["bad-1", "other-bad"], "each app's refusal is told, once a minute")
        // Which key, by the start of its SHA-256 (`printf %s wrong | sha256sum`), never the key.
        #expect(Set(lines.compactMap { $0.metadata["key_sha256"].map { "\($0)" } }) == ["8810ad581e59", "6b03943fb4aa"], "\(lines.map(\.metadata))")
    }

    /// What ingest reads to stop one app's refused key from filling the
    /// spool: the key is known refused from the upstream's refusal until a
    /// batch sent with it is delivered (the key was restored upstream).
    @Test func anAppsKeyIsKnownRefusedUntilABatchSentWithItIsDelivered() async throws {
        let restored = Captured<Bool>()
        let h = Harness(stopAtMillis: 200_000) {
            $0.writeKey == "wrong" && restored.value != true ? Harness.status(401) : Harness.status(200)
        }
        h.queue.add("bad-1", key: "wrong")
        h.queue.add("good-1", key: "right")
        let during = Captured<(wrong: Bool, right: Bool)>()
        let keys = h.forwarder.refusedAppKeys
        h.clock.at(5_000) {
            during.set((keys.refusal(of: "wrong", nowMillis: 5_000) != nil, keys.refusal(of: "right", nowMillis: 5_000) != nil))
            restored.set(true)
        }
        try await h.run()

        #expect(during.value?.wrong == true && during.value?.right == false, "\(String(describing: during.value))")
        #expect(h.queue.snapshot.acknowledged.contains("bad-1"), "tried again after the hold, and taken")
        #expect(keys.refusal(of: "wrong", nowMillis: h.clock.nowMillis()) == nil, "known refused no more once a batch with it went")
    }

    /// The key was restored upstream and the operator reloads (SIGHUP):
    /// the held calls go at once, not at the next try minutes later, and
    /// the log says the key is taken again.
    @Test func aReloadTriesAnAppsRefusedKeyAgainAtOnce() async throws {
        let logs = LogCapture()
        let restored = Captured<Bool>()
        let h = Harness(stopAtMillis: 30_000, logs: logs) {
            $0.writeKey == "wrong" && restored.value != true ? Harness.status(401) : Harness.status(200)
        }
        for i in 0..<3 { h.queue.add("bad-\(i)", key: "wrong") }
        h.clock.at(5_000) {
            restored.set(true)
            h.forwarder.reload(h.forwarder.options)  // nothing changed but the upstream
        }
        try await h.run()

        let tries = h.upstream.requests.filter { $0.writeKey == "wrong" }.map(\.atMillis)
        #expect(tries.count == 2 && tries[1] >= 5_000 && tries[1] <= 6_000, "tried again at the reload: \(tries)")
        #expect(Set(h.queue.snapshot.acknowledged) == ["bad-0", "bad-1", "bad-2"])
        let line = logs.messages.first { $0.message.hasPrefix("the upstream accepted an app's write key") }
        #expect(line?.metadata["key_sha256"].map { "\($0)" } == "8810ad581e59", "\(logs.messages.map(\.message))")
    }

    /// A refused key whose calls left some other way (expired, purged) is
    /// not tried again, so its refusal lapses two tries after the last one.
    @Test func anAppsRefusedKeyLapsesTwoTriesAfterItsLastRefusal() async throws {
        let h = Harness(stopAtMillis: 10_000) { $0.writeKey == "wrong" ? Harness.status(401) : Harness.status(200) }
        h.queue.add("bad-1", key: "wrong")
        try await h.run()
        let keys = h.forwarder.refusedAppKeys
        let retry = h.forwarder.options.credentialRetryMillis
        let refusedAt = try #require(h.upstream.requests.first { $0.writeKey == "wrong" }?.atMillis)
        #expect(keys.refusal(of: "wrong", nowMillis: refusedAt + 2 * retry - 1) != nil)
        #expect(keys.refusal(of: "wrong", nowMillis: refusedAt + 2 * retry + 1) == nil, "lapsed")
    }

    /// An app with a refused key and a long backlog: its calls wait with the
    /// refused batch, so each round costs one request (two batches may be in
    /// flight when the refusal comes back), not one for every batch of its
    /// backlog, and the other app's calls behind them go meanwhile.
    @Test func aRefusedKeysBacklogCostsARequestARoundNotOneABatch() async throws {
        let h = Harness(Harness.options { $0.maxBatchCount = 10 }, stopAtMillis: 200_000) {
            $0.writeKey == "wrong" ? Harness.status(401) : Harness.status(200)
        }
        for i in 0..<500 { h.queue.add("bad-\(i)", key: "wrong") }
        for i in 0..<20 { h.queue.add("good-\(i)", key: "right") }
        try await h.run()

        let requests = h.upstream.requests
        #expect(Set(h.queue.snapshot.acknowledged) == Set((0..<20).map { "good-\($0)" }), "the other app's calls all went")
        let goodDone = requests.filter { $0.writeKey == "right" }.map(\.atMillis).max() ?? .max
        #expect(goodDone < 1_000, "at once, not after the refused key's next round: \(goodDone) ms")
        let wrongTries = requests.filter { $0.writeKey == "wrong" }.map(\.atMillis)
        #expect(wrongTries.count >= 4 && wrongTries.count <= 2 * 4, "a round every 60 s over 200 s, not 50 batches: \(wrongTries)")
        #expect(h.queue.queuedIDs.count == 500, "nothing dropped")
    }

    @Test(arguments: [301, 404, 405, 418, 501])
    func aConfigurationErrorPausesAndTheSlowProbeResumes(_ code: Int) async throws {
        let retry: Int64 = 30_000
        let h = Harness(Harness.options { $0.credentialRetryMillis = retry }) { $0.index < 2 ? Harness.status(code) : Harness.status(200) }
        for i in 0..<5 { h.queue.add("m\(i)") }
        let during = Captured<(UpstreamStatus, Int, [String])>()
        h.clock.at(5_000) { during.set((h.forwarder.status, h.upstream.requests.count, h.queue.queuedIDs)) }
        try await h.run()

        #expect(during.value?.0.state == .pausedConfiguration)
        #expect(during.value?.0.lastError == "HTTP \(code)")
        #expect(during.value?.1 == 1, "paused: no further requests")
        #expect(during.value?.2.count == 5, "nothing dropped")
        let r = h.upstream.requests
        try #require(r.count == 3)
        for (earlier, later) in zip(r, r.dropFirst()) {
            #expect(later.atMillis - earlier.atMillis >= retry && later.atMillis - earlier.atMillis <= retry + 1_000)
        }
        #expect(h.queue.snapshot.deadLetters.isEmpty, "a configuration error dead-letters nothing")
        #expect(h.queue.snapshot.acknowledged.count == 5)
        #expect(UpstreamStatus.State.pausedConfiguration.rawValue == "paused_configuration")
    }

    /// A failover: the old upstream asked for 300 s (Retry-After); the new
    /// one, named by a reload, gets the calls within a second, not after them.
    @Test func aReloadToAnotherUpstreamDoesNotWaitOutTheOldOnesRetryAfter() async throws {
        let old = Harness.options { $0.upstream = "http://127.0.0.1:9/old" }
        let new = Harness.options()
        let h = Harness(old, stopAtMillis: 60_000) {
            $0.url == new.batchURL ? Harness.status(200) : .response(status: 503, retryAfter: "300", body: "")
        }
        for i in 0..<3 { h.queue.add("m\(i)") }
        h.clock.at(5_000) { h.forwarder.reload(new) }
        try await h.run()

        let r = h.upstream.requests
        try #require(r.count == 2, "\(r.map(\.url))")
        #expect(r[0].url == old.batchURL && r[1].url == new.batchURL)
        #expect(r[1].atMillis >= 5_000 && r[1].atMillis <= 6_000, "at \(r[1].atMillis)")
        #expect(h.queue.snapshot.acknowledged.count == 3)
    }

    /// A reload that gives the relay its own key ends the holds on apps'
    /// refused keys: their calls go at once, the refused batch too.
    @Test func aReloadThatSetsTheRelaysKeyEndsTheHoldsOnAppsKeys() async throws {
        let appKeys = Harness.options { $0.maxBatchCount = 10 }
        let ownKey = Harness.options { $0.maxBatchCount = 10; $0.writeKey = "relay-key" }
        let h = Harness(appKeys, inFlight: 1, stopAtMillis: 70_000) { $0.writeKey == "wrong" ? Harness.status(401) : Harness.status(200) }
        for i in 0..<30 { h.queue.add("m\(i)", key: "wrong") }
        let refused = Captured<(before: Bool, after: Bool)>()
        let keys = h.forwarder.refusedAppKeys
        h.clock.at(5_000) {
            let before = keys.refusal(of: "wrong", nowMillis: 5_000) != nil
            h.forwarder.reload(ownKey)
            refused.set((before, keys.refusal(of: "wrong", nowMillis: 5_000) != nil))  // before any batch goes again
        }
        let early = Captured<Int>()
        h.clock.at(7_000) { early.set(h.queue.snapshot.acknowledged.count) }
        try await h.run()

        #expect(early.value == 30, "all went after the reload, not after the 60 s retry")
        #expect(refused.value?.before == true && refused.value?.after == false, "the reload forgets apps' keys: \(String(describing: refused.value))")
        #expect(h.upstream.requests.filter { $0.writeKey == "wrong" }.count == 1)
    }

    @Test func aReloadWithTheRightURLEndsAConfigurationPauseAtOnce() async throws {
        let wrong = Harness.options { $0.upstream = "http://127.0.0.1:9/wrong" }
        let right = Harness.options()
        let h = Harness(wrong) { $0.url == right.batchURL ? Harness.status(200) : Harness.status(404) }
        for i in 0..<3 { h.queue.add("m\(i)") }
        h.clock.at(5_000) { h.forwarder.reload(right) }
        try await h.run()

        let r = h.upstream.requests
        try #require(r.count == 2)
        #expect(r[0].url == wrong.batchURL && r[1].url == right.batchURL)
        #expect(r[1].atMillis >= 5_000 && r[1].atMillis <= 6_000)
        #expect(h.queue.snapshot.acknowledged.count == 3 && h.queue.snapshot.deadLetters.isEmpty)
    }
}

@Suite(.timeLimit(.minutes(5))) struct OrderTests {
    @Test func oldestFirstAndOneWriteKeyPerBatch() async throws {
        let keys = ["key-a", "key-b", "key-c"]
        let h = Harness(Harness.options { $0.maxBatchCount = 4 })
        for i in 0..<30 { h.queue.add("m\(i)", key: keys[(i * 7 / 5) % 3], receivedAtMillis: Int64(i * 10)) }
        let keyOf = Dictionary(uniqueKeysWithValues: (0..<30).map { ("m\($0)", h.queue.writeKey(of: "m\($0)")!) })
        try await h.run()

        let requests = h.upstream.requests
        let withOldest = try #require(requests.first { $0.ids.contains("m0") })
        #expect(withOldest.atMillis <= h.forwarder.options.flushIntervalMillis, "the oldest message waited no longer than flush_interval")
        #expect(withOldest.ids.first == "m0")
        for r in requests {
            #expect(Set(r.ids.map { keyOf[$0]! }) == [r.writeKey!], "one write key per batch, sent as the auth")
        }
        for key in keys {
            let sent = requests.flatMap(\.ids).filter { keyOf[$0] == key }.map { Int($0.dropFirst())! }
            #expect(sent == sent.sorted(), "oldest first within \(key): \(sent)")
        }
        #expect(h.queue.snapshot.acknowledged.count == 30)
    }

    @Test func theRelaysWriteKeyWinsOverTheMessages() async throws {
        let h = Harness(Harness.options { $0.writeKey = "relay-key" })
        h.queue.add("m0", key: "app-key")
        try await h.run()
        #expect(h.upstream.requests.map(\.writeKey) == ["relay-key"])
    }

    @Test func gzipWhenConfigured() async throws {
        let h = Harness(Harness.options { $0.gzip = true })
        for i in 0..<20 { h.queue.add("m\(i)", bytes: 300) }
        try await h.run()
        let r = try #require(h.upstream.requests.first)
        #expect(r.header("Content-Encoding") == "gzip")
        #expect(r.bodyBytes < 20 * 300 / 4, "compressed: \(r.bodyBytes) bytes")
    }
}

@Suite(.timeLimit(.minutes(5))) struct ShutdownTests {
    @Test func gracefulShutdownLetsTheInFlightRequestEndAndRecordsIt() async throws {
        let h = Harness(inFlight: 1, stopAtMillis: .max)
        for i in 0..<3 { h.queue.add("a\(i)", key: "key-a") }
        for i in 0..<3 { h.queue.add("b\(i)", key: "key-b") }
        h.upstream.holdNextRequest()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await h.run() }
            for _ in 0..<1_000_000 where !h.upstream.isHolding { await Task.yield() }
            try #require(h.upstream.isHolding)
            group.cancelAll()
            for _ in 0..<100 { await Task.yield() }
            h.upstream.finishHeld()
            try await group.waitForAll()
        }
        let s = h.queue.snapshot
        #expect(h.upstream.requests.count == 1, "no new request after the shutdown began")
        #expect(s.acknowledged == ["a0", "a1", "a2"], "the in-flight request's outcome was recorded")
        #expect(h.queue.queuedIDs == ["b0", "b1", "b2"])
    }
}

@Suite struct PartsTests {
    /// Starts `count` requests as soon as the pacer lets each go, the
    /// loop taking `work(i)` ms before it asks for the i-th; the start times.
    private static func paced(_ pacer: inout Pacer, count: Int, work: (Int) -> Int64) -> [Int64] {
        var now: Int64 = 1_000
        var starts: [Int64] = []
        for i in 0..<count {
            now += work(i)
            now += pacer.delayMillis(nowMillis: now)
            pacer.recordStart(nowMillis: now)
            starts.append(now)
        }
        return starts
    }

    @Test func noSecondEverHoldsMoreRequestsThanTheRate() {
        var rng = SystemRandomNumberGenerator()
        for rate in [100.0, 250, 30, 7.5, 3, 1.5, 1, 0.5] {
            var pacer = Pacer(requestsPerSecond: rate)
            let interval = pacer.intervalMillis
            // A loop sometimes fast, sometimes late by up to three intervals.
            let starts = Self.paced(&pacer, count: 2_000) { _ in Int64.random(in: 0...(3 * interval), using: &rng) }
            let allowed = max(1, Int(rate.rounded(.down)))
            let window: Int64 = rate < 1 ? interval : 1_000  // (below 1/s: one start in each 1/rate)
            var busiest = 0
            var first = 0
            for last in starts.indices {
                while starts[last] - starts[first] >= window { first += 1 }
                busiest = max(busiest, last - first + 1)
            }
            #expect(busiest <= allowed, "\(rate)/s: \(busiest) requests started within \(window) ms")
        }
    }

    @Test func aRoundThatStartedLateIsMadeUpSoABacklogDrainsAtTheRateAskedFor() {
        var pacer = Pacer(requestsPerSecond: 100)
        #expect(pacer.delayMillis(nowMillis: 0) == 0)
        // Reading and encoding take 6 ms, and 12 every other request: 9 ms on average, under the 10 ms interval.
        let starts = Self.paced(&pacer, count: 1_000) { $0 % 2 == 0 ? 6 : 12 }
        let seconds = Double(starts.last! - starts.first!) / 1000
        #expect(Double(starts.count - 1) / seconds >= 99, "\(Double(starts.count - 1) / seconds) requests/s where 100 were allowed")
        pacer.requestsPerSecond = 0
        #expect(pacer.delayMillis(nowMillis: starts.last!) == 0, "0: no limit")
    }

    @Test func aPauseEndsOnResumeOrWhenItsTimeIsUp() {
        var p = PauseState()
        #expect(p.check(nowMillis: 0, resumeRequested: false) == .running)
        p.begin(.configuration, nowMillis: 1_000, retryMillis: 5_000)
        #expect(p.check(nowMillis: 2_000, resumeRequested: false) == .paused(waitMillis: 4_000))
        #expect(p.check(nowMillis: 2_000, resumeRequested: true) == .resumed(.configuration))
        #expect(p.check(nowMillis: 2_001, resumeRequested: false) == .running)
        p.begin(.credentials, nowMillis: 0, retryMillis: 100)
        #expect(p.check(nowMillis: 100, resumeRequested: false) == .resumed(.credentials))
    }

    /// After the wall clock was set back, the spool stores new calls at the
    /// time of the last one before (it keeps receipt times in order): their
    /// batch goes a flush interval after its lease, not once the clock has
    /// caught up with that time.
    @Test func aBatchOfCallsStoredAheadOfTheClockGoesAFlushIntervalAfterItsLease() {
        var b = Batcher(limits: .init(maxCount: 100, maxBytes: 1 << 20, flushIntervalMillis: 200), maxPending: 2)
        let ahead = SpoolMessage(seq: 1, messageID: "m", writeKey: "k", receivedAtMillis: 3_605_000, attempts: 0,
                                 payload: Array(repeating: 0x20, count: 100))  // an hour ahead of the clock
        #expect(b.add([ahead], leasedAtMillis: 5_000).isEmpty)
        #expect(!b.hasReady(nowMillis: 5_199))
        #expect(b.hasReady(nowMillis: 5_200))
        #expect(b.nextWakeMillis(nowMillis: 5_000) <= 200)
    }

    @Test func theBatcherSealsABatchWhenTheNextMessageDoesNotFit() {
        var b = Batcher(limits: .init(maxCount: 100, maxBytes: 64 + 100 + 1 + 100, flushIntervalMillis: 200), maxPending: 2)
        let m = (0..<5).map { SpoolMessage(seq: Int64($0), messageID: "m\($0)", writeKey: "k", receivedAtMillis: 0, attempts: 0,
                                           payload: Array(repeating: 0x20, count: 100)) }
        let leftover = b.add(m, leasedAtMillis: 0)
        #expect(b.pending.map { $0.messages.map(\.messageID) } == [["m0", "m1"], ["m2", "m3"]])
        #expect(leftover.map(\.messageID) == ["m4"], "beyond maxPending: given back")
        #expect(b.pending.allSatisfy { b.isReady($0, nowMillis: 0) }, "both full")
    }
}
