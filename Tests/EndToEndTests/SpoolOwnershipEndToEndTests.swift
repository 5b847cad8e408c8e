// Two daemons on one spool would both forward (duplicate sends): the second
// refuses to start, naming the file and the owner's PID, while operator
// commands keep working beside the running one.

import Foundation
import Testing

@Suite struct SpoolOwnershipEndToEndTests {
    @Test func aSecondRelayOnTheSameSpoolRefusesToStartAndNamesTheOwner() throws {
        let owner = try RelayProcess(upstream: "http://127.0.0.1:9")
        try owner.start()
        let pid = try #require(owner.process?.processIdentifier)
        // The second relay has its own socket and port, but the first one's spool.
        let second = try RelayProcess(upstream: "http://127.0.0.1:9", args: ["--spool", owner.spoolPath])
        #expect(throws: (any Error).self) { try second.start(timeoutSeconds: 10) }
        #expect(second.process?.isRunning == false)
        #expect(second.log.contains(owner.spoolPath) && second.log.contains("process \(pid)"), "the refusal names the file and the owner:\n\(second.log)")
        #expect(try cli(["spool", "stats", "--spool", owner.spoolPath]).status == 0)
        #expect(try owner.status()["ok"] as? Bool == true, "the owner keeps running")
        owner.stop()
    }
}
