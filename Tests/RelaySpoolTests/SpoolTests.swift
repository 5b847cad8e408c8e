import Foundation
import Testing
import Synchronization
@testable import RelaySpool

/// A temporary directory removed when the test ends.
final class TempDir {
    let path: String
    init() {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("spool-test-\(UUID().uuidString)").path
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
    var db: String { path + "/spool.db" }
}

func record(_ id: String, key: String = "", priority: SpoolPriority = .live, at: Int64 = 1_000, size: Int = 10) -> SpoolAppend {
    SpoolAppend(messageID: id, writeKey: key, priority: priority, receivedAtMillis: at,
                payload: Array(#"{"message_id":"\#(id)","pad":"\#(String(repeating: "x", count: max(0, size - 30)))"}"#.utf8))
}

/// An hour and the dedupe window (24 h, the default), for the tests of how long an id is held.
let hour: Int64 = 3_600_000
let window = 24 * hour

/// A spool on a fresh file whose clock starts at `startMillis` (10 h: a
/// window earlier would still be after the epoch).
func spoolOnManualClock(at startMillis: Int64 = 10 * hour) throws -> (dir: TempDir, clock: ManualClock, spool: Spool) {
    let dir = TempDir()
    let clock = ManualClock(startMillis)
    return (dir, clock, try Spool(options: SpoolOptions(path: dir.db), nowMillis: clock.now))
}

extension Spool {
    /// Leases what is due at `atMillis` (at most 10 messages) and acknowledges
    /// it, as a delivery does; what was delivered.
    @discardableResult
    func deliverDue(_ reader: SpoolReader, atMillis: Int64) async throws -> [SpoolMessage] {
        let batch = try reader.leaseBatch(nowMillis: atMillis, maxCount: 10, maxBytes: 1 << 20)
        try await acknowledge(batch, atMillis: atMillis)
        reader.release(batch)
        return batch
    }
}

extension SpoolReader {
    /// Leases batches until one is not empty (at most 100 reads): what it
    /// found, and how many reads that took.
    func leaseFirst(nowMillis: Int64, maxCount: Int = 10) throws -> (batch: [SpoolMessage], reads: Int) {
        for reads in 1...100 {
            let batch = try leaseBatch(nowMillis: nowMillis, maxCount: maxCount, maxBytes: 1 << 20)
            if !batch.isEmpty { return (batch, reads) }
        }
        return ([], 100)
    }
}

@Suite struct SpoolTests {
    @Test func appendedMessagesAreLeasedOldestFirstWithTheirPayload() async throws {
        let dir = TempDir()
        let spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        let outcomes = try await spool.append((1...5).map { record("m\($0)") })
        #expect(outcomes == Array(repeating: .stored, count: 5))
        let reader = try spool.makeReader()
        let batch = try reader.leaseBatch(nowMillis: 2_000, maxCount: 3, maxBytes: 1 << 20)
        #expect(batch.map(\.messageID) == ["m1", "m2", "m3"])
        #expect(batch[0].payload == record("m1").payload)
        let next = try reader.leaseBatch(nowMillis: 2_000, maxCount: 10, maxBytes: 1 << 20)
        #expect(next.map(\.messageID) == ["m4", "m5"], "leased rows are not leased twice")
        await spool.close()
    }

    @Test func aMessageIdAlreadyQueuedIsADuplicate() async throws {
        let dir = TempDir()
        let spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        #expect(try await spool.append([record("a"), record("a")]) == [.stored, .duplicate])
        #expect(try await spool.append([record("a")]) == [.duplicate])
        #expect(spool.stats.depth == 1)
        await spool.close()
    }

    @Test func aLargeAppendIsStoredInOrderWithExactCounts() async throws {
        // 75 = chunks of 32, 32, 8, 2 and 1 rows a statement.
        let dir = TempDir()
        let spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        let records = (1...75).map { record("m\($0)", size: 40 + $0) }
        #expect(try await spool.append(records) == Array(repeating: .stored, count: 75))
        #expect(onDisk(spool.stats) == onDisk(try recount(dir.db)))
        #expect(spool.stats.depth == 75)
        let reader = try spool.makeReader()
        let batch = try reader.leaseBatch(nowMillis: 2_000, maxCount: 100, maxBytes: 1 << 20)
        #expect(batch.map(\.messageID) == records.map(\.messageID))
        #expect(batch.map(\.payload) == records.map(\.payload))
        #expect(zip(batch, batch.dropFirst()).allSatisfy { $0.seq + 1 == $1.seq }, "seqs follow the order of the call")
        await spool.close()
    }

    @Test func knownIdsInsideALargeAppendAreFoundOneByOne() async throws {
        let dir = TempDir()
        let clock = ManualClock(2_000)
        let spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: clock.now)
        // (An id seen after the oldest queued message is held: "sent" comes first.)
        _ = try await spool.append([record("sent", at: 1_000), record("queued", at: 1_500)])
        let reader = try spool.makeReader()
        let sent = try reader.leaseBatch(nowMillis: 2_000, maxCount: 10, maxBytes: 1 << 20).filter { $0.messageID == "sent" }
        try await spool.acknowledge(sent, atMillis: 2_000)
        reader.release(sent)
        // 16 calls (one chunk): a queued id, one id twice, and an id whose
        // dedupe window is over (taken over, stored again).
        let later = Int64(2_000 + 24 * 3600 * 1000 + 120_000)
        clock.advance(later - 2_000)
        var calls = (1...16).map { record("n\($0)", at: later) }
        calls[2] = record("queued", at: later)
        calls[6] = record("n6", at: later)
        calls[9] = record("sent", at: later)
        var expected = Array(repeating: AppendOutcome.stored, count: 16)
        expected[2] = .duplicate
        expected[6] = .duplicate
        #expect(try await spool.append(calls) == expected)
        #expect(spool.stats.depth == 2 + 14 - 1, "queued + 14 new - the delivered one")
        #expect(onDisk(spool.stats) == onDisk(try recount(dir.db)))
        await spool.close()
    }

    @Test func acknowledgedMessagesLeaveTheOutboxAndAreRememberedForDedupe() async throws {
        let dir = TempDir()
        let spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        _ = try await spool.append([record("a"), record("b")])
        let reader = try spool.makeReader()
        let batch = try reader.leaseBatch(nowMillis: 2_000, maxCount: 10, maxBytes: 1 << 20)
        try await spool.acknowledge(batch, atMillis: 2_000)
        reader.release(batch)
        #expect(spool.stats.depth == 0)
        #expect(spool.stats.bytes == 0)
        #expect(try reader.leaseBatch(nowMillis: 3_000, maxCount: 10, maxBytes: 1 << 20).isEmpty)
        // within 24 h of sending: acknowledged again, not stored twice
        #expect(try await spool.append([record("a", at: 2_500)]) == [.duplicate])
        #expect(try await spool.append([record("a", at: 2_000 + 24 * 3600 * 1000 - 1)]) == [.duplicate])
        // after the window and the minute's margin from its receipt (it was
        // delivered within that minute): a new message
        #expect(try await spool.append([record("a", at: 1_000 + 24 * 3600 * 1000 + 60_001)]) == [.stored])
        await spool.close()
    }

    @Test func anIdDeliveredLongAfterItsReceiptStaysHeldForTheWindowFromItsDelivery() async throws {
        // (Mid-hour: the hours read are not the obvious ones.)
        let (dir, clock, opened) = try spoolOnManualClock(at: 10 * hour + hour / 2)
        var spool = opened  // (started again below)
        let reader = try spool.makeReader()
        _ = try await spool.append([record("late", at: clock.now())])
        // The upstream was down for five hours; then the message went through.
        clock.advance(5 * hour)
        try await spool.deliverDue(reader, atMillis: clock.now())
        let delivered = clock.now()
        // Another wait, shorter, recorded three hours later (a new hour).
        _ = try await spool.append([record("later", at: clock.now())])
        clock.advance(3 * hour)
        try await spool.deliverDue(reader, atMillis: clock.now())
        // More than a day after its receipt, less than a day after its
        // delivery: the prune keeps its id (another call's turn runs it), a
        // claim finds it held, and so does a relay started again.
        clock.advance(window - 5 * hour)
        #expect(try await spool.append([record("other", at: clock.now())]) == [.stored])
        await spool.settle()
        #expect(try await spool.append([record("late", at: clock.now())]) == [.duplicate])
        await spool.close()
        spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: clock.now)
        // Held to the millisecond by the longest wait, not the last one recorded.
        clock.advance(delivered + window - 1 - clock.now())
        #expect(try await spool.append([record("late", at: clock.now())]) == [.duplicate])
        // A day after its delivery: a new message.
        clock.advance(2)
        #expect(try await spool.append([record("late", at: clock.now())]) == [.stored])
        #expect(onDisk(spool.stats) == onDisk(try recount(dir.db)))
        await spool.close()
    }

    @Test func aWaitLongerThanAQuarterOfTheWindowHoldsOnlyItsOwnId() async throws {
        let (dir, clock, spool) = try spoolOnManualClock()
        _ = try await spool.append([record("stuck", at: clock.now())])
        // Eight hours later (a third of the window) it goes out with a call just received.
        clock.advance(8 * hour)
        _ = try await spool.append([record("prompt", at: clock.now())])
        #expect(try await spool.deliverDue(try spool.makeReader(), atMillis: clock.now()).count == 2)
        clock.advance(window - hour)
        #expect(try await spool.append([record("stuck", at: clock.now()), record("prompt", at: clock.now())]) == [.duplicate, .duplicate])
        // A day and the margin after: both are new again; the long wait held
        // its own id, not every id of the window.
        clock.advance(hour + SpoolSQL.deliveryMarginMillis + 1)
        #expect(try await spool.append([record("stuck", at: clock.now()), record("prompt", at: clock.now())]) == [.stored, .stored])
        #expect(onDisk(spool.stats) == onDisk(try recount(dir.db)), "the moved id and the new ones counted once each")
        await spool.close()
    }

    @Test func acknowledgingRowsAroundOthersRemovesOnlyThoseAcknowledged() async throws {
        let dir = TempDir()
        let spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        _ = try await spool.append((0..<8).map { record("m\($0)") })
        let reader = try spool.makeReader()
        let all = try reader.leaseBatch(nowMillis: 2_000, maxCount: 10, maxBytes: 1 << 20)
        // Two batches' worth, out of order, with gaps (m2, m5) and one row twice.
        let acked = [all[6], all[7], all[0], all[1], all[3], all[4], all[0]]
        try await spool.acknowledge(acked, atMillis: 2_000)
        reader.release(all)
        #expect(spool.stats.depth == 2)
        #expect(try reader.leaseBatch(nowMillis: 3_000, maxCount: 10, maxBytes: 1 << 20).map(\.messageID) == ["m2", "m5"])
        await spool.close()
    }

    /// An app whose key the upstream refuses can have a long run of calls
    /// at the head of the outbox (in backoff, or held with its key). A read
    /// steps over a bounded number of them (40 batches' worth), and the next
    /// read goes on from there: the other apps' calls behind the run are
    /// reached in a few reads, later calls of theirs at once, and the held
    /// run is read again, oldest first, when its time comes.
    @Test func callsBehindALongRunOfHeldOrBackedOffRowsAreReached() async throws {
        let dir = TempDir()
        let spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        _ = try await spool.append((0..<5_000).map { record("k\($0)", key: "refused") } + [record("j0", key: "other")])
        let reader = try spool.makeReader()
        let refused = try reader.leaseBatch(nowMillis: 2_000, maxCount: 10, maxBytes: 1 << 20)
        #expect(refused.map(\.messageID) == (0..<10).map { "k\($0)" })
        try await spool.scheduleRetry(refused, error: "HTTP 401", nextAttemptAtMillis: 300_000, nowMillis: 2_000)
        reader.release(refused)
        reader.hold(writeKey: "refused", untilMillis: 300_000)

        let (found, reads) = try reader.leaseFirst(nowMillis: 3_000)
        #expect(found.map(\.messageID) == ["j0"], "the other app's call, and none of the held ones")
        #expect(reads <= 5_000 / 400 + 1, "400 rows not due stepped over a read, and each read goes on where the last stopped: \(reads) reads")
        try await spool.acknowledge(found, atMillis: 3_000)

        _ = try await spool.append([record("j1", key: "other", at: 3_000)])
        #expect(try reader.leaseBatch(nowMillis: 3_100, maxCount: 10, maxBytes: 1 << 20).map(\.messageID) == ["j1"],
                "a later call of the other app goes at the next read: the run is not walked again")
        #expect(try reader.leaseBatch(nowMillis: 3_100, maxCount: 10, maxBytes: 1 << 20).isEmpty)

        let again = try reader.leaseBatch(nowMillis: 300_000, maxCount: 10, maxBytes: 1 << 20)
        #expect(again.map(\.messageID) == (0..<10).map { "k\($0)" }, "when the hold and the backoff end: the oldest first")
        #expect(again.allSatisfy { $0.attempts == 1 }, "the batch that was refused, tried first")
        #expect(try reader.leaseBatch(nowMillis: 300_000, maxCount: 10, maxBytes: 1 << 20).isEmpty, "the rest wait for its answer")
        try await spool.acknowledge(again, atMillis: 300_000)
        reader.release(again)
        let held = try reader.leaseBatch(nowMillis: 300_100, maxCount: 10, maxBytes: 1 << 20)
        #expect(held.map(\.messageID) == (10..<20).map { "k\($0)" } && held.allSatisfy { $0.attempts == 0 }, "the key works again: the rows held with it")
        await spool.close()
    }

