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
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
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
final class RelayObserver: Sendable {
    private let spool: Spool
    private let forwarder: Forwarder
    private let listeners = Mutex<[String]>([])
    private let depth: Metrics.Gauge
    private let bytes: Metrics.Gauge
    private let oldestAge: Metrics.Gauge
    private let deadLetters: Metrics.Gauge
    private let deadLetterBytes: Metrics.Gauge
    private let dedupeIDs: Metrics.Gauge
    private let expired: Metrics.Gauge
    private let upstreamDelivered: Metrics.Gauge
    private let upstreamRequests: Metrics.Gauge
    private let upstreamFailing: Metrics.Gauge
    private let dropped: Metrics.Gauge
    private let commits: Metrics.Gauge
    private let started = Telemetry.nowMillis()

    init(spool: Spool, forwarder: Forwarder) {
        self.spool = spool
        self.forwarder = forwarder
        let host = [("host", Telemetry.hostName)]
        depth = Metrics.Gauge(label: "plainflow_spool_messages", dimensions: host)
        bytes = Metrics.Gauge(label: "plainflow_spool_bytes", dimensions: host)
        oldestAge = Metrics.Gauge(label: "plainflow_spool_oldest_age_seconds", dimensions: host)
        deadLetters = Metrics.Gauge(label: "plainflow_spool_dead_letters", dimensions: host)
        deadLetterBytes = Metrics.Gauge(label: "plainflow_spool_dead_letter_bytes", dimensions: host)
        dedupeIDs = Metrics.Gauge(label: "plainflow_spool_dedupe_ids", dimensions: host)
        expired = Metrics.Gauge(label: "plainflow_spool_expired_total", dimensions: host)
        dropped = Metrics.Gauge(label: "plainflow_spool_dropped_total", dimensions: host)
        commits = Metrics.Gauge(label: "plainflow_spool_commits_total", dimensions: host)
        upstreamDelivered = Metrics.Gauge(label: "plainflow_upstream_delivered_messages_total", dimensions: host)
        upstreamRequests = Metrics.Gauge(label: "plainflow_upstream_requests_total", dimensions: host)
        upstreamFailing = Metrics.Gauge(label: "plainflow_upstream_consecutive_failures", dimensions: host)
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
        expired.record(s.expired)
        dropped.record(s.dropped)
        commits.record(s.commits)
        upstreamDelivered.record(u.delivered)
        upstreamRequests.record(u.requests)
        upstreamFailing.record(u.consecutiveFailures)
        return Telemetry.registry.emitToBuffer()
    }

    func status() -> [UInt8] {
        let s = spool.stats
        let u = forwarder.status
        let now = Telemetry.nowMillis()
        func opt(_ v: Int64?) -> JSONValue { v.map { .int($0) } ?? .null }
        return JSONValue.object([
            "ok": .bool(true),
            "version": .string(RelayVersion.current),
            "host": .string(Telemetry.hostName),
            "uptime_seconds": .int((now - started) / 1000),
            "listeners": .array(listeners.withLock { $0 }.map { .string($0) }),
            "spool": .object([
                "path": .string(spool.options.path),
                "depth": .int(s.depth),
                "bytes": .int(s.bytes),
                "total_bytes": .int(s.totalBytes),
                "max_bytes": .int(spool.options.maxBytes),
                "oldest_age_seconds": s.oldestReceivedAtMillis.map { .int(max(0, now - $0) / 1000) } ?? .null,
                "dead_letters": .int(s.deadLetters),
                "dead_letter_bytes": .int(s.deadLetterBytes),
                "dedupe_ids": .int(s.dedupeIDs),
                "dedupe_bytes": .int(s.dedupeBytes),
                "rejected": .int(s.rejected),
                "dropped": .int(s.dropped),
                "expired": .int(s.expired),
                "dedupe_evicted": .int(s.dedupeEvicted),
                "commits": .int(s.commits),
            ]),
            "upstream": .object([
                "state": .string(u.state.rawValue),
                "consecutive_failures": .int(Int64(u.consecutiveFailures)),
                "last_error": u.lastError.map { .string($0) } ?? .null,
                "last_success_at_ms": opt(u.lastSuccessAtMillis),
                "next_attempt_at_ms": opt(u.nextAttemptAtMillis),
                "requests": .int(u.requests),
                "delivered": .int(u.delivered),
                "dead_lettered": .int(u.deadLettered),
            ]),
        ]).encoded()
    }
}

extension Telemetry {
    static func nowMillis() -> Int64 { Spool.wallClockMillis() }
}

/// The relay's version string.
public enum RelayVersion {
    public static let current = "0.1.0"
}
