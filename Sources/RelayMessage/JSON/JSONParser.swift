// JSONParser: strict RFC 8259 parsing straight into JSONValue.
//
// Why not JSONDecoder: decoding an untyped tree through Codable cost about a
// fifth of the relay's CPU under load (perf, bench/run.sh), mostly generic
// metadata lookups and container allocations. This parser does one pass, no
// intermediate representation, and enforces the nesting limit as it goes.
//
// Strictness: one value with optional white space around it; no trailing
// commas, comments, NaN or leading zeros; strings must be valid UTF-8 with
// no raw control characters; `\u` escapes must pair surrogates. Integers
// that fit Int64 stay integers.
//
// Objects are built in order, as sent, straight into JSONObject: members and
// array elements collect on one scratch stack each, shared by every nesting
// level, and each container is moved out once, at its exact size (moved, not
// copied: no reference count is touched on the way). A key
// repeated in one object (the same bytes) is recorded with its path and its
// second value dropped; `JSONValue.parse` decides what a duplicate means.

struct JSONParser: ~Copyable {
    private let bytes: UnsafeBufferPointer<UInt8>
    private var i = 0
    private let maxDepth: Int
    /// Members of the objects being parsed, innermost last.
    private var memberStack = ScratchStack<JSONObject.Element>(capacity: 32)
    /// Elements of the arrays being parsed, innermost last.
    private var elementStack = ScratchStack<JSONValue>(capacity: 16)
    /// Duplicate keys found, each path innermost first (reversed at the end).
    private var duplicates: [[DuplicateKey.Component]] = []

    /// Objects up to this size check for a repeated key by scanning; larger
    /// ones by a hash set, so that many keys do not make parsing quadratic.
    static let scanLimit = 16

