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
// - The read cursor (`leasedThrough`, per priority): every row at or below
//   it is leased, gone, or passed over while not due (in backoff, or its
//   write key held), which the reader remembers and rewinds to (`rewind`)
//   once they may be due. A read moves it forward only over such rows and
//   rows that were leased when it began or that it leased itself, and only
//   if no row went back to the queue meanwhile (`cursorMoves`); releasing a
//   row that is still queued moves it back below that row, unless the reader
//   takes it as passed over (`release(_:rewind: false)`). Removed rows need
//   not move it. This relies on a seq never being used twice (every writer
//   numbers new rows after `totals.last_seq`): a new row always lands past
//   its priority's cursor. Each priority has its own seqs
//   (`SpoolPriority.seqs`) and its own cursor.

/// The in-flight rows and the rows being removed.
struct LeaseTable {
    private(set) var leased: Set<Int64> = []
    private var removing: [Int64: Int64] = [:]
    /// The commit count when the read under way started; nil when none is.
    private var readSince: Int64?

    /// Per priority (index = `SpoolPriority.rawValue`): every row of that
    /// priority with a seq at or below this is leased or gone.
    private(set) var leasedThrough: [Int64] = [.min, .min]
    /// Bumped at every release of a row still queued, whether or not the
    /// cursor had passed it: a read that saw the row leased at its start must
    /// not move the cursor over it once it is back in the queue.
    private var cursorMoves = 0
    /// What a read starts from.
    struct ReadStart {
        /// Rows to skip: leased or being removed.
        var unavailable: Set<Int64>
        /// The leased ones among them.
        var leased: Set<Int64>
        /// Where to read from, per priority (`leasedThrough`).
        var after: [Int64]
        fileprivate var cursorMoves: Int
    }

    /// A read starts: returns the rows it must skip and where to read from,
    /// forgetting the marks of rows whose removal committed before
    /// `committedBeforeRead`.
    mutating func beginRead(committedBeforeRead: Int64) -> ReadStart {
        readSince = committedBeforeRead
        forget(upTo: committedBeforeRead)
        return ReadStart(unavailable: removing.isEmpty ? leased : leased.union(removing.keys), leased: leased,
                         after: leasedThrough, cursorMoves: cursorMoves)
    }

    /// Moves the cursor of `priority` back below `seq`: rows passed over
    /// there may be due now.
    mutating func rewind(priority: Int, below seq: Int64) {
        guard leasedThrough[priority] >= seq else { return }
        leasedThrough[priority] = seq - 1
        cursorMoves += 1
    }

    /// The read ends: leases what is still free of `seqs` and returns the
    /// seqs it could not lease. `runs` are, per priority read, the last seq
    /// of the leading run of rows that were leased or are in `seqs`: the
    /// cursor moves there (short of a refused row) unless a release moved
    /// it back since `start`. Without `start` (a failed read) it stays.
    mutating func endRead(leasing seqs: [Int64], start: ReadStart? = nil, runs: [(priority: Int, through: Int64)] = []) -> Set<Int64> {
        readSince = nil
        var refused: Set<Int64> = []
        for seq in seqs {
            if removing[seq] != nil || leased.contains(seq) { refused.insert(seq) } else { leased.insert(seq) }
        }
        if let start, start.cursorMoves == cursorMoves {
            var firstRefused: [Int64] = [.max, .max]
            for seq in refused { Self.lower(&firstRefused, to: seq) }
            for run in runs {
                leasedThrough[run.priority] = max(leasedThrough[run.priority], min(run.through, firstRefused[run.priority] - 1))
            }
        }
        return refused
    }

    /// Ends these leases. Rows still queued (`removed` false: retried or
    /// given back) will be read again: their priority's cursor moves back
    /// below them, unless `rewind` is false (the caller rewinds when they
    /// may be due). Returns, per priority, the lowest of them still queued
    /// that its cursor had passed (`.max`: none), or nil when there is none.
    @discardableResult
    mutating func release(_ seqs: some Sequence<Int64>, removed: Bool = false, rewind: Bool = true) -> [Int64]? {
        guard !removed else {
            for seq in seqs { leased.remove(seq) }  // (gone: no cursor to move)
            return nil
        }
        var lowest: [Int64] = [.max, .max]
        for seq in seqs where leased.remove(seq) != nil { Self.lower(&lowest, to: seq) }
        guard lowest.contains(where: { $0 != .max }) else { return nil }
        cursorMoves += 1
        var passed: [Int64] = [.max, .max]
        for p in lowest.indices where lowest[p] != .max && leasedThrough[p] >= lowest[p] {
            passed[p] = lowest[p]
            if rewind { leasedThrough[p] = lowest[p] - 1 }
        }
        return passed.contains(where: { $0 != .max }) ? passed : nil
    }

    /// Lowers `lowest` (per priority, index = `SpoolPriority.rawValue`;
    /// `.max`: none yet) to `seq` in its priority's place, if below.
    private static func lower(_ lowest: inout [Int64], to seq: Int64) {
        let p = Int(SpoolPriority.of(seq: seq).rawValue)
        lowest[p] = min(lowest[p], seq)
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
