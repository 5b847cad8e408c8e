// IngestPipeline: what happens to a call between the socket and the spool,
// whatever protocol carried it.
//
// Owns: the mapping from a request (route, body, write key) to an answer:
// JSON parsing, the message rules, the write-key policy, the durable append,
// and the status codes of DESIGN §2.
// Invariants:
// - `200` only after the spool reported the commit.
// - Every problem is reported (`400`), size problems are `413`, a spool that
//   refuses writes is `503` with Retry-After (a full one: until the
//   forwarder's next attempt, which may free room), a refused key is `401`.
// - A batch stores every valid message and lists each invalid one by index;
//   it is `400` only when none was valid.
// - At most `maxPendingBytes` of payload wait for the spool's commit at once,
//   across all connections; a call past it is refused with `503` at once
//   (each connection already stops reading past its own few calls in
//   flight; this bounds them all together when the disk stalls).
// - At most `maxPendingBytes` of HTTP request bodies are being received at
//   once on each listener, counted as the bytes arrive (`reserveReceiving`):
//   many clients each sending all but the end of a large body cannot grow
//   memory past it, and the TCP port's clients cannot use the socket's share.
// - Calls sent with an app's own write key that the upstream refuses now
//   (`refusedUpstream`) are stored only while the spool (every app's calls,
//   dedupe ids and dead letters) is less than half full; past that they are
//   `503` (counted as `key_refused`, logged on their own once a minute), so
//   that one app's revoked key cannot fill the spool every app shares.
// - Refusals for want of storage are logged when they start, once a minute
//   while they last, and when calls are stored again (RefusalLog), never
//   once per call.
// - Never blocks: completion runs at once (refusals) or after the commit, on
//   the caller's executor (its event loop) when it gave one.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
import Metrics
import RelayMessage
import RelaySpool
import Synchronization

/// What kind of request a body is.
public enum IngestRoute: Sendable, Hashable {
    /// One call; the type the endpoint implies, or nil where the call names its own.
    case single(CallType?)
    /// `{"batch":[...]}`; `priority` is `.bulk` for `/v1/import`.
    case batch(priority: SpoolPriority)
}

/// Validates, normalizes and stores calls.
public final class IngestPipeline: Sendable {
    public let options: IngestOptions
    private let store: any MessageStore
    private let normalizer: MessageNormalizer
    private let logger: Logger
    private let now: @Sendable () -> Date
    private let makeMessageID: @Sendable () -> String
    /// The fingerprint of an app's own write key the upstream refuses now; nil when it does not.
    private let refusedUpstream: @Sendable (String) -> String?
    /// Seconds a full spool tells apps to wait (the forwarder's next
    /// attempt); nil: `options.retryAfterSeconds`.
    private let fullSpoolRetryAfter: @Sendable () -> Int?
    /// Payload bytes handed to the store and not yet committed.
    private let pendingBytes = Atomic<Int>(0)
    /// Bytes of request bodies received and not yet complete (HTTP), on the TCP port and on the socket.
    private let receivingTCP = Atomic<Int>(0)
    private let receivingUnix = Atomic<Int>(0)
    /// Refusals for want of storage, told once a minute (RefusalLog).
    private let refusals = Mutex(RefusalLog())
    /// True while `refusals` has a reason: the stored path looks at it only then.
    private let refusing = Atomic<Bool>(false)
    /// Refusals of calls sent with a key the upstream refuses, told once a
    /// minute apart from the storage refusals (other apps' calls are stored
    /// meanwhile, which does not end them; a quiet spell does).
    private let keyRefusals = Mutex(RefusalLog(quietEndsEpisode: true))

    private let stored = Counter(label: "plainflow_ingest_messages_total", dimensions: [("result", "stored")])
    private let duplicates = Counter(label: "plainflow_ingest_messages_total", dimensions: [("result", "duplicate")])
    private let invalid = Counter(label: "plainflow_ingest_messages_total", dimensions: [("result", "invalid")])
    private let unavailable = Counter(label: "plainflow_ingest_messages_total", dimensions: [("result", "unavailable")])
    private let keyRefused = Counter(label: "plainflow_ingest_messages_total", dimensions: [("result", "key_refused")])
    private let unauthorized = Counter(label: "plainflow_ingest_requests_unauthorized_total")
    /// From a request's body in hand to its answer after the commit (stored or duplicate).
    private let ackDuration = Metrics.Timer(label: "plainflow_ingest_ack_duration_seconds")

