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

    /// `{"code":"invalid","errors":[...],"message":"...","ok":false,"status":N}`
    /// (plus `"retry_after":S` on 503). The status is in the body too, so a
    /// line-protocol client can tell "retry later" (503, after `retry_after`
    /// seconds) from "fix the call" (400) without an HTTP status line.
    /// `code` and `message` are where Segment-style SDKs look for an error
    /// (RudderStack's and Customer.io's Python SDKs read `payload['code']`;
    /// without it they take a 400 for a network error and resend the batch
    /// ten times): `message` is the first errors in one line, `errors` all.
    static func failure(_ status: Int, _ errors: [String], retryAfter: Int? = nil, code: String? = nil, extra: JSONObject = [:]) -> IngestReply {
        let shown = errors.prefix(3).joined(separator: "; ")
        let message = errors.count > 3 ? "\(shown); and \(errors.count - 3) more (see errors)" : shown
        var body: JSONObject = [
            "code": .string(code ?? Self.code(status)), "errors": .array(errors.map { .string($0) }), "message": .string(message), "ok": .bool(false),
        ]
        if let retryAfter { body["retry_after"] = .int(Int64(retryAfter)) }
        body["status"] = .int(Int64(status))
        for (key, value) in extra { body[key] = value }
        return IngestReply(status: status, body: JSONValue.object(body).encoded(), retryAfterSeconds: retryAfter)
    }

    /// A short, stable name for a refusal, for programs that branch on it.
    static func code(_ status: Int) -> String {
        switch status {
        case 400: "invalid"
        case 401: "unauthorized"
        case 404: "not_found"
        case 405: "method_not_allowed"
        case 408: "timeout"
        case 413: "too_large"
        case 415: "unsupported_encoding"
        case 429: "rate_limited"
        case 503: "unavailable"
        default: status >= 500 ? "internal" : "error"
        }
    }
}
