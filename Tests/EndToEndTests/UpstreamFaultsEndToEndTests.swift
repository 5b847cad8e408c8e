// A misbehaving upstream: slow answers, a connection dropped in the middle
// of its answer, a 200 whose body is not JSON, a run of 503s; and one that
// refuses connections for a while. Everything arrives, apps never wait on
// it, and the failing upstream is probed at a bounded rate.

import Foundation
import Testing

@Suite(.serialized) struct UpstreamFaultsEndToEndTests {
    @Test func slowDroppedOddAndFailingAnswersLoseNothingAndNeverSlowTheApps() throws {
        var script: [TestUpstream.Answer] = [
            TestUpstream.Answer(status: 200, delayMillis: 1_500),        // slow
            TestUpstream.Answer(status: 200, body: "{\"ok\":tr", dropMidBody: true),  // dropped mid-answer: not delivered
            TestUpstream.Answer(status: 200, body: "<html>not json</html>"),          // odd but 2xx: delivered
        ]
        script += Array(repeating: .status(503), count: 4)
        let upstream = try TestUpstream(script: script)
        defer { upstream.stop() }
        let relay = try RelayProcess(upstream: upstream.url, config: testConfig("max_in_flight = 1"))
        try relay.start()
        defer { relay.stop() }
        let conn = try SocketConnection(relay.tcp)
        var ids = Set<String>()
        var slowest = 0.0
        for i in 0..<60 {
            let started = Date()
            let r = try conn.request("POST", "/v1/identify", body: Array(identify("fault\(i)").utf8))
            slowest = max(slowest, Date().timeIntervalSince(started))
            #expect(r.status == 200)
            if let id = r.json["message_id"] as? String { ids.insert(id) }
            usleep(40_000)
        }
        #expect(slowest < 0.5, "an app waited \(slowest) s on a call: the upstream's trouble reached it")
        let arrived = { Set(upstream.delivered.compactMap { $0["message_id"] as? String }) }
        #expect(eventually(20) { arrived().isSuperset(of: ids) }, "log:\n\(relay.log)")
        #expect(upstream.requests.count < 60, "batched and paced: \(upstream.requests.count) requests for 60 calls")
    }

    @Test func anUpstreamRefusingConnectionsIsProbedAtABoundedRateAndGetsEverythingLater() throws {
        let port = try freePort()
        let relay = try RelayProcess(upstream: "http://127.0.0.1:\(port)", config: testConfig())
        try relay.start()
        defer { relay.stop() }
        var ids = Set<String>()
        for i in 0..<20 {
            let r = try http(relay.tcp, "POST", "/v1/identify", json: identify("down\(i)"))
            #expect(r.status == 200)
            if let id = r.json["message_id"] as? String { ids.insert(id) }
        }
        Thread.sleep(forTimeInterval: 4)
        let upstreamStatus = (try relay.status())["upstream"] as? [String: Any]
        let attempts = upstreamStatus?["requests"] as? Int ?? 0
        // Backoff: full jitter from 100 ms doubling to an 800 ms cap; about 4 s / ~400 ms on average.
        #expect(attempts >= 3 && attempts <= 25, "\(attempts) attempts in 4 s against a refusing upstream")
        #expect(upstreamStatus?["state"] as? String == "retrying")
        let lastError = upstreamStatus?["last_error"] as? String ?? ""
        #expect(lastError.contains("127.0.0.1 port \(port)"), "an operator sees which address and port refused: \(lastError)")
        let upstream = try TestUpstream(port: port)
        defer { upstream.stop() }
        #expect(eventually(10) { Set(upstream.delivered.compactMap { $0["message_id"] as? String }).isSuperset(of: ids) }, "log:\n\(relay.log)")
    }
}
