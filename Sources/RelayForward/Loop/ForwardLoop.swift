// ForwardLoop: the forwarder's one task, composing the parts.
//
// Each turn: apply reloaded settings → wait out a pause → wait out an open
// breaker → top the pending batches up from the queue → take the ready
// batches the breaker lets go (up to one per transport) → start them, each
// when the pacer allows → record every outcome → act on the follow-ups.
// With nothing ready it sleeps until the batcher's next deadline.
//
// While a round's first request is in flight, the loop commits the last
// round's acknowledgement (all its delivered batches in one spool commit), so
// the commit overlaps the pacer's interval instead of adding to it. Before the
// loop sleeps or stops, it acknowledges at once.
//
// Invariants:
// - All state (batcher, pacer, breaker, pause) lives in this struct, in the
//   run task; the queue is touched from that task only. Child tasks only
//   carry requests to transports.
// - Cancellation (graceful shutdown) starts no new request; a request in
//   flight ends and its outcome is recorded; every lease is released.
// - After a retryable failure or a pause, all held leases are released, so
//   the next request starts again from the oldest due message.
// - A backoff belongs to the upstream that caused it: after a reload to
//   another upstream address, the breaker is new and the rows backed off
//   before that the next read reaches are due at once. An open breaker is waited out a
//   second at a time, so a reload is seen within a second.
// - A delivered batch stays leased until its acknowledgement committed, so
//   it is never leased (sent) again meanwhile. When the spool cannot commit
//   it (a full disk), the loop sends nothing and tries the acknowledgement
//   again after the spool's backoff, which grows while it keeps failing.
// - Every lease is released when `run()` returns (an acknowledgement that
//   still fails then leaves its rows queued, to be sent again).

import Logging
import Metrics
import RelaySpool

/// The forwarding loop: lives in `Forwarder.run()`'s task only.
struct ForwardLoop {
    let queue: any ForwardQueue
    let transports: [any UpstreamTransport]
    let clock: any ForwardClock
    /// The settings in force (a reload changes them between turns).
    let currentOptions: @Sendable () -> ForwarderOptions
    /// True once when `resume()` was called since the last check.
    let takeResumeRequest: @Sendable () -> Bool
    let outcomes: OutcomeHandler
    let logger: Logger

    private(set) var batcher: Batcher
    private(set) var pacer: Pacer
    private(set) var breaker: CircuitBreaker
    private(set) var pause = PauseState()
    /// The spool's failures to record outcomes (a full disk), backed off on
    /// a breaker of their own: only an outcome the spool recorded closes it.
    private(set) var spoolBreaker: CircuitBreaker
    /// Where batches go: another upstream starts a new backoff.
    private var upstreamURL: String
    /// Rows backed off for another upstream are due at the next read.
    private var staleBackoffs = false
    /// The last round's delivered batches, still leased: acknowledged beside
    /// the next round's first request, or at once before a sleep or a stop.
    private var unacknowledged: [[SpoolMessage]] = []
    /// How long each upstream request took, answered or not (a histogram in /metrics).
    private let requestDuration = Metrics.Timer(label: "plainflow_upstream_request_duration_seconds")

    init(queue: any ForwardQueue, transports: [any UpstreamTransport], clock: any ForwardClock,
         currentOptions: @escaping @Sendable () -> ForwarderOptions, takeResumeRequest: @escaping @Sendable () -> Bool,
         outcomes: OutcomeHandler, logger: Logger) {
        precondition(!transports.isEmpty, "at least one transport")
        let options = currentOptions()
        self.queue = queue
        self.transports = transports
        self.clock = clock
        self.currentOptions = currentOptions
        self.takeResumeRequest = takeResumeRequest
        self.outcomes = outcomes
        self.logger = logger
        self.batcher = Batcher(limits: Batcher.Limits(options), maxPending: transports.count * 2)
        self.pacer = Pacer(requestsPerSecond: options.maxRequestsPerSecond)
        self.breaker = CircuitBreaker(policy: options.backoff)
        self.spoolBreaker = CircuitBreaker(policy: options.backoff)
        self.upstreamURL = options.batchURL
        self.writeKey = options.writeKey
    }

