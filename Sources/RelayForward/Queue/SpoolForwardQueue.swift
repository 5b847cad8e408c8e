// SpoolForwardQueue: the production ForwardQueue, over the SQLite Spool.
//
// A thin adapter on the spool's public forward-side API and nothing else:
// leases come from a SpoolReader on its own read connection, outcomes go
// through the spool's single writer. No expiry here: the spool moves
// messages older than max_age to dead letters by itself.
//
// Not thread-safe (SpoolReader is not): one owner, the forwarder's loop.

import RelaySpool

/// The spool as a ForwardQueue.
public final class SpoolForwardQueue: ForwardQueue {
    private let spool: Spool
    private let reader: SpoolReader

    /// Opens a reader on the spool; throws when the spool cannot be read.
    public init(spool: Spool) throws(SpoolError) {
        self.spool = spool
        self.reader = try spool.makeReader()
    }

    public func leaseBatch(nowMillis: Int64, maxCount: Int, maxBytes: Int) throws -> [SpoolMessage] {
        try reader.leaseBatch(nowMillis: nowMillis, maxCount: maxCount, maxBytes: maxBytes)
    }

    public func release(_ messages: [SpoolMessage]) {
        reader.release(messages)
    }

    public func acknowledge(_ messages: [SpoolMessage], nowMillis: Int64) async throws {
        try await spool.acknowledge(messages, atMillis: nowMillis)
    }

    public func scheduleRetry(_ messages: [SpoolMessage], error: String, nextAttemptAtMillis: Int64, nowMillis: Int64) async throws {
        try await spool.scheduleRetry(messages, error: error, nextAttemptAtMillis: nextAttemptAtMillis, nowMillis: nowMillis)
    }

    public func hold(writeKey: String, untilMillis: Int64) {
        reader.hold(writeKey: writeKey, untilMillis: untilMillis)
    }

    public var moreToRead: Bool { reader.moreToRead }

    /// The spool's in-memory count (exact as of its last commit).
    public var queuedMessages: Int64? { spool.stats.depth }

    public func deadLetter(_ messages: [SpoolMessage], reason: DeadLetterReason, nowMillis: Int64) async throws {
        try await spool.deadLetter(messages, reason: reason, nowMillis: nowMillis)
    }
}
