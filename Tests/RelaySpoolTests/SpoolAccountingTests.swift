import Foundation
import Synchronization
import Testing
@testable import RelaySpool

/// A clock the test moves by hand.
final class ManualClock: Sendable {
    private let millis: Atomic<Int64>
    init(_ start: Int64) { millis = Atomic(start) }
    func advance(_ ms: Int64) { millis.add(ms, ordering: .relaxed) }
    var now: @Sendable () -> Int64 { { self.millis.load(ordering: .relaxed) } }
}

/// The counts as a full scan of the file gives them: what the in-memory
/// counters must always equal.
func recount(_ path: String) throws -> SpoolStats {
    let db = try SQLiteConnection(path: path)
    var s = SpoolStats()
    let o = try db.prepare("SELECT count(*), COALESCE(sum(length(payload)), 0), min(received_at) FROM outbox")
    try o.step()
    s.depth = o.int64(0)
    s.bytes = o.int64(1)
    s.oldestReceivedAtMillis = o.isNull(2) ? nil : o.int64(2)
    let d = try db.prepare("SELECT count(*), COALESCE(sum(length(payload)), 0) FROM dead_letters")
    try d.step()
    s.deadLetters = d.int64(0)
    s.deadLetterBytes = d.int64(1)
    let i = try db.prepare("SELECT count(*), COALESCE(sum(length(message_id) + 16), 0) FROM message_ids")
    try i.step()
    s.dedupeIDs = i.int64(0)
    s.dedupeBytes = i.int64(1)
    s.rejected = try db.scalarInt("SELECT count(*) FROM rejected") ?? 0
    return s
}

/// The on-disk part of the stats (not the counters since start).
func onDisk(_ s: SpoolStats) -> [Int64?] {
    [s.depth, s.bytes, s.oldestReceivedAtMillis, s.deadLetters, s.deadLetterBytes, s.dedupeIDs, s.dedupeBytes, s.rejected]
}

