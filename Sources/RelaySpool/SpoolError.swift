import CSQLite

/// Why the spool could not do what was asked.
public enum SpoolError: Error, Sendable, CustomStringConvertible {
    /// Storing the call would take the spool past `max_bytes`.
    case full(limitBytes: Int64)
    /// SQLite refused (disk full, read-only file, I/O error, ...).
    case storage(SQLiteError)
    /// The file was written by a newer relay.
    case newerSchema(path: String, found: Int64, supported: Int64)
    case migrationFailed(path: String, toVersion: Int64, underlying: SQLiteError)
    /// The file was written by an older relay and the daemon has not migrated it yet.
    case olderSchema(path: String, found: Int64, supported: Int64)
    /// The spool is shutting down and takes no more writes.
    case closed
    /// Another running relay owns this spool.
    case locked(path: String, ownerPID: Int32?)
    /// A file of the spool could not be created or opened.
    case cannotOpen(path: String, reason: String)
    /// Another operator command's write transaction held the spool's
    /// operator turn for longer than this one waits.
    case operatorBusy(path: String, holderPID: Int32?, waitedMillis: Int)
    /// SQLite did not apply the durability setting asked for.
    case durabilityNotApplied(path: String, asked: String, got: String)
    /// An operator command found no spool file at `path`.
    case notFound(path: String)
    /// An operator command may not read the spool at `path` (its mode or owner).
    case permissionDenied(path: String)
    /// An operator command found a file at `path` that is not a relay spool.
    case notASpool(path: String, reason: String)
    /// An operator command could not open or read the spool at `path`.
    case cannotRead(path: String, reason: String)

    public var description: String {
        switch self {
        case .full(let limit):
            return "the spool is full (max_bytes = \(limit)); retry later"
        case .storage(let e):
            // What a person can act on; the SQL stays out (it reaches apps in 503 bodies).
            switch e.primaryCode {
            case SQLITE_FULL:
                return "the disk holding the spool is full (\(e.message)); free space there, or lower spool.max_bytes"
            case SQLITE_BUSY, SQLITE_LOCKED:
                return "the spool file is busy: another process holds its write lock (an operator command?); retry shortly"
            case SQLITE_READONLY:
                return "the spool file is read-only for this user (\(e.message)); check the owner and mode of the spool and its directory"
            case SQLITE_CANTOPEN:
                return "cannot open the spool file (\(e.message)); check that its directory exists and this user may write there"
            case SQLITE_NOTADB, SQLITE_CORRUPT:
                return "the spool file is not a plainflow-relay spool, or is damaged (\(e.message))"
            case SQLITE_IOERR:
                return "the disk failed while reading or writing the spool (\(e.message), SQLite error \(e.code))"
            default:
                return "the spool failed: \(e.message) (SQLite error \(e.code))"
            }
        case .newerSchema(let path, let found, let supported):
            return "\(path) has schema version \(found), newer than this relay understands (\(supported)); upgrade plainflow-relay"
        case .olderSchema(let path, let found, let supported):
            return "\(path) was written by an older plainflow-relay (schema \(found); this one reads \(supported)); start the upgraded relay once (it migrates the file, keeping everything), then run this command again"
        case .migrationFailed(let path, let v, let e):
            return "could not migrate \(path) to schema version \(v): \(e)"
        case .closed:
            return "the spool is shutting down"
        case .locked(let path, let pid):
            let owner = pid.map { "process \($0)" } ?? "another process"
            return "\(path) is in use by another plainflow-relay (\(owner)); one relay owns a spool: stop that one, or give this one its own spool (--spool or spool.path). Operator commands work beside it"
        case .cannotOpen(let path, let reason):
            return "cannot open \(path): \(reason); check that the directory exists and is writable by this user"
        case .operatorBusy(let path, let pid, let waited):
            let holder = pid.map { "process \($0)" } ?? "another process"
            let wait = waited >= 1000 ? "\(waited / 1000) s" : "\(waited) ms"
            return "another operator command (\(holder)) is writing to \(path), and one of its transactions has lasted \(wait) (they take milliseconds): is it stopped (Ctrl-Z) or hung? Let it finish, or stop it, then run this command again (an import: with --resume)"
        case .durabilityNotApplied(let path, let asked, let got):
            return "\(path): asked SQLite for synchronous=\(asked) but it runs with \(got); refusing to acknowledge calls with weaker durability"
        case .notFound(let path):
            return "no spool at \(path): the relay creates it when it first runs; name the spool with --spool FILE, or the configuration that sets spool.path with --config FILE or PLAINFLOW_RELAY_CONFIG"
        case .permissionDenied(let path):
            return "cannot read the spool \(path): permission denied; run this command as root or as the user the relay runs as (plainflow-relay)"
        case .notASpool(let path, let reason):
            return "\(path) is not a plainflow-relay spool (\(reason)); name the spool with --spool FILE, or check spool.path in the configuration"
        case .cannotRead(let path, let reason):
            // Mostly the mode or owner of the spool, its -wal/-shm files or its directory.
            return "cannot read the spool \(path): \(reason); run this command as root or as the user the relay runs as (plainflow-relay)"
        }
    }

    /// `error` as a spool error: itself when it is one, SQLite's as
    /// `storage`, anything else as a failure to open `path`.
    static func wrapping(_ error: any Error, path: String) -> SpoolError {
        switch error {
        case let e as SpoolError: return e
        case let e as SQLiteError: return .storage(e)
        default: return .cannotOpen(path: path, reason: "\(error)")
        }
    }

    /// True when the app should simply retry later (HTTP 503).
    public var isTransient: Bool {
        switch self {
        case .full, .closed: return true
        case .storage(let e): return e.isStorageRefusal
        case .newerSchema, .olderSchema, .migrationFailed, .locked, .cannotOpen, .operatorBusy, .durabilityNotApplied, .notFound, .permissionDenied, .notASpool, .cannotRead: return false
        }
    }
}
