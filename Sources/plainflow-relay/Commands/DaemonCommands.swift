// Commands that ask the running daemon over its socket (or TCP port):
// `status` and `send`. Exit 3 when it is not running.

import ArgumentParser
import Foundation
import RelayDaemon
import RelayForward
import RelayMessage
import RelaySpool

/// Talks to the running daemon: its Unix socket if configured, else its TCP port.
struct DaemonClient {
    let settings: ResolvedSettings

    /// Its socket when that exists, else its TCP address; nil when neither is configured.
    private var endpoint: (base: String, socket: String?)? {
        if let unix = settings.ingest.unixPath, FileManager.default.fileExists(atPath: unix) { return ("http://relay", unix) }
        if let host = settings.ingest.tcpHost { return ("http://\(host.contains(":") ? "[\(host)]" : host):\(settings.ingest.tcpPort)", nil) }
        return nil
    }

    /// Where it asks, for messages: the socket, or the HTTP address.
    var target: String {
        if let endpoint { return endpoint.socket.map { "the socket \($0)" } ?? endpoint.base }
        if let unix = settings.ingest.unixPath { return "the socket \(unix) (it does not exist)" }
        return "no listener (listen.tcp and listen.unix are off)"
    }

    func request(_ path: String, body: [UInt8]? = nil, writeKey: String? = nil) async -> DeliveryOutcome {
        guard let endpoint else { return .transportFailure(TransportFailure(code: 7, message: "no listener configured")) }
        let transport = CurlTransport(options: TransportOptions(connectTimeoutMillis: 2000, totalTimeoutMillis: 10_000, userAgent: "plainflow-relay-cli"))
        return await transport.send(UpstreamRequest(url: endpoint.base + path, body: body ?? [], writeKey: writeKey, isGet: body == nil,
                                                    unixSocketPath: endpoint.socket))
    }

    /// Why the daemon did not answer, and what to do, for people.
    func notRunning(_ outcome: DeliveryOutcome) -> String {
        let why: String
        switch outcome {
        case .transportFailure(let f) where f.code == 7:
            why = "nothing answers on \(target) (connection refused)"
        case .transportFailure(let f) where f.isTimeout:
            why = "\(target) did not answer within 10 s"
        case .transportFailure(let f):
            why = "cannot reach \(target): \(f.message)"
        case .response(let status, _, let body):
            why = "\(target) answered HTTP \(status), not the relay's status: \(body.prefix(200))"
        }
        return "plainflow-relay is not running: \(why); start it (systemctl start plainflow-relay; in a clone, make run), or name its configuration with --config FILE or \(RelayConfig.fileVariable)"
    }
}

extension ConfigOptions {
    /// The settings to reach the daemon by, and the configuration's problem
    /// when it does not load: an operator may have broken the file while the
    /// daemon runs on the one it loaded, and `status` must still find it (by
    /// the file's `[listen]` section when that loads, else the defaults; the
    /// PLAINFLOW_RELAY_* variables apply to both).
    /// `listenersKnown` is false when the file's `[listen]` section itself
    /// does not load: the relay may then run where the defaults do not look.
    func daemonSettings() throws -> (settings: ResolvedSettings, problem: ConfigError?, listenersKnown: Bool) {
        let loaded = Result { try load() }
        do {
            return (try loaded.get().resolve(), nil, true)
        } catch let problem as ConfigError {
            let environment = ProcessInfo.processInfo.environment
            var fallback = RelayConfig()
            let found = (try? loaded.get()) ?? RelayConfig.locateListeners(flag: config, environment: environment)
            if let found {
                fallback.listen = found.listen
                fallback.source = found.source
            } else {
                fallback.applyEnvironment(environment)
            }
            guard let settings = try? fallback.resolve() else { throw problem }
            return (settings, problem, found != nil)
        }
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The running daemon's view: listeners, spool, upstream.",
        discussion: "Exit 3 when the relay is not running (then it shows the spool file's counts, if it can read it).")
    @OptionGroup var configOptions: ConfigOptions
    @Flag(help: "Print JSON: /v1/status (with \"config\": {\"loads\": false, \"errors\"} when the file does not load); when the relay is not running, the error object with the spool file's counts: {\"ok\": false, \"code\": \"not_running\", \"message\", \"errors\", \"exit_code\", \"spool\"}.") var json = false

