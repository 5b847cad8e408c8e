// SpoolReader: the forwarder's narrow view of the outbox, and the operator's.
//
// Owns: its own read-only connection (WAL lets it read while the writer
// commits). Leases live in the spool's LeaseTable, shared with the writer
// (which never expires or drops a leased row), and only in memory: a row is
// leased from when it is read into a batch until the writer has applied that
// batch's outcome. After a crash no lease survives, so every unsent row is
// simply read again.
//
// A lease reads from where the in-flight rows end, not from the head of the
// outbox: from the LeaseTable's cursor, per priority, below which every row
// is leased, gone or deferred. It moves only over rows a read saw leased (or
// leased itself) and rows not due (in backoff, or of a held write key: the
// LeaseTable remembers the lowest and when the first is due, and moves the
// cursor back there then), and moves back when a row below it is given back
// still queued (retried, or released unsent). So a read does not re-read the
// thousands of rows in flight, nor a refused app's backlog at every read,
// and never skips for good a row that is queued and not leased.
//
// Not thread-safe: one owner (the forwarder).

import CSQLite

/// Reads due messages in FIFO order (live before bulk) and tracks leases.
public final class SpoolReader {
    private let db: SQLiteConnection
    private let rows: SQLiteStatement
    private let shared: Spool.Shared
    /// Write keys whose rows are not due until then (`hold`).
    private var holds: [String: Int64] = [:]

    init(path: String, shared: Spool.Shared) throws(SpoolError) {
        self.shared = shared
        do {
            db = try SQLiteConnection(path: path)
            // A small page cache: SQLite empties a reader's cache whenever
            // another connection has committed (here: every commit of the
            // writer), so a large one only holds memory.
            try db.execute("PRAGMA busy_timeout = 5000; PRAGMA query_only = 1; PRAGMA cache_size = -256")
            // Every row past the cursor, due or not: a row in backoff the
            // cursor passes must be remembered, so it cannot be filtered out unseen.
            rows = try db.prepare("""
                SELECT seq, message_id, write_key, received_at, attempts, payload, next_attempt_at
                FROM outbox WHERE priority = ?1 AND seq > ?2 ORDER BY seq
                """)
        } catch {
            throw SpoolError.storage(error)
        }
    }

    /// Leases the next batch: the oldest due messages that share the first
    /// one's write key, at most `maxCount` of them and at most `maxBytes` of
    /// payload. Rows already leased are skipped, and so are rows whose write
    /// key is held (`hold`). Empty when nothing is due.
    public func leaseBatch(nowMillis: Int64, maxCount: Int, maxBytes: Int) throws(SpoolError) -> [SpoolMessage] {
        var batch: [SpoolMessage] = []
        var size = 0
        var key: String?
        if !holds.isEmpty { holds = holds.filter { $0.value > nowMillis } }
        // Commits finished before this read: removals up to there are not in its snapshot.
        let committed = shared.commits.load(ordering: .acquiring)
        var start = shared.leases.withLock { $0.beginRead(committedBeforeRead: committed, nowMillis: nowMillis) }
        // Due rows a read may pass over (other write keys, in flight), as before the cursor.
        var budget = maxCount * 4 + start.unavailable.count
        // Rows not due it may pass over (in backoff, or their key held): an app whose key
        // the upstream refuses can have a long run of them. No read may cost what the
        // outbox holds; the cursor moves over those it passed, so the next read goes on
        // from there and the other apps' calls behind them are reached.
        var notDue = maxCount * 40
        // Per priority read: the last seq of the leading run of rows that are leased,
        // taken or not due, and the rows not due in that run.
        var runs: [(priority: Int, through: Int64)] = []
        var passed: [(priority: Int, from: Int64, dueAt: Int64)] = []
        do {
            read: for priority in [SpoolPriority.live, .bulk] {
                let p = Int(priority.rawValue)
                defer { rows.reset() }
                try rows.bind(1, priority.rawValue)
                try rows.bind(2, start.after[p])
                var inRun = true
                var through = start.after[p]
                var deferredFrom: Int64?
                var deferredDue = Int64.max
                defer {
                    runs.append((p, through))
                    if let deferredFrom { passed.append((p, deferredFrom, deferredDue)) }
                }
                while try rows.step() {
                    let seq = rows.int64(0)
                    var dueAt = rows.int64(6)
                    if dueAt <= nowMillis, !holds.isEmpty, let held = holds[rows.string(2) ?? ""] { dueAt = held }
                    if dueAt > nowMillis {  // not due: passed over, and remembered if the cursor moves past it
                        if !start.unavailable.contains(seq) {
                            if inRun { through = seq; deferredFrom = deferredFrom ?? seq; deferredDue = min(deferredDue, dueAt) }
                        } else if inRun && start.leased.contains(seq) {
                            through = seq
                        } else {
                            inRun = false
                        }
                        notDue -= 1
                        if notDue <= 0 { break read }
                        continue
                    }
                    if budget <= 0 { break read }
                    budget -= 1
                    if start.unavailable.contains(seq) {
                        if inRun && start.leased.contains(seq) { through = seq } else { inRun = false }
                        continue
                    }
                    let writeKey = rows.string(2) ?? ""
                    if let key, key != writeKey { inRun = false; continue }
                    let payload = rows.bytes(5)
                    if !batch.isEmpty && size + payload.count > maxBytes { break read }
                    key = writeKey
                    size += payload.count
                    batch.append(SpoolMessage(
                        seq: seq, messageID: rows.string(1) ?? "", writeKey: writeKey,
                        receivedAtMillis: rows.int64(3), attempts: Int(rows.int64(4)), payload: payload))
                    if inRun { through = seq }
                    if batch.count >= maxCount { break read }
                }
            }
        } catch {
            _ = shared.leases.withLock { $0.endRead(leasing: []) }
            throw SpoolError.storage(error)
        }
        // Drop this read's copies of the sets first, so that leasing does not copy them.
        start.unavailable = []
        start.leased = []
        // The writer may have claimed a row for removal since the snapshot above.
        let refused = shared.leases.withLock { $0.endRead(leasing: batch.map(\.seq), start: start, runs: runs, passed: passed) }
        return refused.isEmpty ? batch : batch.filter { !refused.contains($0.seq) }
    }

    /// Holds back the rows of `writeKey` until `untilMillis` (the upstream
    /// refused that key): reads pass over them as over rows in backoff, so
    /// the other keys' rows behind them go, and the held rows are read
    /// again, oldest first, once the hold ends. Held keys are in memory only
    /// (after a restart one batch finds the refusal again) and at most
    /// `maxHolds` at once; past that a key's rows wait only for the backoff
    /// each batch gets.
    public func hold(writeKey: String, untilMillis: Int64) {
        guard holds[writeKey] != nil || holds.count < Self.maxHolds else { return }
        holds[writeKey] = max(holds[writeKey] ?? .min, untilMillis)
    }

    /// Most write keys held at once.
    public static let maxHolds = 10_000

    /// Ends the lease on these rows (after their outcome was committed, or to
    /// give them back); rows still queued are read again, oldest first.
    public func release(_ messages: [SpoolMessage]) {
        shared.leases.withLock { $0.release(messages.lazy.map(\.seq)) }
    }

}

extension SpoolStats {
    /// The counts as the file holds them (`totals`, exact after every commit) and the
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
