// SIGHUP applies a changed `log.level` to the running relay (the packaged
// unit's `systemctl reload`): an operator can turn on debug logging to see
// why calls are refused, without a restart.

import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct LogLevelReloadEndToEndTests {
    @Test func sighupAppliesTheReloadedLogLevel() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let config = { (level: String) in testConfig("[log]\nlevel = \"\(level)\"") }
        let relay = try RelayProcess(upstream: upstream.url, config: config("info"))
        try relay.start()
        defer { relay.stop() }
        let refused = #"{"traits":{"age":"old"}}"#  // no user id: 400, logged at debug level only
        #expect(try http(relay.tcp, "POST", "/v1/identify", json: refused).status == 400)
        #expect(try http(relay.tcp, "POST", "/v1/identify", json: identify("level-1")).status == 200)
        #expect(eventually { upstream.delivered.count == 1 })
        #expect(!relay.log.contains("call refused"), "info level: no debug lines\n\(relay.log)")

        try config("debug").write(toFile: relay.dir + "/relay.toml", atomically: true, encoding: .utf8)
        kill(relay.process!.processIdentifier, SIGHUP)
        #expect(eventually { relay.log.contains("log_level=debug") }, "log:\n\(relay.log)")
        #expect(try http(relay.tcp, "POST", "/v1/identify", json: refused).status == 400)
        #expect(eventually { relay.log.contains("call refused") }, "debug level after SIGHUP\n\(relay.log)")
    }
}
