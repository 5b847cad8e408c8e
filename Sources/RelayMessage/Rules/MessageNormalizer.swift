// MessageNormalizer: the identify contract (DESIGN §3), and the common-field
// rules every call type shares.
//
// Owns: turning one decoded call into the canonical message the relay stores
// and forwards, or into the complete list of what is wrong with it.
// Invariants:
// - Pure: no I/O; the clock and the id generator are passed in.
// - Every error found is reported, each with its field path.
// - Output is canonical: top-level fields and reserved traits in snake_case,
//   `type`, `message_id`, `received_at` and `timestamp` always present.
// - Normalizing an already-normalized message yields the same bytes
//   (idempotent), and no non-reserved trait is ever dropped or renamed.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Limits the message rules enforce.
public struct MessageLimits: Sendable, Hashable {
    /// Largest canonical message, in bytes (the upstream's per-call limit).
    public var maxMessageBytes: Int
    /// Deepest JSON nesting accepted in a request.
    public var maxDepth: Int
    /// Longest `message_id`, in characters (exclusive bound: ids must be shorter).
    public var maxMessageIDLength: Int

    public init(maxMessageBytes: Int = 15 * 1024, maxDepth: Int = 64, maxMessageIDLength: Int = 100) {
        self.maxMessageBytes = maxMessageBytes
        self.maxDepth = maxDepth
        self.maxMessageIDLength = maxMessageIDLength
    }
}

/// What the normalizer needs from the outside world.
public struct NormalizeContext: Sendable {
    /// When the relay received the call.
    public var receivedAt: Date
    /// Makes a new message id (a UUID in production).
    public var makeMessageID: @Sendable () -> String
    /// Batch-level `context`, merged under each message's own.
    public var batchContext: [String: JSONValue]?
    /// Batch-level `integrations`, merged under each message's own.
    public var batchIntegrations: [String: JSONValue]?

    public init(
        receivedAt: Date,
        makeMessageID: @escaping @Sendable () -> String = { UUID().uuidString.lowercased() },
        batchContext: [String: JSONValue]? = nil,
        batchIntegrations: [String: JSONValue]? = nil
    ) {
        self.receivedAt = receivedAt
        self.makeMessageID = makeMessageID
        self.batchContext = batchContext
        self.batchIntegrations = batchIntegrations
    }
}

/// A call that passed the rules, in canonical form.
public struct NormalizedMessage: Sendable, Hashable {
    public let type: CallType
    public let messageID: String
    public let receivedAt: Date
    /// The canonical JSON document, as stored and forwarded.
    public let body: JSONValue
    /// `body` encoded: what the spool stores and the upstream receives.
    public let encoded: [UInt8]
}

/// Applies the message rules.
public struct MessageNormalizer: Sendable {
    public let limits: MessageLimits

    public init(limits: MessageLimits = MessageLimits()) {
        self.limits = limits
    }

    /// Top-level fields apps may send in camelCase, with their canonical names.
    static let topLevelAliases: [(camel: String, snake: String)] = [
        ("userId", "user_id"), ("anonymousId", "anonymous_id"), ("messageId", "message_id"),
        ("sentAt", "sent_at"), ("receivedAt", "received_at"), ("previousId", "previous_id"),
        ("groupId", "group_id"),
    ]