    /// Runs until cancelled (or the clock throws); acknowledges what the
    /// upstream took and releases every lease on the way out.
    mutating func run() async throws {
        defer {
            batcher.releaseAll(to: queue)
            for batch in unacknowledged { queue.release(batch) }  // the spool refused their acknowledgement: sent again later
        }
        do {
            try await turns()
        } catch {
            await acknowledgeNow(evenIfSpoolFailing: true)
            throw error
        }
    }

    private mutating func turns() async throws {
        while true {
            try Task.checkCancellation()
            let options = currentOptions()
            apply(options)
            let now = clock.nowMillis()

            let resumeAsked = takeResumeRequest()  // a reload (SIGHUP): try again now
            if resumeAsked { staleBackoffs = true }  // rows in backoff and the held keys' rows are due now
            switch pause.check(nowMillis: now, resumeRequested: resumeAsked) {
            case .running:
                break
            case .resumed(let reason):
                logger.notice("forwarding resumed after a pause; trying the upstream again", metadata: ["paused_for": "\(reason.rawValue)"])
                outcomes.status.update { $0.nextAttemptAtMillis = now }  // (what a full spool tells apps to wait for)
            case .paused(let wait):
                await acknowledgeNow()
                try await clock.sleep(millis: min(wait, 1000))
                continue
            }
            if let retry = spoolBreaker.reopensAtMillis {
                // The spool could not record an outcome: nothing goes until it can.
                if now < retry {
                    try await clock.sleep(millis: retry - now)
                    continue
                }
                if !unacknowledged.isEmpty {
                    await acknowledgeNow()
                    if !unacknowledged.isEmpty { continue }  // failed again: a longer wait
                }
            }
            if let reopens = breaker.reopensAtMillis, now < reopens {
                await acknowledgeNow()
                try await clock.sleep(millis: min(reopens - now, 1000))  // a reload may end it
                continue
            }

            do {
                // A sick upstream gets one probe at a time: read one batch for it, not a full round.
                let asked = try batcher.topUp(from: queue, nowMillis: now, dueBy: staleBackoffs ? .max : nil, maxBatches: breaker.state == .closed ? nil : 1)
                if asked { staleBackoffs = false }  // (a lease at .max is what makes them due)
            } catch {
                logger.error("could not read the spool; retrying in a second", metadata: ["error": "\(error)"])
                await acknowledgeNow()
                try await clock.sleep(millis: 1000)
                continue
            }

            var round: [[SpoolMessage]] = []
            while round.count < transports.count, batcher.hasReady(nowMillis: now), breaker.acquire(nowMillis: now),
                  let batch = batcher.takeReady(nowMillis: now) {
                round.append(batch)
            }
            if round.isEmpty {
                await acknowledgeNow()
                if queue.moreToRead {
                    await Task.yield()  // the read stopped at its bound on rows not due: read on
                } else {
                    try await clock.sleep(millis: batcher.nextWakeMillis(nowMillis: now))
                }
                continue
            }
            try await deliver(round, options: options)
        }
    }

    /// The relay's own key, as last applied: another one tries apps' refused keys again.
    private var writeKey: String?

    /// Settings that a reload may have changed.
    private mutating func apply(_ options: ForwarderOptions) {
        if options.writeKey != writeKey {
            writeKey = options.writeKey
            staleBackoffs = true  // due now: rows in backoff, and the held keys' rows (their holds end)
        }
        if options.batchURL != upstreamURL {
            upstreamURL = options.batchURL
            breaker = CircuitBreaker(policy: options.backoff)
            staleBackoffs = true
        }
        if breaker.policy != options.backoff { breaker = CircuitBreaker(policy: options.backoff) }
        pacer.requestsPerSecond = options.maxRequestsPerSecond
        batcher.setLimits(Batcher.Limits(options))
    }

