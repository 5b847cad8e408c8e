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

    /// One message into the outbox: ?1 message_id, ?2 write_key, ?3 priority,
    /// ?4 received_at, ?5 payload, ?6 bytes.
    static let insertOutbox = """
        INSERT INTO outbox (message_id, write_key, priority, received_at, payload, bytes)
        VALUES (?1, ?2, ?3, ?4, ?5, ?6)
        """

    /// The oldest queued message's receipt time (by index): a claim never
    /// takes over an id seen after it, so a queued message's id stays held.
    static let oldestQueued = "SELECT min(received_at) FROM outbox"

    /// Bytes the spool holds against max_bytes: outbox, dead letters, dedupe ids.
    static let heldBytes = "SELECT outbox_bytes + dead_bytes + ids_bytes FROM totals"
}

extension SQLiteStatement {
    /// Runs `SpoolSQL.insertOutbox` (prepared in this statement) for `m`.
    /// The id, key and payload are bound in place, not copied.
    func insertOutbox(_ m: SpoolAppend) throws(SQLiteError) {
        try bind(3, m.priority.rawValue)
        try bind(4, m.receivedAtMillis)
        try bind(6, Int64(m.payload.count))
        try withBound(1, text: m.messageID) { () throws(SQLiteError) in
            try withBound(2, text: m.writeKey) { () throws(SQLiteError) in
                try withBound(5, bytes: m.payload) { () throws(SQLiteError) in try run() }
            }
        }
    }
}
