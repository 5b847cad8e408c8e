// SpoolSQL: the statements every writer of the outbox shares (the daemon's
// writer, dead-letter replay, historical import), so that a message enters
// the spool the same way whoever adds it.

enum SpoolSQL {
    /// The dedupe check and the claim in one statement: a new id is inserted,
    /// an id last seen before ?3 (held no more) is taken over, one still held
    /// changes nothing (`changes() == 0`: a duplicate). An upsert, not INSERT
    /// OR REPLACE: REPLACE deletes without firing the totals trigger.
    static let claimID = """
        INSERT INTO message_ids (message_id, seen_at) VALUES (?1, ?2)
        ON CONFLICT (message_id) DO UPDATE SET seen_at = excluded.seen_at WHERE message_ids.seen_at < ?3
        """

    /// `claimID` in two steps, for a connection that counts the ids it adds
    /// itself (the spool writer: no triggers on its connection): the insert
    /// (`changes() == 1`: a new id, to count), then, only for an id already
    /// there, the take-over (?1 id, ?2 seen_at, ?3 as in `claimID`).
    static let insertID = "INSERT INTO message_ids (message_id, seen_at) VALUES (?1, ?2) ON CONFLICT (message_id) DO NOTHING"
    static let takeOverID = "UPDATE message_ids SET seen_at = ?2 WHERE message_id = ?1 AND seen_at < ?3"

    /// One message into the outbox, numbered after `totals.last_seq` (for
    /// an operator command's connection, whose `Schema.keepTotals` trigger
    /// moves `last_seq` on): ?1 message_id, ?2 write_key, ?3 priority,
    /// ?4 received_at, ?5 payload, ?6 bytes.
    static let insertOutbox = """
        INSERT INTO outbox (seq, message_id, write_key, priority, received_at, payload, bytes)
        VALUES ((SELECT last_seq + 1 FROM totals) + ?3 * \(SpoolPriority.bulkSeqBase), ?1, ?2, ?3, ?4, ?5, ?6)
        """

    /// `insertID` for `rows` ids at once (?1 id, ?2 seen_at for the first,
    /// ?3, ?4 for the second, ...): `changes() == rows` when every id was new.
    static func insertIDs(rows: Int) -> String {
        "INSERT INTO message_ids (message_id, seen_at) VALUES "
            + (0..<rows).map { "(?\($0 * 2 + 1), ?\($0 * 2 + 2))" }.joined(separator: ", ")
            + " ON CONFLICT (message_id) DO NOTHING"
    }

    /// `rows` messages into the outbox with the seqs given (the spool
    /// writer numbers them itself), seven parameters a row: ?1 message_id,
    /// ?2 write_key, ?3 priority, ?4 received_at, ?5 payload, ?6 bytes,
    /// ?7 seq, then ?8... for the next row. One statement for many rows costs
    /// SQLite a third less than one per row (a C probe of the spool's schema,
    /// 1,000 rows a transaction: 3.6-5.0 us a row against 5.3-8.2).
    static func insertOutbox(rows: Int) -> String {
        "INSERT INTO outbox (message_id, write_key, priority, received_at, payload, bytes, seq) VALUES "
            + (0..<rows).map { r in "(" + (1...7).map { "?\(r * 7 + $0)" }.joined(separator: ", ") + ")" }.joined(separator: ", ")
    }

    /// The oldest queued message's receipt time: the first row of either
    /// priority (`received_at` is in seq order within each; `ReceivedAtFloor`),
    /// two row seeks. A claim never takes over an id seen after it, so a
    /// queued message's id stays held.
    static let oldestQueued = """
        SELECT min(received_at) FROM (
            SELECT * FROM (SELECT received_at FROM outbox WHERE seq < \(SpoolPriority.bulkSeqBase) ORDER BY seq LIMIT 1)
            UNION ALL
            SELECT * FROM (SELECT received_at FROM outbox WHERE seq >= \(SpoolPriority.bulkSeqBase) ORDER BY seq LIMIT 1))
        """

