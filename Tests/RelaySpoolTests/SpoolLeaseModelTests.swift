// The lease rules of the spool's reader against a model: random appends on
// both priorities, leases (some after a reload, when every backoff and hold
// is due), releases, retries, holds of write keys and acknowledgements. No
// row is leased twice or before it is due, and every due row is leased
// within a bounded number of reads. Then the cost of a refused app's
// backlog: stepped over once, not again at each refusal or at another
// key's hold ending.

import Foundation
import Testing
@testable import RelaySpool

/// A small seeded generator (SplitMix64): the same run for the same seed.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 { state &+= 0x9E3779B97F4A7C15; var z = state; z = (z ^ (z >> 30)) &* 0xBF58476D1CE4E5B9; z = (z ^ (z >> 27)) &* 0x94D049BB133111EB; return z ^ (z >> 31) }
}

@Suite struct SpoolLeaseModelTests {
    @Test(arguments: 0..<60)
    func noDueRowIsSkippedAndNoneLeasedTwice(_ seed: Int) async throws {
        var rng = SplitMix(state: UInt64(seed) &* 7919 &+ 1)
        let dir = TempDir()
        let spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        let reader = try spool.makeReader()
        struct Row { var key: String; var next: Int64 = 0; var leased = false; var gone = false }
        var rows: [String: Row] = [:]
        var holds: [String: Int64] = [:]
        var leasedBatches: [[SpoolMessage]] = []
        var now: Int64 = 2_000
        var n = 0
        let keys = ["a", "b", "c", "d"]
        // Due: not gone, not leased, its backoff and its key's hold over, and no probe of
        // its key out: when a hold ends, one batch of the key is tried before the rest of
        // its rows are read again.
        func due(_ r: Row, _ t: Int64) -> Bool {
            !r.gone && !r.leased && r.next <= t && (holds[r.key] ?? .min) <= t
                && !(reader.probeSeqs[r.key].map { probe in leasedBatches.contains { $0.contains { probe.contains($0.seq) } } } ?? false)
        }
        for _ in 0..<400 {
            let op = Int.random(in: 0..<100, using: &rng)
            if Int.random(in: 0..<4, using: &rng) == 0 { now += Int64.random(in: 0..<800, using: &rng) }
            switch op {
            case 0..<15:
                var a: [SpoolAppend] = []
                let key = keys.randomElement(using: &rng)!
                for _ in 0..<Int.random(in: 1..<30, using: &rng) {
                    let k = Bool.random(using: &rng) ? key : keys.randomElement(using: &rng)!
                    let id = "m\(n)"; n += 1
                    a.append(record(id, key: k, priority: Int.random(in: 0..<5, using: &rng) == 0 ? .bulk : .live))
                    rows[id] = Row(key: k)
                }
                _ = try await spool.append(a)
            case 15..<50:
                let t = Int.random(in: 0..<60, using: &rng) == 0 ? Int64.max : now
                if t == .max { holds = [:] }
                let b = try reader.leaseBatch(nowMillis: t, maxCount: Int.random(in: 1..<6, using: &rng), maxBytes: 1 << 20)
                for m in b {
                    let r = rows[m.messageID]!
                    #expect(!r.leased && !r.gone, "seed \(seed): \(m.messageID) leased twice or gone")
                    #expect(t == .max || (r.next <= t && (holds[r.key] ?? .min) <= t), "seed \(seed): \(m.messageID) not due")
                    rows[m.messageID]!.leased = true
                }
                #expect(Set(b.map(\.writeKey)).count <= 1)
                if !b.isEmpty { leasedBatches.append(b) }
            case 50..<62:
                if leasedBatches.isEmpty { continue }
                let b = leasedBatches.remove(at: Int.random(in: 0..<leasedBatches.count, using: &rng))
                reader.release(b); for m in b { rows[m.messageID]!.leased = false }
            case 62..<75:
                if leasedBatches.isEmpty { continue }
                let b = leasedBatches.remove(at: Int.random(in: 0..<leasedBatches.count, using: &rng))
                let next = now + Int64.random(in: 0..<5_000, using: &rng)
                try await spool.scheduleRetry(b, error: "x", nextAttemptAtMillis: next, nowMillis: now)
                if Bool.random(using: &rng) {
                    reader.hold(writeKey: b[0].writeKey, untilMillis: next)
                    holds[b[0].writeKey] = max(holds[b[0].writeKey] ?? .min, next)
                }
                reader.release(b); for m in b { rows[m.messageID]!.leased = false; rows[m.messageID]!.next = next }
            case 75..<90:
                // A round's delivered batches are acknowledged and released together, as the forwarder does.
                if leasedBatches.isEmpty { continue }
                var b = leasedBatches.remove(at: Int.random(in: 0..<leasedBatches.count, using: &rng))
                if !leasedBatches.isEmpty && Bool.random(using: &rng) {
                    b = leasedBatches.remove(at: Int.random(in: 0..<leasedBatches.count, using: &rng)) + b
                }
                try await spool.acknowledge(b, atMillis: now)
                reader.release(b); for m in b { rows[m.messageID]!.leased = false; rows[m.messageID]!.gone = true }
            default:
                let k = keys.randomElement(using: &rng)!
                let until = now + Int64.random(in: 0..<5_000, using: &rng)
                reader.hold(writeKey: k, untilMillis: until); holds[k] = max(holds[k] ?? .min, until)
            }
            // Every so often: drain at `now`; every row due now must be leased within a bounded number of reads.
            if Int.random(in: 0..<40, using: &rng) == 0 {
                for _ in 0..<200 {
                    let b = try reader.leaseBatch(nowMillis: now, maxCount: 5, maxBytes: 1 << 20)
                    for m in b {
                        #expect(!rows[m.messageID]!.leased && !rows[m.messageID]!.gone, "seed \(seed): double lease \(m.messageID)")
                        rows[m.messageID]!.leased = true
                    }
                    if !b.isEmpty { leasedBatches.append(b) }
                }
                let missed = rows.filter { due($0.value, now) }.map(\.key).sorted()
                #expect(missed.isEmpty, "seed \(seed): due rows never leased at \(now): \(missed.prefix(10))")
            }
        }
        await spool.close()
    }

