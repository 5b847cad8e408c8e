// SpoolWriter: the one connection that writes, confined to the writer thread.
// Each turn of its loop drains the queue and applies every operation in one
// transaction; completions run only after COMMIT returned (or with the error
// when it did not, after ROLLBACK: then nothing of that turn was stored).

import CSQLite
import Logging
import Synchronization


final class SpoolWriter {
    private let db: SQLiteConnection
    private let options: SpoolOptions
    private let logger: Logger
    private(set) var initialStats: SpoolStats
    private var bytes: Int64
    private var depth: Int64
    private var lastPruneMillis: Int64 = 0

    private let insert: SQLiteStatement
    private let seenRecently: SQLiteStatement
    private let delete: SQLiteStatement
    private let remember: SQLiteStatement
    private let retry: SQLiteStatement
    private let toDeadLetters: SQLiteStatement
    private let insertRejected: SQLiteStatement
    private let oldest: SQLiteStatement

    init(options: SpoolOptions, logger: Logger) throws(SpoolError) {
        self.options = options
        self.logger = logger
        do {
            db = try SQLiteConnection(path: options.path)
            try db.execute("PRAGMA busy_timeout = 5000")
            _ = try db.scalarInt("PRAGMA journal_mode = WAL")
            try db.execute("PRAGMA synchronous = \(options.synchronousFull ? "FULL" : "NORMAL")")
        } catch {
            throw SpoolError.storage(error)
        }
        try Schema.migrate(db)
        do {
            insert = try db.prepare("""
                INSERT OR IGNORE INTO outbox (message_id, write_key, priority, received_at, payload, bytes)
                VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                """)
            seenRecently = try db.prepare("SELECT 1 FROM sent_ids WHERE message_id = ?1 AND sent_at >= ?2")
            delete = try db.prepare("DELETE FROM outbox WHERE seq = ?1 RETURNING bytes")
            remember = try db.prepare("INSERT OR REPLACE INTO sent_ids (message_id, sent_at) VALUES (?1, ?2)")
            retry = try db.prepare("""
                UPDATE outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3,
                    first_attempt_at = COALESCE(first_attempt_at, ?4)
                WHERE seq = ?1
                """)
            toDeadLetters = try db.prepare("""
                INSERT INTO dead_letters (message_id, write_key, priority, received_at, payload, reason, status,
                                          attempts, first_attempt_at, last_attempt_at, dead_at)
                SELECT message_id, write_key, priority, received_at, payload, ?2, ?3,
                       attempts + ?5, COALESCE(first_attempt_at, CASE WHEN ?5 > 0 THEN ?4 END), CASE WHEN ?5 > 0 THEN ?4 END, ?4
                FROM outbox WHERE seq = ?1
                """)
            insertRejected = try db.prepare("INSERT INTO rejected (received_at, errors, sample) VALUES (?1, ?2, ?3)")
            oldest = try db.prepare("SELECT seq FROM outbox ORDER BY priority DESC, seq LIMIT ?1")
            initialStats = try SpoolStats.read(from: db)
            initialStats.oldestReceivedAtMillis = nil  // not tracked in memory; SpoolReader.stats() reads it
            depth = initialStats.depth
            bytes = initialStats.bytes
        } catch {
            throw SpoolError.storage(error)
        }
    }

    /// The writer loop: runs until the queue is closed and drained.
    func run(_ shared: Spool.Shared) {
        let maxPerCommit = options.maxMessagesPerCommit
        while let ops = shared.queue.takeAll(lingerNanos: options.commitLingerNanos, enough: { ops in
            var n = 0
            for case .append(let m, _) in ops { n += m.count }
            return n >= maxPerCommit
        }) {
            var shutdown: [@Sendable () -> Void] = []
            var work: [Spool.Op] = []
            work.reserveCapacity(ops.count)
            for op in ops {
                if case .shutdown(let done) = op { shutdown.append(done) } else { work.append(op) }
            }
            if !work.isEmpty { apply(work, shared) }
            if !shutdown.isEmpty {
                // Best effort: fold the WAL back into the database, but do not
                // hold up shutdown for a reader (status, an operator command).
                _ = try? db.execute("PRAGMA busy_timeout = 100; PRAGMA wal_checkpoint(TRUNCATE)")
                shutdown.forEach { $0() }
                return
            }
        }
    }

