// End-to-end: `plainflow-relay import` beside a running relay, counted at a
// local upstream: every record once, a re-run sends nothing, a killed import
// resumed sends exactly the full set, live calls go before the backlog, and
// the progress shows on a terminal and in plain mode.

import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// An NDJSON file of `count` dated identify calls without message ids (the import derives them).
func historicalFile(_ dir: String, _ name: String, count: Int, prefix: String) throws -> String {
    let path = dir + "/" + name
    var text = ""
    text.reserveCapacity(count * 120)
    for i in 0..<count {
        text += #"{"type":"identify","userId":"\#(prefix)-\#(i)","timestamp":"2023-06-01T12:00:00Z","traits":{"plan":"legacy","n":\#(i)}}"# + "\n"
    }
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

@Suite(.serialized) struct ImportEndToEndTests {
    func importArgs(_ relay: RelayProcess, _ files: [String], _ extra: [String] = []) -> [String] {
        ["import"] + files + ["--config", relay.dir + "/relay.toml", "--spool", relay.spoolPath] + extra
    }

    func userIDs(_ upstream: TestUpstream, prefix: String) -> [String] {
        upstream.delivered.compactMap { $0["user_id"] as? String }.filter { $0.hasPrefix(prefix + "-") }
    }

    @Test func everyRecordReachesTheUpstreamOnceAndAnotherRunSendsNothing() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let relay = try RelayProcess(upstream: upstream.url, config: testConfig())
        try relay.start()
        defer { relay.stop() }
        let file = try historicalFile(relay.dir, "users.ndjson", count: 3_000, prefix: "h")

        let first = try cli(importArgs(relay, [file]))
        #expect(first.status == 0, "\(first.out)")
        #expect(first.out.contains("3,000 valid (3,000 stored"), "\(first.out)")
        #expect(eventually(30) { userIDs(upstream, prefix: "h").count >= 3_000 })
        let delivered = upstream.delivered.filter { ($0["user_id"] as? String)?.hasPrefix("h-") == true }
        #expect(Set(delivered.compactMap { $0["user_id"] as? String }).count == 3_000)
        #expect(delivered.allSatisfy { $0["timestamp"] as? String == "2023-06-01T12:00:00Z" }, "the time it happened, not the import's")

        let again = try cli(importArgs(relay, [file]))
        #expect(again.status == 0 && again.out.contains("already imported"), "\(again.out)")
        let extended = relay.dir + "/users-and-one.ndjson"
        try (try String(contentsOfFile: file, encoding: .utf8)
             + #"{"type":"identify","userId":"h-new","timestamp":"2023-06-02T12:00:00Z"}"# + "\n").write(toFile: extended, atomically: true, encoding: .utf8)
        let third = try cli(importArgs(relay, [extended]))
        #expect(third.out.contains("1 stored, 3,000 already held"), "\(third.out)")
        #expect(eventually(10) { userIDs(upstream, prefix: "h").count == 3_001 })
        usleep(500_000)
        #expect(userIDs(upstream, prefix: "h").count == 3_001, "nothing was sent twice")
    }

    @Test func anImportKilledMidwayAndResumedDeliversExactlyTheFullSet() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let relay = try RelayProcess(upstream: upstream.url, config: testConfig())
        try relay.start()
        defer { relay.stop() }
        let total = 40_000
        let file = try historicalFile(relay.dir, "big.ndjson", count: total, prefix: "k")

        let p = Process()
        p.executableURL = URL(fileURLWithPath: RelayProcess.binary)
        p.arguments = importArgs(relay, [file])
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        #expect(eventually(60) { !userIDs(upstream, prefix: "k").isEmpty || !p.isRunning })
        let killedMidway = p.isRunning
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        #expect(killedMidway, "the import was still running when killed")

        let stopped = try cli(importArgs(relay, [file]))
        #expect(stopped.status == 1 && stopped.out.contains("--resume"), "an unfinished run is not started over: \(stopped.out)")
        let resumed = try cli(importArgs(relay, [file, "--resume"]))
        #expect(resumed.status == 0 && resumed.out.contains("resumed after"), "\(resumed.out)")
        #expect(eventually(60) { userIDs(upstream, prefix: "k").count >= total })
        usleep(500_000)
        let ids = userIDs(upstream, prefix: "k")
        #expect(ids.count == total && Set(ids).count == total, "\(ids.count) delivered, \(Set(ids).count) distinct")
    }

    @Test func liveCallsSentDuringAnImportBacklogReachTheUpstreamBeforeIt() throws {
        // The upstream refuses until the live calls are queued, so the whole
        // backlog is still there when they come, however long the import took.
        let upstream = try TestUpstream(defaultAnswer: .status(503))
        defer { upstream.stop() }
        let relay = try RelayProcess(upstream: upstream.url, config: testConfig("max_requests_per_second = 5\nbatch_max_messages = 100"))
        try relay.start()
        defer { relay.stop() }
        let file = try historicalFile(relay.dir, "backlog.ndjson", count: 2_000, prefix: "b")
        #expect(try cli(importArgs(relay, [file])).status == 0)
        for i in 0..<5 {
            #expect(try http(relay.tcp, "POST", "/v1/identify", json: identify("live-\(i)")).status == 200)
        }
        upstream.setScript([], default: .status(200))
        #expect(eventually(60) { userIDs(upstream, prefix: "b").count >= 2_000 })
        let order = upstream.delivered.compactMap { $0["user_id"] as? String }
        let lastLive = try #require(order.lastIndex { $0.hasPrefix("live-") })
        let lastImported = try #require(order.lastIndex { $0.hasPrefix("b-") })
        #expect(order.filter { $0.hasPrefix("live-") }.count == 5)
        #expect(lastLive < lastImported - 1_000, "live calls overtook the import's backlog (live at \(lastLive), backlog ends at \(lastImported))")
    }

    @Test func progressIsABarOnATerminalAndPlainLinesOtherwise() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("import-progress-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = try historicalFile(dir, "p.ndjson", count: 5_000, prefix: "p")

        let command = "\(RelayProcess.binary) import --check \(file)"
        let tty = try cli(["-qec", command, "/dev/null"], executable: "/usr/bin/script")
        #expect(tty.status == 0)
        #expect(tty.out.contains("\r") && tty.out.contains("[") && tty.out.contains("% ") && tty.out.contains(" read "), "\(tty.out.debugDescription)")
        #expect(tty.out.contains("checked 5,000 records: 5,000 valid"))

        let plain = try cli(["import", "--check", file, "--progress-every", "0"])
        #expect(plain.status == 0)
        let lines = plain.out.split(separator: "\n")
        #expect(lines.filter { $0.contains(" read ") && $0.contains(" valid ") }.count >= 2, "a line a slice at --progress-every 0: \(plain.out)")
        #expect(!plain.out.contains("\r") && !plain.out.contains("["), "no terminal controls in plain mode")
    }
}