    /// A hold covers one key only, and ends by itself.
    @Test func aHeldKeysRowsWaitAndOtherKeysDoNot() async throws {
        let dir = TempDir()
        let spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        _ = try await spool.append([record("a0", key: "a"), record("b0", key: "b"), record("a1", key: "a")])
        let reader = try spool.makeReader()
        reader.hold(writeKey: "a", untilMillis: 10_000)
        #expect(try reader.leaseBatch(nowMillis: 2_000, maxCount: 10, maxBytes: 1 << 20).map(\.messageID) == ["b0"])
        #expect(try reader.leaseBatch(nowMillis: 9_999, maxCount: 10, maxBytes: 1 << 20).isEmpty)
        #expect(try reader.leaseBatch(nowMillis: 10_000, maxCount: 10, maxBytes: 1 << 20).map(\.messageID) == ["a0", "a1"])
        await spool.close()
    }

    @Test func anIdWithANulInsideIsKeptWhole() async throws {
        let dir = TempDir()
        let spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        #expect(try await spool.append([record("a\u{0}b", key: "k\u{0}1")]) == [.stored])
        #expect(try await spool.append([record("a")]) == [.stored], "another id than a\\0b")
        let reader = try spool.makeReader()
        let batch = try reader.leaseBatch(nowMillis: 2_000, maxCount: 1, maxBytes: 1 << 20)
        #expect(batch.map(\.messageID) == ["a\u{0}b"] && batch.map(\.writeKey) == ["k\u{0}1"])
        try await spool.acknowledge(batch, atMillis: 2_000)
        #expect(try await spool.append([record("a\u{0}b", at: 2_500)]) == [.duplicate])
        await spool.close()
    }

