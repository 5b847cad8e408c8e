// Forwarder: drains the outbox to the upstream (DESIGN §5). The service and
// its composition; the work is done by parts with one job each:
//
//   ForwardQueue (Queue/)        lease, release, acknowledge, retry, dead-letter
//   Batcher (Batch/)             what goes and when: one key, full or flush_interval
//   Pacer (Policy/)              at most max_requests_per_second
//   CircuitBreaker (Policy/)     one probe at a time while the upstream fails
//   RequestBuilder (Batch/)      envelope, sent_at, write key, X-Retry-Count, gzip
//   UpstreamTransport (Transport/) one request at a time per connection (libcurl)
//   OutcomeHandler (Policy/)     RetryClassifier's decision → queue action + status
//   PauseState (Policy/)         paused on refused credentials or a config error
//   ForwardLoop (Loop/)          the one task that runs them, on a ForwardClock
//
// Invariants:
// - Oldest first, live before bulk; one write key per batch; at most
//   `maxBatchCount` messages and `maxBatchBytes` of request body.
// - Rows are leased until their outcome is committed; a crash in between
//   leaves them in the outbox, to be sent again (the upstream dedupes on
//   message_id).
// - Nothing expires here: the spool applies max_age itself.
// - Graceful shutdown lets the in-flight requests end, records their
//   outcomes, releases every lease, and returns.

import Logging
import RelaySpool
import ServiceLifecycle
import Synchronization

/// The forwarding service.
public final class Forwarder: Service, Sendable {
    private let makeQueue: @Sendable () throws -> any ForwardQueue
    private let optionsBox: Mutex<ForwarderOptions>
    /// One per request allowed in flight (each its own reused connection).
    private let transports: [any UpstreamTransport]
    private let logger: Logger
    private let clock: any ForwardClock
    private let jitter: @Sendable (Int64) -> Int64
    private let board = StatusBoard()
    private let resumeRequested = Atomic<Bool>(false)
    /// The apps' own write keys the upstream refuses now: ingest stops
    /// storing calls sent with them once they would fill half the spool.
    public let refusedAppKeys = RefusedAppKeys()

    /// The production forwarder: the spool as its queue, libcurl
    /// (`maxInFlight` handles) as its transport, the wall clock.
    public convenience init(spool: Spool, options: ForwarderOptions, logger: Logger = Logger(label: "plainflow-relay.forward"),
                            nowMillis: @escaping @Sendable () -> Int64 = SystemClock.wallMillis) {
        self.init(queue: { try SpoolForwardQueue(spool: spool) },
                  transports: (0..<max(1, options.maxInFlight)).map { _ in CurlTransport(options: options.transport) },
                  options: options, logger: logger, clock: SystemClock(nowMillis: nowMillis))
    }

    /// A forwarder on any queue, transports and clock (tests use in-memory ones).
    /// - Parameters:
    ///   - queue: opens the queue; called once when `run()` starts.
    ///   - transports: one per request allowed in flight (at least one).
    ///   - jitter: picks the backoff delay from [0, ceiling].
    public init(queue: @escaping @Sendable () throws -> any ForwardQueue, transports: [any UpstreamTransport],
                options: ForwarderOptions, logger: Logger = Logger(label: "plainflow-relay.forward"),
                clock: any ForwardClock = SystemClock(), jitter: @escaping @Sendable (Int64) -> Int64 = BackoffPolicy.uniformDraw) {
        precondition(!transports.isEmpty, "a forwarder needs at least one transport")
        self.makeQueue = queue
        self.optionsBox = Mutex(options)
        self.transports = transports
        self.logger = logger
        self.clock = clock
        self.jitter = jitter
    }

    /// A snapshot of the upstream state.
    public var status: UpstreamStatus { board.snapshot }

    /// Ends a pause (refused credentials or a configuration error) now: config reload, SIGHUP.
    public func resume() { resumeRequested.store(true, ordering: .relaxed) }

    /// The settings in force.
    public var options: ForwarderOptions { optionsBox.withLock { $0 } }

    /// New settings (SIGHUP): the upstream, write key, batching, pace,
    /// backoff, timeouts and gzip apply from the next batch on; a pause
    /// ends so the new settings are tried at once.
    public func reload(_ options: ForwarderOptions) {
        optionsBox.withLock { $0 = options }
        if options.writeKey != nil { refusedAppKeys.removeAll() }  // apps' keys are not used any more
        for t in transports { t.update(options: options.transport) }
        resume()
    }

    public func run() async throws {
        do {
            try await cancelWhenGracefulShutdown { [self] in
                var loop = ForwardLoop(
                    queue: try makeQueue(), transports: transports, clock: clock,
                    currentOptions: { [self] in options },
                    takeResumeRequest: { [self] in resumeRequested.exchange(false, ordering: .relaxed) },
                    outcomes: OutcomeHandler(status: board, logger: logger, refusedKeys: refusedAppKeys, jitter: jitter), logger: logger)
                try await loop.run()
            }
        } catch is CancellationError {
            // graceful shutdown: the in-flight requests have ended and been recorded
        }
        logger.info("forwarder stopped")
    }
}

// The name swift-service-lifecycle logs for this service.
extension Forwarder: CustomStringConvertible {
    public var description: String { "forwarder" }
}
