// ForwardQueue: the forwarder's whole view of the outbox (DESIGN §1: forward
// reaches the spool only through a narrow reader interface).
//
// Six verbs, as Vector's sink sees its buffer: lease what is due, give a
// lease back, settle a leased batch one of three ways, and hold back the
// messages of a write key the upstream refuses. The forwarder
// never expires, counts or queries; the queue owns ordering (oldest first,
// live before bulk, one write key per lease) and the durable outcome.
//
// Contract for implementations:
// - `leaseBatch` returns only due, unleased messages that share the first
//   one's write key, oldest first, at most `maxCount` and (except a single
//   message larger than it) at most `maxBytes` of payload; it marks them
//   leased. Empty when nothing is due. Messages of a held key are not due
//   until the hold ends (a lease at `nowMillis` .max ends every hold), and
//   neither they nor rows in backoff may keep later due messages from being
//   leased for long.
// - `acknowledge`, `scheduleRetry` and `deadLetter` settle leased messages
//   durably. `release` ends the lease (after the outcome was recorded, or to
//   give the messages back unsent); `acknowledge` and `deadLetter` may end
//   it already, since no lease can read a removed message again, and
//   `release` of a message whose lease ended does nothing.
// - One owner: the forwarder's loop calls it from one task at a time.

import RelaySpool

/// The outbox as the forwarder uses it: lease, release, and settle batches.
public protocol ForwardQueue {
    /// Leases the oldest due messages that share the first one's write key:
    /// at most `maxCount` of them and at most `maxBytes` of payload (a single
    /// larger message comes alone). Empty when nothing is due.
    func leaseBatch(nowMillis: Int64, maxCount: Int, maxBytes: Int) throws -> [SpoolMessage]
    /// Ends the lease on these messages; unsettled ones are leased again later.
    func release(_ messages: [SpoolMessage])
    /// The upstream took these: remove them for good.
    func acknowledge(_ messages: [SpoolMessage], nowMillis: Int64) async throws
    /// Sending failed in a way worth retrying: keep them, due again at `nextAttemptAtMillis`.
    func scheduleRetry(_ messages: [SpoolMessage], error: String, nextAttemptAtMillis: Int64, nowMillis: Int64) async throws
    /// The upstream refuses this write key: its messages are not due until
    /// `untilMillis` (in memory; others' messages go meanwhile). When it
    /// ends, one batch of them is tried before the rest are leased again.
    func hold(writeKey: String, untilMillis: Int64)
    /// The upstream will never take these: move them to dead letters.
    func deadLetter(_ messages: [SpoolMessage], reason: DeadLetterReason, nowMillis: Int64) async throws
    /// How many messages are queued, when the queue knows it without a
    /// query (for the log line that says delivery recovered); nil otherwise.
    var queuedMessages: Int64? { get }
    /// The last lease came back empty only because it stopped at its bound
    /// on messages not due: leasing again at once may find due ones.
    var moreToRead: Bool { get }
}

extension ForwardQueue {
    public var queuedMessages: Int64? { nil }
    public var moreToRead: Bool { false }
}
