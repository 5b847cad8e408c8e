import CSQLite

/// A failed SQLite call: the result code, SQLite's message and the SQL involved.
public struct SQLiteError: Error, Sendable, CustomStringConvertible {
    /// The extended result code (`SQLITE_FULL`, `SQLITE_IOERR_FSYNC`, ...).
    public let code: Int32
    public let message: String
    public let sql: String?

    init(code: Int32, message: String, sql: String? = nil) {
        self.code = code
        self.message = message
        self.sql = sql
    }

    init(code: Int32, db: OpaquePointer?, sql: String? = nil) {
        let msg = db.flatMap { sqlite3_errmsg($0) }.map { String(cString: $0) } ?? String(cString: sqlite3_errstr(code))
        self.init(code: code, message: msg, sql: sql)
    }

    /// The primary result code (the low byte of the extended one).
    public var primaryCode: Int32 { code & 0xFF }

    /// True when the disk refused the write (full, read-only, I/O error):
    /// a condition that may clear by itself, answered with 503, not a crash.
    public var isStorageRefusal: Bool {
        [SQLITE_FULL, SQLITE_IOERR, SQLITE_READONLY, SQLITE_CANTOPEN, SQLITE_BUSY, SQLITE_LOCKED].contains(primaryCode)
    }

    public var description: String {
        var s = "SQLite error \(code) (\(String(cString: sqlite3_errstr(code)))): \(message)"
        if let sql { s += " [\(sql.prefix(120))]" }
        return s
    }
}
