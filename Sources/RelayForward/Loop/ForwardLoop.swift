// ForwardLoop: the forwarder's one task, composing the parts.
//
// Each turn: apply reloaded settings → wait out a pause → wait out an open
// breaker → top the pending batches up from the queue → take the ready
// batches the breaker lets go (up to one per transport) → start them, each
// when the pacer allows → record every outcome → act on the follow-ups.
// With nothing ready it sleeps until the batcher's next deadline.
//
// Invariants:
// - All state (batcher, pacer, breaker, pause) lives in this struct, in the
//   run task; the queue is touched from that task only. Child tasks only
//   carry requests to transports.
// - Cancellation (graceful shutdown) starts no new request; a request in
//   flight ends and its outcome is recorded; every lease is released.
// - After a retryable failure or a pause, all held leases are released, so
//   the next request starts again from the oldest due message.

import Logging
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
    }

    /// Runs until cancelled (or the clock throws); releases every lease on the way out.
    mutating func run() async throws {
        defer { batcher.releaseAll(to: queue) }
        while true {
            try Task.checkCancellation()
            let options = currentOptions()
            apply(options)
            let now = clock.nowMillis()

            switch pause.check(nowMillis: now, resumeRequested: takeResumeRequest()) {
            case .running:
                break
            case .resumed(let reason):
                logger.notice("forwarding resumed after a pause; trying the upstream again", metadata: ["paused_for": "\(reason.rawValue)"])
            case .paused(let wait):
                try await clock.sleep(millis: min(wait, 1000))
                continue
            }
            if let reopens = breaker.reopensAtMillis, now < reopens {
                try await clock.sleep(millis: reopens - now)
                continue
            }

            do {
                try batcher.topUp(from: queue, nowMillis: now)
            } catch {
                logger.error("could not read the spool; retrying in a second", metadata: ["error": "\(error)"])
                try await clock.sleep(millis: 1000)
                continue
            }

            var round: [[SpoolMessage]] = []
            while round.count < transports.count, batcher.hasReady(nowMillis: now), breaker.acquire(nowMillis: now),
                  let batch = batcher.takeReady(nowMillis: now) {
                round.append(batch)
            }
            if round.isEmpty {
                try await clock.sleep(millis: batcher.nextWakeMillis(nowMillis: now))
                continue
            }
            try await deliver(round, options: options)
        }
    }

    /// Settings that a reload may have changed.
    private mutating func apply(_ options: ForwarderOptions) {
        if breaker.policy != options.backoff { breaker = CircuitBreaker(policy: options.backoff) }
        pacer.requestsPerSecond = options.maxRequestsPerSecond
        batcher.setLimits(Batcher.Limits(options))
    }

    /// Starts each batch when the pacer allows (one per transport), waits
    /// for every answer, records each outcome in order (the delivered
    /// batches' acknowledgements in one spool commit), then acts on them.
    /// Cancelled meanwhile: starts no more, but records what was started.
    private mutating func deliver(_ round: [[SpoolMessage]], options: ForwarderOptions) async throws {
        var started: [(batch: [SpoolMessage], bodyBytes: Int)] = []
        var stop: (any Error)?
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
                group.addTask { (index, await transport.send(request)) }
            }
            var out = [DeliveryOutcome?](repeating: nil, count: started.count)
            for await (i, answer) in group { out[i] = answer }
            return out.map { $0! }
        }
        if started.count < round.count {
            batcher.requeueFront(Array(round[started.count...]))  // released on the way out
        }

        var delivered: [[SpoolMessage]] = []
        var followUps: [OutcomeHandler.FollowUp] = []
        for (i, sent) in started.enumerated() {
            let followUp = await outcomes.handle(sent.batch, outcome: answers[i], bodyBytes: sent.bodyBytes, queue: queue,
                                                 options: options, breaker: &breaker, nowMillis: clock.nowMillis())
            if case .acknowledge(let batch) = followUp { delivered.append(batch) } else { followUps.append(followUp) }
        }
        if !delivered.isEmpty {
            // One spool commit for every batch the upstream took this round.
            followUps.append(await outcomes.acknowledge(delivered, queue: queue, breaker: &breaker, nowMillis: clock.nowMillis()))
        }
        for followUp in followUps {
            switch followUp {
            case .settled, .acknowledge:
                break
            case .split(let first, let second):
                batcher.requeueFront([first, second])
            case .backOff:
                batcher.releaseAll(to: queue)
            case .pause(let reason):
                let now = clock.nowMillis()
                pause.begin(reason, nowMillis: now, retryMillis: options.credentialRetryMillis)
                _ = takeResumeRequest()  // only a resume from now on ends it
                batcher.releaseAll(to: queue)
            }
        }
        if let stop { throw stop }
    }
}
