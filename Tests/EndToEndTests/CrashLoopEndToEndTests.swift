// Crash loop: clients keep sending over TCP and the Unix socket, HTTP and
// the line protocol, while the relay is killed with SIGKILL at random
// moments and restarted on the same spool, and the upstream flaps (some
// batches answered 503). At the end every acknowledged message id has
// arrived upstream; duplicates can only come from batches in flight at a
// kill, and are counted. CI runs a short version; set
// PLAINFLOW_CRASH_KILLS (e.g. 20) for the long one.

import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// What the clients share: where the relay listens now, what it acknowledged.
private final class CrashLoopState: @unchecked Sendable {
    private let lock = NSLock()
    private var port = 0
    private var acked = Set<String>()
    private var tried = 0
    private var stopped = false
    let unixPath: String
    init(unixPath: String) { self.unixPath = unixPath }

    var currentPort: Int { lock.lock(); defer { lock.unlock() }; return port }
    func setPort(_ p: Int) { lock.lock(); port = p; lock.unlock() }
    func ack(_ id: String) { lock.lock(); acked.insert(id); lock.unlock() }
    func attempt() { lock.lock(); tried += 1; lock.unlock() }
    var acknowledged: Set<String> { lock.lock(); defer { lock.unlock() }; return acked }
    var attempts: Int { lock.lock(); defer { lock.unlock() }; return tried }
    var isStopped: Bool { lock.lock(); defer { lock.unlock() }; return stopped }
    func stop() { lock.lock(); stopped = true; lock.unlock() }
}

@Suite(.serialized) struct CrashLoopEndToEndTests {
    enum Client { case httpTCP, httpUnix, lineUnix }

    /// Sends calls one after the other until stopped, reconnecting after a kill.
    private static func run(_ kind: Client, name: String, state: CrashLoopState) {
        var n = 0
        var conn: SocketConnection?
        while !state.isStopped {
            n += 1
            let id = "\(name)-\(n)"
            state.attempt()
            do {
                if conn == nil {
                    switch kind {
                    case .httpTCP: conn = try SocketConnection(.tcp(state.currentPort), timeoutSeconds: 2)
                    case .httpUnix, .lineUnix: conn = try SocketConnection(.unix(state.unixPath), timeoutSeconds: 2)
                    }
                }
                let call = #"{"type":"identify","userId":"\#(name)","messageId":"\#(id)","traits":{"n":\#(n)}}"#
                switch kind {
                case .httpTCP, .httpUnix:
                    let r = try conn!.request("POST", "/v1/identify", body: Array(call.utf8))
                    if r.status == 200 { state.ack(id) }
                case .lineUnix:
                    try conn!.write(Array(call.utf8) + [10])
                    let reply = try conn!.read { $0.contains(10) }
                    if String(decoding: reply, as: UTF8.self).contains(#""ok":true"#) { state.ack(id) }
                }
            } catch {
                conn = nil  // the relay died or is restarting: reconnect, a new id next time
                usleep(30_000)
            }
        }
    }

    @Test func killNineAtRandomMomentsUnderLoadWithAFlappingUpstreamLosesNothingAcknowledged() throws {
        let kills = Int(ProcessInfo.processInfo.environment["PLAINFLOW_CRASH_KILLS"] ?? "") ?? 4
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        // Flapping: every third batch is refused with 503 (retried later).
        upstream.setScript((0..<10_000).map { $0 % 3 == 2 ? .status(503) : .status(200) })
        let config = testConfig().replacingOccurrences(of: "retry_cap_ms = 800", with: "retry_cap_ms = 300")
        var relays = [try RelayProcess(upstream: upstream.url, config: config)]
        try relays[0].start()
        let state = CrashLoopState(unixPath: relays[0].socketPath)
        state.setPort(relays[0].port)
        let clients: [(Client, String)] = [(.httpTCP, "tcp-a"), (.httpTCP, "tcp-b"), (.httpUnix, "unix"), (.lineUnix, "line")]
        let threads = clients.map { c in Thread { Self.run(c.0, name: c.1, state: state) } }
        threads.forEach { $0.start() }

        for _ in 0..<kills {
            usleep(UInt32.random(in: 150_000...700_000))
            relays.last!.kill9()
            let next = try RelayProcess(upstream: upstream.url, config: config, dir: relays[0].dir)
            try next.start()
            relays.append(next)
            state.setPort(next.port)
        }
        usleep(500_000)
        state.stop()
        #expect(eventually(10) { threads.allSatisfy { $0.isFinished } })
        let acked = state.acknowledged
        upstream.setScript([], default: .status(200))
        let arrived = { Set(upstream.delivered.compactMap { $0["message_id"] as? String }) }
        #expect(eventually(30) { arrived().isSuperset(of: acked) }, "log:\n\(relays.last!.log)")

        let delivered = upstream.delivered.compactMap { $0["message_id"] as? String }
        let lost = acked.subtracting(delivered)
        let duplicated = delivered.count - Set(delivered).count
        print("crash loop: \(kills) kills, \(state.attempts) calls tried, \(acked.count) acknowledged, \(delivered.count) delivered, \(duplicated) duplicated, \(lost.count) lost")
        #expect(acked.count > 50, "the clients got calls through between the kills")
        #expect(lost.isEmpty, "acknowledged and never delivered: \(lost.sorted().prefix(10))")
        #expect(duplicated <= acked.count / 2, "duplicates come only from batches in flight at a kill")
        relays.last!.stop()
        _ = relays  // every process object lives (and owns the directory) until here
    }

    @Test func sigtermUnderLoadExitsWithinItsBoundAndEverythingAcknowledgedIsDeliveredLater() throws {
        let port = try freePort()
        let config = testConfig()
        let relay = try RelayProcess(upstream: "http://127.0.0.1:\(port)", config: config)  // the upstream is down
        try relay.start()
        let state = CrashLoopState(unixPath: relay.socketPath)
        state.setPort(relay.port)
        let clients: [(Client, String)] = [(.httpTCP, "term-tcp"), (.httpUnix, "term-unix"), (.lineUnix, "term-line")]
        let threads = clients.map { c in Thread { Self.run(c.0, name: c.1, state: state) } }
        threads.forEach { $0.start() }
        usleep(800_000)
        let started = Date()
        let status = relay.stop()
        let took = Date().timeIntervalSince(started)
        state.stop()
        #expect(eventually(10) { threads.allSatisfy { $0.isFinished } })
        #expect(status == 0, "a clean exit under load:\n\(relay.log)")
        #expect(took < 8, "SIGTERM drained and stopped in \(took) s")
        let acked = state.acknowledged
        #expect(acked.count > 20)

        let upstream = try TestUpstream(port: port)
        defer { upstream.stop() }
        let again = try RelayProcess(upstream: upstream.url, config: config, dir: relay.dir)
        try again.start()
        defer { again.stop() }
        let arrived = { Set(upstream.delivered.compactMap { $0["message_id"] as? String }) }
        #expect(eventually(20) { arrived().isSuperset(of: acked) }, "every call acknowledged before SIGTERM is delivered after the restart")
        print("sigterm under load: \(acked.count) acknowledged, stopped in \(String(format: "%.2f", took)) s, \(acked.subtracting(arrived()).count) lost")
    }
}