    // MARK: One turn: one transaction

    private struct Turn {
        var completions: [(Result<Void, SpoolError>) -> Void] = []
        var depthDelta: Int64 = 0
        var bytesDelta: Int64 = 0
        var deadDelta: Int64 = 0
        var rejectedDelta: Int64 = 0
        var droppedDelta: Int64 = 0
    }

    private func apply(_ ops: [Spool.Op], _ shared: Spool.Shared) {
        var turn = Turn()
        do {
            try db.execute("BEGIN IMMEDIATE")
            for op in ops {
                try applyOne(op, turn: &turn)
            }
            try db.execute("COMMIT")
        } catch {
            if db.inTransaction { try? db.execute("ROLLBACK") }
            logger.error("spool commit failed; nothing of this group was stored", metadata: ["error": "\(error)", "operations": "\(ops.count)"])
            let failure = SpoolError.storage(error)
            for op in ops { Self.fail(op, failure) }
            return
        }
        bytes += turn.bytesDelta
        depth += turn.depthDelta
        shared.counters.withLock {
            $0.depth = depth
            $0.bytes = bytes
            $0.deadLetters += turn.deadDelta
            $0.rejected += turn.rejectedDelta
            $0.commits += 1
        }
        if turn.droppedDelta > 0 {
            shared.dropped.add(turn.droppedDelta, ordering: .relaxed)
            logger.warning("spool full: moved the oldest messages to dead letters (on_full = drop_oldest)", metadata: ["count": "\(turn.droppedDelta)"])
        }
        for c in turn.completions { c(.success(())) }
    }

    private func applyOne(_ op: Spool.Op, turn: inout Turn) throws(SQLiteError) {
        switch op {
        case .append(let messages, let completion):
            let size = messages.reduce(Int64(0)) { $0 + Int64($1.payload.count) }
            if bytes + turn.bytesDelta + size > options.maxBytes {
                if options.onFull == .reject || size > options.maxBytes {
                    turn.completions.append { _ in completion(.failure(.full(limitBytes: self.options.maxBytes))) }
                    return
                }
                try dropOldest(toFree: bytes + turn.bytesDelta + size - options.maxBytes,
                               nowMillis: messages.map(\.receivedAtMillis).max() ?? 0, turn: &turn)
            }
            var outcomes: [AppendOutcome] = []
            outcomes.reserveCapacity(messages.count)
            let cutoff = messages.first.map { $0.receivedAtMillis - options.dedupeWindowMillis } ?? 0
            for m in messages {
                if try wasSentRecently(m.messageID, since: cutoff) {
                    outcomes.append(.duplicate)
                    continue
                }
                try insert.bind(1, m.messageID)
                try insert.bind(2, m.writeKey)
                try insert.bind(3, m.priority.rawValue)
                try insert.bind(4, m.receivedAtMillis)
                try insert.bind(5, bytes: m.payload)
                try insert.bind(6, Int64(m.payload.count))
                try insert.run()
                if db.changes == 1 {
                    outcomes.append(.stored)
                    turn.depthDelta += 1
                    turn.bytesDelta += Int64(m.payload.count)
                } else {
                    outcomes.append(.duplicate)
                }
            }
            turn.completions.append { _ in completion(.success(outcomes)) }

        case .acknowledge(let messages, let at, let completion):
            for m in messages {
                try removeFromOutbox(m.seq, turn: &turn)
                try remember.bind(1, m.messageID)
                try remember.bind(2, at)
                try remember.run()
            }
            turn.completions.append { completion($0) }
            try pruneSentIDs(now: at, turn: turn)

        case .retry(let messages, let error, let nextAt, let now, let completion):
            for m in messages {
                try retry.bind(1, m.seq)
                try retry.bind(2, error)
                try retry.bind(3, nextAt)
                try retry.bind(4, now)
                try retry.run()
            }
            turn.completions.append { completion($0) }

        case .deadLetter(let messages, let reason, let now, let completion):
            for m in messages {
                try moveToDeadLetters(m.seq, reason: reason, now: now, countsAsAttempt: true, turn: &turn)
            }
            turn.completions.append { completion($0) }

        case .expire(let before, let now, let completion):
            let st = try db.prepare("SELECT seq FROM outbox WHERE received_at < ?1")
            try st.bind(1, before)
            var seqs: [Int64] = []
            while try st.step() { seqs.append(st.int64(0)) }
            for seq in seqs {
                try moveToDeadLetters(seq, reason: DeadLetterReason(reason: "expired: waited longer than max_age"), now: now, countsAsAttempt: false, turn: &turn)
            }
            let n = seqs.count
            turn.completions.append { r in completion(r.map { n }) }

        case .rejected(let errors, let sample, let at):
            try insertRejected.bind(1, at)
            try insertRejected.bind(2, errors)
            try insertRejected.bind(3, bytes: sample)
            try insertRejected.run()
            turn.rejectedDelta += 1
            if turn.rejectedDelta == 1 {
                try db.execute("DELETE FROM rejected WHERE id <= (SELECT max(id) FROM rejected) - \(options.rejectedSampleLimit)")
            }

        case .shutdown:
            break  // handled by run()
        }
    }

