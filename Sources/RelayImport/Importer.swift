// Importer: historical files into the spool (DESIGN §6, seed "Historical
// Import"), one file at a time.
//
// Owns: the order of things for one file: fingerprint it, find its run in
// the spool, read records (resuming where the run stopped), check each with
// the same message rules as a live call, and commit them in slices with the
// run's progress.
// Invariants:
// - A record's fate (stored, duplicate, invalid) and the run's progress
//   commit together, and the report lines of a slice are written only after
//   its commit: a crash or Ctrl-C anywhere loses nothing and repeats nothing.
// - Every record needs a `timestamp` (that is what makes it historical),
//   unless `timestampNow`.
// - A record without a message_id gets one derived from its content, so a
//   re-run dedupes; a finished file (same bytes) is never imported twice.
// - Records go in at bulk priority: live calls are always forwarded first.
// - Never more than one slice of records in memory.

import Foundation
import RelayMessage
import RelaySpool

/// How to import.
public struct ImportOptions: Sendable {
    /// The format; nil guesses from the file name.
    public var format: ImportFormat?
    /// Validate only: nothing is written to the spool.
    public var checkOnly = false
    /// Continue an interrupted run of the same file.
    public var resume = false
    /// Records without a timestamp get the import time instead of being refused.
    public var timestampNow = false
    /// CSV: keep every trait a string.
    public var csvStrings = false
    public var limits = MessageLimits()
    /// Longest NDJSON line.
    public var maxLineBytes = 500 * 1024
    /// Records per spool transaction.
    public var recordsPerCommit = 1_000

    public init() {}
}

/// Where an import of one file stands.
public struct ImportProgress: Sendable {
    public enum Phase: Sendable { case fingerprinting, importing }
    public var phase: Phase
    public var path: String
    public var bytesDone: Int64
    /// The file's size; nil for standard input.
    public var bytesTotal: Int64?
    public var records: Int64 = 0
    public var stored: Int64 = 0
    public var duplicates: Int64 = 0
    public var invalid: Int64 = 0
    /// Records already imported by an earlier run that this one resumed.
    public var resumedFrom: Int64 = 0
    public var seconds: Double = 0

    /// Records that passed the rules (stored now, or held already).
    public var valid: Int64 { stored + duplicates }
}

/// How an import of one file ended.
public enum ImportOutcome: Sendable {
    /// Every record was read.
    case finished(ImportProgress)
    /// Asked to stop: everything up to the last slice is committed.
    case stopped(ImportProgress)
    /// The spool reached max_bytes; the records from the last committed slice on wait for a resume.
    case spoolFull(ImportProgress, limitBytes: Int64)
    /// This file (same bytes) was imported before: nothing to do.
    case alreadyImported(ImportRun)
}

/// Imports files into one spool (or only checks them).
public final class Importer {
    private let options: ImportOptions
    private let spool: SpoolImporter?
    private let report: ImportReport?
    private let normalizer: MessageNormalizer
    private let shouldStop: () -> Bool
    private let onProgress: (ImportProgress) -> Void

    /// - Parameters:
    ///   - spool: where records go; nil with `checkOnly`.
    ///   - report: where invalid records are listed, if anywhere.
    ///   - shouldStop: polled between slices (Ctrl-C).
    ///   - progress: called after each slice.
    public init(options: ImportOptions, spool: SpoolImporter?, report: ImportReport?,
                shouldStop: @escaping () -> Bool = { false }, progress: @escaping (ImportProgress) -> Void = { _ in }) {
        self.options = options
        self.spool = options.checkOnly ? nil : spool
        self.report = report
        self.normalizer = MessageNormalizer(limits: options.limits)
        self.shouldStop = shouldStop
        self.onProgress = progress
    }

