// End-to-end: the operator's first hour (issue 12). Each command's output
// and exit code beside a running daemon, a stopped one, a missing spool and
// a bad configuration; the JSON naming; /metrics read by Prometheus's own
// text parser.

import Foundation
import Testing

/// Keys in `value` (nested) that are not snake_case.
private func nonSnakeKeys(_ value: Any?) -> [String] {
    if let d = value as? [String: Any] {
        return d.keys.filter { $0.contains { $0.isUppercase } } + d.values.flatMap { nonSnakeKeys($0) }
    }
    if let a = value as? [Any] { return a.flatMap { nonSnakeKeys($0) } }
    return []
}

/// A configuration naming the test relay's spool and listeners, as an
/// operator's relay.toml would; the commands find it through PLAINFLOW_RELAY_CONFIG.
private func operatorConfig(_ relay: RelayProcess, port: Int? = nil) throws -> [String: String] {
    let path = relay.dir + "/operator.toml"
    try """
        [listen]
        tcp = "127.0.0.1:\(port ?? relay.port)"
        unix = "\(relay.socketPath)"
        [spool]
        path = "\(relay.spoolPath)"
        [upstream]
        url = "\(relay.upstream)"
        """.write(toFile: path, atomically: true, encoding: .utf8)
    return ["PLAINFLOW_RELAY_CONFIG": path]
}

@Suite(.serialized) struct OperatorCommandsEndToEndTests {
    @Test func besideARunningRelayEveryJSONIsSnakeCaseWithRealArrays() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        upstream.refuseMessages { ($0["user_id"] as? String) == "poison" ? 400 : nil }
        let relay = try RelayProcess(upstream: upstream.url, config: testConfig())
        try relay.start()
        defer { relay.stop() }
        #expect(try http(relay.tcp, "POST", "/v1/identify", json: identify("poison")).status == 200)
        #expect(try http(relay.tcp, "POST", "/v1/identify", json: #"{"traits":{"age":"old"}}"#).status == 400)
        #expect(eventually { ((try? relay.status())?["spool"] as? [String: Any])?["dead_letters"] as? Int == 1 }, "log:\n\(relay.log)")
        let env = try operatorConfig(relay)

        let status = try cli(["status", "--json"], env: env)
        #expect(status.status == 0, "\(status.out)")
        let statusDoc = json(status) as? [String: Any]
        #expect(nonSnakeKeys(statusDoc).isEmpty)
        let statusSpool = statusDoc?["spool"] as? [String: Any] ?? [:]

        // No flags: the configuration named by PLAINFLOW_RELAY_CONFIG, as the daemon's.
        let stats = try cli(["spool", "stats", "--json"], env: env)
        #expect(stats.status == 0, "\(stats.out)")
        let statsDoc = json(stats) as? [String: Any] ?? [:]
        #expect(Set(statsDoc.keys) == Set(statusSpool.keys), "the names of /v1/status's spool: \(stats.stdout)")
        #expect(statsDoc["dead_letters"] as? Int == 1)
        #expect((statusSpool["commits"] as? Int ?? 0) > 0 && statsDoc["commits"] is NSNull, "the daemon's counts are not the file's: \(stats.stdout)")

        let letters = try cli(["dead-letters", "list", "--json"], env: env)
        let letter = (json(letters) as? [[String: Any]])?.first ?? [:]
        #expect(nonSnakeKeys(json(letters)).isEmpty, "\(letters.stdout)")
        #expect(letter["message_id"] is String && letter["dead_at_ms"] is Int && letter["status"] as? Int == 400)

        let rejected = try cli(["rejected", "list", "--json"], env: env)
        let errors = (json(rejected) as? [[String: Any]])?.first?["errors"] as? [String]
        #expect(errors?.contains("traits.age: expected a number, got a string") == true, "errors is an array: \(rejected.stdout)")
        #expect(nonSnakeKeys(json(rejected)).isEmpty)

        let human = try cli(["status"], env: env)
        #expect(human.status == 0)
        #expect(human.out.contains("1 dead letter,") && !human.out.contains("Optional("), "\(human.out)")
        let table = try cli(["spool", "stats"], env: env)
        #expect(table.out.contains(" B") && table.out.contains("of spool.max_bytes 1.0 GiB"), "sizes for people: \(table.out)")

