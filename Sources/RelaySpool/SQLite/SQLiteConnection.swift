// A thin, owning wrapper over one sqlite3 connection and its prepared
// statements, in the manner of GRDB: a statement is a class that owns its
// pointer (prepared in init, finalized in deinit), every C call is wrapped
// once and its result code turned into a typed error at once.
//
// Not thread-safe: each connection has exactly one owner (the spool writer
// thread, or the forwarder's reader).

import CSQLite
#if canImport(Glibc)
import Glibc
#endif

/// One SQLite connection.
final class SQLiteConnection {
    let handle: OpaquePointer
    let path: String

    /// Opens (creating if asked) the database at `path`.
    init(path: String, readOnly: Bool = false, create: Bool = true) throws(SQLiteError) {
        var db: OpaquePointer?
        let flags = (readOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0))) | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let err = SQLiteError(code: rc, db: db, sql: nil)
            sqlite3_close_v2(db)
            throw err
        }
        sqlite3_extended_result_codes(db, 1)
        self.handle = db
        self.path = path
    }

    deinit {
        sqlite3_close_v2(handle)
    }

    /// Runs one or more statements that return no rows.
    func execute(_ sql: String) throws(SQLiteError) {
        var errmsg: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &errmsg)
        if rc != SQLITE_OK {
            let message = errmsg.map { String(cString: $0) } ?? String(cString: sqlite3_errstr(rc))
            sqlite3_free(errmsg)
            throw SQLiteError(code: rc, message: message, sql: sql)
        }
    }

    /// Prepares a statement for repeated use.
    func prepare(_ sql: String) throws(SQLiteError) -> SQLiteStatement {
        try SQLiteStatement(connection: self, sql: sql)
    }

    /// Runs `sql` and returns the first column of the first row as an integer.
    func scalarInt(_ sql: String) throws(SQLiteError) -> Int64? {
        let st = try prepare(sql)
        guard try st.step() else { return nil }
        return st.isNull(0) ? nil : st.int64(0)
    }

    /// When another connection holds the lock, retry every 0.2 ms for up to
    /// `maxMillis` (SQLite's own busy_timeout sleeps 1, 2, 5 … 100 ms between
    /// tries, so a writer could wait tens of milliseconds past a short
    /// transaction of an operator command or an import).
    func retryWhileBusy(maxMillis: Int) {
        busyMillis = maxMillis
        sqlite3_busy_handler(handle, { context, tries in
            let maxTries = Int32(truncatingIfNeeded: Int(bitPattern: context))
            guard tries < maxTries else { return 0 }
            usleep(200)
            return 1
        }, UnsafeMutableRawPointer(bitPattern: maxMillis * 5))
    }

    /// Rows changed by the last statement.
    var changes: Int { Int(sqlite3_changes(handle)) }

    /// True while a transaction is open.
    var inTransaction: Bool { sqlite3_get_autocommit(handle) == 0 }

    /// Sets how many WAL pages a commit on this connection leaves before it
    /// checkpoints (`PRAGMA wal_autocheckpoint`; 0: never).
    func autocheckpoint(pages: Int32) { sqlite3_wal_autocheckpoint(handle, pages) }

    /// The longest `retryWhileBusy` waits; nil: SQLite's default (no wait).
    private(set) var busyMillis: Int?

    /// One TRUNCATE checkpoint: with the write lock, copies the whole WAL,
    /// waits for readers to leave it and empties the file, so that the next
    /// transaction writes it from its start; the waits for the lock and for
    /// the readers share one budget of about `maxWaitMillis`. Without the
    /// lock in time SQLite makes it PASSIVE: it copies what it can and waits
    /// for nothing. False when SQLite reports an error or busy.
    @discardableResult
    func checkpointTruncate(maxWaitMillis: Int) -> Bool {
        let restore = busyMillis
        retryWhileBusy(maxMillis: maxWaitMillis)
        defer {
            if let restore { retryWhileBusy(maxMillis: restore) } else { sqlite3_busy_handler(handle, nil, nil); busyMillis = nil }
        }
        return sqlite3_wal_checkpoint_v2(handle, nil, SQLITE_CHECKPOINT_TRUNCATE, nil, nil) == SQLITE_OK
    }
}

/// One prepared statement. Bind with 1-based indexes, read columns 0-based.
final class SQLiteStatement {
    private let stmt: OpaquePointer
    private unowned let connection: SQLiteConnection
    let sql: String

