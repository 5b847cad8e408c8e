// SpoolLock: one daemon owns a spool.
//
// The daemon holds an exclusive `flock` on `<spool>.lock` for as long as it
// runs; the file holds the owner's PID so that a second daemon can say who
// owns it. The kernel drops the lock when the process dies (kill -9
// included), so a stale lock file never blocks a restart. Operator commands
// (SpoolAdmin, SpoolImporter) do not take it: they work beside the running
// daemon through SQLite's own locking, one write transaction at a time
// among themselves (`OperatorTurn`, `<spool>.operators.lock`).
//
// The spool's files are private: they hold write keys and personal data.
// The database is created 0600 before SQLite opens it (SQLite gives its
// -wal and -shm files the database's mode).

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An exclusive hold on a spool file.
final class SpoolLock {
    private let fd: Int32
    let path: String

    /// Takes the lock, or throws `SpoolError.locked` naming the owner.
    init(spoolPath: String) throws(SpoolError) {
        // The descriptor is stored only once the lock is held: an init that
        // throws with every property set would run deinit too, and close the
        // descriptor a second time (by then, maybe another thread's file).
        let lockPath = spoolPath + ".lock"
        let fd = try Self.openLockFile(lockPath, spoolPath: spoolPath)
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let owner = Self.readPID(fd)
            close(fd)
            throw SpoolError.locked(path: spoolPath, ownerPID: owner)
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        self.path = lockPath
        self.fd = fd
    }

    deinit {
        flock(fd, LOCK_UN)
        close(fd)
    }

    /// Leaves the WAL's checkpoints to the daemon while one holds the spool:
    /// `db` (an operator command's connection) checkpoints at SQLite's
    /// 1,000 pages only while none does. Returns whether one does.
    ///
    /// SQLite before 3.51.3 (Debian 12 has 3.40.1) can lose a commit when a
    /// checkpoint starts on a WAL copied whole and another connection's
    /// transaction restarts the WAL inside a window of a few instructions
    /// (the "WAL-reset bug"). The daemon's writer starts a checkpoint only
    /// after a commit that wrote to the WAL (its own, or another one it
    /// noticed by `PRAGMA data_version` since its own last commit or
    /// checkpoint), never on a WAL copied whole, provided no other
    /// connection copies it meanwhile: so operator commands run beside it
    /// do not checkpoint. Call it before every write transaction (a daemon
    /// may have started or stopped since the last).
    @discardableResult
    static func leaveCheckpointsToDaemon(_ db: SQLiteConnection, spoolPath: String) -> Bool {
        let running = isHeld(spoolPath: spoolPath)
        db.autocheckpoint(pages: running ? 0 : 1000)
        return running
    }

    /// Runs `body` as one write transaction of an operator command
    /// (`import`, `dead-letters replay`, `dead-letters purge`): in its
    /// operator turn (`OperatorTurn`), BEGIN IMMEDIATE, the checkpoint rule
    /// (`leaveCheckpointsToDaemon`, looked at with the write lock held: a
    /// daemon that started since the last transaction never meets a
    /// checkpoint of ours), `body` (told whether a daemon runs), then COMMIT,
    /// where SQLite may checkpoint, still in the turn. ROLLBACK when `body`
    /// throws (a `SpoolError` from it passes through; SQLite's errors become
    /// `SpoolError.storage`).
    static func operatorTransaction<T>(_ db: SQLiteConnection, spoolPath: String,
                                       waitMillis: Int = OperatorTurn.defaultWaitMillis,
                                       _ body: (_ daemonRunning: Bool) throws -> T) throws(SpoolError) -> T {
        let turn = try OperatorTurn(spoolPath: spoolPath, waitMillis: waitMillis)
        defer { turn.end() }
        do {
            try db.execute("BEGIN IMMEDIATE")
            let result = try body(leaveCheckpointsToDaemon(db, spoolPath: spoolPath))
            try db.execute("COMMIT")
            return result
        } catch {
            if db.inTransaction { try? db.execute("ROLLBACK") }
            throw SpoolError.wrapping(error, path: spoolPath)
        }
    }

    /// Whether a daemon holds the spool now (a probe: takes nothing).
    static func isHeld(spoolPath: String) -> Bool {
        let fd = open(spoolPath + ".lock", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        guard flock(fd, LOCK_SH | LOCK_NB) == 0 else { return true }
        flock(fd, LOCK_UN)
        return false
    }

    /// Opens (creating it 0600 if need be) the lock file `path` beside the
    /// spool, refusing anything but a regular file with one link owned by
    /// this user or the spool's owner: the spool's directory belongs to the
    /// relay's user, and root running an operator command must not follow a
    /// link planted there (to write, truncate or chown another file). A file
    /// root creates is given the spool file's owner, as SQLite does for the
    /// -wal and -shm files it creates, so that the relay's user can use it too.
    static func openLockFile(_ path: String, spoolPath: String) throws(SpoolError) -> Int32 {
        var fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        let created = fd >= 0
        if !created && errno == EEXIST { fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC) }
        guard fd >= 0 else {
            throw SpoolError.cannotOpen(path: path, reason: errno == ELOOP
                ? "it is a symbolic link, which the relay does not follow; remove it (the relay makes it again)"
                : String(cString: strerror(errno)))
        }
        var spool = stat()
        let spoolOwner: uid_t? = stat(spoolPath, &spool) == 0 ? spool.st_uid : nil
        if created, geteuid() == 0, let spoolOwner { _ = fchown(fd, spoolOwner, spool.st_gid) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_nlink == 1,
              created || st.st_uid == geteuid() || st.st_uid == spoolOwner else {
            close(fd)
            throw SpoolError.cannotOpen(path: path, reason: "it is not a regular file of this user or of the spool's owner; remove it (the relay makes it again)")
        }
        return fd
    }

    fileprivate static func readPID(_ fd: Int32) -> Int32? {
        var buf = [UInt8](repeating: 0, count: 32)
        let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return nil }
        return Int32(String(decoding: buf[..<n].filter { (0x30...0x39).contains($0) }, as: UTF8.self))
    }

