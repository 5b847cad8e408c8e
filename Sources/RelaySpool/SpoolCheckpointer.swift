// SpoolCheckpointer: copies the WAL back into the database file on a thread
// of its own, so that the writer's commits do not wait for the copy.
//
// Owns: a second read-write connection to the spool, used only for
// checkpoints, and the thread that runs them ("spool-checkpt").
//
// Invariants:
// - Nothing acknowledged is put at risk: a PASSIVE checkpoint never takes
//   the write lock, and with synchronous=FULL on this connection SQLite
//   syncs the WAL before it copies and the database file before it marks
//   frames as copied; the WAL starts over only after that.
// - The writer no longer checkpoints at SQLite's 1,000 frames
//   (`SQLiteConnection.trackWAL`). It reports the WAL's size after each
//   commit (`committed(walFrames:)`); from `startFrames` on, this thread
//   copies what it can while the writer goes on committing.
// - The WAL starts over only when a transaction begins after its last frame
//   was copied, which a copy running beside a busy writer never quite
//   reaches. Once a copy has come within `tailFrames` of the end, the
//   writer copies that tail itself between two turns (`takeTailRequest`):
//   at most what SQLite's own checkpoint copied on the writer every 1,000
//   frames, once a WAL of `startFrames`.
// - Bounded: from `maxFrames` on, this thread stops and the writer copies
//   whatever is left itself, waiting for a copy under way to end.
// - No checkpoint of ours starts while the WAL may be starting over: SQLite
//   up to 3.51.2 (Debian 12 ships 3.40.1) can lose committed frames when a
//   checkpoint starts while another connection's commit resets a WAL that
//   a checkpoint had just copied whole (sqlite.org/wal.html, "the WAL-reset
//   bug"). Every checkpoint of ours runs under `gate`; one that copies the
//   whole WAL sets `resetPending`, and then this thread starts none until
//   the writer has written a transaction under `gate` (`writing`), the only
//   kind that can reset it. The writer's own copies run between its
//   transactions, so they cannot race its resets. Operator commands on
//   their own connections (import, replay) still checkpoint at SQLite's
//   1,000 pages, as before this thread existed.

import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

final class SpoolCheckpointer: Sendable {
    /// The WAL's size (frames) from which this thread copies it back.
    let startFrames: Int
    /// A copy that leaves at most this many frames asks the writer for the rest.
    let tailFrames: Int
    /// The WAL's size from which the writer copies it back itself.
    var maxFrames: Int { startFrames * 4 }

    /// Held by every checkpoint of ours (this thread's connection inside),
    /// and by a writer's transaction that may reset the WAL.
    private let gate: Mutex<SQLiteConnection?>
    /// A checkpoint of ours copied the whole WAL, and the writer has not
    /// written since: its next transaction may start the WAL over.
    private let resetPending = Atomic<Bool>(false)
    private let wakes = BlockingQueue<Wake>()
    private enum Wake { case copy, stop }
    private let finished = BlockingQueue<Void>()
    /// The WAL's size after the writer's last commit.
    private let latestFrames = Atomic<Int>(0)
    /// A copy is asked for or running (the writer wakes this thread once).
    private let copying = Atomic<Bool>(false)
    private let started = Atomic<Bool>(false)
    /// A copy came within `tailFrames` of the end: the writer copies the rest.
    private let tailWanted = Atomic<Bool>(false)
    private let logger: Logger
    private let path: String

    /// Least time between two copies, so that a WAL a reader keeps from
    /// starting over does not turn this thread into a busy loop.
    private static let restNanos: Int64 = 10_000_000

    /// Opens the checkpoint connection to the spool at `path`; `maxBytes`
    /// scales the WAL it lets grow (a sixteenth of it, 1,000 to 10,000 pages).
    init(path: String, pageSize: Int, maxBytes: Int64, logger: Logger) throws(SpoolError) {
        self.path = path
        self.logger = logger
        let pages = Int(max(0, maxBytes) / 16) / max(pageSize, 512)
        startFrames = min(max(pages, 1_000), 10_000)
        tailFrames = min(1_000, startFrames / 2)
        do {
            let db = try SQLiteConnection(path: path, create: false)
            db.retryWhileBusy(maxMillis: 5000)
            try db.execute("PRAGMA synchronous = FULL; PRAGMA journal_mode")  // (the latter opens the WAL)
            gate = Mutex(db)
        } catch {
            throw SpoolError.storage(error)
        }
    }

    /// Starts the thread.
    func start() {
        guard !started.exchange(true, ordering: .acquiringAndReleasing) else { return }
        startThread(name: "spool-checkpt") { [self] in
            run()
            _ = finished.push(())
        }
    }

