// JSON encoding: members in their order (JSONObject keeps the order sent),
// no insignificant white space, strings escaped per RFC 8259 (only `"`, `\`
// and control characters; everything else, non-ASCII included, is copied as
// its UTF-8 bytes). Used for everything the relay stores and sends. The same
// tree always encodes to the same bytes, and parsing those bytes gives back an
// equal tree.
//
// Speed: strings are copied in runs (the bytes between two characters that
// need escaping go in with one `append(contentsOf:)`), integers are written
// digit by digit, and nothing allocates but the output array.

extension JSONValue {
    /// The encoding of this value.
    public func encoded() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(1024)  // a typical call encodes to under 1 KiB: one allocation
        encode(into: &out)
        return out
    }

    /// Appends the encoding of this value to `out`.
    public func encode(into out: inout [UInt8]) {
        switch self {
        case .null: Self.appendLiteral("null", to: &out)
        case .bool(let b): Self.appendLiteral(b ? "true" : "false", to: &out)
        case .int(let i): Self.appendInteger(i, to: &out)
        case .double(let d):
            if d.isFinite, d == d.rounded(), abs(d) < 1e15 {
                Self.appendInteger(Int64(d), to: &out)
            } else if d.isFinite {
                out.append(contentsOf: "\(d)".utf8)
            } else {
                Self.appendLiteral("null", to: &out)
            }
        case .string(let s): Self.encodeString(s, into: &out)
        case .array(let a):
            out.append(UInt8(ascii: "["))
            var first = true
            for v in a {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                v.encode(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let o):
            o.encode(into: &out)
        }
    }

    /// Appends `s` as a JSON string literal.
    public static func encodeString(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        if s.utf8.withContiguousStorageIfAvailable({ appendEscaped($0, to: &out) }) == nil {
            let copy = Array(s.utf8)
            copy.withUnsafeBufferPointer { appendEscaped($0, to: &out) }
        }
        out.append(UInt8(ascii: "\""))
    }

    private static let hexDigits: StaticString = "0123456789abcdef"

    /// Appends `bytes` escaped, copying each run that needs no escaping at once.
    static func appendEscaped(_ bytes: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
        var run = 0
        for k in 0..<bytes.count {
            let b = bytes[k]
            if b >= 0x20, b != UInt8(ascii: "\""), b != UInt8(ascii: "\\") { continue }
            if run < k { out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[run..<k])) }
            run = k + 1
            out.append(UInt8(ascii: "\\"))
            switch b {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): out.append(b)
            case 0x0A: out.append(UInt8(ascii: "n"))
            case 0x0D: out.append(UInt8(ascii: "r"))
            case 0x09: out.append(UInt8(ascii: "t"))
            default:
                let hex = hexDigits.utf8Start
                out.append(UInt8(ascii: "u"))
                out.append(UInt8(ascii: "0"))
                out.append(UInt8(ascii: "0"))
                out.append(hex[Int(b >> 4)])
                out.append(hex[Int(b & 0xF)])
            }
        }
        if run < bytes.count { out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[run..<bytes.count])) }
    }

    static func appendLiteral(_ s: StaticString, to out: inout [UInt8]) {
        out.append(contentsOf: UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    /// Appends the decimal digits of `i`, without going through a String.
    static func appendInteger(_ i: Int64, to out: inout [UInt8]) {
        if i < 0 { out.append(UInt8(ascii: "-")) }
        var m = i.magnitude
        if m < 10 { out.append(UInt8(ascii: "0") + UInt8(m)); return }
        // 20 digits hold UInt64.max.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { buf in
            var k = 20
            while m > 0 {
                k -= 1
                buf[k] = UInt8(ascii: "0") + UInt8(m % 10)
                m /= 10
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: buf[k..<20]))
        }
    }
}

extension JSONObject {
    /// Appends the encoding of this object, members in order.
    public func encode(into out: inout [UInt8]) {
        out.append(UInt8(ascii: "{"))
        var first = true
        for m in members {
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            JSONValue.encodeString(m.key, into: &out)
            out.append(UInt8(ascii: ":"))
            m.value.encode(into: &out)
        }
        out.append(UInt8(ascii: "}"))
    }
}
