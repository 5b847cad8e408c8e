/// Which queue a message waits in: live calls go before a historical import.
public enum SpoolPriority: Int64, Sendable {
    case live = 0
    case bulk = 1

    /// The outbox seqs of this priority (schema v7): live rows from 1,
    /// historical imports from 2^62, both numbered by one counter
    /// (`totals.last_seq`), so FIFO order within a priority is seq order
    /// and the forwarder reads live rows first with no index but the table's.
    var seqs: Range<Int64> {
        switch self {
        case .live: return 1..<Self.bulkSeqBase
        case .bulk: return Self.bulkSeqBase..<Int64.max
        }
    }

    /// The seq of this priority numbered `number` by the counter.
    func seq(_ number: Int64) -> Int64 { self == .bulk ? Self.bulkSeqBase + number : number }

    /// The counter's number of `seq` (whatever its priority).
    static func number(ofSeq seq: Int64) -> Int64 { seq >= bulkSeqBase ? seq - bulkSeqBase : seq }

    /// The priority whose seqs hold `seq`.
    static func of(seq: Int64) -> SpoolPriority { seq >= bulkSeqBase ? .bulk : .live }

    /// Where historical imports' seqs start.
    static let bulkSeqBase: Int64 = 1 << 62
}

/// A message to store.
public struct SpoolAppend: Sendable, Hashable {
    public var messageID: String
    /// The write key the app sent, or "" to use the relay's configured key.
    public var writeKey: String
    public var priority: SpoolPriority
    /// Relay receive time, unix milliseconds.
    public var receivedAtMillis: Int64
    /// Canonical JSON of the message.
    public var payload: [UInt8]

    public init(messageID: String, writeKey: String = "", priority: SpoolPriority = .live, receivedAtMillis: Int64, payload: [UInt8]) {
        self.messageID = messageID
        self.writeKey = writeKey
        self.priority = priority
        self.receivedAtMillis = receivedAtMillis
        self.payload = payload
    }
}

/// What became of one appended message.
public enum AppendOutcome: Sendable, Hashable {
    /// Newly committed.
    case stored
    /// Its message_id is already queued or was sent within the dedupe window:
    /// acknowledged, not stored twice.
    case duplicate
}

/// A message leased to the forwarder.
public struct SpoolMessage: Sendable, Hashable {
    public let seq: Int64
    public let messageID: String
    public let writeKey: String
    public let receivedAtMillis: Int64
    public let attempts: Int
    public let payload: [UInt8]

    public init(seq: Int64, messageID: String, writeKey: String, receivedAtMillis: Int64, attempts: Int, payload: [UInt8]) {
        self.seq = seq
        self.messageID = messageID
        self.writeKey = writeKey
        self.receivedAtMillis = receivedAtMillis
        self.attempts = attempts
        self.payload = payload
    }
}

/// The spool right now: exact counts kept in memory by the writer (mirrored
/// from the `totals` row, exact in every transaction: see `Schema`), so
/// reading them never touches the disk.
public struct SpoolStats: Sendable, Hashable, Codable {
    /// Messages queued in the outbox.
    public var depth: Int64 = 0
    /// Payload bytes queued in the outbox.
    public var bytes: Int64 = 0
    /// `received_at` of the oldest queued message.
    public var oldestReceivedAtMillis: Int64?
    public var deadLetters: Int64 = 0
    public var deadLetterBytes: Int64 = 0
    /// Message ids remembered for the dedupe window, and what they take on disk.
    public var dedupeIDs: Int64 = 0
    public var dedupeBytes: Int64 = 0
    /// Samples of refused calls kept (bounded).
    public var rejected: Int64 = 0

    // Since the spool was opened:
    /// Transactions the writer committed.
    public var commits: Int64 = 0
    /// Messages deleted to make room under `on_full = drop_oldest`.
    public var dropped: Int64 = 0
    /// Messages moved to dead letters for waiting longer than `max_age`.
    public var expired: Int64 = 0
    /// Dedupe ids forgotten before the end of their window to make room.
    public var dedupeEvicted: Int64 = 0

    /// What counts against `max_bytes`: the outbox, dead letters and dedupe ids.
    public var totalBytes: Int64 { bytes + deadLetterBytes + dedupeBytes }

    public init(depth: Int64 = 0, bytes: Int64 = 0, oldestReceivedAtMillis: Int64? = nil, deadLetters: Int64 = 0, rejected: Int64 = 0) {
        self.depth = depth
        self.bytes = bytes
        self.oldestReceivedAtMillis = oldestReceivedAtMillis
        self.deadLetters = deadLetters
        self.rejected = rejected
    }

    enum CodingKeys: String, CodingKey {
        case depth, bytes, rejected, commits, dropped, expired
        case oldestReceivedAtMillis = "oldest_received_at_ms"
        case deadLetters = "dead_letters"
        case deadLetterBytes = "dead_letter_bytes"
        case dedupeIDs = "dedupe_ids"
        case dedupeBytes = "dedupe_bytes"
        case dedupeEvicted = "dedupe_evicted"
    }
}

/// Why messages go to dead letters.
public struct DeadLetterReason: Sendable, Hashable {
    public var reason: String
    /// The upstream's HTTP status, when it answered.
    public var status: Int?

    public init(reason: String, status: Int? = nil) {
        self.reason = reason
        self.status = status
    }
}

/// Where append completions run. After a commit the writer hands each
/// executor all of that commit's completions in one call (one hop per event
/// loop per commit, not one per call), and runs none of them on its own
/// thread; without an executor a completion runs on the writer thread.
public protocol CompletionExecutor: AnyObject, Sendable {
    /// Runs `jobs` in order, on the executor's own thread.
    func execute(_ jobs: [@Sendable () -> Void])
}
