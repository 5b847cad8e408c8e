// KeySpellings: which of a fixed set of keys a JSON key is.
//
// Owns: one lookup the message rules make per member of the objects they
// walk (the reserved traits, the top-level envelope), so it is built for
// that: the spellings sit in flat arrays of plain values, grouped by UTF-8
// length, so a key costs one length lookup and a few byte comparisons, with
// no hashing and no reference counting.
// Invariants: keys are compared byte for byte (never by Unicode
// equivalence, as everywhere in JSONObject); the set is fixed at init.

/// A fixed set of keys, matched byte for byte.
struct KeySpellings: Sendable {
    /// Every key's bytes, one after another, shortest key first.
    private let bytes: [UInt8]
    /// Per key, shortest first: where its bytes start, and its position in
    /// the keys given to `init`.
    private let spellings: [(offset: Int, index: Int)]
    /// `spellings[first[n]..<first[n + 1]]` are the keys n bytes long.
    private let first: [Int]

    /// `keys` must not repeat a key.
    init(_ keys: [String]) {
        let sorted = keys.enumerated().map { (bytes: Array($0.element.utf8), index: $0.offset) }
            .sorted { $0.bytes.count < $1.bytes.count }
        let longest = sorted.last?.bytes.count ?? 0
        bytes = sorted.flatMap(\.bytes)
        var offset = 0
        spellings = sorted.map { s in
            defer { offset += s.bytes.count }
            return (offset, s.index)
        }
        first = (0...(longest + 1)).map { n in sorted.firstIndex { $0.bytes.count >= n } ?? sorted.count }
    }

    /// The position (in the keys given to `init`) of the key spelled
    /// exactly `key`, or nil.
    func index(of key: String) -> Int? {
        let n = key.utf8.count
        guard n + 1 < first.count else { return nil }
        let range = first[n]..<first[n + 1]
        if range.isEmpty { return nil }
        let found: Int?? = key.utf8.withContiguousStorageIfAvailable { k in
            bytes.withUnsafeBufferPointer { b in
                spellings.withUnsafeBufferPointer { sp in
                    for j in range {
                        let o = sp[j].offset
                        var same = true
                        for x in 0..<n where b[o + x] != k[x] { same = false; break }
                        if same { return sp[j].index }
                    }
                    return nil
                }
            }
        }
        if case .some(let hit) = found { return hit }
        // A key without contiguous UTF-8 (not one the parser makes).
        for j in range {
            let o = spellings[j].offset
            if bytes[o..<(o + n)].elementsEqual(key.utf8) { return spellings[j].index }
        }
        return nil
    }
}

/// Names that may also be sent in camelCase (`first_name`, `firstName`):
/// where each one sits in an object, found in one pass over its members.
struct SpellingPairs: Sendable {
    /// The canonical (snake_case) names, in the caller's order.
    let names: [String]
    /// Each name's camelCase spelling, where it has one.
    let camels: [String?]
    /// The names (at their positions), then the camelCase spellings.
    private let spellings: KeySpellings
    /// The name of each camelCase spelling, in the order `spellings` has them.
    private let camelEntries: [Int]

    init(names: [String], camels: [String?]) {
        precondition(names.count == camels.count)
        self.names = names
        self.camels = camels
        camelEntries = camels.indices.filter { camels[$0] != nil }
        spellings = KeySpellings(names + camelEntries.map { camels[$0]! })
    }

    /// The name `key` spells (byte for byte), and whether it is the camelCase spelling.
    private func match(_ key: String) -> (entry: Int, camel: Bool)? {
        guard let i = spellings.index(of: key) else { return nil }
        return i < names.count ? (i, false) : (camelEntries[i - names.count], true)
    }

    /// Renames each camelCase spelling in `obj` to its name where it stands
    /// (no member moves), then calls `visit` with each name present and its
    /// position, in the order of `names`. Returns false, having changed
    /// nothing, when a name came under both spellings: the caller settles
    /// those name by name. (Keys are borrowed through the members' buffer:
    /// no reference count per member.)
    func canonicalize(_ obj: inout JSONObject, visit: (_ name: Int, _ at: Int, _ obj: inout JSONObject) -> Void) -> Bool {
        let n = names.count
        return withUnsafeTemporaryAllocation(of: Int.self, capacity: 2 * n) { at -> Bool in
            // at[e]: where name e is, at[n + e]: where its camelCase spelling is (-1: absent).
            at.initialize(repeating: -1)
            let clash = obj.members.withUnsafeBufferPointer { members -> Bool in
                for i in members.indices {
                    guard let hit = match(members[i].key) else { continue }
                    at[hit.camel ? n + hit.entry : hit.entry] = i
                    if at[hit.entry] >= 0 && at[n + hit.entry] >= 0 { return true }
                }
                return false
            }
            if clash { return false }
            for e in 0..<n where at[e] >= 0 || at[n + e] >= 0 {
                let i = max(at[e], at[n + e])
                if at[n + e] >= 0 { obj.renameMember(at: i, to: names[e]) }
                visit(e, i, &obj)
            }
            return true
        }
    }
}
