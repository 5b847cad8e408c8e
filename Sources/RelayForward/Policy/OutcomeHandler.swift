// OutcomeHandler: one answer → one queue action and one status update
// (Fluent Bit's engine, the part after an output says OK / RETRY / ERROR).
//
//   delivered            breaker closes; status ok; the loop acknowledges the
//                        round's delivered batches in one commit (acknowledge(_:))
//   retry                scheduleRetry at the breaker's reopen time; status retrying
//   split (n > 1)        nothing yet: the halves go back to the batcher, still leased
//   split (n = 1)        deadLetter (the upstream refuses this message)
//   pause (credentials / configuration)
//                        the attempt is recorded (rows due at once, attempts + 1);
//                        status paused_*; logged loudly
//   credentials refused for an app's own key (the relay has none)
//                        scheduleRetry after credentialRetryMillis: only that
//                        app's calls wait, the other apps' go on; no pause;
//                        the key is in RefusedAppKeys until a batch sent with
//                        it is delivered
//
// Every case but split ends the batch's lease here, also when the queue
// call throws (the rows are then sent again after a backoff, never at once:
// the upstream dedupes on message_id). Any answer but a retry shows the upstream
// reachable, so the breaker closes before any queue call can fail: a
// half-open probe is always resolved.
//
// A spool that cannot record outcomes (a full or failing disk) backs off on
// a breaker of its own (`spool`, a second CircuitBreaker), which the
// upstream's answers do not reset: a delivered batch whose acknowledgement fails stays leased and only
// its acknowledgement is tried again, later and later; it is not sent again.
// `delivered` counts what the spool recorded as delivered.

import Logging
import RelaySpool

/// Applies RetryClassifier's decision for one batch.
struct OutcomeHandler {
    /// What the loop must do next.
    enum FollowUp: Sendable, Hashable {
        /// Nothing more: the batch is settled and released.
        case settled
        /// The upstream took it: the loop acknowledges it, together with the
        /// round's other delivered batches in one spool commit, then releases it.
        case acknowledge([SpoolMessage])
        /// Send these halves next (still leased).
        case split([SpoolMessage], [SpoolMessage])
        /// The upstream is failing; the breaker is open until then.
        case backOff(untilMillis: Int64)
        /// Forwarding must pause.
        case pause(PauseReason)
        /// The upstream refuses an app's own key: its batches waiting to go
        /// go back to the queue, which holds that key's messages back.
        case hold(writeKey: String)
    }

    let status: StatusBoard
    let logger: Logger
    /// The apps' keys the upstream refuses now (ingest reads them).
    let refusedKeys: RefusedAppKeys
    /// Picks the backoff delay from [0, ceiling] (full jitter).
    let jitter: @Sendable (Int64) -> Int64
    /// When an outage's "still failing" line was last logged: an outage is
    /// logged when it starts (the status enters `retrying`), once a minute
    /// while it lasts (not once per retry), and when delivery recovers.
    private let outageLogged = OutageLog()
    /// Each app's refused key is logged once a minute.
    private let appKeyRefusalLogged = OnceAMinute()

    init(status: StatusBoard, logger: Logger, refusedKeys: RefusedAppKeys = RefusedAppKeys(), jitter: @escaping @Sendable (Int64) -> Int64) {
        self.status = status
        self.logger = logger
        self.refusedKeys = refusedKeys
        self.jitter = jitter
    }

