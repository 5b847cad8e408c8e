// Telemetry: swift-metrics backed by a Prometheus registry, bootstrapped
// once per process, and the status document of `GET /v1/status`.

import Logging
import Metrics
import Prometheus
import RelayForward
import RelayMessage
import RelaySpool
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The process-wide metrics registry.
public enum Telemetry {
    private static let bootstrap: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        // Every series carries the same `host` label, whichever module made it.
        factory.nameAndLabelSanitizer = { name, labels in
            (name, labels.contains { $0.0 == "host" } ? labels : labels + [("host", Telemetry.hostName)])
        }
        MetricsSystem.bootstrap(factory)
        return registry
    }()

    /// The registry (bootstrapping swift-metrics on first use).
    public static var registry: PrometheusCollectorRegistry { bootstrap }

    /// The host name, for the `host` label a fleet's dashboards group by.
    public static let hostName: String = {
        var buf = [CChar](repeating: 0, count: 256)
        guard gethostname(&buf, buf.count) == 0 else { return "unknown" }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }()
}

/// Builds `/metrics` and `/v1/status` from the live relay: from counters in
/// memory only (the spool's and the forwarder's), never a query, so both
/// answer in microseconds whatever the spool holds.
///
/// Levels (depth, bytes, ages) are gauges. Totals (`*_total`) are Prometheus
/// counters: the spool and the forwarder keep exact running totals, and each
/// scrape adds what they grew by since the last one.
final class RelayObserver: Sendable {
    private let spool: Spool
    private let forwarder: Forwarder
    private let listeners = Mutex<[String]>([])
    private let depth = Metrics.Gauge(label: "plainflow_spool_messages")
    private let bytes = Metrics.Gauge(label: "plainflow_spool_bytes")
    private let oldestAge = Metrics.Gauge(label: "plainflow_spool_oldest_age_seconds")
    private let deadLetters = Metrics.Gauge(label: "plainflow_spool_dead_letters")
    private let deadLetterBytes = Metrics.Gauge(label: "plainflow_spool_dead_letter_bytes")
    private let dedupeIDs = Metrics.Gauge(label: "plainflow_spool_dedupe_ids")
    private let upstreamFailing = Metrics.Gauge(label: "plainflow_upstream_consecutive_failures")
    private let appKeysHeld = Metrics.Gauge(label: "plainflow_upstream_app_keys_held")
    /// The totals, in the order `metrics()` reads them.
    private static let counterNames = [
        "plainflow_spool_expired_total", "plainflow_spool_dropped_total", "plainflow_spool_commits_total",
        "plainflow_upstream_delivered_messages_total", "plainflow_upstream_requests_total",
        "plainflow_upstream_dead_lettered_messages_total", "plainflow_upstream_app_key_refusals_total",
    ]
    private let counters = RelayObserver.counterNames.map { Metrics.Counter(label: $0) }
    /// What each counter was last raised to.
    private let totals = Mutex([Int64](repeating: 0, count: RelayObserver.counterNames.count))
    private let started = Telemetry.nowMillis()

    init(spool: Spool, forwarder: Forwarder) {
        self.spool = spool
        self.forwarder = forwarder
    }

    func setListeners(_ l: [String]) { listeners.withLock { $0 = l } }

    func metrics() -> [UInt8] {
        let s = spool.stats
        let u = forwarder.status
        depth.record(s.depth)
        bytes.record(s.bytes)
        oldestAge.record(Double(s.oldestReceivedAtMillis.map { max(0, Telemetry.nowMillis() - $0) } ?? 0) / 1000)
        deadLetters.record(s.deadLetters)
        deadLetterBytes.record(s.deadLetterBytes)
        dedupeIDs.record(s.dedupeIDs)
        upstreamFailing.record(u.consecutiveFailures)
        appKeysHeld.record(Int64(forwarder.refusedAppKeys.fingerprints(nowMillis: Telemetry.nowMillis(), max: 0).total))
        let now = [s.expired, s.dropped, s.commits, u.delivered, u.requests, u.deadLettered, u.appKeyRefusals]
        totals.withLock { last in
            for i in counters.indices where now[i] > last[i] {
                counters[i].increment(by: now[i] - last[i])
                last[i] = now[i]
            }
        }
        return Telemetry.documented(Telemetry.registry.emitToBuffer())
    }

    func status() -> [UInt8] {
        let u = forwarder.status
        let now = Telemetry.nowMillis()
        let refused = forwarder.refusedAppKeys.fingerprints(nowMillis: now, max: 20)
        func opt(_ v: Int64?) -> JSONValue { v.map { .int($0) } ?? .null }
        return JSONValue.object([
            "ok": .bool(true),
            "version": .string(RelayVersion.current),
            "host": .string(Telemetry.hostName),
            "uptime_seconds": .int((now - started) / 1000),
            "listeners": .array(listeners.withLock { $0 }.map { .string($0) }),
            "spool": Telemetry.spoolDocument(spool.stats, path: spool.options.path, maxBytes: spool.options.maxBytes, nowMillis: now),
            "upstream": .object([
                "state": .string(u.state.rawValue),
                "state_since_ms": opt(u.stateSinceMillis),
                "consecutive_failures": .int(Int64(u.consecutiveFailures)),
                "last_error": u.lastError.map { .string($0) } ?? .null,
                "last_error_at_ms": opt(u.lastErrorAtMillis),
                "last_success_at_ms": opt(u.lastSuccessAtMillis),
                "next_attempt_at_ms": opt(u.nextAttemptAtMillis),
                "requests": .int(u.requests),
                "delivered": .int(u.delivered),
                "dead_lettered": .int(u.deadLettered),
                "app_key_refusals": .int(u.appKeyRefusals),
                "app_key_refused_at_ms": opt(u.appKeyRefusedAtMillis),
                // The apps' keys the upstream refuses now (their calls wait), and the first 20 by fingerprint (the log's key_sha256).
                "app_keys_held": .int(Int64(refused.total)),
                "app_keys_refused": .array(refused.shown.map { .string($0) }),
            ]),
        ]).encoded()
    }
}

