// Runs the real `plainflow-relay` binary for a test: its own temporary
// directory (spool file, Unix socket, log), a free TCP port, and the
// upstream the test started. Stopped by PID: SIGTERM, or SIGKILL for the
// crash tests.

import Foundation
#if canImport(Glibc)
import Glibc
#endif

final class RelayProcess {
    let dir: String
    /// The relay's TCP port: it binds port 0 and the harness reads the real
    /// one from its "listening" log line (no window for another test to take it).
    private(set) var port = 0
    var socketPath: String { dir + "/relay.sock" }
    var spoolPath: String { dir + "/spool.db" }
    var logPath: String { dir + "/relay.log" }
    private(set) var process: Process?
    private let extraArgs: [String]
    let upstream: String
    let config: String?

    /// The binary under test: `PLAINFLOW_RELAY_BIN`, or the one built beside the test bundle.
    static var binary: String {
        if let b = ProcessInfo.processInfo.environment["PLAINFLOW_RELAY_BIN"] { return b }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("plainflow-relay").path
    }

    /// - Parameters:
    ///   - config: TOML written to the test directory and passed with --config.
    /// Variables set for the daemon on top of the test's own environment.
    var environment: [String: String] = [:]

    init(upstream: String, config: String? = nil, args: [String] = [], dir: String? = nil) throws {
        self.dir = dir ?? FileManager.default.temporaryDirectory.appendingPathComponent("relay-e2e-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: self.dir, withIntermediateDirectories: true)
        self.upstream = upstream
        self.config = config
        self.extraArgs = args
    }

    var tcp: Endpoint { .tcp(port) }
    var unix: Endpoint { .unix(socketPath) }

    /// Starts the daemon and waits until it answers /healthz.
    func start(timeoutSeconds: Double = 20) throws {
        var args = ["run", "--tcp", "127.0.0.1:0", "--unix", socketPath, "--spool", spoolPath]
        if !upstream.isEmpty { args += ["--upstream", upstream] }  // "": the config's upstream.url
        if let config {
            let path = dir + "/relay.toml"
            try config.write(toFile: path, atomically: true, encoding: .utf8)
            args += ["--config", path]
        } else {
            args += ["--write-key", "test-key"]
        }
        args += extraArgs
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.binary)
        p.arguments = args
        if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        log.seekToEndOfFile()
        p.standardError = log
        p.standardOutput = log
        try p.run()
        process = p
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while Date() < deadline {
            if !p.isRunning { throw SocketError(description: "relay exited at start (\(p.terminationStatus)):\n\(self.log)") }
            let text = self.log
            if port == 0, let range = text.range(of: #"tcp 127\.0\.0\.1:[0-9]+"#, options: .regularExpression) {
                port = Int(text[range].split(separator: ":").last ?? "") ?? 0
            }
            if port != 0, let r = try? http(tcp, "GET", "/healthz"), r.status == 200 { return }
            usleep(50_000)
        }
        throw SocketError(description: "relay did not answer /healthz within \(timeoutSeconds)s:\n\(log)")
    }

    /// SIGTERM, then waits for the exit; returns the exit status (nil: had to be killed).
    @discardableResult
    func stop(timeoutSeconds: Double = 15) -> Int32? {
        guard let p = process, p.isRunning else { return process?.terminationStatus }
        kill(p.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while p.isRunning && Date() < deadline { usleep(20_000) }
        if p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            return nil
        }
        return p.terminationStatus
    }

    /// SIGKILL: a crash, with no chance to clean up.
    func kill9() {
        guard let p = process, p.isRunning else { return }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    func status() throws -> [String: Any] { try http(tcp, "GET", "/v1/status").json }

    deinit {
        if let p = process, p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        try? FileManager.default.removeItem(atPath: dir)
    }
}

/// Polls `condition` every 50 ms until it holds or `seconds` pass.
func eventually(_ seconds: Double = 20, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try condition() { return true }
        usleep(50_000)
    }
    return try condition()
}
