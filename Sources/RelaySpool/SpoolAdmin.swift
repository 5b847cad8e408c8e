// SpoolAdmin: the operator's view of a spool file (`spool stats`,
// `dead-letters list|replay|purge`, `rejected list`).
//
// Works on the file directly, with the daemon running or stopped: its own
// connection, short transactions, SQLite's locking (busy_timeout) against
// the daemon's writer. A replayed dead letter goes back to the outbox as a
// new, never-attempted message with its original message_id, so the
// upstream still dedupes it; the running forwarder picks it up on its next
// read.

import CSQLite
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A message the upstream refused, or that expired.
public struct DeadLetter: Sendable, Hashable {
    public let id: Int64
    public let messageID: String
    public let reason: String
    /// The upstream's HTTP status, when it answered.
    public let status: Int?
    public let attempts: Int
    public let receivedAtMillis: Int64
    public let deadAtMillis: Int64
    /// The canonical JSON of the message.
    public let payload: String
}

/// A sample of a call the relay refused. (Not Codable: `errors` is stored as
/// JSON text, and the command line prints it as a real array.)
public struct RejectedCall: Sendable, Hashable {
    public let id: Int64
    public let receivedAtMillis: Int64
    /// JSON array of "path: message".
    public let errors: String
    /// The start of what the app sent.
    public let sample: String
}

/// Operator access to a spool file.
public final class SpoolAdmin {
    private let db: SQLiteConnection
    /// The spool file, for messages.
    public let path: String

    /// Opens an existing spool (it must have been created by the relay).
    /// Errors name the path and never suggest a write: most commands only read.
    public init(path: String) throws(SpoolError) {
        self.path = path
        guard access(path, F_OK) == 0 else { throw SpoolError.notFound(path: path) }
        guard access(path, R_OK) == 0 else { throw SpoolError.permissionDenied(path: path) }
        let version: Int64?
        do {
            db = try SQLiteConnection(path: path, readOnly: false, create: false)
            try db.execute("PRAGMA busy_timeout = 5000")
            SpoolLock.leaveCheckpointsToDaemon(db, spoolPath: path)
            version = try db.scalarInt("PRAGMA user_version")
        } catch {
            throw Self.readFailed(error, path: path)
        }
        guard let version, version > 0 else {
            throw SpoolError.notASpool(path: path, reason: "an SQLite database without the relay's tables")
        }
        if version > Schema.currentVersion {
            throw SpoolError.newerSchema(path: path, found: version, supported: Schema.currentVersion)
        }
        // Only the daemon migrates (it owns the file): an older daemon may still
        // be writing it, and it would not keep the new schema's counts.
        if version < Schema.currentVersion {
            throw SpoolError.olderSchema(path: path, found: version, supported: Schema.currentVersion)
        }
    }

    public func stats() throws(SpoolError) -> SpoolStats {
        do { return try SpoolStats.read(from: db) } catch { throw readFailed(error) }
    }

    /// The queued messages of one write key (`spool stats --by-key`).
    public struct KeyBacklog: Sendable, Equatable {
        /// The key the app sent; empty: the relay's own.
        public var writeKey: String
        public var messages: Int64
        public var bytes: Int64
        public var oldestReceivedAtMillis: Int64
    }

    /// The outbox by write key, the largest first. Reads every queued row
    /// (an operator's question, never asked by the daemon).
    public func backlogByWriteKey() throws(SpoolError) -> [KeyBacklog] {
        do {
            let st = try db.prepare(
                "SELECT write_key, count(*), sum(bytes), min(received_at) FROM outbox GROUP BY write_key ORDER BY count(*) DESC, write_key")
            var out: [KeyBacklog] = []
            while try st.step() {
                out.append(KeyBacklog(writeKey: st.string(0) ?? "", messages: st.int64(1), bytes: st.int64(2), oldestReceivedAtMillis: st.int64(3)))
            }
            return out
        } catch {
            throw readFailed(error)
        }
    }

    /// A failed read, naming the file.
    private func readFailed(_ error: SQLiteError) -> SpoolError { Self.readFailed(error, path: path) }

    private static func readFailed(_ error: SQLiteError, path: String) -> SpoolError {
        if error.primaryCode == SQLITE_NOTADB { return .notASpool(path: path, reason: "not an SQLite database") }
        return .cannotRead(path: path, reason: "\(error.message) (SQLite error \(error.code))")
    }

    /// Dead letters, newest first.
    public func deadLetters(limit: Int) throws(SpoolError) -> [DeadLetter] {
        do {
            let st = try db.prepare("""
                SELECT id, message_id, reason, status, attempts, received_at, dead_at, payload
                FROM dead_letters ORDER BY id DESC LIMIT ?1
                """)
            try st.bind(1, Int64(limit))
            var out: [DeadLetter] = []
            while try st.step() {
                out.append(DeadLetter(
                    id: st.int64(0), messageID: st.string(1) ?? "", reason: st.string(2) ?? "",
                    status: st.isNull(3) ? nil : Int(st.int64(3)), attempts: Int(st.int64(4)),
                    receivedAtMillis: st.int64(5), deadAtMillis: st.int64(6),
                    payload: String(decoding: st.bytes(7), as: UTF8.self)))
            }
            return out
        } catch {
            throw readFailed(error)
        }
    }

    /// What a replay did.
    public struct ReplayResult: Sendable, Hashable {
        /// Moved back to the outbox, to be sent again.
        public var replayed = 0
        /// Removed from dead letters without a new row: the relay holds the same
        /// message_id again (queued, delivered within the dedupe window, or
        /// replayed in the same run).
        public var alreadyQueued = 0
        /// Ids asked for that are not dead letters.
        public var notFound: [Int64] = []
    }