    /// After a held key's hold ends and the key is refused again, the batch
    /// given back does not send the cursor back over its backlog: another
    /// app's new call goes at the next read.
    @Test func aRefusalRoundDoesNotWalkTheHeldBacklogAgain() async throws {
        let dir = TempDir()
        let spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        _ = try await spool.append((0..<5_000).map { record("k\($0)", key: "refused") } + [record("j0", key: "other")])
        let reader = try spool.makeReader()
        reader.hold(writeKey: "refused", untilMillis: 300_000)
        let found = try reader.leaseFirst(nowMillis: 3_000).batch
        #expect(found.map(\.messageID) == ["j0"])
        try await spool.acknowledge(found, atMillis: 3_000)
        reader.release(found)
        // The hold ends: the key is tried again, and refused again (as the forwarder does it).
        let again = try reader.leaseBatch(nowMillis: 300_000, maxCount: 10, maxBytes: 1 << 20)
        #expect(again.map(\.messageID) == (0..<10).map { "k\($0)" })
        try await spool.scheduleRetry(again, error: "HTTP 401", nextAttemptAtMillis: 600_000, nowMillis: 300_000)
        reader.hold(writeKey: "refused", untilMillis: 600_000)
        reader.release(again)
        _ = try await spool.append([record("j1", key: "other", at: 300_000)])
        let (got, readsJ1) = try reader.leaseFirst(nowMillis: 300_100)
        #expect(got.map(\.messageID) == ["j1"])
        #expect(readsJ1 <= 2, "\(readsJ1) reads")
        let third = try reader.leaseBatch(nowMillis: 600_000, maxCount: 10, maxBytes: 1 << 20)
        #expect(third.map(\.messageID) == (0..<10).map { "k\($0)" }, "and the held rows come back when the new hold ends")
        await spool.close()
    }

