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

    /// `200 {"message_id":"…","ok":true}` (plus `"duplicate":true`): the
    /// answer to nearly every call, so written directly, in canonical key order.
    static func stored(messageID: String, duplicate: Bool) -> IngestReply {
        var body: [UInt8] = []
        body.reserveCapacity(messageID.utf8.count + 48)
        body.append(contentsOf: duplicate ? #"{"duplicate":true,"message_id":"#.utf8 : #"{"message_id":"#.utf8)
        JSONValue.encodeString(messageID, into: &body)
        body.append(contentsOf: #","ok":true}"#.utf8)
        return IngestReply(status: 200, body: body)
    }

    /// `{"errors":[...],"ok":false,"status":N}`. The status is in the body
    /// too, so a line-protocol client can tell "retry later" (503) from
    /// "fix the call" (400) without an HTTP status line.
    static func failure(_ status: Int, _ errors: [String], retryAfter: Int? = nil, extra: JSONObject = [:]) -> IngestReply {
        var body: JSONObject = ["errors": .array(errors.map { .string($0) }), "ok": .bool(false), "status": .int(Int64(status))]
        for (key, value) in extra { body[key] = value }
        return IngestReply(status: status, body: JSONValue.object(body).encoded(), retryAfterSeconds: retryAfter)
    }
}