extension Telemetry {
    /// The spool's numbers as `/v1/status` shows them under "spool", and
    /// `spool stats --json` prints them: one naming for both.
    /// - Parameter maxBytes: the configured bound, when known.
    /// - Parameter live: `s` is the running spool's, with the counts since it
    ///   opened (`dropped`, `expired`, `dedupe_evicted`, `commits`); read from
    ///   the file they are unknown, and null.
    public static func spoolDocument(_ s: SpoolStats, path: String, maxBytes: Int64?, nowMillis: Int64, live: Bool = true) -> JSONValue {
        var doc: JSONObject = [
            "path": .string(path),
            "depth": .int(s.depth),
            "bytes": .int(s.bytes),
            "total_bytes": .int(s.totalBytes),
            "oldest_age_seconds": s.oldestReceivedAtMillis.map { .int(max(0, nowMillis - $0) / 1000) } ?? .null,
            "oldest_received_at_ms": s.oldestReceivedAtMillis.map { .int($0) } ?? .null,
            "dead_letters": .int(s.deadLetters),
            "dead_letter_bytes": .int(s.deadLetterBytes),
            "dedupe_ids": .int(s.dedupeIDs),
            "dedupe_bytes": .int(s.dedupeBytes),
            "rejected": .int(s.rejected),
            "dropped": live ? .int(s.dropped) : .null,
            "expired": live ? .int(s.expired) : .null,
            "dedupe_evicted": live ? .int(s.dedupeEvicted) : .null,
            "commits": live ? .int(s.commits) : .null,
        ]
        if let maxBytes { _ = doc.updateValue(.int(maxBytes), forKey: "max_bytes") }
        return .object(doc)
    }
}

extension Telemetry {
    static func nowMillis() -> Int64 { Spool.wallClockMillis() }
}

extension Telemetry {
    /// What each family means, for its `# HELP` line (swift-metrics, which
    /// ingest and forward record through, has no place for it).
    static let help: [String: String] = [
        "plainflow_ingest_messages_total": "Calls answered, by result: stored, duplicate, invalid, unavailable (503: the spool could not take it), key_refused (503: the upstream refuses the app's write key).",
        "plainflow_ingest_requests_unauthorized_total": "Requests refused for their write key.",
        "plainflow_ingest_ack_duration_seconds": "From a request's body in hand to its answer after the durable commit.",
        "plainflow_spool_messages": "Messages queued in the spool.",
        "plainflow_spool_bytes": "Bytes of the messages queued in the spool.",
        "plainflow_spool_oldest_age_seconds": "Age of the oldest queued message (0 when none).",
        "plainflow_spool_dead_letters": "Dead letters kept (see plainflow-relay dead-letters list).",
        "plainflow_spool_dead_letter_bytes": "Bytes of the dead letters kept.",
        "plainflow_spool_dedupe_ids": "Message ids remembered for the dedupe window.",
        "plainflow_spool_commits_total": "Spool transactions committed.",
        "plainflow_spool_dropped_total": "Queued messages deleted to make room under on_full = drop_oldest.",
        "plainflow_spool_expired_total": "Queued messages moved to dead letters for being older than max_age.",
        "plainflow_upstream_requests_total": "Requests sent upstream.",
        "plainflow_upstream_request_duration_seconds": "How long each upstream request took, answered or not.",
        "plainflow_upstream_delivered_messages_total": "Messages the upstream accepted.",
        "plainflow_upstream_dead_lettered_messages_total": "Messages the upstream refused for good (moved to dead letters).",
        "plainflow_upstream_app_key_refusals_total": "Batches held back because the upstream refused the app's own write key.",
        "plainflow_upstream_app_keys_held": "Apps' write keys the upstream refuses now (their calls wait for the next try).",
        "plainflow_upstream_consecutive_failures": "Failed upstream attempts in a row (0 while delivering).",
    ]

    /// The exposition `text` with a `# HELP` line before the `# TYPE` line
    /// of each family `help` describes.
    static func documented(_ text: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(text.count + 2048)
        var lineStart = text.startIndex
        while lineStart < text.endIndex {
            let lineEnd = text[lineStart...].firstIndex(of: UInt8(ascii: "\n")).map { $0 + 1 } ?? text.endIndex
            let line = text[lineStart..<lineEnd]
            if line.starts(with: "# TYPE ".utf8) {
                let name = String(decoding: line.dropFirst(7).prefix { $0 != UInt8(ascii: " ") }, as: UTF8.self)
                if let meaning = help[name] { out += "# HELP \(name) \(meaning)\n".utf8 }
            }
            out += line
            lineStart = lineEnd
        }
        return out
    }
}

/// The relay's version string.
public enum RelayVersion {
    public static let current = "0.1.0"
}