    /// Acts on `outcome` for `batch`.
    func handle(_ batch: [SpoolMessage], outcome: DeliveryOutcome, bodyBytes: Int, queue: any ForwardQueue,
                options: ForwarderOptions, breaker: inout CircuitBreaker, spool: inout CircuitBreaker, nowMillis t: Int64) async -> FollowUp {
        status.update { $0.requests += 1 }
        let decision = RetryClassifier.classify(outcome)
        if case .retry = decision {} else { breaker.recordSuccess() }
        var releases = true
        defer { if releases { queue.release(batch) } }
        do {
            switch decision {
            case .delivered:
                releases = false  // the loop acknowledges, then releases
                if let key = batch.first?.writeKey, !key.isEmpty, let fingerprint = refusedKeys.accepted(key) {
                    logger.notice("the upstream accepted an app's write key it had refused; that app's queued calls go out now, and its new calls are stored again",
                                  metadata: ["key_sha256": "\(fingerprint)", "messages": "\(batch.count)"])
                }
                var before = UpstreamStatus()
                status.update {
                    before = $0
                    $0.enter(.ok, at: t); $0.consecutiveFailures = 0; $0.lastSuccessAtMillis = t
                    $0.nextAttemptAtMillis = nil
                }
                if before.state != .ok {
                    var metadata: Logger.Metadata = [
                        "was": "\(before.state.rawValue)", "last_error": "\(before.lastError ?? "-")", "messages": "\(batch.count)",
                    ]
                    // Failed attempts and the outage's length are a retry's; a pause waits for the operator instead.
                    if before.state == .retrying {
                        metadata["failed_attempts"] = "\(before.consecutiveFailures)"
                        if let since = before.stateSinceMillis { metadata["outage_seconds"] = "\((t - since) / 1000)" }
                    }
                    if let queued = queue.queuedMessages { metadata["queued"] = "\(queued)" }
                    logger.notice("forwarding recovered: the upstream accepted a batch again", metadata: metadata)
                }
                logger.debug("batch delivered", metadata: ["messages": "\(batch.count)", "bytes": "\(bodyBytes)"])
                return .acknowledge(batch)

            case .retry(let retryAfter):
                let next = breaker.recordFailure(nowMillis: t, retryAfter: retryAfter, draw: jitter)
                let error = Self.describe(outcome)
                let failures = breaker.consecutiveFailures
                var before = UpstreamStatus()
                status.update {
                    before = $0
                    $0.enter(.retrying, at: t); $0.consecutiveFailures = failures; $0.lastError = error; $0.lastErrorAtMillis = t; $0.nextAttemptAtMillis = next
                }
                let metadata: Logger.Metadata = [
                    "error": "\(error)", "messages": "\(batch.count)", "retry_in_ms": "\(next - t)", "consecutive_failures": "\(failures)",
                ]
                switch outageLogged.entry(failingSince: before.state == .retrying ? before.stateSinceMillis : nil, atMillis: t) {
                case .began:
                    logger.warning("upstream delivery failed; retrying with backoff, nothing is lost meanwhile", metadata: metadata)
                case .stillFailing(let since):
                    logger.warning("upstream delivery still failing; retrying with backoff (logged once a minute)",
                                   metadata: metadata.merging(["failing_for_seconds": "\((t - since) / 1000)"]) { $1 })
                case .quiet:
                    logger.debug("upstream delivery failed; will retry", metadata: metadata)
                }
                try await queue.scheduleRetry(batch, error: error, nextAttemptAtMillis: next, nowMillis: t)
                spool.recordSuccess()
                return .backOff(untilMillis: next)

            case .split where batch.count > 1:
                releases = false
                let half = batch.count / 2
                logger.info("upstream refused a batch's content; splitting it to isolate the refused messages",
                            metadata: ["messages": "\(batch.count)", "status": "\(Self.status(outcome) ?? 0)"])
                return .split(Array(batch[..<half]), Array(batch[half...]))

            case .split:
                let reason = DeadLetterReason(reason: Self.describe(outcome), status: Self.status(outcome))
                try await queue.deadLetter(batch, reason: reason, nowMillis: t)
                spool.recordSuccess()
                status.update { $0.deadLettered += Int64(batch.count); $0.lastError = reason.reason; $0.lastErrorAtMillis = t }
                logger.error("upstream refused a message; moved to dead letters", metadata: [
                    "reason": "\(reason.reason)", "message_id": "\(batch[0].messageID)",
                ])
                return .settled

            case .pauseForCredentials where options.writeKey == nil && !(batch.first?.writeKey.isEmpty ?? true):
                // The key is the app's own: a pause would stop every other app behind it.
                let next = t + options.credentialRetryMillis
                let error = Self.describe(outcome)
                try await queue.scheduleRetry(batch, error: error, nextAttemptAtMillis: next, nowMillis: t)
                // The rest of that app's calls wait with this batch: one request a round tells
                // whether the key works again, not one for every batch of its backlog.
                queue.hold(writeKey: batch[0].writeKey, untilMillis: next)
                // Known refused until a batch with it goes, or two tries from now (its calls may leave otherwise).
                refusedKeys.refused(batch[0].writeKey, nowMillis: t, lapseMillis: 2 * options.credentialRetryMillis)
                spool.recordSuccess()
                let what = "the upstream refused the write key an app sent with its calls"
                status.update {
                    $0.lastError = "\(what) (\(error)); they wait and are tried again every \(options.credentialRetryMillis / 60_000) min"
                    $0.lastErrorAtMillis = t; $0.appKeyRefusals += 1; $0.appKeyRefusedAtMillis = t
                }
                if appKeyRefusalLogged.due(batch[0].writeKey.hashValue, atMillis: t) {  // (the key itself is never logged)
                    logger.error("\(what); those calls stay queued and one batch of them tries the key again every \(options.credentialRetryMillis / 60_000) min (logged when it is refused, at most once a minute a key); the other apps' calls go on. Fix the key in that app: the message id names one of its calls, and key_sha256 starts the SHA-256 of the key (printf %s KEY | sha256sum)", metadata: [
                        "error": "\(error)", "message_id": "\(batch[0].messageID)", "messages": "\(batch.count)", "retry_in_ms": "\(next - t)",
                        "key_sha256": "\(RefusedAppKeys.fingerprint(batch[0].writeKey))",
                    ])
                }
                return .hold(writeKey: batch[0].writeKey)

            case .pauseForCredentials, .pauseForConfiguration:
                let reason: PauseReason = decision == .pauseForCredentials ? .credentials : .configuration
                pause(reason, outcome: outcome, options: options, nowMillis: t)
                // Due again as soon as the pause ends, as an attempt made: the next one says
                // X-Retry-Count. Best effort: a spool that cannot record it does not undo the pause.
                try? await queue.scheduleRetry(batch, error: Self.describe(outcome), nextAttemptAtMillis: t, nowMillis: t)
                return .pause(reason)
            }
        } catch {
            // The spool cannot record outcomes (a full or failing disk): the
            // rows stay due and are released; the loop waits out the spool's
            // own backoff (doubling while it keeps failing) before it sends
            // anything again, instead of resending as fast as the pace allows.
            let until = spool.recordFailure(nowMillis: t, retryAfter: nil, draw: jitter)
            return logSpoolFailure(error, retryAt: max(until, breaker.reopensAtMillis ?? 0), now: t)
        }
    }