    /// - Parameter refusedUpstream: the fingerprint (for the log) of an
    ///   app's own write key the upstream refuses now, nil when it does not
    ///   (the forwarder knows; calls with such a key are stored only while
    ///   the spool is less than half full).
    /// - Parameter fullSpoolRetryAfter: seconds until the forwarder may next
    ///   free room (its next attempt while the upstream fails or forwarding is
    ///   paused; nil while it delivers: `options.retryAfterSeconds`), for the
    ///   `Retry-After` of a full spool.
    public init(options: IngestOptions, store: any MessageStore, logger: Logger = Logger(label: "plainflow-relay.ingest"),
                now: @escaping @Sendable () -> Date = { Date() },
                makeMessageID: @escaping @Sendable () -> String = { UUID().uuidString.lowercased() },
                refusedUpstream: @escaping @Sendable (String) -> String? = { _ in nil },
                fullSpoolRetryAfter: @escaping @Sendable () -> Int? = { nil }) {
        self.options = options
        self.store = store
        self.refusedUpstream = refusedUpstream
        self.fullSpoolRetryAfter = fullSpoolRetryAfter
        self.normalizer = MessageNormalizer(limits: options.limits)
        self.logger = logger
        self.now = now
        self.makeMessageID = makeMessageID
    }

    /// Handles one request body; `completion` gets the answer: at once for a
    /// refusal, else after the commit on `executor` (or the spool's thread).
    public func handle(_ route: IngestRoute, body: [UInt8], writeKey: String?, on executor: (any CompletionExecutor)? = nil,
                       completion: @escaping @Sendable (IngestReply) -> Void) {
        let key = requestKey(writeKey, calls: 1)
        if case .refuse(let reply)? = key {
            completion(reply)
            return
        }
        let receivedAt = now()
        switch route {
        case .single(let type):
            switch prepareSingle(body, type: type, key: key, receivedAt: receivedAt) {
            case .refused(let reply): completion(reply)
            case .ready(let record):
                let id = record.messageID  // the completion keeps the id, not the payload
                commit([record], executor: executor, failed: completion) { outcomes in
                    completion(.stored(messageID: id, duplicate: outcomes.first == .duplicate))
                }
            }
        case .batch(let priority):
            switch parse(body, receivedAt: receivedAt) {
            case .refused(let reply): completion(reply)
            case .parsed(let value, let duplicateKeys):
                batch(consume value, priority: priority, duplicateKeys: duplicateKeys, raw: body, key: key, receivedAt: receivedAt, executor: executor, completion: completion)
            }
        }
    }

    private enum Parsed { case parsed(JSONValue, duplicateKeys: [DuplicateKey]), refused(IngestReply) }

    /// The calls of a batch body as the app sent them (`batch` parsed again:
    /// it parsed once already, so this does not fail).
    private static func sentCalls(of raw: [UInt8], maxDepth: Int) -> [JSONValue] {
        var duplicates: [DuplicateKey] = []
        guard let value = try? JSONValue.parse(raw, maxDepth: maxDepth, duplicateKeys: &duplicates),
              case .array(let calls)? = value.objectValue?["batch"]
        else {
            assertionFailure("a batch body that parsed once did not parse again")
            return []
        }
        return calls
    }

    /// The body parsed, or its `400` (recorded as refused).
    private func parse(_ body: [UInt8], receivedAt: Date) -> Parsed {
        var duplicateKeys: [DuplicateKey] = []  // a call repeating a key is refused (as a batch member, alone)
        do {
            let value = try JSONValue.parse(body, maxDepth: options.limits.maxDepth, duplicateKeys: &duplicateKeys)
            return .parsed(value, duplicateKeys: duplicateKeys)
        } catch {
            reject([error.description], sample: body, at: receivedAt)
            return .refused(.failure(400, [error.description]))
        }
    }