    /// Normalizes one call.
    /// - Parameters:
    ///   - value: the decoded call.
    ///   - endpointType: the type the endpoint implies (`/v1/identify`), or nil
    ///     where each message names its own `type` (batch, line protocol).
    public func normalize(_ value: JSONValue, endpointType: CallType?, context: NormalizeContext) -> Result<NormalizedMessage, MessageRejection> {
        guard case .object(var fields) = value else {
            return .failure(MessageRejection(errors: [FieldError(path: "", message: "expected a JSON object, got \(value.kindDescription)")]))
        }
        var errors: [FieldError] = []

        // Top-level spellings.
        for (camel, snake) in Self.topLevelAliases {
            Self.unify(&fields, canonical: snake, alias: camel, path: "", errors: &errors)
        }

        // type
        let type: CallType?
        switch fields["type"] {
        case nil:
            type = endpointType
            if type == nil { errors.append(FieldError(path: "type", message: "required: one of \(Self.typeList)")) }
        case .string(let s)?:
            if let t = CallType(wireName: s) {
                if let e = endpointType, e != t {
                    errors.append(FieldError(path: "type", message: "is \"\(s)\" but this endpoint takes \(e.rawValue) calls"))
                }
                type = t
            } else {
                type = nil
                errors.append(FieldError(path: "type", message: "unknown call type \"\(s)\"; expected one of \(Self.typeList)"))
            }
        case let other?:
            type = nil
            errors.append(FieldError(path: "type", message: "expected a string, got \(other.kindDescription)"))
        }
        if let type { fields["type"] = .string(type.rawValue) }

        // Identity.
        let userID = Self.identifier(&fields, "user_id", errors: &errors)
        let anonymousID = Self.identifier(&fields, "anonymous_id", errors: &errors)
        if userID == .absent, anonymousID == .absent {
            errors.append(FieldError(path: "user_id", message: "required: a call needs a user_id or an anonymous_id (a non-empty string)"))
        }

        // Per-type required fields.
        switch type {
        case .track?:
            Self.requireNonEmptyString(fields, "event", errors: &errors)
        case .group?:
            if Self.identifier(&fields, "group_id", errors: &errors) == .absent {
                errors.append(FieldError(path: "group_id", message: "required: a group call needs a group_id"))
            }
        case .alias?:
            if Self.identifier(&fields, "previous_id", errors: &errors) == .absent {
                errors.append(FieldError(path: "previous_id", message: "required: an alias call needs a previous_id"))
            }
        case .page?, .screen?:
            if let name = fields["name"], name.stringValue == nil {
                errors.append(FieldError(path: "name", message: "expected a string, got \(name.kindDescription)"))
            }
        case .identify?, nil:
            break
        }

        // traits / properties
        for member in ["traits", "properties"] {
            guard let v = fields[member] else { continue }
            guard case .object(var obj) = v else {
                errors.append(FieldError(path: member, message: "expected an object, got \(v.kindDescription)"))
                continue
            }
            var keyErrors: [FieldError] = []
            Self.checkKeys(.object(obj), path: member, errors: &keyErrors)
            errors += keyErrors.sorted { $0.path < $1.path }
            if member == "traits" {
                Self.normalizeReserved(&obj, schema: ReservedTraits.compiled, path: "traits", errors: &errors)
                if obj["name"] == nil, case .string(let first)? = obj["first_name"], case .string(let last)? = obj["last_name"] {
                    obj["name"] = .string("\(first) \(last)")
                }
            }
            fields[member] = .object(obj)
        }

        // context / integrations: objects, batch-level values merged under the message's own.
        Self.mergeObject(&fields, "context", batch: context.batchContext, errors: &errors)
        Self.mergeObject(&fields, "integrations", batch: context.batchIntegrations, errors: &errors)

        // message_id: the idempotency key.
        var messageID = ""
        switch Self.identifier(&fields, "message_id", errors: &errors) {
        case .absent:
            messageID = context.makeMessageID()
            fields["message_id"] = .string(messageID)
        case .present(let id):
            messageID = id
            if id.count >= limits.maxMessageIDLength {
                errors.append(FieldError(path: "message_id", message: "must be shorter than \(limits.maxMessageIDLength) characters (has \(id.count))"))
            }
        case .invalid:
            break
        }

        // Clocks: received_at is the relay's; timestamp is the app's or the receive time.
        let receivedAt = ISO8601.format(context.receivedAt)
        if let ts = fields["timestamp"] {
            if let s = ts.stringValue {
                if ISO8601.parseDateTime(s) == nil {
                    errors.append(FieldError(path: "timestamp", message: "expected an ISO-8601 date-time such as 2017-02-09T12:08:32.111Z, got \"\(Self.clip(s))\""))
                }
            } else {
                errors.append(FieldError(path: "timestamp", message: "expected an ISO-8601 date-time string, got \(ts.kindDescription)"))
            }
        } else {
            fields["timestamp"] = .string(receivedAt)
        }
        if let sent = fields["sent_at"] {
            if sent.stringValue.flatMap(ISO8601.parseDateTime) == nil {
                errors.append(FieldError(path: "sent_at", message: "expected an ISO-8601 date-time string"))
            }
            // The forwarder stamps sent_at on every attempt.
            fields["sent_at"] = nil
        }
        fields["received_at"] = .string(receivedAt)

        guard errors.isEmpty, let type else {
            return .failure(MessageRejection(errors: errors))
        }
        let body = JSONValue.object(fields)
        let encoded = body.encoded()
        if encoded.count > limits.maxMessageBytes {
            return .failure(MessageRejection(kind: .tooLarge, errors: [
                FieldError(path: "", message: "message is \(encoded.count) bytes after normalization; the limit is \(limits.maxMessageBytes)"),
            ]))
        }
        return .success(NormalizedMessage(type: type, messageID: messageID, receivedAt: context.receivedAt, body: body, encoded: encoded))
    }

