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
        relay.stop()
    }

    @Test func anEarly413ReachesEveryClientInsteadOfAReset() throws {
        let relay = try RelayProcess(upstream: "http://127.0.0.1:9")
        try relay.start()
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
        relay.stop()
    }
}

/// Strings appended from several threads.
final class Collected: @unchecked Sendable {
    private let lock = NSLock()
    private var storage: [String] = []
    func append(_ s: String) { lock.lock(); storage.append(s); lock.unlock() }
    var items: [String] { lock.lock(); defer { lock.unlock() }; return storage }
}