    /// Creates the database file with mode 0600 if it does not exist yet.
    static func createPrivately(_ path: String) throws(SpoolError) {
        let fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        if fd >= 0 { close(fd); return }
        if errno == EEXIST { return }
        throw SpoolError.cannotOpen(path: path, reason: String(cString: strerror(errno)))
    }
}

/// One operator command's turn to write a spool: an exclusive `flock` on
/// `<spool>.operators.lock`, held for one write transaction (a slice of at
/// most `SpoolAdmin.sliceRows` rows) and the checkpoint SQLite may run at
/// its commit.
///
/// Why: with no daemon running, operator connections checkpoint at SQLite's
/// 1,000 pages. Two commands writing at once (two imports, an import and a
/// replay) would checkpoint beside each other: one could start a checkpoint
/// on a WAL the other had just copied whole while the other's next commit
/// starts the WAL over, SQLite's WAL-reset race before 3.51.3 (see
/// `leaveCheckpointsToDaemon`), which can lose committed rows. In turns,
/// each operator checkpoint follows its own commit with no other
/// operator's commit or checkpoint in between. A starting daemon waits for
/// the turn under way once (`Spool`), so an operator that looked for a
/// daemon before it started has checkpointed before the daemon writes;
/// while one runs, operators do not checkpoint at all.
///
/// The file's first 32 bytes: the PID of the command whose turn it is and
/// a count of turns (for the message of one that waited too long: only a
/// single turn that lasts `waitMillis` is taken for a stuck command), then
/// a byte a waiting command sets, so that the one whose turn ends leaves a
/// moment for it instead of taking the next turn at once.
final class OperatorTurn {
    /// How long a command waits for another's turn to end: a turn lasts
    /// milliseconds, so this much means the other command is stuck or stopped.
    static let defaultWaitMillis = 10_000

    private var fd: Int32
    private static let headerBytes = 32

    /// Waits up to `waitMillis` for one turn of another command to end;
    /// throws `SpoolError.operatorBusy` naming the command whose turn it is.
    init(spoolPath: String, waitMillis: Int) throws(SpoolError) {
        let lockPath = spoolPath + ".operators.lock"
        let fd = try SpoolLock.openLockFile(lockPath, spoolPath: spoolPath)
        var holder = Self.header(fd)
        var since = ContinuousClock.now
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let failure = errno
            guard failure == EWOULDBLOCK || failure == EINTR else {
                close(fd)
                throw SpoolError.cannotOpen(path: lockPath, reason: String(cString: strerror(failure)))
            }
            let seen = Self.header(fd)
            if seen != holder { (holder, since) = (seen, .now) }  // another turn: the holder is moving on
            let waited = ContinuousClock.now - since
            if waited >= .milliseconds(waitMillis) {
                close(fd)
                throw SpoolError.operatorBusy(path: spoolPath, holderPID: holder.pid, waitedMillis: Int(waited / .milliseconds(1)))
            }
            _ = Self.write(fd, "1", at: Self.headerBytes)  // waiting
            usleep(1_000)
        }
        var text = "\(getpid()) \((holder.turn ?? 0) &+ 1)"
        text += String(repeating: " ", count: max(0, Self.headerBytes - 1 - text.utf8.count)) + "\n0"
        _ = Self.write(fd, text, at: 0)
        self.fd = fd
    }

    /// Ends the turn (once); when another command waits, leaves it a moment
    /// to take the next one.
    func end() {
        guard fd >= 0 else { return }
        var flag: UInt8 = 0
        let waiting = pread(fd, &flag, 1, off_t(Self.headerBytes)) == 1 && flag == UInt8(ascii: "1")
        flock(fd, LOCK_UN)
        close(fd)
        fd = -1
        if waiting { usleep(3_000) }  // (it looks every millisecond)
    }

    deinit { end() }

    /// The PID and turn count the file holds (nil each when unreadable).
    private static func header(_ fd: Int32) -> Header {
        var buf = [UInt8](repeating: 0, count: headerBytes)
        let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return Header(pid: nil, turn: nil) }
        let fields = String(decoding: buf[..<n], as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\n" })
        return Header(pid: fields.first.flatMap { Int32($0) }, turn: fields.dropFirst().first.flatMap { Int($0) })
    }

    private struct Header: Equatable {
        var pid: Int32?
        var turn: Int?
    }

    private static func write(_ fd: Int32, _ text: String, at offset: Int) -> Bool {
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(offset)) } == bytes.count
    }
}
