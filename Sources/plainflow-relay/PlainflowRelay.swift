// The `plainflow-relay` command: the daemon and the operator's tools.

import ArgumentParser
import Foundation
import Logging
import RelayDaemon

@main
struct PlainflowRelay: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plainflow-relay",
        abstract: "A local relay for analytics calls: apps hand calls to it over a socket, it stores them durably and forwards them upstream.",
        discussion: """
            Files (as packaged): the configuration /etc/plainflow-relay/relay.toml (PLAINFLOW_RELAY_* variables \
            and flags override it); the spool /var/lib/plainflow-relay/spool.db; the socket \
            /run/plainflow-relay/relay.sock, which members of the plainflow-relay group may use; the upstream \
            write key /etc/plainflow-relay/write_key (mode 0640, root:plainflow-relay), which the systemd unit \
            passes as the credential write_key.

            Signals: SIGTERM drains and stops; SIGHUP reads the configuration again and applies the \
            forwarding settings and the log level at once.
            """,
        version: RelayVersion.current,
        subcommands: [Run.self, Status.self, Send.self, SpoolCommand.self, DeadLettersCommand.self, RejectedCommand.self,
                      Import.self, CheckConfig.self, Version.self]
    )
}

/// Options shared by every command that reads the configuration.
struct ConfigOptions: ParsableArguments {
    @Option(name: .long, help: "Config file (default: \(RelayConfig.defaultPath) when it exists).")
    var config: String?

    /// The file (if any), then PLAINFLOW_RELAY_* variables.
    func load() throws -> RelayConfig {
        var cfg: RelayConfig
        if let path = config {
            cfg = try RelayConfig.load(path: path)
        } else if FileManager.default.fileExists(atPath: RelayConfig.defaultPath) {
            cfg = try RelayConfig.load(path: RelayConfig.defaultPath)
        } else {
            cfg = RelayConfig()
        }
        cfg.applyEnvironment(ProcessInfo.processInfo.environment)
        return cfg
    }
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the relay daemon.")

    @OptionGroup var configOptions: ConfigOptions
    @Option(help: "Listen for HTTP on HOST:PORT (\"off\" to disable).") var tcp: String?
    @Option(help: "Listen on this Unix socket path (\"off\" to disable).") var unix: String?
    @Option(help: "The SQLite spool file.") var spool: String?
    @Option(help: "Upstream base URL; batches go to {URL}/v1/batch.") var upstream: String?
    @Option(name: .customLong("write-key"), help: "The upstream write key, for development: other local users can read a process's arguments. In production use upstream.write_key_file or PLAINFLOW_RELAY_WRITE_KEY.") var writeKey: String?
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.") var logLevel: String?

    /// The file, the environment, then these flags.
    func settings() throws -> ResolvedSettings {
        var cfg = try configOptions.load()
        if let tcp { cfg.listen = cfg.listen ?? .init(); cfg.listen!.tcp = tcp }
        if let unix { cfg.listen = cfg.listen ?? .init(); cfg.listen!.unix = unix }
        if let spool { cfg.spool = cfg.spool ?? .init(); cfg.spool!.path = spool }
        if let upstream { cfg.upstream = cfg.upstream ?? .init(); cfg.upstream!.url = upstream }
        if let writeKey { cfg.upstream = cfg.upstream ?? .init(); cfg.upstream!.write_key = writeKey }
        if let logLevel { cfg.log = cfg.log ?? .init(); cfg.log!.level = logLevel }
        return try cfg.resolve()
    }

    func run() async throws {
        let settings = try settings()

        // One level for the whole process: SIGHUP sets it to the reloaded log.level.
        let logLevel = LogLevelSwitch(Logger.Level(rawValue: settings.logLevel) ?? .info)
        LoggingSystem.bootstrap { logLevel.handler(label: $0) }
        let logger = Logger(label: "plainflow-relay")
        logger.info("starting plainflow-relay", metadata: [
            "version": "\(RelayVersion.current)", "spool": "\(settings.spool.path)", "upstream": "\(settings.forward.upstream)",
            "write_key": "\(settings.forward.writeKey == nil ? "from apps" : "configured")",
        ])
        if writeKey != nil {
            logger.warning("--write-key puts the upstream write key in the process list, readable by every local user; use upstream.write_key_file or PLAINFLOW_RELAY_WRITE_KEY outside development")
        }
        let command = self
        let relay = try Relay(settings: settings, logger: logger, reload: { try command.settings() }, logLevel: logLevel)
        try await relay.run()
    }
}

struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Read and check the configuration; exit 0 when it is usable.")

    @OptionGroup var configOptions: ConfigOptions

    func run() throws {
        let settings = try configOptions.load().resolve()
        print("configuration OK")
        print("  tcp:      \(settings.ingest.tcpHost.map { "\($0):\(settings.ingest.tcpPort)" } ?? "off")")
        print("  unix:     \(settings.ingest.unixPath ?? "off")")
        print("  spool:    \(settings.spool.path) (max \(settings.spool.maxBytes) bytes, on_full = \(settings.spool.onFull.rawValue))")
        print("  upstream: \(settings.forward.batchURL) (write key \(settings.forward.writeKey == nil ? "sent by apps" : "configured"))")
    }
}

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the version.")
    func run() { print("plainflow-relay \(RelayVersion.current)") }
}

extension ConfigError: LocalizedError {
    public var errorDescription: String? { description }
}