@Suite struct SpoolAccountingTests {
    @Test func statsStayExactThroughAppendsAcksRetriesDeadLettersExpiryDropsAndReplay() async throws {
        let dir = TempDir()
        let clock = ManualClock(100_000)
        let spool = try Spool(options: SpoolOptions(path: dir.db, maxBytes: 5_000, onFull: .dropOldest, maxAgeMillis: 50_000),
                              nowMillis: clock.now)
        func check(_ step: String) async throws {
            await spool.settle()
            #expect(onDisk(spool.stats) == onDisk(try recount(dir.db)), "after \(step)")
        }
        _ = try await spool.append((1...10).map { record("m\($0)", at: 60_000 + Int64($0), size: 200) })
        spool.recordRejected(errorsJSON: #"["user_id: required"]"#, sample: Array("{}".utf8), atMillis: 100_000)
        try await check("appends")
        let reader = try spool.makeReader()
        let first = try reader.leaseBatch(nowMillis: 100_000, maxCount: 3, maxBytes: 1 << 20)
        try await spool.acknowledge(first, atMillis: 100_000)
        reader.release(first)
        try await check("an acknowledgement")
        let second = try reader.leaseBatch(nowMillis: 100_000, maxCount: 2, maxBytes: 1 << 20)
        try await spool.scheduleRetry([second[0]], error: "HTTP 503", nextAttemptAtMillis: 100_500, nowMillis: 100_000)
        try await spool.deadLetter([second[1]], reason: DeadLetterReason(reason: "HTTP 400", status: 400), nowMillis: 100_000)
        reader.release(second)
        try await check("a retry and a dead letter")
        clock.advance(11_000)  // m1..m10 were received at ~60 s: older than max_age (50 s) at 111 s
        try await check("expiry")
        #expect(spool.stats.expired == 6, "m4 (retried) and m6...m10")
        #expect(spool.stats.depth == 0)
        _ = try await spool.append((11...20).map { record("m\($0)", at: 111_000, size: 200) })
        _ = try await spool.append((21...30).map { record("m\($0)", at: 111_000, size: 200) })
        try await check("appends past max_bytes under drop_oldest")
        #expect(spool.stats.dropped > 0)
        #expect(spool.stats.totalBytes <= 5_000)
        let admin = try SpoolAdmin(path: dir.db)
        let deadBefore = spool.stats.deadLetters
        #expect(try admin.replayDeadLetters(ids: [try #require(admin.deadLetters(limit: 1).first).id], nowMillis: clock.now()).replayed == 1)
        try await check("an operator's replay, from another connection")
        #expect(spool.stats.deadLetters == deadBefore - 1)
        _ = try admin.purgeDeadLetters(deadBeforeMillis: nil)
        try await check("an operator's purge, from another connection")
        #expect(spool.stats.deadLetters == 0)
        // Ids counted as SQLite counts them (characters before a NUL), not as bytes.
        _ = try await spool.append([record("ünïcødé-✓-id", at: 60_100, size: 200), record("nul\u{0}inside", at: 60_100, size: 200)])
        try await check("appends of ids with non-ASCII characters and a NUL")
        await spool.close()
    }

    @Test func anAcknowledgementOfRowsRemovedBehindTheRelaysBackLeavesExactCounts() async throws {
        // Acknowledgements count the bytes the lease read instead of asking
        // SQLite row by row. Should a leased row be gone (here deleted by hand,
        // without the totals), the outbox is counted again from the table.
        let dir = TempDir()
        let spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 100_000 })
        _ = try await spool.append((1...8).map { record("m\($0)", at: 90_000, size: 200 + $0) })
        let reader = try spool.makeReader()
        let batch = try reader.leaseBatch(nowMillis: 100_000, maxCount: 5, maxBytes: 1 << 20)
        #expect(batch.count == 5)
        let byHand = try SQLiteConnection(path: dir.db)
        try byHand.execute("DELETE FROM outbox WHERE message_id = 'm3'")
        try await spool.acknowledge(batch, atMillis: 100_000)
        reader.release(batch)
        await spool.settle()
        #expect(onDisk(spool.stats) == onDisk(try recount(dir.db)))
        #expect(spool.stats.depth == 3)
        // And the usual case, every leased row there: counted from the lease.
        let rest = try reader.leaseBatch(nowMillis: 100_000, maxCount: 5, maxBytes: 1 << 20)
        try await spool.acknowledge(rest, atMillis: 100_000)
        reader.release(rest)
        await spool.settle()
        #expect(onDisk(spool.stats) == onDisk(try recount(dir.db)))
        #expect(spool.stats.depth == 0 && spool.stats.bytes == 0)
        await spool.close()
    }

    @Test func acknowledgementsGoInRunsOfConsecutiveRowsWithTheirBytes() {
        func message(_ seq: Int64, _ bytes: Int) -> SpoolMessage {
            SpoolMessage(seq: seq, messageID: "m\(seq)", writeKey: "", receivedAtMillis: 0, attempts: 0, payload: Array(repeating: 0x61, count: bytes))
        }
        let max = Int(SpoolWriter.maxRunBytes)
        // Out of order, one listed twice, a gap after 3, and rows 10-12 whose
        // bytes pass the run limit at 12.
        let runs = SpoolWriter.consecutiveRuns([message(3, 30), message(1, 10), message(2, 20), message(1, 10),
                                                message(10, max / 2), message(11, max / 2), message(12, 5)])
        #expect(runs.map { [$0.first, $0.last, $0.bytes] } == [[1, 3, 60], [10, 11, Int64(max / 2 * 2)], [12, 12, 5]])
        // A row larger than the limit is a run of its own.
        #expect(SpoolWriter.consecutiveRuns([message(5, max + 1), message(6, 1)]).map { [$0.first, $0.last, $0.bytes] }
                == [[5, 5, Int64(max + 1)], [6, 6, 1]])
    }

    @Test func expiryRunsInBoundedSlicesAndAppendsAreAnsweredMeanwhile() async throws {
        let dir = TempDir()
        let clock = ManualClock(1_000)
        let spool = try Spool(options: SpoolOptions(path: dir.db, maxAgeMillis: 10_000, maintenanceSliceRows: 100),
                              nowMillis: clock.now)
        _ = try await spool.append((0..<1_050).map { record("old\($0)", at: 1_000) })
        let commitsBefore = spool.stats.commits
        clock.advance(20_000)
        // An append goes through while the sweep is under way.
        #expect(try await spool.append([record("live", at: 21_000)]) == [.stored])
        for _ in 0..<50 where spool.stats.expired < 1_050 { await spool.settle() }
        #expect(spool.stats.expired == 1_050)
        #expect(spool.stats.depth == 1)
        #expect(spool.stats.commits - commitsBefore >= 11, "1,050 rows in slices of at most 100: at least 11 transactions")
        await spool.close()
    }

    @Test func aRowInFlightIsNeverExpiredOrDropped() async throws {
        let dir = TempDir()
        let clock = ManualClock(1_000)
        let spool = try Spool(options: SpoolOptions(path: dir.db, maxBytes: 600, onFull: .dropOldest, maxAgeMillis: 10_000),
                              nowMillis: clock.now)
        _ = try await spool.append((1...4).map { record("m\($0)", at: 1_000, size: 100) })
        let reader = try spool.makeReader()
        let inFlight = try reader.leaseBatch(nowMillis: 1_000, maxCount: 2, maxBytes: 1 << 20)
        #expect(inFlight.map(\.messageID) == ["m1", "m2"])
        // drop_oldest must skip the leased m1, m2 and drop m3 to make room.
        #expect(try await spool.append([record("m5", at: 1_000, size: 300)]) == [.stored])
        #expect(spool.stats.dropped >= 1)
        // expiry must skip them too.
        clock.advance(20_000)
        await spool.settle()
        await spool.settle()
        let remaining = try SQLiteConnection(path: dir.db).prepare("SELECT message_id FROM outbox ORDER BY seq")
        var ids: [String] = []
        while try remaining.step() { ids.append(remaining.string(0) ?? "") }
        #expect(ids == ["m1", "m2"], "only the in-flight rows are still queued")
        // The batch is delivered: acknowledged once, never also dead-lettered.
        try await spool.acknowledge(inFlight, atMillis: clock.now())
        reader.release(inFlight)
        let dead = try SQLiteConnection(path: dir.db).scalarInt("SELECT count(*) FROM dead_letters WHERE message_id IN ('m1','m2')")
        #expect(dead == 0)
        await spool.close()
    }

    @Test func maxBytesCountsDeadLettersAndDedupeIdsAndGivesUpTheOldestIdsFirst() async throws {
        let dir = TempDir()
        // Each message costs its payload plus its id (length + 16) in message_ids.
        let spool = try Spool(options: SpoolOptions(path: dir.db, maxBytes: 1_100), nowMillis: { 2_000 })
        _ = try await spool.append((1...6).map { record("id-\($0)", at: 1_000, size: 100) })
        let reader = try spool.makeReader()
        let sent = try reader.leaseBatch(nowMillis: 1_000, maxCount: 5, maxBytes: 1 << 20)
        try await spool.acknowledge(sent, atMillis: 1_000)
        reader.release(sent)
        let dead = try reader.leaseBatch(nowMillis: 1_000, maxCount: 1, maxBytes: 1 << 20)
        try await spool.deadLetter(dead, reason: DeadLetterReason(reason: "HTTP 400", status: 400), nowMillis: 1_000)
        reader.release(dead)
        #expect(spool.stats.dedupeIDs == 5)
        #expect(spool.stats.deadLetterBytes == 100)
        #expect(spool.stats.totalBytes == 100 + 5 * (4 + 16))
        // 8 more (970 bytes with their ids) + 100 dead + 100 of delivered ids is past 1,100:
        // the delivered ids go first (a queued message's id never does).
        let outcomes = try await spool.append((7...14).map { record("id-\($0)", at: 2_000, size: 100) })
        #expect(outcomes == Array(repeating: .stored, count: 8))
        #expect(spool.stats.dedupeEvicted > 0)
        #expect(spool.stats.totalBytes <= 1_100)
        // Dead letters are not given up: the next call is refused.
        await #expect(throws: SpoolError.self) { try await spool.append([record("id-15", at: 3_000, size: 150)]) }
        await spool.close()
    }

    @Test func aReplayedDeadLetterStartsAFreshAge() async throws {
        let dir = TempDir()
        let clock = ManualClock(1_000)
        let spool = try Spool(options: SpoolOptions(path: dir.db, maxAgeMillis: 10_000), nowMillis: clock.now)
        _ = try await spool.append([record("late", at: 1_000)])
        clock.advance(20_000)
        await spool.settle()
        #expect(spool.stats.deadLetters == 1)
        #expect(try SpoolAdmin(path: dir.db).replayDeadLetters(ids: nil, nowMillis: clock.now()).replayed == 1)
        clock.advance(2_000)  // the next sweep
        await spool.settle()
        await spool.settle()
        #expect(spool.stats.depth == 1, "replayed at 21 s, so not older than max_age (10 s) at 23 s")
        #expect(spool.stats.deadLetters == 0)
        await spool.close()
    }

    @Test func aDeadLetterIsNotReplayedWhileItsIdIsHeldByALateDelivery() async throws {
        let (dir, clock, spool) = try spoolOnManualClock()
        let reader = try spool.makeReader()
        // "x" is refused by the upstream twice (two dead letters, the id
        // forgotten each time), sent a third time by the app, and that one is
        // delivered five hours after its receipt.
        for _ in 1...2 {
            #expect(try await spool.append([record("x", at: clock.now())]) == [.stored])
            let refused = try reader.leaseBatch(nowMillis: clock.now(), maxCount: 10, maxBytes: 1 << 20)
            try await spool.deadLetter(refused, reason: DeadLetterReason(reason: "HTTP 400: bad", status: 400), nowMillis: clock.now())
            reader.release(refused)
        }
        #expect(try await spool.append([record("x", at: clock.now())]) == [.stored])
        clock.advance(5 * hour)
        #expect(try await spool.deliverDue(reader, atMillis: clock.now()).count == 1)
        let admin = try SpoolAdmin(path: dir.db)
        let deadIDs = try admin.deadLetters(limit: 10).map(\.id).sorted()
        #expect(deadIDs.count == 2)
        // Replayed within a day of that delivery, "x" would go out twice.
        clock.advance(window - hour)
        let held = try admin.replayDeadLetters(ids: [deadIDs[0]], nowMillis: clock.now())
        #expect(held.replayed == 0)
        #expect(held.alreadyQueued == 1)
        // A day after it, "x" is a new message again.
        clock.advance(hour + 1)
        #expect(try admin.replayDeadLetters(ids: [deadIDs[1]], nowMillis: clock.now()).replayed == 1)
        await spool.close()
    }

    @Test func anImportDoesNotQueueAnIdHeldByALateDelivery() async throws {
        let (dir, clock, spool) = try spoolOnManualClock()
        _ = try await spool.append([record("x", at: clock.now())])
        clock.advance(5 * hour)  // delivered five hours after its receipt
        #expect(try await spool.deliverDue(try spool.makeReader(), atMillis: clock.now()).count == 1)
        let importer = try SpoolImporter(path: dir.db, maxBytes: 1 << 30)
        clock.advance(window - hour)
        #expect(try importer.commit([record("x", priority: .bulk, at: clock.now())], run: nil, atMillis: clock.now()) == (stored: 0, duplicates: 1))
        clock.advance(hour + SpoolSQL.deliveryMarginMillis + 1)
        #expect(try importer.commit([record("x", priority: .bulk, at: clock.now())], run: nil, atMillis: clock.now()) == (stored: 1, duplicates: 0))
        await spool.close()
    }

    @Test func aSpoolWrittenByTheFirstReleaseOpensMigratedWithExactCounts() async throws {
        let dir = TempDir()
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/spool-v1.db").path
        try FileManager.default.copyItem(atPath: fixture, toPath: dir.db)
        #expect(try SQLiteConnection(path: dir.db).scalarInt("PRAGMA user_version") == 1)
        let spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        #expect(try SQLiteConnection(path: dir.db).scalarInt("PRAGMA user_version") == Schema.currentVersion)
        let s = spool.stats
        #expect(s.depth == 3)
        #expect(s.deadLetters == 1)
        #expect(s.dedupeIDs == 4, "the delivered id and the three queued ones: one dedupe table")
        #expect(s.rejected == 1)
        #expect(onDisk(s) == onDisk(try recount(dir.db)))
        let reader = try spool.makeReader()
        let leased = try reader.leaseBatch(nowMillis: Spool.wallClockMillis(), maxCount: 10, maxBytes: 1 << 20)
        #expect(leased.map(\.messageID) == ["v1-queued-1", "v1-queued-2", "v1-queued-3"])
        // The id the v1 relay delivered is still in the dedupe window.
        let sentAt = try SQLiteConnection(path: dir.db).scalarInt("SELECT seen_at FROM message_ids WHERE message_id = 'v1-sent'") ?? 0
        #expect(try await spool.append([record("v1-sent", at: sentAt + 1_000)]) == [.duplicate])
        // The migrated file keeps exact counts through new appends and deliveries.
        #expect(try await spool.append([record("v4-new-1", at: 2_000), record("v4-new-2", at: 2_000)]) == [.stored, .stored])
        try await spool.acknowledge(Array(leased.prefix(2)), atMillis: 3_000)
        #expect(spool.stats.depth == 3)
        #expect(onDisk(spool.stats) == onDisk(try recount(dir.db)))
        await spool.close()
    }

    /// A v4 file that still has the dedupe ids' stored triggers, its counts
    /// doubled by a build that also counted them itself: v5 drops the
    /// triggers and counts the ids again, and the counts stay exact after.
    @Test func aV4SpoolWithIdsCountedTwiceOpensWithExactCounts() async throws {
        let dir = TempDir()
        // A file made by the schema's first four steps: the ids' stored triggers count each id once...
        let db = try SQLiteConnection(path: dir.db)
        for step in Schema.migrations.prefix(4) { try db.execute(step) }
        try db.execute("PRAGMA user_version = 4")
        for i in 1...5 { try db.execute("INSERT INTO message_ids (message_id, seen_at) VALUES ('v4-\(i)', 1000)") }
        // ...and a build that also counted them itself counted them twice.
        try db.execute("UPDATE totals SET ids_count = ids_count * 2, ids_bytes = ids_bytes * 2")
        let spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        #expect(spool.stats.dedupeIDs == 5)
        #expect(onDisk(spool.stats) == onDisk(try recount(dir.db)))
        _ = try await spool.append([record("v5-new", at: 1_500)])
        #expect(onDisk(spool.stats) == onDisk(try recount(dir.db)), "each new id counted once")
        await spool.close()
    }

    /// A v7 file whose rows are out of receipt order (a clock set back
    /// before the upgrade): v8 puts each priority's in order, a row behind a
    /// later one taking that one's time, its id's too, so the first row of
    /// each is the oldest and nothing expires early.
    @Test func aV7SpoolsRowsOutOfOrderArePutInOrderWhenItOpens() async throws {
        let dir = TempDir()
        do {
            let db = try SQLiteConnection(path: dir.db)
            for step in Schema.migrations.prefix(7) { try db.execute(step) }
            try db.execute("PRAGMA user_version = 7")
            let bulk = SpoolPriority.bulkSeqBase
            try db.execute("""
                INSERT INTO outbox (seq, message_id, write_key, priority, received_at, payload, bytes) VALUES
                    (1, 'a', '', 0, 5000, '{}', 2), (2, 'b', '', 0, 4000, '{}', 2), (3, 'c', '', 0, 6000, '{}', 2),
                    (\(bulk + 4), 'd', '', 1, 3000, '{}', 2), (\(bulk + 5), 'e', '', 1, 2500, '{}', 2);
                INSERT INTO message_ids VALUES ('a', 5000), ('b', 4000), ('c', 6000), ('d', 3000), ('e', 2500), ('sent', 1000);
                UPDATE totals SET outbox_count = 5, outbox_bytes = 10, ids_count = 6, ids_bytes = 5 * 17 + 20, last_seq = 5;
                """)
        }
        let spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 7_000 })
        let db = try SQLiteConnection(path: dir.db)
        func column(_ sql: String) throws -> [Int64] {
            let st = try db.prepare(sql)
            var out: [Int64] = []
            while try st.step() { out.append(st.int64(0)) }
            return out
        }
        #expect(try column("SELECT received_at FROM outbox ORDER BY seq") == [5000, 5000, 6000, 3000, 3000])
        #expect(try column("SELECT seen_at FROM message_ids ORDER BY message_id") == [5000, 5000, 6000, 3000, 3000, 1000])
        #expect(try db.scalarInt("SELECT count(*) FROM sqlite_master WHERE name = 'outbox_received_at'") == 0)
        #expect(spool.stats.oldestReceivedAtMillis == 3000)
        #expect(onDisk(spool.stats) == onDisk(try recount(dir.db)))
        await spool.close()
    }

    /// A v6 file (AUTOINCREMENT seqs, live and imported rows mixed, its
    /// newest rows delivered): v7 moves imported rows to their own seqs and
    /// keeps the counter, so the order holds and no seq is used twice.
    @Test func aV6SpoolOpensWithItsOrderAndNeverReusesASeq() async throws {
        let dir = TempDir()
        let db = try v6Spool(at: dir.db)
        #expect(try db.scalarInt("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'") == 7)
        let spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        #expect(onDisk(spool.stats) == onDisk(try recount(dir.db)))
        #expect(try SQLiteConnection(path: dir.db).scalarInt("SELECT count(*) FROM sqlite_master WHERE name = 'outbox_order'") == 0)
        #expect(try SQLiteConnection(path: dir.db).scalarInt("SELECT count(*) FROM sqlite_master WHERE name = 'outbox_received_at'") == 0,
                "v8: an append writes the outbox's table alone")
        #expect(try SQLiteConnection(path: dir.db).scalarInt("SELECT count(*) FROM sqlite_master WHERE name = 'outbox' AND sql LIKE '%AUTOINCREMENT%'") == 0,
                "a small outbox is copied into a table without AUTOINCREMENT at once")
        #expect(try await spool.append([record("v7-live", at: 2_000)]) == [.stored])
        let importer = try SpoolImporter(path: dir.db, maxBytes: 1 << 30)
        #expect(try importer.commit([record("v7-bulk", priority: .bulk, at: 2_000)], run: nil, atMillis: 2_000) == (stored: 1, duplicates: 0))
        _ = try await spool.append([record("v7-live-2", at: 2_000)])
        // Live first, each priority in the order it came, whoever wrote it.
        let reader = try spool.makeReader()
        let leased = try reader.leaseBatch(nowMillis: 3_000, maxCount: 20, maxBytes: 1 << 20)
        #expect(leased.map(\.messageID) == ["v6-0", "v6-2", "v6-4", "v7-live", "v7-live-2", "v6-1", "v6-3", "v7-bulk"])
        #expect(leased.map { SpoolPriority.number(ofSeq: $0.seq) } == [1, 3, 5, 8, 10, 2, 4, 9],
                "numbered on from the v6 counter (7), by the daemon and the importer alike")
        #expect(onDisk(spool.stats) == onDisk(try recount(dir.db)))
        await spool.close()
    }

    /// A v6 file whose outbox holds live and imported rows v6-0...v6-4
    /// (imported: 1 and 3), its newest two rows (seq 6 and 7) delivered.
    private func v6Spool(at path: String) throws -> SQLiteConnection {
        let db = try SQLiteConnection(path: path)
        try db.execute("PRAGMA journal_mode = WAL")
        for step in Schema.migrations.prefix(6) { try db.execute(step) }
        try db.execute("PRAGMA user_version = 6")
        for (i, priority) in [0, 1, 0, 1, 0, 0, 0].enumerated() {
            try db.execute("""
                INSERT INTO message_ids VALUES ('v6-\(i)', 1000);
                INSERT INTO outbox (message_id, priority, received_at, payload, bytes) VALUES ('v6-\(i)', \(priority), 1000, x'7b7d', 2)
                """)
        }
        try db.execute("DELETE FROM outbox WHERE seq >= 6")
        try db.execute(SpoolSQL.recountOutbox)
        try db.execute("UPDATE totals SET ids_count = 7, ids_bytes = 7 * (4 + 16)")
        return db
    }

    /// A large outbox keeps its AUTOINCREMENT table (v7 numbers rows
    /// itself all the same) until a start finds it small.
    @Test func aLargeOutboxIsCopiedWithoutAutoincrementOnlyOnceItIsSmall() throws {
        let dir = TempDir()
        let db = try v6Spool(at: dir.db)
        try Schema.migrate(db)
        let autoincrement = "SELECT count(*) FROM sqlite_master WHERE name = 'outbox' AND sql LIKE '%AUTOINCREMENT%'"
        #expect(try Schema.rebuildOutbox(db, ifAtMost: 4) == false, "5 rows queued: more than 4")
        #expect(try db.scalarInt(autoincrement) == 1)
        #expect(try Schema.rebuildOutbox(db, ifAtMost: 5))
        #expect(try db.scalarInt(autoincrement) == 0)
        let seqs = try db.prepare("SELECT group_concat(seq, ' ') FROM (SELECT seq FROM outbox ORDER BY seq)")
        #expect(try seqs.step() && seqs.string(0) == "1 3 5 \(SpoolPriority.bulk.seq(2)) \(SpoolPriority.bulk.seq(4))")
        #expect(try db.scalarInt("SELECT last_seq FROM totals") == 7)
        #expect(try Schema.rebuildOutbox(db, ifAtMost: 0), "nothing left to copy")
    }

    @Test func operatorReplayAndPurgeWorkInSlicesAndSayWhatTheyDid() async throws {
        let dir = TempDir()
        let clock = ManualClock(1_000)
        let spool = try Spool(options: SpoolOptions(path: dir.db, maxAgeMillis: 10_000), nowMillis: clock.now)
        _ = try await spool.append((0..<2_500).map { record("d\($0)", at: 1_000) })
        clock.advance(20_000)
        for _ in 0..<20 where spool.stats.deadLetters < 2_500 { await spool.settle() }
        #expect(spool.stats.deadLetters == 2_500)
        let admin = try SpoolAdmin(path: dir.db)
        // A message with the same id as a dead letter is queued again meanwhile.
        _ = try await spool.append([record("d0", at: clock.now())])
        let firstTwo = try admin.deadLetters(limit: 2_500).map(\.id).sorted().prefix(2)
        let some = try admin.replayDeadLetters(ids: Array(firstTwo) + [999_999], nowMillis: clock.now())
        #expect(some.replayed == 1 && some.alreadyQueued == 1, "d0 is queued already; d1 goes back")
        #expect(some.notFound == [999_999])
        let all = try admin.replayDeadLetters(ids: nil, nowMillis: clock.now())
        #expect(all.replayed == 2_498, "every remaining dead letter, across three slices of 1,000")
        await spool.settle()
        #expect(onDisk(spool.stats) == onDisk(try recount(dir.db)))
        #expect(spool.stats.depth == 2_500 && spool.stats.deadLetters == 0)
        clock.advance(20_000)
        for _ in 0..<20 where spool.stats.deadLetters < 2_500 { await spool.settle() }
        #expect(try admin.purgeDeadLetters(deadBeforeMillis: nil) == 2_500)
        await spool.settle()
        #expect(spool.stats.deadLetters == 0)
        #expect(onDisk(spool.stats) == onDisk(try recount(dir.db)))
        await spool.close()
    }
}

