import RelayMessage

/// The answer to one call, independent of the protocol that carries it.
public struct IngestReply: Sendable, Hashable {
    /// HTTP status (the line protocol reports only `ok`).
    public var status: Int
    /// JSON body.
    public var body: [UInt8]
    /// Seconds for `Retry-After`, on 503.
    public var retryAfterSeconds: Int?

    public init(status: Int, body: [UInt8], retryAfterSeconds: Int? = nil) {
        self.status = status
        self.body = body
        self.retryAfterSeconds = retryAfterSeconds
    }

    /// `{"ok":false,"errors":[...]}` with the given status.
    static func failure(_ status: Int, _ errors: [String], retryAfter: Int? = nil) -> IngestReply {
        IngestReply(status: status, body: JSONValue.object([
            "ok": .bool(false), "errors": .array(errors.map { .string($0) }),
        ]).encoded(), retryAfterSeconds: retryAfter)
    }
}
