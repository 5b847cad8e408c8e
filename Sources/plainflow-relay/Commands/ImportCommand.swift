// `plainflow-relay import`: historical calls from NDJSON or CSV files into
// the spool, with progress, resumable and idempotent (RelayImport does the
// work; this file is the operator's side: options, the spool file, Ctrl-C,
// the progress line and the summary).

import ArgumentParser
import Foundation
import RelayDaemon
import RelayImport
import RelaySpool
import Synchronization

struct Import: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Import historical calls (NDJSON or CSV) into the spool; the relay forwards them after live calls.",
        discussion: """
            NDJSON: one call per line, any type, the same rules as live calls. CSV: a header row; user_id, \
            anonymous_id, timestamp and message_id columns (or userId, …) are the call's fields, every other column \
            a trait (address.city nests). Every record needs a timestamp, unless --timestamp-now. A record without \
            a message_id gets one made from its content, so importing a file again sends nothing twice; a file \
            already imported (the same bytes) is skipped. Works with the relay running or stopped.

            Exit codes: 0 every file read (invalid records are listed, not fatal), 1 an error stopped the import, \
            75 the spool is full (resume later), 130 stopped by Ctrl-C (resume with --resume).
            """)

    @Argument(help: "Files to import; - reads standard input.") var files: [String]
    @Option(help: "ndjson or csv (default: from the file name; .csv is CSV).") var format: String?
    @Flag(help: "Validate only: report every invalid record, store nothing.") var check = false
    @Flag(help: "Continue an import of the same file that was stopped (Ctrl-C, a crash, a full spool).") var resume = false
    @Option(help: "Append the invalid records (file, line or row, every error) to this file, one JSON object a line.") var report: String?
    @Flag(name: .customLong("timestamp-now"), help: "Give records without a timestamp the import time instead of refusing them.") var timestampNow = false
    @Flag(name: .customLong("csv-strings"), help: "CSV: keep every trait a string (no numbers or booleans).") var csvStrings = false
    @Option(name: .customLong("progress-every"), help: "When standard error is not a terminal, print a progress line every this many seconds (default 5).") var progressEvery: Double = 5
    @OptionGroup var location: SpoolLocation

    func validate() throws {
        if progressEvery < 0 { throw ValidationError("--progress-every: expected seconds, 0 or more") }
        if let format, ImportFormat(rawValue: format) == nil { throw ValidationError("--format: expected ndjson or csv, got \"\(format)\"") }
        if files.filter({ $0 == "-" }).count > 1 { throw ValidationError("standard input (-) can be read only once") }
    }

    func run() async throws {
        let settings = try location.settings()
        var options = ImportOptions()
        options.format = format.flatMap(ImportFormat.init(rawValue:))
        options.checkOnly = check
        options.resume = resume
        options.timestampNow = timestampNow
        options.csvStrings = csvStrings
        options.limits = settings.ingest.limits
        options.maxLineBytes = settings.ingest.maxRequestBytes

        var spool: SpoolImporter?
        if !check {
            if settings.forward.writeKey == nil {
                throw ConfigError("import needs upstream.write_key (or write_key_file) in the configuration: imported calls are sent with the relay's own key")
            }
            let path = try location.path()
            let importer = try await openSpool(path: path, options: settings.spool)
            if importer.daemonIsRunning {
                // Beside a running relay: short transactions, and the relay's
                // threads first for the CPU (this thread and the ones it starts).
                options.recordsPerCommit = 250
                _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 10)
                FileHandle.standardError.write(Data("the relay is running: importing beside it at a low CPU priority, live calls first\n".utf8))
            }
            spool = importer
        }
        let reportFile = try report.map { path throws -> ImportReport in try ImportReport(path: path) }
        let view = ProgressView(plainEvery: progressEvery)
        Interrupt.install()
        let importer = Importer(options: options, spool: spool, report: reportFile,
                                shouldStop: { Interrupt.requested }, progress: { view.show($0) })
        var exitCode: Int32 = 0
        for file in files {
            let outcome: ImportOutcome
            do {
                outcome = try importer.importFile(file)
            } catch {
                view.clear()
                printError("import \(file): \(error)")
                exitCode = 1
                continue
            }
            view.clear()
            switch outcome {
            case .finished(let p):
                print(summary(p, verb: check ? "checked" : "imported"))
            case .alreadyImported(let run):
                print("\(file): already imported (\(run.records) records, \(run.stored) stored, finished \(when(run.finishedAtMillis))): nothing to do")
            case .stopped(let p):
                print(summary(p, verb: "stopped"))
                print("Everything up to record \(p.records) is in the spool. Continue with: plainflow-relay import --resume \(shellQuoted(file))")
                Foundation.exit(130)
            case .spoolFull(let p, let limit):
                print(summary(p, verb: "paused"))
                printError("the spool is full (max_bytes = \(limit)): the relay keeps the space for live calls. Once it has forwarded some, continue with: plainflow-relay import --resume \(shellQuoted(file))")
                Foundation.exit(75)
            }
        }
        if let reportFile, reportFile.written > 0 { print("invalid records listed in \(reportFile.path)") }
        if exitCode != 0 { throw ExitCode(exitCode) }
    }

    /// The spool at the current schema; creates or migrates it first when
    /// no daemon holds it (a running daemon has done that already).
    private func openSpool(path: String, options: SpoolOptions) async throws -> SpoolImporter {
        do {
            return try SpoolImporter(path: path, maxBytes: options.maxBytes, dedupeWindowMillis: options.dedupeWindowMillis)
        } catch {
            var older = false
            if case .olderSchema = error { older = true }
            guard older || !FileManager.default.fileExists(atPath: path) else { throw error }
            let spool = try Spool(options: options)  // creates or migrates; refuses while a daemon holds it
            await spool.close()
            return try SpoolImporter(path: path, maxBytes: options.maxBytes, dedupeWindowMillis: options.dedupeWindowMillis)
        }
    }

    private func summary(_ p: ImportProgress, verb: String) -> String {
        let rate = p.seconds > 0 ? Double(p.records - p.resumedFrom) / p.seconds : 0
        // Records: valid and invalid ones (an NDJSON file's blank lines are neither).
        var s = "\(p.path): \(verb) \(count(p.valid + p.invalid, "record"))"
        if p.resumedFrom > 0 { s += " (resumed after \(count(p.resumedFrom)) already read)" }
        s += ": \(count(p.valid)) valid"
        if !check { s += " (\(count(p.stored)) stored, \(count(p.duplicates)) already held)" }
        s += ", \(count(p.invalid)) invalid, in \(String(format: "%.1f", p.seconds)) s (\(count(Int64(rate))) records/s)"
        return s
    }
}

