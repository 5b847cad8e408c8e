// Spool: the durable SQLite outbox between ingest and forward.
//
// Owns: the database file, its schema, and every write to it.
//
// Invariants (the durability contract, DESIGN §4):
// - A message is acknowledged (its append completes with `.stored` or
//   `.duplicate`) only after the transaction holding it has committed with
//   WAL + synchronous=FULL, i.e. after fsync.
// - One writer: a dedicated thread drains a queue of write operations and
//   applies everything it finds in one transaction (group commit). Under
//   load, appends from many connections share one fsync. An optional linger
//   window lets concurrent producers join before the commit.
// - Rows leave the outbox only when the upstream accepted them (deleted,
//   id kept in `message_ids` for the dedupe window), when they are moved to
//   `dead_letters` (refused, expired), in the same transaction, or under
//   `on_full = drop_oldest` (counted and logged). Nothing goes silently.
// - Leases are in memory (see SpoolReader): after a crash every row that was
//   in flight is simply still in the outbox and is sent again.
// - `max_bytes` bounds everything on disk: outbox, dead letters and dedupe
//   ids. An append that would cross it first shortens the dedupe window
//   (oldest ids forgotten, counted), then fails with `SpoolError.full`
//   (HTTP 503), or under `on_full = drop_oldest` deletes the oldest queued
//   messages (counted and logged).
// - Size never slows it: `stats` is memory (exact, refreshed from the
//   `totals` row inside every write transaction, which the writer keeps for
//   its own outbox and dedupe-id changes and triggers keep for the rest);
//   expiry and the dedupe prune run on the writer thread through indexes, in
//   slices of at most `maintenanceSliceRows` rows a transaction, between
//   group commits.
// - A row whose batch is in flight (leased) is never expired or dropped
//   (LeaseTable).
//
// On-disk layout: see Schema.swift. States of a message:
//   appended ─► queued ─► leased (memory) ─► deleted (id stays in message_ids)
//                  ▲            │
//                  └─ retry ────┤
//                               └──────────► dead_letters

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import Synchronization

/// How the spool stores.
public struct SpoolOptions: Sendable {
    public enum OnFull: String, Sendable, Codable {
        /// Refuse new calls with 503 until there is room (default).
        case reject
        /// Delete the oldest queued messages to make room (counted and logged).
        case dropOldest = "drop_oldest"
    }

    public var path: String
    /// Upper bound of what the spool keeps: outbox, dead letters and dedupe ids.
    public var maxBytes: Int64
    public var onFull: OnFull
    /// `synchronous=FULL` (fsync every commit) when true, `NORMAL` otherwise.
    public var synchronousFull: Bool
    /// How long the writer waits for more appends before committing.
    public var commitLingerNanos: Int64
    /// A commit never waits for more than this many messages.
    public var maxMessagesPerCommit: Int
    /// How long a sent message id is remembered for dedupe.
    public var dedupeWindowMillis: Int64
    /// Rows kept in the `rejected` sample.
    public var rejectedSampleLimit: Int
    /// Messages older than this (by `received_at`) go to dead letters.
    public var maxAgeMillis: Int64
    /// Most rows one maintenance transaction (expiry, dedupe prune) touches.
    public var maintenanceSliceRows: Int

    public init(
        path: String,
        maxBytes: Int64 = 1 << 30,
        onFull: OnFull = .reject,
        synchronousFull: Bool = true,
        commitLingerNanos: Int64 = 0,
        maxMessagesPerCommit: Int = 1000,
        dedupeWindowMillis: Int64 = 24 * 3600 * 1000,
        rejectedSampleLimit: Int = 1000,
        maxAgeMillis: Int64 = 7 * 24 * 3600 * 1000,
        maintenanceSliceRows: Int = 1000
    ) {
        self.path = path
        self.maxBytes = maxBytes
        self.onFull = onFull
        self.synchronousFull = synchronousFull
        self.commitLingerNanos = commitLingerNanos
        self.maxMessagesPerCommit = maxMessagesPerCommit
        self.dedupeWindowMillis = dedupeWindowMillis
        self.rejectedSampleLimit = rejectedSampleLimit
        self.maxAgeMillis = maxAgeMillis
        self.maintenanceSliceRows = maintenanceSliceRows
    }
}

