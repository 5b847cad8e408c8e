// SpoolWriter: the one connection that writes, confined to the writer thread.
// Each turn of its loop drains the queue and applies every operation in one
// transaction; completions run only after COMMIT returned (or with the error
// when it did not, after ROLLBACK: then nothing of that turn was stored).
// The appends of a turn go in together, up to 32 rows a statement for their
// ids and 32 for their rows; a chunk that meets a known id is undone to a
// savepoint and taken one message at a time, so outcomes are exactly those
// of appending each message in queue order.
// Between turns it runs maintenance (expiry, the dedupe prune) in bounded
// slices, each its own short transaction, so no acknowledgement ever waits
// behind a sweep of the whole outbox.
// Checkpoints: SQLite's own, after a commit of ours that passed 1,000 WAL
// pages, and one every 200 ms at most after commits of operator commands
// (an import beside an idle daemon would otherwise grow the WAL without
// end; an idle writer looks every 250 ms, every 50 ms while they write): a
// TRUNCATE, which copies the whole WAL with the write lock held and empties
// the file, so the import's next transaction writes the WAL from its start.
// A live call waits for that copy (about 200 ms of an import) and for one
// budget of 250 tries 0.2 ms apart (50-75 ms) for the lock and the readers.
// Either starts only after a commit since our last commit or checkpoint,
// never on a WAL copied whole (also when the TRUNCATE does not get the lock
// in time and SQLite makes it PASSIVE), and operator commands leave
// checkpoints to us while we run (`SpoolLock.leaveCheckpointsToDaemon`):
// the WAL-reset race of SQLite before 3.51.3 needs a checkpoint that starts
// on a WAL copied whole.
// What can happen at every commit under load (a failing disk, drop_oldest on
// a full spool) is logged when it starts and then once a minute with its
// count (ThrottledLog), never once per call.

import CSQLite
import Logging
import Synchronization

final class SpoolWriter {
    private let db: SQLiteConnection
    private let options: SpoolOptions
    private let logger: Logger
    private(set) var initialStats: SpoolStats
    /// `PRAGMA synchronous` as the writer's connection reports it (2 = FULL).
    private(set) var synchronousLevel: Int64 = 0
    /// The exact totals as of the last commit (mirrors `shared.counters`).
    private var stats: SpoolStats
    /// SQLite's data_version (it changes only when another connection, an
    /// operator command, committed; never for our own commits) when we last
    /// read the totals for such commits...
    private var totalsVersion: Int64 = -1
    /// ...and right after our last commit or checkpoint: once it differs,
    /// another connection has committed since, the WAL is not copied whole,
    /// and a checkpoint may start. Nil when that read failed: none may.
    private var checkpointVersion: Int64?
    /// When we last checkpointed after other connections' commits, and
    /// when we last noticed one.
    private var othersCheckpointMillis: Int64 = 0
    private var othersNoticedMillis: Int64 = 0
    private var checkpointFailures = ThrottledLog()
    private var lastMaintenanceMillis: Int64 = 0
    /// The last slice was full: there is more to do at once.
    private var maintenanceBacklog = false
    private var lastFullWarningMillis: Int64 = 0
    /// How much longer than the dedupe window ids are held: the longest
    /// wait (receipt to delivery) recorded for an hour still within the
    /// window (`SpoolSQL.deliveryLag`); read again at each maintenance turn,
    /// raised at once by an acknowledgement that records a longer one.
    /// Until a read succeeds, the longest there can be (never too short).
    private var deliveryLagMillis: Int64
    /// The hour and lag this connection last wrote to `delivery_lag` (a
    /// wait no longer in the same hour writes nothing); nil after a rollback.
    private var notedLag: (hour: Int64, lagMillis: Int64)?
    private var commitFailures = ThrottledLog()
    private var drops = ThrottledLog()
    private var lagReadFailures = ThrottledLog()

    /// BEGIN IMMEDIATE and COMMIT, prepared once rather than parsed at every commit.
    private let beginStatement: SQLiteStatement
    private let commitStatement: SQLiteStatement
    private let insert: SQLiteStatement
    private let readLastSeq: SQLiteStatement
    private let readLastRows: SQLiteStatement
    /// The number of the last seq given (`SpoolPriority.seq`), read from
    /// `totals.last_seq` (and the highest seq of each priority) at this
    /// transaction's first append (an operator command may have added rows
    /// since our last one) and written back with the totals; nil until then.
    private var lastSeqNumber: Int64?
    /// Each priority's last `received_at`, read with `lastSeqNumber`.
    private var receivedAtFloor = ReceivedAtFloor()
    private let insertID: SQLiteStatement
    private let takeOverID: SQLiteStatement
    private let delete: SQLiteStatement
    private let deleteRange: SQLiteStatement
    private let refreshID: SQLiteStatement
    private let noteLag: SQLiteStatement
    private let forgetLags: SQLiteStatement
    private let readLag: SQLiteStatement
    private let forgetID: SQLiteStatement
    private let retry: SQLiteStatement
    private let toDeadLetters: SQLiteStatement
    private let insertRejected: SQLiteStatement
    private let oldestOfPriority: SQLiteStatement
    private let expiredRows: SQLiteStatement
    private let evictOldestIDs: SQLiteStatement
    private let pruneIDs: SQLiteStatement
    private let oldestID: SQLiteStatement
    private let readTotals: SQLiteStatement
    private let addTotals: SQLiteStatement
    /// Outbox rows and bytes, and dedupe ids and their bytes, this
    /// transaction added (negative: removed), not yet in `totals`: the writer
    /// counts its own changes (schema v4 and v5: no such triggers on this
    /// connection); `flushTotals` writes them before anything reads the
    /// totals and before COMMIT; ROLLBACK drops them.
    private var uncounted = Uncounted()
    private struct Uncounted: Equatable {
        var rows: Int64 = 0, bytes: Int64 = 0, ids: Int64 = 0, idBytes: Int64 = 0
        /// The last number given since the last flush (`totals.last_seq`):
        /// written even when the counts of a turn cancel out.
        var lastSeq: Int64?
    }
    private let readDataVersion: SQLiteStatement
    /// Multi-row inserts of ids and of outbox rows, by chunk size (2, 4, ... 32 rows).
    private var idInserts: [SQLiteStatement?] = Array(repeating: nil, count: 5)
    private var outboxInserts: [SQLiteStatement?] = Array(repeating: nil, count: 5)
    /// Around a chunk's id insert, so that a chunk with a known id leaves no trace.
    private let savepoint: SQLiteStatement
    private let releaseSavepoint: SQLiteStatement
    private let rollbackToSavepoint: SQLiteStatement