        let unknown = try cli(["dead-letters", "replay", "999"], env: env)
        #expect(unknown.status == 1, "nothing replayed is not success: \(unknown.out)")
        #expect(unknown.stderr.contains("Error: no dead letter with id 999"), "\(unknown.out)")
        #expect(!unknown.out.contains("USAGE"), "not a usage error")
        let id = try #require(letter["id"] as? Int)
        let replay = try cli(["dead-letters", "replay", String(id)], env: env)
        #expect(replay.status == 0 && replay.out.contains("replayed 1"), "\(replay.out)")
    }

    @Test func aStoppedRelayAMissingSpoolAndABadConfigSayWhatToDo() throws {
        let port = try freePort()  // nothing listens there
        let relay = try RelayProcess(upstream: "http://127.0.0.1:\(port)")  // never started
        var env = try operatorConfig(relay, port: port)

        let status = try cli(["status"], env: env)
        #expect(status.status == 3, "\(status.out)")
        #expect(status.stderr.hasPrefix("Error: plainflow-relay is not running: nothing answers on http://127.0.0.1:"), "\(status.out)")
        #expect(!status.out.contains("transportFailure") && !status.out.contains("curl"), "\(status.out)")
        let statusJSON = try cli(["status", "--json"], env: env)
        #expect(statusJSON.status == 3)
        let down = json(statusJSON) as? [String: Any]
        #expect(down?["ok"] as? Bool == false && down?["code"] as? String == "not_running", "\(statusJSON.out)")
        #expect((down?["errors"] as? [String])?.first == down?["message"] as? String && down?["exit_code"] as? Int == 3, "the error shape: \(statusJSON.out)")

        let stats = try cli(["spool", "stats"], env: env)
        #expect(stats.status == 1)
        #expect(stats.stderr.hasPrefix("Error: no spool at \(relay.spoolPath)"), "\(stats.out)")
        #expect(!stats.out.contains("write") && !stats.out.contains("SQLite"), "\(stats.out)")
        let statsJSON = try cli(["spool", "stats", "--json"], env: env)
        let failure = json(statsJSON) as? [String: Any]
        #expect(statsJSON.status == 1 && failure?["ok"] as? Bool == false && failure?["code"] as? String == "spool", "\(statsJSON.out)")
        #expect((failure?["errors"] as? [String])?.first?.contains(relay.spoolPath) == true)

        // A file that is not a spool (a typo in --spool) is named as such; no advice about users and modes.
        let notSpool = relay.dir + "/users.csv"
        try "user_id,email\n1,a@b.c\n".write(toFile: notSpool, atomically: true, encoding: .utf8)
        let wrongFile = try cli(["spool", "stats", "--spool", notSpool], env: env)
        #expect(wrongFile.status == 1 && wrongFile.stderr.hasPrefix("Error: \(notSpool) is not a plainflow-relay spool"), "\(wrongFile.out)")
        #expect(!wrongFile.out.contains("as root"), "\(wrongFile.out)")

        let ok = try cli(["check-config"], env: env)
        #expect(ok.status == 0, "\(ok.out)")
        #expect(ok.out.contains("read \(env["PLAINFLOW_RELAY_CONFIG"]!)") && ok.out.hasSuffix("configuration OK\n"), "\(ok.out)")

        // The packaged template's case: the spool's directory does not exist.
        let missingDir = relay.dir + "/var/lib/plainflow-relay"
        let badSpool = relay.dir + "/bad-spool.toml"
        try "[spool]\npath = \"\(missingDir)/spool.db\"\n[listen]\nunix = \"off\"\ntcp = \"127.0.0.1:\(port)\"\n"
            .write(toFile: badSpool, atomically: true, encoding: .utf8)
        let check = try cli(["check-config", "--config", badSpool])
        #expect(check.status == 78, "\(check.out)")
        #expect(check.out.contains("PROBLEM") && check.out.contains("the directory \(missingDir) does not exist"), "\(check.out)")
        let checkJSON = try cli(["check-config", "--config", badSpool, "--json"])
        let findings = (json(checkJSON) as? [String: Any])?["findings"] as? [[String: Any]] ?? []
        #expect(findings.contains { $0["level"] as? String == "problem" && $0["subject"] as? String == "spool" }, "\(checkJSON.out)")
        let run = try cli(["run", "--config", badSpool], timeoutSeconds: 30)
        #expect(run.status == 78, "\(run.out)")
        #expect(run.stderr.contains("\(missingDir) does not exist") && !run.out.contains("SQLite"), "\(run.out)")

        let badValue = relay.dir + "/bad-value.toml"
        try "[upstream]\nurl = \"x\"\n\n[spool]\non_full = \"panic\"\n".write(toFile: badValue, atomically: true, encoding: .utf8)
        env["PLAINFLOW_RELAY_CONFIG"] = badValue
        let values = try cli(["check-config"], env: env)
        #expect(values.status == 78)
        #expect(values.out.contains("\(badValue):2: upstream.url: expected an http:// or https:// URL"), "\(values.out)")
        #expect(values.out.contains(#"\#(badValue):5: spool.on_full: expected "reject" or "drop_oldest", got "panic""#), "\(values.out)")
        let spoolWithBadConfig = try cli(["spool", "stats", "--json"], env: env)
        #expect(spoolWithBadConfig.status == 78 && (json(spoolWithBadConfig) as? [String: Any])?["code"] as? String == "configuration")
    }

    @Test func usageErrorsVersionsAndExitCodes() throws {
        let purge = try cli(["dead-letters", "purge", "--older-than", "7x"])
        #expect(purge.status == 64)
        #expect(purge.stderr.contains("plainflow-relay dead-letters purge"), "the purge usage: \(purge.out)")
        let version = try cli(["version"])
        let flag = try cli(["--version"])
        #expect(version.status == 0 && version.stdout == flag.stdout && version.stdout.hasPrefix("plainflow-relay "), "\(version.out) \(flag.out)")
        let help = try cli(["--help"])
        #expect(help.out.contains("Exit codes: 0 done; 1 failed"), "\(help.out)")
    }

    @Test func aPortInUseIsNamedWithWhatToDo() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let relay = try RelayProcess(upstream: upstream.url)
        try relay.start()
        defer { relay.stop() }
        let other = relay.dir + "/other.db"
        let second = try cli(["run", "--tcp", "127.0.0.1:\(relay.port)", "--unix", "off", "--spool", other,
                              "--upstream", upstream.url, "--write-key", "k"], timeoutSeconds: 30)
        #expect(second.status == 1, "\(second.out)")
        #expect(second.stderr.contains("Error: cannot listen on TCP 127.0.0.1:\(relay.port): the address is already in use"), "\(second.out)")
        #expect(!second.out.contains("errno") && !second.out.contains("bind("), "\(second.out)")
    }

    @Test func metricsParseWithPrometheusTextParserAndCountersAreCounters() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let relay = try RelayProcess(upstream: upstream.url)
        try relay.start()
        defer { relay.stop() }
        #expect(try http(relay.tcp, "POST", "/v1/identify", json: identify("m1")).status == 200)
        #expect(eventually { ((try? relay.status())?["upstream"] as? [String: Any])?["delivered"] as? Int == 1 })
        let text = try http(relay.tcp, "GET", "/metrics").text
        let file = relay.dir + "/metrics.txt"
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        // Debian's python3-prometheus-client (scripts/setup.sh installs it), for the system python.
        let parse = try cli(["-c", """
            import json, sys
            from prometheus_client.parser import text_string_to_metric_families
            out = []
            for family in text_string_to_metric_families(open(sys.argv[1]).read()):
                for s in family.samples:
                    out.append({"family": family.name, "type": family.type, "help": family.documentation, "sample": s.name, "labels": s.labels, "value": s.value})
            print(json.dumps(out))
            """, file], executable: "/usr/bin/python3")
        #expect(parse.status == 0, "python3-prometheus-client (scripts/setup.sh installs it): \(parse.out)")
        let samples = json(parse) as? [[String: Any]] ?? []
        #expect(samples.count > 10, "\(parse.out)")
        for s in samples {
            let name = s["sample"] as? String ?? ""
            let labels = s["labels"] as? [String: String] ?? [:]
            #expect(labels["host"]?.isEmpty == false, "\(name) has the host label")
            #expect((s["help"] as? String)?.isEmpty == false, "\(s["family"] ?? name) says what it is (# HELP)")
            if name.hasSuffix("_total") { #expect(s["type"] as? String == "counter", "\(name) is a counter") }
        }
        let value = { (name: String) in samples.first { $0["sample"] as? String == name }?["value"] as? Double }
        #expect(value("plainflow_upstream_delivered_messages_total") == 1)
        #expect(samples.contains { $0["sample"] as? String == "plainflow_spool_messages" && $0["type"] as? String == "gauge" })
        #expect(value("plainflow_upstream_request_duration_seconds_count") == 1 && samples.contains {
            $0["family"] as? String == "plainflow_upstream_request_duration_seconds" && $0["type"] as? String == "histogram"
        }, "request latency is a histogram in seconds")
        #expect(value("plainflow_ingest_ack_duration_seconds_count") == 1 && samples.contains {
            $0["family"] as? String == "plainflow_ingest_ack_duration_seconds" && $0["type"] as? String == "histogram"
        }, "the acknowledgement's latency is a histogram in seconds")
    }
}
