import Foundation
import Logging
import Synchronization
import Testing
@testable import RelaySpool

/// The WAL is copied back into the database file by a thread of its own
/// (SpoolCheckpointer): while apps keep sending, the WAL stays bounded and
/// starts over, and everything committed is in the file.
@Suite struct SpoolCheckpointTests {
    /// Version-4-shaped random ids, as the SDKs send: each new id lands on a
    /// page of the id index of its own, the WAL's worst case.
    private static func randomIDs(_ n: Int) -> [String] { (0..<n).map { _ in UUID().uuidString.lowercased() } }

    /// SQLite up to 3.51.2 can lose committed frames when a checkpoint starts
    /// while another connection's commit resets a WAL just copied whole (the
    /// WAL-reset bug): once one of our checkpoints copied it whole, none
    /// starts until the writer has written again.
    @Test func noCheckpointStartsBetweenACopyOfTheWholeWALAndTheWritersNextWrite() throws {
        let dir = TempDir()
        let db = try SQLiteConnection(path: dir.db)
        try db.execute("PRAGMA journal_mode = WAL; CREATE TABLE t (x)")
        db.trackWAL()
        let checkpointer = try SpoolCheckpointer(path: dir.db, pageSize: 4096, maxBytes: 64 << 20, logger: Logger(label: "test"))
        try db.execute("INSERT INTO t VALUES (1)")
        let whole = try #require(checkpointer.copy(on: db, wait: true))
        #expect(whole.frames > 0 && whole.copied == whole.frames)
        #expect(!checkpointer.mayStartCopy, "copied whole: the thread starts none until the writer writes")
        let idle = db.walCommits
        _ = checkpointer.writing({ nil }, wroteFrames: { db.walCommits != idle })
        #expect(!checkpointer.mayStartCopy, "a transaction that wrote nothing cannot have started the WAL over")
        let before = db.walCommits
        _ = checkpointer.writing({ (try? db.execute("INSERT INTO t VALUES (2)")) == nil ? SQLiteError(code: 1, message: "insert") : nil },
                                 wroteFrames: { db.walCommits != before })
        #expect(db.walFrames < whole.frames + 2, "the write started the WAL over")
        #expect(checkpointer.mayStartCopy, "after the writer's write, the thread's copies go on")
        checkpointer.stop()
    }

    @Test func theWALStaysBoundedAndStartsOverWhileAppendsKeepComing() async throws {
        let dir = TempDir()
        // 64 MiB: the WAL is copied back from 1,024 pages (4 MiB) and by the writer itself from 4 times that.
        let options = SpoolOptions(path: dir.db, maxBytes: 64 << 20)
        let spool = try Spool(options: options, nowMillis: { 2_000 })
        let ids = Self.randomIDs(24_000)
        final class Largest: Sendable { let bytes = Mutex(0) }
        let largest = Largest()
        let wal = dir.db + "-wal"
        let sampling = Task.detached {
            while !Task.isCancelled {
                let size = (try? FileManager.default.attributesOfItem(atPath: wal))?[.size] as? Int ?? 0
                largest.bytes.withLock { $0 = max($0, size) }
                try? await Task.sleep(nanoseconds: 2_000_000)
            }
        }
        // Eight apps sending batches of 50 at once: many commits, none of them waiting for the others.
        try await withThrowingTaskGroup(of: Int.self) { group in
            for app in 0..<8 {
                group.addTask {
                    var stored = 0
                    for start in stride(from: app * 50, to: ids.count, by: 400) {
                        let batch = ids[start..<min(start + 50, ids.count)].map { record($0, size: 600) }
                        stored += try await spool.append(batch).filter { $0 == .stored }.count
                    }
                    return stored
                }
            }
            var stored = 0
            for try await n in group { stored += n }
            #expect(stored == ids.count)
        }
        sampling.cancel()
        _ = await sampling.result
        let databaseBytes = (try FileManager.default.attributesOfItem(atPath: dir.db)[.size] as? Int) ?? 0
        let walBytes = largest.bytes.withLock { $0 }
        // Past 4,096 pages the writer copies it back itself; one commit (at most 1,000 calls) may come on top.
        #expect(walBytes <= (16 + 8) << 20, "the WAL grew to \(walBytes) bytes")
        // 24,000 calls of 600 bytes (about 20 MiB) went through a WAL that never held them all at once.
        #expect(databaseBytes >= 12 << 20, "copied back while the appends ran: the database file holds \(databaseBytes) bytes")
        await spool.close()

        let reopened = try Spool(options: options, nowMillis: { 2_000 })
        #expect(reopened.stats.depth == Int64(ids.count), "every committed call is in the file")
        #expect(try await reopened.append([record(ids[7_777])]) == [.duplicate], "and every id")
        await reopened.close()
    }
}
