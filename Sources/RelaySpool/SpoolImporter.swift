// SpoolImporter: the spool side of `plainflow-relay import`.
//
// Owns: its own connection to the spool file, with the daemon running or
// stopped (like SpoolAdmin), and the `import_runs` rows.
// Invariants:
// - A slice of records and its run's progress commit in one transaction:
//   after any crash the run's `records` counts exactly the records whose
//   fate (stored, duplicate, invalid) is on disk, so a resume neither skips
//   nor repeats one.
// - Records enter like live calls (the same id claim and insert), at bulk
//   priority, so the forwarder sends every live call first.
// - An import never makes room: a slice that would take the spool past
//   `max_bytes` is not stored (`SpoolError.full`), whatever `on_full` says;
//   the daemon's live calls keep the space.
// - Slices are short (the caller sizes them), the daemon's writer polls the
//   lock finely, and while a daemon runs the importer pauses briefly after
//   each commit (SQLite's lock is not fair: an importer that began its next
//   transaction at once would starve the daemon), so live acknowledgements
//   wait at most about one slice.

#if canImport(Glibc)
import Glibc
#endif

/// One file's import, as the spool records it.
public struct ImportRun: Sendable, Hashable {
    /// SHA-256 of the file's bytes, hex.
    public let fingerprint: String
    public var path: String
    public var size: Int64
    /// Records read so far (valid or not), and the bytes they took.
    public var records: Int64 = 0
    public var offset: Int64 = 0
    public var stored: Int64 = 0
    public var duplicates: Int64 = 0
    public var invalid: Int64 = 0
    public var startedAtMillis: Int64
    public var finishedAtMillis: Int64?

    public init(fingerprint: String, path: String, size: Int64, startedAtMillis: Int64) {
        self.fingerprint = fingerprint
        self.path = path
        self.size = size
        self.startedAtMillis = startedAtMillis
    }
}

/// Writes imported records into a spool file.
public final class SpoolImporter {
    let db: SQLiteConnection
    private let maxBytes: Int64
    private let dedupeWindowMillis: Int64
    private let claim: SQLiteStatement
    private let insert: SQLiteStatement
    private let saveRun: SQLiteStatement
    private let path: String
    private var daemonRunning = false

    /// Opens an existing spool at the current schema (the daemon, or
    /// `Spool`, creates and migrates it).
    public init(path: String, maxBytes: Int64, dedupeWindowMillis: Int64 = 24 * 3600 * 1000) throws(SpoolError) {
        self.maxBytes = maxBytes
        self.dedupeWindowMillis = dedupeWindowMillis
        self.path = path
        do {
            db = try SQLiteConnection(path: path, readOnly: false, create: false)
            db.retryWhileBusy(maxMillis: 10_000)
            daemonRunning = SpoolLock.leaveCheckpointsToDaemon(db, spoolPath: path)
            let version = try db.scalarInt("PRAGMA user_version") ?? 0
            if version != Schema.currentVersion {
                throw version > Schema.currentVersion
                    ? SpoolError.newerSchema(path: path, found: version, supported: Schema.currentVersion)
                    : SpoolError.olderSchema(path: path, found: version, supported: Schema.currentVersion)
            }
            try Schema.keepTotals(db)  // its inserts count in the outbox and dedupe totals
            claim = try db.prepare(SpoolSQL.claimID)
            insert = try db.prepare(SpoolSQL.insertOutbox)
            saveRun = try db.prepare("""
            INSERT INTO import_runs (fingerprint, path, size, records, offset, stored, duplicates, invalid, started_at, updated_at, finished_at)
            VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
            ON CONFLICT (fingerprint) DO UPDATE SET path = ?2, size = ?3, records = ?4, offset = ?5, stored = ?6,
                duplicates = ?7, invalid = ?8, started_at = ?9, updated_at = ?10, finished_at = ?11
            """)
        } catch let error as SpoolError {
            throw error
        } catch let error as SQLiteError {
            throw SpoolError.storage(error)
        } catch {
            throw SpoolError.cannotOpen(path: path, reason: "\(error)")
        }
    }

    /// Whether a daemon holds this spool now.
    public var daemonIsRunning: Bool { SpoolLock.isHeld(spoolPath: path) }