    init(options: SpoolOptions, logger: Logger) throws(SpoolError) {
        self.options = options
        self.logger = logger
        deliveryLagMillis = SpoolSQL.maxRecordedLag(windowMillis: options.dedupeWindowMillis)
        try SpoolLock.createPrivately(options.path)
        do {
            db = try SQLiteConnection(path: options.path)
            db.retryWhileBusy(maxMillis: 5000)
            _ = try db.scalarInt("PRAGMA journal_mode = WAL")
            try db.execute("PRAGMA synchronous = \(options.synchronousFull ? "FULL" : "NORMAL")")
            // Read back what SQLite applies (0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA): never weaker than asked.
            synchronousLevel = try db.scalarInt("PRAGMA synchronous") ?? 0
        } catch {
            throw SpoolError.storage(error)
        }
        if synchronousLevel < (options.synchronousFull ? 2 : 1) {
            throw SpoolError.durabilityNotApplied(path: options.path, asked: options.synchronousFull ? "FULL" : "NORMAL", got: "level \(synchronousLevel)")
        }
        if let found = try? db.scalarInt("PRAGMA user_version"), found > 0, found < Schema.currentVersion {
            logger.notice("upgrading the spool file's schema (once; with many messages queued this takes seconds)",
                          metadata: ["path": "\(options.path)", "from_version": "\(found)", "to_version": "\(Schema.currentVersion)"])
        }
        try Schema.migrate(db)
        do {
            try Schema.rebuildOutbox(db, ifAtMost: Schema.rebuildOutboxMaxRows)
        } catch {
            logger.warning("could not copy the spool's outbox into its leaner table (it works as it is; the next start tries again)",
                           metadata: ["path": "\(options.path)", "error": "\(error)"])
        }
        do {
            beginStatement = try db.prepare("BEGIN IMMEDIATE")
            commitStatement = try db.prepare("COMMIT")
            insert = try db.prepare(SpoolSQL.insertOutbox(rows: 1))
            readLastSeq = try db.prepare("SELECT last_seq FROM totals")
            // (The last rows too: the counter also goes past any row a writer
            // that does not keep last_seq added, a relay from before v7 still
            // importing while this one migrated.)
            readLastRows = try db.prepare(SpoolSQL.lastRows)
            savepoint = try db.prepare("SAVEPOINT append_chunk")
            releaseSavepoint = try db.prepare("RELEASE append_chunk")
            rollbackToSavepoint = try db.prepare("ROLLBACK TO append_chunk")
            // (Not the insert with RETURNING: its result table per statement costs more than the trigger did.)
            insertID = try db.prepare(SpoolSQL.insertID)
            takeOverID = try db.prepare(SpoolSQL.takeOverID)
            delete = try db.prepare("DELETE FROM outbox WHERE seq = ?1 RETURNING bytes")
            // (No RETURNING: the lease knows each row's bytes; see `.acknowledge`.)
            deleteRange = try db.prepare("DELETE FROM outbox WHERE seq BETWEEN ?1 AND ?2")
            addTotals = try db.prepare("""
                UPDATE totals SET outbox_count = outbox_count + ?1, outbox_bytes = outbox_bytes + ?2,
                    ids_count = ids_count + ?3, ids_bytes = ids_bytes + ?4, last_seq = max(last_seq, ?5)
                """)
            refreshID = try db.prepare("UPDATE message_ids SET seen_at = ?2 WHERE message_id = ?1")
            noteLag = try db.prepare("""
                INSERT INTO delivery_lag (hour, lag_ms) VALUES (?1, ?2)
                ON CONFLICT (hour) DO UPDATE SET lag_ms = max(lag_ms, excluded.lag_ms)
                """)
            forgetLags = try db.prepare("DELETE FROM delivery_lag WHERE hour < ?1")
            readLag = try db.prepare(SpoolSQL.deliveryLag)
            forgetID = try db.prepare("DELETE FROM message_ids WHERE message_id = (SELECT message_id FROM outbox WHERE seq = ?1) RETURNING length(message_id)")
            retry = try db.prepare("""
                UPDATE outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3,
                    first_attempt_at = COALESCE(first_attempt_at, ?4)
                WHERE seq = ?1
                """)
            toDeadLetters = try db.prepare("""
                INSERT INTO dead_letters (message_id, write_key, priority, received_at, payload, bytes, reason, status,
                                          attempts, first_attempt_at, last_attempt_at, dead_at)
                SELECT message_id, write_key, priority, received_at, payload, bytes, ?2, ?3,
                       attempts + ?5, COALESCE(first_attempt_at, CASE WHEN ?5 > 0 THEN ?4 END), CASE WHEN ?5 > 0 THEN ?4 END, ?4
                FROM outbox WHERE seq = ?1
                """)
            insertRejected = try db.prepare("INSERT INTO rejected (received_at, errors, sample) VALUES (?1, ?2, ?3)")
            oldestOfPriority = try db.prepare("SELECT seq, bytes FROM outbox WHERE seq > ?1 AND seq < ?2 ORDER BY seq LIMIT ?3")
            expiredRows = try db.prepare("SELECT seq, received_at FROM outbox WHERE seq >= ?1 AND seq < ?2 ORDER BY seq LIMIT ?3")
            // Both only ever touch ids seen before ?1, which callers keep at or
            // below the oldest queued message: a queued message's id stays.
            evictOldestIDs = try db.prepare("""
                DELETE FROM message_ids WHERE message_id IN
                    (SELECT message_id FROM message_ids WHERE seen_at < ?1 ORDER BY seen_at LIMIT ?2)
                RETURNING length(message_id)
                """)
            pruneIDs = try db.prepare("""
                DELETE FROM message_ids WHERE message_id IN
                    (SELECT message_id FROM message_ids WHERE seen_at < ?1 ORDER BY seen_at LIMIT ?2)
                RETURNING length(message_id)
                """)
            oldestID = try db.prepare("SELECT min(seen_at) FROM message_ids")
            readTotals = try db.prepare(SpoolStats.totalsSQL)
            readDataVersion = try db.prepare("PRAGMA data_version")
            var loaded = SpoolStats()
            try loaded.load(from: readTotals)
            stats = loaded
            initialStats = loaded
            totalsVersion = try currentDataVersion()  // (changes from here on are commits since we opened)
            checkpointVersion = totalsVersion
        } catch {
            throw SpoolError.storage(error)
        }
    }