    /// The last row of each priority: its priority, the counter's number of
    /// its seq (`SpoolPriority.number(ofSeq:)`) and its `received_at`; one row
    /// per priority that has rows, two row seeks.
    static let lastRows = """
        SELECT * FROM (SELECT 0, seq, received_at FROM outbox WHERE seq < \(SpoolPriority.bulkSeqBase) ORDER BY seq DESC LIMIT 1)
        UNION ALL
        SELECT * FROM (SELECT 1, seq - \(SpoolPriority.bulkSeqBase), received_at FROM outbox
                       WHERE seq >= \(SpoolPriority.bulkSeqBase) ORDER BY seq DESC LIMIT 1)
        """

    // MARK: How long an id is held

    /// `delivery_lag` buckets deliveries by the hour they happened in.
    static let lagBucketMillis: Int64 = 3_600_000

    /// A message delivered within this time of its receipt records no wait:
    /// every id is held at least this much longer than the window.
    static let deliveryMarginMillis: Int64 = 60_000

    /// The longest wait `delivery_lag` records: a quarter of the window, so
    /// that late deliveries hold the window's ids at most that much longer.
    /// A message that waited longer has its own id's `seen_at` moved to its
    /// delivery instead (a write per such id).
    static func maxRecordedLag(windowMillis: Int64) -> Int64 { windowMillis / 4 }

    /// The longest wait recorded for a delivery in an hour from ?1 on (the
    /// hour a window ending now starts in, counted whole); 0 when none.
    static let deliveryLag = "SELECT COALESCE(max(lag_ms), 0) FROM delivery_lag WHERE hour >= ?1"

    /// The first hour `deliveryLag` reads at `nowMillis`.
    static func firstLagHour(nowMillis: Int64, windowMillis: Int64) -> Int64 {
        (nowMillis - windowMillis) / lagBucketMillis
    }

    /// The `?3` of `claimID` (and the prune's bound) at `nowMillis`: an id
    /// last seen before it is held no more. Its window, stretched by the
    /// margin or the longest recorded wait, has passed since its delivery,
    /// and it was seen before the oldest queued message.
    static func holdFrom(nowMillis: Int64, windowMillis: Int64, deliveryLagMillis: Int64, oldestQueuedMillis: Int64?) -> Int64 {
        min(nowMillis - windowMillis - max(deliveryMarginMillis, deliveryLagMillis), oldestQueuedMillis ?? .max)
    }

    /// `holdFrom` as read on `db` (an operator command's connection).
    static func holdFrom(_ db: SQLiteConnection, nowMillis: Int64, windowMillis: Int64) throws(SQLiteError) -> Int64 {
        let lag = try db.prepare(deliveryLag)
        try lag.bind(1, firstLagHour(nowMillis: nowMillis, windowMillis: windowMillis))
        // (An aggregate always has its row; without one, the longest wait there can be.)
        let recorded = try lag.step() ? lag.int64(0) : maxRecordedLag(windowMillis: windowMillis)
        return holdFrom(nowMillis: nowMillis, windowMillis: windowMillis, deliveryLagMillis: recorded,
                        oldestQueuedMillis: try db.scalarInt(oldestQueued))
    }

    /// Counts the outbox's rows and bytes again from the table (a full scan:
    /// only when a count kept on the way is found wrong).
    static let recountOutbox = """
        UPDATE totals SET outbox_count = (SELECT count(*) FROM outbox),
                          outbox_bytes = (SELECT COALESCE(sum(bytes), 0) FROM outbox)
        """

    /// Bytes the spool holds against max_bytes: outbox, dead letters, dedupe ids.
    static let heldBytes = "SELECT outbox_bytes + dead_bytes + ids_bytes FROM totals"
}

/// Keeps `received_at` in seq order within each priority, as every writer
/// of the outbox stores it (schema v8): a message stamped before the last
/// row of its priority (the wall clock was set back, or the other event loop
/// stamped it a moment earlier and it reached the writer later) is stored,
/// and its id seen, at that row's time. So the first row of a priority is
/// its oldest (`SpoolSQL.oldestQueued`), and expiry reads each priority
/// from its start and stops at the first row too young: a message is never
/// expired before its time, at worst as late as the clock was set back.
struct ReceivedAtFloor {
    /// Per priority (`SpoolPriority.rawValue`): the last row's `received_at`.
    private var last: [Int64] = [.min, .min]

