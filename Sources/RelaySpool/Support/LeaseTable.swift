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
//   it is leased, gone, or deferred. A read moves it forward only over rows
//   that were leased when it began, that it leased itself, or that were not
//   due (in backoff, or their write key held), and only if no row went back
//   to the queue meanwhile (`cursorMoves`); releasing a row that is still
//   queued moves it back below that row. Removed rows need not move it.
//   This relies on a seq never being used twice (the outbox's AUTOINCREMENT):
//   a new row always lands past every cursor.
// - `deferred` (per priority) covers every row the cursor passed that was not
//   due: at most its lowest seq, at most its earliest due time. The first
//   read at or after that time moves the cursor back below it, so a row
//   passed over is read again once it may be due, and a long run of rows
//   not due (an app whose key the upstream refuses, with a million calls
//   queued) is stepped over once, not at every read.

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
    /// Per priority: the rows not due that the cursor passed over, as the
    /// lowest seq among them and the earliest time one may be due.
    private(set) var deferred: [(from: Int64, dueAt: Int64)?] = [nil, nil]

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
    /// `committedBeforeRead`. A cursor that passed rows which may be due by
    /// `nowMillis` moves back below them.
    mutating func beginRead(committedBeforeRead: Int64, nowMillis: Int64 = .max) -> ReadStart {
        readSince = committedBeforeRead
        forget(upTo: committedBeforeRead)
        for p in deferred.indices {
            guard let d = deferred[p], d.dueAt <= nowMillis else { continue }
            leasedThrough[p] = min(leasedThrough[p], d.from - 1)
            deferred[p] = nil
        }
        return ReadStart(unavailable: removing.isEmpty ? leased : leased.union(removing.keys), leased: leased,
                         after: leasedThrough, cursorMoves: cursorMoves)
    }

    /// The read ends: leases what is still free of `seqs` and returns the
    /// seqs it could not lease. `runs` are, per priority read, the last seq
    /// of the leading run of rows that were leased or are in `seqs`: the
    /// cursor moves there (short of a refused row) unless a release moved
    /// it back since `start`. Without `start` (a failed read) it stays.
    /// `passed` are, per priority, the rows not due in those runs (the
    /// lowest seq, the earliest due time): kept in `deferred` when the cursor
    /// moves over them.
    mutating func endRead(leasing seqs: [Int64], start: ReadStart? = nil, runs: [(priority: Int, through: Int64)] = [],
                          passed: [(priority: Int, from: Int64, dueAt: Int64)] = []) -> Set<Int64> {
        readSince = nil
        var refused: Set<Int64> = []
        for seq in seqs {
            if removing[seq] != nil || leased.contains(seq) { refused.insert(seq) } else { leased.insert(seq) }
        }
        if let start, start.cursorMoves == cursorMoves {
            let firstRefused = refused.min() ?? .max
            for run in runs { leasedThrough[run.priority] = max(leasedThrough[run.priority], min(run.through, firstRefused - 1)) }
            for d in passed where d.from <= leasedThrough[d.priority] {
                let had = deferred[d.priority]
                deferred[d.priority] = (min(had?.from ?? .max, d.from), min(had?.dueAt ?? .max, d.dueAt))
            }
        }
        return refused
    }

    /// Ends these leases. Rows still queued (`removed` false: retried or
    /// given back) will be read again: the cursor moves back below them.
    mutating func release(_ seqs: some Sequence<Int64>, removed: Bool = false) {
        var lowest: Int64?
        for seq in seqs where leased.remove(seq) != nil { lowest = min(lowest ?? seq, seq) }
        guard !removed, let lowest else { return }
        for p in leasedThrough.indices where leasedThrough[p] >= lowest { leasedThrough[p] = lowest - 1 }
        cursorMoves += 1
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
