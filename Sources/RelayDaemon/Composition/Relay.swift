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

    /// Opens the spool and wires the modules; nothing listens until `run()`.
    public init(settings: ResolvedSettings, logger: Logger) throws {
        self.settings = settings
        self.logger = logger
        _ = Telemetry.registry
        spool = try Spool(options: settings.spool, logger: logger.named("spool"))
        forwarder = Forwarder(spool: spool, options: settings.forward, logger: logger.named("forward"))
        let observer = RelayObserver(spool: spool, forwarder: forwarder)
        let pipeline = IngestPipeline(options: settings.ingest, store: spool, logger: logger.named("ingest"))
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
            ReloadService(forwarder: forwarder, logger: logger),
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

/// SIGHUP: resume forwarding paused on refused credentials.
struct ReloadService: Service {
    let forwarder: Forwarder
    let logger: Logger

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        try await cancelWhenGracefulShutdown {
            for await _ in signals {
                logger.notice("SIGHUP: resuming forwarding if it was paused")
                forwarder.resume()
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
