// What the commands print: tables and sentences for people, JSON for
// scripts (`--json`: snake_case and real arrays, as `/v1/status`), and one
// style of error for every command: what failed, where, and what to do,
// as `Error: …` on standard error, or as a JSON object with `--json`.
//
// Exit codes (also in `--help` and the README):
//   0 done; 1 failed, or did not do all that was asked; 3 the relay is not
//   running (status, send); 64 bad usage; 75 the spool is full (import);
//   78 the configuration is not usable; 130 stopped by Ctrl-C (import).

import ArgumentParser
import Foundation
import RelayDaemon
import RelayIngest
import RelayMessage
import RelaySpool

/// Exit codes beyond ArgumentParser's 0, 1 and 64.
enum Exit {
    static let notRunning: Int32 = 3
    static let spoolFull: Int32 = 75
    static let configuration: Int32 = 78
    static let interrupted: Int32 = 130

    /// The lines of `--help`'s and the README's table.
    static let table = """
        Exit codes: 0 done; 1 failed, or did not do all that was asked (e.g. a dead letter id that does not exist); \
        3 the relay is not running (status, send); 64 bad usage; 75 the spool is full (import: resume later); \
        78 the configuration is not usable (check-config says why); 130 stopped by Ctrl-C (import).
        """
}

/// A failure a command reports itself: a short code for scripts, the
/// message for people, and the exit code.
struct CommandFailure: Error, CustomStringConvertible {
    let code: String
    let description: String
    let exitCode: Int32

    init(_ code: String, _ description: String, exitCode: Int32 = 1) {
        self.code = code
        self.description = description
        self.exitCode = exitCode
    }
}

/// Prints the error the way the whole command line does and exits.
/// - Parameter json: `--json` was given: a JSON object on standard output.
func reportAndExit(_ error: any Error, json: Bool) -> Never {
    if error is ExitCode || PlainflowRelay.exitCode(for: error) == .success {
        PlainflowRelay.exit(withError: error)  // help, --version, or already reported
    }
    let failure = CommandFailure(error)
    if json {
        let lines = failure.description.split(separator: "\n").map { JSONValue.string(String($0)) }
        printJSON(.object([
            "ok": .bool(false), "code": .string(failure.code), "message": lines.first ?? .string(failure.description),
            "errors": .array(lines), "exit_code": .int(Int64(failure.exitCode)),
        ]))
    } else if failure.code == "usage" {
        // ArgumentParser's text, with the usage of the command that was meant.
        FileHandle.standardError.write(Data((PlainflowRelay.fullMessage(for: error) + "\n").utf8))
    } else {
        printError(failure.description.replacingOccurrences(of: "\n", with: "\n       "))
    }
    Foundation.exit(failure.exitCode)
}

extension CommandFailure {
    /// Any error a command throws, with its code and exit code.
    init(_ error: any Error) {
        switch error {
        case let e as CommandFailure: self = e
        case let e as ConfigError: self.init("configuration", e.description, exitCode: Exit.configuration)
        case let e as SpoolError:
            if case .full = e { self.init("spool_full", e.description, exitCode: Exit.spoolFull) } else { self.init("spool", e.description) }
        case let e as ListenerError: self.init("listener", e.description)
        default:
            let code = PlainflowRelay.exitCode(for: error)
            if code == .validationFailure {
                self.init("usage", PlainflowRelay.message(for: error), exitCode: code.rawValue)
            } else {
                self.init("failed", "\(error)", exitCode: code.rawValue)
            }
        }
    }
}

/// `Error: …` on standard error, the one prefix every command uses.
func printError(_ message: String) {
    FileHandle.standardError.write(Data(("Error: " + message + "\n").utf8))
}

/// One JSON document on one line.
func printJSON(_ value: JSONValue) {
    print(String(decoding: value.encoded(), as: UTF8.self))
}

/// One JSON document on one line, keys sorted.
func printJSON<T: Encodable>(_ value: T) throws {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try e.encode(value), as: UTF8.self))
}

/// Left-aligned columns.
func printTable(_ header: [String], _ rows: [[String]]) {
    let all = [header] + rows
    let widths = header.indices.map { i in all.map { $0[i].count }.max() ?? 0 }
    for row in all {
        print(row.enumerated().map { i, c in i == row.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }.joined(separator: "  "))
    }
}

/// Unix milliseconds for tables: the time and how long ago.
func when(_ ms: Int64?) -> String {
    guard let ms else { return "-" }
    let date = Date(timeIntervalSince1970: Double(ms) / 1000)
    let agoMs = Int64(Date().timeIntervalSince1970 * 1000) - ms
    return "\(date.formatted(.iso8601)) (\(agoMs >= 0 ? duration(agoMs / 1000) + " ago" : "in " + duration((-agoMs + 999) / 1000)))"
}

/// Seconds for people: 42s, 3m 20s, 5h 2m, 3d 4h.
func duration(_ seconds: Int64) -> String {
    let s = max(0, seconds)
    switch s {
    case ..<60: return "\(s)s"
    case ..<3600: return "\(s / 60)m \(s % 60)s"
    case ..<86400: return "\(s / 3600)h \(s % 3600 / 60)m"
    default: return "\(s / 86400)d \(s % 86400 / 3600)h"
    }
}
