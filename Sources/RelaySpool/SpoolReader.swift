// SpoolReader: the forwarder's narrow view of the outbox, and the operator's.
//
// Owns: its own read-only connection (WAL lets it read while the writer
// commits). Leases live in the spool's LeaseTable, shared with the writer
// (which never expires or drops a leased row), and only in memory: a row is
// leased from when it is read into a batch until the writer has applied that
// batch's outcome. After a crash no lease survives, so every unsent row is
// simply read again.
//
// Not thread-safe: one owner (the forwarder).

import CSQLite

/// Reads due messages in FIFO order (live before bulk) and tracks leases.
public final class SpoolReader {
    private let db: SQLiteConnection
    private let due: SQLiteStatement
    private let shared: Spool.Shared

    init(path: String, shared: Spool.Shared) throws(SpoolError) {
        self.shared = shared
        do {
            db = try SQLiteConnection(path: path)
            // A small page cache: SQLite empties a reader's cache whenever
            // another connection has committed (here: every commit of the
            // writer), so a large one only holds memory.
            try db.execute("PRAGMA busy_timeout = 5000; PRAGMA query_only = 1; PRAGMA cache_size = -256")
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
        // Commits finished before this read: removals up to there are not in its snapshot.
        let committed = shared.commits.load(ordering: .acquiring)
        let unavailable = shared.leases.withLock { $0.beginRead(committedBeforeRead: committed) }
        do {
            defer { due.reset() }
            try due.bind(1, nowMillis)
            try due.bind(2, Int64(maxCount * 4 + unavailable.count))
            while try due.step() {
                let seq = due.int64(0)
                if unavailable.contains(seq) { continue }
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
            _ = shared.leases.withLock { $0.endRead(leasing: []) }
            throw SpoolError.storage(error)
        }
        // The writer may have claimed a row for removal since the snapshot above.
        let refused = shared.leases.withLock { $0.endRead(leasing: batch.map(\.seq)) }
        return refused.isEmpty ? batch : batch.filter { !refused.contains($0.seq) }
    }

    /// Ends the lease on these rows (after their outcome was committed, or to give them back).
    public func release(_ messages: [SpoolMessage]) {
        shared.leases.withLock { $0.release(messages.lazy.map(\.seq)) }
    }

}

extension SpoolStats {
    /// The counts as the file holds them (`totals`, kept by triggers) and the
    /// oldest message (by index): constant time whatever the spool holds.
    static let totalsSQL = """
        SELECT outbox_count, outbox_bytes, dead_count, dead_bytes, ids_count, ids_bytes, rejected_count,
               (SELECT min(received_at) FROM outbox)
        FROM totals
        """

    /// Sets the on-disk counts from one run of `totalsSQL` (the in-memory
    /// counters since start are left as they are).
    mutating func load(from st: SQLiteStatement) throws(SQLiteError) {
        defer { st.reset() }
        guard try st.step() else { return }
        depth = st.int64(0)
        bytes = st.int64(1)
        deadLetters = st.int64(2)
        deadLetterBytes = st.int64(3)
        dedupeIDs = st.int64(4)
        dedupeBytes = st.int64(5)
        rejected = st.int64(6)
        oldestReceivedAtMillis = st.isNull(7) ? nil : st.int64(7)
    }

    static func read(from db: SQLiteConnection) throws(SQLiteError) -> SpoolStats {
        var s = SpoolStats()
        try s.load(from: try db.prepare(totalsSQL))
        return s
    }
}