/// The durable outbox. Thread-safe; all writes go through one writer thread.
public final class Spool: Sendable {
    public typealias Completion<T> = @Sendable (Result<T, SpoolError>) -> Void

    enum Op {
        case append([SpoolAppend], (any CompletionExecutor)?, Completion<[AppendOutcome]>)
        case acknowledge([SpoolMessage], atMillis: Int64, Completion<Void>)
        case retry([SpoolMessage], error: String, nextAttemptAtMillis: Int64, nowMillis: Int64, Completion<Void>)
        case deadLetter([SpoolMessage], DeadLetterReason, nowMillis: Int64, Completion<Void>)
        case rejected(errors: String, sample: [UInt8], atMillis: Int64)
        /// Completes after the writer's next commit, or at once when idle (tests).
        case barrier(@Sendable () -> Void)
        case shutdown(@Sendable () -> Void)
    }

    /// What the writer thread, the reader and the callers share.
    final class Shared: Sendable {
        let queue = BlockingQueue<Op>()
        /// The writer's exact view; only the writer changes it.
        let counters: Mutex<SpoolStats>
        let leases = Mutex(LeaseTable())
        /// Commits completed; a reader reads it before it reads rows (LeaseTable).
        let commits = Atomic<Int64>(0)
        /// Rejected-call samples queued for the writer (bounded: samples are best effort).
        let pendingRejected = Atomic<Int>(0)
        let maxAgeMillis: Atomic<Int64>
        let nowMillis: @Sendable () -> Int64
        init(_ stats: SpoolStats, maxAgeMillis: Int64, nowMillis: @escaping @Sendable () -> Int64) {
            counters = Mutex(stats)
            self.maxAgeMillis = Atomic(maxAgeMillis)
            self.nowMillis = nowMillis
        }
    }

    public let options: SpoolOptions
    /// `PRAGMA synchronous` as the writer's connection reports it (2 = FULL, 1 = NORMAL).
    public let synchronousLevel: Int64
    private let shared: Shared
    /// Held while the spool is open: one daemon owns a spool file.
    private let lock: Mutex<SpoolLock?>
    private var queue: BlockingQueue<Op> { shared.queue }
    private let logger: Logger

    /// Opens (creating and migrating as needed) the spool and starts its writer.
    /// - Parameter nowMillis: the clock maintenance (expiry, dedupe window) runs by.
    public init(options: SpoolOptions, logger: Logger = Logger(label: "plainflow-relay.spool"),
                nowMillis: @escaping @Sendable () -> Int64 = Spool.wallClockMillis) throws(SpoolError) {
        self.options = options
        self.logger = logger
        let lock = try SpoolLock(spoolPath: options.path)
        // An operator command in the middle of a transaction, which looked for
        // a daemon before this one held the lock, ends it (and the checkpoint
        // at its commit) before we open the file; the next sees us running.
        try OperatorTurn(spoolPath: options.path, waitMillis: OperatorTurn.defaultWaitMillis).end()
        let writer = try SpoolWriter(options: options, logger: logger)
        self.synchronousLevel = writer.synchronousLevel
        nonisolated(unsafe) let held = lock
        self.lock = Mutex(held)
        let shared = Shared(writer.initialStats, maxAgeMillis: options.maxAgeMillis, nowMillis: nowMillis)
        self.shared = shared
        // Owned by the writer thread from here on; released there before the
        // shutdown is reported, so the file is closed when `close()` returns.
        final class Owner: @unchecked Sendable { var writer: SpoolWriter?; init(_ w: SpoolWriter) { writer = w } }
        let owner = Owner(writer)
        startThread(name: "spool-writer") {
            let waiting = owner.writer?.run(shared) ?? []
            owner.writer = nil  // finalizes the statements and closes the connection
            waiting.forEach { $0() }
        }
    }

    // MARK: Ingest side

    /// Stores `messages` durably; completes after the commit, on `executor`
    /// (grouped with the commit's other completions for it) when given.
    public func append(_ messages: [SpoolAppend], on executor: (any CompletionExecutor)? = nil,
                       completion: @escaping Completion<[AppendOutcome]>) {
        if !queue.push(.append(messages, executor, completion)) { completion(.failure(.closed)) }
    }