    /// Single calls that arrived together (the lines of one read on a
    /// line-protocol connection), each answered as if sent alone but stored
    /// in one append: `completion` gets `(index, reply)` pairs, once at once
    /// for the calls refused and once after the commit for the others.
    public func handleSingles(_ bodies: [[UInt8]], writeKey: String?, on executor: (any CompletionExecutor)? = nil,
                              completion: @escaping @Sendable ([(index: Int, reply: IngestReply)]) -> Void) {
        let key = requestKey(writeKey, calls: bodies.count)
        if case .refuse(let reply)? = key {
            completion(bodies.indices.map { ($0, reply) })
            return
        }
        let receivedAt = now()
        var refused: [(index: Int, reply: IngestReply)] = []
        var records: [SpoolAppend] = []
        var stored: [(index: Int, id: String)] = []  // the completion keeps the ids, not the payloads
        records.reserveCapacity(bodies.count)
        stored.reserveCapacity(bodies.count)
        for (index, body) in bodies.enumerated() {
            switch prepareSingle(body, type: nil, key: key, receivedAt: receivedAt) {
            case .refused(let reply): refused.append((index, reply))
            case .ready(let record):
                records.append(record)
                stored.append((index, record.messageID))
            }
        }
        if !refused.isEmpty { completion(refused) }
        guard !records.isEmpty else { return }
        commit(records, requests: records.count, executor: executor, failed: { [stored] reply in completion(stored.map { ($0.index, reply) }) }) { [stored] outcomes in
            completion(zip(stored, outcomes).map { ($0.index, .stored(messageID: $0.id, duplicate: $1 == .duplicate)) })
        }
    }

    // MARK: - Write keys

    private enum KeyDecision { case store(String), refuse(IngestReply) }

    /// The decision for all of a request's calls, from the key it `sent`
    /// (Basic auth); nil when the body's `writeKey` decides instead (each
    /// call's, or a batch's): a request that sent none, to a relay that needs
    /// one. Segment's HTTP API takes the key in the body too, and the line
    /// protocol has no other place for it.
    private func requestKey(_ sent: String?, calls: Int) -> KeyDecision? {
        if sent == nil, options.acceptedWriteKeys != nil || !options.relayHasWriteKey { return nil }
        return resolveWriteKey(sent, calls: calls)
    }

    /// The key to store with the calls, or the refusal (counted for each of the `calls`).
    private func resolveWriteKey(_ sent: String?, calls: Int) -> KeyDecision {
        let decision = keyDecision(sent)
        if case .refuse = decision { unauthorized.increment(by: Int64(calls)) }
        return decision
    }

    /// The refusal for `calls` sent with `key`, an app's own key the
    /// upstream refuses, once the spool is half full (the other half stays
    /// for the apps whose keys work); nil otherwise.
    private func refusedKeyFillsHalf(_ key: String, calls: Int) -> IngestReply? {
        guard !key.isEmpty, let fingerprint = refusedUpstream(key), let space = store.space, space.held >= space.limit / 2 else { return nil }
        keyRefused.increment(by: Int64(calls))
        let now = Self.millis(self.now())
        let line = keyRefusals.withLock { log in
            log.refused(calls, reason: "they were sent with an app's write key that the upstream refuses (key_sha256 \(fingerprint)), and the spool is at least half full: the other half is kept for the apps whose keys work; that app's calls already stored wait and are tried again", nowMillis: now)
        }
        if let line { logger.warning("\(line.message)", metadata: line.metadata.mapValues { .string($0) }) }
        return .failure(503, ["the upstream refused this write key when the relay last tried it (it tries again every 5 minutes); the relay has stored as many calls with it as it can keep for an app whose key does not work: fix the write key in this app, then send these again (calls already stored keep the old key and are sent with it once the upstream takes it)"],
                        retryAfter: Self.refusedKeyRetryAfterSeconds, code: "key_refused")
    }

    /// Seconds an app is told to wait when its key is refused and the spool
    /// is half full: fixing a key takes a person, not a second.
    static let refusedKeyRetryAfterSeconds = 60

    private func keyDecision(_ sent: String?) -> KeyDecision {
        if let accepted = options.acceptedWriteKeys {
            guard let sent, accepted.contains(sent) else {
                return .refuse(.failure(401, [sent == nil ? "a write key is required: as HTTP Basic auth user name, or as writeKey in the body (in the call; in a batch, beside \"batch\")" : "the write key is not accepted by this relay"]))
            }
        }
        if options.relayHasWriteKey { return .store("") }
        guard let sent, !sent.isEmpty else {
            return .refuse(.failure(401, ["this relay has no write_key configured: send your write key as HTTP Basic auth user name, or as writeKey in the body (in the call; in a batch, beside \"batch\")"]))
        }
        return .store(sent)
    }

    // MARK: - One call

    private enum Prepared { case ready(SpoolAppend), refused(IngestReply) }