    /// Starts each batch when the pacer allows (one per transport), with the
    /// last round's acknowledgement committing after the first one started;
    /// waits for every answer, records each outcome in order (the delivered
    /// batches are acknowledged by the next round, or before a sleep), then
    /// acts on them. Cancelled meanwhile: starts no more, but records what
    /// was started.
    private mutating func deliver(_ round: [[SpoolMessage]], options: ForwarderOptions) async throws {
        var started: [(batch: [SpoolMessage], bodyBytes: Int)] = []
        var stop: (any Error)?
        var followUps: [OutcomeHandler.FollowUp] = []
        let answers: [DeliveryOutcome] = await withTaskGroup(of: (Int, DeliveryOutcome).self) { group in
            for batch in round {
                do {
                    let wait = pacer.delayMillis(nowMillis: clock.nowMillis())
                    if wait > 0 { try await clock.sleep(millis: wait) }
                    try Task.checkCancellation()
                } catch {
                    stop = error
                    break
                }
                let now = clock.nowMillis()
                pacer.recordStart(nowMillis: now)
                let request = RequestBuilder.request(for: batch, options: options, nowMillis: now)
                let index = started.count
                let transport = transports[index]
                started.append((batch, request.body.count))
                let duration = requestDuration
                group.addTask {
                    let start = ContinuousClock.now
                    let answer = await transport.send(request)
                    let elapsed = start.duration(to: .now).components
                    duration.recordNanoseconds(elapsed.seconds * 1_000_000_000 + elapsed.attoseconds / 1_000_000_000)
                    return (index, answer)
                }
                if index == 0, let followUp = await acknowledgePrevious() {
                    followUps.append(followUp)  // committed while the request travels
                }
            }
            var out = [DeliveryOutcome?](repeating: nil, count: started.count)
            for await (i, answer) in group { out[i] = answer }
            return out.map { $0! }
        }
        if started.count < round.count {
            batcher.requeueFront(Array(round[started.count...]))  // released on the way out
        }
        if let followUp = await acknowledgePrevious() { followUps.append(followUp) }  // none started

        for (i, sent) in started.enumerated() {
            let followUp = await outcomes.handle(sent.batch, outcome: answers[i], bodyBytes: sent.bodyBytes, queue: queue,
                                                 options: options, breaker: &breaker, spool: &spoolBreaker, nowMillis: clock.nowMillis())
            if case .acknowledge(let batch) = followUp { unacknowledged.append(batch) } else { followUps.append(followUp) }
        }
        act(on: followUps, options: options)
        if let stop { throw stop }
    }

    /// Acknowledges the last round's delivered batches in one spool commit,
    /// if there are any and the spool is not backing off; their follow-up
    /// (settled, or a backoff when the spool could not record it: they then
    /// stay leased and unacknowledged).
    private mutating func acknowledgePrevious(evenIfSpoolFailing: Bool = false) async -> OutcomeHandler.FollowUp? {
        let now = clock.nowMillis()
        guard !unacknowledged.isEmpty, evenIfSpoolFailing || now >= spoolBreaker.reopensAtMillis ?? now else { return nil }
        let followUp = await outcomes.acknowledge(unacknowledged, queue: queue, spool: &spoolBreaker, nowMillis: now)
        if case .settled = followUp { unacknowledged = [] }
        return followUp
    }

    /// Acknowledges what the upstream took before the loop sleeps or stops.
    private mutating func acknowledgeNow(evenIfSpoolFailing: Bool = false) async {
        if let followUp = await acknowledgePrevious(evenIfSpoolFailing: evenIfSpoolFailing) { act(on: [followUp], options: currentOptions()) }
    }

    private mutating func act(on followUps: [OutcomeHandler.FollowUp], options: ForwarderOptions) {
        for followUp in followUps {
            switch followUp {
            case .settled, .acknowledge:
                break
            case .split(let first, let second):
                batcher.requeueFront([first, second])
            case .backOff:
                batcher.releaseAll(to: queue)
            case .hold(let writeKey):
                batcher.release(writeKey: writeKey, to: queue)
            case .pause(let reason):
                let now = clock.nowMillis()
                pause.begin(reason, nowMillis: now, retryMillis: options.credentialRetryMillis)
                _ = takeResumeRequest()  // only a resume from now on ends it
                batcher.releaseAll(to: queue)
            }
        }
    }
}
