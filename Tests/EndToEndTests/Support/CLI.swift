// Runs the command line for a test: `plainflow-relay ARGS` (or another
// program) to completion, bounded in time; killed by its PID past the bound.

import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What a command printed and how it exited.
struct CLIResult {
    let status: Int32
    /// Standard output only (what `--json` prints).
    let stdout: String
    /// Standard output, then standard error.
    var out: String { stdout + stderr }
    let stderr: String
}

/// Runs `plainflow-relay ARGS` (or `executable`) with the test's environment
/// plus `env`; after `timeoutSeconds` it is killed and the result says so.
func cli(_ args: [String], env: [String: String] = [:], executable: String = RelayProcess.binary,
         timeoutSeconds: Double = 60) throws -> CLIResult {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cli-\(UUID().uuidString.prefix(8))").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let outPath = dir + "/out", errPath = dir + "/err"
    _ = FileManager.default.createFile(atPath: outPath, contents: nil)
    _ = FileManager.default.createFile(atPath: errPath, contents: nil)
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = args
    p.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("PLAINFLOW_RELAY_") || $0.key == "PLAINFLOW_RELAY_BIN" }
        .merging(env) { $1 }
    p.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
    p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
    try p.run()
    let deadline = Date().addingTimeInterval(timeoutSeconds)
    while p.isRunning && Date() < deadline { usleep(20_000) }
    var timedOut = false
    if p.isRunning {
        kill(p.processIdentifier, SIGKILL)
        timedOut = true
    }
    p.waitUntilExit()
    let stdout = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
    var stderr = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
    if timedOut { stderr += "\n[killed after \(timeoutSeconds) s]" }
    return CLIResult(status: p.terminationStatus, stdout: stdout, stderr: stderr)
}

/// The JSON a command printed on standard output.
func json(_ r: CLIResult) -> Any? {
    try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))
}