    /// Acknowledges a round's delivered batches in one spool commit and
    /// releases them (`.settled`); if the spool cannot record it, `.backOff`:
    /// the batches stay leased, for the loop to acknowledge them again at
    /// `spool`'s next try (the upstream has them: they are not sent again).
    func acknowledge(_ batches: [[SpoolMessage]], queue: any ForwardQueue, spool: inout CircuitBreaker, nowMillis t: Int64) async -> FollowUp {
        let messages = batches.flatMap { $0 }
        do {
            try await queue.acknowledge(messages, nowMillis: t)
        } catch {
            return logSpoolFailure(error, retryAt: spool.recordFailure(nowMillis: t, retryAfter: nil, draw: jitter), now: t)
        }
        queue.release(messages)
        spool.recordSuccess()
        status.update { $0.delivered += Int64(messages.count) }
        return .settled
    }

    private func logSpoolFailure(_ error: any Error, retryAt until: Int64, now t: Int64) -> FollowUp {
        logger.error("could not record a delivery outcome in the spool; nothing is lost, it is recorded (or sent) again after a pause that grows while the spool keeps failing",
                     metadata: ["error": "\(error)", "retry_in_ms": "\(until - t)"])
        status.update { $0.lastError = "the spool could not record a delivery outcome: \(error)"; $0.lastErrorAtMillis = t; $0.nextAttemptAtMillis = until }
        return .backOff(untilMillis: until)
    }

    private func pause(_ reason: PauseReason, outcome: DeliveryOutcome, options: ForwarderOptions, nowMillis t: Int64) {
        let error = Self.describe(outcome)
        let retry = options.credentialRetryMillis
        status.update {
            $0.enter(reason == .credentials ? .pausedCredentials : .pausedConfiguration, at: t)
            $0.lastError = error; $0.lastErrorAtMillis = t; $0.nextAttemptAtMillis = t + retry
        }
        switch reason {
        case .credentials:
            logger.error("the upstream refused the write key; forwarding is paused and nothing is dropped. Fix write_key and reload (SIGHUP)", metadata: [
                "error": "\(error)", "retry_in_ms": "\(retry)",
            ])
        case .configuration:
            let status = Self.status(outcome).map(String.init) ?? "none"
            let what = Self.status(outcome).map { "the upstream answered HTTP \($0) to POST \(options.batchURL)" } ?? "POST \(options.batchURL) cannot be sent (\(error))"
            logger.critical("\(what): no request can work as configured; forwarding is paused and nothing is dropped. Fix upstream.url (or the proxy, or upstream.ca_file) and reload (SIGHUP)", metadata: [
                "url": "\(options.batchURL)", "status": "\(status)", "error": "\(error)", "retry_in_ms": "\(retry)",
            ])
        }
    }

    /// The HTTP status, when the upstream answered.
    static func status(_ outcome: DeliveryOutcome) -> Int? {
        if case .response(let status, _, _) = outcome { return status }
        return nil
    }

    /// One line for logs, status and dead letters: the status and the start of the body.
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

/// Which line a failed attempt logs: the outage's first (it began now), a
/// "still failing" one a minute, or none. Used by the loop's task only.
final class OutageLog {
    enum Entry { case began, stillFailing(sinceMillis: Int64), quiet }
    private var loggedAtMillis: Int64 = 0
    static let intervalMillis: Int64 = 60_000

    /// - Parameter failingSince: when the outage began (the status's
    ///   `retrying` since), nil when this failure begins it.
    func entry(failingSince: Int64?, atMillis t: Int64) -> Entry {
        guard let since = failingSince else {
            loggedAtMillis = t
            return .began
        }
        guard t - loggedAtMillis >= Self.intervalMillis else { return .quiet }
        loggedAtMillis = t
        return .stillFailing(sinceMillis: since)
    }
}

/// A line logged at most once a minute for each subject. Used by the loop's task only.
final class OnceAMinute {
    private var loggedAtMillis: [Int: Int64] = [:]

    /// True (and noted) when the line about `subject` may be logged at `t`.
    func due(_ subject: Int, atMillis t: Int64) -> Bool {
        if let at = loggedAtMillis[subject], t - at < OutageLog.intervalMillis { return false }
        if loggedAtMillis.count >= 1_000 { loggedAtMillis = loggedAtMillis.filter { t - $0.value < OutageLog.intervalMillis } }
        loggedAtMillis[subject] = t
        return true
    }
}
