// End-to-end: a disk that refuses writes. The spool lives on a small tmpfs
// that the test fills up: calls get 503 (never a crash, never a false 200),
// and once there is room again the relay takes calls by itself.
// Needs root to mount; skipped where mounting is not allowed.

import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A tmpfs of `megabytes` at a new directory; nil where mounting is not allowed.
final class SmallDisk {
    let path: String
    init?(megabytes: Int) {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("disk-\(UUID().uuidString.prefix(8))").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        guard getuid() == 0, mount("tmpfs", path, "tmpfs", 0, "size=\(megabytes)m") == 0 else {
            try? FileManager.default.removeItem(atPath: path)
            return nil
        }
    }
    deinit {
        umount2(path, Int32(MNT_DETACH))
        try? FileManager.default.removeItem(atPath: path)
    }

    /// Fills what is left with a file; returns its path.
    func fill() -> String {
        let filler = path + "/filler"
        _ = FileManager.default.createFile(atPath: filler, contents: nil)
        let h = FileHandle(forWritingAtPath: filler)!
        let chunk = Data(count: 64 * 1024)
        while (try? h.write(contentsOf: chunk)) != nil {}
        try? h.close()
        return filler
    }
}

@Suite(.serialized) struct DiskFullEndToEndTests {
    static let canMount: Bool = SmallDisk(megabytes: 1) != nil

    @Test(.enabled(if: canMount, "needs root to mount a tmpfs"))
    func aFullDiskAnswers503AndTheRelayRecoversByItself() throws {
        let disk = try #require(SmallDisk(megabytes: 2))
        let upstreamPort = try freePort()  // down: everything stays in the spool
        let relay = try RelayProcess(upstream: "http://127.0.0.1:\(upstreamPort)", config: testConfig(),
                                     args: ["--spool", disk.path + "/spool.db"])
        try relay.start()
        defer { relay.stop() }
        var acked: Set<String> = []
        for i in 0..<20 {
            let r = try http(relay.tcp, "POST", "/v1/identify", json: identify("before\(i)"))
            #expect(r.status == 200)
            if let id = r.json["message_id"] as? String { acked.insert(id) }
        }
        let filler = disk.fill()
        var refused = 0
        for i in 0..<200 {
            let r = try http(relay.tcp, "POST", "/v1/identify", json: identify("full\(i)", traits: #"{"bio":"\#(String(repeating: "x", count: 2000))"}"#))
            if r.status == 503 {
                refused += 1
                #expect(r.headers["retry-after"] != nil)
                break
            }
            #expect(r.status == 200)
            if let id = r.json["message_id"] as? String { acked.insert(id) }
        }
        #expect(refused == 1, "the full disk is answered with 503")
        for i in 0..<30 {
            _ = try http(relay.tcp, "POST", "/v1/identify", json: identify("still-full\(i)", traits: #"{"bio":"\#(String(repeating: "x", count: 2000))"}"#))
        }
        let failureLines = relay.log.components(separatedBy: "spool commit failed").count - 1
        #expect(failureLines >= 1 && failureLines <= 2, "logged when it starts, not once a call: \(failureLines) lines")
        #expect(try http(relay.tcp, "GET", "/healthz").status == 200, "the daemon stays up")

        try FileManager.default.removeItem(atPath: filler)
        #expect(eventually(10) { (try? http(relay.tcp, "POST", "/v1/identify", json: identify("after")))?.status == 200 },
                "recovers by itself once there is room; log:\n\(relay.log)")

        let upstream = try TestUpstream(port: upstreamPort)
        defer { upstream.stop() }
        #expect(eventually(20) { Set(upstream.delivered.compactMap { $0["message_id"] as? String }).isSuperset(of: acked) },
                "every acknowledged call is delivered")
    }
}