    private init(_ bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    static func parse(_ bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int, duplicateKeys: inout [DuplicateKey]) throws(JSONParseError) -> JSONValue {
        var p = JSONParser(bytes, maxDepth: maxDepth)
        p.skipWhitespace()
        let v = try p.value(depth: 0)
        p.skipWhitespace()
        if p.i != bytes.count { throw p.error("unexpected data after the JSON value") }
        for d in p.duplicates { duplicateKeys.append(DuplicateKey(path: d.reversed())) }
        return v
    }

    private func error(_ what: String) -> JSONParseError {
        JSONParseError("invalid JSON at byte \(i): \(what)")
    }

    private mutating func skipWhitespace() {
        while i < bytes.count {
            switch bytes[i] {
            case 0x20, 0x09, 0x0A, 0x0D: i += 1
            default: return
            }
        }
    }

    private mutating func value(depth: Int) throws(JSONParseError) -> JSONValue {
        guard i < bytes.count else { throw error("unexpected end of input") }
        switch bytes[i] {
        case UInt8(ascii: "{"): return try object(depth: depth + 1)
        case UInt8(ascii: "["): return try array(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default: throw error("unexpected character '\(Character(Unicode.Scalar(bytes[i])))'")
        }
    }

    private mutating func literal(_ word: StaticString) throws(JSONParseError) {
        let n = word.utf8CodeUnitCount
        guard i + n <= bytes.count else { throw error("unexpected end of input") }
        for k in 0..<n where bytes[i + k] != word.utf8Start[k] { throw error("invalid literal") }
        i += n
    }

    private mutating func object(depth: Int) throws(JSONParseError) -> JSONValue {
        if depth > maxDepth { throw JSONParseError("JSON is nested more than \(maxDepth) levels deep") }
        i += 1
        skipWhitespace()
        if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return .object(JSONObject()) }
        let base = memberStack.count
        var seen: Set<ByteKey>? = nil
        while true {
            skipWhitespace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw error("expected a string key") }
            let key = try string()
            skipWhitespace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw error("expected ':' after an object key") }
            i += 1
            skipWhitespace()
            let duplicate = isDuplicate(key, base: base, seen: &seen)
            if duplicate { duplicates.append([.key(key)]) }
            let found = duplicates.count
            let v = try value(depth: depth)
            if duplicates.count > found {
                for d in found..<duplicates.count { duplicates[d].append(.key(key)) }
            }
            if !duplicate { memberStack.append((key: key, value: v)) }
            skipWhitespace()
            guard i < bytes.count else { throw error("unexpected end of input in an object") }
            if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
            if bytes[i] == UInt8(ascii: "}") {
                i += 1
                return .object(JSONObject(members: memberStack.popArray(from: base)))
            }
            throw error("expected ',' or '}' in an object")
        }
    }

    /// Whether `key` is already among the members from `base` on, by bytes.
    private func isDuplicate(_ key: String, base: Int, seen: inout Set<ByteKey>?) -> Bool {
        let count = memberStack.count - base
        if seen == nil, count < Self.scanLimit { return memberStack.containsKey(key, from: base) }
        if seen == nil {
            var s = Set<ByteKey>(minimumCapacity: count * 2)
            for m in base..<memberStack.count { s.insert(ByteKey(string: memberStack.key(at: m))) }
            seen = s
        }
        return !seen!.insert(ByteKey(string: key)).inserted
    }

    private mutating func array(depth: Int) throws(JSONParseError) -> JSONValue {
        if depth > maxDepth { throw JSONParseError("JSON is nested more than \(maxDepth) levels deep") }
        i += 1
        skipWhitespace()
        if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .array([]) }
        let base = elementStack.count
        while true {
            skipWhitespace()
            let found = duplicates.count
            let v = try value(depth: depth)
            if duplicates.count > found {
                for d in found..<duplicates.count { duplicates[d].append(.index(elementStack.count - base)) }
            }
            elementStack.append(v)
            skipWhitespace()
            guard i < bytes.count else { throw error("unexpected end of input in an array") }
            if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
            if bytes[i] == UInt8(ascii: "]") {
                i += 1
                return .array(elementStack.popArray(from: base))
            }
            throw error("expected ',' or ']' in an array")
        }
    }

    private mutating func string() throws(JSONParseError) -> String {
        i += 1  // opening quote
        let start = i
        var high: UInt8 = 0  // any byte >= 0x80 sets the top bit
        // Fast path: no escapes.
        while i < bytes.count {
            let b = bytes[i]
            if b == UInt8(ascii: "\"") {
                let slice = UnsafeBufferPointer(rebasing: bytes[start..<i])
                i += 1
                return try makeString(slice, ascii: high < 0x80)
            }
            if b == UInt8(ascii: "\\") { break }
            if b < 0x20 { throw error("a raw control character in a string") }
            high |= b
            i += 1
        }
        // Slow path: unescape into a buffer.
        var out = Array(bytes[start..<i])
        while i < bytes.count {
            let b = bytes[i]
            switch b {
            case UInt8(ascii: "\""):
                i += 1
                return try out.withUnsafeBufferPointer { buffer throws(JSONParseError) in try makeString(buffer, ascii: false) }
            case UInt8(ascii: "\\"):
                i += 1
                guard i < bytes.count else { break }
                let e = bytes[i]
                i += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if (0xD800...0xDBFF).contains(scalar) {
                        guard i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
                            throw error("an unpaired surrogate in a \\u escape")
                        }
                        i += 2
                        let low = try hex4()
                        guard (0xDC00...0xDFFF).contains(low) else { throw error("an unpaired surrogate in a \\u escape") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00...0xDFFF).contains(scalar) {
                        throw error("an unpaired surrogate in a \\u escape")
                    }
                    Self.appendUTF8(scalar, to: &out)
                default:
                    throw error("an invalid escape in a string")
                }
            default:
                if b < 0x20 { throw error("a raw control character in a string") }
                out.append(b)
                i += 1
            }
        }
        throw error("unterminated string")
    }

    /// Appends the UTF-8 encoding of `scalar` (a valid scalar value: surrogates are paired above).
    private static func appendUTF8(_ scalar: UInt32, to out: inout [UInt8]) {
        switch scalar {
        case 0..<0x80:
            out.append(UInt8(scalar))
        case 0x80..<0x800:
            out.append(UInt8(0xC0 | scalar >> 6))
            out.append(UInt8(0x80 | scalar & 0x3F))
        case 0x800..<0x10000:
            out.append(UInt8(0xE0 | scalar >> 12))
            out.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            out.append(UInt8(0x80 | scalar & 0x3F))
        default:
            out.append(UInt8(0xF0 | scalar >> 18))
            out.append(UInt8(0x80 | scalar >> 12 & 0x3F))
            out.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            out.append(UInt8(0x80 | scalar & 0x3F))
        }
    }

    /// `bytes` as a String, refused unless they are valid UTF-8.
    /// (`String(validating:)` is generic and, unspecialized, spent more time
    /// in metadata lookups than in validating.)
    private func makeString(_ bytes: UnsafeBufferPointer<UInt8>, ascii: Bool) throws(JSONParseError) -> String {
        let s = String(decoding: bytes, as: UTF8.self)
        if ascii { return s }
        // Decoding replaces each invalid sequence with U+FFFD (a valid
        // sequence), so the bytes come back unchanged exactly when they were valid.
        guard s.utf8.elementsEqual(bytes) else { throw error("a string is not valid UTF-8") }
        return s
    }

    private mutating func hex4() throws(JSONParseError) -> UInt32 {
        guard i + 4 <= bytes.count else { throw error("a short \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[i]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw error("a bad hex digit in a \\u escape")
            }
            v = v << 4 | d
            i += 1
        }
        return v
    }

    private mutating func number() throws(JSONParseError) -> JSONValue {
        let start = i
        var isInteger = true
        // Integers of up to 18 digits are read here; anything else goes through the standard library.
        let negative = bytes[i] == UInt8(ascii: "-")
        if negative { i += 1 }
        let digitsStart = i
        guard i < bytes.count, isDigit(bytes[i]) else { throw error("a number needs digits") }
        if bytes[i] == UInt8(ascii: "0") {
            i += 1
            if i < bytes.count, isDigit(bytes[i]) { throw error("a number may not have leading zeros") }
        } else {
            while i < bytes.count, isDigit(bytes[i]) { i += 1 }
        }
        if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
            isInteger = false
            i += 1
            guard i < bytes.count, isDigit(bytes[i]) else { throw error("a number needs digits after '.'") }
            while i < bytes.count, isDigit(bytes[i]) { i += 1 }
        }
        if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            isInteger = false
            i += 1
            if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
            guard i < bytes.count, isDigit(bytes[i]) else { throw error("a number needs digits in its exponent") }
            while i < bytes.count, isDigit(bytes[i]) { i += 1 }
        }
        if isInteger, i - digitsStart <= 18 {
            var v: Int64 = 0
            for k in digitsStart..<i { v = v * 10 + Int64(bytes[k] &- UInt8(ascii: "0")) }
            return .int(negative ? -v : v)
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self)
        if isInteger, let v = Int64(text) { return .int(v) }
        guard let d = Double(text), d.isFinite else { throw error("a number out of range") }
        return .double(d)
    }

    private func isDigit(_ b: UInt8) -> Bool { b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") }
}