    init(connection: SQLiteConnection, sql: String) throws(SQLiteError) {
        var s: OpaquePointer?
        let rc = sqlite3_prepare_v3(connection.handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &s, nil)
        guard rc == SQLITE_OK, let s else { throw SQLiteError(code: rc, db: connection.handle, sql: sql) }
        self.stmt = s
        self.connection = connection
        self.sql = sql
    }

    deinit { sqlite3_finalize(stmt) }

    /// Clears bindings and state so the statement can run again.
    func reset() {
        sqlite3_reset(stmt)
        sqlite3_clear_bindings(stmt)
    }

    func bind(_ index: Int32, _ value: Int64) throws(SQLiteError) {
        try check(sqlite3_bind_int64(stmt, index, value))
    }

    /// Binds the whole string, a NUL inside it included (as `withBound`
    /// does, and as `string(_:)` reads it back).
    func bind(_ index: Int32, _ value: String?) throws(SQLiteError) {
        guard let value else { try check(sqlite3_bind_null(stmt, index)); return }
        try check(sqlite3_bind_text(stmt, index, value, Int32(value.utf8.count), pf_sqlite_transient()))
    }

    func bind(_ index: Int32, bytes: [UInt8]) throws(SQLiteError) {
        let rc = bytes.withUnsafeBytes { buf in
            sqlite3_bind_blob(stmt, index, buf.baseAddress, Int32(buf.count), pf_sqlite_transient())
        }
        try check(rc)
    }

    /// Runs `body` with `value` bound without a copy (SQLITE_STATIC): SQLite
    /// reads the bytes in place, so `body` must run the statement (`run()`,
    /// which clears the bindings) before it returns.
    func withBound<R>(_ index: Int32, text value: String, _ body: () throws(SQLiteError) -> R) throws(SQLiteError) -> R {
        var value = value  // `withUTF8` makes a bridged string contiguous first
        // (`withUTF8` and `withUnsafeBytes` rethrow untyped errors: carried out in a Result.)
        return try value.withUTF8 { buf in
            Result { () throws(SQLiteError) in try withBound(index, UnsafeRawBufferPointer(buf), isText: true, body) }
        }.get()
    }

    /// Runs `body` with `bytes` bound without a copy (see `withBound(_:text:_:)`).
    func withBound<R>(_ index: Int32, bytes: [UInt8], _ body: () throws(SQLiteError) -> R) throws(SQLiteError) -> R {
        try bytes.withUnsafeBytes { buf in
            Result { () throws(SQLiteError) in try withBound(index, buf, isText: false, body) }
        }.get()
    }

    private func withBound<R>(_ index: Int32, _ buf: UnsafeRawBufferPointer, isText: Bool,
                              _ body: () throws(SQLiteError) -> R) throws(SQLiteError) -> R {
        // A zero-length value needs a non-null pointer, or SQLite stores NULL.
        let base = buf.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!
        let rc = isText ? sqlite3_bind_text(stmt, index, base.assumingMemoryBound(to: CChar.self), Int32(buf.count), nil)
                        : sqlite3_bind_blob(stmt, index, base, Int32(buf.count), nil)
        do {
            try check(rc)
            return try body()
        } catch {
            sqlite3_clear_bindings(stmt)  // never leave a pointer SQLite may read later
            throw error
        }
    }

    /// Advances one row: true when a row is available, false when done.
    @discardableResult
    func step() throws(SQLiteError) -> Bool {
        let rc = sqlite3_step(stmt)
        switch rc {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default:
            let err = SQLiteError(code: rc, db: connection.handle, sql: sql)
            sqlite3_reset(stmt)
            throw err
        }
    }

    /// Runs a statement that returns no rows, then resets it.
    func run() throws(SQLiteError) {
        defer { reset() }
        try step()
    }

    func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(stmt, column) }

    func isNull(_ column: Int32) -> Bool { sqlite3_column_type(stmt, column) == SQLITE_NULL }

    /// The column's text, all of it (a NUL inside it included).
    func string(_ column: Int32) -> String? {
        guard let p = sqlite3_column_text(stmt, column) else { return nil }
        return String(decoding: UnsafeBufferPointer(start: p, count: Int(sqlite3_column_bytes(stmt, column))), as: UTF8.self)
    }

    func bytes(_ column: Int32) -> [UInt8] {
        let n = Int(sqlite3_column_bytes(stmt, column))
        guard n > 0, let p = sqlite3_column_blob(stmt, column) else { return [] }
        return Array(UnsafeRawBufferPointer(start: p, count: n))
    }

    private func check(_ rc: Int32) throws(SQLiteError) {
        if rc != SQLITE_OK { throw SQLiteError(code: rc, db: connection.handle, sql: sql) }
    }
}