    @Test func retryCountsTheAttemptAndHoldsTheRowsUntilTheirTime() async throws {
        let dir = TempDir()
        let spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        _ = try await spool.append([record("a")])
        let reader = try spool.makeReader()
        let batch = try reader.leaseBatch(nowMillis: 2_000, maxCount: 10, maxBytes: 1 << 20)
        try await spool.scheduleRetry(batch, error: "HTTP 503", nextAttemptAtMillis: 5_000, nowMillis: 2_000)
        reader.release(batch)
        #expect(try reader.leaseBatch(nowMillis: 4_999, maxCount: 10, maxBytes: 1 << 20).isEmpty)
        let again = try reader.leaseBatch(nowMillis: 5_000, maxCount: 10, maxBytes: 1 << 20)
        #expect(again.map(\.messageID) == ["a"])
        #expect(again.first?.attempts == 1)
        await spool.close()
    }

    @Test func deadLettersKeepTheMessageAndTheReason() async throws {
        let dir = TempDir()
        let spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        _ = try await spool.append([record("a"), record("b")])
        let reader = try spool.makeReader()
        let batch = try reader.leaseBatch(nowMillis: 2_000, maxCount: 1, maxBytes: 1 << 20)
        try await spool.deadLetter(batch, reason: DeadLetterReason(reason: "HTTP 400: bad", status: 400), nowMillis: 2_000)
        reader.release(batch)
        let stats = spool.stats
        #expect(stats.depth == 1)
        #expect(stats.deadLetters == 1)
        let db = try SQLiteConnection(path: dir.db)
        let st = try db.prepare("SELECT message_id, reason, status, attempts FROM dead_letters")
        #expect(try st.step())
        #expect(st.string(0) == "a")
        #expect(st.string(1) == "HTTP 400: bad")
        #expect(st.int64(2) == 400)
        #expect(st.int64(3) == 1)
        await spool.close()
    }