    /// The writer loop: runs until the queue is closed and drained; returns
    /// the callers waiting for the shutdown, to be told once the connection
    /// is closed (so that a new spool on the file never meets this one).
    func run(_ shared: Spool.Shared) -> [@Sendable () -> Void] {
        let maxPerCommit = options.maxMessagesPerCommit
        readDeliveryLag(nowMillis: shared.nowMillis())  // before the first claim
        while let ops = shared.queue.takeAll(lingerNanos: options.commitLingerNanos,
                                             idleNanos: maintenanceBacklog ? 0 : othersWriting ? 50_000_000 : 250_000_000,
                                             enough: { ops in
            var n = 0
            for case .append(let m, _, _) in ops { n += m.count }
            return n >= maxPerCommit
        }) {
            var shutdown: [@Sendable () -> Void] = []
            var barriers: [@Sendable () -> Void] = []
            var work: [Spool.Op] = []
            work.reserveCapacity(ops.count)
            var rejectedSamples = 0
            for op in ops {
                switch op {
                case .shutdown(let done): shutdown.append(done)
                case .barrier(let done): barriers.append(done)
                case .rejected: rejectedSamples += 1; work.append(op)
                default: work.append(op)
                }
            }
            if rejectedSamples > 0 { shared.pendingRejected.subtract(rejectedSamples, ordering: .relaxed) }
            noticeOtherWriters(shared)
            if !work.isEmpty { apply(work, shared) }
            maintain(shared)
            barriers.forEach { $0() }
            if !shutdown.isEmpty {
                // The WAL goes back into the database when the last connection
                // closes (SQLite does it under an exclusive lock; not here: a
                // TRUNCATE that waits in vain for an operator's transaction
                // falls back to a PASSIVE checkpoint that may start on a WAL
                // copied whole).
                return shutdown
            }
        }
        return []
    }

    // MARK: One turn: one transaction

    private struct Turn {
        var completions: [(Result<Void, SpoolError>) -> Void] = []
        /// Append completions by executor, handed over in one call each after the commit.
        var deferred: [ObjectIdentifier: (executor: any CompletionExecutor, jobs: [@Sendable () -> Void])] = [:]
        /// Bytes this turn appended, payloads and ids (`size(of:)`: an upper
        /// bound of its growth), since the totals were last read.
        var appendedBytes: Int64 = 0
        var dropped: Int64 = 0
        var expired: Int64 = 0
        var evicted: Int64 = 0
        var rejected = false
        /// The number of the first outbox row this turn inserted: drop_oldest
        /// never drops it or later ones, of either priority (they are about
        /// to be acknowledged).
        var firstInsertedNumber: Int64?
        /// Leased rows this turn removed for good (delivered, dead-lettered):
        /// their leases end once it has committed.
        var removedLeased: [Int64] = []

        mutating func complete(on executor: (any CompletionExecutor)?, _ job: @escaping @Sendable () -> Void) {
            guard let executor else { completions.append { _ in job() }; return }
            deferred[ObjectIdentifier(executor), default: (executor, [])].jobs.append(job)
        }
    }

    private func apply(_ ops: [Spool.Op], _ shared: Spool.Shared) {
        var turn = Turn()
        let commitNumber = shared.commits.load(ordering: .acquiring) + 1
        let failed = transaction(shared, turn: &turn) { (turn: inout Turn) throws(SQLiteError) in
            // Appends that fit under max_bytes as they are wait here and go
            // in together, many rows a statement, whichever op they came in;
            // anything else first stores them, so the order of effects stays.
            var waiting = WaitingAppends()
            for op in ops {
                if case .append(let messages, let executor, let completion) = op {
                    let size = Self.size(of: messages)
                    if fits(size, besides: turn.appendedBytes + waiting.bytes) {
                        waiting.add(messages, size: size, executor, completion)
                        continue
                    }
                }
                try storeWaiting(&waiting, turn: &turn)
                try applyOne(op, commit: commitNumber, shared: shared, turn: &turn)
            }
            try storeWaiting(&waiting, turn: &turn)
            if turn.rejected {  // keep the newest samples only
                try db.execute("DELETE FROM rejected WHERE id <= (SELECT max(id) FROM rejected) - \(options.rejectedSampleLimit)")
            }
        }
        if let failed {
            for op in ops { Self.fail(op, .storage(failed)) }
            return
        }
        if turn.dropped > 0, let (_, count) = drops.note(Int(turn.dropped), nowMillis: Spool.wallClockMillis()) {
            logger.warning("spool full: deleted the oldest queued messages to make room (on_full = drop_oldest; logged once a minute while it lasts; plainflow_spool_dropped_total counts them all)",
                           metadata: ["count": "\(count)"])
        }
        // Nothing can read a removed row again: its lease ends here, and the
        // reader's cursor stays where it is (LeaseTable).
        if !turn.removedLeased.isEmpty { shared.leases.withLock { _ = $0.release(turn.removedLeased, removed: true) } }
        for (executor, jobs) in turn.deferred.values { executor.execute(jobs) }
        for c in turn.completions { c(.success(())) }
    }

