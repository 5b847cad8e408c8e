// The production ForwardQueue on a real spool file: leases, retries and dead
// letters go through the spool's public API, and the whole forwarder runs on
// it with a fake upstream.

import Foundation
import Testing
@testable import RelayForward
import RelaySpool

@Suite(.timeLimit(.minutes(5))) struct SpoolForwardQueueTests {
    static func freshSpool() throws -> (Spool, String) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fwdq-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // The spool runs maintenance (max_age) by this clock: the tests use small times.
        return (try Spool(options: SpoolOptions(path: dir + "/spool.db"), nowMillis: { 1_000 }), dir)
    }

    static func append(_ spool: Spool, _ ids: [String], key: String = "k", priority: SpoolPriority = .live, at: Int64 = 0) async throws {
        _ = try await spool.append(ids.map { SpoolAppend(messageID: $0, writeKey: key, priority: priority, receivedAtMillis: at,
                                                          payload: Array(#"{"message_id":"\#($0)"}"#.utf8)) })
    }

    /// The ids of the next lease.
    static func ids(_ q: SpoolForwardQueue, at now: Int64, max: Int) throws -> [String] {
        try q.leaseBatch(nowMillis: now, maxCount: max, maxBytes: 10_000).map(\.messageID)
    }

    // A lease reads on from where the rows in flight end (SpoolReader's
    // cursor); these pin down that it never skips a row that is still queued.

    @Test func rowsGivenBackUnsentAreLeasedAgainBeforeNewerOnes() async throws {
        let (spool, dir) = try Self.freshSpool()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await Self.append(spool, (0..<6).map { "m\($0)" })
        let q = try SpoolForwardQueue(spool: spool)
        let first = try q.leaseBatch(nowMillis: 1_000, maxCount: 2, maxBytes: 10_000)
        let second = try q.leaseBatch(nowMillis: 1_000, maxCount: 2, maxBytes: 10_000)
        #expect(first.map(\.messageID) == ["m0", "m1"] && second.map(\.messageID) == ["m2", "m3"])
        q.release(first)  // given back unsent (the forwarder stopped, or the upstream is being probed)
        #expect(try Self.ids(q, at: 1_000, max: 2) == ["m0", "m1"])
        #expect(try Self.ids(q, at: 1_000, max: 10) == ["m4", "m5"])
        await spool.close()
    }

    @Test func rowsInBackoffBehindTheRowsInFlightAreLeasedOnceDue() async throws {
        let (spool, dir) = try Self.freshSpool()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await Self.append(spool, (0..<8).map { "m\($0)" })
        let q = try SpoolForwardQueue(spool: spool)
        let first = try q.leaseBatch(nowMillis: 1_000, maxCount: 2, maxBytes: 10_000)
        let second = try q.leaseBatch(nowMillis: 1_000, maxCount: 2, maxBytes: 10_000)
        try await q.scheduleRetry(first, error: "HTTP 503", nextAttemptAtMillis: 5_000, nowMillis: 1_000)
        q.release(first)
        // Later rows go while m0 and m1 wait, and reads pass over them more than once.
        #expect(try Self.ids(q, at: 2_000, max: 2) == ["m4", "m5"])
        try await q.acknowledge(second, nowMillis: 2_000)
        q.release(second)
        #expect(try Self.ids(q, at: 3_000, max: 2) == ["m6", "m7"])
        #expect(try q.leaseBatch(nowMillis: 4_000, maxCount: 10, maxBytes: 10_000).isEmpty)
        #expect(try Self.ids(q, at: 5_000, max: 10) == ["m0", "m1"])
        await spool.close()
    }

    @Test func backoffLeftByAnEarlierRunIsNotSkippedEither() async throws {
        let (spool, dir) = try Self.freshSpool()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await Self.append(spool, (0..<4).map { "m\($0)" })
        let before = try SpoolForwardQueue(spool: spool)
        let tried = try before.leaseBatch(nowMillis: 1_000, maxCount: 2, maxBytes: 10_000)
        try await before.scheduleRetry(tried, error: "HTTP 503", nextAttemptAtMillis: 5_000, nowMillis: 1_000)
        await spool.close()
        // A restart: the file keeps m0 and m1's next attempt, memory keeps no lease.
        let reopened = try Spool(options: SpoolOptions(path: dir + "/spool.db"), nowMillis: { 1_000 })
        let q = try SpoolForwardQueue(spool: reopened)
        #expect(try Self.ids(q, at: 2_000, max: 10) == ["m2", "m3"])
        #expect(try Self.ids(q, at: 5_000, max: 10) == ["m0", "m1"])
        await reopened.close()
    }

    @Test func liveCallsGoFirstWhileImportedOnesAreInFlight() async throws {
        let (spool, dir) = try Self.freshSpool()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await Self.append(spool, ["b0", "b1"], priority: .bulk)
        let q = try SpoolForwardQueue(spool: spool)
        #expect(try Self.ids(q, at: 1_000, max: 10) == ["b0", "b1"])
        try await Self.append(spool, ["l0"])
        try await Self.append(spool, ["b2"], priority: .bulk)
        #expect(try Self.ids(q, at: 1_000, max: 10) == ["l0", "b2"])
        await spool.close()
    }

    @Test func eachPriorityReadsOnFromItsOwnRowsInFlight() async throws {
        let (spool, dir) = try Self.freshSpool()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Older than the bulk rows read with it, a live row of another key is passed over.
        try await Self.append(spool, ["l0"])
        try await Self.append(spool, ["b0"], priority: .bulk)
        try await Self.append(spool, ["l1"], key: "k2")
        try await Self.append(spool, ["b1"], priority: .bulk)
        let q = try SpoolForwardQueue(spool: spool)
        #expect(try Self.ids(q, at: 1_000, max: 10) == ["l0", "b0", "b1"])
        #expect(try Self.ids(q, at: 1_000, max: 10) == ["l1"])
        await spool.close()
    }

    @Test func leasesSettlesAndReleasesThroughTheSpool() async throws {
        let (spool, dir) = try Self.freshSpool()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await Self.append(spool, ["m0", "m1", "m2"])
        try await Self.append(spool, ["other"], key: "k2")
        let q = try SpoolForwardQueue(spool: spool)

        let first = try q.leaseBatch(nowMillis: 1_000, maxCount: 2, maxBytes: 10_000)
        #expect(first.map(\.messageID) == ["m0", "m1"])
        let second = try q.leaseBatch(nowMillis: 1_000, maxCount: 10, maxBytes: 10_000)
        #expect(second.map(\.messageID) == ["m2"], "leased rows skipped, one key per lease")
        try await q.scheduleRetry(first, error: "HTTP 503", nextAttemptAtMillis: 5_000, nowMillis: 1_000)
        q.release(first)
        try await q.deadLetter(second, reason: DeadLetterReason(reason: "HTTP 400", status: 400), nowMillis: 1_000)
        q.release(second)
        #expect(try Self.ids(q, at: 2_000, max: 10) == ["other"], "retries not due yet")
        let retried = try q.leaseBatch(nowMillis: 5_000, maxCount: 10, maxBytes: 10_000)
        #expect(retried.map(\.messageID) == ["m0", "m1"] && retried.allSatisfy { $0.attempts == 1 })
        try await q.acknowledge(retried, nowMillis: 5_000)
        q.release(retried)
        #expect(spool.stats.deadLetters == 1)
        #expect(spool.stats.depth == 1, "only 'other' (still leased here) remains")
        await spool.close()
    }

    @Test func theForwarderDrainsARealSpool() async throws {
        let (spool, dir) = try Self.freshSpool()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await Self.append(spool, (0..<50).map { "m\($0)" })
        let clock = ManualClock(stopAtMillis: 10_000)
        let upstream = FakeUpstream(clock: clock)
        let forwarder = Forwarder(queue: { try SpoolForwardQueue(spool: spool) }, transports: [upstream, upstream],
                                  options: ForwarderOptions(upstream: "http://127.0.0.1:9", maxBatchCount: 20), clock: clock)
        try await forwarder.run()
        #expect(upstream.requests.flatMap(\.ids) == (0..<50).map { "m\($0)" })
        #expect(spool.stats.depth == 0)
        #expect(forwarder.status.delivered == 50)
        await spool.close()
    }
}
