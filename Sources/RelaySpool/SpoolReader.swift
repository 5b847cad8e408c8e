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
// is leased, gone or passed over while not due. It moves only over rows a
// read saw leased (or leased itself) and rows not due (in backoff, or of a
// held write key), and moves back when a row below it is given back still
// queued (retried, or released unsent). So a read does not re-read the
// thousands of rows in flight, and never skips for good a row that is queued
// and not leased.
//
// Rows passed over while not due are remembered per reason (`passed`): in
// backoff, with the earliest time one is due, or held with their write key,
// until its hold ends. Then, and only for that reason, the cursor moves back
// to the lowest of them. An app whose key the upstream refuses can have a
// million calls queued: they are stepped over once, a bounded number a read
// (`moreToRead` says to read on at once), the other apps' calls behind them
// go, and a refused batch given back does not send the cursor back to them.

// Not thread-safe: one owner (the forwarder).

import CSQLite

/// Reads due messages in FIFO order (live before bulk) and tracks leases.
public final class SpoolReader {
    private let db: SQLiteConnection
    private let rows: SQLiteStatement
    private let shared: Spool.Shared
    /// Write keys whose rows are not due until then (`hold`).
    private var holds: [String: Int64] = [:]
    /// The earliest end of a hold: until then none has ended.
    private var nextHoldEnd = Int64.max
    /// Why rows the cursor passed over were not due.
    private enum Reason: Hashable { case backoff, held(String) }
    /// Rows not due that the cursor passed: per priority the lowest seq
    /// (`.max`: none), and for rows in backoff the earliest time one is due.
    private struct Passed { var from: [Int64] = [.max, .max]; var dueAt = Int64.max }
    private var passed: [Reason: Passed] = [:]
    /// A key whose hold ended has one batch out (`probe`): where its rows
    /// passed over start, and the probe's rows.
    private struct Probe { var from: [Int64]; var seqs: Set<Int64> }
    private var probes: [String: Probe] = [:]
    /// The rows of each probe out (for tests).
    var probeSeqs: [String: Set<Int64>] { probes.mapValues(\.seqs) }
    /// The last lease came back empty only because it stopped at its bound on
    /// rows not due, after moving the cursor: leasing again at once may find due ones.
    public private(set) var moreToRead = false

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
                FROM outbox WHERE seq > ?1 AND seq < ?2 ORDER BY seq
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
        moreToRead = false
        endHolds(by: nowMillis)
        // Rows passed over that may be due now: read again from the lowest. For a
        // key whose hold ended, first one batch of its rows (a probe); the rest
        // are read again once the upstream takes it (`release`).
        var rewinds: [(priority: Int, below: Int64)] = []
        var probing: String?
        for (reason, rows) in passed where isDue(reason, rows, nowMillis) {
            if case .held(let key) = reason, probes[key] == nil, probing == nil {
                probing = key  // stays remembered until probed
                continue
            }
            passed[reason] = nil
            for p in rows.from.indices where rows.from[p] != .max { rewinds.append((p, rows.from[p])) }
        }
        // Only when nothing else is read again: those rows may be older (the next lease probes).
        if let key = probing, rewinds.isEmpty, let rows = passed[.held(key)] {
            let probe = try probe(key, from: rows.from, nowMillis: nowMillis, maxCount: maxCount, maxBytes: maxBytes)  // kept if it throws
            passed[.held(key)] = nil
            if !probe.isEmpty {
                probes[key] = Probe(from: rows.from, seqs: Set(probe.map(\.seq)))
                return probe
            }
            for p in rows.from.indices where rows.from[p] != .max { rewinds.append((p, rows.from[p])) }
        }
        // Commits finished before this read: removals up to there are not in its snapshot.
        let committed = shared.commits.load(ordering: .acquiring)
        var start = shared.leases.withLock { t in
            for r in rewinds { t.rewind(priority: r.priority, below: r.below) }
            return t.beginRead(committedBeforeRead: committed)
        }
        // Due rows a read may pass over (other write keys, in flight), as before the cursor.
        var budget = maxCount * 4 + start.unavailable.count
        // Rows not due it may pass over: no read may cost what the outbox holds.
        var notDue = maxCount * 40
        // Per priority read: the last seq of the leading run of rows that are leased,
        // taken or not due, and the rows not due in that run.
        var runs: [(priority: Int, through: Int64)] = []
        var seen: [Reason: Passed] = [:]
        do {
            read: for priority in [SpoolPriority.live, .bulk] {
                let p = Int(priority.rawValue)
                defer { rows.reset() }
                try bindRows(priority, after: start.after[p])
                var inRun = true
                var through = start.after[p]
                defer { runs.append((p, through)) }
                while try rows.step() {
                    let seq = rows.int64(0)
                    let backoff = rows.int64(6)
                    let rowKey = holds.isEmpty ? nil : rows.string(2) ?? ""  // read once a row, and only while keys are held
                    // Before the backoff: a held row waits for the hold's end (and its probe).
                    let held = rowKey.flatMap { holds[$0] != nil ? $0 : nil }
                    if backoff > nowMillis || held != nil {  // not due: passed over, and remembered if the cursor moves past it
                        if !start.unavailable.contains(seq) {
                            if inRun {
                                through = seq
                                let reason = held.map(Reason.held) ?? .backoff
                                seen[reason, default: Passed()].from[p] = min(seen[reason]?.from[p] ?? .max, seq)
                                if held == nil { seen[reason]!.dueAt = min(seen[reason]!.dueAt, backoff) }
                            }
                        } else if inRun && start.leased.contains(seq) {
                            through = seq
                        } else {
                            inRun = false
                        }
                        notDue -= 1
                        if notDue <= 0 { moreToRead = true; break read }
                        continue
                    }
                    if budget <= 0 { break read }
                    budget -= 1
                    if start.unavailable.contains(seq) {
                        if inRun && start.leased.contains(seq) { through = seq } else { inRun = false }
                        continue
                    }
                    let writeKey = rowKey ?? rows.string(2) ?? ""
                    if let key, key != writeKey { inRun = false; continue }
                    let message = currentRow(seq: seq, writeKey: writeKey)
                    if !batch.isEmpty && size + message.payload.count > maxBytes { break read }
                    key = writeKey
                    size += message.payload.count
                    batch.append(message)
                    if inRun { through = seq }
                    if batch.count >= maxCount { break read }
                }
            }
        } catch {
            _ = shared.leases.withLock { $0.endRead(leasing: []) }
            moreToRead = false
            throw SpoolError.storage(error)
        }
        // Drop this read's copies of the sets first, so that leasing does not copy them.
        let after = start.after
        start.unavailable = []
        start.leased = []
        // The writer may have claimed a row for removal since the snapshot above.
        let (refused, cursor) = shared.leases.withLock { t in
            (t.endRead(leasing: batch.map(\.seq), start: start, runs: runs), t.leasedThrough)
        }
        // Remember the rows not due that the cursor moved over.
        for (reason, rows) in seen {
            var kept = Passed(dueAt: rows.dueAt)
            for p in rows.from.indices where rows.from[p] <= cursor[p] { kept.from[p] = rows.from[p] }
            if kept.from != [.max, .max] { remember(reason, kept) }
        }
        moreToRead = moreToRead && batch.isEmpty && cursor.indices.contains { cursor[$0] > after[$0] }
        return refused.isEmpty ? batch : batch.filter { !refused.contains($0.seq) }
    }

    /// Holds back the rows of `writeKey` until `untilMillis` (the upstream
    /// refused that key): reads pass over them as over rows in backoff, so
    /// the other keys' rows behind them go, and the held rows are read
    /// again, oldest first, once the hold ends. Held keys are in memory only
    /// (after a restart one batch finds the refusal again), at most
    /// `maxHolds` of them and none longer than `maxHeldKeyBytes`; any other
    /// key's rows wait only for the backoff each batch gets.
    public func hold(writeKey: String, untilMillis: Int64) {
        guard writeKey.utf8.count <= Self.maxHeldKeyBytes, holds[writeKey] != nil || holds.count < Self.maxHolds else { return }
        holds[writeKey] = max(holds[writeKey] ?? .min, untilMillis)
        nextHoldEnd = min(nextHoldEnd, untilMillis)
    }

    /// Longest write key held.
    public static let maxHeldKeyBytes = 256

    /// One batch of `key`'s due rows from `from` on (per priority), leased
    /// without moving the cursor: what is tried when its hold ends.
    private func probe(_ key: String, from: [Int64], nowMillis: Int64, maxCount: Int, maxBytes: Int) throws(SpoolError) -> [SpoolMessage] {
        let committed = shared.commits.load(ordering: .acquiring)
        let start = shared.leases.withLock { $0.beginRead(committedBeforeRead: committed) }
        var batch: [SpoolMessage] = []
        var size = 0
        var steps = maxCount * 40
        do {
            read: for priority in [SpoolPriority.live, .bulk] where from[Int(priority.rawValue)] != .max {
                defer { rows.reset() }
                try bindRows(priority, after: from[Int(priority.rawValue)] - 1)
                while try rows.step() {
                    steps -= 1
                    if steps <= 0 { break read }
                    let seq = rows.int64(0)
                    guard rows.int64(6) <= nowMillis, !start.unavailable.contains(seq), rows.string(2) == key else { continue }
                    let message = currentRow(seq: seq, writeKey: key)
                    if !batch.isEmpty && size + message.payload.count > maxBytes { break read }
                    size += message.payload.count
                    batch.append(message)
                    if batch.count >= maxCount { break read }
                }
            }
        } catch {
            _ = shared.leases.withLock { $0.endRead(leasing: []) }
            throw SpoolError.storage(error)
        }
        let refused = shared.leases.withLock { $0.endRead(leasing: batch.map(\.seq)) }
        return refused.isEmpty ? batch : batch.filter { !refused.contains($0.seq) }
    }

    /// Sets `rows` to read `priority`'s rows past `seq`.
    private func bindRows(_ priority: SpoolPriority, after seq: Int64) throws(SQLiteError) {
        try rows.bind(1, max(seq, priority.seqs.lowerBound - 1))
        try rows.bind(2, priority.seqs.upperBound)
    }

    /// Most write keys held at once.
    public static let maxHolds = 1_000

    /// The message in the row `rows` is on.
    private func currentRow(seq: Int64, writeKey: String) -> SpoolMessage {
        SpoolMessage(seq: seq, messageID: rows.string(1) ?? "", writeKey: writeKey,
                     receivedAtMillis: rows.int64(3), attempts: Int(rows.int64(4)), payload: rows.bytes(5))
    }

    private func endHolds(by nowMillis: Int64) {
        guard nowMillis >= nextHoldEnd else { return }
        holds = holds.filter { $0.value > nowMillis }
        nextHoldEnd = holds.values.min() ?? .max
    }

    private func isDue(_ reason: Reason, _ rows: Passed, _ nowMillis: Int64) -> Bool {
        switch reason {
        case .backoff: return rows.dueAt <= nowMillis
        case .held(let key): return holds[key] == nil
        }
    }

    private func remember(_ reason: Reason, _ rows: Passed) {
        var had = passed[reason] ?? Passed()
        for p in had.from.indices { had.from[p] = min(had.from[p], rows.from[p]) }
        had.dueAt = min(had.dueAt, rows.dueAt)
        passed[reason] = had
    }

    /// Ends the lease on these rows (after their outcome was committed, or to
    /// give them back); rows still queued are read again, oldest first: at
    /// once, or for the rows of a held key when its hold ends.
    public func release(_ messages: [SpoolMessage]) {
        guard let first = messages.first else { return }
        // A round's batches may come back together (one acknowledgement): each key on its own.
        if messages.contains(where: { $0.writeKey != first.writeKey }) {
            var keys: [String] = []
            var byKey: [String: [SpoolMessage]] = [:]
            for m in messages {
                if byKey[m.writeKey] == nil { keys.append(m.writeKey) }
                byKey[m.writeKey, default: []].append(m)
            }
            for key in keys { release(byKey[key]!) }
            return
        }
        let key = first.writeKey
        // The probe of a key whose hold ended: its rows passed over start at `from`.
        var from = Passed().from
        if let probe = probes[key], messages.contains(where: { probe.seqs.contains($0.seq) }) {
            probes[key] = nil
            from = probe.from
        }
        if holds[key] != nil {  // held (again): these rows wait with the others passed over, until the hold ends
            let (lowest, cursor) = shared.leases.withLock { t in (t.release(messages.lazy.map { $0.seq }, rewind: false), t.leasedThrough) }
            var rows = Passed(from: from)
            if let lowest { for p in lowest.indices where cursor[p] >= lowest[p] { rows.from[p] = min(rows.from[p], lowest[p]) } }
            if rows.from != Passed().from { remember(.held(key), rows) }
        } else {  // read again at once; after a probe the upstream took, all its key's rows passed over too
            shared.leases.withLock { t in
                t.release(messages.lazy.map { $0.seq })
                for p in from.indices where from[p] != .max { t.rewind(priority: p, below: from[p]) }
            }
        }
    }

}

extension SpoolStats {
    /// The counts as the file holds them (`totals`, exact after every commit) and the
    /// oldest message (the first row of each priority): constant time whatever the spool holds.
    static let totalsSQL = """
        SELECT outbox_count, outbox_bytes, dead_count, dead_bytes, ids_count, ids_bytes, rejected_count,
               (\(SpoolSQL.oldestQueued))
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