    @Test func messagesOlderThanMaxAgeExpireToDeadLettersByThemselves() async throws {
        let dir = TempDir()
        let clock = ManualClock(10_000)
        let spool = try Spool(options: SpoolOptions(path: dir.db, maxAgeMillis: 5_000), nowMillis: clock.now)
        _ = try await spool.append([record("old", at: 1_000), record("new", at: 9_000)])
        await spool.settle()
        #expect(spool.stats.expired == 1)
        let reader = try spool.makeReader()
        #expect(try reader.leaseBatch(nowMillis: 10_000, maxCount: 10, maxBytes: 1 << 20).map(\.messageID) == ["new"])
        #expect(spool.stats.deadLetters == 1)
        await spool.close()
    }

    /// The wall clock set back between two calls: the second is stored (and
    /// its id seen) at the first's time, so the first queued is the oldest
    /// and nothing expires before max_age has passed since the first.
    @Test func aClockSetBackNeverExpiresACallEarly() async throws {
        let dir = TempDir()
        let clock = ManualClock(10_000)
        let spool = try Spool(options: SpoolOptions(path: dir.db, maxAgeMillis: 5_000), nowMillis: clock.now)
        _ = try await spool.append([record("first", at: 9_000)])
        _ = try await spool.append([record("second", at: 5_500)])  // stamped after the clock went back 4 s
        let importer = try SpoolImporter(path: dir.db, maxBytes: 1 << 30)
        _ = try importer.commit([record("bulk-1", priority: .bulk, at: 9_500)], run: nil, atMillis: 9_500)
        _ = try importer.commit([record("bulk-2", priority: .bulk, at: 6_000)], run: nil, atMillis: 6_000)
        let db = try SQLiteConnection(path: dir.db)
        func stored(_ id: String) throws -> [Int64?] {
            [try db.scalarInt("SELECT received_at FROM outbox WHERE message_id = '\(id)'"),
             try db.scalarInt("SELECT seen_at FROM message_ids WHERE message_id = '\(id)'")]
        }
        #expect(try stored("second") == [9_000, 9_000], "stored and seen at the time of the row before it")
        #expect(try stored("bulk-2") == [9_500, 9_500], "an import keeps its priority's order too")
        await spool.settle()
        #expect(spool.stats.oldestReceivedAtMillis == 9_000)
        #expect(onDisk(spool.stats) == onDisk(try recount(dir.db)))
        clock.advance(3_999)  // 13,999: "second" was stamped 8.5 s ago, but reached the relay after "first"
        _ = try await spool.append([record("tick-1", at: 13_999)])
        await spool.settle()
        #expect(spool.stats.expired == 0, "nothing is older than max_age yet")
        clock.advance(1_100)  // 15,099: 6.1 s after "first", 5.6 s after "bulk-1"
        _ = try await spool.append([record("tick-2", at: 15_099)])
        await spool.settle()
        #expect(spool.stats.expired == 4, "first, second and both imported rows")
        let reader = try spool.makeReader()
        #expect(try reader.leaseBatch(nowMillis: 15_099, maxCount: 10, maxBytes: 1 << 20).map(\.messageID) == ["tick-1", "tick-2"])
        await spool.close()
    }

    @Test func batchesNeverMixWriteKeysAndLiveGoesBeforeBulk() async throws {
        let dir = TempDir()
        let spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        _ = try await spool.append([record("b1", priority: .bulk), record("k1", key: "A"), record("k2", key: "B"), record("k3", key: "A")])
        let reader = try spool.makeReader()
        #expect(try reader.leaseBatch(nowMillis: 2_000, maxCount: 10, maxBytes: 1 << 20).map(\.messageID) == ["k1", "k3"])
        #expect(try reader.leaseBatch(nowMillis: 2_000, maxCount: 10, maxBytes: 1 << 20).map(\.messageID) == ["k2"])
        #expect(try reader.leaseBatch(nowMillis: 2_000, maxCount: 10, maxBytes: 1 << 20).map(\.messageID) == ["b1"])
        await spool.close()
    }

    @Test func aBatchStaysUnderItsByteLimit() async throws {
        let dir = TempDir()
        let spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        _ = try await spool.append((1...10).map { record("m\($0)", size: 100) })
        let reader = try spool.makeReader()
        let batch = try reader.leaseBatch(nowMillis: 2_000, maxCount: 100, maxBytes: 350)
        #expect(batch.count == 3)
        #expect(batch.reduce(0) { $0 + $1.payload.count } <= 350)
        await spool.close()
    }

    @Test func everythingCommittedSurvivesAReopenAndLeasesDoNot() async throws {
        let dir = TempDir()
        do {
            let spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
            _ = try await spool.append((1...3).map { record("m\($0)") })
            _ = try spool.makeReader().leaseBatch(nowMillis: 2_000, maxCount: 10, maxBytes: 1 << 20)  // leased, never sent
            await spool.close()
        }
        let reopened = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        #expect(reopened.stats.depth == 3)
        #expect(try reopened.makeReader().leaseBatch(nowMillis: 2_000, maxCount: 10, maxBytes: 1 << 20).map(\.messageID) == ["m1", "m2", "m3"])
        await reopened.close()
    }

