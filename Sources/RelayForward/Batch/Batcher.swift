// Batcher: decides what goes upstream and when (DESIGN §5).
//
// Holds the pending batches, each of leased messages with one write key,
// oldest first. The lease is kept while a batch waits for its flush
// deadline: a wait does not give the rows back and read them again; later
// leases top the batch up instead (same key; another key opens its own
// batch).
//
// Invariants:
// - A batch holds at most `maxBatchCount` messages and at most
//   `maxBatchBytes` of request body (envelope + payloads + commas); only a
//   single message larger than that goes alone.
// - A batch is ready when it is full (count reached, 90% of the bytes, or
//   sealed because the next message did not fit), when its oldest message
//   has waited `flush_interval` since `received_at` (or since it was leased,
//   for a `received_at` ahead of the clock: the spool keeps receipt times in
//   order, so after the clock was set back new calls carry the time of the
//   last one before), or when it holds a retry. Ready batches go in the
//   order they were formed.
// - Every message held here is leased; `releaseAll` gives them all back (on
//   shutdown, on a failure that makes the loop back off, on a pause), so
//   the next lease starts again from the oldest due message.
// - At most `maxPending` batches are held; a lease beyond that is released.
//
// Pure but for the ForwardQueue it leases from; time is passed in.

import RelaySpool

/// Pending batches and the rules for when each goes.
struct Batcher {
    /// The batch limits, from ForwarderOptions.
    struct Limits: Sendable, Hashable {
        var maxCount: Int
        var maxBytes: Int
        var flushIntervalMillis: Int64

        init(maxCount: Int, maxBytes: Int, flushIntervalMillis: Int64) {
            self.maxCount = max(1, maxCount)
            self.maxBytes = max(1, maxBytes)
            self.flushIntervalMillis = max(0, flushIntervalMillis)
        }

        init(_ options: ForwarderOptions) {
            self.init(maxCount: options.maxBatchCount, maxBytes: options.maxBatchBytes, flushIntervalMillis: options.flushIntervalMillis)
        }
    }

    /// One batch being formed.
    struct Pending: Sendable {
        private(set) var messages: [SpoolMessage]
        /// Request body bytes before `sent_at`: envelope, payloads, commas.
        private(set) var bodyBytes: Int
        /// Where the flush deadline counts from: the oldest `received_at`,
        /// or the lease's time when that is earlier.
        private(set) var oldestReceivedAtMillis: Int64
        /// Holds a message tried before: goes without waiting.
        private(set) var isRetry: Bool
        /// Takes no more messages.
        var sealed: Bool

        init(_ first: SpoolMessage, sealed: Bool = false, leasedAtMillis: Int64 = .max) {
            messages = [first]
            bodyBytes = BatchEncoder.envelopeBytes + first.payload.count
            oldestReceivedAtMillis = min(first.receivedAtMillis, leasedAtMillis)
            isRetry = first.attempts > 0
            self.sealed = sealed
        }

        var writeKey: String { messages[0].writeKey }

        /// Adds a message, keeping FIFO (seq) order.
        mutating func append(_ m: SpoolMessage, leasedAtMillis: Int64 = .max) {
            if let last = messages.last, last.seq > m.seq {
                messages.insert(m, at: messages.firstIndex { $0.seq > m.seq } ?? messages.endIndex)
            } else {
                messages.append(m)
            }
            bodyBytes += 1 + m.payload.count
            oldestReceivedAtMillis = min(oldestReceivedAtMillis, m.receivedAtMillis, leasedAtMillis)
            isRetry = isRetry || m.attempts > 0
        }
    }

    private(set) var limits: Limits
    /// Most batches held at once.
    let maxPending: Int
    private(set) var pending: [Pending] = []

    init(limits: Limits, maxPending: Int) {
        self.limits = limits
        self.maxPending = max(1, maxPending)
    }

    /// New limits (reload): batches already formed are sealed and go as they are.
    mutating func setLimits(_ new: Limits) {
        guard new != limits else { return }
        limits = new
        for i in pending.indices { pending[i].sealed = true }
    }

    // MARK: Filling

