import RelayMessage

/// Where and how the relay listens, and the limits it enforces on what apps send.
public struct IngestOptions: Sendable {
    /// `host:port` for HTTP (and, if enabled, the line protocol) over TCP; nil disables TCP.
    public var tcpHost: String?
    public var tcpPort: Int
    /// Accept a non-loopback TCP address (off by default: the relay serves its own host).
    public var allowRemote: Bool
    /// Unix stream socket path; nil disables it.
    public var unixPath: String?
    /// Permissions of the socket file: group membership is what lets an app write.
    public var unixMode: UInt16
    /// Group to own the socket file; nil keeps the process's group.
    public var unixGroup: String?
    /// Whether TCP connections may speak the line protocol too.
    public var lineProtocolOnTCP: Bool

    public var limits: MessageLimits
    /// Largest request body, after decompression.
    public var maxRequestBytes: Int
    /// Most messages in one batch request.
    public var maxBatchMessages: Int
    public var maxConnections: Int
    public var idleTimeoutSeconds: Int64
    /// Longest a client may take to send one HTTP request (headers and body): `408` after it.
    public var requestTimeoutSeconds: Int64
    /// Seconds an app is told to wait (`Retry-After`) when the disk refuses
    /// writes (a full spool tells the wait until the forwarder next tries).
    public var retryAfterSeconds: Int
    /// The relay holds an upstream write key, so apps need none.
    public var relayHasWriteKey: Bool
    /// When set, only these keys are accepted from apps (401 otherwise).
    public var acceptedWriteKeys: [String]?
    /// How long shutdown waits for open connections to finish.
    public var drainTimeoutSeconds: Int64
    /// Payload bytes waiting for the spool's commit, all connections together,
    /// past which new calls are refused (503, retry in a second): memory stays
    /// bounded when the disk stalls however many apps keep sending.
    public var maxPendingBytes: Int

    public init(
        tcpHost: String? = "127.0.0.1", tcpPort: Int = 8787, allowRemote: Bool = false,
        unixPath: String? = "/run/plainflow-relay/relay.sock", unixMode: UInt16 = 0o660, unixGroup: String? = nil,
        lineProtocolOnTCP: Bool = false, limits: MessageLimits = MessageLimits(),
        maxRequestBytes: Int = 500 * 1024, maxBatchMessages: Int = 2500, maxConnections: Int = 1024,
        idleTimeoutSeconds: Int64 = 300, requestTimeoutSeconds: Int64 = 30, retryAfterSeconds: Int = 5, relayHasWriteKey: Bool = false,
        acceptedWriteKeys: [String]? = nil, drainTimeoutSeconds: Int64 = 5, maxPendingBytes: Int = 64 << 20
    ) {
        self.tcpHost = tcpHost
        self.tcpPort = tcpPort
        self.allowRemote = allowRemote
        self.unixPath = unixPath
        self.unixMode = unixMode
        self.unixGroup = unixGroup
        self.lineProtocolOnTCP = lineProtocolOnTCP
        self.limits = limits
        self.maxRequestBytes = maxRequestBytes
        self.maxBatchMessages = maxBatchMessages
        self.maxConnections = maxConnections
        self.idleTimeoutSeconds = idleTimeoutSeconds
        self.requestTimeoutSeconds = requestTimeoutSeconds
        self.retryAfterSeconds = retryAfterSeconds
        self.relayHasWriteKey = relayHasWriteKey
        self.acceptedWriteKeys = acceptedWriteKeys
        self.drainTimeoutSeconds = drainTimeoutSeconds
        self.maxPendingBytes = maxPendingBytes
    }
}