    /// Imports (or checks) one file; `-` is standard input.
    public func importFile(_ path: String) throws(ImportError) -> ImportOutcome {
        let format = options.format ?? ImportFormat.guess(path: path)
        let fd = path == "-" ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw ImportError("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { if fd != STDIN_FILENO { close(fd) } }
        var st = stat()
        let size: Int64? = fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG ? Int64(st.st_size) : nil
        let started = Date()
        var progress = ImportProgress(phase: .fingerprinting, path: path, bytesDone: 0, bytesTotal: size)

        // The run: which file this is (by content), and how far an earlier import got.
        var run: ImportRun?
        if let spool {
            if path == "-" {
                if options.resume { throw ImportError("--resume needs a file: standard input cannot be read again") }
            } else {
                let fingerprint = try DerivedMessageID.fingerprint(fd: fd, path: path) { done in
                    progress.bytesDone = done
                    progress.seconds = Date().timeIntervalSince(started)
                    onProgress(progress)
                }
                if lseek(fd, 0, SEEK_SET) < 0 { throw ImportError("cannot read \(path) again: \(String(cString: strerror(errno)))") }
                if let earlier = try spooled({ try spool.run(fingerprint: fingerprint) }) {
                    if earlier.finishedAtMillis != nil { return .alreadyImported(earlier) }
                    guard options.resume else {
                        throw ImportError("an import of \(path) stopped after \(earlier.records) records (started \(Self.date(earlier.startedAtMillis))); run the same command with --resume to continue from there")
                    }
                    run = earlier
                } else {
                    run = ImportRun(fingerprint: fingerprint, path: path, size: size ?? 0, startedAtMillis: Self.nowMillis())
                    try spooled { try spool.begin(run!) }
                }
                run!.path = path
            }
        }
        progress.phase = .importing
        progress.resumedFrom = run?.records ?? 0
        progress.stored = run?.stored ?? 0
        progress.duplicates = run?.duplicates ?? 0
        progress.invalid = run?.invalid ?? 0
        progress.records = run?.records ?? 0

        var reader: any ImportReader
        switch format {
        case .ndjson:
            let offset = run?.offset ?? 0
            if offset > 0, lseek(fd, off_t(offset), SEEK_SET) < 0 { throw ImportError("cannot seek in \(path): \(String(cString: strerror(errno)))") }
            reader = NDJSONReader(fd: fd, path: path, offset: offset, linesBefore: run?.records ?? 0,
                                  maxLineBytes: options.maxLineBytes, maxDepth: options.limits.maxDepth)
        case .csv:
            var csv = try CSVRecordReader(path: path, allStrings: options.csvStrings)
            try csv.skip(run?.records ?? 0)
            reader = csv
        }

        var slice: [SpoolAppend] = []
        var invalidLines: [(line: Int64, errors: [String])] = []
        slice.reserveCapacity(options.recordsPerCommit)
        var receivedAt = Date()
        while true {
            let record = try reader.next()
            if let record {
                switch check(record, format: format, receivedAt: receivedAt) {
                case .success(let append): slice.append(append)
                case .failure(let failure): invalidLines.append((record.line, failure.errors))
                }
            }
            let sliceFull = slice.count + invalidLines.count >= options.recordsPerCommit
            guard record == nil || sliceFull else { continue }

            // Commit the slice with the run's progress, then report it.
            var counted = run
            counted?.records = reader.recordsRead
            counted?.offset = reader.bytesConsumed
            counted?.invalid += Int64(invalidLines.count)
            var stored = Int64(slice.count), duplicates: Int64 = 0
            if let spool, counted != nil || !slice.isEmpty {
                do {
                    (stored, duplicates) = try spool.commit(slice, run: counted, atMillis: Self.nowMillis())
                } catch .full(let limit) {
                    progress.seconds = Date().timeIntervalSince(started)
                    return .spoolFull(progress, limitBytes: limit)
                } catch {
                    throw ImportError("the spool could not store the records: \(error)")
                }
                counted?.stored += stored
                counted?.duplicates += duplicates
                run = counted
            }
            for bad in invalidLines { report?.add(path: path, format: format, line: bad.line, errors: bad.errors) }
            progress.records = reader.recordsRead
            progress.bytesDone = reader.bytesConsumed
            progress.stored += stored
            progress.duplicates += duplicates
            progress.invalid += Int64(invalidLines.count)
            progress.seconds = Date().timeIntervalSince(started)
            slice.removeAll(keepingCapacity: true)
            invalidLines.removeAll(keepingCapacity: true)
            receivedAt = Date()
            onProgress(progress)
            if record == nil { break }
            if shouldStop() { return .stopped(progress) }
        }
        if let spool, let done = run { try spooled { try spool.finish(done, atMillis: Self.nowMillis()) } }
        return .finished(progress)
    }

    /// One record through the message rules, as a spool row at bulk priority.
    private func check(_ record: ImportRecord, format: ImportFormat, receivedAt: Date) -> Result<SpoolAppend, ImportRecordError> {
        let value: JSONValue
        switch record.value {
        case .failure(let e): return .failure(e)
        case .success(let v): value = v
        }
        guard let call = value.objectValue else {
            return .failure(ImportRecordError(["expected a JSON object (one call a line), got \(value.kindDescription)"]))
        }
        if !options.timestampNow && call["timestamp"] == nil {
            return .failure(ImportRecordError(["timestamp: required: a historical call needs the time it happened (ISO-8601); add --timestamp-now to use the import time"]))
        }
        let derived = call["messageId"] == nil && call["message_id"] == nil ? DerivedMessageID.make(for: value) : ""
        let context = NormalizeContext(receivedAt: receivedAt, makeMessageID: { derived })
        switch normalizer.normalize(value, endpointType: format == .csv ? .identify : nil, context: context, duplicateKeys: record.duplicateKeys) {
        case .failure(let rejection):
            return .failure(ImportRecordError(rejection.errors.map(\.description)))
        case .success(let m):
            return .success(SpoolAppend(messageID: m.messageID, priority: .bulk,
                                        receivedAtMillis: Int64((receivedAt.timeIntervalSince1970 * 1000).rounded()), payload: m.encoded))
        }
    }

    private func spooled<T>(_ body: () throws -> T) throws(ImportError) -> T {
        do { return try body() } catch { throw ImportError("spool: \(error)") }
    }

    static func nowMillis() -> Int64 { Spool.wallClockMillis() }

    static func date(_ millis: Int64) -> String {
        Date(timeIntervalSince1970: Double(millis) / 1000).formatted(.iso8601)
    }
}
