// SpoolLock: one daemon owns a spool.
//
// The daemon holds an exclusive `flock` on `<spool>.lock` for as long as it
// runs; the file holds the owner's PID so that a second daemon can say who
// owns it. The kernel drops the lock when the process dies (kill -9
// included), so a stale lock file never blocks a restart. Operator commands
// (SpoolAdmin) do not take it: they work beside the running daemon through
// SQLite's own locking.
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
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw SpoolError.cannotOpen(path: lockPath, reason: String(cString: strerror(errno)))
        }
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

    /// Whether a daemon holds the spool now (a probe: takes nothing).
    static func isHeld(spoolPath: String) -> Bool {
        let fd = open(spoolPath + ".lock", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        guard flock(fd, LOCK_SH | LOCK_NB) == 0 else { return true }
        flock(fd, LOCK_UN)
        return false
    }

    private static func readPID(_ fd: Int32) -> Int32? {
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
