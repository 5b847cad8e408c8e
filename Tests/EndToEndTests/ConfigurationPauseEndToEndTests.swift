// An operator who mistyped the upstream URL: every answer is 404. That is a
// configuration problem, not bad messages: forwarding pauses (nothing goes
// to dead letters, nothing is dropped), status and the log say what to fix,
// and fixing the URL plus SIGHUP delivers everything.

import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct ConfigurationPauseEndToEndTests {
    @Test func aWrongUpstreamPathPausesKeepsEverythingAndAFixedURLPlusSIGHUPDeliversIt() throws {
        let right = try TestUpstream()
        defer { right.stop() }
        let wrong = try TestUpstream(defaultAnswer: .status(404))
        defer { wrong.stop() }
        let config = { (url: String) in testConfig(#"url = "\#(url)""#) }
        let relay = try RelayProcess(upstream: "", config: config(wrong.url + "/typo"))
        try relay.start()
        defer { relay.stop() }
        for i in 0..<5 { #expect(try http(relay.tcp, "POST", "/v1/identify", json: identify("cfg\(i)")).status == 200) }
        #expect(eventually { ((try? relay.status())?["upstream"] as? [String: Any])?["state"] as? String == "paused_configuration" },
                "log:\n\(relay.log)")
        Thread.sleep(forTimeInterval: 1)
        let spool = (try relay.status())["spool"] as? [String: Any]
        #expect(spool?["dead_letters"] as? Int == 0, "a configuration error makes no dead letters")
        #expect(spool?["depth"] as? Int == 5, "nothing dropped")
        #expect(wrong.requests.count == 1, "paused after the first answer: the wrong URL is not hammered")
        #expect(relay.log.contains("upstream.url"), "the log names what to fix")
        // The operator fixes the URL and reloads.
        try config(right.url).write(toFile: relay.dir + "/relay.toml", atomically: true, encoding: .utf8)
        kill(relay.process!.processIdentifier, SIGHUP)
        #expect(eventually { right.delivered.count == 5 }, "log:\n\(relay.log)")
        #expect(Set(right.delivered.compactMap { $0["user_id"] as? String }) == Set((0..<5).map { "cfg\($0)" }))
        #expect(eventually { ((try? relay.status())?["upstream"] as? [String: Any])?["state"] as? String == "ok" })
    }
}
