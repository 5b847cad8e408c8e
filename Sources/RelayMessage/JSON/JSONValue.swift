// JSONValue: the relay's in-memory JSON document.
//
// Owns: decoding request bytes into a tree (with a nesting-depth bound, so a
// hostile body cannot exhaust the stack) and encoding a tree back into
// canonical bytes (object keys sorted, so the same message always encodes to
// the same bytes). Integers stay integers: an Int64-representable number is
// never turned into a Double and back.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A JSON value as the relay sees it.
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// The object's members, or nil when this is not an object.
    public var objectValue: [String: JSONValue]? {
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

    /// Deepest nesting of arrays and objects (a scalar is depth 0).
    public var depth: Int {
        switch self {
        case .array(let a): return 1 + (a.map(\.depth).max() ?? 0)
        case .object(let o): return 1 + (o.values.map(\.depth).max() ?? 0)
        default: return 0
        }
    }
}

/// Why a body could not be read as JSON.
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension JSONValue {
    /// Parses `bytes` as one JSON document whose nesting is at most `maxDepth`.
    public static func parse(_ bytes: some Collection<UInt8>, maxDepth: Int) throws(JSONParseError) -> JSONValue {
        var nesting = 0
        var inString = false
        var escaped = false
        // A cheap pre-scan bounds the depth before the recursive decoder runs.
        for b in bytes {
            if inString {
                if escaped { escaped = false } else if b == UInt8(ascii: "\\") { escaped = true } else if b == UInt8(ascii: "\"") { inString = false }
                continue
            }
            switch b {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                nesting += 1
                if nesting > maxDepth { throw JSONParseError("JSON is nested more than \(maxDepth) levels deep") }
            case UInt8(ascii: "}"), UInt8(ascii: "]"): nesting -= 1
            default: break
            }
        }
        do {
            return try JSONDecoder().decode(JSONValue.self, from: Data(bytes))
        } catch let error as DecodingError {
            throw JSONParseError(Self.describe(error))
        } catch {
            throw JSONParseError("invalid JSON")
        }
    }

    private static func describe(_ error: DecodingError) -> String {
        switch error {
        case .dataCorrupted(let ctx):
            if let underlying = ctx.underlyingError { return "invalid JSON: \(underlying)" }
            return "invalid JSON: \(ctx.debugDescription)"
        default:
            return "invalid JSON"
        }
    }
}

extension JSONValue: Decodable {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null; return }
        if let s = try? c.decode(String.self) { self = .string(s); return }
        if let o = try? c.decode([String: JSONValue].self) { self = .object(o); return }
        if let b = try? c.decode(Bool.self) { self = .bool(b); return }
        if let i = try? c.decode(Int64.self) { self = .int(i); return }
        if let d = try? c.decode(Double.self) { self = .double(d); return }
        if let a = try? c.decode([JSONValue].self) { self = .array(a); return }
        throw DecodingError.dataCorruptedError(in: c, debugDescription: "unsupported JSON value")
    }
}
