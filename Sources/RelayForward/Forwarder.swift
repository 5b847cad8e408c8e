// Forwarder: drains the spool to the upstream (DESIGN §5).
//
// Owns: the order and pace of upstream requests, and what happens to a batch
// after each answer. It reaches the spool only through SpoolReader (lease)
// and the Spool's outcome calls (acknowledge, scheduleRetry, deadLetter).
//
// Invariants:
// - Oldest first, live before bulk; one write key per batch; at most
//   `maxBatchCount` messages and `maxBatchBytes` of request body.
// - A batch goes when it is full or when its oldest message has waited
//   `flushInterval`; never faster than `maxRequestsPerSecond`.
// - Rows are leased until their outcome is committed; a crash in between
//   leaves them in the outbox, to be sent again (the upstream dedupes on
//   message_id).
// - While the upstream fails, requests go one at a time, spaced by the
//   backoff (or its Retry-After): a sick upstream is probed, not hammered.
// - On 401/403 forwarding pauses; nothing is dropped. `resume()` (SIGHUP)
//   or the slow credential retry starts it again.
// - Graceful shutdown lets the in-flight request end, records its outcome,
//   and returns.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import CompressNIO
import Logging
import NIOCore
import RelaySpool
import ServiceLifecycle
import Synchronization

/// How the forwarder sends.
public struct ForwarderOptions: Sendable {
    /// Base URL: batches go to `{upstream}/v1/batch`.
    public var upstream: String
    /// The relay's write key; nil to use each message's own (sent by the app).
    public var writeKey: String?
    public var maxBatchCount: Int
    public var maxBatchBytes: Int
    public var flushIntervalMillis: Int64
    public var maxRequestsPerSecond: Double
    /// Messages older than this (by `received_at`) go to dead letters.
    public var maxAgeMillis: Int64
    /// How long forwarding stays paused after 401/403 before it tries again.
    public var credentialRetryMillis: Int64
    public var backoff: BackoffPolicy
    public var transport: TransportOptions
    /// Send request bodies gzip-compressed (`Content-Encoding: gzip`).
    public var gzip: Bool
    /// Most requests in flight at once (each on its own connection). Read
    /// at start; a reload does not change it.
    public var maxInFlight: Int

    public init(
        upstream: String = "https://pipe.plainflow.net",
        writeKey: String? = nil,
        maxBatchCount: Int = 100,
        maxBatchBytes: Int = 500 * 1024,
        flushIntervalMillis: Int64 = 200,
        maxRequestsPerSecond: Double = 100,
        maxAgeMillis: Int64 = 7 * 24 * 3600 * 1000,
        credentialRetryMillis: Int64 = 5 * 60 * 1000,
        backoff: BackoffPolicy = BackoffPolicy(),
        transport: TransportOptions = TransportOptions(),
        gzip: Bool = false,
        maxInFlight: Int = 2
    ) {
        self.gzip = gzip
        self.maxInFlight = maxInFlight
        self.upstream = upstream
        self.writeKey = writeKey
        self.maxBatchCount = maxBatchCount
        self.maxBatchBytes = maxBatchBytes
        self.flushIntervalMillis = flushIntervalMillis
        self.maxRequestsPerSecond = maxRequestsPerSecond
        self.maxAgeMillis = maxAgeMillis
        self.credentialRetryMillis = credentialRetryMillis
        self.backoff = backoff
        self.transport = transport
    }

    /// The batch endpoint.
    public var batchURL: String {
        (upstream.hasSuffix("/") ? String(upstream.dropLast()) : upstream) + "/v1/batch"
    }
}

/// What the forwarder is doing, for `/v1/status` and the logs.
public struct UpstreamStatus: Sendable, Hashable, Codable {
    public enum State: String, Sendable, Codable {
        /// Sending normally (or nothing to send).
        case ok
        /// The last attempt failed; backing off.
        case retrying
        /// The upstream refused the credentials (401/403); paused.
        case pausedCredentials = "paused_credentials"
    }

    public var state: State = .ok
    public var consecutiveFailures = 0
    public var lastError: String?
    public var lastSuccessAtMillis: Int64?
    public var nextAttemptAtMillis: Int64?
    public var requests: Int64 = 0
    public var delivered: Int64 = 0
    public var deadLettered: Int64 = 0
    public var expired: Int64 = 0
}

