// Operator commands on the spool file itself (daemon running or not):
// `spool stats`, `dead-letters list|replay|purge`, `rejected list`.
// Tables for people (sizes and ages readable), `--json` for scripts (exact
// numbers, snake_case, as `/v1/status`).

import ArgumentParser
import Foundation
import RelayDaemon
import RelayForward
import RelayMessage
import RelaySpool

/// Where the spool is: `--spool`, or the configuration's `spool.path`.
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

struct SpoolCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "spool", abstract: "Inspect the spool file.", subcommands: [Stats.self])

    struct Stats: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Depth, bytes, oldest message, dead letters, rejected calls.")
        @OptionGroup var location: SpoolLocation
        @Flag(help: "Print JSON (exact numbers; the names of /v1/status's \"spool\").") var json = false

        @Flag(help: ArgumentHelp("Also the queued messages by write key (an app's own key by its key_sha256, as the log shows it); reads every queued row.",
                                 discussion: "key_sha256 is the first 12 hex digits of the key's SHA-256: printf %s KEY | sha256sum | cut -c1-12"))
        var byKey = false

        func run() throws {
            let admin = try location.open()
            let s = try admin.stats()
            // The configured bound, when this is the configuration's spool.
            let maxBytes: Int64? = location.spool == nil ? (try? location.settings())?.spool.maxBytes : nil
            let keys = byKey ? try admin.backlogByWriteKey() : []
            if json {
                var document = Telemetry.spoolDocument(s, path: admin.path, maxBytes: maxBytes, nowMillis: Spool.wallClockMillis(), live: false)
                if byKey, case .object(var o) = document {
                    o["by_write_key"] = .array(keys.map { k -> JSONValue in
                        .object([
                            "key_sha256": k.writeKey.isEmpty ? .null : .string(RefusedAppKeys.fingerprint(k.writeKey)),
                            "messages": .int(k.messages), "bytes": .int(k.bytes), "oldest_received_at_ms": .int(k.oldestReceivedAtMillis),
                        ])
                    })
                    document = .object(o)
                }
                printJSON(document)
                return
            }
            print("spool:        \(admin.path)")
            print("queued:       \(count(s.depth, "message")), \(ByteCount.format(s.bytes))")
            print("oldest:       \(when(s.oldestReceivedAtMillis))")
            print("dead letters: \(count(s.deadLetters)), \(ByteCount.format(s.deadLetterBytes)) (dead-letters list)")
            print("dedupe ids:   \(count(s.dedupeIDs)), \(ByteCount.format(s.dedupeBytes)) (ids of sent calls, kept 24 h to drop resent duplicates)")
            print("on disk:      \(ByteCount.format(s.totalBytes))\(maxBytes.map { " of spool.max_bytes \(ByteCount.format($0))" } ?? "")")
            print("rejected:     \(count(s.rejected, "refused call")) kept as samples, the latest 1,000 (rejected list)")
            guard byKey else { return }
            print("by write key:\(keys.isEmpty ? " nothing queued" : "")")
            for k in keys {
                let who = k.writeKey.isEmpty ? "the relay's own key    " : "key_sha256 \(RefusedAppKeys.fingerprint(k.writeKey))"
                print("  \(who)  \(count(k.messages, "message")), \(ByteCount.format(k.bytes)), oldest \(when(k.oldestReceivedAtMillis))")
            }
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
        @Flag(help: "Print JSON: [{\"id\", \"message_id\", \"reason\", \"status\", \"attempts\", \"received_at_ms\", \"dead_at_ms\", \"payload\": {...}}].") var json = false

        func run() throws {
            let letters = try location.open().deadLetters(limit: limit)
            if json {
                printJSON(.array(letters.map { d -> JSONValue in
                    .object([
                        "id": .int(d.id), "message_id": .string(d.messageID), "reason": .string(d.reason),
                        "status": d.status.map { .int(Int64($0)) } ?? .null, "attempts": .int(Int64(d.attempts)),
                        "received_at_ms": .int(d.receivedAtMillis), "dead_at_ms": .int(d.deadAtMillis),
                        // The message as the upstream would get it: an object, not JSON in a string.
                        "payload": (try? JSONValue.parse(Array(d.payload.utf8), maxDepth: 1_000)) ?? .string(d.payload),
                    ])
                }))
                return
            }
            if letters.isEmpty { print("no dead letters"); return }
            let now = Spool.wallClockMillis()
            printTable(["ID", "MESSAGE ID", "STATUS", "ATTEMPTS", "DEAD FOR", "REASON"], letters.map {
                [String($0.id), $0.messageID, $0.status.map(String.init) ?? "-", String($0.attempts),
                 duration((now - $0.deadAtMillis) / 1000), String($0.reason.prefix(80))]
            })
        }
    }

    struct Replay: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Put dead letters back in the outbox, to be sent again.",
            discussion: "Exit 1 when an ID is not a dead letter (the others are replayed).")
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
                print("\(r.alreadyQueued) more removed from dead letters: the relay already holds their message_id (queued, or delivered within the dedupe window)")
            }
            if !r.notFound.isEmpty {
                throw CommandFailure("not_found", "no dead letter with id \(r.notFound.map(String.init).joined(separator: ", ")); `plainflow-relay dead-letters list` shows the ids")
            }
        }
    }

    struct Purge: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete dead letters for good.")
        @OptionGroup var location: SpoolLocation
        @Option(name: .customLong("older-than"), help: "Only those dead longer than this: 30s, 15m, 12h, 7d.") var olderThan: Age?

        func run() throws {
            let cutoff = olderThan.map { Spool.wallClockMillis() - $0.seconds * 1000 }
            let n = try location.open().purgeDeadLetters(deadBeforeMillis: cutoff)
            print("purged \(n) dead letter(s)")
        }
    }
}