    /// The probe taken by the upstream in the same round as another app's
    /// batch (one acknowledgement, one release of both): the rest of the
    /// key's rows are read again.
    @Test func aProbeAcknowledgedWithAnotherKeysBatchBringsBackTheRest() async throws {
        let dir = TempDir()
        let spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        _ = try await spool.append((0..<50).map { record("k\($0)", key: "K") } + [record("o0", key: "O")])
        let reader = try spool.makeReader()
        reader.hold(writeKey: "K", untilMillis: 10_000)
        let other = try reader.leaseBatch(nowMillis: 3_000, maxCount: 10, maxBytes: 1 << 20)
        #expect(other.map(\.messageID) == ["o0"])
        let probe = try reader.leaseBatch(nowMillis: 10_000, maxCount: 10, maxBytes: 1 << 20)
        #expect(probe.map(\.messageID) == (0..<10).map { "k\($0)" })
        try await spool.acknowledge(other + probe, atMillis: 10_000)
        reader.release(other + probe)
        var rest: [String] = []
        for _ in 0..<10 { rest += try reader.leaseBatch(nowMillis: 10_100, maxCount: 10, maxBytes: 1 << 20).map(\.messageID) }
        #expect(rest == (10..<50).map { "k\($0)" })
        #expect(reader.probeSeqs.isEmpty)
        await spool.close()
    }

    /// Two held keys: the second's hold ends first, and its calls are read
    /// again without walking the first key's backlog ahead of them.
    @Test func anotherKeysHoldEndingDoesNotWalkTheFirstKeysBacklog() async throws {
        let dir = TempDir()
        let spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        _ = try await spool.append((0..<5_000).map { record("a\($0)", key: "A") } + (0..<5).map { record("b\($0)", key: "B") } + [record("c0", key: "C")])
        let reader = try spool.makeReader()
        reader.hold(writeKey: "A", untilMillis: 300_000)
        reader.hold(writeKey: "B", untilMillis: 10_000)
        #expect(try reader.leaseBatch(nowMillis: 3_000, maxCount: 10, maxBytes: 1 << 20).isEmpty && reader.moreToRead,
                "a read that stopped at its bound on rows not due says to read on")
        #expect(try reader.leaseFirst(nowMillis: 3_000).batch.map(\.messageID) == ["c0"])
        #expect(!reader.moreToRead)
        #expect(try reader.leaseBatch(nowMillis: 10_000, maxCount: 10, maxBytes: 1 << 20).map(\.messageID) == (0..<5).map { "b\($0)" },
                "B's calls at the first read once its hold ends")
        await spool.close()
    }

    /// Many refused keys whose holds end at different times (a forward loop
    /// of one read a turn, each key refused again when tried): an app behind
    /// all their calls is still reached, and soon.
    @Test(arguments: [(20, 300), (40, 300)])
    func staggeredHoldsDoNotStarveAnAppBehindThem(_ shape: (keys: Int, perKey: Int)) async throws {
        let dir = TempDir()
        let period: Int64 = 20_000, step: Int64 = 200, maxCount = 10
        let spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        var appends: [SpoolAppend] = []
        for k in 0..<shape.keys { appends += (0..<shape.perKey).map { record("k\(k)-\($0)", key: "K\(k)") } }
        appends.append(record("c0", key: "C"))
        _ = try await spool.append(appends)
        let reader = try spool.makeReader()
        for k in 0..<shape.keys { reader.hold(writeKey: "K\(k)", untilMillis: 3_000 + Int64(k) * period / Int64(shape.keys)) }
        var t: Int64 = 2_000
        var reached: Int64?
        turns: while t < 2_000 + 10 * period {
            let lease = try reader.leaseBatch(nowMillis: t, maxCount: maxCount, maxBytes: 1 << 20)
            if lease.first?.writeKey == "C" { reached = t; break turns }
            if let key = lease.first?.writeKey {
                try await spool.scheduleRetry(lease, error: "HTTP 401", nextAttemptAtMillis: t + period, nowMillis: t)
                reader.hold(writeKey: key, untilMillis: t + period)
                reader.release(lease)
            }
            if !reader.moreToRead { t += step }
        }
        #expect(reached != nil && reached! < 2_000 + period, "reached at \(String(describing: reached))")
        await spool.close()
    }
}
