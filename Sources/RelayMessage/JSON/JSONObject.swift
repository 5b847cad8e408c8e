// JSONObject: a JSON object's members, in order, with byte-for-byte keys.
//
// Invariants:
// - Members stay in the order they were sent or added; replacing a value
//   keeps its position; a new key goes at the end.
// - No two members have the same key bytes (the parser refuses or reports
//   duplicates; `subscript` set and `updateValue` replace in place; a
//   dictionary literal with a repeated key traps, as Dictionary's does).
// - Keys are compared as UTF-8 bytes, never with `String ==` (canonically
//   equivalent keys are distinct).
//
// Lookup is a linear scan: a call's objects have a dozen members, where a
// scan (a length check rejects most keys at once) beats hashing. The
// normalizer makes a fixed number of lookups per object, so its cost stays
// linear in the input. What would be quadratic on a hostile object with many
// keys uses a byte-keyed hash instead: the parser's duplicate check past 16
// members, and `merging` two large objects.

/// A JSON object: its members in order, keys compared byte for byte.
public struct JSONObject: Sendable, Hashable, RandomAccessCollection, ExpressibleByDictionaryLiteral {
    public typealias Element = (key: String, value: JSONValue)

    /// The members, in order.
    public private(set) var members: [Element]

    public init() { members = [] }

