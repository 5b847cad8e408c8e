#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
@testable import RelaySpool

/// The writer's cost per message, measured in process: N bench-payload
/// identifies appended 256 a commit, each slice leased and acknowledged
/// right after, as a forwarder that keeps up would. Every message must be
/// stored, delivered once and gone from the outbox; the CPU time per message
/// is printed. N is PLAINFLOW_SPOOL_N (default 2,048). For numbers that mean
/// something, build for release:
///   PLAINFLOW_SPOOL_N=100000 swift test -c release -Xswiftc -enable-testing --filter SpoolRateTests
@Suite struct SpoolRateTests {
    @Test func appendLeaseAndAcknowledgeKeepUpWithEachOther() async throws {
        let n = ProcessInfo.processInfo.environment["PLAINFLOW_SPOOL_N"].flatMap(Int.init) ?? 2_048
        let dir = TempDir()
        let spool = try Spool(options: SpoolOptions(path: dir.db), nowMillis: { 2_000 })
        let payload = Array(#"{"type":"identify","user_id":"u","traits":{"email":"ada@example.com","plan":"premium","logins":5,"pad":"\#(String(repeating: "x", count: 500))"}}"#.utf8)
        let reader = try spool.makeReader()
        var start = timespec(), end = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &start)
        var stored = 0, delivered = 0
        while stored < n {
            let slice = (stored..<min(n, stored + 256)).map { SpoolAppend(messageID: "rate-\($0)", receivedAtMillis: 2_000, payload: payload) }
            stored += try await spool.append(slice).filter { $0 == .stored }.count
            let batch = try reader.leaseBatch(nowMillis: 2_000, maxCount: 256, maxBytes: 1 << 22)
            try await spool.acknowledge(batch, atMillis: 2_000)
            reader.release(batch)  // the commit ended these leases already: nothing to do
            delivered += batch.count
        }
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &end)
        #expect(stored == n && delivered == n)
        #expect(spool.stats.depth == 0 && spool.stats.dedupeIDs == Int64(n))
        let ns = (Int(end.tv_sec) - Int(start.tv_sec)) * 1_000_000_000 + (Int(end.tv_nsec) - Int(start.tv_nsec))
        print("spool: \(payload.count)-byte messages, N=\(n): \(ns / max(n, 1)) ns of process CPU per append + lease + acknowledge")
        await spool.close()
    }
}