    /// Rows one operator transaction touches: the daemon's writer waits for
    /// each (busy_timeout), so a slice must stay far below that wait.
    static let sliceRows = 1_000

    /// Moves dead letters back to the outbox (all of them when `ids` is nil),
    /// each with a fresh age (`nowMillis`), in transactions of at most
    /// `sliceRows` rows so that the running daemon's commits never wait long.
    /// One whose message_id the relay holds again (queued, or delivered within
    /// `dedupeWindowMillis`) is not queued twice.
    public func replayDeadLetters(ids: [Int64]?, nowMillis: Int64 = Spool.wallClockMillis(),
                                  dedupeWindowMillis: Int64 = 24 * 3600 * 1000) throws(SpoolError) -> ReplayResult {
        var result = ReplayResult()
        do {
            var chunks: [[Int64]] = []
            if let ids {
                let wanted = Array(Set(ids)).sorted()
                let found = try existingDeadLetterIDs(wanted)
                result.notFound = wanted.filter { !found.contains($0) }
                let present = wanted.filter { found.contains($0) }
                chunks = stride(from: 0, to: present.count, by: Self.sliceRows).map { Array(present[$0..<min($0 + Self.sliceRows, present.count)]) }
            }
            try Schema.keepTotals(db)  // replay adds outbox rows and dedupe ids: their totals are ours to keep
            let next = try db.prepare("SELECT id FROM dead_letters WHERE id > ?1 ORDER BY id LIMIT ?2")
            let claim = try db.prepare(SpoolSQL.claimID)
            let insert = try db.prepare(SpoolSQL.insertOutbox)
            var after: Int64 = -1
            var index = 0
            while true {
                let chunk: [Int64]
                if ids != nil {
                    guard index < chunks.count else { break }
                    chunk = chunks[index]
                    index += 1
                } else {
                    try next.bind(1, after)
                    try next.bind(2, Int64(Self.sliceRows))
                    var found: [Int64] = []
                    while try next.step() { found.append(next.int64(0)) }
                    next.reset()
                    guard let last = found.last else { break }
                    after = last
                    chunk = found
                }
                let list = chunk.map(String.init).joined(separator: ",")
                try SpoolLock.operatorTransaction(db, spoolPath: path) { _ in
                    // Each goes back like a new call: it claims its id, unless the relay
                    // already holds that id (queued, or delivered within the window).
                    let holdFrom = try SpoolSQL.holdFrom(db, nowMillis: nowMillis, windowMillis: dedupeWindowMillis)
                    var floor = try ReceivedAtFloor.read(db)
                    let rows = try db.prepare("SELECT message_id, write_key, priority, payload FROM dead_letters WHERE id IN (\(list)) ORDER BY id")
                    while try rows.step() {
                        let messageID = rows.string(0) ?? ""
                        let receivedAt = floor.stamp(nowMillis, SpoolPriority(rawValue: rows.int64(2)) ?? .live)
                        try claim.bind(1, messageID)
                        try claim.bind(2, receivedAt)
                        try claim.bind(3, holdFrom)
                        try claim.run()
                        guard db.changes == 1 else { result.alreadyQueued += 1; continue }
                        let payload = rows.bytes(3)
                        try insert.bind(1, messageID)
                        try insert.bind(2, rows.string(1) ?? "")
                        try insert.bind(3, rows.int64(2))
                        try insert.bind(4, receivedAt)
                        try insert.bind(5, bytes: payload)
                        try insert.bind(6, Int64(payload.count))
                        try insert.run()
                        result.replayed += 1
                    }
                    try db.execute("DELETE FROM dead_letters WHERE id IN (\(list))")
                }
            }
            return result
        } catch {
            if db.inTransaction { try? db.execute("ROLLBACK") }
            throw SpoolError.wrapping(error, path: path)
        }
    }

    private func existingDeadLetterIDs(_ ids: [Int64]) throws(SQLiteError) -> Set<Int64> {
        var found: Set<Int64> = []
        for start in stride(from: 0, to: ids.count, by: Self.sliceRows) {
            let list = ids[start..<min(start + Self.sliceRows, ids.count)].map(String.init).joined(separator: ",")
            let st = try db.prepare("SELECT id FROM dead_letters WHERE id IN (\(list))")
            while try st.step() { found.insert(st.int64(0)) }
        }
        return found
    }

    /// Deletes dead letters that died before `cutoffMillis` (all when nil),
    /// in transactions of at most `sliceRows` rows; returns how many.
    public func purgeDeadLetters(deadBeforeMillis cutoffMillis: Int64?) throws(SpoolError) -> Int {
        do {
            let st = try db.prepare("""
                DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters WHERE dead_at < ?1 ORDER BY id LIMIT ?2)
                """)
            var purged = 0
            while true {
                let n = try SpoolLock.operatorTransaction(db, spoolPath: path) { _ in
                    try st.bind(1, cutoffMillis ?? .max)
                    try st.bind(2, Int64(Self.sliceRows))
                    try st.run()
                    return db.changes
                }
                purged += n
                if n < Self.sliceRows { return purged }
            }
        } catch {
            throw SpoolError.wrapping(error, path: path)
        }
    }

    /// Samples of refused calls, newest first.
    public func rejected(limit: Int) throws(SpoolError) -> [RejectedCall] {
        do {
            let st = try db.prepare("SELECT id, received_at, errors, sample FROM rejected ORDER BY id DESC LIMIT ?1")
            try st.bind(1, Int64(limit))
            var out: [RejectedCall] = []
            while try st.step() {
                out.append(RejectedCall(id: st.int64(0), receivedAtMillis: st.int64(1), errors: st.string(2) ?? "[]",
                                        sample: String(decoding: st.bytes(3), as: UTF8.self)))
            }
            return out
        } catch {
            throw readFailed(error)
        }
    }
}
