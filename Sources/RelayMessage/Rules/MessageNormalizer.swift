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
// - Key order (DESIGN §3, "kept in the order sent"):
//   - The top level is the relay's envelope, in one fixed order: first the
//     fields the relay knows (`envelopeOrder`: anonymous_id, context, event,
//     group_id, integrations, message_id, name, previous_id, properties,
//     received_at, timestamp, traits, type, user_id; alphabetical, as in the
//     seed's complete example), then every other top-level field in the
//     order sent. Fields the relay adds (type, message_id, received_at,
//     timestamp) thus have a fixed place.
//   - Every object inside (traits, properties, context, integrations, unknown
//     fields) keeps the order sent. A camelCase reserved trait renamed to
//     snake_case keeps its position; `name` filled from first and last name
//     is appended at the end of traits; batch-level context/integrations
//     come first, in the batch's order, a message's own value replacing the
//     batch's in place and its other members following in its order.
// - Keys are compared byte for byte (JSONObject): canonically equivalent keys
//   (`"\u00e9"`, `"e\u0301"`) are two traits, both kept. A key sent twice
//   (the same bytes) in one object refuses the call, each reported as
//   `traits.plan: duplicate key` (the parser finds them; see `duplicateKeys`).
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
    public var batchContext: JSONObject?
    /// Batch-level `integrations`, merged under each message's own.
    public var batchIntegrations: JSONObject?

    public init(
        receivedAt: Date,
        makeMessageID: @escaping @Sendable () -> String = { UUID().uuidString.lowercased() },
        batchContext: JSONObject? = nil,
        batchIntegrations: JSONObject? = nil
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
    /// The write key the call carried at its top level (`writeKey`, as
    /// Segment's HTTP API allows), taken out of `body`: a credential, never data.
    public var writeKey: String? = nil
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
        ("groupId", "group_id"), ("writeKey", "write_key"),
    ]

    /// Normalizes one call.
    /// - Parameters:
    ///   - value: the decoded call.
    ///   - endpointType: the type the endpoint implies (`/v1/identify`), or nil
    ///     where each message names its own `type` (batch, line protocol).
    ///   - duplicateKeys: the keys the parser found repeated in this call
    ///     (paths relative to the call); each refuses it.
    ///
    /// `value` is consumed: passed as its last use, the call's tree is
    /// changed in place instead of copied level by level on the first edit.
    public func normalize(_ value: consuming JSONValue, endpointType: CallType?, context: NormalizeContext,
                          duplicateKeys: [DuplicateKey] = []) -> Result<NormalizedMessage, MessageRejection> {
        var fields: JSONObject
        switch consume value {
        case .object(let o): fields = o
        case let other:
            return .failure(MessageRejection(errors: [FieldError(path: "", message: "expected a JSON object, got \(other.kindDescription)")]))
        }
        var errors: [FieldError] = duplicateKeys.map { $0.fieldError() }

        // Top-level spellings.
        let writeKeyAt = Self.unifyTopLevel(&fields, errors: &errors)

        // A write key in the call is its credential: out of the message before anything is
        // stored or sent. One that is not a non-empty string is no key (where the call's own
        // key decides, it is then refused as keyless; elsewhere it was never read).
        var writeKey: String?
        if case .string(let k)? = writeKeyAt.map({ fields.removeMember(at: $0) }), !k.isEmpty { writeKey = k }

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

        // traits / properties (an identify's traits may come under context.traits: +SDKCompatibility)
        let traitsPath = (type == .identify ? Self.hoistContextTraits(&fields) : nil) ?? "traits"
        for member in ["traits", "properties"] {
            guard let at = fields.index(forKey: member) else { continue }
            let path = member == "traits" ? traitsPath : member
            // Taken out (null left in its place) so that `obj` is uniquely referenced while it changes.
            var obj: JSONObject
            switch fields.takeValue(at: at) {
            case .object(let o): obj = o
            case let other:
                errors.append(FieldError(path: path, message: "expected an object, got \(other.kindDescription)"))
                continue
            }
            Self.checkKeys(obj, path: path, errors: &errors)
            // The reserved traits are the identify spec's (DESIGN §3); a group's
            // traits describe a company, under its own conventions: kept as sent.
            if member == "traits" && type == .identify {
                Self.normalizeReserved(&obj, level: ReservedTraits.compiled, path: path, errors: &errors)
                if obj.index(forKey: "name") == nil, case .string(let first)? = obj["first_name"], case .string(let last)? = obj["last_name"] {
                    obj.appendUnchecked("name", .string("\(first) \(last)"))
                }
            }
            fields.setValue(.object(obj), at: at)
        }

        // context / integrations: objects, batch-level values merged under the message's own.
        Self.mergeObject(&fields, "context", batch: context.batchContext, errors: &errors)
        Self.mergeObject(&fields, "integrations", batch: context.batchIntegrations, errors: &errors)

        // What the relay stamps at the top level (set in the envelope below).
        // Clocks: received_at is the relay's; timestamp is the app's or the receive time.
        let receivedAt = ISO8601.format(context.receivedAt)
        var stamps = Stamps(receivedAt: receivedAt)

        // message_id: the idempotency key.
        var messageID = ""
        switch Self.identifier(&fields, "message_id", errors: &errors) {
        case .absent:
            messageID = context.makeMessageID()
            stamps.messageID = messageID
        case .present(let id):
            messageID = id
            // (`utf8.count` bounds `count`, and is O(1): most ids need no character count.)
            if id.utf8.count >= limits.maxMessageIDLength, id.count >= limits.maxMessageIDLength {
                errors.append(FieldError(path: "message_id", message: "must be shorter than \(limits.maxMessageIDLength) characters (has \(id.count))"))
            }
        case .invalid:
            break
        }

        if let ts = fields["timestamp"] {
            if let s = ts.stringValue {
                if ISO8601.parseDateTime(s) == nil {
                    errors.append(FieldError(path: "timestamp", message: "expected an ISO-8601 date-time such as 2017-02-09T12:08:32.111Z, got \"\(Self.clip(s))\""))
                }
            } else {
                errors.append(FieldError(path: "timestamp", message: "expected an ISO-8601 date-time string, got \(ts.kindDescription)"))
            }
        } else {
            stamps.timestamp = receivedAt
        }
        // sent_at is checked here and left out of the envelope: the forwarder
        // stamps it on every attempt.
        if let sent = fields["sent_at"], sent.stringValue.flatMap(ISO8601.parseDateTime) == nil {
            errors.append(FieldError(path: "sent_at", message: "expected an ISO-8601 date-time string"))
        }

        guard errors.isEmpty, let type else {
            return .failure(MessageRejection(errors: errors))
        }
        let body = JSONValue.object(Self.envelope(fields, stamps: stamps))
        let encoded = body.encoded()
        if encoded.count > limits.maxMessageBytes {
            return .failure(MessageRejection(kind: .tooLarge, errors: [
                FieldError(path: "", message: "message is \(encoded.count) bytes after normalization; the limit is \(limits.maxMessageBytes)"),
            ]))
        }
        return .success(NormalizedMessage(type: type, messageID: messageID, receivedAt: context.receivedAt, body: body, encoded: encoded, writeKey: writeKey))
    }

    // MARK: - Pieces

    static let typeList = CallType.allCases.map(\.rawValue).joined(separator: ", ")

    /// The top-level fields the relay knows, in the order it emits them
    /// (alphabetical, as the seed's complete example); other top-level
    /// fields follow in the order sent.
    static let envelopeOrder = [
        "anonymous_id", "context", "event", "group_id", "integrations", "message_id", "name", "previous_id",
        "properties", "received_at", "timestamp", "traits", "type", "user_id",
    ]

    /// `envelopeOrder`, then `sent_at` (which the envelope leaves out).
    static let envelopeSpellings = KeySpellings(envelopeOrder + ["sent_at"])
    static let messageIDRank = envelopeOrder.firstIndex(of: "message_id")!
    static let receivedAtRank = envelopeOrder.firstIndex(of: "received_at")!
    static let timestampRank = envelopeOrder.firstIndex(of: "timestamp")!
    /// `envelopeRank` of `sent_at`, which the envelope leaves out.
    static let sentAtRank = -2

    /// The values the relay sets at the top level; nil leaves the field as sent.
    struct Stamps {
        /// Always set: the relay's receive time.
        var receivedAt: String
        /// Set when the call had none.
        var messageID: String? = nil
        /// Set when the call had none: the receive time.
        var timestamp: String? = nil

        func value(forRank r: Int) -> String? {
            switch r {
            case MessageNormalizer.receivedAtRank: return receivedAt
            case MessageNormalizer.messageIDRank: return messageID
            case MessageNormalizer.timestampRank: return timestamp
            default: return nil
            }
        }
    }

    /// The position of `key` in `envelopeOrder`, `sentAtRank` for `sent_at`,
    /// or -1 for any other field. Compared byte for byte.
    static func envelopeRank(_ key: String) -> Int {
        switch envelopeSpellings.index(of: key) {
        case nil: return -1
        case .some(envelopeOrder.count): return sentAtRank
        case let r?: return r
        }
    }

    /// `fields` in envelope order, with `stamps` applied and `sent_at` left
    /// out: the known fields, then the others as sent. One pass over the
    /// members; nothing is removed from or inserted into `fields` on the way.
    static func envelope(_ fields: JSONObject, stamps: Stamps) -> JSONObject {
        let known = envelopeOrder.count
        return withUnsafeTemporaryAllocation(of: Int.self, capacity: known + fields.count) { scratch in
            // scratch[0..<known]: the member at each known rank (or -1);
            // scratch[known...]: each member's rank.
            scratch.initialize(repeating: -1)
            for (i, m) in fields.members.enumerated() {
                let r = envelopeRank(m.key)
                scratch[known + i] = r
                if r >= 0 { scratch[r] = i }
            }
            var out = JSONObject()
            out.reserveCapacity(fields.count + 3)
            for r in 0..<known {
                if let stamp = stamps.value(forRank: r) {
                    out.appendUnchecked(envelopeOrder[r], .string(stamp))
                } else if scratch[r] >= 0 {
                    let m = fields[scratch[r]]
                    out.appendUnchecked(m.key, m.value)
                }
            }
            for (i, m) in fields.members.enumerated() where scratch[known + i] == -1 {
                out.appendUnchecked(m.key, m.value)
            }
            return out
        }
    }

    enum Identifier: Equatable { case absent, invalid, present(String) }

    /// Reads an id field: a non-empty string, or a number turned into its string.
    static func identifier(_ fields: inout JSONObject, _ key: String, errors: inout [FieldError]) -> Identifier {
        guard let at = fields.index(forKey: key) else { return .absent }
        let v = fields[at].value
        switch v {
        case .null:
            fields.removeMember(at: at)
            return .absent
        case .string(let s):
            if isBlank(s) {
                errors.append(FieldError(path: key, message: "must not be empty"))
                return .invalid
            }
            return .present(s)
        case .int(let i):
            let s = String(i)
            fields.setValue(.string(s), at: at)
            return .present(s)
        case .double(let d) where d.isFinite:
            let s = d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : "\(d)"
            fields.setValue(.string(s), at: at)
            return .present(s)
        default:
            errors.append(FieldError(path: key, message: "expected a string or a number, got \(v.kindDescription)"))
            return .invalid
        }
    }

    /// Empty or only white space. (An ASCII letter or digit first settles it
    /// without walking the string's characters.)
    static func isBlank(_ s: String) -> Bool {
        if let b = s.utf8.first, (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9")) || ((b | 0x20) >= UInt8(ascii: "a") && (b | 0x20) <= UInt8(ascii: "z")) {
            return false
        }
        return s.allSatisfy(\.isWhitespace)
    }

    static func requireNonEmptyString(_ fields: JSONObject, _ key: String, errors: inout [FieldError]) {
        switch fields[key] {
        case .string(let s)? where !isBlank(s): return
        case .string?: errors.append(FieldError(path: key, message: "must not be empty"))
        case nil: errors.append(FieldError(path: key, message: "required"))
        case let v?: errors.append(FieldError(path: key, message: "expected a string, got \(v.kindDescription)"))
        }
    }

    /// Every top-level alias's spelling: the snake_case names, then the camelCase ones.
    static let topLevelSpellings = KeySpellings(topLevelAliases.map(\.snake) + topLevelAliases.map(\.camel))

    /// `unify` for each of `topLevelAliases`, in one pass over the members
    /// (most SDKs send several camelCase names) unless a name came under
    /// both spellings: then alias by alias, as `unify` decides. (The same
    /// pass as `normalizeReserved`'s; shared through a method taking a
    /// closure, both ran 13% slower in process, so each keeps its own.)
    /// - Returns: where `write_key` is once unified (the pass finds it for
    ///   free), or nil when the call has none.
    static func unifyTopLevel(_ fields: inout JSONObject, errors: inout [FieldError]) -> Int? {
        let n = topLevelAliases.count
        let done = withUnsafeTemporaryAllocation(of: Int.self, capacity: 2 * n) { at -> Int?? in
            // at[e]: where alias e's snake_case name is, at[n + e]: its camelCase name (-1: absent).
            at.initialize(repeating: -1)
            let both = fields.members.withUnsafeBufferPointer { members -> Bool in
                for i in members.indices {
                    guard let k = topLevelSpellings.index(of: members[i].key) else { continue }
                    at[k] = i
                    if at[k % n] >= 0 && at[n + k % n] >= 0 { return true }
                }
                return false
            }
            if both { return nil }
            // (Renaming keeps a member's position.)
            for e in 0..<n where at[n + e] >= 0 { fields.renameMember(at: at[n + e], to: topLevelAliases[e].snake) }
            let key = max(at[writeKeyAlias], at[n + writeKeyAlias])
            return .some(key >= 0 ? key : nil)
        }
        if let done { return done }
        for (camel, snake) in topLevelAliases {
            unify(&fields, canonical: snake, alias: camel, path: "", errors: &errors)
        }
        return fields.index(forKey: "write_key")
    }

    static let writeKeyAlias = topLevelAliases.firstIndex { $0.snake == "write_key" }!

    /// Folds `alias` into `canonical`; both with different values is an error.
    /// Sent alone, the alias is renamed where it stands; sent with the
    /// canonical spelling, the canonical member keeps its place.
    static func unify(_ obj: inout JSONObject, canonical: String, alias: String, path: String, errors: inout [FieldError]) {
        guard let a = obj.index(forKey: alias) else { return }
        guard let c = obj.index(forKey: canonical) else {
            obj.renameMember(at: a, to: canonical)
            return
        }
        if obj[c].value != obj[a].value {
            errors.append(FieldError(path: FieldPath.join(path, canonical), message: "sent as both \(canonical) and \(alias) with different values"))
        }
        obj.removeMember(at: a)
    }

    /// No key in traits or properties, at any depth, may hold a space or a full stop.
    /// Errors come in document order. (Members and elements are borrowed
    /// through their buffers: no reference count per member.)
    static func checkKeys(_ object: JSONObject, path: String, errors: inout [FieldError]) {
        object.members.withUnsafeBufferPointer { members in
            for i in members.indices {
                let key = members[i].key
                // Paths are built only where there is something to report below.
                if hasSpaceOrFullStop(key) {
                    errors.append(FieldError(path: FieldPath.join(path, key), message: "keys must not contain a space or a full stop"))
                }
                switch members[i].value {
                case .object(let o): checkKeys(o, path: FieldPath.join(path, key), errors: &errors)
                case .array(let a): checkKeys(a, path: FieldPath.join(path, key), errors: &errors)
                default: break
                }
            }
        }
    }

    static func checkKeys(_ array: [JSONValue], path: String, errors: inout [FieldError]) {
        array.withUnsafeBufferPointer { elements in
            for i in elements.indices {
                switch elements[i] {
                case .object(let o): checkKeys(o, path: FieldPath.index(path, i), errors: &errors)
                case .array(let a): checkKeys(a, path: FieldPath.index(path, i), errors: &errors)
                default: break
                }
            }
        }
    }

    static func hasSpaceOrFullStop(_ key: String) -> Bool {
        let found = key.utf8.withContiguousStorageIfAvailable { k in
            for b in k where b == UInt8(ascii: " ") || b == UInt8(ascii: ".") { return true }
            return false
        }
        return found ?? key.utf8.contains { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: ".") }
    }

    /// Renames camelCase reserved traits to snake_case and checks their types,
    /// entry by entry in the schema's order (the order errors are reported in).
    static func normalizeReserved(_ obj: inout JSONObject, level: ReservedTraits.Level, path: String, errors: inout [FieldError]) {
        let n = level.entries.count
        let matched = withUnsafeTemporaryAllocation(of: Int.self, capacity: 2 * n) { at -> Bool in
            // One pass over the members: at[e] is where entry e's name is,
            // at[n + e] where its camelCase spelling is (-1: absent).
            at.initialize(repeating: -1)
            // (Keys and entries borrowed through their buffers: no reference
            // count per member or per entry.)
            let clash = obj.members.withUnsafeBufferPointer { members in
                for i in members.indices {
                    guard let hit = level.match(members[i].key) else { continue }
                    if hit.camel {
                        // Both spellings sent: `unify` decides, by the scan below.
                        if at[hit.entry] >= 0 { return true }
                        at[n + hit.entry] = i
                    } else {
                        if at[n + hit.entry] >= 0 { return true }
                        at[hit.entry] = i
                    }
                }
                return false
            }
            if clash { return false }
            // Nothing moves from here on: renaming keeps a member's position.
            level.entries.withUnsafeBufferPointer { entries in
                for e in 0..<n where at[e] >= 0 || at[n + e] >= 0 {
                    var i = at[e]
                    if at[n + e] >= 0 {
                        i = at[n + e]
                        obj.renameMember(at: i, to: entries[e].name)
                    }
                    checkReserved(&obj, at: i, entry: entries[e], path: path, errors: &errors)
                }
            }
            return true
        }
        if matched { return }
        // An entry sent under both spellings: `unify` may remove a member, so
        // each entry is looked up afresh.
        for entry in level.entries {
            if let camel = entry.camel { unify(&obj, canonical: entry.name, alias: camel, path: path, errors: &errors) }
            if let i = obj.index(forKey: entry.name) { checkReserved(&obj, at: i, entry: entry, path: path, errors: &errors) }
        }
    }

    /// Checks the reserved trait at position `i` of `obj` against `entry`,
    /// normalizing the members of an object-typed trait.
    static func checkReserved(_ obj: inout JSONObject, at i: Int, entry: ReservedTraits.Entry, path: String, errors: inout [FieldError]) {
        switch entry.type {
        case .leaf(let type):
            check(obj[i].value, as: type, path: FieldPath.join(path, entry.name), errors: &errors)
        case .object(let members):
            switch obj[i].value {
            case .null: return
            case .object: break
            case let value:
                errors.append(FieldError(path: FieldPath.join(path, entry.name), message: "expected an object, got \(value.kindDescription)"))
                return
            }
            // Taken out so that `o` is uniquely referenced while it changes.
            guard case .object(var o) = obj.takeValue(at: i) else { return }
            normalizeReserved(&o, level: members, path: FieldPath.join(path, entry.name), errors: &errors)
            obj.setValue(.object(o), at: i)
        }
    }

    /// `path` is built only when there is an error to report.
    static func check(_ value: JSONValue, as type: TraitType, path: @autoclosure () -> String, errors: inout [FieldError]) {
        if value == .null { return }  // an explicit null clears a trait
        switch type {
        case .string:
            if value.stringValue == nil { errors.append(FieldError(path: path(), message: "expected a string, got \(value.kindDescription)")) }
        case .number:
            switch value {
            case .int, .double: break
            default: errors.append(FieldError(path: path(), message: "expected a number, got \(value.kindDescription)"))
            }
        case .stringOrNumber:
            switch value {
            case .int, .double, .string: break
            default: errors.append(FieldError(path: path(), message: "expected a string or a number, got \(value.kindDescription)"))
            }
        case .date:
            guard let s = value.stringValue else {
                errors.append(FieldError(path: path(), message: "expected an ISO-8601 date string, got \(value.kindDescription)"))
                return
            }
            if ISO8601.parseDateOrDateTime(s) == nil {
                errors.append(FieldError(path: path(), message: "expected an ISO-8601 date such as 2017-02-09 or 2017-02-09T12:08:32Z, got \"\(clip(s))\""))
            }
        case .oneOf(let allowed):
            guard let s = value.stringValue else {
                errors.append(FieldError(path: path(), message: "expected a string, got \(value.kindDescription)"))
                return
            }
            if !allowed.contains(s) {
                errors.append(FieldError(path: path(), message: "\"\(clip(s))\" is not one of: \(allowed.joined(separator: ", "))"))
            }
        case .currency:
            guard let s = value.stringValue else {
                errors.append(FieldError(path: path(), message: "expected a string, got \(value.kindDescription)"))
                return
            }
            if !(s.utf8.count == 3 && s.utf8.allSatisfy { $0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z") }) {
                errors.append(FieldError(path: path(), message: "expected a three-letter lowercase currency code such as \"usd\", got \"\(clip(s))\""))
            }
        case .object:
            // objects are walked by normalizeReserved
            break
        }
    }

    /// The batch's members first, in its order; the message's own value for
    /// a key replaces the batch's in place; its other members follow in order.
    static func mergeObject(_ fields: inout JSONObject, _ key: String, batch: JSONObject?, errors: inout [FieldError]) {
        let own = fields[key]
        if let own, own.objectValue == nil, own != .null {
            errors.append(FieldError(path: key, message: "expected an object, got \(own.kindDescription)"))
            return
        }
        guard let batch, !batch.isEmpty else { return }
        fields[key] = .object(batch.merging(own?.objectValue ?? [:]))
    }

    static func clip(_ s: String) -> String {
        s.count <= 40 ? s : String(s.prefix(40)) + "…"
    }
}
