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
        // v2: a spool that does not care how much it holds.
        // - One dedupe table, `message_ids`: every id the relay holds (queued)
        //   or delivered within the dedupe window, with when it was last seen
        //   (received, or delivered when that was much later). It replaces the
        //   outbox's unique index and `sent_ids`: an append claims its id with
        //   one upsert, and an acknowledgement deletes outbox rows by seq only,
        //   so no random index page is written per delivered message.
        // - `totals`: exact counts and bytes of every table, kept by triggers in
        //   the same transaction as the change (whoever writes: the daemon or an
        //   operator command), so status and the max_bytes check never scan.
        // - indexes for expiry (`received_at`), drop_oldest (`priority, seq` is
        //   there), the dedupe prune (`seen_at`) and dead-letter purges
        //   (`dead_at`); dead letters carry their size, since max_bytes bounds them too.
        """
        ALTER TABLE dead_letters ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
        UPDATE dead_letters SET bytes = length(payload);
        CREATE TABLE message_ids (
            message_id TEXT    PRIMARY KEY,
            seen_at    INTEGER NOT NULL                        -- unix ms
        ) WITHOUT ROWID;
        INSERT INTO message_ids SELECT message_id, sent_at FROM sent_ids;
        INSERT OR REPLACE INTO message_ids SELECT message_id, received_at FROM outbox;
        DROP TABLE sent_ids;
        DROP INDEX outbox_message_id;
        CREATE INDEX message_ids_age ON message_ids(seen_at);
        CREATE INDEX outbox_received_at ON outbox(received_at);
        CREATE INDEX dead_letters_dead_at ON dead_letters(dead_at);
        CREATE TABLE totals (
            id             INTEGER PRIMARY KEY CHECK (id = 1),
            outbox_count   INTEGER NOT NULL,
            outbox_bytes   INTEGER NOT NULL,
            dead_count     INTEGER NOT NULL,
            dead_bytes     INTEGER NOT NULL,
            ids_count      INTEGER NOT NULL,                   -- message_ids rows (queued + dedupe window)
            ids_bytes      INTEGER NOT NULL,                   -- length(message_id) + 16 each
            rejected_count INTEGER NOT NULL
        );
        INSERT INTO totals SELECT 1,
            (SELECT count(*) FROM outbox), (SELECT COALESCE(sum(bytes), 0) FROM outbox),
            (SELECT count(*) FROM dead_letters), (SELECT COALESCE(sum(bytes), 0) FROM dead_letters),
            (SELECT count(*) FROM message_ids), (SELECT COALESCE(sum(length(message_id) + 16), 0) FROM message_ids),
            (SELECT count(*) FROM rejected);
        CREATE TRIGGER outbox_added AFTER INSERT ON outbox BEGIN
            UPDATE totals SET outbox_count = outbox_count + 1, outbox_bytes = outbox_bytes + NEW.bytes;
        END;
        CREATE TRIGGER outbox_removed AFTER DELETE ON outbox BEGIN
            UPDATE totals SET outbox_count = outbox_count - 1, outbox_bytes = outbox_bytes - OLD.bytes;
        END;
        CREATE TRIGGER dead_added AFTER INSERT ON dead_letters BEGIN
            UPDATE totals SET dead_count = dead_count + 1, dead_bytes = dead_bytes + NEW.bytes;
        END;
        CREATE TRIGGER dead_removed AFTER DELETE ON dead_letters BEGIN
            UPDATE totals SET dead_count = dead_count - 1, dead_bytes = dead_bytes - OLD.bytes;
        END;
        CREATE TRIGGER ids_added AFTER INSERT ON message_ids BEGIN
            UPDATE totals SET ids_count = ids_count + 1, ids_bytes = ids_bytes + length(NEW.message_id) + 16;
        END;
        CREATE TRIGGER ids_removed AFTER DELETE ON message_ids BEGIN
            UPDATE totals SET ids_count = ids_count - 1, ids_bytes = ids_bytes - length(OLD.message_id) - 16;
        END;
        CREATE TRIGGER rejected_added AFTER INSERT ON rejected BEGIN
            UPDATE totals SET rejected_count = rejected_count + 1;
        END;
        CREATE TRIGGER rejected_removed AFTER DELETE ON rejected BEGIN
            UPDATE totals SET rejected_count = rejected_count - 1;
        END;
        """,
        // v3: historical imports (`plainflow-relay import`). One row per file,
        // found by the SHA-256 of its bytes; its progress is committed in the
        // same transaction as each slice of its records, so an import resumes
        // exactly where it stopped and a finished file is never queued twice,
        // however long after.
        """
        CREATE TABLE import_runs (
            fingerprint TEXT    PRIMARY KEY,                   -- sha256 of the file, hex
            path        TEXT    NOT NULL,                      -- as last given
            size        INTEGER NOT NULL,                      -- bytes
            records     INTEGER NOT NULL DEFAULT 0,            -- records read, valid or not
            offset      INTEGER NOT NULL DEFAULT 0,            -- bytes consumed by those records
            stored      INTEGER NOT NULL DEFAULT 0,
            duplicates  INTEGER NOT NULL DEFAULT 0,
            invalid     INTEGER NOT NULL DEFAULT 0,
            started_at  INTEGER NOT NULL,                      -- unix ms
            updated_at  INTEGER NOT NULL,
            finished_at INTEGER
        ) WITHOUT ROWID;
        """,
        // v4: the outbox's totals are kept by whoever writes it, not by
        // triggers stored in the file: a stored trigger runs for every row of
        // every connection, and the two of them cost the spool writer 1.7 µs
        // of its 12.4 µs of CPU per message. The daemon's writer counts its own
        // inserts and deletes into one UPDATE a transaction; replay and
        // imports add the same triggers as TEMP triggers on their own
        // connection (`Schema.keepTotals`).
        """
        DROP TRIGGER outbox_added;
        DROP TRIGGER outbox_removed;
        """,
        // v5: the same for the dedupe ids (about 1 µs more a message). A
        // file whose ids were counted twice (by a build that counted them in
        // the writer while v4 still kept their stored triggers) gets its
        // counts made again from the table. Dead letters and refused samples
        // keep their stored triggers.
        """
        DROP TRIGGER IF EXISTS ids_added;
        DROP TRIGGER IF EXISTS ids_removed;
        UPDATE totals SET
            ids_count = (SELECT count(*) FROM message_ids),
            ids_bytes = (SELECT COALESCE(sum(length(message_id) + 16), 0) FROM message_ids);
        """,
        // v6: the id of a message delivered long after its receipt stays held
        // for the dedupe window from its delivery without a write to that id.
        // An acknowledgement records, for the hour it happens in, the longest
        // any of its messages had waited since receipt, among waits of at most
        // a quarter of the window (one row an hour, written when that grows),
        // and every id is held that much longer than the window while such an
        // hour is within it (`SpoolSQL.holdFrom`: the writer's prune and claim,
        // replay, import). A message that waited longer is not recorded: its
        // own id's `seen_at` is moved to its delivery, as every late message's
        // was before v6. Ids moved by an earlier relay need no record.
        """
        CREATE TABLE delivery_lag (
            hour   INTEGER PRIMARY KEY,                        -- unix ms / 3,600,000 of the deliveries
            lag_ms INTEGER NOT NULL                            -- the longest any of them had waited since receipt
        );
        """,
        // v7: an append writes the outbox's table and one index, not three
        // b-trees and sqlite_sequence. Historical imports' rows move to seqs
        // from 2^62 (`SpoolPriority.seqs`), so seq order is FIFO order within
        // each priority and reads, drop_oldest and the forwarder's cursor
        // need no `(priority, seq)` index; the seq counter that AUTOINCREMENT
        // kept in `sqlite_sequence` (a page written every commit) is
        // `totals.last_seq`, in the row every commit writes anyway, and every
        // writer numbers its rows from it, so a seq is still never used twice.
        // (A C probe of the spool's schema: 1.2-2.9 us less a row, 10-20%.)
        // The table itself loses AUTOINCREMENT in `rebuildOutbox`, once it is
        // small: copying a million queued rows would hold up a start for 15 s
        // and take twice their space on disk.
        """
        ALTER TABLE totals ADD COLUMN last_seq INTEGER NOT NULL DEFAULT 0; -- the last seq's number (SpoolPriority.seq)
        UPDATE totals SET last_seq = max(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0),
                                         COALESCE((SELECT max(seq) FROM outbox), 0));
        UPDATE outbox SET seq = seq + 4611686018427387904 WHERE priority = 1;
        DROP INDEX outbox_order;
        """,
        // v8: an append writes the outbox's table alone. Every writer keeps
        // `received_at` in seq order within each priority (`ReceivedAtFloor`:
        // a call stamped before the last row of its priority, by a clock set
        // back or by the other event loop, is stored at that row's time, and
        // its id seen then), so the first row of each priority is its oldest
        // and expiry reads each priority from its start, by seq. The
        // `received_at` index is dropped, and the rows already queued are put
        // in that order the same way (a row behind a later one takes that
        // one's time, its id's `seen_at` too): about 2 s with a million
        // queued. Measured in the relay, 200,000 calls, 3 alternating pairs,
        // means: the spool writer's CPU 8.7 -> 8.0 us a call in batches, 8.3
        // -> 7.6 on the line protocol; 5% fewer bytes written.
        """
        DROP INDEX IF EXISTS outbox_received_at;
        UPDATE message_ids SET seen_at = f.r
        FROM (SELECT message_id, received_at, max(received_at) OVER (ORDER BY seq) AS r FROM outbox WHERE seq < 4611686018427387904) AS f
        WHERE f.r > f.received_at AND message_ids.message_id = f.message_id AND message_ids.seen_at < f.r;
        UPDATE message_ids SET seen_at = f.r
        FROM (SELECT message_id, received_at, max(received_at) OVER (ORDER BY seq) AS r FROM outbox WHERE seq >= 4611686018427387904) AS f
        WHERE f.r > f.received_at AND message_ids.message_id = f.message_id AND message_ids.seen_at < f.r;
        UPDATE outbox SET received_at = f.r
        FROM (SELECT seq, max(received_at) OVER (ORDER BY seq) AS r FROM outbox WHERE seq < 4611686018427387904) AS f
        WHERE outbox.seq = f.seq AND f.r > outbox.received_at;
        UPDATE outbox SET received_at = f.r
        FROM (SELECT seq, max(received_at) OVER (ORDER BY seq) AS r FROM outbox WHERE seq >= 4611686018427387904) AS f
        WHERE outbox.seq = f.seq AND f.r > outbox.received_at;
        """,
    ]

    static var currentVersion: Int64 { Int64(migrations.count) }

    /// Makes `db` keep the outbox's and the dedupe ids' counts in `totals`
    /// row by row, as the schema before v4 did for every connection. Every
    /// connection that inserts or deletes rows of either calls it once
    /// opened, except the spool writer, which counts them itself
    /// (`SpoolWriter.flushTotals`).
    static func keepTotals(_ db: SQLiteConnection) throws(SQLiteError) {
        try db.execute("""
            CREATE TEMP TRIGGER IF NOT EXISTS outbox_added AFTER INSERT ON outbox BEGIN
                UPDATE totals SET outbox_count = outbox_count + 1, outbox_bytes = outbox_bytes + NEW.bytes,
                                  last_seq = max(last_seq, NEW.seq & \(SpoolPriority.bulkSeqBase - 1));
            END;
            CREATE TEMP TRIGGER IF NOT EXISTS outbox_removed AFTER DELETE ON outbox BEGIN
                UPDATE totals SET outbox_count = outbox_count - 1, outbox_bytes = outbox_bytes - OLD.bytes;
            END;
            CREATE TEMP TRIGGER IF NOT EXISTS ids_added AFTER INSERT ON message_ids BEGIN
                UPDATE totals SET ids_count = ids_count + 1, ids_bytes = ids_bytes + length(NEW.message_id) + 16;
            END;
            CREATE TEMP TRIGGER IF NOT EXISTS ids_removed AFTER DELETE ON message_ids BEGIN
                UPDATE totals SET ids_count = ids_count - 1, ids_bytes = ids_bytes - length(OLD.message_id) - 16;
            END;
            """)
    }

    /// The statements that copy the outbox into a table defined as `ddl`
    /// (the file's own definition, AUTOINCREMENT left out) and put it in
    /// its place: the same columns whatever migrations the file went
    /// through, so `SELECT *` fits.
    static func rebuildOutboxSQL(fromDefinition ddl: String) -> String? {
        // (SQLite keeps the text as written, its leading CREATE TABLE in capitals.)
        guard let name = ddl.firstRange(of: "CREATE TABLE outbox"),
              let keyword = ddl.firstRange(of: " AUTOINCREMENT") else { return nil }
        var lean = ddl
        lean.removeSubrange(keyword)
        lean.replaceSubrange(name, with: "CREATE TABLE outbox_v7")
        return lean + """
            ;
            INSERT INTO outbox_v7 SELECT * FROM outbox ORDER BY seq;
            DROP TABLE outbox;
            ALTER TABLE outbox_v7 RENAME TO outbox;
            """
    }

    /// Drops the outbox's AUTOINCREMENT (an UPDATE of `sqlite_sequence` at
    /// every commit, which v7 no longer needs) by copying the table, when
    /// it holds at most `maxRows` rows (a new spool: none); a larger one
    /// waits for a later start. True when the table has no AUTOINCREMENT
    /// left. At the current version only. Throws only what SQLite reported
    /// (nothing changed then): the spool works either way.
    @discardableResult
    static func rebuildOutbox(_ db: SQLiteConnection, ifAtMost maxRows: Int64) throws(SQLiteError) -> Bool {
        do throws(SQLiteError) {
            try db.execute("BEGIN IMMEDIATE")
            let sql = try db.prepare("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'outbox'")
            let text = try sql.step() ? sql.string(0) ?? "" : ""
            sql.reset()  // (no statement may be under way when the table is dropped)
            let copy = rebuildOutboxSQL(fromDefinition: text)
            var rebuild = false
            if copy != nil { rebuild = (try db.scalarInt("SELECT outbox_count FROM totals") ?? 0) <= maxRows }
            if rebuild, let copy { try db.execute(copy) }
            try db.execute("COMMIT")
            return rebuild || copy == nil
        } catch {
            try? db.execute("ROLLBACK")
            throw error
        }
    }

    /// The most outbox rows `rebuildOutbox` copies when a spool opens (in
    /// about a tenth of a second).
    static let rebuildOutboxMaxRows: Int64 = 10_000

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
