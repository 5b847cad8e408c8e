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

    /// libcurl quotes a proxy it cannot use whole, password included: the
    /// relay's account of the failure names the proxy without it. (The
    /// config refuses such a proxy at start; the environment's is libcurl's.)
    @Test func aProxyPasswordNeverAppearsInTheFailureAnOperatorReads() throws {
        let canary = "pw-\(UUID().uuidString.prefix(12))"
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let relay = try RelayProcess(upstream: upstream.url, config: testConfig())
        relay.environment = ["http_proxy": "socks9://relay:\(canary)@127.0.0.1:9", "no_proxy": "", "NO_PROXY": ""]
        try relay.start()
        defer { relay.stop() }
        #expect(try http(relay.tcp, "POST", "/v1/identify", json: identify("via-proxy")).status == 200)
        var lastError = ""
        #expect(eventually(5) {
            lastError = ((try? relay.status())?["upstream"] as? [String: Any])?["last_error"] as? String ?? ""
            return !lastError.isEmpty
        })
        #expect(lastError.contains("socks9://***@127.0.0.1:9"), "the proxy is named, without its credentials: \(lastError)")
        #expect(!lastError.contains(canary) && !relay.log.contains(canary), "the proxy password appears: \(lastError)\n\(relay.log)")
        #expect(upstream.requests.isEmpty)
    }
}
