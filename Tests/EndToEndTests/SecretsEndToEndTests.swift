// The upstream write key is a secret: with a canary key in the config and
// the log at debug level, drive the paths that talk about keys and failures
// (delivery, a refused message, a rejected call, refused credentials, a
// bad app key) and look for the canary everywhere a person or a scraper
// reads: the log, /v1/status, /metrics, error answers, the rejected sample
// and the dead-letter listing. It must never appear.

import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct SecretsEndToEndTests {
    @Test func theWriteKeyNeverAppearsInLogsStatusMetricsAnswersOrListings() throws {
        let canary = "canary-\(UUID().uuidString.prefix(12))"
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        upstream.refuseMessages { ($0["user_id"] as? String) == "refused" ? 400 : nil }
        let config = testConfig(#"max_in_flight = 1"#).replacingOccurrences(of: "test-key", with: canary)
            + "\n[limits]\naccepted_write_keys = [\"app-key\"]\n[log]\nlevel = \"debug\"\n"
        let relay = try RelayProcess(upstream: upstream.url, config: config)
        try relay.start()
        defer { relay.stop() }
        let app = basicAuth("app-key")
        var answers: [String] = []
        answers.append(try http(relay.tcp, "POST", "/v1/identify", json: identify("ok-1"), headers: app).text)
        answers.append(try http(relay.tcp, "POST", "/v1/identify", json: identify("refused"), headers: app).text)
        answers.append(try http(relay.tcp, "POST", "/v1/identify", json: #"{"traits":{"age":"old"}}"#, headers: app).text)
        answers.append(try http(relay.tcp, "POST", "/v1/identify", json: identify("no-key")).text)
        answers.append(try http(relay.tcp, "POST", "/v1/identify", json: identify("bad-key"), headers: basicAuth("wrong")).text)
        #expect(eventually { upstream.delivered.count == 1 }, "log:\n\(relay.log)")
        #expect(eventually { ((try? relay.status())?["spool"] as? [String: Any])?["dead_letters"] as? Int == 1 })
        // Refused credentials: the upstream now answers 401 to the relay's key.
        upstream.requireWriteKey("another-key")
        answers.append(try http(relay.tcp, "POST", "/v1/identify", json: identify("ok-2"), headers: app).text)
        #expect(eventually { ((try? relay.status())?["upstream"] as? [String: Any])?["state"] as? String == "paused_credentials" })
        #expect(upstream.requests.allSatisfy { $0.writeKey == canary }, "the key does go upstream, as Basic auth")

        let places: [(String, String)] = [
            ("the log", relay.log),
            ("/v1/status", try http(relay.tcp, "GET", "/v1/status").text),
            ("/metrics", try http(relay.tcp, "GET", "/metrics").text),
            ("answers", answers.joined(separator: "\n")),
            ("rejected list", try cli(["rejected", "list", "--json", "--spool", relay.spoolPath]).out),
            ("dead-letters list", try cli(["dead-letters", "list", "--json", "--spool", relay.spoolPath]).out),
            ("spool stats", try cli(["spool", "stats", "--json", "--spool", relay.spoolPath]).out),
        ]
        for (place, text) in places {
            #expect(!text.isEmpty, "\(place) was read")
            #expect(!text.contains(canary), "the write key appears in \(place)")
        }
        #expect(relay.log.contains("debug"), "the log ran at debug level")
    }

    /// A proxy the environment names for the upstream is libcurl's to use:
    /// one it cannot use stops the relay at start by the variable's name
    /// (libcurl would fail every request, quoting it whole, password and
    /// all), and `check-config` says the same; a usable one is named at
    /// start, host and port only, and its failures never show its password.
    @Test func aProxyFromTheEnvironmentIsCheckedAtStartAndItsPasswordNeverAppears() throws {
        let canary = "pw-\(UUID().uuidString.prefix(12))"
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        // A scheme libcurl lacks; a password with a space (libcurl refuses it, quoting the value).
        let unusableProxies = [("socks9://relay:\(canary)@127.0.0.1:9", #"unsupported scheme "socks9""#),
                               ("http://relay:\(canary) x@127.0.0.1:9", "it contains a space")]
        for (proxy, why) in unusableProxies {
            let unusable = try RelayProcess(upstream: "", config: testConfig(#"url = "\#(upstream.url)""#))
            unusable.environment = ["http_proxy": proxy, "no_proxy": "", "NO_PROXY": ""]
            #expect(throws: (any Error).self) { try unusable.start() }
            defer { unusable.stop() }
            #expect(unusable.log.contains("http_proxy in the environment, the proxy libcurl would use for \(upstream.url): \(why)"), "\(unusable.log)")
            let check = try cli(["check-config", "--json", "--config", unusable.dir + "/relay.toml"], env: unusable.environment)
            #expect(check.status == 78, "\(check.out)")
            let findings = (json(check) as? [String: Any])?["findings"] as? [[String: Any]] ?? []
            #expect(findings.contains { $0["level"] as? String == "problem" && ($0["message"] as? String ?? "").hasPrefix("http_proxy in the environment") }, "\(check.out)")
            #expect(!unusable.log.contains(canary) && !check.out.contains(canary), "the proxy password appears:\n\(unusable.log)\n\(check.out)")
        }

        let relay = try RelayProcess(upstream: upstream.url, config: testConfig())
        relay.environment = ["http_proxy": "http://relay:\(canary)@127.0.0.1:9", "no_proxy": "", "NO_PROXY": ""]
        try relay.start()
        defer { relay.stop() }
        #expect(relay.log.contains("go through the proxy the environment names") && relay.log.contains("127.0.0.1:9") && relay.log.contains("http_proxy"), "\(relay.log)")
        #expect(try http(relay.tcp, "POST", "/v1/identify", json: identify("via-proxy")).status == 200)
        var lastError = ""
        #expect(eventually(5) {
            lastError = ((try? relay.status())?["upstream"] as? [String: Any])?["last_error"] as? String ?? ""
            return !lastError.isEmpty
        })
        #expect(lastError.contains("127.0.0.1 port 9"), "the failure is the proxy's: \(lastError)")
        #expect(!lastError.contains(canary) && !relay.log.contains(canary), "the proxy password appears: \(lastError)\n\(relay.log)")
        #expect(upstream.requests.isEmpty)

        // upstream.proxy takes the environment's place; a reload that drops it is checked like a start.
        let configured = { (proxy: String) in testConfig(#"url = "\#(upstream.url)""# + "\n" + proxy) }
        let reloaded = try RelayProcess(upstream: "", config: configured(#"proxy = "http://127.0.0.1:9""#))
        reloaded.environment = ["http_proxy": "socks9://relay:\(canary)@127.0.0.1:9", "no_proxy": "", "NO_PROXY": ""]
        try reloaded.start()
        defer { reloaded.stop() }
        try configured("").write(toFile: reloaded.dir + "/relay.toml", atomically: true, encoding: .utf8)
        kill(reloaded.process!.processIdentifier, SIGHUP)
        #expect(eventually { reloaded.log.contains("keeping the running one") }, "log:\n\(reloaded.log)")
        #expect(reloaded.log.contains(#"http_proxy in the environment, the proxy libcurl would use for \#(upstream.url): unsupported scheme "socks9""#), "\(reloaded.log)")
        #expect(!reloaded.log.contains(canary))
    }
}
