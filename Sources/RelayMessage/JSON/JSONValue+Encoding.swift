// JSON encoding: members in their order (JSONObject keeps the order sent),
// no insignificant white space, strings escaped per RFC 8259 (only `"`, `\`
// and control characters; everything else, non-ASCII included, is copied as
// its UTF-8 bytes). Used for everything the relay stores and sends. The same
// tree always encodes to the same bytes, and parsing those bytes gives back an
// equal tree.
//
// Speed: the tree is written into one growing buffer through a pointer
// (`JSONWriter`): a capacity check per string or number, not per byte;
// strings are scanned eight bytes at a time for anything to escape and
// copied in runs; integers are written digit by digit.

extension JSONValue {
    /// The encoding of this value.
    public func encoded() -> [UInt8] {
        var w = JSONWriter(capacity: 1024)  // a typical call encodes to under 1 KiB
        write(to: &w)
        return w.finish()
    }

    /// Appends the encoding of this value to `out`.
    public func encode(into out: inout [UInt8]) {
        var w = JSONWriter(capacity: 256)
        write(to: &w)
        w.finish(appendingTo: &out)
    }

    /// Appends `s` as a JSON string literal.
    public static func encodeString(_ s: String, into out: inout [UInt8]) {
        var w = JSONWriter(capacity: s.utf8.count + 8)
        w.writeString(s)
        w.finish(appendingTo: &out)
    }

    func write(to w: inout JSONWriter) {
        switch self {
        case .null: w.writeLiteral("null")
        case .bool(let b): w.writeLiteral(b ? "true" : "false")
        case .int(let i): w.writeInteger(i)
        case .double(let d):
            if d.isFinite, d == d.rounded(), abs(d) < 1e15 {
                w.writeInteger(Int64(d))
            } else if d.isFinite {
                var s = "\(d)"
                s.withUTF8 { w.writeBytes($0) }
            } else {
                w.writeLiteral("null")
            }
        case .string(let s): w.writeString(s)
        case .array(let a):
            w.writeByte(UInt8(ascii: "["))
            // Elements borrowed through the buffer: no reference count per element.
            a.withUnsafeBufferPointer { elements in
                for i in elements.indices {
                    if i > 0 { w.writeByte(UInt8(ascii: ",")) }
                    elements[i].write(to: &w)
                }
            }
            w.writeByte(UInt8(ascii: "]"))
        case .object(let o):
            o.write(to: &w)
        }
    }
}

extension JSONObject {
    /// Appends the encoding of this object, members in order.
    public func encode(into out: inout [UInt8]) {
        var w = JSONWriter(capacity: 256)
        write(to: &w)
        w.finish(appendingTo: &out)
    }

    func write(to w: inout JSONWriter) {
        w.writeByte(UInt8(ascii: "{"))
        // Members borrowed through the buffer: no reference count per member.
        members.withUnsafeBufferPointer { members in
            for i in members.indices {
                if i > 0 { w.writeByte(UInt8(ascii: ",")) }
                w.writeString(members[i].key)
                w.writeByte(UInt8(ascii: ":"))
                members[i].value.write(to: &w)
            }
        }
        w.writeByte(UInt8(ascii: "}"))
    }
}

/// A growing byte buffer written through a pointer; owned by one encoding,
/// freed by `finish`.
struct JSONWriter: ~Copyable {
    private var base: UnsafeMutablePointer<UInt8>
    private var count = 0
    private var capacity: Int

    init(capacity: Int) {
        self.capacity = max(capacity, 16)
        base = .allocate(capacity: self.capacity)
    }

    deinit { base.deallocate() }

    /// The bytes written, as an array; the writer is gone.
    consuming func finish() -> [UInt8] {
        Array(UnsafeBufferPointer(start: base, count: count))
    }

    consuming func finish(appendingTo out: inout [UInt8]) {
        out.append(contentsOf: UnsafeBufferPointer(start: base, count: count))
    }

    /// Makes room for `n` more bytes.
    @inline(__always)
    private mutating func reserve(_ n: Int) {
        if count + n > capacity { grow(count + n) }
    }

