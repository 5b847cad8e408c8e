#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
@testable import RelayMessage

/// A realistic ~800-byte Segment-style identify (analytics-node's shape),
/// parsed, normalized and encoded N times: the bytes must be exactly the
/// canonical ones, and the rate is printed. N is PLAINFLOW_NORMALIZE_N
/// (default 2,000). For numbers that mean something, build for release:
///   PLAINFLOW_NORMALIZE_N=50000 swift test -c release -Xswiftc -enable-testing --filter NormalizationRateTests
@Suite struct NormalizationRateTests {
    static let call = #"""
{"anonymousId":"5b8e1c2a-9f4d-4e7b-a1c3-2d6f8e9b0a17","context":{"ip":"203.0.113.7","library":{"name":"analytics-node","version":"6.2.0"},"locale":"en-US","timezone":"America/New_York","userAgent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) Safari/605.1.15"},"integrations":{"All":true},"messageId":"node-3f9a2c7e1b4d8f06a5e2c9b7d1f3a8e4","sentAt":"2024-03-05T14:22:31.417Z","timestamp":"2024-03-05T14:22:31.402Z","traits":{"name":"Mark Twain","email":"mark.twain@example.com","plan":"premium","logins":5,"firstName":"Mark","lastName":"Twain","createdAt":"2017-02-09T12:08:32.111Z","address":{"street":"351 Farmington Avenue","city":"Hartford","state":"CT","postalCode":"06105","country":"USA"},"company":{"name":"ACME","id":17,"employeeCount":250,"plan":"enterprise"},"favoriteColor":"blue"},"type":"identify","userId":"97980cfea0067"}
"""#

    static let canonical = #"""
{"anonymous_id":"5b8e1c2a-9f4d-4e7b-a1c3-2d6f8e9b0a17","context":{"ip":"203.0.113.7","library":{"name":"analytics-node","version":"6.2.0"},"locale":"en-US","timezone":"America/New_York","userAgent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) Safari/605.1.15"},"integrations":{"All":true},"message_id":"node-3f9a2c7e1b4d8f06a5e2c9b7d1f3a8e4","received_at":"2023-11-14T22:13:20.123Z","timestamp":"2024-03-05T14:22:31.402Z","traits":{"name":"Mark Twain","email":"mark.twain@example.com","plan":"premium","logins":5,"first_name":"Mark","last_name":"Twain","created_at":"2017-02-09T12:08:32.111Z","address":{"street":"351 Farmington Avenue","city":"Hartford","state":"CT","postal_code":"06105","country":"USA"},"company":{"name":"ACME","id":17,"employee_count":250,"plan":"enterprise"},"favoriteColor":"blue"},"type":"identify","user_id":"97980cfea0067"}
"""#

    @Test func realisticIdentifyNormalizesToItsCanonicalBytes() throws {
        let n = ProcessInfo.processInfo.environment["PLAINFLOW_NORMALIZE_N"].flatMap(Int.init) ?? 2_000
        let bytes = Array(Self.call.utf8)
        let normalizer = MessageNormalizer()
        let context = NormalizeContext(receivedAt: Date(timeIntervalSince1970: 1_700_000_000.123), makeMessageID: { "unused" })
        func once() throws -> [UInt8] {
            let value = try JSONValue.parse(bytes, maxDepth: 64)
            guard case .success(let m) = normalizer.normalize(value, endpointType: .identify, context: context) else {
                Issue.record("rejected"); return []
            }
            return m.encoded
        }
        #expect(try once() == Array(Self.canonical.utf8))

        var start = timespec(), end = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &start)
        var total = 0
        for _ in 0..<n { total &+= try once().count }
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &end)
        #expect(total == n * Self.canonical.utf8.count)
        let ns = (Int(end.tv_sec) - Int(start.tv_sec)) * 1_000_000_000 + (Int(end.tv_nsec) - Int(start.tv_nsec))
        print("normalization: \(bytes.count)-byte identify, N=\(n): \(ns / max(n, 1)) ns per parse+normalize+encode (thread CPU time)")
    }
}
