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
import Synchronization

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

        // Two stages on two threads: this one reads records and applies the
        // rules; a committer stores each slice with the run's progress, then
        // reports it. At most two slices wait between them.
        let committer = Committer(spool: spool, run: run, progress: progress, started: started, report: report,
                                  path: path, format: format, onProgress: onProgress)
        let channel = SliceChannel(capacity: 2)
        let finished = DispatchSemaphore(value: 0)
        nonisolated(unsafe) let unsafeCommitter = committer
        Thread.detachNewThread {
            while true {
                let slice = channel.take()
                if !unsafeCommitter.failed { unsafeCommitter.commit(slice) }
                if slice.last { break }
            }
            finished.signal()
        }

        var slice = Slice()
        slice.appends.reserveCapacity(options.recordsPerCommit)
        var receivedAt = Date()
        var stopped = false
        var readError: ImportError?
        while true {
            let record: ImportRecord?
            do { record = try reader.next() } catch { readError = error; record = nil }
            if let record {
                switch check(record, format: format, receivedAt: receivedAt) {
                case .success(let append): slice.appends.append(append)
                case .failure(let failure): slice.invalid.append((record.line, failure.errors))
                }
            }
            guard record == nil || slice.appends.count + slice.invalid.count >= options.recordsPerCommit else { continue }
            slice.records = reader.recordsRead
            slice.offset = reader.bytesConsumed
            stopped = record != nil && (shouldStop() || committer.failed)
            slice.last = record == nil || stopped
            channel.put(slice)
            if slice.last { break }
            slice = Slice()
            slice.appends.reserveCapacity(options.recordsPerCommit)
            receivedAt = Date()
        }
        finished.wait()

        if let full = committer.fullLimit { return .spoolFull(committer.progress, limitBytes: full) }
        if let error = committer.error { throw error }
        if let readError { throw readError }
        if stopped { return .stopped(committer.progress) }
        if let spool, let done = committer.run { try spooled { try spool.finish(done, atMillis: Self.nowMillis()) } }
        return .finished(committer.progress)
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

/// Records read and checked, waiting to be committed.
struct Slice {
    var appends: [SpoolAppend] = []
    var invalid: [(line: Int64, errors: [String])] = []
    /// The reader's position after the slice's last record.
    var records: Int64 = 0
    var offset: Int64 = 0
    /// Nothing follows (the end of the file, a stop, or a failure).
    var last = false
}

/// The second stage: commits slices in order, then reports them. Its state
/// is read by the first stage only after `finished` (or the racy `failed`
/// flag, which only ever goes from false to true).
final class Committer {
    let spool: SpoolImporter?
    private(set) var run: ImportRun?
    private(set) var progress: ImportProgress
    private let started: Date
    private let report: ImportReport?
    private let path: String
    private let format: ImportFormat
    private let onProgress: (ImportProgress) -> Void
    private(set) var fullLimit: Int64?
    private(set) var error: ImportError?
    private let failedFlag = Atomic<Bool>(false)
    var failed: Bool { failedFlag.load(ordering: .acquiring) }

    init(spool: SpoolImporter?, run: ImportRun?, progress: ImportProgress, started: Date, report: ImportReport?,
         path: String, format: ImportFormat, onProgress: @escaping (ImportProgress) -> Void) {
        self.spool = spool
        self.run = run
        self.progress = progress
        self.started = started
        self.report = report
        self.path = path
        self.format = format
        self.onProgress = onProgress
    }

    /// Stores the slice with the run's progress (one transaction), then
    /// writes its report lines: a crash between them repeats no line.
    func commit(_ slice: Slice) {
        var counted = run
        counted?.records = slice.records
        counted?.offset = slice.offset
        counted?.invalid += Int64(slice.invalid.count)
        var stored = Int64(slice.appends.count), duplicates: Int64 = 0
        if let spool, counted != nil || !slice.appends.isEmpty {
            do {
                (stored, duplicates) = try spool.commit(slice.appends, run: counted, atMillis: Importer.nowMillis())
            } catch {
                if case .full(let limit) = error { fullLimit = limit } else { self.error = ImportError("the spool could not store the records: \(error)") }
                progress.seconds = Date().timeIntervalSince(started)
                failedFlag.store(true, ordering: .releasing)
                return
            }
            counted?.stored += stored
            counted?.duplicates += duplicates
            run = counted
        }
        for bad in slice.invalid { report?.add(path: path, format: format, line: bad.line, errors: bad.errors) }
        progress.records = slice.records
        progress.bytesDone = slice.offset
        progress.stored += stored
        progress.duplicates += duplicates
        progress.invalid += Int64(slice.invalid.count)
        progress.seconds = Date().timeIntervalSince(started)
        onProgress(progress)
    }
}

/// A bounded hand-over of slices between the two stages.
final class SliceChannel: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [Slice] = []
    private let free: DispatchSemaphore
    private let ready = DispatchSemaphore(value: 0)

    init(capacity: Int) { free = DispatchSemaphore(value: capacity) }

    func put(_ slice: Slice) {
        free.wait()
        lock.withLock { items.append(slice) }
        ready.signal()
    }

    func take() -> Slice {
        ready.wait()
        let slice = lock.withLock { items.removeFirst() }
        free.signal()
        return slice
    }
}
