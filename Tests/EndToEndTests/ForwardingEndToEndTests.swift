// End-to-end: the forwarder against a scripted local upstream, and the
// operator commands on the spool it leaves behind.

import Foundation
import Testing

@Suite(.serialized) struct ForwardingEndToEndTests {
    @Test func onePoisonMessageInABatchOf100IsIsolatedAndReplayableLater() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        upstream.refuseMessages { ($0["user_id"] as? String) == "poison" ? 400 : nil }
        let relay = try RelayProcess(upstream: upstream.url, config: testConfig().replacingOccurrences(of: "flush_interval_ms = 50", with: "flush_interval_ms = 500"))
        try relay.start()
        defer { relay.stop() }
        var calls = (0..<100).map { #"{"type":"identify","userId":"p\#($0)"}"# }
        calls[37] = #"{"type":"identify","userId":"poison"}"#
        let r = try http(relay.tcp, "POST", "/v1/batch", json: #"{"batch":[\#(calls.joined(separator: ","))]}"#)
        #expect(r.status == 200)
        #expect(eventually { upstream.delivered.count == 99 }, "log:\n\(relay.log)")
        #expect(eventually(5) { ((try? relay.status())?["spool"] as? [String: Any])?["dead_letters"] as? Int == 1 })
        #expect(!upstream.delivered.contains { $0["user_id"] as? String == "poison" })

        let list = try cli(["dead-letters", "list", "--spool", relay.spoolPath, "--json"])
        #expect(list.status == 0)
        let letters = (try? JSONSerialization.jsonObject(with: Data(list.out.utf8))) as? [[String: Any]] ?? []
        #expect(letters.count == 1)
        #expect(letters.first?["status"] as? Int == 400)
        #expect((letters.first?["payload"] as? [String: Any])?["user_id"] as? String == "poison", "the message as an object")

        // the upstream is fixed; the operator replays, and it goes through
        upstream.refuseMessages { _ in nil }
        let replay = try cli(["dead-letters", "replay", "--all", "--spool", relay.spoolPath])
        #expect(replay.status == 0, "\(replay.out)")
        #expect(replay.out.contains("replayed 1"))
        #expect(eventually { upstream.delivered.contains { $0["user_id"] as? String == "poison" } }, "log:\n\(relay.log)")
        #expect(Set(upstream.delivered.compactMap { $0["message_id"] as? String }).count == 100)
    }

    @Test func refusedCredentialsPauseForwardingAndLoseNothing() throws {
        let upstream = try TestUpstream(defaultAnswer: .status(401))
        defer { upstream.stop() }
        let relay = try RelayProcess(upstream: upstream.url, config: testConfig())
        try relay.start()
        defer { relay.stop() }
        for i in 0..<5 { #expect(try http(relay.tcp, "POST", "/v1/identify", json: identify("cred\(i)")).status == 200) }
        #expect(eventually { ((try? relay.status())?["upstream"] as? [String: Any])?["state"] as? String == "paused_credentials" })
        Thread.sleep(forTimeInterval: 1)
        #expect(upstream.requests.count == 1, "paused: no further requests")
        #expect(((try relay.status())["spool"] as? [String: Any])?["depth"] as? Int == 5, "nothing dropped")
        #expect(relay.log.contains("refused the write key"))
        // the key is fixed upstream; SIGHUP resumes at once
        upstream.setScript([], default: .status(200))
        kill(relay.process!.processIdentifier, SIGHUP)
        #expect(eventually { upstream.delivered.count == 5 }, "log:\n\(relay.log)")
    }

    /// Apps send their own keys and one was revoked upstream while it had
    /// 12,000 calls queued, three times what a read steps over with batches
    /// of 100: the other app's calls behind them still go at once, the
    /// revoked app's wait (nothing dropped), and the upstream is not sent a
    /// request for every batch of them.
    @Test func anAppsRevokedKeyWithALongBacklogDoesNotHoldBackTheOtherApps() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        upstream.requireWriteKey("good-app")
        let config = keylessConfig("batch_max_messages = 100")
        let relay = try RelayProcess(upstream: upstream.url, config: config)
        try relay.start()
        defer { relay.stop() }
        for b in 0..<120 {
            let calls = (0..<100).map { #"{"type":"identify","userId":"revoked-\#(b)-\#($0)"}"# }.joined(separator: ",")
            let r = try http(relay.tcp, "POST", "/v1/batch", json: #"{"batch":[\#(calls)]}"#, headers: basicAuth("revoked-app"))
            #expect(r.status == 200, "\(r.text)")
        }
        #expect(eventually { upstream.requests.contains { $0.writeKey == "revoked-app" } }, "log:\n\(relay.log)")
        for i in 0..<10 {
            #expect(try http(relay.tcp, "POST", "/v1/identify", json: identify("good-\(i)"), headers: basicAuth("good-app")).status == 200)
        }
        #expect(eventually(10) { upstream.delivered.count == 10 }, "the other app's calls go: log:\n\(relay.log)")
        #expect(eventually(5) { ((try? relay.status())?["spool"] as? [String: Any])?["depth"] as? Int == 12_000 }, "the revoked app's calls wait")
        let upstreamStatus = (try relay.status())["upstream"] as? [String: Any]
        #expect(upstreamStatus?["app_keys_held"] as? Int == 1, "\(String(describing: upstreamStatus))")
        let tries = upstream.requests.filter { $0.writeKey == "revoked-app" }.count
        #expect(tries <= 3, "one round of the refused key (two batches may be in flight), not one for each of its 120 batches: \(tries)")
    }

    /// An app whose key was revoked keeps sending: its calls are stored
    /// until they fill half the spool, then answered 503 (retry in 60 s,
    /// fix the key); the other app's calls are still stored and delivered,
    /// and nothing that was stored is dropped.
    @Test func anAppsRevokedKeyFillsHalfTheSpoolAtMostAndTheOtherAppsGoOn() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        upstream.requireWriteKey("good-app")
        let maxBytes = 100_000
        let relay = try RelayProcess(upstream: upstream.url, config: keylessConfig("\n[spool]\nmax_bytes = \(maxBytes)"))
        try relay.start()
        defer { relay.stop() }
        func batch(_ b: Int) -> String {
            #"{"batch":[\#((0..<20).map { #"{"type":"identify","userId":"revoked-\#(b)-\#($0)"}"# }.joined(separator: ","))]}"#
        }
        #expect(try http(relay.tcp, "POST", "/v1/batch", json: batch(0), headers: basicAuth("revoked-app")).status == 200)
        #expect(eventually { upstream.requests.contains { $0.writeKey == "revoked-app" } }, "log:\n\(relay.log)")
        var stored = 20
        var refusal: HTTPResponse?
        for b in 1..<200 {
            let r = try http(relay.tcp, "POST", "/v1/batch", json: batch(b), headers: basicAuth("revoked-app"))
            if r.status != 200 { refusal = r; break }
            stored += 20
        }
        let r = try #require(refusal, "the revoked app's calls filled the spool unchecked")
        #expect(r.status == 503 && r.headers["retry-after"] == "60", "\(r.status) \(r.text)")
        #expect(r.text.contains("the upstream refused this write key"), "\(r.text)")
        let spool = try #require((try relay.status())["spool"] as? [String: Any])
        let held = (spool["bytes"] as? Int ?? 0) + (spool["dedupe_bytes"] as? Int ?? 0) + (spool["dead_letter_bytes"] as? Int ?? 0)
        #expect(held >= maxBytes / 2 && held < maxBytes * 3 / 4, "about half full: \(spool)")
        #expect(spool["depth"] as? Int == stored, "nothing stored was dropped: \(spool)")
        for i in 0..<10 {
            #expect(try http(relay.tcp, "POST", "/v1/identify", json: identify("good-\(i)"), headers: basicAuth("good-app")).status == 200)
        }
        #expect(eventually(10) { upstream.delivered.count == 10 }, "the other app's calls go: log:\n\(relay.log)")
        #expect(eventually(5) { relay.log.contains("write key that the upstream refuses") }, "the operator is told: log:\n\(relay.log)")
        // which app's key, by the start of its SHA-256 (`printf %s revoked-app | sha256sum`), never the key
        #expect(relay.log.contains("488359366189") && !relay.log.contains("revoked-app"), "log:\n\(relay.log)")
        let upstreamStatus = (try relay.status())["upstream"] as? [String: Any]
        #expect(upstreamStatus?["app_keys_refused"] as? [String] == ["488359366189"], "\(String(describing: upstreamStatus))")
        let env = ["PLAINFLOW_RELAY_UNIX": relay.socketPath, "PLAINFLOW_RELAY_TCP": "127.0.0.1:\(relay.port)"]
        let shown = try cli(["status", "--config", relay.dir + "/relay.toml"], env: env)
        #expect(shown.out.contains("key_sha256 488359366189") && !shown.out.contains("revoked-app"), "\(shown.out)")
        #expect(shown.out.contains("that app's key is still refused"), "the other app's deliveries do not read as resolved: \(shown.out)")
        // how much of the spool is that app's
        let byKey = try cli(["spool", "stats", "--spool", relay.spoolPath, "--by-key"])
        #expect(byKey.out.contains("key_sha256 488359366189  \(stored.formatted(.number.grouping(.automatic))) messages"), "\(byKey.out)")
        let byKeyJSON = try cli(["spool", "stats", "--spool", relay.spoolPath, "--by-key", "--json"])
        let keys = ((try? JSONSerialization.jsonObject(with: Data(byKeyJSON.out.utf8))) as? [String: Any])?["by_write_key"] as? [[String: Any]]
        #expect(keys?.first?["key_sha256"] as? String == "488359366189" && keys?.first?["messages"] as? Int == stored, "\(byKeyJSON.out)")
    }

    /// Apps sent their own keys; the operator gives the relay one by
    /// reload: the log says that queued calls go with it from now on.
    @Test func givingTheRelayItsOwnKeyByReloadSaysWhoseKeyQueuedCallsGoWith() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let relay = try RelayProcess(upstream: upstream.url, config: keylessConfig())
        try relay.start()
        defer { relay.stop() }
        try testConfig().write(toFile: relay.dir + "/relay.toml", atomically: true, encoding: .utf8)
        kill(relay.process!.processIdentifier, SIGHUP)
        #expect(eventually(5) { relay.log.contains("the relay now has its own write key") }, "log:\n\(relay.log)")
    }

    @Test func fixingTheWriteKeyInTheConfigAndSIGHUPResumesWithTheNewKey() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        upstream.requireWriteKey("right-key")
        let relay = try RelayProcess(upstream: upstream.url, config: testConfig().replacingOccurrences(of: "test-key", with: "wrong-key"))
        try relay.start()
        defer { relay.stop() }
        for i in 0..<3 { #expect(try http(relay.tcp, "POST", "/v1/identify", json: identify("rk\(i)")).status == 200) }
        #expect(eventually { ((try? relay.status())?["upstream"] as? [String: Any])?["state"] as? String == "paused_credentials" })
        // the operator fixes relay.toml and reloads
        try testConfig().replacingOccurrences(of: "test-key", with: "right-key").write(toFile: relay.dir + "/relay.toml", atomically: true, encoding: .utf8)
        kill(relay.process!.processIdentifier, SIGHUP)
        #expect(eventually { upstream.delivered.count == 3 }, "log:\n\(relay.log)")
        #expect(upstream.requests.last?.writeKey == "right-key")
        #expect(relay.log.contains("configuration reloaded"))
        // a broken config on reload is refused and the running one kept
        try "[upstream\n".write(toFile: relay.dir + "/relay.toml", atomically: true, encoding: .utf8)
        kill(relay.process!.processIdentifier, SIGHUP)
        #expect(eventually(5) { relay.log.contains("the configuration does not load; keeping the running one") })
        #expect(try http(relay.tcp, "POST", "/v1/identify", json: identify("after-bad-reload")).status == 200)
        #expect(eventually { upstream.delivered.count == 4 })
    }

    @Test func aBacklogDrainsWithAtMostMaxInFlightRequestsAtOnce() throws {
        let upstream = try TestUpstream(defaultAnswer: TestUpstream.Answer(status: 200, delayMillis: 300))
        defer { upstream.stop() }
        let relay = try RelayProcess(upstream: upstream.url, config: testConfig("batch_max_messages = 10"))
        try relay.start()
        defer { relay.stop() }
        let calls = (0..<80).map { #"{"type":"identify","userId":"b\#($0)"}"# }.joined(separator: ",")
        #expect(try http(relay.tcp, "POST", "/v1/batch", json: #"{"batch":[\#(calls)]}"#).status == 200)
        #expect(eventually(30) { upstream.delivered.count == 80 }, "log:\n\(relay.log)")
        #expect(upstream.peakConcurrency == 2, "two requests in flight (max_in_flight = 2), never more")
        #expect(upstream.requests.count == 8)
    }

    @Test func anUpstreamThatNeverAnswersTimesOutAndIsRetried() throws {
        let upstream = try TestUpstream(script: [TestUpstream.Answer(status: 200, hang: true)])
        defer { upstream.stop() }
        let relay = try RelayProcess(upstream: upstream.url, config: testConfig().replacingOccurrences(of: "timeout_ms = 3000", with: "timeout_ms = 700"))
        try relay.start()
        defer { relay.stop() }
        #expect(try http(relay.tcp, "POST", "/v1/identify", json: identify("slow")).status == 200)
        #expect(eventually { upstream.delivered.count == 1 }, "log:\n\(relay.log)")
        #expect(upstream.requests.count == 2)
        #expect(relay.log.contains("timed out") || relay.log.contains("Timeout"), "log:\n\(relay.log)")
    }

    @Test func gzipRequestBodiesWhenConfigured() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let relay = try RelayProcess(upstream: upstream.url, config: testConfig("gzip = true"))
        try relay.start()
        defer { relay.stop() }
        for i in 0..<20 { _ = try http(relay.tcp, "POST", "/v1/identify", json: identify("zip\(i)")) }
        #expect(eventually { upstream.delivered.count == 20 }, "log:\n\(relay.log)")
        let r = try #require(upstream.requests.first)
        #expect(r.headers["content-encoding"] == "gzip")
        #expect(r.body.count < r.plainBody.count)
    }

    @Test func aFullSpoolAnswers503AndRecoversOnceDrained() throws {
        let port = try freePort()
        let relay = try RelayProcess(upstream: "http://127.0.0.1:\(port)", config: testConfig() + "\n[spool]\nmax_bytes = 2000\n")
        try relay.start()
        defer { relay.stop() }
        var statuses = [try http(relay.tcp, "POST", "/v1/identify", json: identify("first")).status]
        #expect(eventually { ((try? relay.status())?["upstream"] as? [String: Any])?["state"] as? String == "retrying" }, "log:\n\(relay.log)")
        var retryAfter: String?
        for i in 0..<30 {
            let r = try http(relay.tcp, "POST", "/v1/identify", json: identify("full\(i)"))
            statuses.append(r.status)
            if r.status == 503 { retryAfter = r.headers["retry-after"] }
        }
        #expect(statuses.contains(503))
        // The upstream is down and the relay retries within retry_cap_ms (800 ms): come back in a second.
        #expect(retryAfter == "1")
        let acked = statuses.filter { $0 == 200 }.count
        let upstream = try TestUpstream(port: port)
        defer { upstream.stop() }
        #expect(eventually { upstream.delivered.count == acked }, "every acknowledged call delivered")
        #expect(try http(relay.tcp, "POST", "/v1/identify", json: identify("after")).status == 200)
    }

    /// A full spool frees room only as the forwarder delivers: while
    /// forwarding is paused on refused credentials (tried again in 5 min),
    /// apps are told to come back then, not every 5 s, over HTTP and the
    /// line protocol alike.
    @Test func aFullSpoolTellsAppsToComeBackWhenTheForwarderNextTries() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        upstream.requireWriteKey("another-key")
        let relay = try RelayProcess(upstream: upstream.url, config: testConfig() + "\n[spool]\nmax_bytes = 2000\n")
        try relay.start()
        defer { relay.stop() }
        #expect(try http(relay.tcp, "POST", "/v1/identify", json: identify("first")).status == 200)
        #expect(eventually { ((try? relay.status())?["upstream"] as? [String: Any])?["state"] as? String == "paused_credentials" }, "log:\n\(relay.log)")
        var full: HTTPResponse?
        for i in 0..<30 where full == nil {
            let r = try http(relay.tcp, "POST", "/v1/identify", json: identify("fill\(i)"))
            if r.status == 503 { full = r }
        }
        let answer = try #require(full, "the spool never filled")
        let seconds = Int(answer.headers["retry-after"] ?? "") ?? 0
        #expect((290...300).contains(seconds), "Retry-After \(seconds) s, where the next attempt is 5 min away")
        #expect(answer.text.contains("the spool is full"), "\(answer.text)")
        let conn = try SocketConnection(relay.unix)
        try conn.write(Array((#"{"type":"identify","user_id":"by-line"}"# + "\n").utf8))
        let line = try conn.read { $0.contains(0x0A) }
        let reply = (try? JSONSerialization.jsonObject(with: line.prefix { $0 != 0x0A })) as? [String: Any] ?? [:]
        #expect(reply["status"] as? Int == 503 && (290...300).contains(reply["retry_after"] as? Int ?? 0), "\(String(decoding: line, as: UTF8.self))")
    }

    @Test func operatorCommandsOnAKnownSpool() throws {
        let port = try freePort()  // upstream down: messages stay queued
        let relay = try RelayProcess(upstream: "http://127.0.0.1:\(port)", config: testConfig())
        try relay.start()
        for i in 0..<3 { _ = try http(relay.tcp, "POST", "/v1/identify", json: identify("q\(i)")) }
        _ = try http(relay.tcp, "POST", "/v1/identify", json: #"{"traits":{"age":"old"}}"#)

        let config = relay.dir + "/relay.toml"
        // the test relay's listeners, as an operator would set them
        let env = ["PLAINFLOW_RELAY_UNIX": relay.socketPath, "PLAINFLOW_RELAY_TCP": "127.0.0.1:\(relay.port)"]
        let send = try cli(["send", "--config", config, "--user-id", "from-cli", "--trait", "age=42", "--trait", "plan=pro"], env: env)
        #expect(send.status == 0, "\(send.out)")
        #expect(send.out.contains(#""ok":true"#))
        let badSend = try cli(["send", "--config", config, "--user-id", "x", "--trait", "age=old"], env: env)
        #expect(badSend.status == 1)
        #expect(badSend.out.contains("traits.age"))
        let running = try cli(["status", "--config", config], env: env)
        #expect(running.status == 0, "\(running.out)")
        #expect(running.out.contains("4 queued"), "\(running.out)")
        let runningJSON = try cli(["status", "--config", config, "--json"], env: env)
        #expect((try? JSONSerialization.jsonObject(with: Data(runningJSON.out.utf8))) is [String: Any])
        // The operator breaks the file while the relay runs: status still finds it, and says what is wrong.
        let good = try String(contentsOfFile: config, encoding: .utf8)
        try (good + "\n[upstream\n").write(toFile: config, atomically: true, encoding: .utf8)
        let broken = try cli(["status", "--config", config], env: env)
        #expect(broken.status == 0 && broken.out.contains("4 queued"), "\(broken.out)")
        #expect(broken.out.contains("the configuration does not load") && broken.out.contains("TOML syntax error"), "\(broken.out)")
        let brokenJSON = try cli(["status", "--config", config, "--json"], env: env)
        let brokenDoc = (try? JSONSerialization.jsonObject(with: Data(brokenJSON.stdout.utf8))) as? [String: Any]
        #expect((brokenDoc?["config"] as? [String: Any])?["loads"] as? Bool == false, "monitoring reads stdout: \(brokenJSON.out)")
        relay.stop()
        let brokenStopped = try cli(["status", "--config", config], env: env)
        #expect(brokenStopped.status == 3 && brokenStopped.out.contains("not running") && brokenStopped.out.contains("TOML syntax error"),
                "stopped is said first, then what to fix: \(brokenStopped.out)")
        try good.write(toFile: config, atomically: true, encoding: .utf8)

        let stats = try cli(["spool", "stats", "--spool", relay.spoolPath, "--json"])
        #expect(stats.status == 0)
        let s = (try? JSONSerialization.jsonObject(with: Data(stats.out.utf8))) as? [String: Any] ?? [:]
        #expect(s["depth"] as? Int == 4)
        #expect(s["rejected"] as? Int == 2, "the bad call and the refused send")
        let rejected = try cli(["rejected", "list", "--spool", relay.spoolPath])
        #expect(rejected.out.contains("traits.age: expected a number, got a string"))
        #expect(try cli(["dead-letters", "list", "--spool", relay.spoolPath]).out.contains("no dead letters"))
        #expect(try cli(["dead-letters", "purge", "--older-than", "1d", "--spool", relay.spoolPath]).status == 0)
        #expect(try cli(["dead-letters", "replay", "--spool", relay.spoolPath]).status != 0, "replay needs IDs or --all")
        let stopped = try cli(["status", "--config", config], env: env)
        #expect(stopped.status == 3, "\(stopped.out)")
        #expect(try cli(["spool", "stats", "--spool", relay.dir + "/missing.db"]).status != 0)
        let badConfig = relay.dir + "/bad.toml"
        try "[upstream]\nurll = \"x\"\n".write(toFile: badConfig, atomically: true, encoding: .utf8)
        let check = try cli(["check-config", "--config", badConfig])
        #expect(check.status != 0)
        #expect(check.out.contains(#"bad.toml:2: unknown key "upstream.urll""#), "\(check.out)")
    }
}