    /// One call parsed and normalized into what the spool stores, or its
    /// refusal; `key` nil: the call's own `writeKey` decides.
    private func prepareSingle(_ body: [UInt8], type: CallType?, key: KeyDecision?, receivedAt: Date) -> Prepared {
        let value: JSONValue, duplicateKeys: [DuplicateKey]
        switch parse(body, receivedAt: receivedAt) {
        case .refused(let reply): return .refused(reply)
        case .parsed(let v, let d): (value, duplicateKeys) = (v, d)
        }
        let context = NormalizeContext(receivedAt: receivedAt, makeMessageID: makeMessageID)
        switch normalizer.normalize(consume value, endpointType: type, context: context, duplicateKeys: duplicateKeys) {
        case .failure(let rejection):
            let errors = rejection.errors.map(\.description)
            reject(errors, sample: body, at: receivedAt)
            return .refused(.failure(rejection.kind == .tooLarge ? 413 : 400, errors))
        case .success(let message):
            switch key ?? resolveWriteKey(message.writeKey, calls: 1) {
            case .refuse(let reply): return .refused(reply)
            case .store(let writeKey):
                if let reply = refusedKeyFillsHalf(writeKey, calls: 1) { return .refused(reply) }
                return .ready(SpoolAppend(messageID: message.messageID, writeKey: writeKey, priority: .live,
                                          receivedAtMillis: Self.millis(receivedAt), payload: message.encoded))
            }
        }
    }

    // MARK: - A batch

    /// `value` is consumed, and each call is moved out of it in turn, so
    /// that the rules change each call's tree in place instead of copying it.
    /// `key` nil: the batch's own `writeKey` (beside `batch`) decides; its calls' are taken out and not read.
    private func batch(_ value: consuming JSONValue, priority: SpoolPriority, duplicateKeys: [DuplicateKey], raw: [UInt8], key: KeyDecision?,
                       receivedAt: Date, executor: (any CompletionExecutor)?, completion: @escaping @Sendable (IngestReply) -> Void) {
        // One chain of bindings, each taking what it binds, so that `calls` is the only reference to the array.
        guard case .object(var envelope) = consume value, let at = envelope.index(forKey: "batch"),
              case .array(var calls) = envelope.takeValue(at: at) else {
            let error = "batch: required: an array of calls, as {\"batch\": [...]}"
            reject([error], sample: raw, at: receivedAt)
            completion(.failure(400, [error]))
            return
        }
        if calls.count > options.maxBatchMessages {
            completion(.failure(413, ["batch: has \(calls.count) calls; the limit is \(options.maxBatchMessages) a request"]))
            return
        }
        // A key repeated inside calls[i] refuses that call only; anywhere else, the request.
        var envelopeErrors = duplicateKeys.filter { $0.callIndex(inArray: "batch") == nil }.map { $0.fieldError().description }
        func object(_ key: String) -> JSONObject? {
            guard let v = envelope[key], v != .null else { return nil }
            if let o = v.objectValue { return o }
            envelopeErrors.append("\(key): expected an object, got \(v.kindDescription)")
            return nil
        }
        let context = NormalizeContext(receivedAt: receivedAt, makeMessageID: makeMessageID,
                                       batchContext: object("context"), batchIntegrations: object("integrations"))
        if !envelopeErrors.isEmpty {
            reject(envelopeErrors, sample: raw, at: receivedAt)
            completion(.failure(400, envelopeErrors))
            return
        }
        let writeKey: String
        switch key ?? resolveWriteKey((envelope["writeKey"] ?? envelope["write_key"])?.stringValue.flatMap { $0.isEmpty ? nil : $0 }, calls: 1) {
        case .store(let k): writeKey = k
        case .refuse(let reply):
            completion(reply)
            return
        }

        var records: [SpoolAppend] = []
        var ids: [String] = []
        var rejected: [JSONValue] = []
        var allErrors: [String] = []
        records.reserveCapacity(calls.count)
        // The calls as the app sent them, for the samples of refused ones: the
        // rules change each call in place, so the body is parsed again, once,
        // at the first refusal.
        var sent: [JSONValue]?
        let count = calls.count
        for index in 0..<count {
            let ownDuplicates = duplicateKeys.isEmpty ? [] : duplicateKeys.compactMap { $0.relative(toCall: index, inArray: "batch") }
            var call = JSONValue.null
            swap(&call, &calls[index])
            switch normalizer.normalize(consume call, endpointType: nil, context: context, duplicateKeys: ownDuplicates) {
            case .success(let m):
                records.append(SpoolAppend(messageID: m.messageID, writeKey: writeKey, priority: priority,
                                           receivedAtMillis: Self.millis(receivedAt), payload: m.encoded))
                ids.append(m.messageID)
            case .failure(let rejection):
                let errors = rejection.errors.map(\.description)
                rejected.append(.object(["errors": .array(errors.map { .string($0) }), "index": .int(Int64(index))]))
                allErrors += errors.map { "batch[\(index)]" + ($0.hasPrefix(":") ? $0 : ".\($0)") }
                if sent == nil { sent = Self.sentCalls(of: raw, maxDepth: options.limits.maxDepth) }
                reject(errors, sample: sent.flatMap { $0.indices.contains(index) ? $0[index].encoded() : nil } ?? [], at: receivedAt)
            }
        }
        guard !records.isEmpty else {
            completion(.failure(400, count == 0 ? ["batch: is empty"] : allErrors, extra: ["rejected": .array(rejected)]))
            return
        }
        if let reply = refusedKeyFillsHalf(writeKey, calls: records.count) {
            completion(reply)
            return
        }
        commit(records, executor: executor, failed: completion) { [ids, rejected] outcomes in
            let dup = outcomes.filter { $0 == .duplicate }.count
            completion(IngestReply(status: 200, body: JSONValue.object([
                "duplicates": .int(Int64(dup)),
                "message_ids": .array(ids.map { .string($0) }),
                "ok": .bool(true),
                "rejected": .array(rejected),
                "stored": .int(Int64(outcomes.count - dup)),
            ]).encoded()))
        }
    }