    /// An object with these members, which must not repeat a key (the parser checks).
    init(members: [Element]) {
        self.members = members
    }

    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        members = []
        members.reserveCapacity(elements.count)
        for (k, v) in elements {
            precondition(index(forKey: k) == nil, "JSONObject literal repeats the key \"\(k)\"")
            members.append((key: k, value: v))
        }
    }

    // MARK: Collection

    public var startIndex: Int { members.startIndex }
    public var endIndex: Int { members.endIndex }
    public subscript(position: Int) -> Element { members[position] }

    /// The key of the member at position `i`.
    func key(at i: Int) -> String { members[i].key }

    /// The keys, in order.
    public var keys: [String] { members.map(\.key) }

    // MARK: Lookup and edits, order-preserving

    /// The position of `key` (compared byte for byte), or nil.
    public func index(forKey key: String) -> Int? {
        let n = key.utf8.count
        let found: Int?? = key.utf8.withContiguousStorageIfAvailable { k in
            for i in members.indices where members[i].key.utf8.count == n && Self.equals(members[i].key, k) {
                return i
            }
            return nil
        }
        if case .some(let i) = found { return i }
        return members.firstIndex { Self.sameBytes($0.key, key) }
    }

    /// Whether `s` is exactly `bytes` (whose count the caller checked).
    private static func equals(_ s: String, _ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        // A plain loop: keys are short, and a call to memcmp costs more than the comparison.
        s.utf8.withContiguousStorageIfAvailable { p in
            for j in 0..<p.count where p[j] != bytes[j] { return false }
            return true
        } ?? s.utf8.elementsEqual(bytes)
    }

    /// The value of `key`, or nil. Setting a value replaces it in place or
    /// appends it; setting nil removes the member.
    public subscript(key: String) -> JSONValue? {
        get { index(forKey: key).map { members[$0].value } }
        set {
            if let newValue { updateValue(newValue, forKey: key) } else { removeValue(forKey: key) }
        }
    }

    /// Replaces the value of `key` where it stands, or appends the member.
    /// Returns the old value.
    @discardableResult
    public mutating func updateValue(_ value: JSONValue, forKey key: String) -> JSONValue? {
        if let i = index(forKey: key) {
            let old = members[i].value
            members[i].value = value
            return old
        }
        members.append((key: key, value: value))
        return nil
    }

    /// Removes `key`, returning its value; the others keep their order.
    @discardableResult
    public mutating func removeValue(forKey key: String) -> JSONValue? {
        guard let i = index(forKey: key) else { return nil }
        return members.remove(at: i).value
    }

    /// Removes the member at position `i`, returning its value; the others keep their order.
    @discardableResult
    public mutating func removeMember(at i: Int) -> JSONValue {
        members.remove(at: i).value
    }

    /// Renames the member at `i` to `key`, keeping its position and value.
    /// `key` must not be another member's.
    public mutating func renameMember(at i: Int, to key: String) {
        assert(index(forKey: key).map { $0 == i } ?? true, "renaming a member onto another member's key")
        members[i].key = key
    }

    /// Replaces the value at position `i`.
    public mutating func setValue(_ value: JSONValue, at i: Int) {
        members[i].value = value
    }

    /// Takes the value at `i` out, leaving null in its place, so that the
    /// caller holds the only reference to it: to change it in place (and put
    /// it back with `setValue(_:at:)`) or to consume it.
    public mutating func takeValue(at i: Int) -> JSONValue {
        let v = members[i].value
        members[i].value = .null
        return v
    }

    /// Appends a member whose key the caller knows is not there yet.
    mutating func appendUnchecked(_ key: String, _ value: JSONValue) {
        members.append((key: key, value: value))
    }

    mutating func reserveCapacity(_ n: Int) { members.reserveCapacity(n) }

    /// This object's members in order, each value replaced by `other`'s for
    /// the same key, then `other`'s other members in its order. (As setting
    /// each of `other`'s members in turn, without a scan per member when both
    /// objects are large.)
    public func merging(_ other: JSONObject) -> JSONObject {
        if other.members.isEmpty { return self }
        if members.count * other.members.count <= 1024 {
            var merged = self
            for (k, v) in other.members { merged[k] = v }
            return merged
        }
        var position = [ByteKey: Int](minimumCapacity: other.members.count)
        for (i, m) in other.members.enumerated() { position[ByteKey(string: m.key)] = i }
        var used = [Bool](repeating: false, count: other.members.count)
        var merged = JSONObject()
        merged.reserveCapacity(members.count + other.members.count)
        for m in members {
            if let i = position[ByteKey(string: m.key)] {
                merged.appendUnchecked(m.key, other.members[i].value)
                used[i] = true
            } else {
                merged.appendUnchecked(m.key, m.value)
            }
        }
        for (i, m) in other.members.enumerated() where !used[i] { merged.appendUnchecked(m.key, m.value) }
        return merged
    }

    // MARK: Equality and hashing, by bytes and order

    public static func == (lhs: JSONObject, rhs: JSONObject) -> Bool {
        guard lhs.members.count == rhs.members.count else { return false }
        for (a, b) in zip(lhs.members, rhs.members) {
            guard sameBytes(a.key, b.key), a.value == b.value else { return false }
        }
        return true
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(members.count)
        for m in members {
            Self.hashBytes(m.key, into: &hasher)
            hasher.combine(m.value)
        }
    }

    /// Whether `a` and `b` are the same UTF-8 bytes (not merely canonically equivalent).
    public static func sameBytes(_ a: String, _ b: String) -> Bool {
        let n = a.utf8.count
        guard n == b.utf8.count else { return false }
        return b.utf8.withContiguousStorageIfAvailable { equals(a, $0) } ?? a.utf8.elementsEqual(b.utf8)
    }

    static func hashBytes(_ s: String, into hasher: inout Hasher) {
        hasher.combine(s.utf8.count)
        if s.utf8.withContiguousStorageIfAvailable({ hasher.combine(bytes: UnsafeRawBufferPointer($0)) }) == nil {
            for b in s.utf8 { hasher.combine(b) }
        }
    }
}

/// A key hashed and compared as its UTF-8 bytes, for the few places that
/// need a hash set of keys (the parser's duplicate check on large objects).
struct ByteKey: Hashable {
    let string: String
    static func == (a: ByteKey, b: ByteKey) -> Bool { JSONObject.sameBytes(a.string, b.string) }
    func hash(into hasher: inout Hasher) { JSONObject.hashBytes(string, into: &hasher) }
}