    /// Leases due messages and adds them to the pending batches, until the
    /// queue has no more (a short lease) or no batch has room; at most
    /// `maxBatches` batches are held (fewer than `maxPending` while the
    /// upstream is probed: a probe needs one, and rows read for the others
    /// would only be given back after its failure).
    /// - Parameter dueBy: rows backed off until this time are due too (nil: `nowMillis`).
    /// - Returns: whether it asked the queue (not when every batch held is full).
    @discardableResult
    mutating func topUp(from queue: any ForwardQueue, nowMillis: Int64, dueBy: Int64? = nil, maxBatches: Int? = nil) throws -> Bool {
        let payloadBudget = max(1, limits.maxBytes - BatchEncoder.envelopeBytes)
        let limit = min(max(1, maxBatches ?? maxPending), maxPending)
        var asked = false
        for _ in 0..<limit {
            guard pending.count < limit || pending.contains(where: { !isFull($0) }) else { return asked }
            let lease = try queue.leaseBatch(nowMillis: max(nowMillis, dueBy ?? nowMillis), maxCount: limits.maxCount, maxBytes: payloadBudget)
            asked = true
            if lease.isEmpty { return asked }
            let leftover = add(lease, leasedAtMillis: nowMillis)
            if !leftover.isEmpty {
                queue.release(leftover)
                return asked
            }
            let bytes = lease.reduce(0) { $0 + $1.payload.count }
            if lease.count < limits.maxCount && bytes * 10 < payloadBudget * 9 { return asked }
        }
        return asked
    }

    /// Adds messages leased at `leasedAtMillis` (one write key, oldest first)
    /// to the open batch with their key, opening new batches as those fill;
    /// returns what did not fit under `maxPending`.
    mutating func add(_ messages: [SpoolMessage], leasedAtMillis: Int64) -> [SpoolMessage] {
        for (k, m) in messages.enumerated() {
            if let i = pending.lastIndex(where: { !$0.sealed && $0.writeKey == m.writeKey }) {
                if fits(m, in: pending[i]) {
                    pending[i].append(m, leasedAtMillis: leasedAtMillis)
                    continue
                }
                pending[i].sealed = true
            }
            guard pending.count < maxPending else { return Array(messages[k...]) }
            pending.append(Pending(m, leasedAtMillis: leasedAtMillis))
        }
        return []
    }

    /// Puts batches back at the front, to go next as they are (the halves of a split).
    mutating func requeueFront(_ batches: [[SpoolMessage]]) {
        let sealed: [Pending] = batches.compactMap { batch in
            guard let first = batch.first else { return nil }
            var p = Pending(first, sealed: true)
            for m in batch.dropFirst() { p.append(m) }
            return p
        }
        pending.insert(contentsOf: sealed, at: 0)
    }

    /// Gives every held message back to the queue.
    mutating func releaseAll(to queue: any ForwardQueue) {
        for p in pending { queue.release(p.messages) }
        pending.removeAll()
    }

    /// Gives back the held messages of one write key (the upstream refuses it).
    mutating func release(writeKey: String, to queue: any ForwardQueue) {
        for p in pending where p.writeKey == writeKey { queue.release(p.messages) }
        pending.removeAll { $0.writeKey == writeKey }
    }

    // MARK: Deciding

    private func fits(_ m: SpoolMessage, in p: Pending) -> Bool {
        p.messages.count < limits.maxCount && p.bodyBytes + 1 + m.payload.count <= limits.maxBytes
    }

    /// Full: no point waiting for more.
    func isFull(_ p: Pending) -> Bool {
        p.sealed || p.messages.count >= limits.maxCount || p.bodyBytes * 10 >= limits.maxBytes * 9
    }

    /// Ready to go now.
    func isReady(_ p: Pending, nowMillis: Int64) -> Bool {
        isFull(p) || p.isRetry || p.oldestReceivedAtMillis + limits.flushIntervalMillis <= nowMillis
    }

    /// Whether some batch may go now.
    func hasReady(nowMillis: Int64) -> Bool {
        pending.contains { isReady($0, nowMillis: nowMillis) }
    }

    /// Removes and returns the first batch that may go now.
    mutating func takeReady(nowMillis: Int64) -> [SpoolMessage]? {
        guard let i = pending.firstIndex(where: { isReady($0, nowMillis: nowMillis) }) else { return nil }
        return pending.remove(at: i).messages
    }

    /// How long the loop may sleep before something could change: the
    /// soonest flush deadline, but no longer than a quarter of the flush
    /// interval while batches wait (so one that fills meanwhile goes soon),
    /// or one flush interval when nothing is held.
    func nextWakeMillis(nowMillis: Int64) -> Int64 {
        guard let soonest = pending.map({ $0.oldestReceivedAtMillis + limits.flushIntervalMillis }).min() else {
            return max(1, limits.flushIntervalMillis)
        }
        return max(1, min(soonest - nowMillis, limits.flushIntervalMillis / 4))
    }
}
