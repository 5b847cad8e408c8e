// The errors the message rules report. Every problem found in a call is
// reported, each with the path of the field it concerns, never just the first.

/// One problem with one field of a call, e.g. `traits.age: expected a number, got a string`.
public struct FieldError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Where the problem is: `traits.address.postal_code`, or `""` for the whole call.
    public let path: String
    /// A plain sentence saying what is wrong.
    public let message: String

    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { path.isEmpty ? message : "\(path): \(message)" }
}

/// Why a call was refused: every field error found, and whether the refusal
/// is about size (HTTP 413) rather than content (HTTP 400).
public struct MessageRejection: Error, Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
        /// The call's content breaks the rules.
        case invalid
        /// The call is larger than the configured limit.
        case tooLarge
    }

    public let kind: Kind
    public let errors: [FieldError]

    public init(kind: Kind = .invalid, errors: [FieldError]) {
        self.kind = kind
        self.errors = errors
    }
}

/// Builds dotted field paths, quoting keys that would make a path ambiguous.
enum FieldPath {
    static func join(_ parent: String, _ key: String) -> String {
        let plain = !key.isEmpty && key.utf8.allSatisfy { b in
            (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z"))
                || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9")) || b == UInt8(ascii: "_") || b == UInt8(ascii: "-") || b == UInt8(ascii: "$")
        }
        if plain { return parent.isEmpty ? key : "\(parent).\(key)" }
        var escaped: [UInt8] = []
        JSONValue.encodeString(key, into: &escaped)
        return "\(parent)[\(String(decoding: escaped, as: UTF8.self))]"
    }

    static func index(_ parent: String, _ i: Int) -> String { "\(parent)[\(i)]" }
}
