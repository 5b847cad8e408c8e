// SpoolReader: the forwarder's narrow view of the outbox, and the operator's.
//
// Owns: its own read-only connection (WAL lets it read while the writer
// commits) and the set of leased rows. A lease lives only in memory: a row
// is leased from when it is read into a batch until the writer has applied
// that batch's outcome. After a crash no lease survives, so every unsent row
// is simply read again.
//
// Not thread-safe: one owner (the forwarder).

import CSQLite

/// Reads due messages in FIFO order (live before bulk) and tracks leases.
public final class SpoolReader {
    private let db: SQLiteConnection
    private let due: SQLiteStatement
    private var leased: Set<Int64> = []

    init(path: String) throws(SpoolError) {
        do {
            db = try SQLiteConnection(path: path)
            try db.execute("PRAGMA busy_timeout = 5000; PRAGMA query_only = 1")
            due = try db.prepare("""
                SELECT seq, message_id, write_key, received_at, attempts, payload
                FROM outbox WHERE next_attempt_at <= ?1
                ORDER BY priority, seq LIMIT ?2
                """)
        } catch {
            throw SpoolError.storage(error)
        }
    }

    /// Leases the next batch: the oldest due messages that share the first
    /// one's write key, at most `maxCount` of them and at most `maxBytes` of
    /// payload. Rows already leased are skipped. Empty when nothing is due.
    public func leaseBatch(nowMillis: Int64, maxCount: Int, maxBytes: Int) throws(SpoolError) -> [SpoolMessage] {
        var batch: [SpoolMessage] = []
        var size = 0
        var key: String?
        do {
            defer { due.reset() }
            try due.bind(1, nowMillis)
            try due.bind(2, Int64(maxCount * 4 + leased.count))
            while try due.step() {
                let seq = due.int64(0)
                if leased.contains(seq) { continue }
                let writeKey = due.string(2) ?? ""
                if let key, key != writeKey { continue }
                let payload = due.bytes(5)
                if !batch.isEmpty && size + payload.count > maxBytes { break }
                key = writeKey
                size += payload.count
                batch.append(SpoolMessage(
                    seq: seq, messageID: due.string(1) ?? "", writeKey: writeKey,
                    receivedAtMillis: due.int64(3), attempts: Int(due.int64(4)), payload: payload))
                if batch.count >= maxCount { break }
            }
        } catch {
            throw SpoolError.storage(error)
        }
        for m in batch { leased.insert(m.seq) }
        return batch
    }

    /// Ends the lease on these rows (after their outcome was committed, or to give them back).
    public func release(_ messages: [SpoolMessage]) {
        for m in messages { leased.remove(m.seq) }
    }

    /// Rows currently leased.
    public var leasedCount: Int { leased.count }

    /// Depth, bytes, oldest message, dead letters and rejected counts, read from disk.
    public func stats() throws(SpoolError) -> SpoolStats {
        do { return try SpoolStats.read(from: db) } catch { throw SpoolError.storage(error) }
    }
}

extension SpoolStats {
    /// The counters as the file holds them (the writer's commit count is not on disk).
    static func read(from db: SQLiteConnection) throws(SQLiteError) -> SpoolStats {
        let st = try db.prepare("SELECT count(*), COALESCE(sum(bytes), 0), min(received_at) FROM outbox")
        try st.step()
        return SpoolStats(
            depth: st.int64(0), bytes: st.int64(1), oldestReceivedAtMillis: st.isNull(2) ? nil : st.int64(2),
            deadLetters: try db.scalarInt("SELECT count(*) FROM dead_letters") ?? 0,
            rejected: try db.scalarInt("SELECT count(*) FROM rejected") ?? 0)
    }
}