    /// Runs `body` in one write transaction, refreshes the totals inside it
    /// and commits; publishes the new stats. Returns the error (after
    /// ROLLBACK, logged) when it did not commit, nil when it did.
    private func transaction(_ shared: Spool.Shared, turn: inout Turn, _ body: (inout Turn) throws(SQLiteError) -> Void) -> SQLiteError? {
        do {
            lastSeqNumber = nil
            try beginStatement.run()
            try body(&turn)
            try refreshTotals()
            try commitStatement.run()
        } catch {
            uncounted = Uncounted()  // counted changes that are rolled back with it
            notedLag = nil  // (deliveryLagMillis may stay higher until it is read again: ids held longer, never shorter)
            if db.inTransaction { try? db.execute("ROLLBACK") }
            if let (failures, _) = commitFailures.note(1, nowMillis: Spool.wallClockMillis()) {
                logger.error("spool commit failed; nothing of this transaction was stored (logged once a minute while it lasts)",
                             metadata: ["error": "\(error)", "failed_commits": "\(failures)"])
            }
            // What is on disk is what it was; read it again.
            try? refreshTotals()
            publish(shared, turn: Turn())
            return error
        }
        shared.commits.add(1, ordering: .releasing)
        publish(shared, turn: turn)
        // (After the commit's own checkpoint, if it ran: a change from here on
        // is a commit since, and a checkpoint may start.)
        checkpointVersion = try? currentDataVersion()
        return nil
    }

    private func publish(_ shared: Spool.Shared, turn: Turn) {
        stats.dropped += turn.dropped
        stats.expired += turn.expired
        stats.dedupeEvicted += turn.evicted
        stats.commits = shared.commits.load(ordering: .relaxed)
        let snapshot = stats
        shared.counters.withLock { $0 = snapshot }
    }

