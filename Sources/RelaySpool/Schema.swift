// The spool's on-disk layout and its migrations.
//
// The schema version is SQLite's `user_version`. Migrations run in order,
// each in its own transaction; an upgraded relay opens an older file by
// applying the steps it lacks, and refuses a file from a newer relay rather
// than guess at it.

enum Schema {
    /// Step N brings a database from version N to N+1.
    static let migrations: [String] = [
        // v1: outbox, dead letters, dedupe window, rejected sample.
        """
        CREATE TABLE outbox (
            seq             INTEGER PRIMARY KEY AUTOINCREMENT, -- FIFO order
            message_id      TEXT    NOT NULL,
            write_key       TEXT    NOT NULL DEFAULT '',       -- '' = the relay's configured key
            priority        INTEGER NOT NULL DEFAULT 0,        -- 0 live, 1 historical import
            received_at     INTEGER NOT NULL,                  -- unix ms, relay clock
            payload         BLOB    NOT NULL,                  -- canonical JSON
            bytes           INTEGER NOT NULL,
            attempts        INTEGER NOT NULL DEFAULT 0,
            next_attempt_at INTEGER NOT NULL DEFAULT 0,        -- unix ms
            first_attempt_at INTEGER,                          -- unix ms
            last_error      TEXT
        );
        CREATE UNIQUE INDEX outbox_message_id ON outbox(message_id);
        CREATE INDEX outbox_order ON outbox(priority, seq);
        CREATE TABLE dead_letters (
            id               INTEGER PRIMARY KEY AUTOINCREMENT,
            message_id       TEXT    NOT NULL,
            write_key        TEXT    NOT NULL DEFAULT '',
            priority         INTEGER NOT NULL DEFAULT 0,
            received_at      INTEGER NOT NULL,
            payload          BLOB    NOT NULL,
            reason           TEXT    NOT NULL,
            status           INTEGER,                          -- upstream HTTP status, if any
            attempts         INTEGER NOT NULL,
            first_attempt_at INTEGER,
            last_attempt_at  INTEGER,
            dead_at          INTEGER NOT NULL
        );
        CREATE TABLE sent_ids (
            message_id TEXT PRIMARY KEY,
            sent_at    INTEGER NOT NULL                        -- unix ms
        ) WITHOUT ROWID;
        CREATE INDEX sent_ids_age ON sent_ids(sent_at);
        CREATE TABLE rejected (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            received_at INTEGER NOT NULL,
            errors      TEXT    NOT NULL,                      -- JSON array of "path: message"
            sample      BLOB    NOT NULL                       -- what the app sent, truncated
        );
        """,
    ]

    static var currentVersion: Int64 { Int64(migrations.count) }

    /// Brings the database to the current version.
    static func migrate(_ db: SQLiteConnection) throws(SpoolError) {
        let version: Int64
        do { version = try db.scalarInt("PRAGMA user_version") ?? 0 } catch { throw SpoolError.storage(error) }
        if version > currentVersion {
            throw SpoolError.newerSchema(path: db.path, found: version, supported: currentVersion)
        }
        for step in Int(version)..<migrations.count {
            do {
                try db.execute("BEGIN IMMEDIATE")
                try db.execute(migrations[step])
                try db.execute("PRAGMA user_version = \(step + 1)")
                try db.execute("COMMIT")
            } catch {
                try? db.execute("ROLLBACK")
                throw SpoolError.migrationFailed(path: db.path, toVersion: Int64(step + 1), underlying: error)
            }
        }
    }
}