    // MARK: - The durable append

    /// Hands `records` to the store within the pending budget: `stored`
    /// gets their outcomes after the commit, `failed` the one answer for all
    /// of them when the budget or the spool refuses (503, or 500 for a spool
    /// that cannot store at all); counts each outcome and times the
    /// acknowledgement of each of the `requests` they came in.
    private func commit(_ records: [SpoolAppend], requests: Int = 1, executor: (any CompletionExecutor)?,
                        failed: @escaping @Sendable (IngestReply) -> Void,
                        stored answer: @escaping @Sendable ([AppendOutcome]) -> Void) {
        let bytes = records.reduce(0) { $0 + $1.payload.count }
        let count = records.count  // the completion keeps the count, not the payloads
        guard reservePending(bytes) else {
            failed(busy(count: count))
            return
        }
        let started = ContinuousClock.now
        store.append(records, on: executor) { [self] result in
            pendingBytes.subtract(bytes, ordering: .relaxed)
            switch result {
            case .success(let outcomes):
                recordAck(since: started, requests: requests)
                if refusing.load(ordering: .relaxed) { noteStored() }
                let dup = outcomes.filter { $0 == .duplicate }.count
                if outcomes.count > dup { stored.increment(by: Int64(outcomes.count - dup)) }
                if dup > 0 { duplicates.increment(by: Int64(dup)) }
                answer(outcomes)
            case .failure(let error):
                failed(spoolFailure(error, count: count))
            }
        }
    }

    /// Takes `bytes` of the pending budget; false (nothing taken) when that
    /// would pass `maxPendingBytes`, unless nothing else is pending.
    private func reservePending(_ bytes: Int) -> Bool { Self.reserve(bytes, in: pendingBytes, limit: options.maxPendingBytes) }

    /// Adds `bytes` to `counter` unless that passes `limit` (a lone reservation always passes); false (nothing added) when it would.
    private static func reserve(_ bytes: Int, in counter: borrowing Atomic<Int>, limit: Int) -> Bool {
        let now = counter.add(bytes, ordering: .relaxed).newValue
        guard now > limit, now != bytes else { return true }
        counter.subtract(bytes, ordering: .relaxed)
        return false
    }

    /// Counts `bytes` more of a request body being received on the socket
    /// (`unix`) or the TCP port; false (nothing counted) when that would pass
    /// `maxPendingBytes` for that listener.
    public func reserveReceiving(_ bytes: Int, unix: Bool) -> Bool {
        unix ? Self.reserve(bytes, in: receivingUnix, limit: options.maxPendingBytes)
             : Self.reserve(bytes, in: receivingTCP, limit: options.maxPendingBytes)
    }

    /// Returns what `reserveReceiving` counted for a body now complete or dropped.
    public func releaseReceiving(_ bytes: Int, unix: Bool) {
        guard bytes > 0 else { return }
        if unix { receivingUnix.subtract(bytes, ordering: .relaxed) } else { receivingTCP.subtract(bytes, ordering: .relaxed) }
    }

    /// The answer to a request whose body would pass the receiving budget.
    public func receivingBusy() -> IngestReply {
        unavailable.increment()
        noteRefused(1, reason: "more than \(pendingLimit) of request bodies are being received at once")
        return .failure(503, ["the relay is busy: more than \(pendingLimit) of requests are being received at once; retry in a second"], retryAfter: 1)
    }