    private func applyOne(_ op: Spool.Op, commit: Int64, shared: Spool.Shared, turn: inout Turn) throws(SQLiteError) {
        switch op {
        case .append(let messages, let executor, let completion):
            let size = Self.size(of: messages)
            if !fits(size, besides: turn.appendedBytes) {
                guard try makeRoom(for: size, commit: commit, shared: shared, turn: &turn) else {
                    let limit = options.maxBytes
                    turn.complete(on: executor) { completion(.failure(.full(limitBytes: limit))) }
                    return
                }
            }
            let result = try storeInChunks(messages, turn: &turn)
            turn.complete(on: executor) { completion(.success(result)) }

        case .acknowledge(let messages, let at, let completion):
            // Consecutive seqs in one statement (no other row can lie between
            // them), a few dozen at a time (see `maxRunBytes`). A leased row
            // stays until its lease ends (nothing else deletes outbox rows;
            // expiry and drop_oldest skip rows in flight), so a run removes
            // exactly its rows and their bytes are the ones the lease read:
            // no RETURNING row by row (15% of a delete). A run that finds
            // fewer rows means the file was changed behind the relay; the
            // outbox is then counted again from the table (a full scan, never
            // in normal operation).
            var missing = 0
            for run in Self.consecutiveRuns(messages) {
                try deleteRange.bind(1, run.first)
                try deleteRange.bind(2, run.last)
                try deleteRange.run()
                let rows = Int(run.last - run.first + 1)
                if db.changes == rows {
                    uncounted.rows -= Int64(rows)
                    uncounted.bytes -= run.bytes
                } else {
                    missing += rows - db.changes
                }
            }
            if missing > 0 {
                logger.warning("spool: delivered messages were no longer in the outbox, so something outside the relay changed the spool file; the outbox was counted again. Only the relay (and its own commands) should write the spool",
                               metadata: ["path": "\(options.path)", "delivered": "\(messages.count)", "missing": "\(missing)"])
                try flushTotals()
                try db.execute(SpoolSQL.recountOutbox)
            }
            // The id stays held for the dedupe window from delivery. It was
            // last seen on receipt, which the margin covers unless the message
            // waited longer than that; then the wait is recorded for this hour
            // and every id is held that much longer (schema v6), with no write
            // to the ids themselves, up to a quarter of the window. A message
            // that waited longer still has its own id's seen_at moved.
            let maxRecorded = SpoolSQL.maxRecordedLag(windowMillis: options.dedupeWindowMillis)
            var recorded: Int64 = 0
            for m in messages {
                let waited = at - m.receivedAtMillis
                if waited <= SpoolSQL.deliveryMarginMillis { continue }
                if waited <= maxRecorded {
                    recorded = max(recorded, waited)
                } else {
                    try refreshID.bind(1, m.messageID)
                    try refreshID.bind(2, at)
                    try refreshID.run()
                }
            }
            if recorded > 0 { try noteDeliveryLag(recorded, at: at) }
            turn.removedLeased += messages.map(\.seq)
            turn.completions.append { completion($0) }

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
                try moveToDeadLetters(m.seq, reason: reason, now: now, countsAsAttempt: true)
            }
            turn.removedLeased += messages.map(\.seq)
            turn.completions.append { completion($0) }

        case .rejected(let errors, let sample, let at):
            try insertRejected.bind(1, at)
            try insertRejected.bind(2, errors)
            try insertRejected.bind(3, bytes: sample)
            try insertRejected.run()
            turn.rejected = true

        case .barrier, .shutdown:
            break  // handled by run()
        }
    }

    // MARK: Appends, many rows a statement

    /// Appends of one turn waiting to be stored together.
    private struct WaitingAppends {
        var ops: [(count: Int, executor: (any CompletionExecutor)?, completion: Spool.Completion<[AppendOutcome]>)] = []
        var messages: [SpoolAppend] = []
        /// Their `size(of:)`.
        var bytes: Int64 = 0

        mutating func add(_ messages: [SpoolAppend], size: Int64, _ executor: (any CompletionExecutor)?,
                          _ completion: @escaping Spool.Completion<[AppendOutcome]>) {
            if ops.isEmpty { self.messages = messages } else { self.messages += messages }
            ops.append((messages.count, executor, completion))
            bytes += size
        }
    }

    /// Stores the waiting appends and queues each one's completion.
    private func storeWaiting(_ waiting: inout WaitingAppends, turn: inout Turn) throws(SQLiteError) {
        guard !waiting.ops.isEmpty else { return }
        let outcomes = try storeInChunks(waiting.messages, turn: &turn)
        var start = 0
        for op in waiting.ops {
            let result = Array(outcomes[start..<(start + op.count)])
            start += op.count
            let completion = op.completion
            turn.complete(on: op.executor) { completion(.success(result)) }
        }
        waiting = WaitingAppends()
    }

    /// Stores `messages` in chunks of up to `maxChunkRows`; what became of each.
    private func storeInChunks(_ stamped: [SpoolAppend], turn: inout Turn) throws(SQLiteError) -> [AppendOutcome] {
        try readCounters()
        // Each stored, and its id seen, no earlier than its priority's last row
        // (whether a held id may be taken over is still judged at its own stamp).
        var messages = stamped
        for i in messages.indices {
            let at = receivedAtFloor.stamp(messages[i].receivedAtMillis, messages[i].priority)
            if at != messages[i].receivedAtMillis { messages[i].receivedAtMillis = at }
        }
        var outcomes: [AppendOutcome] = []
        outcomes.reserveCapacity(messages.count)
        var start = messages.startIndex
        while start < messages.endIndex {
            let rows = Self.chunkRows(messages.endIndex - start)
            let chunk = messages[start..<(start + rows)]
            start += rows
            if rows > 1, try appendAllNew(chunk, turn: &turn) {
                outcomes.append(contentsOf: repeatElement(.stored, count: rows))
            } else {
                for k in chunk.indices { outcomes.append(try appendOne(chunk[k], stampedAt: stamped[k].receivedAtMillis, turn: &turn)) }
            }
        }
        return outcomes
    }

    /// What `messages` add to the spool at most: payloads plus their dedupe ids.
    private static func size(of messages: [SpoolAppend]) -> Int64 {
        messages.reduce(Int64(0)) { $0 + Int64($1.payload.count + $1.messageID.utf8.count + 16) }
    }

    /// Whether `size` more bytes stay under max_bytes besides the totals
    /// last read and `appended` bytes since (stored or waiting).
    private func fits(_ size: Int64, besides appended: Int64) -> Bool {
        stats.totalBytes + appended + size <= options.maxBytes
    }

    /// Stores `m` unless its id is held at `stampedAt` (`.duplicate`).
    private func appendOne(_ m: SpoolAppend, stampedAt: Int64, turn: inout Turn) throws(SQLiteError) -> AppendOutcome {
        guard try claim(m.messageID, seenAt: m.receivedAtMillis, nowMillis: stampedAt) else { return .duplicate }
        let number = try numbers(1, turn: &turn)
        try insert.insertOutbox(m, number: number)
        counted(stored: CollectionOfOne(m), idsToo: false, turn: &turn)
        return .stored
    }

    /// Stores all of `chunk` with one statement for the ids and one for the
    /// rows, when every id in it is new (the common case); otherwise changes
    /// nothing and returns false, for the caller to take them one by one
    /// (a take-over, a duplicate, or one id twice in the chunk).
    private func appendAllNew(_ chunk: ArraySlice<SpoolAppend>, turn: inout Turn) throws(SQLiteError) -> Bool {
        precondition(chunk.count >= 2 && chunk.count.nonzeroBitCount == 1, "chunks are powers of two (chunkRows)")
        let slot = chunk.count.trailingZeroBitCount - 1
        try savepoint.run()
        let allNew: Bool
        do {
            try chunkStatement(&idInserts, slot) { SpoolSQL.insertIDs(rows: chunk.count) }.insertIDs(chunk)
            allNew = db.changes == chunk.count
            if !allNew { try rollbackToSavepoint.run() }
        } catch {
            // Leave no savepoint behind, whatever the caller does with the error.
            try? rollbackToSavepoint.run()
            try? releaseSavepoint.run()
            throw error
        }
        try releaseSavepoint.run()
        guard allNew else { return false }
        let first = try numbers(chunk.count, turn: &turn)
        try chunkStatement(&outboxInserts, slot) { SpoolSQL.insertOutbox(rows: chunk.count) }.insertOutbox(chunk, firstNumber: first)
        counted(stored: chunk, idsToo: true, turn: &turn)
        return true
    }

    /// Takes `count` numbers for new outbox rows (`SpoolPriority.seq`);
    /// returns the first.
    private func numbers(_ count: Int, turn: inout Turn) throws(SQLiteError) -> Int64 {
        try readCounters()
        let first = lastSeqNumber! + 1
        lastSeqNumber! += Int64(count)
        uncounted.lastSeq = lastSeqNumber
        if turn.firstInsertedNumber == nil { turn.firstInsertedNumber = first }
        return first
    }

    /// Reads, once a transaction, the seq counter and each priority's last
    /// row (`lastSeqNumber`, `receivedAtFloor`).
    private func readCounters() throws(SQLiteError) {
        guard lastSeqNumber == nil else { return }
        defer { readLastSeq.reset(); readLastRows.reset() }
        let counted = try readLastSeq.step() ? readLastSeq.int64(0) : 0
        receivedAtFloor = ReceivedAtFloor()
        lastSeqNumber = max(counted, try receivedAtFloor.load(lastRows: readLastRows))
    }

    /// Counts stored messages into the totals (their ids too unless `claim`
    /// counted them) and into the turn's growth.
    private func counted(stored: some Collection<SpoolAppend>, idsToo: Bool, turn: inout Turn) {
        for m in stored {
            if idsToo {
                uncounted.ids += 1
                uncounted.idBytes += Self.sqlLength(m.messageID) + 16
            }
            uncounted.rows += 1
            uncounted.bytes += Int64(m.payload.count)
            turn.appendedBytes += Int64(m.payload.count + m.messageID.utf8.count + 16)
        }
    }

    /// The statement for chunks of 2 << `slot` rows, prepared the first time.
    private func chunkStatement(_ cache: inout [SQLiteStatement?], _ slot: Int, _ sql: () -> String) throws(SQLiteError) -> SQLiteStatement {
        if let statement = cache[slot] { return statement }
        let statement = try db.prepare(sql())
        cache[slot] = statement
        return statement
    }

    /// The rows of the next chunk when `remaining` messages are left: the
    /// largest power of two up to `maxChunkRows`, so that a handful of
    /// prepared statements (2, 4, ... 32 rows) covers any count.
    static func chunkRows(_ remaining: Int) -> Int {
        min(maxChunkRows, 1 << (Int.bitWidth - 1 - remaining.leadingZeroBitCount))
    }

    static let maxChunkRows = 32

    // MARK: Room under max_bytes

    /// Frees at least `size` bytes under `max_bytes` for this turn: first by
    /// forgetting the oldest dedupe ids, then (drop_oldest) by deleting the
    /// oldest queued messages that are not in flight. False when it cannot.
    private func makeRoom(for size: Int64, commit: Int64, shared: Spool.Shared, turn: inout Turn) throws(SQLiteError) -> Bool {
        if size > options.maxBytes { return false }
        func excess() throws(SQLiteError) -> Int64 {
            try refreshTotals()
            return stats.totalBytes + size - options.maxBytes
        }
        // 1. The dedupe window is the cheapest thing to give up.
        // (The refreshed totals include this turn's appends from here on.)
        defer { turn.appendedBytes = 0 }
        while case let over = try excess(), over > 0, stats.dedupeIDs > 0 {
            let perID = max(1, stats.dedupeBytes / stats.dedupeIDs)
            try evictOldestIDs.bind(1, stats.oldestReceivedAtMillis ?? .max)
            try evictOldestIDs.bind(2, min(10_000, max(64, over / perID + 1)))
            let evicted = try removeIDs(evictOldestIDs)
            turn.evicted += Int64(evicted)
            if evicted == 0 { break }
        }
        if try excess() <= 0 {
            if turn.evicted > 0 { logger.notice("spool near max_bytes: forgot the oldest dedupe ids to make room (the 24 h dedupe window is shorter for now)", metadata: ["ids": "\(turn.evicted)"]) }
            return true
        }
        warnIfDeadLettersFill()
        guard options.onFull == .dropOldest else { return false }
        // 2. drop_oldest: historical import first, then live; never a row in flight.
        for priority in [SpoolPriority.bulk, .live] {
            var after = priority.seqs.lowerBound - 1
            let before = turn.firstInsertedNumber.map(priority.seq) ?? priority.seqs.upperBound
            while try excess() > 0 {
                try oldestOfPriority.bind(1, after)
                try oldestOfPriority.bind(2, before)
                try oldestOfPriority.bind(3, 64)
                var rows: [(seq: Int64, bytes: Int64)] = []
                while try oldestOfPriority.step() { rows.append((oldestOfPriority.int64(0), oldestOfPriority.int64(1))) }
                oldestOfPriority.reset()
                // Just enough of them, oldest first, skipping rows in flight.
                let needed = try excess()
                let free = shared.leases.withLock { $0.claimForRemoval(rows, bytesNeeded: needed, byCommit: commit) }
                for seq in free {
                    try forgetID.bind(1, seq)  // dropped: the app may send it again
                    _ = try removeIDs(forgetID)
                    try deleteRow(seq)
                    turn.dropped += 1
                }
                guard let last = rows.last else { break }  // nothing more of this priority
                after = last.seq
            }
        }
        return try excess() <= 0
    }

    private func warnIfDeadLettersFill() {
        let now = Spool.wallClockMillis()
        guard stats.deadLetterBytes * 2 > options.maxBytes, now - lastFullWarningMillis > 60_000 else { return }
        lastFullWarningMillis = now
        logger.error("dead letters fill more than half of the spool (max_bytes): new calls are refused or dropped. Inspect them with `plainflow-relay dead-letters list`, then replay or purge them", metadata: [
            "dead_letters": "\(stats.deadLetters)", "dead_letter_bytes": "\(stats.deadLetterBytes)", "max_bytes": "\(options.maxBytes)",
        ])
    }

    // MARK: Maintenance: expiry and the dedupe prune, in bounded slices

    private func maintain(_ shared: Spool.Shared) {
        let now = shared.nowMillis()
        guard maintenanceBacklog || now - lastMaintenanceMillis >= 1000 else { return }
        lastMaintenanceMillis = now
        let lagKnown = readDeliveryLag(nowMillis: now)
        let maxAge = shared.maxAgeMillis.load(ordering: .relaxed)
        let expiryDue = stats.oldestReceivedAtMillis.map { $0 < now - maxAge } ?? false
        let pruneBefore = holdFrom(now)
        let pruneDue: Bool = {
            guard lagKnown else { return false }  // (not with a wait that may be out of date)
            defer { oldestID.reset() }
            guard (try? oldestID.step()) == true, !oldestID.isNull(0) else { return false }
            return oldestID.int64(0) < pruneBefore
        }()
        guard expiryDue || pruneDue else { maintenanceBacklog = false; return }

        let limit = options.maintenanceSliceRows
        var touched = 0
        var turn = Turn()
        let commit = shared.commits.load(ordering: .acquiring) + 1
        let ok = nil == transaction(shared, turn: &turn) { (turn: inout Turn) throws(SQLiteError) in
            if expiryDue {
                // Each priority from its first row, by seq (received_at is in
                // that order: ReceivedAtFloor), to the first row too young.
                var rows: [(seq: Int64, bytes: Int64)] = []
                for priority in [SpoolPriority.live, .bulk] where rows.count < limit {
                    defer { expiredRows.reset() }
                    try expiredRows.bind(1, priority.seqs.lowerBound)
                    try expiredRows.bind(2, priority.seqs.upperBound)
                    try expiredRows.bind(3, Int64(limit - rows.count))
                    while try expiredRows.step(), expiredRows.int64(1) < now - maxAge { rows.append((expiredRows.int64(0), 0)) }
                }
                let free = shared.leases.withLock { $0.claimForRemoval(rows, byCommit: commit) }
                touched = free.count  // rows in flight wait for the next round
                let hours = Double(maxAge) / 3_600_000
                let reason = DeadLetterReason(reason: "expired: waited longer than max_age (\(hours == hours.rounded() ? String(Int64(hours)) : String(hours)) h) in the spool")
                for seq in free { try moveToDeadLetters(seq, reason: reason, now: now, countsAsAttempt: false) }
                turn.expired = Int64(free.count)
            }
            if pruneDue {
                try pruneIDs.bind(1, pruneBefore)
                try pruneIDs.bind(2, Int64(limit))
                touched = max(touched, try removeIDs(pruneIDs))
            }
        }
        maintenanceBacklog = ok && touched >= limit
        if ok && turn.expired > 0 {
            logger.warning("moved messages older than max_age to dead letters", metadata: ["count": "\(turn.expired)"])
        }
    }

    // MARK: Helpers

    /// Another connection committed (an operator replayed or purged): the
    /// totals row is exact, so reading it brings memory back in line.
    /// They may have grown the WAL: it is checkpointed, every 200 ms at most.
    private func noticeOtherWriters(_ shared: Spool.Shared) {
        guard let v = try? currentDataVersion() else { return }
        let now = Spool.wallClockMillis()
        if v != totalsVersion {
            othersNoticedMillis = now
            if (try? refreshTotals()) != nil {
                totalsVersion = v  // (else read again at the next turn)
                publish(shared, turn: Turn())
            }
        }
        guard let last = checkpointVersion else {
            // The read after our last commit or checkpoint failed: this one is
            // the baseline (only we checkpoint, so the WAL cannot have been
            // copied whole since by anyone else).
            checkpointVersion = v
            return
        }
        guard v != last, now - othersCheckpointMillis >= 200 else { return }
        othersCheckpointMillis = now
        if !db.checkpointTruncate(maxWaitMillis: 50), let (times, _) = checkpointFailures.note(1, nowMillis: now) {
            logger.notice("spool: could not fold the WAL back while an operator command writes (busy or failed; retried every 200 ms, logged once a minute while it lasts)",
                          metadata: ["path": "\(options.path)", "times": "\(times)"])
        }
        checkpointVersion = try? currentDataVersion()
    }

    /// Another connection committed within the last 5 s: the writer looks
    /// every 50 ms, not every 250, while idle.
    private var othersWriting: Bool { Spool.wallClockMillis() - othersNoticedMillis < 5_000 }

    private func currentDataVersion() throws(SQLiteError) -> Int64 {
        defer { readDataVersion.reset() }
        try readDataVersion.step()
        return readDataVersion.int64(0)
    }

    private func refreshTotals() throws(SQLiteError) {
        try flushTotals()
        // (Inside a transaction this sees the transaction's own changes.)
        try stats.load(from: readTotals)
    }

    /// Writes what this transaction counted itself into `totals` (see `uncounted`).
    private func flushTotals() throws(SQLiteError) {
        guard uncounted != Uncounted() else { return }
        try addTotals.bind(1, uncounted.rows)
        try addTotals.bind(2, uncounted.bytes)
        try addTotals.bind(3, uncounted.ids)
        try addTotals.bind(4, uncounted.idBytes)
        try addTotals.bind(5, uncounted.lastSeq ?? 0)
        try addTotals.run()
        uncounted = Uncounted()
    }

    /// Reads `deliveryLagMillis` as of `nowMillis`; false when the read
    /// failed (the value it had stays, and this turn prunes nothing).
    @discardableResult
    private func readDeliveryLag(nowMillis: Int64) -> Bool {
        defer { readLag.reset() }
        do {
            try readLag.bind(1, SpoolSQL.firstLagHour(nowMillis: nowMillis, windowMillis: options.dedupeWindowMillis))
            guard try readLag.step() else { return false }  // (an aggregate: never)
            deliveryLagMillis = readLag.int64(0)
            return true
        } catch {
            if let (failures, _) = lagReadFailures.note(1, nowMillis: Spool.wallClockMillis()) {
                logger.error("spool: could not read how long delivered messages waited (delivery_lag); the dedupe prune waits until it can, keeping every id meanwhile (logged once a minute while it lasts)",
                             metadata: ["error": "\(error)", "path": "\(options.path)", "failed_reads": "\(failures)"])
            }
            return false
        }
    }

    /// Ids last seen before this are held no more at `nowMillis` (SpoolSQL.holdFrom).
    private func holdFrom(_ nowMillis: Int64) -> Int64 {
        SpoolSQL.holdFrom(nowMillis: nowMillis, windowMillis: options.dedupeWindowMillis,
                          deliveryLagMillis: deliveryLagMillis, oldestQueuedMillis: stats.oldestReceivedAtMillis)
    }

    /// Records that a message delivered at `at` had waited `lag` since its
    /// receipt (in this transaction): ids are held that much longer from now on.
    private func noteDeliveryLag(_ lag: Int64, at: Int64) throws(SQLiteError) {
        let hour = at / SpoolSQL.lagBucketMillis
        if let noted = notedLag, noted.hour == hour, noted.lagMillis >= lag { return }
        try noteLag.bind(1, hour)
        try noteLag.bind(2, lag)
        try noteLag.run()
        if notedLag?.hour != hour {  // a new hour: forget the hours no window reaches any more
            try forgetLags.bind(1, SpoolSQL.firstLagHour(nowMillis: at, windowMillis: options.dedupeWindowMillis) - 1)
            try forgetLags.run()
        }
        notedLag = (hour, lag)  // (at least what this connection last wrote for the hour: checked above)
        deliveryLagMillis = max(deliveryLagMillis, lag)
    }

    /// Claims `id` for a new message seen at `seenAt` (its stored
    /// `received_at`); false when the relay still holds it at `nowMillis`
    /// (the message's own stamp): queued (seen since the oldest queued
    /// message) or delivered within the dedupe window.
    private func claim(_ id: String, seenAt: Int64, nowMillis: Int64) throws(SQLiteError) -> Bool {
        try insertID.bind(2, seenAt)
        try insertID.withBound(1, text: id) { () throws(SQLiteError) in try insertID.run() }
        if db.changes == 1 {
            uncounted.ids += 1
            uncounted.idBytes += Self.sqlLength(id) + 16
            return true
        }
        // Held already: taken over only when last seen before the hold.
        try takeOverID.bind(2, seenAt)
        try takeOverID.bind(3, holdFrom(nowMillis))
        try takeOverID.withBound(1, text: id) { () throws(SQLiteError) in try takeOverID.run() }
        return db.changes == 1
    }

    /// The rows of `messages` as runs of consecutive seqs, in ascending
    /// order, each holding at most `maxRunBytes` of payload (or one row),
    /// with the payload bytes it holds.
    static func consecutiveRuns(_ messages: [SpoolMessage]) -> [(first: Int64, last: Int64, bytes: Int64)] {
        var runs: [(first: Int64, last: Int64, bytes: Int64)] = []
        // (Sorting the seqs and sizes, not the messages: no copy of their strings and payloads.)
        for (seq, bytes) in messages.map({ ($0.seq, Int64($0.payload.count)) }).sorted(by: { $0.0 < $1.0 }) {
            if let last = runs.last {
                if seq == last.last { continue }  // listed twice
                if seq == last.last + 1 && last.bytes + bytes <= maxRunBytes {
                    runs[runs.count - 1].last = seq
                    runs[runs.count - 1].bytes += bytes
                    continue
                }
            }
            runs.append((seq, seq, bytes))
        }
        return runs
    }

    /// A range delete saves page for page what it removes in SQLite's
    /// statement journal, which goes to a temporary file past 64 KiB (a
    /// file created, written and deleted per statement: slower than more
    /// statements). 24 KiB of payload stays well under that with the
    /// indexes' pages. (In process, 100,000 600-byte rows: 12.4 us a message
    /// with unbounded ranges, 11.8 us with 32 rows a range.)
    static let maxRunBytes: Int64 = 24 * 1024

    private func moveToDeadLetters(_ seq: Int64, reason: DeadLetterReason, now: Int64, countsAsAttempt: Bool) throws(SQLiteError) {
        try toDeadLetters.bind(1, seq)
        try toDeadLetters.bind(2, reason.reason)
        if let status = reason.status { try toDeadLetters.bind(3, Int64(status)) } else { try toDeadLetters.bind(3, nil as String?) }
        try toDeadLetters.bind(4, now)
        try toDeadLetters.bind(5, countsAsAttempt ? 1 : 0)
        try toDeadLetters.run()
        try forgetID.bind(1, seq)  // not delivered: the app may send it again
        _ = try removeIDs(forgetID)
        try deleteRow(seq)
    }

    /// SQLite's `length()` of `text`: its characters before the first NUL
    /// (what the totals and `spool stats` count for a dedupe id).
    static func sqlLength(_ text: String) -> Int64 {
        var n: Int64 = 0
        for byte in text.utf8 {
            if byte == 0 { break }
            if byte & 0xC0 != 0x80 { n += 1 }  // not a continuation byte
        }
        return n
    }

    /// Runs a bound delete of dedupe ids (`RETURNING length(message_id)`),
    /// counting them out of the totals; returns how many it deleted.
    private func removeIDs(_ statement: SQLiteStatement) throws(SQLiteError) -> Int {
        defer { statement.reset() }
        var removed = 0
        while try statement.step() {
            removed += 1
            uncounted.ids -= 1
            uncounted.idBytes -= statement.int64(0) + 16
        }
        return removed
    }

    /// Deletes one outbox row, counting it out of the totals (see `uncounted`).
    private func deleteRow(_ seq: Int64) throws(SQLiteError) {
        try delete.bind(1, seq)
        try removeRows(delete)
    }

    /// Runs a bound delete of outbox rows (`RETURNING bytes`), counting
    /// them out of the totals.
    private func removeRows(_ statement: SQLiteStatement) throws(SQLiteError) {
        defer { statement.reset() }
        while try statement.step() {
            uncounted.rows -= 1
            uncounted.bytes -= statement.int64(0)
        }
    }

    private static func fail(_ op: Spool.Op, _ error: SpoolError) {
        switch op {
        case .append(_, let executor, let c):
            if let executor { executor.execute([{ c(.failure(error)) }]) } else { c(.failure(error)) }
        case .acknowledge(_, _, let c), .retry(_, _, _, _, let c), .deadLetter(_, _, _, let c): c(.failure(error))
        case .rejected, .barrier, .shutdown: break
        }
    }
}

/// A line that may be due at every commit: logged the first time, then at
/// most once a minute, with what happened since the last line.
struct ThrottledLog {
    private var loggedAtMillis: Int64?
    private var times = 0
    private var count = 0

    /// Records one occurrence of `count` things; returns the occurrences and
    /// things since the last line when a line is due now, else nil.
    mutating func note(_ count: Int, nowMillis: Int64) -> (times: Int, count: Int)? {
        times += 1
        self.count += count
        if let at = loggedAtMillis, nowMillis - at < 60_000 { return nil }
        defer { (loggedAtMillis, times, self.count) = (nowMillis, 0, 0) }
        return (times, self.count)
    }
}