    /// The run recorded for this file content, if any.
    public func run(fingerprint: String) throws(SpoolError) -> ImportRun? {
        do {
            let st = try db.prepare("""
                SELECT path, size, records, offset, stored, duplicates, invalid, started_at, finished_at
                FROM import_runs WHERE fingerprint = ?1
                """)
            try st.bind(1, fingerprint)
            guard try st.step() else { return nil }
            var run = ImportRun(fingerprint: fingerprint, path: st.string(0) ?? "", size: st.int64(1), startedAtMillis: st.int64(7))
            run.records = st.int64(2)
            run.offset = st.int64(3)
            run.stored = st.int64(4)
            run.duplicates = st.int64(5)
            run.invalid = st.int64(6)
            run.finishedAtMillis = st.isNull(8) ? nil : st.int64(8)
            return run
        } catch {
            throw SpoolError.storage(error)
        }
    }

    /// Records a new run (replacing an unfinished one of the same content).
    public func begin(_ run: ImportRun) throws(SpoolError) {
        try write(run, records: [], atMillis: run.startedAtMillis)
    }

    /// Stores `records` (claiming each id as a live call would: one the spool
    /// holds already is a duplicate) and `run`'s progress (none for standard
    /// input), in one transaction. Returns the records stored and the duplicates.
    public func commit(_ records: [SpoolAppend], run: ImportRun?, atMillis now: Int64) throws(SpoolError) -> (stored: Int64, duplicates: Int64) {
        let result = try write(run, records: records, atMillis: now)
        yieldToDaemon()
        return result
    }

    /// Leaves the lock free for 2 ms when a daemon runs (as seen before
    /// the commit), so that its writer, polling every 0.2 ms, gets its turn.
    private func yieldToDaemon() {
        if daemonRunning { usleep(2000) }
    }

    /// Marks the run finished (with its final counts).
    public func finish(_ run: ImportRun, atMillis now: Int64) throws(SpoolError) {
        var done = run
        done.finishedAtMillis = now
        try write(done, records: [], atMillis: now)
    }

    @discardableResult
    private func write(_ run: ImportRun?, records: [SpoolAppend], atMillis now: Int64) throws(SpoolError) -> (stored: Int64, duplicates: Int64) {
        var stored: Int64 = 0
        var duplicates: Int64 = 0
        try SpoolLock.operatorTransaction(db, spoolPath: path) { daemon in
            daemonRunning = daemon
            if !records.isEmpty {
                let holdFrom = try SpoolSQL.holdFrom(db, nowMillis: now, windowMillis: dedupeWindowMillis)
                var floor = try ReceivedAtFloor.read(db)
                var added: Int64 = 0
                for var r in records {
                    r.receivedAtMillis = floor.stamp(r.receivedAtMillis, r.priority)
                    try claim.bind(1, r.messageID)
                    try claim.bind(2, r.receivedAtMillis)
                    try claim.bind(3, holdFrom)
                    try claim.run()
                    guard db.changes == 1 else { duplicates += 1; continue }
                    try insert.insertOutbox(r)
                    stored += 1
                    added += Int64(r.payload.count)
                }
                if added > 0, (try db.scalarInt(SpoolSQL.heldBytes) ?? 0) > maxBytes {
                    throw SpoolError.full(limitBytes: maxBytes)  // (rolled back)
                }
            }
            if var progress = run {
                progress.stored += stored
                progress.duplicates += duplicates
                try record(progress, atMillis: now)
            }
        }
        return (stored, duplicates)
    }

    private func record(_ run: ImportRun, atMillis now: Int64) throws(SQLiteError) {
        let st = saveRun
        try st.bind(1, run.fingerprint)
        try st.bind(2, run.path)
        try st.bind(3, run.size)
        try st.bind(4, run.records)
        try st.bind(5, run.offset)
        try st.bind(6, run.stored)
        try st.bind(7, run.duplicates)
        try st.bind(8, run.invalid)
        try st.bind(9, run.startedAtMillis)
        try st.bind(10, now)
        if let f = run.finishedAtMillis { try st.bind(11, f) } else { try st.bind(11, nil as String?) }
        try st.run()
    }
}
