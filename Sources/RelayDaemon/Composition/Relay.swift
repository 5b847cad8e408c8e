// The composition root: builds every module from the settings and runs them
// as one ServiceGroup. Order is dependency order (spool, forwarder,
// listeners); graceful shutdown (SIGTERM, SIGINT) runs in reverse: stop
// accepting and answer what is open, let the in-flight batch end, commit
// what is queued and close the database. No business logic lives here.

import Logging
import NIOCore
import NIOPosix
import RelayForward
import RelayIngest
import RelaySpool
import ServiceLifecycle
import UnixSignals

/// A relay ready to run.
public final class Relay: Sendable {
    public let settings: ResolvedSettings
    public let spool: Spool
    public let forwarder: Forwarder
    public let ingest: IngestServer
    private let group: MultiThreadedEventLoopGroup
    private let logger: Logger
    private let reload: (@Sendable () throws -> ResolvedSettings)?
    private let logLevel: LogLevelSwitch?

    /// Opens the spool and wires the modules; nothing listens until `run()`.
    /// - Parameters:
    ///   - reload: reads the configuration again (SIGHUP).
    ///   - logLevel: the process's log level, which SIGHUP sets to the reloaded `log.level`.
    public init(settings: ResolvedSettings, logger: Logger, reload: (@Sendable () throws -> ResolvedSettings)? = nil,
                logLevel: LogLevelSwitch? = nil) throws {
        self.settings = settings
        self.logger = logger
        self.reload = reload
        self.logLevel = logLevel
        _ = Telemetry.registry
        spool = try Spool(options: settings.spool, logger: logger.named("spool"))
        forwarder = Forwarder(spool: spool, options: settings.forward, logger: logger.named("forward"))
        let observer = RelayObserver(spool: spool, forwarder: forwarder)
        let refusedAppKeys = forwarder.refusedAppKeys
        let pipeline = IngestPipeline(options: settings.ingest, store: spool, logger: logger.named("ingest"),
                                      refusedUpstream: { refusedAppKeys.refusal(of: $0, nowMillis: SystemClock.wallMillis()) },
                                      fullSpoolRetryAfter: { [forwarder] in forwarder.status.secondsUntilNextAttempt(nowMillis: SystemClock.wallMillis()) })
        group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        ingest = IngestServer(
            options: settings.ingest, pipeline: pipeline,
            endpoints: OperatorEndpoints(status: { observer.status() }, metrics: { observer.metrics() }),
            group: group, logger: logger.named("ingest"),
            onListening: { listeners in
                observer.setListeners(listeners)
                SystemdNotifier.notify("READY=1\nSTATUS=listening on \(listeners.joined(separator: ", "))")
            })
    }

