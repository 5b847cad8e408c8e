// Operator commands: they read the spool file directly (daemon running or
// not), or ask the running daemon over its socket. Tables for people,
// `--json` for scripts. Exit codes: 0 done, 1 failed, 3 daemon not running
// (`status`), 64 usage.

import ArgumentParser
import Foundation
import RelayDaemon
import RelayForward
import RelaySpool

/// Where the spool and the daemon are: `--spool`, or the configuration's.
struct SpoolLocation: ParsableArguments {
    @OptionGroup var configOptions: ConfigOptions
    @Option(help: "The spool file (default: the configuration's spool.path).") var spool: String?

    func settings() throws -> ResolvedSettings { try configOptions.load().resolve() }

    func path() throws -> String {
        if let spool { return spool }
        return try settings().spool.path
    }

    func open() throws -> SpoolAdmin { try SpoolAdmin(path: path()) }
}

/// Formats unix milliseconds for tables.
func when(_ ms: Int64?) -> String {
    guard let ms else { return "-" }
    return Date(timeIntervalSince1970: Double(ms) / 1000).formatted(.iso8601)
}

func printJSON<T: Encodable>(_ value: T) throws {
    let e = JSONEncoder()
    e.outputFormatting = [.prettyPrinted, .sortedKeys]
    print(String(decoding: try e.encode(value), as: UTF8.self))
}

/// Left-aligned columns.
func printTable(_ header: [String], _ rows: [[String]]) {
    let all = [header] + rows
    let widths = header.indices.map { i in all.map { $0[i].count }.max() ?? 0 }
    for row in all {
        print(row.enumerated().map { i, c in i == row.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }.joined(separator: "  "))
    }
}

struct SpoolCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "spool", abstract: "Inspect the spool file.", subcommands: [Stats.self])

    struct Stats: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Depth, bytes, oldest message, dead letters, rejected calls.")
        @OptionGroup var location: SpoolLocation
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            let s = try location.open().stats()
            if json { try printJSON(s); return }
            print("spool:        \(try location.path())")
            print("queued:       \(s.depth) messages, \(s.bytes) bytes")
            print("oldest:       \(when(s.oldestReceivedAtMillis))")
            print("dead letters: \(s.deadLetters)")
            print("rejected:     \(s.rejected) (sample)")
        }
    }
}

struct DeadLettersCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dead-letters", abstract: "List, replay or purge messages the upstream refused or that expired.",
        subcommands: [List.self, Replay.self, Purge.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List dead letters, newest first.")
        @OptionGroup var location: SpoolLocation
        @Option(help: "At most this many.") var limit = 50
        @Flag(help: "Print JSON (with payloads).") var json = false

        func run() throws {
            let letters = try location.open().deadLetters(limit: limit)
            if json { try printJSON(letters); return }
            if letters.isEmpty { print("no dead letters"); return }
            printTable(["ID", "MESSAGE ID", "STATUS", "ATTEMPTS", "DEAD AT", "REASON"], letters.map {
                [String($0.id), $0.messageID, $0.status.map(String.init) ?? "-", String($0.attempts), when($0.deadAtMillis), String($0.reason.prefix(80))]
            })
        }
    }

    struct Replay: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Put dead letters back in the outbox, to be sent again.")
        @OptionGroup var location: SpoolLocation
        @Flag(help: "Replay every dead letter.") var all = false
        @Argument(help: "Dead letter IDs (from `dead-letters list`).") var ids: [Int64] = []

        func validate() throws {
            if all == !ids.isEmpty { throw ValidationError("give dead letter IDs or --all (not both)") }
        }

        func run() throws {
            let r = try location.open().replayDeadLetters(ids: all ? nil : ids)
            print("replayed \(r.replayed) message(s) into the outbox")
            if r.alreadyQueued > 0 {
                print("\(r.alreadyQueued) more removed from dead letters: a message with the same message_id is already queued")
            }
            if !r.notFound.isEmpty {
                throw ValidationError("no dead letter with id \(r.notFound.map(String.init).joined(separator: ", ")); see `plainflow-relay dead-letters list`")
            }
        }
    }

    struct Purge: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete dead letters for good.")
        @OptionGroup var location: SpoolLocation
        @Option(name: .customLong("older-than"), help: "Only those dead longer than this: 30s, 15m, 12h, 7d.") var olderThan: String?

        func run() throws {
            var cutoff: Int64?
            if let olderThan {
                guard let seconds = Self.seconds(olderThan) else { throw ValidationError("--older-than: expected a duration such as 30s, 15m, 12h or 7d") }
                cutoff = Int64(Date().timeIntervalSince1970 * 1000) - seconds * 1000
            }
            let n = try location.open().purgeDeadLetters(deadBeforeMillis: cutoff)
            print("purged \(n) dead letter(s)")
        }

        static func seconds(_ s: String) -> Int64? {
            guard let unit = s.last, let n = Int64(s.dropLast()), n >= 0 else { return Int64(s) }
            switch unit {
            case "s": return n
            case "m": return n * 60
            case "h": return n * 3600
            case "d": return n * 86400
            default: return nil
            }
        }
    }
}

