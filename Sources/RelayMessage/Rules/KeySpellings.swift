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