    /// `maxPendingBytes` for people.
    private var pendingLimit: String {
        options.maxPendingBytes >= 1 << 20 ? "\(options.maxPendingBytes >> 20) MiB" : "\(options.maxPendingBytes) bytes"
    }

    private func busy(count: Int) -> IngestReply {
        unavailable.increment(by: Int64(count))
        let limit = pendingLimit
        noteRefused(count, reason: "more than \(limit) of calls are waiting for the disk to commit them (a slow or stalled disk)")
        return .failure(503, ["the relay is busy: more than \(limit) of calls are waiting for the disk; retry in a second"], retryAfter: 1)
    }

    private func noteRefused(_ count: Int, reason: String) {
        let now = Self.millis(self.now())
        let line = refusals.withLock { log in
            defer { refusing.store(true, ordering: .relaxed) }
            return log.refused(count, reason: reason, nowMillis: now)
        }
        if let line { logger.warning("\(line.message)", metadata: line.metadata.mapValues { .string($0) }) }
    }

    private func noteStored() {
        let now = Self.millis(self.now())
        let line = refusals.withLock { log in
            defer { refusing.store(log.reason != nil, ordering: .relaxed) }
            return log.stored(nowMillis: now)
        }
        if let line { logger.notice("\(line.message)", metadata: line.metadata.mapValues { .string($0) }) }
    }

    // MARK: - Helpers

    private func recordAck(since started: ContinuousClock.Instant, requests: Int) {
        let d = started.duration(to: .now).components
        let nanoseconds = d.seconds * 1_000_000_000 + d.attoseconds / 1_000_000_000
        for _ in 0..<requests { ackDuration.recordNanoseconds(nanoseconds) }
    }

    private func spoolFailure(_ error: SpoolError, count: Int) -> IngestReply {
        unavailable.increment(by: Int64(count))
        noteRefused(count, reason: "the spool cannot store them: \(error)")
        if case .full = error, let seconds = fullSpoolRetryAfter() {
            return .failure(503, [error.description], retryAfter: seconds)
        }
        if error.isTransient {
            return .failure(503, [error.description], retryAfter: options.retryAfterSeconds)
        }
        return .failure(500, [error.description])
    }

    private func reject(_ errors: [String], sample: [UInt8], at: Date) {
        invalid.increment()
        logger.debug("call refused", metadata: ["errors": "\(errors)"])
        let json = JSONValue.array(errors.map { .string($0) }).encoded()
        store.recordRejected(errorsJSON: String(decoding: json, as: UTF8.self), sample: Self.withoutWriteKeys(sample), atMillis: Self.millis(at))
    }

    /// `bytes` with the string value of every `"writeKey"` or `"write_key"`
    /// member replaced by `"(removed)"`: a refused call's sample is kept and
    /// shown to operators, and a key in it is a credential. Works on bytes,
    /// since a refused body need not parse.
    static func withoutWriteKeys(_ bytes: [UInt8]) -> [UInt8] {
        let names: [[UInt8]] = [Array(#""writeKey""#.utf8), Array(#""write_key""#.utf8)]
        guard names.contains(where: { name in bytes.indices.contains { bytes[$0...].starts(with: name) } }) else { return bytes }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0
        func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D }
        while i < bytes.count {
            guard let name = names.first(where: { bytes[i...].starts(with: $0) }) else {
                out.append(bytes[i])
                i += 1
                continue
            }
            var j = i + name.count
            while j < bytes.count, isSpace(bytes[j]) { j += 1 }
            guard j < bytes.count, bytes[j] == UInt8(ascii: ":") else { out += bytes[i..<j]; i = j; continue }
            j += 1
            while j < bytes.count, isSpace(bytes[j]) { j += 1 }
            guard j < bytes.count, bytes[j] == UInt8(ascii: "\"") else { out += bytes[i..<j]; i = j; continue }
            var end = j + 1  // the closing quote (or the end of a cut sample)
            while end < bytes.count, bytes[end] != UInt8(ascii: "\"") { end += bytes[end] == UInt8(ascii: "\\") ? 2 : 1 }
            out += bytes[i...j]
            out += Array("(removed)\"".utf8)
            i = min(end + 1, bytes.count)
        }
        return out
    }

    static func millis(_ d: Date) -> Int64 { Int64((d.timeIntervalSince1970 * 1000).rounded()) }
}