    func run() async throws {
        let (settings, problem, listenersKnown) = try configOptions.daemonSettings()
        let configErrors = problem.map { $0.description.split(separator: "\n").map(String.init) } ?? []
        let client = DaemonClient(settings: settings)
        let outcome = await client.request("/v1/status")
        guard case .response(200, _, let body) = outcome,
              let doc = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] else {
            if let problem, !listenersKnown {
                throw ConfigError("cannot tell whether plainflow-relay is running: nothing answers on \(client.target), and the configuration's [listen] section, which says where it listens, does not load:\n\(problem)")
            }
            let message = client.notRunning(outcome)
            let path = settings.spool.path
            let stats = try? SpoolAdmin(path: path).stats()
            if json {
                let spool = stats.map { Telemetry.spoolDocument($0, path: path, maxBytes: settings.spool.maxBytes, nowMillis: Spool.wallClockMillis(), live: false) }
                printJSON(.object([
                    "ok": .bool(false), "code": .string("not_running"), "message": .string(message),
                    "errors": .array(([message] + configErrors).map { .string($0) }), "exit_code": .int(Int64(Exit.notRunning)), "spool": spool ?? .null,
                ]))
            } else {
                printError(message)
                if let problem {
                    FileHandle.standardError.write(Data("and the configuration does not load (check-config lists what to fix):\n\(problem)\n".utf8))
                }
                if let stats {
                    FileHandle.standardError.write(Data("the spool file \(path): \(count(stats.depth)) queued (\(ByteCount.format(stats.bytes))), \(count(stats.deadLetters, "dead letter"))\n".utf8))
                }
            }
            throw ExitCode(Exit.notRunning)
        }
        if let problem {
            FileHandle.standardError.write(Data(("warning: the configuration does not load; the running relay was found at \(client.target) by the file's [listen] "
                + "section or the defaults, and keeps the configuration it loaded until the file is fixed and reloaded (check-config lists what to fix):\n\(problem)\n").utf8))
        }
        if json {
            guard problem != nil else { print(body); return }
            // The running relay's view, and that its file does not load (for monitoring, which reads stdout).
            var withConfig = doc
            withConfig["config"] = ["loads": false, "errors": configErrors]
            let data = (try? JSONSerialization.data(withJSONObject: withConfig, options: [.sortedKeys])) ?? Data(body.utf8)
            print(String(decoding: data, as: UTF8.self))
            return
        }
        let spool = doc["spool"] as? [String: Any] ?? [:]
        let upstream = doc["upstream"] as? [String: Any] ?? [:]
        func int(_ d: [String: Any], _ k: String) -> Int64 { (d[k] as? NSNumber)?.int64Value ?? 0 }
        print("plainflow-relay \(doc["version"] ?? "?") on \(doc["host"] ?? "?"), up \(duration(int(doc, "uptime_seconds")))")
        print("listeners:  \((doc["listeners"] as? [String] ?? []).joined(separator: ", "))")
        let oldest = (spool["oldest_age_seconds"] as? NSNumber).map { duration($0.int64Value) + " ago" } ?? "-"
        print("spool:      \(count(int(spool, "depth"))) queued (\(ByteCount.format(int(spool, "bytes")))), oldest \(oldest); \(ByteCount.format(int(spool, "total_bytes"))) of \(ByteCount.format(int(spool, "max_bytes"))) used")
        print("            \(count(int(spool, "dead_letters"), "dead letter")), \(count(int(spool, "rejected"), "rejected sample")), \(count(int(spool, "dropped"))) dropped")
        let state = upstream["state"] as? String ?? "?"
        let since = (upstream["state_since_ms"] as? NSNumber).map { " since \(when($0.int64Value))" } ?? ""
        print("upstream:   \(state)\(since); \(count(int(upstream, "delivered"))) delivered in \(count(int(upstream, "requests"), "request")), \(count(int(upstream, "consecutive_failures"), "consecutive failure"))")
        if let e = upstream["last_error"] as? String {
            print("last error: \(e)")
            let at = (upstream["last_error_at_ms"] as? NSNumber).map { "at \(when($0.int64Value))" }
            // An app's refused key is not resolved by the other apps' deliveries.
            let appKeyStillRefused = int(upstream, "app_keys_held") > 0
            let aboutAppKey = upstream["last_error_at_ms"] as? NSNumber == upstream["app_key_refused_at_ms"] as? NSNumber
            let resolved = state == "ok" && upstream["last_success_at_ms"] is NSNumber
                ? (aboutAppKey && appKeyStillRefused ? "the other apps' calls delivered since then; that app's key is still refused (app keys, below)" : "delivered since then")
                : nil
            let notes = [at, resolved].compactMap { $0 }
            if !notes.isEmpty { print("            \(notes.joined(separator: "; "))") }
        }
        if let next = upstream["next_attempt_at_ms"] as? NSNumber, state != "ok" { print("next try:   \(when(next.int64Value))") }
        if int(upstream, "app_keys_held") > 0, let refusedAt = upstream["app_key_refused_at_ms"] as? NSNumber {
            print("app keys:   \(count(int(upstream, "app_keys_held"), "app's write key", plural: "apps' write keys")) refused by the upstream: the calls sent with it wait, and one batch tries it again every 5 minutes or at SIGHUP (\(count(int(upstream, "app_key_refusals"), "refusal")), the last \(when(refusedAt.int64Value))); the log names one of their message ids: fix the key in that app")
            let shown = upstream["app_keys_refused"] as? [String] ?? []
            let more = int(upstream, "app_keys_held") - Int64(shown.count)
            print("            key_sha256 \(shown.joined(separator: ", "))\(more > 0 ? " and \(more) more" : "") (printf %s KEY | sha256sum | cut -c1-12 tells which app's); while the spool is at least half full, new calls sent with them are answered 503")
        }
        if let advice = Self.advice(state) { print("to do:      \(advice)") }
    }

    /// What the operator should do in `state`, or nil when nothing.
    static func advice(_ state: String) -> String? {
        switch state {
        case "paused_credentials":
            return "the upstream refused the write key: fix upstream.write_key_file (or the write_key credential), then reload the relay (systemctl reload plainflow-relay, or kill -HUP its process)"
        case "paused_configuration":
            return "no request can work as configured (the last error says why): fix upstream.url (or upstream.proxy, upstream.ca_file), then reload the relay (systemctl reload plainflow-relay, or kill -HUP its process)"
        case "retrying":
            return "nothing: calls are kept and sent when the upstream answers again (the relay's log says why it failed: journalctl -u plainflow-relay)"
        default:
            return nil
        }
    }
}

