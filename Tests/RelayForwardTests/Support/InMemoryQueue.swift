// An in-memory ForwardQueue with the SpoolReader's lease rules (oldest due
// first, one write key per lease, count and byte bounds, leased rows
// skipped), which records every settlement and flags any call on a row that
// is not leased.

import RelayForward
import RelaySpool
import Synchronization

final class InMemoryQueue: ForwardQueue, Sendable {
    struct Row {
        var message: SpoolMessage
        var nextAttemptAtMillis: Int64
    }
    struct State {
        var rows: [Row] = []  // seq order
        var leased: Set<Int64> = []
        var nextSeq: Int64 = 1
        var acknowledged: [String] = []
        var deadLetters: [(id: String, status: Int?)] = []
        var retries: [(ids: [String], nextAttemptAtMillis: Int64, atMillis: Int64)] = []
        var nonEmptyLeases = 0
        /// Every non-empty lease: when, and how many messages.
        var leases: [(atMillis: Int64, count: Int)] = []
        var violations: [String] = []
        /// When each acknowledgement was asked for, and whether it failed.
        var acknowledgeAttempts: [(atMillis: Int64, failed: Bool)] = []
        /// Acknowledgements (and dead letters) before these times fail, as on a full disk.
        var failAcknowledgementsUntilMillis: Int64 = 0
        var failDeadLettersUntilMillis: Int64 = 0
        /// Held write keys, until when.
        var holds: [String: Int64] = [:]
    }
    private let state = Mutex(State())

    /// Adds a message, due from `receivedAtMillis` on; its payload is padded to `bytes`.
    func add(_ id: String, key: String = "key-a", receivedAtMillis: Int64 = 0, bytes: Int = 60) {
        let head = #"{"message_id":"\#(id)","type":"identify","pad":""#
        let pad = String(repeating: "x", count: max(0, bytes - head.utf8.count - 2))
        let payload = Array((head + pad + #""}"#).utf8)
        state.withLock { s in
            s.rows.append(Row(message: SpoolMessage(seq: s.nextSeq, messageID: id, writeKey: key, receivedAtMillis: receivedAtMillis,
                                                    attempts: 0, payload: payload), nextAttemptAtMillis: receivedAtMillis))
            s.nextSeq += 1
        }
    }

    var snapshot: State { state.withLock { $0 } }
    /// Message ids still queued, oldest first.
    var queuedIDs: [String] { state.withLock { $0.rows.map(\.message.messageID) } }
    func writeKey(of id: String) -> String? { state.withLock { s in s.rows.first { $0.message.messageID == id }?.message.writeKey } }

    func leaseBatch(nowMillis: Int64, maxCount: Int, maxBytes: Int) throws -> [SpoolMessage] {
        state.withLock { s in
            s.holds = s.holds.filter { $0.value > nowMillis }  // a hold ends at its time, or at a lease at .max
            var batch: [SpoolMessage] = []
            var size = 0
            for row in s.rows where max(row.nextAttemptAtMillis, s.holds[row.message.writeKey] ?? .min) <= nowMillis
                && !s.leased.contains(row.message.seq) {
                if let first = batch.first, first.writeKey != row.message.writeKey { continue }
                if !batch.isEmpty && size + row.message.payload.count > maxBytes { break }
                size += row.message.payload.count
                batch.append(row.message)
                if batch.count >= maxCount { break }
            }
            for m in batch { s.leased.insert(m.seq) }
            if !batch.isEmpty {
                s.nonEmptyLeases += 1
                s.leases.append((nowMillis, batch.count))
            }
            return batch
        }
    }

    func hold(writeKey: String, untilMillis: Int64) {
        state.withLock { $0.holds[writeKey] = max($0.holds[writeKey] ?? .min, untilMillis) }
    }

    func release(_ messages: [SpoolMessage]) {
        state.withLock { s in
            for m in messages where s.leased.remove(m.seq) == nil { s.violations.append("release of unleased \(m.messageID)") }
        }
    }

    private func settle(_ messages: [SpoolMessage], _ what: String, in s: inout State) {
        for m in messages where !s.leased.contains(m.seq) { s.violations.append("\(what) of unleased \(m.messageID)") }
    }

    /// Makes acknowledgements fail until `millis`, as a full disk does.
    func failAcknowledgements(untilMillis millis: Int64) { state.withLock { $0.failAcknowledgementsUntilMillis = millis } }
    func failDeadLetters(untilMillis millis: Int64) { state.withLock { $0.failDeadLettersUntilMillis = millis } }

    struct DiskFull: Error {}

    func acknowledge(_ messages: [SpoolMessage], nowMillis: Int64) async throws {
        try state.withLock { s in
            let fails = nowMillis < s.failAcknowledgementsUntilMillis
            s.acknowledgeAttempts.append((nowMillis, fails))
            if fails { throw DiskFull() }
            settle(messages, "acknowledge", in: &s)
            let seqs = Set(messages.map(\.seq))
            s.rows.removeAll { seqs.contains($0.message.seq) }
            s.acknowledged += messages.map(\.messageID)
        }
    }

    func scheduleRetry(_ messages: [SpoolMessage], error: String, nextAttemptAtMillis: Int64, nowMillis: Int64) async throws {
        state.withLock { s in
            settle(messages, "retry", in: &s)
            let seqs = Set(messages.map(\.seq))
            for i in s.rows.indices where seqs.contains(s.rows[i].message.seq) {
                let m = s.rows[i].message
                s.rows[i] = Row(message: SpoolMessage(seq: m.seq, messageID: m.messageID, writeKey: m.writeKey, receivedAtMillis: m.receivedAtMillis,
                                                      attempts: m.attempts + 1, payload: m.payload),
                                nextAttemptAtMillis: nextAttemptAtMillis)
            }
            s.retries.append((messages.map(\.messageID), nextAttemptAtMillis, nowMillis))
        }
    }

    func deadLetter(_ messages: [SpoolMessage], reason: DeadLetterReason, nowMillis: Int64) async throws {
        try state.withLock { s in
            if nowMillis < s.failDeadLettersUntilMillis { throw DiskFull() }
            settle(messages, "dead letter", in: &s)
            let seqs = Set(messages.map(\.seq))
            s.rows.removeAll { seqs.contains($0.message.seq) }
            s.deadLetters += messages.map { ($0.messageID, reason.status) }
        }
    }
}