    /// Stops the thread (a copy under way finishes first) and closes its connection.
    func stop() {
        guard wakes.pushAndClose(.stop) else { return }
        while started.load(ordering: .acquiring), finished.takeAll(lingerNanos: 0, idleNanos: 1_000_000_000, enough: { _ in true })?.isEmpty ?? false {}
        gate.withLock { $0 = nil }
    }

    /// The writer committed and the WAL now holds `walFrames` frames (writer thread).
    func committed(walFrames: Int) {
        latestFrames.store(walFrames, ordering: .relaxed)
        if walFrames >= startFrames, !copying.exchange(true, ordering: .acquiringAndReleasing) {
            if !wakes.push(.copy) { copying.store(false, ordering: .relaxed) }
        }
    }

    /// Runs the writer's transaction `body`, under `gate` when it may start
    /// the WAL over (a checkpoint of ours copied it whole since the writer
    /// last wrote); `wroteFrames` says afterwards whether it wrote any.
    func writing(_ body: () -> SQLiteError?, wroteFrames: () -> Bool) -> SQLiteError? {
        guard resetPending.load(ordering: .acquiring) else { return body() }
        return gate.withLock { _ in
            let failed = body()
            if wroteFrames() { resetPending.store(false, ordering: .releasing) }
            return failed
        }
    }

    /// A checkpoint on the writer's connection `db`, between two of its
    /// transactions (so it cannot race the writer's own reset of the WAL):
    /// nil when a copy was under way (unless `wait`: then after it) or when
    /// it failed. One that copies the WAL whole holds this thread's until
    /// the writer has written.
    func copy(on db: SQLiteConnection, wait: Bool) -> SQLiteConnection.Checkpoint? {
        func run() -> SQLiteConnection.Checkpoint? {
            guard let copy = try? db.checkpointPassive() else { return nil }
            if copy.copied >= copy.frames { resetPending.store(true, ordering: .releasing) }
            return copy
        }
        return wait ? gate.withLock { _ in run() } : gate.withLockIfAvailable { _ in run() } ?? nil
    }

    /// Whether this thread may start a copy now (not while the WAL may be starting over).
    var mayStartCopy: Bool { !resetPending.load(ordering: .acquiring) }

    /// True once: a copy came close enough to the WAL's end for the writer to copy the rest.
    func takeTailRequest() -> Bool {
        tailWanted.load(ordering: .relaxed) && tailWanted.exchange(false, ordering: .acquiringAndReleasing)
    }

    private func run() {
        var failures = ThrottledLog()
        while let woken = wakes.takeAll(lingerNanos: 0, idleNanos: 1_000_000_000, enough: { _ in true }) {
            if woken.contains(where: { if case .stop = $0 { true } else { false } }) { return }  // (the writer copies the rest)
            guard !woken.isEmpty else { continue }
            var lastCopied = -1
            while let copy = copyOnce(&failures) {
                let latest = latestFrames.load(ordering: .relaxed)
                if latest >= maxFrames { break }  // the writer copies it now
                // The WAL started over (latest < copied), or only a tail is left.
                if latest < copy.copied || latest - copy.copied <= tailFrames {
                    tailWanted.store(true, ordering: .releasing)
                    break
                }
                if copy.copied == lastCopied { break }  // a reader holds the rest: later
                lastCopied = copy.copied
            }
            var rest = timespec(tv_sec: 0, tv_nsec: Int(Self.restNanos))
            nanosleep(&rest, nil)
            copying.store(false, ordering: .releasing)
        }
    }

    /// One PASSIVE checkpoint; nil when the WAL was copied whole already
    /// (the writer's next transaction starts it over), when another one was
    /// running, when it failed (logged), or once closed.
    private func copyOnce(_ failures: inout ThrottledLog) -> SQLiteConnection.Checkpoint? {
        let result = gate.withLock { db -> Result<SQLiteConnection.Checkpoint?, SQLiteError> in
            guard let db, mayStartCopy else { return .success(nil) }
            return Result { () throws(SQLiteError) in
                let copy = try db.checkpointPassive()
                if let copy, copy.copied >= copy.frames { resetPending.store(true, ordering: .releasing) }
                return copy
            }
        }
        switch result {
        case .success(let copy): return copy
        case .failure(let error):
            if let (count, _) = failures.note(1, nowMillis: Spool.wallClockMillis()) {
                logger.error("spool: could not copy the WAL back into the database file; the writer copies it itself once it holds \(maxFrames) pages (logged once a minute while it lasts)",
                             metadata: ["error": "\(error)", "path": "\(path)", "failed_checkpoints": "\(count)"])
            }
            return nil
        }
    }
}