struct RejectedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rejected", abstract: "Samples of calls the relay refused.", subcommands: [List.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "What apps sent wrong, newest first.")
        @OptionGroup var location: SpoolLocation
        @Option(help: "At most this many.") var limit = 20
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            let calls = try location.open().rejected(limit: limit)
            if json { try printJSON(calls); return }
            if calls.isEmpty { print("no rejected calls"); return }
            for c in calls {
                print("#\(c.id) at \(when(c.receivedAtMillis))")
                let errors = (try? JSONSerialization.jsonObject(with: Data(c.errors.utf8))) as? [String] ?? [c.errors]
                for e in errors { print("  - \(e)") }
                print("  sent: \(c.sample.prefix(200))")
            }
        }
    }
}

/// Talks to the running daemon: its Unix socket if configured, else its TCP port.
struct DaemonClient {
    let settings: ResolvedSettings

    func request(_ path: String, body: [UInt8]? = nil, writeKey: String? = nil) async -> DeliveryOutcome {
        let transport = CurlTransport(options: TransportOptions(connectTimeoutMillis: 2000, totalTimeoutMillis: 10_000, userAgent: "plainflow-relay-cli"))
        let url: String
        var socket: String?
        if let unix = settings.ingest.unixPath, FileManager.default.fileExists(atPath: unix) {
            url = "http://relay\(path)"
            socket = unix
        } else if let host = settings.ingest.tcpHost {
            url = "http://\(host.contains(":") ? "[\(host)]" : host):\(settings.ingest.tcpPort)\(path)"
        } else {
            return .transportFailure(TransportFailure(code: 7, message: "no listener configured"))
        }
        return await transport.send(UpstreamRequest(url: url, body: body ?? [], writeKey: writeKey, isGet: body == nil, unixSocketPath: socket))
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The running daemon's view: listeners, spool, upstream. Exit 3 when it is not running.")
    @OptionGroup var configOptions: ConfigOptions
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let settings = try configOptions.load().resolve()
        let outcome = await DaemonClient(settings: settings).request("/v1/status")
        guard case .response(200, _, let body) = outcome,
              let doc = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] else {
            FileHandle.standardError.write(Data("plainflow-relay is not running (or not answering): \(outcome)\n".utf8))
            if let stats = try? SpoolAdmin(path: settings.spool.path).stats() {
                FileHandle.standardError.write(Data("spool \(settings.spool.path): \(stats.depth) queued, \(stats.deadLetters) dead letters\n".utf8))
            }
            throw ExitCode(3)
        }
        if json { print(body); return }
        let spool = doc["spool"] as? [String: Any] ?? [:]
        let upstream = doc["upstream"] as? [String: Any] ?? [:]
        print("plainflow-relay \(doc["version"] ?? "?") on \(doc["host"] ?? "?"), up \(doc["uptime_seconds"] ?? 0)s")
        print("listeners:  \((doc["listeners"] as? [String] ?? []).joined(separator: ", "))")
        print("spool:      \(spool["depth"] ?? 0) queued, \(spool["bytes"] ?? 0) of \(spool["max_bytes"] ?? 0) bytes, oldest \((spool["oldest_age_seconds"] as? Int).map { "\($0)s ago" } ?? "-")")
        print("            \(spool["dead_letters"] ?? 0) dead letters, \(spool["rejected"] ?? 0) rejected, \(spool["dropped"] ?? 0) dropped")
        print("upstream:   \(upstream["state"] ?? "?"), \(upstream["delivered"] ?? 0) delivered in \(upstream["requests"] ?? 0) requests, \(upstream["consecutive_failures"] ?? 0) consecutive failures")
        if let e = upstream["last_error"] as? String { print("last error: \(e)") }
    }
}

struct Send: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Send an identify call to the local daemon.")
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
        case .response(let status, _, let reply):
            FileHandle.standardError.write(Data("refused (HTTP \(status)): \(reply)\n".utf8))
            throw ExitCode(1)
        case .transportFailure(let f):
            FileHandle.standardError.write(Data("cannot reach plainflow-relay: \(f)\n".utf8))
            throw ExitCode(3)
        }
    }
}
