// HTTP manners that clients depend on: `Expect: 100-continue` is answered
// at once (curl and many libraries otherwise wait a second before sending
// the body), and an answer sent before the request's end (an oversized
// declared body) reaches the client instead of a connection reset.

import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct HTTPMannersEndToEndTests {
    @Test func expect100ContinueIsAnsweredBeforeTheBodyIsSent() throws {
        let relay = try RelayProcess(upstream: "http://127.0.0.1:9")
        try relay.start()
        defer { relay.stop() }
        let body = Array(#"{"userId":"u-100","traits":{"pad":"\#(String(repeating: "x", count: 3000))"}}"#.utf8)
        let conn = try SocketConnection(relay.tcp, timeoutSeconds: 1)
        try conn.write(Array("POST /v1/identify HTTP/1.1\r\nHost: relay\r\nContent-Length: \(body.count)\r\nExpect: 100-continue\r\n\r\n".utf8))
        let started = Date()
        let interim = try conn.read { String(decoding: $0, as: UTF8.self).contains("\r\n\r\n") }
        #expect(String(decoding: interim, as: UTF8.self).hasPrefix("HTTP/1.1 100 Continue"))
        #expect(Date().timeIntervalSince(started) < 0.5, "the 100 Continue came before the client gave up waiting")
        try conn.write(body)
        let final = try conn.read { String(decoding: $0, as: UTF8.self).contains(#""ok":true"#) }
        #expect(String(decoding: final, as: UTF8.self).hasPrefix("HTTP/1.1 200"))
    }

    @Test func pipelinedRequestsAreAnsweredInOrderWhateverEachOneIs() throws {
        // A client writing 300 requests without reading (identify, an unknown
        // path answered at once, the health check), in one go: every answer
        // comes, in the order of the requests, and the connection stays usable.
        let relay = try RelayProcess(upstream: "http://127.0.0.1:9")
        try relay.start()
        defer { relay.stop() }
        let conn = try SocketConnection(relay.tcp, timeoutSeconds: 20)
        var requests: [UInt8] = []
        var expected: [(status: String, contains: String)] = []
        for i in 0..<300 {
            switch i % 3 {
            case 0:
                let body = Array(#"{"userId":"pipe","messageId":"pipe-\#(i)","traits":{"n":\#(i)}}"#.utf8)
                requests += Array("POST /v1/identify HTTP/1.1\r\nHost: relay\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body
                expected.append(("200", #""message_id":"pipe-\#(i)""#))
            case 1:
                requests += Array("POST /v1/nowhere-\(i) HTTP/1.1\r\nHost: relay\r\nContent-Length: 2\r\n\r\n{}".utf8)
                expected.append(("404", "/v1/nowhere-\(i)"))
            default:
                requests += Array("GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n".utf8)
                expected.append(("200", #"{"ok":true}"#))
            }
        }
        let fd = conn.fd, all = requests
        let writer = Thread { _ = SocketConnection.send(all, on: fd) }  // blocks while the relay holds back its reads
        writer.start()
        var answers: [(status: String, body: String)] = []
        var pending = Data()
        var buf = [UInt8](repeating: 0, count: 65536)
        let deadline = Date().addingTimeInterval(20)
        while answers.count < expected.count && Date() < deadline {
            let n = recv(conn.fd, &buf, buf.count, 0)
            if n <= 0 { break }
            pending.append(contentsOf: buf[0..<n])
            while let r = HTTPResponse.take(from: &pending) { answers.append((String(r.status), r.text)) }
        }
        #expect(answers.count == expected.count, "every pipelined request is answered")
        for (i, (answer, want)) in zip(answers, expected).enumerated() {
            #expect(answer.status == want.status && answer.body.contains(want.contains), "answer \(i) is the answer to request \(i): \(answer)")
        }
        #expect(try conn.request("POST", "/v1/identify", body: Array(identify("after").utf8)).status == 200)
    }

    /// A relay (not started) whose listeners each take `maxConnections`.
    static func relay(maxConnections: Int) throws -> RelayProcess {
        try RelayProcess(upstream: "", config: """
            [upstream]
            url = "http://127.0.0.1:9"
            write_key = "test-key"
            [listen]
            max_connections = \(maxConnections)
            """)
    }

    @Test(arguments: [true, false])
    func clientsThatCloseAfterEachCallNeverUseUpTheConnectionCap(overUnixSocket: Bool) throws {
        // A cap of 20 connections, and ten times as many clients one after
        // another, each sending one call and closing (as a PHP or shell
        // script does): every one is answered, none is refused.
        let relay = try Self.relay(maxConnections: 20)
        try relay.start()
        defer { relay.stop() }
        var statuses: [Int: Int] = [:]
        for i in 0..<200 {
            let conn = try SocketConnection(overUnixSocket ? relay.unix : relay.tcp, timeoutSeconds: 5)
            let status = (try? conn.request("POST", "/v1/identify", body: Array(#"{"userId":"u-\#(i)"}"#.utf8)))?.status ?? 0
            statuses[status, default: 0] += 1
        }
        #expect(statuses == [200: 200], "\(statuses)")
    }

    /// The TCP port is open to every local user; the socket only to the
    /// relay's group. Each has its own cap, so filling the port's never
    /// locks apps out of the socket.
    @Test func connectionsHeldOnTheTCPPortDoNotLockAppsOutOfTheSocket() throws {
        let relay = try Self.relay(maxConnections: 8)
        try relay.start()
        defer { relay.stop() }
        let held = try (0..<8).map { _ in try SocketConnection(relay.tcp, timeoutSeconds: 5) }
        for conn in held { try conn.write(Array(" ".utf8)) }  // open, and admitted
        usleep(200_000)
        let refused = try SocketConnection(relay.tcp, timeoutSeconds: 5)
        #expect((try? refused.request("GET", "/healthz"))?.status == nil, "the port's cap holds")
        let app = try SocketConnection(relay.unix, timeoutSeconds: 5)
        #expect(try app.request("POST", "/v1/identify", body: Array(identify("over-the-socket").utf8)).status == 200)
        #expect(relay.log.components(separatedBy: "connections refused").count - 1 == 1, "one line, not one a connection: \(relay.log)")
        withExtendedLifetime(held) {}
    }

    @Test func anEarly413ReachesEveryClientInsteadOfAReset() throws {
        let relay = try RelayProcess(upstream: "http://127.0.0.1:9")
        try relay.start()
        defer { relay.stop() }
        let port = relay.port
        let body = [UInt8](repeating: UInt8(ascii: "x"), count: 2 << 20)
        let statuses = Collected()
        let clients = (0..<20).map { _ in
            Thread {
                var line = "no answer"
                if let conn = try? SocketConnection(.tcp(port), timeoutSeconds: 10) {
                    _ = try? conn.write(Array("POST /v1/identify HTTP/1.1\r\nHost: relay\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body)
                    do {
                        let data = try conn.read { $0.range(of: Data("\r\n".utf8)) != nil }
                        line = String(decoding: data, as: UTF8.self).components(separatedBy: "\r\n")[0]
                    } catch {
                        line = "\(error)"
                    }
                }
                statuses.append(line)
            }
        }
        clients.forEach { $0.start() }
        #expect(eventually(60) { statuses.items.count == 20 })
        let answered = statuses.items
        #expect(answered.filter { $0.hasPrefix("HTTP/1.1 413") }.count == 20, "every client reads the 413: \(answered)")
    }
}

/// Strings appended from several threads.
final class Collected: @unchecked Sendable {
    private let lock = NSLock()
    private var storage: [String] = []
    func append(_ s: String) { lock.lock(); storage.append(s); lock.unlock() }
    var items: [String] { lock.lock(); defer { lock.unlock() }; return storage }
}

@Suite struct RequestTimeoutEndToEndTests {
    /// Sends `bytes` one at a time, `gapMillis` apart, until the relay answers or closes; returns what it read.
    static func trickle(_ conn: SocketConnection, _ bytes: [UInt8], gapMillis: UInt32, seconds: Double) -> String {
        var flags = fcntl(conn.fd, F_GETFL)
        flags |= O_NONBLOCK
        _ = fcntl(conn.fd, F_SETFL, flags)
        var got = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 4096)
        let deadline = Date().addingTimeInterval(seconds)
        var i = 0
        while Date() < deadline {
            if i < bytes.count {
                if send(conn.fd, [bytes[i]], 1, Int32(MSG_NOSIGNAL)) == 1 { i += 1 }
            }
            let n = recv(conn.fd, &buf, buf.count, 0)
            if n > 0 { got += buf[0..<n] }
            if n == 0 { break }  // closed
            usleep(gapMillis * 1000)
        }
        return String(decoding: got, as: UTF8.self)
    }

    @Test func aClientTricklingItsRequestGets408AndOthersAreServedMeanwhile() throws {
        let relay = try RelayProcess(upstream: "http://127.0.0.1:9", config: testConfig() + "\n[listen]\nrequest_timeout_seconds = 1\n")
        try relay.start()
        defer { relay.stop() }
        let slowHeaders = try SocketConnection(relay.tcp)
        let slowBody = try SocketConnection(relay.tcp)
        try slowBody.write(Array("POST /v1/identify HTTP/1.1\r\nHost: relay\r\nContent-Length: 400\r\n\r\n".utf8))
        let started = Date()
        // Meanwhile, a normal client is served.
        #expect(try http(relay.tcp, "POST", "/v1/identify", json: identify("served")).status == 200)
        let headersAnswer = Self.trickle(slowHeaders, Array("POST /v1/identify HTTP/1.1\r\nHost: relay\r\nX-Pad: \(String(repeating: "p", count: 200))\r\n".utf8),
                                         gapMillis: 50, seconds: 8)
        #expect(headersAnswer.hasPrefix("HTTP/1.1 408"), "a client trickling its headers is cut off: \(headersAnswer)")
        let bodyAnswer = Self.trickle(slowBody, Array(#"{"userId":"slow","traits":{"pad":"\#(String(repeating: "b", count: 360))"}}"#.utf8),
                                      gapMillis: 50, seconds: 8)
        #expect(bodyAnswer.hasPrefix("HTTP/1.1 408"), "a client trickling its body is cut off: \(bodyAnswer)")
        #expect(Date().timeIntervalSince(started) < 8)
    }

    @Test func aKeepAliveConnectionIdleBetweenRequestsIsNotCutOff() throws {
        let relay = try RelayProcess(upstream: "http://127.0.0.1:9", config: testConfig() + "\n[listen]\nrequest_timeout_seconds = 1\n")
        try relay.start()
        defer { relay.stop() }
        let conn = try SocketConnection(relay.tcp)
        #expect(try conn.request("POST", "/v1/identify", body: Array(identify("first").utf8)).status == 200)
        Thread.sleep(forTimeInterval: 1.5)  // longer than the request timeout, shorter than the idle timeout
        #expect(try conn.request("POST", "/v1/identify", body: Array(identify("second").utf8)).status == 200)
    }

    @Test func aRequestStartedBetweenChecksStillMeetsItsDeadlineOnTime() throws {
        // The connection's one timer looks at most a request timeout ahead
        // while no request is read: a request starting 60% of a timeout after
        // the last answer still gets its 408 one timeout after its first byte,
        // not later.
        let relay = try RelayProcess(upstream: "http://127.0.0.1:9", config: testConfig() + "\n[listen]\nrequest_timeout_seconds = 2\n")
        try relay.start()
        defer { relay.stop() }
        let conn = try SocketConnection(relay.tcp, timeoutSeconds: 6)
        #expect(try conn.request("POST", "/v1/identify", body: Array(identify("on-time").utf8)).status == 200)
        Thread.sleep(forTimeInterval: 1.2)
        try conn.write(Array("POST /v1/identify HTTP/1.1\r\nHost: relay\r\n".utf8))  // and nothing more
        let started = Date()
        let answer = try conn.read { String(decoding: $0, as: UTF8.self).contains("\r\n\r\n") }
        let took = Date().timeIntervalSince(started)
        #expect(String(decoding: answer, as: UTF8.self).hasPrefix("HTTP/1.1 408"))
        #expect(took >= 1.9 && took < 2.6, "the 408 came \(took) s after the request's first byte (timeout 2 s)")
    }

    @Test func aClientThatClosesItsSideAfterItsRequestsGetsEveryAnswerThenTheEnd() throws {
        let relay = try RelayProcess(upstream: "http://127.0.0.1:9")
        try relay.start()
        defer { relay.stop() }
        for count in [1, 3] {
            let conn = try SocketConnection(relay.tcp, timeoutSeconds: 10)
            var requests: [UInt8] = []
            for i in 0..<count {
                let body = Array(identify("half-\(count)-\(i)").utf8)
                requests += Array("POST /v1/identify HTTP/1.1\r\nHost: relay\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body
            }
            try conn.write(requests)
            conn.shutdownWrite()
            var all = try conn.read { _ in false }  // to the end of the stream
            var statuses: [Int] = []
            while let r = HTTPResponse.take(from: &all) { statuses.append(r.status) }
            #expect(statuses == Array(repeating: 200, count: count), "\(count) request(s), then the client's end: every answer, then ours")
            #expect(all.isEmpty)
        }
    }

    @Test func aSilentConnectionIsClosedAtTheIdleTimeoutAndABusyOneIsNot() throws {
        let relay = try RelayProcess(upstream: "http://127.0.0.1:9", config: testConfig() + "\n[listen]\nidle_timeout_seconds = 1\n")
        try relay.start()
        defer { relay.stop() }
        // Before its first byte, after an HTTP answer, after a line-protocol reply.
        let silent = try SocketConnection(relay.tcp, timeoutSeconds: 6)
        let afterHTTP = try SocketConnection(relay.tcp, timeoutSeconds: 6)
        #expect(try afterHTTP.request("POST", "/v1/identify", body: Array(identify("idle-http").utf8)).status == 200)
        let afterLine = try SocketConnection(relay.unix, timeoutSeconds: 6)
        try afterLine.write(Array(#"{"type":"identify","userId":"idle-line"}"#.utf8) + [0x0A])
        let reply = try afterLine.read { String(decoding: $0, as: UTF8.self).contains("\n") }
        #expect(String(decoding: reply, as: UTF8.self).contains(#""ok":true"#))
        // Meanwhile a connection asking every 400 ms stays open past the timeout.
        let busy = try SocketConnection(relay.tcp, timeoutSeconds: 6)
        let started = Date()
        var answered = 0
        while Date().timeIntervalSince(started) < 2.5 {
            #expect(try busy.request("POST", "/v1/identify", body: Array(identify("busy-\(answered)").utf8)).status == 200)
            answered += 1
            Thread.sleep(forTimeInterval: 0.4)
        }
        #expect(answered >= 5)
        for (name, conn) in [("silent", silent), ("after an HTTP answer", afterHTTP), ("after a line reply", afterLine)] {
            var byte = [UInt8](repeating: 0, count: 1)
            #expect(recv(conn.fd, &byte, 1, 0) == 0, "the \(name) connection was closed by the relay (end of stream, not a read timeout)")
        }
        #expect(Date().timeIntervalSince(started) < 6)
    }
}

/// A monitoring client asking in a tight loop: it is slowed to the operator
/// endpoints' pace (never refused while alone), apps' calls meanwhile are
/// answered, and a crowd beyond the wait bound gets 429 with Retry-After.
@Suite struct OperatorPaceEndToEndTests {
    @Test func aTightScrapeLoopIsHeldToThePaceWhileCallsGoThrough() throws {
        let relay = try RelayProcess(upstream: "http://127.0.0.1:9")
        try relay.start()
        defer { relay.stop() }
        let scraped = Collected()
        let stop = Date().addingTimeInterval(2)
        let endpoint = relay.tcp
        let scraper = Thread {
            guard let conn = try? SocketConnection(endpoint, timeoutSeconds: 5) else { return }
            while Date() < stop, let r = try? conn.request("GET", "/metrics") { scraped.append("\(r.status)") }
        }
        scraper.start()
        var calls = 0
        while Date() < stop {
            let r = try http(relay.tcp, "POST", "/v1/identify", json: #"{"userId":"u-\#(calls)"}"#)
            #expect(r.status == 200)
            calls += 1
        }
        #expect(eventually(5) { scraper.isFinished })
        let answers = scraped.items
        #expect(answers.allSatisfy { $0 == "200" }, "a lone scraper waits, it is not refused: \(Set(answers))")
        #expect(answers.count >= 10 && answers.count <= 60, "about 20 a second after a burst of 10, not thousands: \(answers.count)")
        #expect(calls > 10, "apps' calls are answered meanwhile")
    }

    @Test func aCrowdBeyondTheWaitBoundIsAnswered429WithRetryAfter() throws {
        let relay = try RelayProcess(upstream: "http://127.0.0.1:9")
        try relay.start()
        defer { relay.stop() }
        let conns = try (0..<50).map { _ in try SocketConnection(relay.tcp, timeoutSeconds: 5) }
        for c in conns { try c.write(Array("GET /v1/status HTTP/1.1\r\nHost: relay\r\n\r\n".utf8)) }
        let heads = try conns.map { c in
            String(decoding: try c.read { String(decoding: $0, as: UTF8.self).contains("\r\n\r\n") }, as: UTF8.self).lowercased()
        }
        let ok = heads.filter { $0.hasPrefix("http/1.1 200") }
        let refused = heads.filter { $0.hasPrefix("http/1.1 429") }
        #expect(ok.count + refused.count == 50, "\(heads.map { $0.prefix(12) })")
        #expect(ok.count >= 25 && ok.count <= 35, "the burst and a second's worth are answered: \(ok.count)")
        #expect(!refused.isEmpty && refused.allSatisfy { $0.contains("retry-after: 1") })
    }
}
