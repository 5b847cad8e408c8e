// IngestServer: the listeners, as one service.
//
// Owns: one ServerBootstrap bound to the TCP address and to the Unix socket,
// the per-connection pipeline (connection cap, idle timeout, protocol
// sniffing), and graceful shutdown: stop accepting, let every open
// connection finish what it was answering, then return.
// Invariants:
// - Each listener has its own cap (`max_connections`): connections on the
//   TCP port, open to every local user, never lock apps out of the socket.
// - A refused connection is logged when refusals start and once a minute
//   while they last, never once per connection.
// - Shutdown returns within the drain timeout: connections still open then
//   are closed.

import Logging
import NIOCore
import NIOExtras
import NIOPosix
import ServiceLifecycle
import Synchronization

/// The relay's listeners.
public final class IngestServer: Service, Sendable {
    private let options: IngestOptions
    private let pipeline: IngestPipeline
    private let endpoints: OperatorEndpoints
    private let group: any EventLoopGroup
    private let logger: Logger
    private let onListening: @Sendable ([String]) -> Void
    /// Open connections on the TCP port and on the Unix socket, each against its own cap.
    private let openTCP = Atomic<Int>(0)
    private let openUnix = Atomic<Int>(0)
    /// Every open connection, to close what the drain timeout leaves open.
    private let connections = Mutex<[ObjectIdentifier: any Channel]>([:])
    /// Refused connections not yet logged, and when that was last logged.
    private let refusals = Mutex<(count: Int, loggedAt: ContinuousClock.Instant?)>((0, nil))

    /// - Parameter onListening: called with the bound addresses once every listener is up.
    public init(options: IngestOptions, pipeline: IngestPipeline, endpoints: OperatorEndpoints, group: any EventLoopGroup,
                logger: Logger = Logger(label: "plainflow-relay.ingest"), onListening: @escaping @Sendable ([String]) -> Void = { _ in }) {
        self.options = options
        self.pipeline = pipeline
        self.endpoints = endpoints
        self.group = group
        self.logger = logger
        self.onListening = onListening
    }

    /// Refuses a non-loopback TCP address unless `allowRemote` is set.
    public static func checkAddress(_ options: IngestOptions) throws(ListenerError) {
        guard let host = options.tcpHost, !options.allowRemote else { return }
        let loopback = host == "localhost" || host == "::1" || host == "[::1]" || host.hasPrefix("127.")
        if !loopback {
            throw ListenerError("listen.tcp: \(host) is not a loopback address; set listen.allow_remote = true to serve other hosts")
        }
    }