/// The parser's scratch stack: values pushed one at a time and handed out as
/// an array of the top run, moved rather than copied (an `Array` would copy
/// the run out and then destroy the originals: a retain and a release for
/// every key, string and container in the document).
struct ScratchStack<Element>: ~Copyable {
    private var base: UnsafeMutablePointer<Element>
    private var capacity: Int
    private(set) var count = 0

    init(capacity: Int) {
        self.capacity = max(capacity, 1)  // (growth doubles it)
        base = .allocate(capacity: self.capacity)
    }

    deinit {
        base.deinitialize(count: count)
        base.deallocate()
    }

    mutating func append(_ element: consuming Element) {
        if count == capacity {
            let bigger = UnsafeMutablePointer<Element>.allocate(capacity: capacity * 2)
            bigger.moveInitialize(from: base, count: count)
            base.deallocate()
            base = bigger
            capacity *= 2
        }
        (base + count).initialize(to: element)
        count += 1
    }

    /// The elements from `start` to the top, in order; the stack shrinks to `start`.
    mutating func popArray(from start: Int) -> [Element] {
        let n = count - start
        if n == 0 { return [] }
        let run = base + start
        count = start
        return Array(unsafeUninitializedCapacity: n) { buffer, initialized in
            buffer.baseAddress!.moveInitialize(from: run, count: n)
            initialized = n
        }
    }
}

extension ScratchStack where Element == JSONObject.Element {
    /// The key of the member at `i`.
    func key(at i: Int) -> String { base[i].key }

    /// Whether a member from `start` on has exactly `key`'s bytes. (The keys
    /// are compared where they lie: no copy, so no reference count, per member.)
    func containsKey(_ key: String, from start: Int) -> Bool {
        for m in start..<count where JSONObject.sameBytes(base[m].key, key) { return true }
        return false
    }
}
