// Appends stored many rows a statement: a statement that fails mid-chunk
// fails the whole commit and leaves the writer usable with exact counts,
// and appends gathered in one commit still make room under max_bytes the
// way drop_oldest promises.

import Foundation
import Synchronization
import Testing
@testable import RelaySpool

@Suite struct SpoolChunkTests {
    /// Three appends in one commit; `poison` sits inside a 16-row chunk and
    /// `trigger` (added by another connection) makes its insert fail.
    private func failInsideAChunk(trigger: String, poison: String, knownIDInChunk: Bool = false) async throws {
        let dir = TempDir()
        do {
            let s = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
            _ = try await s.append([record("before")])
            await s.close()
        }
        try SQLiteConnection(path: dir.db).execute(trigger)
        let spool = try Spool(options: SpoolOptions(path: dir.db, commitLingerNanos: 200_000_000), nowMillis: { 2_000 })
        await spool.settle()
        let results = Mutex<[Int: Bool]>([:])
        let calls: [[SpoolAppend]] = [
            (0..<5).map { record("a\($0)") },
            (0..<6).map { record(knownIDInChunk && $0 == 3 ? "before" : "b\($0)") } + [record(poison)] + (0..<4).map { record("c\($0)") },
            [record("d0")],
        ]
        for (i, call) in calls.enumerated() {
            spool.append(call) { r in results.withLock { $0[i] = (try? r.get()) != nil } }
        }
        await spool.settle()
        #expect(results.withLock { $0 } == [0: false, 1: false, 2: false], "the whole commit failed")
        #expect(onDisk(spool.stats) == onDisk(try recount(dir.db)))
        // No savepoint or transaction left open: the same ids go in now.
        #expect(try await spool.append((0..<5).map { record("a\($0)") }) == Array(repeating: .stored, count: 5))
        #expect(spool.stats.depth == 1 + 5)
        #expect(onDisk(spool.stats) == onDisk(try recount(dir.db)))
        await spool.close()
    }

    @Test func theIdInsertFailingInsideItsSavepointFailsTheCommitCleanly() async throws {
        try await failInsideAChunk(
            trigger: "CREATE TRIGGER boom BEFORE INSERT ON message_ids WHEN NEW.message_id = 'boom' BEGIN SELECT RAISE(ABORT, 'boom'); END;",
            poison: "boom")
    }

    @Test func theRowInsertFailingAfterTheIdsFailsTheCommitCleanly() async throws {
        try await failInsideAChunk(
            trigger: "CREATE TRIGGER bang BEFORE INSERT ON outbox WHEN NEW.message_id = 'bang' BEGIN SELECT RAISE(ABORT, 'bang'); END;",
            poison: "bang")
    }

    @Test func aFailureOnTheOneByOnePathFailsTheCommitCleanly() async throws {
        try await failInsideAChunk(
            trigger: "CREATE TRIGGER boom BEFORE INSERT ON message_ids WHEN NEW.message_id = 'boom' BEGIN SELECT RAISE(ABORT, 'boom'); END;",
            poison: "boom", knownIDInChunk: true)
    }

    @Test func appendsGatheredInOneCommitDropTheOldestButNeverEachOther() async throws {
        let dir = TempDir()
        let base: SpoolStats
        do {
            let s = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
            _ = try await s.append((1...10).map { record("bulk\($0)", priority: .bulk, size: 200) })
            base = s.stats
            await s.close()
        }
        // Room for about 6 of the 12 new calls: the oldest bulk rows must go.
        let maxBytes = base.totalBytes + 1_500
        let spool = try Spool(options: SpoolOptions(path: dir.db, maxBytes: maxBytes, onFull: .dropOldest, commitLingerNanos: 200_000_000),
                              nowMillis: { 2_000 })
        await spool.settle()
        let commitsBefore = spool.stats.commits
        let results = Mutex<[Int: [AppendOutcome]]>([:])
        for i in 0..<12 {
            spool.append([record("n\(i)", size: 200)]) { r in results.withLock { $0[i] = (try? r.get()) ?? [] } }
        }
        await spool.settle()
        #expect(results.withLock { $0 }.values.allSatisfy { $0 == [.stored] } && results.withLock { $0.count } == 12)
        #expect(spool.stats.commits - commitsBefore <= 2, "the appends met in one commit")
        #expect(spool.stats.dropped > 0 && spool.stats.dropped < 10, "some of the bulk rows, not all: \(spool.stats.dropped)")
        #expect(spool.stats.totalBytes <= maxBytes)
        #expect(onDisk(spool.stats) == onDisk(try recount(dir.db)))
        let reader = try spool.makeReader()
        var queued: [String] = []
        while case let batch = try reader.leaseBatch(nowMillis: 2_000, maxCount: 100, maxBytes: 1 << 20), !batch.isEmpty {
            queued += batch.map(\.messageID)
        }
        #expect((0..<12).allSatisfy { queued.contains("n\($0)") }, "no call of the commit dropped another")
        #expect(queued.count == 12 + 10 - Int(spool.stats.dropped))
        await spool.close()
    }
}
