// The read cursor in the lease table: where a lease reads on from.

import Testing
@testable import RelaySpool

@Suite struct LeaseTableTests {
    @Test func aReadMovesTheCursorOverWhatItLeased() {
        var table = LeaseTable()
        let start = table.beginRead(committedBeforeRead: 0)
        _ = table.endRead(leasing: [1, 2, 3], start: start, runs: [(0, 3)])
        #expect(table.leasedThrough[0] == 3)
        table.release([2, 3], removed: true)  // delivered: the cursor stays
        #expect(table.leasedThrough[0] == 3)
        table.release([1])  // given back: read again from 1
        #expect(table.leasedThrough[0] == 0)
    }

    @Test func aRowGivenBackDuringAReadIsNotPassedOver() {
        var table = LeaseTable()
        _ = table.endRead(leasing: [1, 2], start: table.beginRead(committedBeforeRead: 0), runs: [(0, 0)])
        #expect(table.leasedThrough[0] == 0, "runs say how far the read may move it")
        // A read sees 1 and 2 leased and would move the cursor over them…
        let start = table.beginRead(committedBeforeRead: 0)
        #expect(start.leased == [1, 2])
        // …but row 2 goes back to the queue before the read ends.
        table.release([2])
        _ = table.endRead(leasing: [3], start: start, runs: [(0, 3)])
        #expect(table.leasedThrough[0] == 0, "row 2 is queued and not leased: the cursor must stay below it")
    }

    @Test func aRefusedRowStopsTheCursor() {
        var table = LeaseTable()
        let claimed = table.claimForRemoval([(seq: 2, bytes: 10)], byCommit: 1)  // the writer expires row 2
        #expect(claimed == [2])
        let start = table.beginRead(committedBeforeRead: 0)  // a snapshot from before that commit
        let refused = table.endRead(leasing: [1, 2, 3], start: start, runs: [(0, 3)])
        #expect(refused == [2])
        #expect(table.leasedThrough[0] == 1)
    }

    @Test func aRewindMovesTheCursorBackBelowRowsPassedOver() {
        var table = LeaseTable()
        _ = table.endRead(leasing: [11], start: table.beginRead(committedBeforeRead: 0), runs: [(0, 11)])
        #expect(table.leasedThrough[0] == 11)
        table.rewind(priority: 0, below: 4)
        #expect(table.beginRead(committedBeforeRead: 0).after[0] == 3)
        _ = table.endRead(leasing: [])
        table.rewind(priority: 0, below: 8)
        #expect(table.leasedThrough[0] == 3, "never forward")
    }

    @Test func aReleaseWithoutRewindEndsTheLeaseAndLeavesTheCursor() {
        var table = LeaseTable()
        _ = table.endRead(leasing: [1, 2, 3], start: table.beginRead(committedBeforeRead: 0), runs: [(0, 3)])
        #expect(table.release([2, 3], rewind: false) == [2, .max], "the lowest passed: the caller remembers it")
        #expect(table.leased == [1] && table.leasedThrough[0] == 3)
        #expect(table.release([1], removed: true) == nil)
    }

    @Test func aRowGivenBackMovesOnlyTheCursorOfItsPriority() {
        var table = LeaseTable()
        let bulk = SpoolPriority.bulk.seq(7)
        _ = table.endRead(leasing: [5, 6, bulk], start: table.beginRead(committedBeforeRead: 0), runs: [(0, 6), (1, bulk)])
        #expect(table.leasedThrough == [6, bulk])
        table.release([6])  // a live row given back: the live rows are read again from it, the bulk ones go on
        #expect(table.leasedThrough == [5, bulk])
        #expect(table.release([bulk], rewind: false) == [.max, bulk])
        #expect(table.leasedThrough == [5, bulk])
    }
}

extension LeaseTableTests {
    @Test func aRefusedRowStopsOnlyTheCursorOfItsPriority() {
        var table = LeaseTable()
        let bulk = SpoolPriority.bulk.seq(9)
        _ = table.claimForRemoval([(seq: 2, bytes: 10)], byCommit: 1)  // the writer expires live row 2
        let start = table.beginRead(committedBeforeRead: 0)
        let refused = table.endRead(leasing: [1, 2, bulk], start: start, runs: [(0, 2), (1, bulk)])
        #expect(refused == [2])
        #expect(table.leasedThrough == [1, bulk], "the bulk rows read go on")
    }
}