    /// Runs until SIGTERM or SIGINT, then shuts down gracefully.
    public func run() async throws {
        let services: [any Service] = [
            SpoolService(spool: spool, logger: logger),
            forwarder,
            ReloadService(forwarder: forwarder, spool: spool, running: settings, reload: reload, logLevel: logLevel, logger: logger),
            HeapTrimService(logger: logger.named("memory")),
            ingest,
        ]
        var config = ServiceGroupConfiguration(
            services: services.map { .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            cancellationSignals: [],
            logger: logger)
        config.maximumGracefulShutdownDuration = .seconds(max(10, settings.ingest.drainTimeoutSeconds + 5 + Int64(settings.forward.transport.totalTimeoutMillis / 1000)))
        let serviceGroup = ServiceGroup(configuration: config)
        do {
            try await serviceGroup.run()
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        try? await group.shutdownGracefully()
        logger.info("plainflow-relay stopped")
    }
}

/// Keeps the spool open while the relay runs; on shutdown commits what is
/// queued and closes the file. First in the group, so it stops last.
struct SpoolService: Service {
    let spool: Spool
    let logger: Logger

    func run() async throws {
        try? await gracefulShutdown()
        SystemdNotifier.notify("STOPPING=1")
        await spool.close()
        logger.info("spool closed")
    }
}

/// SIGHUP: read the configuration again and apply what can change while
/// running (the forwarding settings: upstream, write key, batching, pace,
/// backoff, timeouts, gzip; and the log level); resume forwarding paused on
/// refused credentials.
/// Listener, limit and spool settings need a restart, and the log says so.
/// A configuration that does not load is logged and the running one kept.
struct ReloadService: Service {
    let forwarder: Forwarder
    let spool: Spool
    let running: ResolvedSettings
    let reload: (@Sendable () throws -> ResolvedSettings)?
    let logLevel: LogLevelSwitch?
    let logger: Logger

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        await cancelWhenGracefulShutdown {
            for await _ in signals {
                guard let reload else {
                    forwarder.resume()
                    continue
                }
                do {
                    let new = try reload()
                    // An upstream or proxy change may put the environment's proxy in force: checked as at start.
                    if let problem = new.environmentProxy()?.problem {
                        logger.error("SIGHUP: the reloaded configuration cannot be used here; keeping the running one", metadata: ["error": "\(problem)"])
                        forwarder.resume()
                        continue
                    }
                    let hadKey = forwarder.options.writeKey != nil
                    forwarder.reload(new.forward)
                    if !hadKey && new.forward.writeKey != nil {
                        logger.notice("SIGHUP: the relay now has its own write key: every queued call goes upstream with it from now on, those its app sent a key for included")
                    }
                    spool.setMaxAge(millis: new.spool.maxAgeMillis)
                    if let logLevel, let level = Logger.Level(rawValue: new.logLevel) { logLevel.level = level }
                    logger.notice("SIGHUP: configuration reloaded; forwarding settings and log level applied", metadata: [
                        "upstream": "\(new.forward.upstream)", "write_key": "\(new.forward.writeKey == nil ? "from apps" : "configured")",
                        "log_level": "\(new.logLevel)",
                    ])
                    var needRestart: [String] = []
                    if new.spool.path != running.spool.path || new.spool.maxBytes != running.spool.maxBytes || new.spool.onFull != running.spool.onFull
                        || new.spool.synchronousFull != running.spool.synchronousFull { needRestart.append("spool") }
                    if new.ingest.tcpHost != running.ingest.tcpHost || new.ingest.tcpPort != running.ingest.tcpPort
                        || new.ingest.unixPath != running.ingest.unixPath { needRestart.append("listen") }
                    if new.ingest.limits != running.ingest.limits || new.ingest.maxRequestBytes != running.ingest.maxRequestBytes
                        || new.ingest.acceptedWriteKeys != running.ingest.acceptedWriteKeys { needRestart.append("limits / accepted keys") }
                    if new.ingest.relayHasWriteKey != running.ingest.relayHasWriteKey {
                        // Forwarding uses the new key at once; whether apps must send one changes at the restart.
                        needRestart.append("upstream.write_key set or removed (whether apps must send their own key)")
                    }
                    if new.forward.maxInFlight != running.forward.maxInFlight { needRestart.append("upstream.max_in_flight") }
                    if !needRestart.isEmpty {
                        logger.warning("SIGHUP: some changed settings take effect only after a restart", metadata: ["sections": "\(needRestart.joined(separator: ", "))"])
                    }
                } catch {
                    logger.error("SIGHUP: the configuration does not load; keeping the running one", metadata: ["error": "\(error)"])
                    forwarder.resume()
                }
            }
        }
    }
}

extension Logger {
    /// The same logger with a sub-label, e.g. `plainflow-relay.spool`.
    func named(_ part: String) -> Logger {
        var l = Logger(label: "\(label).\(part)")
        l.logLevel = logLevel
        return l
    }
}

// swift-service-lifecycle logs each service at debug level: describe them by
// name only, so no setting (the write key above all) reaches the log.
extension SpoolService: CustomStringConvertible {
    var description: String { "spool" }
}

extension ReloadService: CustomStringConvertible {
    var description: String { "reload" }
}