@Suite struct SpoolAdminSchemaTests {
    @Test func operatorCommandsLeaveAnOlderSpoolToTheDaemonToMigrate() throws {
        let dir = TempDir()
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/spool-v1.db").path
        try FileManager.default.copyItem(atPath: fixture, toPath: dir.db)
        #expect {
            _ = try SpoolAdmin(path: dir.db)
        } throws: { error in
            guard case SpoolError.olderSchema(_, let found, _) = error else { return false }
            return found == 1 && "\(error)".contains("start the upgraded relay once")
        }
        #expect(try SQLiteConnection(path: dir.db).scalarInt("PRAGMA user_version") == 1, "left as it was")
    }
}

@Suite struct SpoolAdminMessageTests {
    @Test func aMissingOrForeignSpoolIsNamedWithoutSpeakingOfWrites() throws {
        let dir = TempDir()
        let missing = dir.path + "/nowhere/spool.db"
        #expect {
            _ = try SpoolAdmin(path: missing)
        } throws: { error in
            guard case SpoolError.notFound(missing) = error else { return false }
            let text = "\(error)"
            return text.contains(missing) && !text.contains("write") && text.contains("--spool")
        }
        try "not a database, just text".write(toFile: dir.db, atomically: true, encoding: .utf8)
        #expect {
            _ = try SpoolAdmin(path: dir.db)
        } throws: { error in
            let text = "\(error)"
            return text.hasPrefix("\(dir.db) is not a plainflow-relay spool (not an SQLite database)") && !text.contains("write")
        }
    }

    @Test func spoolStatsEncodeWithTheRelaysSnakeCaseNames() throws {
        let e = JSONEncoder()
        e.outputFormatting = .sortedKeys
        let stats = String(decoding: try e.encode(SpoolStats(depth: 1, bytes: 2, oldestReceivedAtMillis: 3, deadLetters: 4, rejected: 5)), as: UTF8.self)
        #expect(!stats.contains { $0.isUppercase }, "\(stats)")
    }
}