/// Ctrl-C asks the import to stop at the next slice boundary; a second one ends it at once.
enum Interrupt {
    private static let flag = Atomic<Bool>(false)
    static var requested: Bool { flag.load(ordering: .relaxed) }

    static func install() {
        signal(SIGINT) { _ in
            if Interrupt.flag.exchange(true, ordering: .relaxed) { _exit(130) }
        }
    }
}

/// The progress line: redrawn in place on a terminal (at most ten times a
/// second), a plain line every `plainEvery` seconds otherwise. On standard error.
final class ProgressView {
    private let tty = isatty(STDERR_FILENO) == 1
    private let plainEvery: Double
    /// The last line drawn; plain lines start one interval in (a short import prints none).
    private var last: Date
    private var drawn = false

    init(plainEvery: Double) {
        self.plainEvery = plainEvery
        last = tty ? .distantPast : Date()
    }

    func show(_ p: ImportProgress) {
        let now = Date()
        guard now.timeIntervalSince(last) >= (tty ? 0.1 : plainEvery) else { return }
        last = now
        let line = describe(p)
        if tty {
            FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8))
            drawn = true
        } else {
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
    }

    func clear() {
        if drawn { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        drawn = false
    }

    private func describe(_ p: ImportProgress) -> String {
        let fraction = p.bytesTotal.flatMap { $0 > 0 ? min(1, Double(p.bytesDone) / Double($0)) : nil }
        let percent = fraction.map { String(format: "%3.0f%%", $0 * 100) } ?? "    "
        if p.phase == .fingerprinting {
            return "\(p.path): checking whether it was imported before \(percent)"
        }
        let rate = p.seconds > 0 ? Double(p.records - p.resumedFrom) / p.seconds : 0
        var eta = ""
        if let fraction, fraction > 0, fraction < 1, p.seconds > 1 {
            let left = Int(p.seconds / fraction * (1 - fraction))
            eta = String(format: "  ETA %d:%02d", left / 60, left % 60)
        }
        let bar: String
        if tty, let fraction {
            let width = 24, full = Int(fraction * Double(width))
            bar = "[" + String(repeating: "#", count: full) + String(repeating: "-", count: width - full) + "] "
        } else {
            bar = ""
        }
        return "\(bar)\(percent)  \(count(p.valid + p.invalid)) read  \(count(p.valid)) valid  \(count(p.invalid)) invalid  \(count(Int64(rate)))/s\(eta)"
    }
}

/// (1, "request") → "1 request"; (1234, "request") → "1,234 requests".
func count(_ n: Int64, _ noun: String, plural: String? = nil) -> String {
    "\(count(n)) \(n == 1 ? noun : plural ?? noun + "s")"
}

/// 1234567 → "1,234,567".
func count(_ n: Int64) -> String {
    let digits = String(n.magnitude)
    var out = ""
    for (i, c) in digits.enumerated() {
        if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
        out.append(c)
    }
    return n < 0 ? "-" + out : out
}

func shellQuoted(_ s: String) -> String {
    s.allSatisfy { $0.isLetter || $0.isNumber || "-_./=:,".contains($0) } ? s : "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
}