/// The forwarding service.
public final class Forwarder: Service, Sendable {
    private let spool: Spool
    private let optionsBox: Mutex<ForwarderOptions>
    /// One easy handle (one reused connection) per request in flight.
    private let transports: [CurlTransport]
    private let logger: Logger
    private let nowMillis: @Sendable () -> Int64
    private let statusBox = Mutex(UpstreamStatus())
    private let resumeRequested = Atomic<Bool>(false)

    public init(spool: Spool, options: ForwarderOptions, logger: Logger = Logger(label: "plainflow-relay.forward"),
                nowMillis: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1000) }) {
        self.spool = spool
        self.optionsBox = Mutex(options)
        self.transports = (0..<max(1, options.maxInFlight)).map { _ in CurlTransport(options: options.transport) }
        self.logger = logger
        self.nowMillis = nowMillis
    }

    /// A snapshot of the upstream state.
    public var status: UpstreamStatus { statusBox.withLock { $0 } }

    /// Ends a credential pause now (config reload, SIGHUP).
    public func resume() { resumeRequested.store(true, ordering: .relaxed) }

    /// The settings in force.
    public var options: ForwarderOptions { optionsBox.withLock { $0 } }

    /// New settings (SIGHUP): the upstream, write key, batching, pace,
    /// backoff, timeouts and gzip apply from the next batch on; a credential
    /// pause ends so the new key is tried at once.
    public func reload(_ options: ForwarderOptions) {
        optionsBox.withLock { $0 = options }
        for t in transports { t.update(options: options.transport) }
        resume()
    }

    public func run() async throws {
        _ = try spool.makeReader()  // fail fast on an unreadable spool
        do {
            try await cancelWhenGracefulShutdown {
                var loop = Loop(forwarder: self, reader: try self.spool.makeReader())
                try await loop.run()
            }
        } catch is CancellationError {
            // graceful shutdown: the in-flight batch has ended
        }
        logger.info("forwarder stopped")
    }

    // MARK: - The loop

    /// The forwarder's mutable state; lives in `run()`'s task only.
    private struct Loop {
        let forwarder: Forwarder
        let reader: SpoolReader
        var breaker: CircuitBreaker
        var lastRequestAtMillis: Int64 = 0
        var pausedUntilMillis: Int64?

        init(forwarder: Forwarder, reader: SpoolReader) {
            self.forwarder = forwarder
            self.reader = reader
            self.breaker = CircuitBreaker(policy: forwarder.options.backoff)
        }

        var options: ForwarderOptions { forwarder.options }
        var logger: Logger { forwarder.logger }
        func now() -> Int64 { forwarder.nowMillis() }

        mutating func run() async throws {
            while !Task.isCancelled {
                if breaker.policy != options.backoff { breaker = CircuitBreaker(policy: options.backoff) }  // reloaded
                var t = now()

                if let until = pausedUntilMillis {
                    if forwarder.resumeRequested.exchange(false, ordering: .relaxed) || t >= until {
                        pausedUntilMillis = nil
                        logger.notice("forwarding resumed after a credentials pause; trying the upstream again")
                    } else {
                        try await sleep(millis: min(until - t, 1000))
                        continue
                    }
                }
                if let reopens = breaker.reopensAtMillis, t < reopens {
                    try await sleep(millis: reopens - t)
                    continue
                }

                let batch: [SpoolMessage]
                do {
                    batch = try lease(now: t)
                } catch {
                    logger.error("could not read the spool; retrying in a second", metadata: ["error": "\(error)"])
                    try await sleep(millis: 1000)
                    continue
                }
                if batch.isEmpty {
                    try await sleep(millis: options.flushIntervalMillis)
                    continue
                }
                // Not full yet and young: give it until its oldest message's flush deadline.
                if let wait = waitBeforeSending(batch, now: t) {
                    reader.release(batch)
                    try await sleep(millis: wait)
                    continue
                }
                t = now()
                guard breaker.acquire(nowMillis: t) else {
                    reader.release(batch)
                    try await sleep(millis: 10)
                    continue
                }
                // More ready batches go at the same time, up to maxInFlight,
                // while the breaker is closed (half-open lets one probe only).
                var batches = [batch]
                while batches.count < forwarder.transports.count {
                    guard let next = try? lease(now: t), !next.isEmpty else { break }
                    guard waitBeforeSending(next, now: t) == nil, breaker.acquire(nowMillis: t) else {
                        reader.release(next)
                        break
                    }
                    batches.append(next)
                }
                await deliverConcurrently(batches)
            }
        }

        /// nil when the batch should go now (full, or its oldest message has
        /// waited flush_interval, or it is a retry); else milliseconds to wait.
        func waitBeforeSending(_ batch: [SpoolMessage], now t: Int64) -> Int64? {
            let oldest = batch.map(\.receivedAtMillis).min() ?? t
            let full = batch.count >= options.maxBatchCount
                || batch.reduce(BatchEncoder.envelopeBytes) { $0 + $1.payload.count + 1 } * 10 >= options.maxBatchBytes * 9
            if full || oldest + options.flushIntervalMillis <= t || batch.contains(where: { $0.attempts > 0 }) { return nil }
            return min(oldest + options.flushIntervalMillis - t, options.flushIntervalMillis)
        }

        /// Sends leased batches at once, one per connection, then records
        /// their outcomes one after the other.
        mutating func deliverConcurrently(_ batches: [[SpoolMessage]]) async {
            var requests: [UpstreamRequest] = []
            for batch in batches {
                await pace()
                requests.append(makeRequest(batch))
            }
            let transports = forwarder.transports
            let outcomes = await withTaskGroup(of: (Int, DeliveryOutcome).self) { group in
                for (i, request) in requests.enumerated() {
                    group.addTask { (i, await transports[i].send(request)) }
                }
                var out = [DeliveryOutcome?](repeating: nil, count: requests.count)
                for await (i, outcome) in group { out[i] = outcome }
                return out.map { $0! }
            }
            for (i, batch) in batches.enumerated() {
                await record(batch, outcome: outcomes[i], bodyBytes: requests[i].body.count)
            }
        }

        /// The upstream request for a batch: envelope, sent_at now, key, retry count, gzip.
        func makeRequest(_ batch: [SpoolMessage]) -> UpstreamRequest {
            let attempt = batch.map(\.attempts).max() ?? 0
            let key = options.writeKey ?? (batch[0].writeKey.isEmpty ? nil : batch[0].writeKey)
            var body = BatchEncoder.encode(batch, sentAt: Date())
            var headers = attempt > 0 ? ["X-Retry-Count: \(attempt)"] : []
            if options.gzip, let compressed = Self.gzip(body) {
                body = compressed
                headers.append("Content-Encoding: gzip")
            }
            return UpstreamRequest(url: options.batchURL, body: body, writeKey: key, headers: headers)
        }

        mutating func lease(now t: Int64) throws(SpoolError) -> [SpoolMessage] {
            try reader.leaseBatch(nowMillis: t, maxCount: options.maxBatchCount, maxBytes: options.maxBatchBytes - BatchEncoder.envelopeBytes - options.maxBatchCount)
        }

        func sleep(millis: Int64) async throws {
            try await Task.sleep(for: .milliseconds(max(1, millis)))
        }

        /// Spaces requests to at most `maxRequestsPerSecond`.
        mutating func pace() async {
            guard options.maxRequestsPerSecond > 0 else { return }
            let interval = Int64(1000.0 / options.maxRequestsPerSecond)
            let wait = lastRequestAtMillis + interval - now()
            if wait > 0 { try? await Task.sleep(for: .milliseconds(wait)) }
            lastRequestAtMillis = now()
        }

        /// Sends one leased batch and records its outcome.
        mutating func deliver(_ batch: [SpoolMessage]) async {
            await pace()
            let request = makeRequest(batch)
            let outcome = await forwarder.transports[0].send(request)
            await record(batch, outcome: outcome, bodyBytes: request.body.count)
        }

        /// Acts on one answer: ack, retry later, split, pause or dead-letter;
        /// then ends the batch's lease.
        mutating func record(_ batch: [SpoolMessage], outcome: DeliveryOutcome, bodyBytes: Int) async {
            defer { reader.release(batch) }
            let t = now()
            forwarder.statusBox.withLock { $0.requests += 1 }
            let decision = RetryClassifier.classify(outcome)
            // Any answer but "retry" shows the upstream reachable: close the
            // breaker now, before a spool call can throw (a half-open probe
            // must always be resolved).
            if case .retry = decision {} else { breaker.recordSuccess() }
            let spool = forwarder.spool
            do {
                switch decision {
                case .delivered:
                    try await spool.acknowledge(batch, atMillis: t)
                    forwarder.statusBox.withLock {
                        $0.state = .ok; $0.consecutiveFailures = 0; $0.lastSuccessAtMillis = t
                        $0.nextAttemptAtMillis = nil; $0.delivered += Int64(batch.count)
                    }
                    logger.debug("batch delivered", metadata: ["messages": "\(batch.count)", "bytes": "\(bodyBytes)"])

                case .retry(let retryAfter):
                    let next = breaker.recordFailure(nowMillis: t, retryAfter: retryAfter)
                    let error = Self.describe(outcome)
                    try await spool.scheduleRetry(batch, error: error, nextAttemptAtMillis: next, nowMillis: t)
                    let failures = breaker.consecutiveFailures
                    forwarder.statusBox.withLock {
                        $0.state = .retrying; $0.consecutiveFailures = failures; $0.lastError = error; $0.nextAttemptAtMillis = next
                    }
                    logger.warning("upstream delivery failed; will retry", metadata: [
                        "error": "\(error)", "messages": "\(batch.count)", "retry_in_ms": "\(next - t)", "consecutive_failures": "\(failures)",
                    ])

                case .split:
                    if batch.count == 1 {
                        try await deadLetter(batch, outcome: outcome, now: t)
                    } else {
                        let half = batch.count / 2
                        logger.info("upstream refused a batch's content; splitting it to isolate the refused messages",
                                    metadata: ["messages": "\(batch.count)", "status": "\(Self.status(outcome) ?? 0)"])
                        await deliver(Array(batch[..<half]))
                        if breaker.acquire(nowMillis: now()) && pausedUntilMillis == nil {
                            await deliver(Array(batch[half...]))
                        }
                    }

                case .pauseForCredentials:
                    pausedUntilMillis = t + options.credentialRetryMillis
                    forwarder.resumeRequested.store(false, ordering: .relaxed)  // only a SIGHUP from now on resumes
                    let error = Self.describe(outcome)
                    forwarder.statusBox.withLock {
                        $0.state = .pausedCredentials; $0.lastError = error; $0.nextAttemptAtMillis = t + options.credentialRetryMillis
                    }
                    logger.error("the upstream refused the write key; forwarding is paused and nothing is dropped. Fix write_key and reload (SIGHUP)", metadata: [
                        "error": "\(error)", "retry_in_ms": "\(options.credentialRetryMillis)",
                    ])

                case .deadLetter:
                    try await deadLetter(batch, outcome: outcome, now: t)
                }
            } catch {
                logger.error("could not record a delivery outcome in the spool; the batch stays queued and will be sent again",
                             metadata: ["error": "\(error)"])
            }
        }

        mutating func deadLetter(_ batch: [SpoolMessage], outcome: DeliveryOutcome, now t: Int64) async throws(SpoolError) {
            let reason = DeadLetterReason(reason: Self.describe(outcome), status: Self.status(outcome))
            try await forwarder.spool.deadLetter(batch, reason: reason, nowMillis: t)
            forwarder.statusBox.withLock { $0.deadLettered += Int64(batch.count); $0.lastError = reason.reason }
            logger.error("upstream refused messages; moved to dead letters", metadata: [
                "messages": "\(batch.count)", "reason": "\(reason.reason)", "first_message_id": "\(batch[0].messageID)",
            ])
        }

        /// The body gzip-compressed, or nil (then it goes uncompressed) if zlib fails.
        static func gzip(_ body: [UInt8]) -> [UInt8]? {
            var buffer = ByteBuffer(bytes: body)
            guard let compressed = try? buffer.compress(with: .gzip()) else { return nil }
            return Array(compressed.readableBytesView)
        }

        static func status(_ outcome: DeliveryOutcome) -> Int? {
            if case .response(let status, _, _) = outcome { return status }
            return nil
        }

        static func describe(_ outcome: DeliveryOutcome) -> String {
            switch outcome {
            case .response(let status, _, let body):
                let excerpt = String(body.prefix(300).map { $0.isNewline ? " " : $0 })
                return excerpt.isEmpty ? "HTTP \(status)" : "HTTP \(status): \(excerpt)"
            case .transportFailure(let f):
                return f.description
            }
        }
    }
}
