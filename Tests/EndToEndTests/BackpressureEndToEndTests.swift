// A client that pipelines calls (on the line protocol, or HTTP requests on
// one connection) and never reads its replies must be pushed back (the relay
// stops reading it), not buffered: the relay's memory stays flat, and once
// the client reads, every reply arrives, in order. And memory a burst took
// is given back once it is over.

import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Errors of client threads, collected for the test's expectations.
/// The highest reading seen.
private final class Peak: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func see(_ v: Int) { lock.withLock { value = max(value, v) } }
    var highest: Int { lock.withLock { value } }
}

private final class Failures: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [String] = []
    func add(_ s: String) { lock.withLock { list.append(s) } }
    var all: [String] { lock.withLock { list } }
}

@Suite(.serialized) struct BackpressureEndToEndTests {
    /// Resident memory of a process, in KiB.
    static func rssKiB(_ pid: Int32, _ field: String = "VmRSS") -> Int {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix(field + ":") } ?? ""
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }

    /// Sends `limit` requests (`request(i)` gives the i-th) on `conn`, 100 at a
    /// time, until the relay stops taking them: a send that makes no progress
    /// for 2 s is the push-back looked for. Returns how many whole requests
    /// the kernel took.
    static func sendUntilPushedBack(_ conn: SocketConnection, limit: Int, _ request: (Int) -> [UInt8]) -> Int {
        var tv = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(conn.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var sent = 0
        let deadline = Date().addingTimeInterval(60)
        while sent < limit && Date() < deadline {
            var chunk: [UInt8] = []
            var ends: [Int] = []
            for i in sent..<min(sent + 100, limit) {
                chunk += request(i)
                ends.append(chunk.count)
            }
            let taken = SocketConnection.send(chunk, on: conn.fd)
            sent += ends.filter { $0 <= taken }.count
            if taken < chunk.count { break }  // timed out mid-chunk: pushed back
        }
        return sent
    }

    /// Reads `conn` until `done()`, the end of the stream, or `seconds`
    /// without data; `consume` takes what it can off the front of the bytes
    /// that arrived.
    static func readReplies(_ conn: SocketConnection, seconds: Int, until done: () -> Bool, _ consume: (inout Data) -> Void) {
        var tr = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(conn.fd, SOL_SOCKET, SO_RCVTIMEO, &tr, socklen_t(MemoryLayout<timeval>.size))
        var pending = Data()
        var buf = [UInt8](repeating: 0, count: 65536)
        while !done() {
            let n = recv(conn.fd, &buf, buf.count, 0)
            if n <= 0 { break }
            pending.append(contentsOf: buf[0..<n])
            consume(&pending)
        }
    }

    @Test func memoryABurstTookIsGivenBackWhenItIsOver() throws {
        // The upstream is down: nothing but the burst moves the relay's memory.
        // (Trace level: a failure shows the heap trims the relay made.)
        let relay = try RelayProcess(upstream: "http://127.0.0.1:9", args: ["--log-level", "trace"])
        try relay.start()
        defer { relay.stop() }
        let pid = try #require(relay.process?.processIdentifier)
        let idle = Self.rssKiB(pid, "RssAnon")
        // 16 clients at once, 1,250 calls of 2 KB each, pipelined 250 at a time:
        // many calls in flight at once, then none.
        let pad = String(repeating: "x", count: 2000)
        let unix = relay.unix
        let failures = Failures()
        let finished = DispatchSemaphore(value: 0)
        for client in 0..<16 {
            Thread {
                defer { finished.signal() }
                do {
                    let conn = try SocketConnection(unix, timeoutSeconds: 60)
                    for window in 0..<5 {
                        var lines: [UInt8] = []
                        for i in 0..<250 {
                            lines += Array(#"{"type":"identify","user_id":"u\#(i)","message_id":"burst-\#(client)-\#(window)-\#(i)","traits":{"pad":"\#(pad)"}}"#.utf8) + [10]
                        }
                        try conn.write(lines)
                        _ = try conn.read { data in data.reduce(0) { $0 + ($1 == 10 ? 1 : 0) } >= 250 }
                    }
                } catch {
                    failures.add("\(error)")
                }
            }.start()
        }
        // The peak while it lasts (a trim may come before its end on a busy machine).
        let peak = Peak()
        let sampling = DispatchSemaphore(value: 0)
        let sampler = Thread {
            while sampling.wait(timeout: .now() + .milliseconds(20)) == .timedOut { peak.see(Self.rssKiB(pid, "RssAnon")) }
        }
        sampler.start()
        for _ in 0..<16 { finished.wait() }
        sampling.signal()
        #expect(failures.all.isEmpty, "\(failures.all)")
        let afterBurst = Self.rssKiB(pid, "RssAnon")
        peak.see(afterBurst)
        var now = afterBurst
        // Given back: 2 MiB below the burst's peak, or within 4 MiB of idle.
        let gaveBack = eventually(10) {
            now = Self.rssKiB(pid, "RssAnon")
            return peak.highest - now >= 2048 || now - idle <= 4096
        }
        let trims = relay.log.split(separator: "\n").filter { $0.contains("freed heap") }.map { $0.suffix(90) }
        #expect(gaveBack, "private memory: \(idle) KiB idle, \(peak.highest) KiB at the burst's peak, \(afterBurst) KiB after it, still \(now) KiB 10 s later; trims: \(trims)")
    }

    @Test func anHTTPClientThatPipelinesAndNeverReadsIsPushedBackAndThenGetsEveryAnswerInOrder() throws {
        let relay = try RelayProcess(upstream: "http://127.0.0.1:9")
        try relay.start()
        defer { relay.stop() }
        let pid = try #require(relay.process?.processIdentifier)
        let conn = try SocketConnection(relay.tcp)
        // Requests answered at once (an unknown path: 404), 1 KB each: 100,000
        // of them are far more than the socket buffers hold.
        let pad = String(repeating: "p", count: 1000)
        let limit = 100_000
        let rssBefore = Self.rssKiB(pid)
        let sent = Self.sendUntilPushedBack(conn, limit: limit) { i in
            Array("POST /v1/nowhere-\(i) HTTP/1.1\r\nHost: relay\r\nX-Pad: \(pad)\r\nContent-Length: 0\r\n\r\n".utf8)
        }
        let rssBlocked = Self.rssKiB(pid)
        #expect(sent < limit, "the relay kept reading a client that never reads its answers (\(sent) requests taken)")
        #expect(rssBlocked - rssBefore < 40 * 1024, "RSS grew by \(rssBlocked - rssBefore) KiB while the client did not read")

        // Now read: every whole request sent is answered, in order.
        var answers = 0
        var inOrder = true
        Self.readReplies(conn, seconds: 5, until: { answers >= sent }) { pending in
            while let r = HTTPResponse.take(from: &pending) {
                if r.status != 404 || !r.text.contains("/v1/nowhere-\(answers)\"") { inOrder = false }
                answers += 1
            }
        }
        #expect(answers == sent, "every whole request is answered (\(answers) answers, \(sent) sent)")
        #expect(inOrder, "answers come one per request, in request order")
    }

    @Test func aClientThatNeverReadsIsPushedBackAndThenGetsEveryReplyInOrder() throws {
        // The upstream is down: calls are acknowledged after their commit and stay queued.
        let relay = try RelayProcess(upstream: "http://127.0.0.1:9")
        try relay.start()
        defer { relay.stop() }
        let pid = try #require(relay.process?.processIdentifier)
        let conn = try SocketConnection(relay.unix)
        let pad = String(repeating: "x", count: 120)
        let limit = 100_000  // ~19 MB of calls: far more than socket buffers hold
        let rssBefore = Self.rssKiB(pid)
        let sent = Self.sendUntilPushedBack(conn, limit: limit) { i in
            Array(#"{"type":"identify","user_id":"u","message_id":"bp-\#(i)","traits":{"pad":"\#(pad)"}}"#.utf8) + [10]
        }
        let rssBlocked = Self.rssKiB(pid)
        #expect(sent < limit, "the relay kept reading a client that never reads its replies (\(sent) calls taken)")
        #expect(rssBlocked - rssBefore < 40 * 1024, "RSS grew by \(rssBlocked - rssBefore) KiB while the client did not read")

        // Now read: every call taken is answered, in order (a partial last line is not a call).
        var replies = 0
        var inOrder = true
        Self.readReplies(conn, seconds: 20, until: { replies >= sent }) { pending in
            while let nl = pending.firstIndex(of: 10) {
                let line = String(decoding: pending[pending.startIndex..<nl], as: UTF8.self)
                pending.removeSubrange(pending.startIndex...nl)
                if !line.contains(#""message_id":"bp-\#(replies)""#) || !line.contains(#""ok":true"#) { inOrder = false }
                replies += 1
            }
        }
        #expect(replies == sent)
        #expect(inOrder, "replies come one per call, in call order, each after its commit")
    }
}