    @Test func theSchemaIsVersionedAndANewerFileIsRefused() async throws {
        let dir = TempDir()
        let spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        await spool.close()
        let db = try SQLiteConnection(path: dir.db)
        #expect(try db.scalarInt("PRAGMA user_version") == Schema.currentVersion)
        do {
            let mode = try db.prepare("PRAGMA journal_mode")
            #expect(try mode.step())
            #expect(mode.string(0) == "wal")
        }
        try db.execute("PRAGMA user_version = 99")
        #expect {
            _ = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        } throws: { error in
            guard case SpoolError.newerSchema(_, let found, _) = error else { return false }
            return found == 99
        }
    }

    @Test func aFullSpoolRefusesNewCallsAndKeepsWhatItHas() async throws {
        let dir = TempDir()
        let spool = try Spool(options: SpoolOptions(path: dir.db, maxBytes: 250), nowMillis: { 2_000 })
        #expect(try await spool.append([record("a", size: 100), record("b", size: 100)]) == [.stored, .stored])
        await #expect(throws: SpoolError.self) { try await spool.append([record("c", size: 100)]) }
        #expect(spool.stats.depth == 2)
        let reader = try spool.makeReader()
        let batch = try reader.leaseBatch(nowMillis: 2_000, maxCount: 1, maxBytes: 1 << 20)
        try await spool.acknowledge(batch, atMillis: 2_000)
        #expect(try await spool.append([record("c", size: 100)]) == [.stored], "room again after delivery")
        await spool.close()
    }

    @Test func dropOldestMakesRoomAndCountsTheDrops() async throws {
        let dir = TempDir()
        let spool = try Spool(options: SpoolOptions(path: dir.db, maxBytes: 250, onFull: .dropOldest), nowMillis: { 2_000 })
        _ = try await spool.append([record("a", size: 100), record("b", size: 100)])
        #expect(try await spool.append([record("c", size: 100)]) == [.stored])
        let reader = try spool.makeReader()
        #expect(try reader.leaseBatch(nowMillis: 2_000, maxCount: 10, maxBytes: 1 << 20).map(\.messageID) == ["b", "c"])
        #expect(spool.stats.dropped == 1)
        #expect(spool.stats.deadLetters == 0, "dropping frees the space for real: a dead letter would still take it")
        #expect(spool.stats.totalBytes <= 250)
        await spool.close()
    }

    @Test func concurrentAppendsAreAllCommittedAndShareCommits() async throws {
        let dir = TempDir()
        let spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        let n = 400
        try await withThrowingTaskGroup(of: [AppendOutcome].self) { group in
            for i in 0..<n { group.addTask { try await spool.append([record("c\(i)")]) } }
            var stored = 0
            for try await o in group { stored += o.filter { $0 == .stored }.count }
            #expect(stored == n)
        }
        #expect(spool.stats.depth == Int64(n))
        #expect(spool.stats.commits < Int64(n), "group commit: \(spool.stats.commits) commits for \(n) appends")
        await spool.close()
    }

    @Test func appendsSharingACommitFindTheirDuplicatesAndOutcomesInOrder() async throws {
        // A linger, so that the appends meet in few commits and go in together.
        let dir = TempDir()
        let spool = try Spool(options: SpoolOptions(path: dir.db, commitLingerNanos: 20_000_000), nowMillis: { 2_000 })
        let calls: [[SpoolAppend]] = (0..<40).map { i in
            i % 10 == 9 ? [record("d\(i)"), record("d\(i - 1)"), record("d\(i)")] : [record("d\(i)")]
        }
        let outcomes = try await withThrowingTaskGroup(of: (Int, [AppendOutcome]).self) { group in
            for (i, call) in calls.enumerated() { group.addTask { (i, try await spool.append(call)) } }
            var all = [[AppendOutcome]](repeating: [], count: calls.count)
            for try await (i, o) in group { all[i] = o }
            return all
        }
        for (i, o) in outcomes.enumerated() where i % 10 == 9 {
            #expect(o.count == 3 && o[0] == .stored && o[2] == .duplicate, "an id twice in one call: the second is the duplicate")
        }
        let all = outcomes.flatMap { $0 }
        #expect(all.filter { $0 == .stored }.count == 40, "each id stored once, whichever call came first")
        #expect(all.filter { $0 == .duplicate }.count == 8)
        #expect(onDisk(spool.stats) == onDisk(try recount(dir.db)))
        #expect(spool.stats.commits < 40)
        await spool.close()
    }

    @Test func appendsAfterCloseFailCleanly() async throws {
        let dir = TempDir()
        let spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        await spool.close()
        await #expect(throws: SpoolError.self) { try await spool.append([record("late")]) }
    }

    @Test func aWriterBlockedByAnotherProcessWaitsForTheLockAndCommits() async throws {
        let dir = TempDir()
        do { let s = try Spool(options: SpoolOptions(path: dir.db)); await s.close() }
        // another connection holds the write lock: the writer cannot commit in time
        let blocker = try SQLiteConnection(path: dir.db)
        let spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        try blocker.execute("PRAGMA busy_timeout = 0; BEGIN IMMEDIATE")
        // busy_timeout is 5 s in the writer; release after a moment and it succeeds
        // A thread of its own, not a task: with the whole suite running, blocking
        // tests can keep the cooperative pool busy for longer than the writer waits.
        nonisolated(unsafe) let releasing = blocker
        Thread.detachNewThread { usleep(300_000); try? releasing.execute("COMMIT") }
        #expect(try await spool.append([record("x")]) == [.stored])
        await spool.close()
    }

    @Test func oneRelayOwnsASpoolAndASecondIsRefusedNamingTheOwner() async throws {
        let dir = TempDir()
        let first = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        #expect {
            _ = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        } throws: { error in
            guard case SpoolError.locked(let path, let pid) = error else { return false }
            return path == dir.db && pid == getpid() && "\(error)".contains(dir.db)
        }
        // Operator commands work beside the owner.
        #expect(try SpoolAdmin(path: dir.db).stats().depth == 0)
        await first.close()
        let second = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        await second.close()
    }

    @Test func theSpoolFilesArePrivateToTheRelaysUser() async throws {
        let dir = TempDir()
        let old = umask(0o022)
        defer { umask(old) }
        let spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        _ = try await spool.append([record("secret")])
        for file in [dir.db, dir.db + "-wal", dir.db + "-shm", dir.db + ".lock"] {
            var st = stat()
            #expect(stat(file, &st) == 0, "\(file) exists")
            #expect(st.st_mode & 0o077 == 0, "\(file) is mode \(String(st.st_mode & 0o777, radix: 8)), readable by others")
        }
        await spool.close()
    }

    @Test func theSpoolRunsWithTheDurabilityAskedFor() async throws {
        let dir = TempDir()
        let full = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        #expect(full.synchronousLevel == 2, "synchronous=FULL by default: every acknowledged commit is fsynced")
        await full.close()
        let normal = try Spool(options: SpoolOptions(path: dir.db, synchronousFull: false), nowMillis: { 2_000 })
        #expect(normal.synchronousLevel == 1)
        await normal.close()
    }

    #if os(Linux)
    @Test func theWriterThreadIsNamedForTopAndPs() async throws {
        let dir = TempDir()
        let spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        _ = try await spool.append([record("m1")])  // the writer has run
        let names = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").map {
            (try? String(contentsOfFile: "/proc/self/task/\($0)/comm", encoding: .utf8)) ?? ""
        }
        #expect(names.contains("spool-writer\n"), "thread names: \(names)")
        await spool.close()
    }
    #endif
}

