// IngestServer: the listeners, as one service.
//
// Owns: one ServerBootstrap bound to the TCP address and to the Unix socket,
// the per-connection pipeline (connection cap, idle timeout, protocol
// sniffing), and graceful shutdown: stop accepting, let every open
// connection finish what it was answering, then return.

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
    private let openConnections = Atomic<Int>(0)

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
                    if !server.admit(channel) {
                        channel.close(promise: nil)
                        return
                    }
                    if !isUnix { _ = channel.setOption(.socketOption(.tcp_nodelay), value: 1) }
                    let ops = channel.pipeline.syncOperations
                    let head = ConnectionHead(idleTimeout: .seconds(options.idleTimeoutSeconds))
                    try ops.addHandler(head)
                    try ops.addHandler(ProtocolSniffer(pipeline: pipeline, endpoints: endpoints, executors: executors,
                                                       allowLineProtocol: isUnix || options.lineProtocolOnTCP, head: head))
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
        let done = group.next().makePromise(of: Void.self)
        quiesce.initiateShutdown(promise: done)
        let drained = await withTaskGroup(of: Bool.self) { tasks in
            tasks.addTask { (try? await done.futureResult.get()) != nil }
            tasks.addTask {
                try? await Task.sleep(for: .seconds(options.drainTimeoutSeconds))
                return false
            }
            let first = await tasks.next() ?? false
            tasks.cancelAll()
            return first
        }
        if !drained {
            logger.warning("connections still open after the drain timeout; closing them", metadata: ["open": "\(openConnections.load(ordering: .relaxed))"])
        }
        if let path = options.unixPath { UnixSocketFile.remove(path) }
    }

    /// Counts a new connection; false when the cap is reached.
    private func admit(_ channel: any Channel) -> Bool {
        let now = openConnections.add(1, ordering: .relaxed).newValue
        channel.closeFuture.whenComplete { _ in self.openConnections.subtract(1, ordering: .relaxed) }
        if now > options.maxConnections {
            logger.warning("connection refused: max_connections reached", metadata: ["max_connections": "\(options.maxConnections)"])
            return false
        }
        return true
    }
}

// The name swift-service-lifecycle logs for this service.
extension IngestServer: CustomStringConvertible {
    public var description: String { "ingest" }
}