    private func wasSentRecently(_ id: String, since cutoff: Int64) throws(SQLiteError) -> Bool {
        defer { seenRecently.reset() }
        try seenRecently.bind(1, id)
        try seenRecently.bind(2, cutoff)
        return try seenRecently.step()
    }

    private func removeFromOutbox(_ seq: Int64, turn: inout Turn) throws(SQLiteError) {
        defer { delete.reset() }
        try delete.bind(1, seq)
        if try delete.step() {
            turn.depthDelta -= 1
            turn.bytesDelta -= delete.int64(0)
        }
    }

    private func moveToDeadLetters(_ seq: Int64, reason: DeadLetterReason, now: Int64, countsAsAttempt: Bool, turn: inout Turn) throws(SQLiteError) {
        try toDeadLetters.bind(1, seq)
        try toDeadLetters.bind(2, reason.reason)
        if let status = reason.status { try toDeadLetters.bind(3, Int64(status)) } else { try toDeadLetters.bind(3, nil as String?) }
        try toDeadLetters.bind(4, now)
        try toDeadLetters.bind(5, countsAsAttempt ? 1 : 0)
        try toDeadLetters.run()
        if db.changes == 1 { turn.deadDelta += 1 }
        try removeFromOutbox(seq, turn: &turn)
    }

    private func dropOldest(toFree needed: Int64, nowMillis: Int64, turn: inout Turn) throws(SQLiteError) {
        var freed: Int64 = 0
        while freed < needed {
            defer { oldest.reset() }
            try oldest.bind(1, 64)
            var seqs: [Int64] = []
            while try oldest.step() { seqs.append(oldest.int64(0)) }
            oldest.reset()
            if seqs.isEmpty { return }
            for seq in seqs where freed < needed {
                let before = turn.bytesDelta
                try moveToDeadLetters(seq, reason: DeadLetterReason(reason: "dropped: spool full (on_full = drop_oldest)"), now: nowMillis, countsAsAttempt: false, turn: &turn)
                freed += before - turn.bytesDelta
                turn.droppedDelta += 1
            }
        }
    }

    private func pruneSentIDs(now: Int64, turn: Turn) throws(SQLiteError) {
        guard now - lastPruneMillis > 60_000 else { return }
        lastPruneMillis = now
        try db.execute("DELETE FROM sent_ids WHERE sent_at < \(now - options.dedupeWindowMillis)")
        // An operator may have replayed dead letters into the outbox meanwhile:
        // re-read the totals the max_bytes check relies on.
        let st = try db.prepare("SELECT count(*), COALESCE(sum(bytes), 0) FROM outbox")
        try st.step()
        depth = st.int64(0) - turn.depthDelta
        bytes = st.int64(1) - turn.bytesDelta
    }

    private static func fail(_ op: Spool.Op, _ error: SpoolError) {
        switch op {
        case .append(_, let c): c(.failure(error))
        case .acknowledge(_, _, let c), .retry(_, _, _, _, let c), .deadLetter(_, _, _, let c): c(.failure(error))
        case .expire(_, _, let c): c(.failure(error))
        case .rejected, .shutdown: break
        }
    }
}