/// Who checkpoints the WAL while operator commands write beside the daemon
/// (`SpoolLock.leaveCheckpointsToDaemon`: SQLite's WAL-reset race).
@Suite struct SpoolCheckpointTests {
    private func walBytes(_ dir: TempDir) -> Int { Self.bytes(of: dir.db + "-wal") }

    private static func bytes(of path: String) -> Int {
        var st = stat()
        return stat(path, &st) == 0 ? Int(st.st_size) : 0
    }

    @Test func anImportBesideARunningDaemonLeavesCheckpointsToIt() async throws {
        let dir = TempDir()
        let spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        let importer = try SpoolImporter(path: dir.db, maxBytes: 1 << 30)
        #expect(try importer.db.scalarInt("PRAGMA wal_autocheckpoint") == 0, "the daemon runs: the importer never checkpoints")
        await spool.close()
        _ = try importer.commit([], run: nil, atMillis: 10_000)  // it looks again (once a second)
        #expect(try importer.db.scalarInt("PRAGMA wal_autocheckpoint") == 1000, "no daemon: it checkpoints as SQLite does")
    }

    @Test func anIdleDaemonCheckpointsWhatAnImportWroteSoTheWALDoesNotGrowWithTheImport() async throws {
        let dir = TempDir()
        let spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        let importer = try SpoolImporter(path: dir.db, maxBytes: 1 << 30)
        func importSlices(_ name: String) throws {
            for slice in 0..<12 {
                let records = (0..<250).map { record("\(name)-\(slice)-\($0)", priority: .bulk, at: 2_000, size: 600) }
                #expect(try importer.commit(records, run: nil, atMillis: 2_000).stored == 250)
            }
        }
        try importSlices("a")
        let afterFirst = walBytes(dir)
        await spool.settle()  // a turn of the idle daemon: it notices the import's commits and checkpoints them
        try importSlices("b")  // the WAL, copied whole, starts again from its beginning
        #expect(walBytes(dir) < afterFirst * 3 / 2, "WAL \(walBytes(dir)) bytes after the second import, \(afterFirst) after the first")
        await spool.settle()
        #expect(spool.stats.depth == 6_000)
        #expect(onDisk(spool.stats) == onDisk(try recount(dir.db)))
        await spool.close()
    }

    /// An import that commits without pause beside an idle daemon: every
    /// 200 ms the daemon copies the WAL back with the write lock held and
    /// empties it (it looks every 50 ms while others write), so the WAL
    /// keeps to a fraction of what the import writes.
    @Test func anImportBesideAnIdleDaemonKeepsTheWALToAFewMiB() async throws {
        let dir = TempDir()
        let spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        final class Import: @unchecked Sendable {  // used by one thread at a time
            let importer: SpoolImporter
            var stored = 0, slices = 0, largestWAL = 0
            init(_ path: String) throws { importer = try SpoolImporter(path: path, maxBytes: 1 << 40) }
            func slice() throws {
                let records = (0..<250).map { record("i-\(slices)-\($0)", priority: .bulk, at: 2_000, size: 600) }
                stored += Int(try importer.commit(records, run: nil, atMillis: 2_000).stored)
                slices += 1
            }
        }
        let job = try Import(dir.db)
        let walPath = dir.db + "-wal"
        // 300 slices (45 MB of payload), on a thread of its own (not one of the few the tests share).
        let failure: String? = await withCheckedContinuation { done in
            Thread.detachNewThread {
                do {
                    for _ in 0..<300 {
                        try job.slice()
                        job.largestWAL = max(job.largestWAL, Self.bytes(of: walPath))
                    }
                    done.resume(returning: nil)
                } catch {
                    done.resume(returning: "\(error)")
                }
            }
        }
        #expect(failure == nil)
        #expect(job.stored == job.slices * 250)
        // Each slice adds at least its 150 KB of payload to the WAL when nothing copies it back.
        let written = job.slices * 150_000
        #expect(job.largestWAL < written / 3, "the WAL reached \(job.largestWAL) bytes in \(job.slices) slices")
        await spool.settle()
        #expect(spool.stats.depth == Int64(job.slices * 250))
        #expect(onDisk(spool.stats) == onDisk(try recount(dir.db)))
        await spool.close()
    }
}