/// A duration on the command line: 30s, 15m, 12h, 7d (or plain seconds).
struct Age: ExpressibleByArgument {
    let seconds: Int64

    init?(argument: String) {
        guard let seconds = Self.seconds(argument) else { return nil }
        self.seconds = seconds
    }

    static func seconds(_ s: String) -> Int64? {
        if let n = Int64(s), n >= 0 { return n }
        guard let unit = s.last, let n = Int64(s.dropLast()), n >= 0 else { return nil }
        switch unit {
        case "s": return n
        case "m": return n * 60
        case "h": return n * 3600
        case "d": return n * 86400
        default: return nil
        }
    }

    static var defaultCompletionKind: CompletionKind { .list(["1h", "1d", "7d", "30d"]) }
}

struct RejectedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rejected", abstract: "Samples of calls the relay refused.", subcommands: [List.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "What apps sent wrong, newest first.")
        @OptionGroup var location: SpoolLocation
        @Option(help: "At most this many.") var limit = 20
        @Flag(help: "Print JSON: [{\"id\", \"received_at_ms\", \"errors\": [...], \"sample\"}].") var json = false

        func run() throws {
            let calls = try location.open().rejected(limit: limit)
            if json {
                printJSON(.array(calls.map { c -> JSONValue in
                    .object([
                        "id": .int(c.id), "received_at_ms": .int(c.receivedAtMillis),
                        "errors": .array(Self.errors(c).map { .string($0) }), "sample": .string(c.sample),
                    ])
                }))
                return
            }
            if calls.isEmpty { print("no rejected calls"); return }
            for c in calls {
                print("#\(c.id) at \(when(c.receivedAtMillis))")
                for e in Self.errors(c) { print("  - \(e)") }
                print("  sent: \(c.sample.prefix(200))")
            }
        }

        /// The stored JSON array of errors as a list.
        static func errors(_ c: RejectedCall) -> [String] {
            (try? JSONSerialization.jsonObject(with: Data(c.errors.utf8))) as? [String] ?? [c.errors]
        }
    }
}
