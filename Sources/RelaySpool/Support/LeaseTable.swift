// LeaseTable: which outbox rows are in flight, shared by the forwarder's
// reader and the writer, so that the writer never expires or drops a row
// whose batch is in flight (a row must never be both delivered and
// dead-lettered or dropped).
//
// Invariants, all under one lock:
// - A row is leased by the reader only if the writer is not removing it.
// - The writer removes a row (expiry, drop_oldest) only if it is not leased;
//   from that moment the row is "removing", tagged with the number of the
//   commit that deletes it.
// - A reader's read may have started before that commit (a WAL snapshot that
//   still holds the row): the reader records the commit count before it
//   reads, and a "removing" mark is forgotten only once a reader has seen a
//   commit count at or past its tag, i.e. its snapshot no longer holds it.

/// The in-flight rows and the rows being removed.
struct LeaseTable {
    private(set) var leased: Set<Int64> = []
    private var removing: [Int64: Int64] = [:]

    /// Rows a reader must skip: leased or being removed. Forgets the marks of
    /// rows whose removal committed before `committedBeforeRead`.
    mutating func unavailable(committedBeforeRead: Int64) -> Set<Int64> {
        if !removing.isEmpty { removing = removing.filter { $0.value > committedBeforeRead } }
        return removing.isEmpty ? leased : leased.union(removing.keys)
    }

    /// Leases what is still free of `seqs`; returns the seqs it could not lease.
    mutating func lease(_ seqs: [Int64]) -> Set<Int64> {
        var refused: Set<Int64> = []
        for seq in seqs {
            if removing[seq] != nil || leased.contains(seq) { refused.insert(seq) } else { leased.insert(seq) }
        }
        return refused
    }

    mutating func release(_ seqs: some Sequence<Int64>) {
        for seq in seqs { leased.remove(seq) }
    }

    /// Marks for removal by commit `commit` those of `rows` that are not
    /// leased, in order, until their bytes reach `bytesNeeded` (all of them
    /// when nil), and returns them: the writer may remove only these.
    mutating func claimForRemoval(_ rows: [(seq: Int64, bytes: Int64)], bytesNeeded: Int64? = nil, byCommit commit: Int64) -> [Int64] {
        var claimed: [Int64] = []
        var still = bytesNeeded ?? .max
        for row in rows where still > 0 && !leased.contains(row.seq) {
            removing[row.seq] = commit
            claimed.append(row.seq)
            if bytesNeeded != nil { still -= row.bytes }
        }
        return claimed
    }
}