struct Send: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Send an identify call to the local daemon (exit 1 refused, 3 not running).")
    @OptionGroup var configOptions: ConfigOptions
    @Option(name: .customLong("user-id")) var userID: String?
    @Option(name: .customLong("anonymous-id")) var anonymousID: String?
    @Option(name: .customLong("trait"), help: "key=value; numbers, true, false and null are typed, anything else is a string.") var traits: [String] = []
    @Option(name: .customLong("write-key"), help: "Write key, when the relay has none configured.") var writeKey: String?

    func validate() throws {
        if userID == nil && anonymousID == nil { throw ValidationError("give --user-id or --anonymous-id") }
        for t in traits where !t.contains("=") { throw ValidationError("--trait \(t): expected key=value") }
    }

    func run() async throws {
        let settings = try configOptions.load().resolve()
        var call: [String: Any] = ["type": "identify"]
        if let userID { call["user_id"] = userID }
        if let anonymousID { call["anonymous_id"] = anonymousID }
        var t: [String: Any] = [:]
        for pair in traits {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let raw = String(parts[1])
            let typed = (try? JSONSerialization.jsonObject(with: Data(raw.utf8), options: .fragmentsAllowed)).flatMap { $0 is String ? nil : $0 }
            t[String(parts[0])] = typed ?? raw
        }
        if !t.isEmpty { call["traits"] = t }
        let body = try JSONSerialization.data(withJSONObject: call)
        let client = DaemonClient(settings: settings)
        let outcome = await client.request("/v1/identify", body: [UInt8](body), writeKey: writeKey)
        switch outcome {
        case .response(200, _, let reply):
            print(reply)
        case .response(let status, _, let reply) where (400..<500).contains(status) || status == 503:
            throw CommandFailure("refused", "the relay refused the call (HTTP \(status)): \(reply)")
        default:
            throw CommandFailure("not_running", client.notRunning(outcome), exitCode: Exit.notRunning)
        }
    }
}