/// Operator commands writing one spool with no daemon take turns
/// (`OperatorTurn`), so that their checkpoints never run beside each other.
@Suite struct OperatorTurnTests {
    /// A spool made by the daemon, which has stopped since.
    private func stoppedSpool(_ dir: TempDir) async throws {
        let spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        _ = try await spool.append([record("live-1", at: 2_000)])
        await spool.close()
    }

    /// Runs `work` on a thread of its own (it blocks), reporting its error.
    private static func onThread(_ work: @escaping @Sendable () throws -> Void) async -> String? {
        await withCheckedContinuation { done in
            Thread.detachNewThread {
                do { try work(); done.resume(returning: nil) } catch { done.resume(returning: "\(error)") }
            }
        }
    }

    @Test func anImportWaitsWhileAnotherOperatorCommandWritesThenStores() async throws {
        let dir = TempDir()
        try await stoppedSpool(dir)
        let importer = try SpoolImporter(path: dir.db, maxBytes: 1 << 30)
        let turn = try OperatorTurn(spoolPath: dir.db, waitMillis: 0)  // another command's transaction
        let lockFile = dir.db + ".operators.lock"
        var st = stat()
        #expect(stat(lockFile, &st) == 0 && st.st_mode & 0o077 == 0, "the operator lock is private to the relay's user")
        #expect((try? String(contentsOfFile: lockFile, encoding: .utf8))?.hasPrefix("\(getpid()) ") == true, "it names the command whose turn it is")
        final class Outcome: Sendable { let stored = Mutex<Int64?>(nil) }
        let outcome = Outcome()
        nonisolated(unsafe) let job = importer  // one thread uses it at a time
        nonisolated(unsafe) let held = turn
        let path = dir.db
        // The other command's transaction lasts 300 ms, on a thread of its own
        // (not one of the few the tests share), which looks at the spool meanwhile.
        async let other = Self.onThread {
            usleep(300_000)
            let during = outcome.stored.withLock { $0 }
            let depth = try recount(path).depth
            held.end()
            guard during == nil, depth == 1 else {
                throw SpoolError.cannotRead(path: path, reason: "the import did not wait for the other command's turn: stored \(String(describing: during)), \(depth) queued")
            }
        }
        async let imported = Self.onThread {
            let r = try job.commit((0..<50).map { record("imp-\($0)", priority: .bulk, at: 2_000) }, run: nil, atMillis: 2_000)
            outcome.stored.withLock { $0 = r.stored }
        }
        let (otherFailure, importFailure) = await (other, imported)
        #expect(otherFailure == nil, "\(otherFailure ?? "")")
        #expect(importFailure == nil, "\(importFailure ?? "")")
        #expect(outcome.stored.withLock { $0 } == 50)
        #expect(try recount(dir.db).depth == 51)
    }

    @Test func aCommandThatWaitsTooLongForItsTurnSaysWhoHoldsIt() async throws {
        let dir = TempDir()
        try await stoppedSpool(dir)
        let turn = try OperatorTurn(spoolPath: dir.db, waitMillis: 0)
        defer { turn.end() }
        let db = try SQLiteConnection(path: dir.db, create: false)
        let began = ContinuousClock.now
        do {
            try SpoolLock.operatorTransaction(db, spoolPath: dir.db, waitMillis: 200) { _ in
                try db.execute("DELETE FROM outbox")
            }
            Issue.record("the transaction ran while another command had its turn")
        } catch {
            #expect(ContinuousClock.now - began >= .milliseconds(200), "it waited before giving up")
            #expect(error.description.contains("another operator command (process \(getpid())) is writing to \(dir.db), and one of its transactions has lasted 2"), "\(error)")
            #expect(!error.description.contains("SpoolError"))
        }
        #expect(try recount(dir.db).depth == 1, "nothing was deleted")
    }

    /// A command that keeps taking turns (a purge, slice after slice) lets
    /// one that waits have the next turn, rather than keep it waiting until
    /// it is done.
    @Test func aCommandThatWaitsGetsATurnWhileAnotherKeepsTakingThem() async throws {
        let dir = TempDir()
        try await stoppedSpool(dir)
        final class Shared: Sendable {
            let waiterStarted = Atomic<Bool>(false)
            let waiterDone = Atomic<Bool>(false)
            let turnsMeanwhile = Atomic<Int>(0)
        }
        let shared = Shared()
        let path = dir.db
        async let busy = Self.onThread {
            let cap = ContinuousClock.now + .seconds(120)  // (the test's own bound)
            var waitingSince: ContinuousClock.Instant?
            while !shared.waiterDone.load(ordering: .acquiring) && ContinuousClock.now < cap {
                if waitingSince == nil && shared.waiterStarted.load(ordering: .acquiring) { waitingSince = .now }
                if let since = waitingSince, ContinuousClock.now - since > .seconds(5) {
                    throw SpoolError.cannotRead(path: path, reason: "the waiting command had no turn in 5 s")
                }
                let turn = try OperatorTurn(spoolPath: path, waitMillis: 20_000)
                usleep(300)  // a short transaction
                turn.end()
                shared.turnsMeanwhile.add(1, ordering: .relaxed)
            }
        }
        while shared.turnsMeanwhile.load(ordering: .relaxed) < 20 { try await Task.sleep(for: .milliseconds(1)) }
        async let waiter = Self.onThread {
            shared.waiterStarted.store(true, ordering: .releasing)
            try OperatorTurn(spoolPath: path, waitMillis: 20_000).end()
            shared.waiterDone.store(true, ordering: .releasing)
        }
        #expect(await waiter == nil)
        #expect(await busy == nil, "the waiting command had its turn while the other kept taking them")
    }

