// JSONValue: the relay's in-memory JSON document.
//
// Owns: decoding request bytes into a tree (JSONParser, with a nesting-depth
// bound, so a hostile body cannot exhaust the stack) and encoding a tree back
// into bytes (JSONValue+Encoding). Integers stay integers: an
// Int64-representable number is never turned into a Double and back.
//
// Design decisions (DESIGN §3: "JSON object keys are compared byte for byte
// and kept in the order sent"):
// - An object is a `JSONObject`: its members in an array, in the order they
//   were sent (or built), not a `[String: JSONValue]`. A call has a dozen
//   members, so a linear scan finds one faster than hashing would, and
//   encoding needs no sort.
// - Keys, and string values, are compared BYTE FOR BYTE as UTF-8, never with
//   `String ==`, which follows Unicode canonical equivalence: `"\u00e9"` and
//   `"e\u0301"` are two different keys, and both are kept and delivered.
// - Duplicate keys: the same key bytes twice in one object is refused, never
//   resolved by keeping one value (that would silently lose the other). The
//   parser reports every duplicate with its path from the document root
//   (`traits.plan: duplicate key`); see `JSONValue.parse`.
// - Equality is structural and order-sensitive: two objects are equal when
//   they hold byte-identical keys with equal values in the same order, i.e.
//   when they encode to the same bytes.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A JSON value as the relay sees it.
public enum JSONValue: Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    /// The object's members, or nil when this is not an object.
    public var objectValue: JSONObject? {
        if case .object(let o) = self { return o }
        return nil
    }

    /// The string, or nil when this is not a string.
    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// A short noun for error messages ("a string", "an object").
    public var kindDescription: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .int, .double: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}

extension JSONValue: Hashable {
    /// Structural equality; strings and keys compare as UTF-8 bytes.
    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case (.bool(let a), .bool(let b)): return a == b
        case (.int(let a), .int(let b)): return a == b
        case (.double(let a), .double(let b)): return a == b
        case (.string(let a), .string(let b)): return JSONObject.sameBytes(a, b)
        case (.array(let a), .array(let b)): return a == b
        case (.object(let a), .object(let b)): return a == b
        default: return false
        }
    }

    public func hash(into hasher: inout Hasher) {
        switch self {
        case .null: hasher.combine(0 as UInt8)
        case .bool(let b): hasher.combine(1 as UInt8); hasher.combine(b)
        case .int(let i): hasher.combine(2 as UInt8); hasher.combine(i)
        case .double(let d): hasher.combine(3 as UInt8); hasher.combine(d)
        case .string(let s): hasher.combine(4 as UInt8); JSONObject.hashBytes(s, into: &hasher)
        case .array(let a): hasher.combine(5 as UInt8); hasher.combine(a)
        case .object(let o): hasher.combine(6 as UInt8); hasher.combine(o)
        }
    }
}

/// Why a body could not be read as JSON.
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String
    /// When the document is well-formed but repeats keys: every duplicate,
    /// with its path from the document root. Empty for a syntax error.
    public let duplicateKeys: [DuplicateKey]

    public init(_ description: String) {
        self.description = description
        self.duplicateKeys = []
    }

    init(duplicateKeys: [DuplicateKey]) {
        self.description = duplicateKeys.map { $0.fieldError().description }.joined(separator: "; ")
        self.duplicateKeys = duplicateKeys
    }
}

/// One key sent twice (the same bytes) in one object.
public struct DuplicateKey: Sendable, Hashable {
    public enum Component: Sendable, Hashable {
        case key(String)
        case index(Int)
    }

    /// Where the repeated key is, outermost first; the last component is the key itself.
    public let path: [Component]

    public init(path: [Component]) { self.path = path }

    /// For a duplicate inside one element of a top-level array member, as in
    /// `{"batch": [call, call, ...]}`: that element's index; otherwise nil.
    public func callIndex(inArray name: String) -> Int? {
        guard path.count > 2, case .key(let k) = path[0], JSONObject.sameBytes(k, name), case .index(let i) = path[1] else { return nil }
        return i
    }

    /// This duplicate with its path relative to element `index` of the
    /// top-level array `name`, or nil when it is not inside that element.
    public func relative(toCall index: Int, inArray name: String) -> DuplicateKey? {
        callIndex(inArray: name) == index ? DuplicateKey(path: Array(path.dropFirst(2))) : nil
    }

    /// This duplicate as a field error, its path relative to `prefix`
    /// components dropped from the front (e.g. `batch[3]` for a call in a batch).
    public func fieldError(droppingPrefix prefix: Int = 0) -> FieldError {
        var p = ""
        for c in path.dropFirst(prefix) {
            switch c {
            case .key(let k): p = FieldPath.join(p, k)
            case .index(let i): p = FieldPath.index(p, i)
            }
        }
        return FieldError(path: p, message: "duplicate key")
    }
}

extension JSONValue {
    /// Parses `bytes` as one JSON document whose nesting is at most `maxDepth`.
    /// A document that repeats a key in one object is refused: the error's
    /// `duplicateKeys` lists every one, and its description reads
    /// `traits.plan: duplicate key`.
    public static func parse(_ bytes: [UInt8], maxDepth: Int) throws(JSONParseError) -> JSONValue {
        var duplicates: [DuplicateKey] = []
        let value = try parse(bytes, maxDepth: maxDepth, duplicateKeys: &duplicates)
        if !duplicates.isEmpty { throw JSONParseError(duplicateKeys: duplicates) }
        return value
    }

    /// Parses `bytes` like `parse(_:maxDepth:)`, but reports repeated keys in
    /// `duplicateKeys` instead of refusing the document (the value then holds
    /// the first of each), so that a batch can refuse only the calls that
    /// repeat a key.
    public static func parse(_ bytes: [UInt8], maxDepth: Int, duplicateKeys: inout [DuplicateKey]) throws(JSONParseError) -> JSONValue {
        do {
            return try bytes.withUnsafeBufferPointer { buffer throws(JSONParseError) in
                try JSONParser.parse(buffer, maxDepth: maxDepth, duplicateKeys: &duplicateKeys)
            }
        } catch {
            throw error
        }
    }
}
