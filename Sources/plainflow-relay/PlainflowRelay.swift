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
            Configuration: --config FILE, else the file named by PLAINFLOW_RELAY_CONFIG, else \
            /etc/plainflow-relay/relay.toml when it exists, else the defaults; PLAINFLOW_RELAY_* variables and \
            flags override it. Every command finds the spool and the daemon the same way; `check-config` says \
            which file it read.

            Files (as packaged): the configuration /etc/plainflow-relay/relay.toml; the spool \
            /var/lib/plainflow-relay/spool.db; the socket /run/plainflow-relay/relay.sock, which members of the \
            plainflow-relay group may use; the upstream write key /etc/plainflow-relay/write_key (mode 0640, \
            root:plainflow-relay), which the systemd unit passes as the credential write_key.

            Signals: SIGTERM drains and stops; SIGHUP reads the configuration again and applies the \
            forwarding settings and the log level at once.

            \(Exit.table)
            """,
        version: "plainflow-relay \(RelayVersion.current)",
        subcommands: [Run.self, Status.self, Send.self, SpoolCommand.self, DeadLettersCommand.self, RejectedCommand.self,
                      Import.self, CheckConfig.self, Version.self]
    )

    /// ArgumentParser's main, with the relay's own error reporting: one
    /// style for every command, JSON with `--json`, the documented exit codes.
    static func main() async {
        MallocArenas.limit()
        let arguments = Array(CommandLine.arguments.dropFirst())
        do {
            var command = try await asyncParseAsRoot(arguments)
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            reportAndExit(error, json: arguments.contains("--json"))
        }
    }
}

/// Options shared by every command that reads the configuration.
struct ConfigOptions: ParsableArguments {
    @Option(name: .long, help: "Config file (default: $\(RelayConfig.fileVariable), else \(RelayConfig.defaultPath) when it exists).")
    var config: String?

    /// The file (if any), then PLAINFLOW_RELAY_* variables.
    func load() throws -> RelayConfig {
        try RelayConfig.locate(flag: config, environment: ProcessInfo.processInfo.environment)
    }
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the relay daemon.",
        discussion: "Refuses to start (exit 78), naming the path, when the spool's or the socket's directory is missing or not writable.")

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
        if let tcp { cfg.listen = cfg.listen ?? .init(); cfg.listen!.tcp = tcp; cfg.markOverridden("listen.tcp") }
        if let unix { cfg.listen = cfg.listen ?? .init(); cfg.listen!.unix = unix; cfg.markOverridden("listen.unix") }
        if let spool { cfg.spool = cfg.spool ?? .init(); cfg.spool!.path = spool; cfg.markOverridden("spool.path") }
        if let upstream { cfg.upstream = cfg.upstream ?? .init(); cfg.upstream!.url = upstream; cfg.markOverridden("upstream.url") }
        if let writeKey { cfg.upstream = cfg.upstream ?? .init(); cfg.upstream!.write_key = writeKey; cfg.markOverridden("upstream.write_key") }
        if let logLevel { cfg.log = cfg.log ?? .init(); cfg.log!.level = logLevel; cfg.markOverridden("log.level") }
        return try cfg.resolve()
    }

    func run() async throws {
        let settings = try settings()
        let problems = settings.usabilityFindings().filter { $0.level == .problem }
        if !problems.isEmpty { throw ConfigError(problems.map(\.message).joined(separator: "\n")) }

        // One level for the whole process: SIGHUP sets it to the reloaded log.level.
        let logLevel = LogLevelSwitch(Logger.Level(rawValue: settings.logLevel) ?? .info)
        LoggingSystem.bootstrap { logLevel.handler(label: $0) }
        let logger = Logger(label: "plainflow-relay")
        logger.info("starting plainflow-relay", metadata: [
            "version": "\(RelayVersion.current)", "spool": "\(settings.spool.path)", "upstream": "\(settings.forward.upstream)",
            "write_key": "\(settings.forward.writeKey == nil ? "from apps" : "configured")",
        ])
        if let (proxy, _) = settings.environmentProxy() {
            logger.notice("requests to the upstream go through the proxy the environment names (upstream.proxy, when set, takes its place)",
                          metadata: ["proxy": "\(proxy.endpoint)", "variable": "\(proxy.variable)"])
        }
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
        abstract: "Check that the configuration is usable here; exit 0 when it is, 78 when not.",
        discussion: """
            Prints which file it read (or that none exists and the defaults are used), then each finding: the \
            values, the spool's directory (exists, writable by this user), the socket's directory, the listeners, \
            the upstream URL and the proxy libcurl would use for it (upstream.proxy, else https_proxy, \
            HTTPS_PROXY, http_proxy, all_proxy or ALL_PROXY unless no_proxy or NO_PROXY lists the host). Run it as the user the relay runs as (e.g. sudo -u plainflow-relay).
            """)

    @OptionGroup var configOptions: ConfigOptions
    @Flag(help: "Print JSON: {\"ok\", \"findings\": [{\"level\", \"subject\", \"message\"}]}.") var json = false
    @Flag(name: .customLong("values-only"), help: "Check the values only, not this machine's directories (e.g. on a build machine).") var valuesOnly = false

    func run() throws {
        let config = try configOptions.load()
        var findings = [config.sourceFinding]
        do {
            let settings = try config.resolve()
            findings += valuesOnly ? [ConfigFinding(.ok, "values", "every value is valid (directories not checked: --values-only)")] : settings.usabilityFindings()
        } catch {
            findings += error.description.split(separator: "\n").map { ConfigFinding(.problem, "values", String($0)) }
        }
        let problems = findings.filter { $0.level == .problem }.count
        if json {
            try printJSON(Report(ok: problems == 0, findings: findings))
        } else {
            let width = findings.map(\.subject.count).max() ?? 0
            for f in findings {
                let mark = f.level == .problem ? "PROBLEM" : f.level.rawValue
                print("\(mark.padding(toLength: 8, withPad: " ", startingAt: 0)) \((f.subject + ":").padding(toLength: width + 2, withPad: " ", startingAt: 0))\(f.message)")
            }
            print(problems == 0 ? "configuration OK" : "\(problems) problem(s): plainflow-relay would not start with this configuration")
        }
        if problems > 0 { throw ExitCode(Exit.configuration) }
    }

    struct Report: Encodable {
        let ok: Bool
        let findings: [ConfigFinding]
    }
}

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the version (as --version does).")
    func run() { print(PlainflowRelay.configuration.version) }
}
