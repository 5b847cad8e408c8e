// Hostile and broken HTTP, all at once: a bad request line, a huge header,
// a chunked body that never ends, a body shorter than its Content-Length,
// a 100 MB body, invalid UTF-8 and deep nesting, and hundreds of idle
// connections. Each is answered or closed within its limits and timeouts,
// the relay's memory stays bounded, and a well-behaved client is served
// quickly meanwhile.

import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct HostileHTTPEndToEndTests {
    /// Writes `head` then `body` (ignoring a refusal mid-way) and returns the
    /// first line answered, or "closed (why, when)".
    static func attack(_ port: Int, _ head: String, body: [UInt8] = [], seconds: Int = 5) -> String {
        let started = Date()
        guard let conn = try? SocketConnection(.tcp(port), timeoutSeconds: seconds) else { return "connect failed" }
        var sent = "sent all"
        do { try conn.write(Array(head.utf8) + body) } catch { sent = "\(error)" }
        let after = String(format: "%.2f s", Date().timeIntervalSince(started))
        do {
            let data = try conn.read(until: { $0.range(of: Data("\r\n".utf8)) != nil })
            if data.isEmpty { return "closed (end of stream after \(after); \(sent))" }
            return String(decoding: data, as: UTF8.self).components(separatedBy: "\r\n")[0]
        } catch {
            return "closed (\(error) after \(after); \(sent))"
        }
    }

    @Test func brokenAndHostileRequestsAreAnsweredOrClosedAndOthersAreServedMeanwhile() throws {
        let relay = try RelayProcess(upstream: "http://127.0.0.1:9", config: testConfig() + "\n[listen]\nrequest_timeout_seconds = 2\n")
        try relay.start()
        defer { relay.stop() }
        let pid = try #require(relay.process?.processIdentifier)
        let rssBefore = BackpressureEndToEndTests.rssKiB(pid)
        let port = relay.port
        let idle = (0..<300).compactMap { _ in try? SocketConnection(.tcp(port)) }

        let results = Collected()
        let attacks: [(String, @Sendable () -> String)] = [
            ("bad request line", { Self.attack(port, "HELLO THERE\r\n\r\n") }),
            ("huge header", { Self.attack(port, "POST /v1/identify HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "h", count: 200_000))\r\n\r\n") }),
            ("endless chunks", { Self.attack(port, "POST /v1/identify HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", body: Array("5\r\nhello\r\n".utf8), seconds: 8) }),
            ("short body", { Self.attack(port, "POST /v1/identify HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", body: Array("{\"userId\":".utf8), seconds: 8) }),
            ("100 MB body", { Self.attack(port, "POST /v1/identify HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\n", body: [UInt8](repeating: 0x78, count: 1 << 20)) }),
            ("invalid UTF-8", {
                let bad = Array(#"{"userId":""#.utf8) + [0xFF, 0xFE] + Array(#""}"#.utf8)
                return Self.attack(port, "POST /v1/identify HTTP/1.1\r\nHost: x\r\nContent-Length: \(bad.count)\r\n\r\n", body: bad)
            }),
            ("deep nesting", { let deep = String(repeating: "[", count: 10_000); return Self.attack(port, "POST /v1/identify HTTP/1.1\r\nHost: x\r\nContent-Length: \(deep.utf8.count)\r\n\r\n", body: Array(deep.utf8)) }),
        ]
        let threads = attacks.map { name, run in Thread { results.append("\(name): \(run())") } }
        threads.forEach { $0.start() }

        // A well-behaved client meanwhile.
        var slowest = 0.0
        let good = try SocketConnection(relay.tcp)
        for i in 0..<30 {
            let started = Date()
            #expect(try good.request("POST", "/v1/identify", body: Array(identify("good\(i)").utf8)).status == 200)
            slowest = max(slowest, Date().timeIntervalSince(started))
            usleep(100_000)
        }
        #expect(eventually(15) { results.items.count == attacks.count })
        let answers = results.items
        print("hostile HTTP: " + answers.joined(separator: " | ") + "; good client slowest \(String(format: "%.3f", slowest)) s")
        func answer(_ name: String) -> String { answers.first { $0.hasPrefix(name + ":") } ?? "" }
        #expect(answer("bad request line").contains("400") || answer("bad request line").contains("closed"))
        #expect(answer("huge header").contains("431") || answer("huge header").contains("400") || answer("huge header").contains("closed"))
        #expect(answer("endless chunks").contains("408"), "a body that never ends meets the request timeout")
        #expect(answer("short body").contains("408"), "a body shorter than declared meets the request timeout")
        #expect(answer("100 MB body").contains("413"))
        #expect(answer("invalid UTF-8").contains("400"))
        #expect(answer("deep nesting").contains("400"))
        #expect(slowest < 0.5, "the good client waited \(slowest) s")
        let rssGrowth = BackpressureEndToEndTests.rssKiB(pid) - rssBefore
        #expect(rssGrowth < 64 * 1024, "RSS grew by \(rssGrowth) KiB")
        #expect(try http(relay.tcp, "GET", "/healthz").status == 200)
        _ = idle
    }

    /// Many clients each sending all but the end of a large body: what the
    /// relay holds for bodies being received is bounded across the port's
    /// connections (64 MiB, counted as bytes arrive); past it a request is
    /// answered 503 with Retry-After at once, the socket keeps its own
    /// budget, and the port's comes back when those connections close.
    @Test func bodiesBeingReceivedAreBoundedAcrossConnections() throws {
        let relay = try RelayProcess(upstream: "http://127.0.0.1:9")
        try relay.start()
        defer { relay.stop() }
        let pid = try #require(relay.process?.processIdentifier)
        let rssBefore = BackpressureEndToEndTests.rssKiB(pid)
        let declared = 500_000
        let part = [UInt8](repeating: UInt8(ascii: " "), count: 450_000)
        var held: [SocketConnection] = []
        var refused = 0
        // Headers alone hold nothing: a declared length is not counted before its bytes come.
        let headersOnly = try (0..<200).map { _ in try SocketConnection(relay.tcp, timeoutSeconds: 5) }
        for conn in headersOnly { try conn.write(Array("POST /v1/batch HTTP/1.1\r\nHost: relay\r\nContent-Length: \(declared)\r\n\r\n".utf8)) }
        #expect(try http(relay.tcp, "POST", "/v1/identify", json: identify("beside-headers")).status == 200)
        for _ in 0..<200 {
            let conn = try SocketConnection(relay.tcp, timeoutSeconds: 5)
            try conn.write(Array("POST /v1/batch HTTP/1.1\r\nHost: relay\r\nContent-Length: \(declared)\r\n\r\n".utf8))
            try? conn.write(part)
            held.append(conn)
        }
        // Each connection's answer, if it has one (a refused one has it at once).
        usleep(500_000)
        for conn in held {
            conn.setReadTimeout(milliseconds: 10)
            if let data = try? conn.read(until: { $0.range(of: Data("\r\n\r\n".utf8)) != nil }),
               String(decoding: data, as: UTF8.self).hasPrefix("HTTP/1.1 503") { refused += 1 }
        }
        #expect(refused >= 200 - 64 * 1_048_576 / part.count, "past 64 MiB: \(refused) of 200 answered 503")
        let growth = BackpressureEndToEndTests.rssKiB(pid) - rssBefore
        #expect(growth < 100 * 1024, "RSS grew by \(growth) KiB")
        let call = #"{"type":"identify","userId":"u","traits":{"bio":"\#(String(repeating: "x", count: 10_000))"}}"#
        let big = #"{"batch":["# + Array(repeating: call, count: 20).joined(separator: ",") + "]}"  // 200 KB, more than is left
        let busy = try http(relay.tcp, "POST", "/v1/batch", json: big)
        #expect(busy.status == 503 && busy.headers["retry-after"] != nil, "\(busy.status)")
        let overSocket = try SocketConnection(relay.unix).request("POST", "/v1/batch", body: Array(big.utf8))
        #expect(overSocket.status == 200, "the socket's own budget: \(overSocket.status)")
        held.removeAll()  // closed: their budget comes back
        withExtendedLifetime(headersOnly) {}
        #expect(eventually(5) { (try? http(relay.tcp, "POST", "/v1/batch", json: big))?.status == 200 })
    }
}