    private mutating func grow(_ needed: Int) {
        var c = capacity * 2
        while c < needed { c *= 2 }
        let new = UnsafeMutablePointer<UInt8>.allocate(capacity: c)
        new.update(from: base, count: count)
        base.deallocate()
        base = new
        capacity = c
    }

    mutating func writeByte(_ b: UInt8) {
        reserve(1)
        base[count] = b
        count += 1
    }

    mutating func writeBytes(_ bytes: UnsafeBufferPointer<UInt8>) {
        guard !bytes.isEmpty else { return }
        reserve(bytes.count)
        (base + count).update(from: bytes.baseAddress!, count: bytes.count)
        count += bytes.count
    }

    mutating func writeLiteral(_ s: StaticString) {
        writeBytes(UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    /// The decimal digits of `i`, without going through a String.
    mutating func writeInteger(_ i: Int64) {
        reserve(20)  // "-9223372036854775808"
        if i < 0 { base[count] = UInt8(ascii: "-"); count += 1 }
        var m = i.magnitude
        var digits = 1
        var t = m
        while t >= 10 { t /= 10; digits += 1 }
        var k = count + digits
        count = k
        repeat {
            k -= 1
            base[k] = UInt8(ascii: "0") + UInt8(m % 10)
            m /= 10
        } while m > 0
    }

    /// `s` as a JSON string literal.
    mutating func writeString(_ s: String) {
        if s.utf8.withContiguousStorageIfAvailable({ writeEscaped($0) }) == nil {
            let copy = Array(s.utf8)
            copy.withUnsafeBufferPointer { writeEscaped($0) }
        }
    }

    private static let hexDigits: StaticString = "0123456789abcdef"

    /// Whether any of the eight bytes in `w` is below 0x20, `"` or `\`.
    @inline(__always)
    private static func needsEscape(_ w: UInt64) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
        let control = (w &- ones &* 0x20) & ~w & highs
        let q = w ^ (ones &* 0x22), quote = (q &- ones) & ~q & highs
        let b = w ^ (ones &* 0x5C), backslash = (b &- ones) & ~b & highs
        return control | quote | backslash != 0
    }

    private mutating func writeEscaped(_ bytes: UnsafeBufferPointer<UInt8>) {
        let n = bytes.count
        reserve(n + 2)
        base[count] = UInt8(ascii: "\"")
        count += 1
        var run = 0  // start of the bytes not yet copied
        var k = 0
        if n > 0 {
            let raw = UnsafeRawPointer(bytes.baseAddress!)
            while true {
                // Skip eight clean bytes at a time.
                while k + 8 <= n, !Self.needsEscape(raw.loadUnaligned(fromByteOffset: k, as: UInt64.self)) { k += 8 }
                if k >= n { break }
                let b = bytes[k]
                if b >= 0x20, b != UInt8(ascii: "\""), b != UInt8(ascii: "\\") { k += 1; continue }
                writeBytes(UnsafeBufferPointer(rebasing: bytes[run..<k]))
                reserve(6 + (n - k))
                base[count] = UInt8(ascii: "\\")
                count += 1
                switch b {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"): base[count] = b; count += 1
                case 0x0A: base[count] = UInt8(ascii: "n"); count += 1
                case 0x0D: base[count] = UInt8(ascii: "r"); count += 1
                case 0x09: base[count] = UInt8(ascii: "t"); count += 1
                default:
                    let hex = Self.hexDigits.utf8Start
                    base[count] = UInt8(ascii: "u")
                    base[count + 1] = UInt8(ascii: "0")
                    base[count + 2] = UInt8(ascii: "0")
                    base[count + 3] = hex[Int(b >> 4)]
                    base[count + 4] = hex[Int(b & 0xF)]
                    count += 5
                }
                k += 1
                run = k
            }
        }
        writeBytes(UnsafeBufferPointer(rebasing: bytes[run..<n]))
        writeByte(UInt8(ascii: "\""))
    }
}