    // MARK: - Pieces

    static let typeList = CallType.allCases.map(\.rawValue).joined(separator: ", ")

    enum Identifier: Equatable { case absent, invalid, present(String) }

    /// Reads an id field: a non-empty string, or a number turned into its string.
    static func identifier(_ fields: inout [String: JSONValue], _ key: String, errors: inout [FieldError]) -> Identifier {
        guard let v = fields[key] else { return .absent }
        switch v {
        case .null:
            fields[key] = nil
            return .absent
        case .string(let s):
            if s.allSatisfy(\.isWhitespace) {
                errors.append(FieldError(path: key, message: "must not be empty"))
                return .invalid
            }
            return .present(s)
        case .int(let i):
            let s = String(i)
            fields[key] = .string(s)
            return .present(s)
        case .double(let d) where d.isFinite:
            let s = d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : "\(d)"
            fields[key] = .string(s)
            return .present(s)
        default:
            errors.append(FieldError(path: key, message: "expected a string or a number, got \(v.kindDescription)"))
            return .invalid
        }
    }

    static func requireNonEmptyString(_ fields: [String: JSONValue], _ key: String, errors: inout [FieldError]) {
        switch fields[key] {
        case .string(let s)? where !s.allSatisfy(\.isWhitespace): return
        case .string?: errors.append(FieldError(path: key, message: "must not be empty"))
        case nil: errors.append(FieldError(path: key, message: "required"))
        case let v?: errors.append(FieldError(path: key, message: "expected a string, got \(v.kindDescription)"))
        }
    }

    /// Folds `alias` into `canonical`; both with different values is an error.
    static func unify(_ obj: inout [String: JSONValue], canonical: String, alias: String, path: String, errors: inout [FieldError]) {
        guard let aliased = obj.removeValue(forKey: alias) else { return }
        if let existing = obj[canonical], existing != aliased {
            errors.append(FieldError(path: FieldPath.join(path, canonical), message: "sent as both \(canonical) and \(alias) with different values"))
            return
        }
        obj[canonical] = aliased
    }