    public func run() async throws {
        try Self.checkAddress(options)
        let quiesce = ServerQuiescingHelper(group: group)
        let options = self.options
        let pipeline = self.pipeline
        let endpoints = self.endpoints
        let executors = EventLoopExecutors(group)
        let server = self

        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(quiesce.makeServerChannelHandler(channel: channel))
                }
            }
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let isUnix = channel.localAddress?.protocol == .unix
                    if !server.admit(channel, unix: isUnix) {
                        channel.close(promise: nil)
                        return
                    }
                    if !isUnix { _ = channel.setOption(.socketOption(.tcp_nodelay), value: 1) }
                    let ops = channel.pipeline.syncOperations
                    let head = ConnectionHead(idleTimeout: .seconds(options.idleTimeoutSeconds))
                    try ops.addHandler(head)
                    try ops.addHandler(ProtocolSniffer(pipeline: pipeline, endpoints: endpoints, executors: executors,
                                                       allowLineProtocol: isUnix || options.lineProtocolOnTCP, overUnixSocket: isUnix, head: head))
                }
            }
            .childChannelOption(.maxMessagesPerRead, value: 16)
            // A client may shut down its write side after the last call and
            // still read the replies (`socat`, `nc -N`): keep the channel open.
            .childChannelOption(.allowRemoteHalfClosure, value: true)

        var bound: [String] = []
        var channels: [any Channel] = []
        do {
            if let host = options.tcpHost {
                let address = "\(host.contains(":") ? "[\(host)]" : host):\(options.tcpPort)"
                let ch: any Channel
                do { ch = try await bootstrap.bind(host: host, port: options.tcpPort).get() } catch {
                    throw ListenerError.cannotListen(on: "TCP \(address)", setting: "listen.tcp", error)
                }
                channels.append(ch)
                bound.append("tcp \(ch.localAddress.map { "\($0.ipAddress ?? host):\($0.port ?? options.tcpPort)" } ?? host)")
            }
            if let path = options.unixPath {
                try UnixSocketFile.clearStale(path)
                let ch: any Channel
                do { ch = try await bootstrap.bind(unixDomainSocketPath: path).get() } catch {
                    throw ListenerError.cannotListen(on: "the Unix socket \(path)", setting: "listen.unix", error)
                }
                channels.append(ch)
                try UnixSocketFile.applyPermissions(path, mode: options.unixMode, group: options.unixGroup)
                bound.append("unix \(path)")
            }
        } catch {
            for ch in channels { try? await ch.close() }
            if let path = options.unixPath, channels.count == (options.tcpHost == nil ? 1 : 2) { UnixSocketFile.remove(path) }
            throw error
        }
        logger.info("listening", metadata: ["listeners": "\(bound.joined(separator: ", "))"])
        onListening(bound)

        // Serve until shutdown is asked for.
        try? await gracefulShutdown()

        logger.info("stopping listeners; finishing open requests")
        let loop = group.next()
        let done = loop.makePromise(of: Void.self)
        quiesce.initiateShutdown(promise: done)
        // Whichever comes first: every connection closed, or the drain timeout.
        let drained = loop.makePromise(of: Bool.self)
        let timeout = loop.scheduleTask(in: .seconds(options.drainTimeoutSeconds)) { drained.succeed(false) }
        done.futureResult.hop(to: loop).whenComplete { _ in
            timeout.cancel()
            drained.succeed(true)  // (after the timeout fired: a no-op)
        }
        if !(try await drained.futureResult.get()) {
            let open = connections.withLock { Array($0.values) }
            logger.warning("connections still open after the drain timeout; closing them", metadata: ["open": "\(open.count)"])
            for channel in open { channel.close(promise: nil) }
            try? await done.futureResult.get()
        }
        if let path = options.unixPath { UnixSocketFile.remove(path) }
    }

    /// Adds `delta` to the open connections of one listener; the new count.
    @discardableResult
    private func countOpen(unix: Bool, by delta: Int) -> Int {
        unix ? openUnix.add(delta, ordering: .relaxed).newValue : openTCP.add(delta, ordering: .relaxed).newValue
    }

    /// Counts a new connection against its listener's cap; false when the cap is reached.
    private func admit(_ channel: any Channel, unix: Bool) -> Bool {
        let now = countOpen(unix: unix, by: 1)
        let id = ObjectIdentifier(channel)
        connections.withLock { $0[id] = channel }
        channel.closeFuture.whenComplete { _ in
            self.countOpen(unix: unix, by: -1)
            _ = self.connections.withLock { $0.removeValue(forKey: id) }
        }
        guard now > options.maxConnections else { return true }
        let logNow = refusals.withLock { r -> Int? in
            r.count += 1
            if let at = r.loggedAt, at.duration(to: .now) < .seconds(60) { return nil }
            defer { r = (0, .now) }
            return r.count
        }
        if let refused = logNow {
            logger.warning("connections refused: max_connections reached (logged once a minute while it lasts)", metadata: [
                "listener": "\(unix ? "unix" : "tcp")", "max_connections": "\(options.maxConnections)", "refused": "\(refused)",
            ])
        }
        return false
    }
}

// The name swift-service-lifecycle logs for this service.
extension IngestServer: CustomStringConvertible {
    public var description: String { "ingest" }
}