    /// Stores `messages` durably; returns after the commit.
    public func append(_ messages: [SpoolAppend]) async throws(SpoolError) -> [AppendOutcome] {
        try await withResult { self.append(messages, completion: $0) }
    }

    /// Keeps a sample of a refused call for the operator (`rejected list`); best effort.
    /// - Parameter errorsJSON: the errors as a JSON array of strings.
    /// At most `maxPendingRejected` samples wait for the writer: an app that
    /// floods bad calls costs neither memory nor write time beyond that.
    public func recordRejected(errorsJSON: String, sample: [UInt8], atMillis: Int64) {
        guard shared.pendingRejected.add(1, ordering: .relaxed).newValue <= Self.maxPendingRejected else {
            shared.pendingRejected.subtract(1, ordering: .relaxed)
            return
        }
        if !queue.push(.rejected(errors: errorsJSON, sample: Array(sample.prefix(4096)), atMillis: atMillis)) {
            shared.pendingRejected.subtract(1, ordering: .relaxed)
        }
    }

    /// Samples of refused calls that may wait for the writer at once.
    static let maxPendingRejected = 256

    // MARK: Forward side

    /// The upstream accepted these: delete them and remember their ids. Their
    /// leases end with the commit (a later `release` of them does nothing).
    public func acknowledge(_ messages: [SpoolMessage], atMillis: Int64) async throws(SpoolError) {
        try await withResult { self.submit(.acknowledge(messages, atMillis: atMillis, $0), $0) }
    }

    /// Sending failed in a way worth retrying: count the attempt, keep the rows.
    public func scheduleRetry(_ messages: [SpoolMessage], error: String, nextAttemptAtMillis: Int64, nowMillis: Int64) async throws(SpoolError) {
        try await withResult { self.submit(.retry(messages, error: error, nextAttemptAtMillis: nextAttemptAtMillis, nowMillis: nowMillis, $0), $0) }
    }

    /// The upstream will never take these: move them to dead letters. Their
    /// leases end with the commit, as for `acknowledge`.
    public func deadLetter(_ messages: [SpoolMessage], reason: DeadLetterReason, nowMillis: Int64) async throws(SpoolError) {
        try await withResult { self.submit(.deadLetter(messages, reason, nowMillis: nowMillis, $0), $0) }
    }

    /// A reader for the forwarder, on its own connection.
    public func makeReader() throws(SpoolError) -> SpoolReader {
        try SpoolReader(path: options.path, shared: shared)
    }

    /// A new `max_age` (SIGHUP); the next expiry slice uses it.
    public func setMaxAge(millis: Int64) { shared.maxAgeMillis.store(millis, ordering: .relaxed) }

    /// Returns once the writer has finished what was queued before this call,
    /// including a maintenance slice that was due (for tests and shutdown).
    public func settle() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            if !queue.push(.barrier({ c.resume() })) { c.resume() }
        }
    }

    // MARK: State

    /// Exact counts, from memory: never a query (status, metrics, health).
    public var stats: SpoolStats { shared.counters.withLock { $0 } }

    /// Unix milliseconds by the system clock.
    public static let wallClockMillis: @Sendable () -> Int64 = {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    /// Commits what is queued, then stops the writer and closes the file.
    /// Appends after this fail with `SpoolError.closed`.
    public func close() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            if !queue.pushAndClose(.shutdown({ c.resume() })) { c.resume() }
        }
        _ = lock.withLock { $0.take() }  // the file is closed: another relay may own it now
    }

    /// Queues `op` for the writer (`completion` fails at once when closed).
    func submit<T>(_ op: Op, _ completion: Completion<T>) {
        if !queue.push(op) { completion(.failure(.closed)) }
    }

    private func withResult<T: Sendable>(_ start: (@escaping Completion<T>) -> Void) async throws(SpoolError) -> T {
        let result: Result<T, SpoolError> = await withCheckedContinuation { c in
            start { c.resume(returning: $0) }
        }
        return try result.get()
    }
}
