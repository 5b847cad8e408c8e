// End-to-end: the real plainflow-relay binary, a real SQLite spool file,
// real sockets, and a real HTTP upstream on 127.0.0.1 run by the test.

import Foundation
import Testing

/// Fast timings so the tests spend their time on behaviour, not on waiting.
func testConfig(_ extra: String = "") -> String {
    """
    [upstream]
    write_key = "test-key"
    flush_interval_ms = 50
    retry_base_ms = 100
    retry_cap_ms = 800
    timeout_ms = 3000
    connect_timeout_ms = 1000
    \(extra)
    """
}

/// `testConfig` without the relay's own write key: apps send theirs.
func keylessConfig(_ extra: String = "") -> String {
    testConfig(extra).replacingOccurrences(of: #"write_key = "test-key""#, with: "")
}

func identify(_ userID: String, traits: String = #"{"plan":"premium"}"#) -> String {
    #"{"userId":"\#(userID)","traits":\#(traits)}"#
}

@Suite(.serialized) struct RelayEndToEndTests {
    @Test func identifyOverTCPAndUnixSocketReachesTheUpstreamInCanonicalForm() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let relay = try RelayProcess(upstream: upstream.url, config: testConfig())
        try relay.start()
        defer { relay.stop() }

        let a = try http(relay.tcp, "POST", "/v1/identify", json: identify("tcp-user", traits: #"{"firstName":"Mark","lastName":"Twain"}"#))
        #expect(a.status == 200)
        #expect(a.json["ok"] as? Bool == true)
        let b = try http(relay.unix, "POST", "/v1/identify", json: #"{"anonymousId":"anon-1","messageId":"given-id","timestamp":"2017-02-09T12:08:32.111Z"}"#)
        #expect(b.status == 200)
        #expect(b.json["message_id"] as? String == "given-id")

        #expect(eventually { upstream.delivered.count == 2 }, "log:\n\(relay.log)")
        let request = try #require(upstream.requests.first)
        #expect(request.path == "/v1/batch")
        #expect(request.writeKey == "test-key")
        #expect(request.headers["authorization"] == "Basic " + Data("test-key:".utf8).base64EncodedString(), "empty password")
        #expect(request.json["sent_at"] is String)
        let byID = Dictionary(uniqueKeysWithValues: upstream.delivered.map { ($0["message_id"] as! String, $0) })
        let first = try #require(byID[a.json["message_id"] as! String])
        #expect(first["type"] as? String == "identify")
        #expect(first["user_id"] as? String == "tcp-user")
        #expect(first["userId"] == nil)
        #expect((first["traits"] as? [String: Any])?["name"] as? String == "Mark Twain")
        #expect((first["traits"] as? [String: Any])?["first_name"] as? String == "Mark")
        #expect(first["received_at"] is String)
        #expect(first["timestamp"] as? String == first["received_at"] as? String)
        let second = try #require(byID["given-id"])
        #expect(second["anonymous_id"] as? String == "anon-1")
        #expect(second["timestamp"] as? String == "2017-02-09T12:08:32.111Z")
    }

    @Test func invalidCallsGet400WithEveryProblemAndAreNeverForwarded() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let relay = try RelayProcess(upstream: upstream.url, config: testConfig())
        try relay.start()
        defer { relay.stop() }
        let r = try http(relay.tcp, "POST", "/v1/identify", json: #"{"traits":"premium"}"#)
        #expect(r.status == 400)
        let errors = r.json["errors"] as? [String] ?? []
        #expect(errors.contains { $0.hasPrefix("user_id: required") })
        #expect(errors.contains("traits: expected an object, got a string"))
        #expect(try http(relay.tcp, "POST", "/v1/identify", json: "{not json").status == 400)
        _ = try http(relay.tcp, "POST", "/v1/identify", json: identify("ok"))
        #expect(eventually { upstream.delivered.count == 1 })
        Thread.sleep(forTimeInterval: 0.3)
        #expect(upstream.delivered.count == 1)
    }

    @Test func whileTheUpstreamIsDownAppsGetTheir200sAndEverythingArrivesOldestFirstLater() throws {
        let port = try freePort()  // nothing listens here yet
        let relay = try RelayProcess(upstream: "http://127.0.0.1:\(port)", config: testConfig())
        try relay.start()
        defer { relay.stop() }
        let conn = try SocketConnection(relay.tcp)
        var ids: [String] = []
        let started = Date()
        for i in 0..<40 {
            let r = try conn.request("POST", "/v1/identify", body: Array(identify("u\(i)").utf8))
            #expect(r.status == 200)
            ids.append(r.json["message_id"] as? String ?? "")
        }
        let elapsed = Date().timeIntervalSince(started)
        #expect(elapsed < 5, "acknowledged at local speed, not the network's: \(elapsed)s for 40 calls")
        #expect(eventually(5) { ((try? relay.status())?["upstream"] as? [String: Any])?["state"] as? String == "retrying" })
        #expect(((try relay.status())["spool"] as? [String: Any])?["depth"] as? Int == 40)

        let upstream = try TestUpstream(port: port)
        defer { upstream.stop() }
        #expect(eventually(20) { upstream.delivered.count >= 40 }, "log:\n\(relay.log)")
        #expect(upstream.delivered.map { $0["message_id"] as? String ?? "" } == ids, "oldest first, each once")
        #expect(eventually(5) { ((try? relay.status())?["spool"] as? [String: Any])?["depth"] as? Int == 0 })
    }

    @Test func upstream503ThenSuccessIsRetriedWithTheSameMessagesAndARetryCount() throws {
        let upstream = try TestUpstream(script: [.status(503), .status(503), .status(503)])
        defer { upstream.stop() }
        let relay = try RelayProcess(upstream: upstream.url, config: testConfig())
        try relay.start()
        defer { relay.stop() }
        let r = try http(relay.tcp, "POST", "/v1/identify", json: identify("retry-me"))
        #expect(r.status == 200)
        #expect(eventually { upstream.delivered.count == 1 }, "log:\n\(relay.log)")
        let requests = upstream.requests
        #expect(requests.count == 4)
        #expect(Set(requests.map { $0.batch.first?["message_id"] as? String ?? "" }) == [r.json["message_id"] as! String])
        #expect(requests.map { $0.headers["x-retry-count"] } == [nil, "1", "2", "3"])
        #expect(Set(requests.map { $0.json["sent_at"] as? String ?? "" }).count == 4, "sent_at restamped per attempt")
    }

    @Test func retryAfterIsHonouredAndNothingIsSentMeanwhile() throws {
        let upstream = try TestUpstream(script: [TestUpstream.Answer(status: 429, headers: [("Retry-After", "2")])])
        defer { upstream.stop() }
        let relay = try RelayProcess(upstream: upstream.url, config: testConfig())
        try relay.start()
        defer { relay.stop() }
        _ = try http(relay.tcp, "POST", "/v1/identify", json: identify("patient"))
        #expect(eventually { upstream.delivered.count == 1 })
        let times = upstream.requests.map(\.receivedAt)
        #expect(times.count == 2)
        #expect(times[1].timeIntervalSince(times[0]) >= 1.9, "waited \(times[1].timeIntervalSince(times[0]))s")
    }

    @Test func killNineLosesNothingThatWasAcknowledged() throws {
        let port = try freePort()
        let first = try RelayProcess(upstream: "http://127.0.0.1:\(port)", config: testConfig())
        try first.start()
        var acked = Set<String>()
        let tcp = try SocketConnection(first.tcp)
        let unix = try SocketConnection(first.unix)
        for i in 0..<60 {
            let r = try (i % 2 == 0 ? tcp : unix).request("POST", "/v1/identify", body: Array(identify("k\(i)").utf8))
            if r.status == 200 { acked.insert(r.json["message_id"] as! String) }
        }
        #expect(acked.count == 60)
        first.kill9()

        let upstream = try TestUpstream(port: port)
        defer { upstream.stop() }
        let second = try RelayProcess(upstream: upstream.url, config: testConfig(), dir: first.dir)
        try second.start()
        defer { second.stop() }
        #expect(eventually(20) { Set(upstream.delivered.map { $0["message_id"] as! String }).isSuperset(of: acked) }, "log:\n\(second.log)")
        #expect(Set(upstream.delivered.map { $0["message_id"] as! String }) == acked)
    }

    @Test func sigtermStopsCleanlyAndRemovesTheSocket() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let relay = try RelayProcess(upstream: upstream.url, config: testConfig())
        try relay.start()
        _ = try http(relay.tcp, "POST", "/v1/identify", json: identify("bye"))
        let started = Date()
        let status = relay.stop()
        #expect(status == 0, "log:\n\(relay.log)")
        #expect(Date().timeIntervalSince(started) < 8)
        #expect(!FileManager.default.fileExists(atPath: relay.socketPath))
        #expect(relay.log.contains("spool closed"))
    }

    /// Connections that have sent nothing (a client pool's spare ones) hold
    /// nothing: a stop closes them at once instead of waiting out their idle
    /// timeout, which would outlast systemd's stop timeout; one stuck in a
    /// request is closed at the drain timeout.
    @Test func sigtermDoesNotWaitForConnectionsThatSentNothing() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let relay = try RelayProcess(upstream: upstream.url, config: testConfig())
        try relay.start()
        let silent = [try SocketConnection(relay.tcp), try SocketConnection(relay.unix)]
        // And one stuck in the middle of a request's body: closed at the drain timeout (5 s), not at the request's (30 s).
        let stuck = try SocketConnection(relay.tcp)
        try stuck.write(Array("POST /v1/identify HTTP/1.1\r\nHost: relay\r\nContent-Length: 100\r\n\r\n{".utf8))
        #expect(try http(relay.tcp, "POST", "/v1/identify", json: identify("before-stop")).status == 200)
        let started = Date()
        let status = relay.stop(timeoutSeconds: 20)
        let took = Date().timeIntervalSince(started)
        #expect(status == 0 && took < 9, "stopped in \(took) s with status \(String(describing: status)); log:\n\(relay.log)")
        #expect(relay.log.contains("connections still open after the drain timeout; closing them"), "\(relay.log)")
        #expect(!relay.log.contains("Cannot schedule tasks"), "\(relay.log)")
        withExtendedLifetime(silent + [stuck]) {}
    }

    @Test func aStaleSocketFileFromACrashIsReplacedAndALiveOneIsRefused() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let first = try RelayProcess(upstream: upstream.url, config: testConfig())
        try first.start()
        // a second relay on the same socket path must refuse to start
        let second = try RelayProcess(upstream: upstream.url, config: testConfig(), dir: first.dir)
        #expect(throws: (any Error).self) { try second.start(timeoutSeconds: 5) }
        #expect(second.log.contains("is in use"))
        first.kill9()
        #expect(FileManager.default.fileExists(atPath: first.socketPath), "kill -9 leaves the socket file")
        let third = try RelayProcess(upstream: upstream.url, config: testConfig(), dir: first.dir)
        try third.start()
        defer { third.stop() }
        #expect(try http(third.unix, "POST", "/v1/identify", json: identify("after-crash")).status == 200)
    }
}