    /// The spool's directory belongs to the relay's user: a link planted
    /// there as a lock file is never followed (root runs operator commands).
    @Test func aLockFileThatIsALinkIsRefusedAndItsTargetLeftAlone() async throws {
        let dir = TempDir()
        try await stoppedSpool(dir)
        let target = dir.path + "/precious"
        try "keep me\n".write(toFile: target, atomically: true, encoding: .utf8)
        for lock in [dir.db + ".operators.lock", dir.db + ".lock"] {
            try? FileManager.default.removeItem(atPath: lock)
            try FileManager.default.createSymbolicLink(atPath: lock, withDestinationPath: target)
        }
        #expect(throws: SpoolError.self) { _ = try OperatorTurn(spoolPath: dir.db, waitMillis: 0) }
        #expect(throws: SpoolError.self) { _ = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 }) }
        do {
            _ = try OperatorTurn(spoolPath: dir.db, waitMillis: 0)
        } catch {
            #expect(error.description.contains("\(dir.db).operators.lock: it is a symbolic link, which the relay does not follow; remove it"), "\(error)")
        }
        #expect(try String(contentsOfFile: target, encoding: .utf8) == "keep me\n")
    }

    /// Two imports at once, with no daemon: each checkpoints at its own
    /// commits, in turns; every record of both is stored and counted.
    @Test func twoImportsAtOnceWithNoDaemonStoreEverything() async throws {
        let dir = TempDir()
        try await stoppedSpool(dir)
        let first = try SpoolImporter(path: dir.db, maxBytes: 1 << 40)
        let second = try SpoolImporter(path: dir.db, maxBytes: 1 << 40)
        #expect(try first.db.scalarInt("PRAGMA wal_autocheckpoint") == 1000, "no daemon: operators checkpoint")
        func importer(_ job: SpoolImporter, _ name: String) async -> String? {
            nonisolated(unsafe) let job = job  // one thread uses it
            return await Self.onThread {
                for slice in 0..<40 {
                    let records = (0..<250).map { record("\(name)-\(slice)-\($0)", priority: .bulk, at: 2_000, size: 600) }
                    let r = try job.commit(records, run: nil, atMillis: 2_000)
                    guard r.stored == 250 else { throw SpoolError.cannotRead(path: name, reason: "stored \(r.stored) of 250") }
                }
            }
        }
        async let a = importer(first, "a")
        async let b = importer(second, "b")
        let (ra, rb) = await (a, b)
        #expect(ra == nil && rb == nil)
        let after = try recount(dir.db)
        #expect(after.depth == 1 + 2 * 40 * 250)
        let spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        #expect(onDisk(spool.stats) == onDisk(after), "the totals the daemon starts from are exact")
        await spool.close()
    }
}

/// The seq counter (`totals.last_seq`, schema v7).
@Suite struct SpoolSeqTests {
    /// An append and a dead letter of the same sizes in one transaction
    /// leave the counts as they were; the counter still moves on, so the
    /// next append neither meets the row's seq nor reuses it.
    @Test func aTurnWhoseCountsCancelOutStillMovesTheSeqCounter() async throws {
        let dir = TempDir()
        let spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        _ = try await spool.append([record("old-1", at: 2_000)])
        let reader = try spool.makeReader()
        let leased = try reader.leaseBatch(nowMillis: 2_000, maxCount: 1, maxBytes: 1 << 20)
        #expect(leased.map(\.messageID) == ["old-1"])
        // Hold the write lock, so that the writer's next turn takes the next two operations together.
        let blocker = try SQLiteConnection(path: dir.db)
        try blocker.execute("BEGIN IMMEDIATE")
        let outcomes = Mutex<[String]>([])
        let commits = spool.stats.commits
        spool.append([record("new-0", at: 2_000)]) { r in outcomes.withLock { $0.append("new-0 \(r)") } }
        usleep(300_000)  // the writer has taken it and waits for the lock (at most 5 s)
        spool.append([record("new-1", at: 2_000)]) { r in outcomes.withLock { $0.append("new-1 \(r)") } }  // same sizes as old-1
        spool.submit(.deadLetter(leased, DeadLetterReason(reason: "test"), nowMillis: 2_000) { r in outcomes.withLock { $0.append("dead \(r)") } },
                     { (_: Result<Void, SpoolError>) in })
        try blocker.execute("COMMIT")
        await spool.settle()
        #expect(outcomes.withLock { $0 } == ["new-0 success([RelaySpool.AppendOutcome.stored])",
                                            "new-1 success([RelaySpool.AppendOutcome.stored])", "dead success()"])
        #expect(spool.stats.commits == commits + 2, "new-0 alone, then new-1 and the dead letter in one transaction")
        // Both delivered: the outbox is empty, and only the counter remembers 3.
        let sent = try reader.leaseBatch(nowMillis: 2_000, maxCount: 10, maxBytes: 1 << 20)
        #expect(sent.map { SpoolPriority.number(ofSeq: $0.seq) } == [2, 3])
        try await spool.acknowledge(sent, atMillis: 2_000)
        #expect(try await spool.append([record("new-2", at: 2_000)]) == [.stored])
        let next = try reader.leaseBatch(nowMillis: 2_000, maxCount: 10, maxBytes: 1 << 20)
        #expect(next.map { SpoolPriority.number(ofSeq: $0.seq) } == [4], "a seq never used, past the reader's cursor")
        #expect(onDisk(spool.stats) == onDisk(try recount(dir.db)))
        await spool.close()
    }
}