    /// Starts from the last rows `SpoolSQL.lastRows` read (from the
    /// statement's current row on); returns the highest seq number among them.
    mutating func load(lastRows st: SQLiteStatement) throws(SQLiteError) -> Int64 {
        var highest: Int64 = 0
        while try st.step() {
            last[Int(st.int64(0))] = st.int64(2)
            highest = max(highest, st.int64(1))
        }
        return highest
    }

    /// Reads the last rows on `db` (an operator command's connection, in its
    /// write transaction).
    static func read(_ db: SQLiteConnection) throws(SQLiteError) -> ReceivedAtFloor {
        var floor = ReceivedAtFloor()
        _ = try floor.load(lastRows: try db.prepare(SpoolSQL.lastRows))
        return floor
    }

    /// The `received_at` to store for a message of `priority` stamped
    /// `millis`, taken as the priority's last row.
    mutating func stamp(_ millis: Int64, _ priority: SpoolPriority) -> Int64 {
        let p = Int(priority.rawValue)
        last[p] = max(last[p], millis)
        return last[p]
    }
}

extension SQLiteStatement {
    /// Runs `SpoolSQL.insertOutbox` (prepared in this statement) for `m`.
    /// The id, key and payload are bound in place, not copied.
    func insertOutbox(_ m: SpoolAppend) throws(SQLiteError) {
        try insertOutbox(rows: 1, columns: 6) { _ in (m, 0) }
    }

    /// Runs `SpoolSQL.insertOutbox(rows: 1)` (prepared in this statement)
    /// for `m`, numbered `number`.
    func insertOutbox(_ m: SpoolAppend, number: Int64) throws(SQLiteError) {
        try insertOutbox(rows: 1, columns: 7) { _ in (m, m.priority.seq(number)) }
    }

    /// Runs `SpoolSQL.insertOutbox(rows: messages.count)` (prepared in this
    /// statement) for `messages`, numbered from `firstNumber` on (the
    /// counter's numbers: `SpoolPriority.seq`), their ids, keys and payloads
    /// bound in place.
    func insertOutbox(_ messages: ArraySlice<SpoolAppend>, firstNumber: Int64) throws(SQLiteError) {
        try insertOutbox(rows: messages.count, columns: 7) {
            let m = messages[messages.startIndex + $0]
            return (m, m.priority.seq(firstNumber + Int64($0)))
        }
    }

    private func insertOutbox(rows: Int, columns: Int, _ row: (Int) -> (SpoolAppend, seq: Int64)) throws(SQLiteError) {
        // One row's values, then the next rows' inside: every pointer bound
        // stays valid until the statement has run.
        func bindRows(from r: Int) throws(SQLiteError) {
            guard r < rows else { try run(); return }
            let (m, seq) = row(r), first = Int32(r * columns + 1)
            if columns == 7 { try bind(first + 6, seq) }
            try bind(first + 2, m.priority.rawValue)
            try bind(first + 3, m.receivedAtMillis)
            try bind(first + 5, Int64(m.payload.count))
            try withBound(first, text: m.messageID) { () throws(SQLiteError) in
                try withBound(first + 1, text: m.writeKey) { () throws(SQLiteError) in
                    try withBound(first + 4, bytes: m.payload) { () throws(SQLiteError) in try bindRows(from: r + 1) }
                }
            }
        }
        try bindRows(from: 0)
    }

    /// Runs `SpoolSQL.insertIDs(rows: messages.count)` (prepared in this
    /// statement) for the ids of `messages`, seen at their receipt.
    func insertIDs(_ messages: ArraySlice<SpoolAppend>) throws(SQLiteError) {
        func bindRows(from index: Int) throws(SQLiteError) {
            guard index < messages.endIndex else { try run(); return }
            let first = Int32((index - messages.startIndex) * 2 + 1)
            try bind(first + 1, messages[index].receivedAtMillis)
            try withBound(first, text: messages[index].messageID) { () throws(SQLiteError) in try bindRows(from: index + 1) }
        }
        try bindRows(from: messages.startIndex)
    }
}