    /// No key in traits or properties, at any depth, may hold a space or a full stop.
    static func checkKeys(_ value: JSONValue, path: String, errors: inout [FieldError]) {
        switch value {
        case .object(let o):
            for (key, value) in o {
                let bad = key.utf8.contains(where: { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: ".") })
                // Paths are built only where there is something to report below.
                if bad { errors.append(FieldError(path: FieldPath.join(path, key), message: "keys must not contain a space or a full stop")) }
                switch value {
                case .object, .array: checkKeys(value, path: FieldPath.join(path, key), errors: &errors)
                default: break
                }
            }
        case .array(let a):
            for (i, v) in a.enumerated() { checkKeys(v, path: FieldPath.index(path, i), errors: &errors) }
        default:
            break
        }
    }

    /// Renames camelCase reserved traits to snake_case and checks their types.
    static func normalizeReserved(_ obj: inout [String: JSONValue], schema: [ReservedTraits.Entry], path: String, errors: inout [FieldError]) {
        for entry in schema {
            if let camel = entry.camel { unify(&obj, canonical: entry.name, alias: camel, path: path, errors: &errors) }
            guard var value = obj[entry.name] else { continue }
            switch entry.type {
            case .leaf(let type):
                check(value, as: type, path: FieldPath.join(path, entry.name), errors: &errors)
            case .object(let members):
                if value == .null { continue }
                guard case .object(var o) = value else {
                    errors.append(FieldError(path: FieldPath.join(path, entry.name), message: "expected an object, got \(value.kindDescription)"))
                    continue
                }
                obj[entry.name] = nil  // keep `o` uniquely referenced while it changes
                normalizeReserved(&o, schema: members, path: FieldPath.join(path, entry.name), errors: &errors)
                value = .object(o)
                obj[entry.name] = value
            }
        }
    }

    static func check(_ value: JSONValue, as type: TraitType, path: String, errors: inout [FieldError]) {
        if value == .null { return }  // an explicit null clears a trait
        switch type {
        case .string:
            if value.stringValue == nil { errors.append(FieldError(path: path, message: "expected a string, got \(value.kindDescription)")) }
        case .number:
            switch value {
            case .int, .double: break
            default: errors.append(FieldError(path: path, message: "expected a number, got \(value.kindDescription)"))
            }
        case .stringOrNumber:
            switch value {
            case .int, .double, .string: break
            default: errors.append(FieldError(path: path, message: "expected a string or a number, got \(value.kindDescription)"))
            }
        case .date:
            guard let s = value.stringValue else {
                errors.append(FieldError(path: path, message: "expected an ISO-8601 date string, got \(value.kindDescription)"))
                return
            }
            if ISO8601.parseDateOrDateTime(s) == nil {
                errors.append(FieldError(path: path, message: "expected an ISO-8601 date such as 2017-02-09 or 2017-02-09T12:08:32Z, got \"\(clip(s))\""))
            }
        case .oneOf(let allowed):
            guard let s = value.stringValue else {
                errors.append(FieldError(path: path, message: "expected a string, got \(value.kindDescription)"))
                return
            }
            if !allowed.contains(s) {
                errors.append(FieldError(path: path, message: "\"\(clip(s))\" is not one of: \(allowed.joined(separator: ", "))"))
            }
        case .currency:
            guard let s = value.stringValue else {
                errors.append(FieldError(path: path, message: "expected a string, got \(value.kindDescription)"))
                return
            }
            if !(s.utf8.count == 3 && s.utf8.allSatisfy { $0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z") }) {
                errors.append(FieldError(path: path, message: "expected a three-letter lowercase currency code such as \"usd\", got \"\(clip(s))\""))
            }
        case .object:
            // objects are walked by normalizeReserved
            break
        }
    }

    static func mergeObject(_ fields: inout [String: JSONValue], _ key: String, batch: [String: JSONValue]?, errors: inout [FieldError]) {
        let own = fields[key]
        if let own, own.objectValue == nil, own != .null {
            errors.append(FieldError(path: key, message: "expected an object, got \(own.kindDescription)"))
            return
        }
        guard let batch, !batch.isEmpty else { return }
        var merged = batch
        for (k, v) in own?.objectValue ?? [:] { merged[k] = v }
        fields[key] = .object(merged)
    }

    static func clip(_ s: String) -> String {
        s.count <= 40 ? s : String(s.prefix(40)) + "…"
    }
}
