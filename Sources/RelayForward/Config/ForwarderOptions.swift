// ForwarderOptions: what the operator configures for forwarding (DESIGN §5).
// Read by the loop at the start of every round, so a reload (SIGHUP)
// applies from the next batch on; `maxInFlight` is read once at start.

/// How the forwarder sends.
public struct ForwarderOptions: Sendable {
    /// Base URL: batches go to `{upstream}/v1/batch`.
    public var upstream: String
    /// The relay's write key; nil to use each message's own (sent by the app).
    public var writeKey: String?
    /// Most messages in one request: an upper bound only; bytes fill a batch.
    public var maxBatchCount: Int
    /// Most bytes in one request body (before gzip). Plainflow takes 500 KB.
    public var maxBatchBytes: Int
    /// How long a batch that is not full may wait for more messages,
    /// counted from its oldest message's `received_at`.
    public var flushIntervalMillis: Int64
    /// Most upstream requests started per second (0: no limit).
    public var maxRequestsPerSecond: Double
    /// How long forwarding stays paused after 401/403 or a configuration
    /// error (3xx, 404, 405, ...) before it probes the upstream again.
    public var credentialRetryMillis: Int64
    public var backoff: BackoffPolicy
    public var transport: TransportOptions
    /// Send request bodies gzip-compressed (`Content-Encoding: gzip`).
    public var gzip: Bool
    /// Most requests in flight at once (each on its own connection). Read
    /// at start; a reload does not change it.
    public var maxInFlight: Int

    public init(
        upstream: String = "https://pipe.plainflow.net",
        writeKey: String? = nil,
        maxBatchCount: Int = 2_500,
        maxBatchBytes: Int = 500 * 1024,
        flushIntervalMillis: Int64 = 200,
        maxRequestsPerSecond: Double = 100,
        credentialRetryMillis: Int64 = 5 * 60 * 1000,
        backoff: BackoffPolicy = BackoffPolicy(),
        transport: TransportOptions = TransportOptions(),
        gzip: Bool = false,
        maxInFlight: Int = 2
    ) {
        self.gzip = gzip
        self.maxInFlight = maxInFlight
        self.upstream = upstream
        self.writeKey = writeKey
        self.maxBatchCount = maxBatchCount
        self.maxBatchBytes = maxBatchBytes
        self.flushIntervalMillis = flushIntervalMillis
        self.maxRequestsPerSecond = maxRequestsPerSecond
        self.credentialRetryMillis = credentialRetryMillis
        self.backoff = backoff
        self.transport = transport
    }

    /// The batch endpoint.
    public var batchURL: String {
        (upstream.hasSuffix("/") ? String(upstream.dropLast()) : upstream) + "/v1/batch"
    }
}

extension ForwarderOptions: CustomStringConvertible, CustomDebugStringConvertible {
    /// The settings without the write key (which is a secret): safe to log.
    public var description: String {
        "forwarding to \(upstream) (write key \(writeKey == nil ? "from apps" : "configured"), "
            + "batches up to \(maxBatchCount) messages / \(maxBatchBytes) bytes, flush \(flushIntervalMillis) ms, "
            + "at most \(maxRequestsPerSecond) requests/s, \(maxInFlight) in flight, gzip \(gzip ? "on" : "off"))"
    }
    public var debugDescription: String { description }
}
