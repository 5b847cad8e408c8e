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
//   reads (`readSince`, until its leases are taken), and a "removing" mark
//   is forgotten once no read can still see the row: by the reader when it
//   starts a read past the mark's commit, by the writer when no read is
//   under way or the one under way started past it. So the marks stay few
//   even while the forwarder does not read (paused, backing off).

/// The in-flight rows and the rows being removed.
struct LeaseTable {
    private(set) var leased: Set<Int64> = []
    private var removing: [Int64: Int64] = [:]
    /// The commit count when the read under way started; nil when none is.
    private var readSince: Int64?

    /// A read starts: returns the rows it must skip (leased or being
    /// removed), forgetting the marks of rows whose removal committed
    /// before `committedBeforeRead`.
    mutating func beginRead(committedBeforeRead: Int64) -> Set<Int64> {
        readSince = committedBeforeRead
        forget(upTo: committedBeforeRead)
        return removing.isEmpty ? leased : leased.union(removing.keys)
    }

    /// The read ends: leases what is still free of `seqs`; returns the seqs
    /// it could not lease.
    mutating func endRead(leasing seqs: [Int64]) -> Set<Int64> {
        readSince = nil
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
        forget(upTo: readSince ?? commit - 1)  // commits up to commit-1 are done; no read older than readSince
        var claimed: [Int64] = []
        var still = bytesNeeded ?? .max
        for row in rows where still > 0 && !leased.contains(row.seq) {
            removing[row.seq] = commit
            claimed.append(row.seq)
            if bytesNeeded != nil { still -= row.bytes }
        }
        return claimed
    }

    private mutating func forget(upTo committed: Int64) {
        if !removing.isEmpty { removing = removing.filter { $0.value > committed } }
    }
}
