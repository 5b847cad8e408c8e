// Historical import over a real spool file: what is stored, what is
// reported, and that re-runs, resumes and a full spool lose nothing and
// queue nothing twice.

import Foundation
import Testing
@testable import RelayImport
import RelayMessage
import RelaySpool

/// A spool file made by the relay, and an importer on it.
final class ImportFixture {
    let dir: String
    var spoolPath: String { dir + "/spool.db" }

    init() async throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("import-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let spool = try Spool(options: SpoolOptions(path: spoolPath))
        await spool.close()
    }

    deinit { try? FileManager.default.removeItem(atPath: dir) }

    static func fixture(_ name: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/\(name)").path
    }

    func write(_ name: String, _ text: String) throws -> String {
        let path = dir + "/" + name
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func importer(_ change: (inout ImportOptions) -> Void = { _ in }, maxBytes: Int64 = 1 << 30, report: ImportReport? = nil,
                  stopAfterSlices: Int? = nil) throws -> Importer {
        var options = ImportOptions()
        change(&options)
        var slices = 0
        return Importer(options: options, spool: try SpoolImporter(path: spoolPath, maxBytes: maxBytes), report: report,
                        shouldStop: { slices += 1; return stopAfterSlices.map { slices >= $0 } ?? false })
    }

    /// Every queued payload, oldest first, as JSON objects.
    func queued() async throws -> [[String: Any]] {
        let spool = try Spool(options: SpoolOptions(path: spoolPath))
        let batch = try spool.makeReader().leaseBatch(nowMillis: .max / 2, maxCount: 100_000, maxBytes: 1 << 30)
        await spool.close()
        return batch.map { (try? JSONSerialization.jsonObject(with: Data($0.payload))) as? [String: Any] ?? [:] }
    }

    func reportLines(_ path: String) throws -> [[String: Any]] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
    }
}

@Suite struct ImporterTests {
    func finished(_ outcome: ImportOutcome) throws -> ImportProgress {
        guard case .finished(let p) = outcome else { throw ImportError("expected finished, got \(outcome)") }
        return p
    }

    @Test func csvRowsBecomeIdentifyCallsWithTypedNestedTraitsAndBadRowsAreReported() async throws {
        let f = try await ImportFixture()
        let reportPath = f.dir + "/report.ndjson"
        let p = try finished(try f.importer(report: try ImportReport(path: reportPath)).importFile(ImportFixture.fixture("users.csv")))
        #expect((p.records, p.stored, p.invalid) == (6, 3, 3))

        let calls = try await f.queued()
        #expect(calls.map { $0["user_id"] as? String } == ["u1", "u2", "u3"])
        let u1 = calls[0], traits = u1["traits"] as? [String: Any] ?? [:]
        #expect(u1["type"] as? String == "identify" && u1["timestamp"] as? String == "2024-03-01T00:00:00Z")
        #expect(traits["logins"] as? Int == 5 && traits["score"] as? Double == 4.5 && traits["vip"] as? Bool == true)
        #expect(traits["note"] as? String == #"said "hi", then left"#, "quotes inside a quoted field")
        #expect((traits["address"] as? [String: Any])?["city"] as? String == "Paris")
        #expect((traits["address"] as? [String: Any])?["zip"] as? String == "02134", "a leading zero stays text")
        let t2 = calls[1]["traits"] as? [String: Any] ?? [:]
        #expect(t2["note"] as? String == "two\r\nlines" && t2["score"] == nil, "an embedded newline kept, an empty cell left out")
        let t3 = calls[2]["traits"] as? [String: Any] ?? [:]
        #expect(t3["logins"] as? String == "x" && t3["vip"] as? String == "maybe" && t3["score"] as? String == "1e5")

        let report = try f.reportLines(reportPath)
        #expect(report.map { $0["row"] as? Int } == [5, 6, 7], "rows counted from the header, a two-line field is one row")
        #expect((report[0]["errors"] as? [String])?.first?.hasPrefix("timestamp") == true)
        #expect((report[2]["errors"] as? [String]) == ["row has 3 cells; the header has 9 columns"])
        #expect(report.allSatisfy { ($0["file"] as? String)?.hasSuffix("users.csv") == true })
    }

    @Test func ndjsonLinesFollowTheLiveRulesAndEveryBadLineIsReported() async throws {
        let f = try await ImportFixture()
        let reportPath = f.dir + "/report.ndjson"
        let p = try finished(try f.importer(report: try ImportReport(path: reportPath)).importFile(ImportFixture.fixture("calls.ndjson")))
        #expect((p.records, p.stored, p.invalid) == (8, 3, 4), "the blank line counts as a line, not a record")
        let calls = try await f.queued()
        #expect(calls.map { $0["type"] as? String } == ["identify", "track", "page"])
        #expect(calls.allSatisfy { ($0["message_id"] as? String)?.count == 36 }, "ids made from the content, UUID-shaped")
        // What the import queued counts in the spool's totals, as the daemon reads them.
        let spool = try Spool(options: SpoolOptions(path: f.spoolPath))
        let held = try spool.makeReader().leaseBatch(nowMillis: .max / 2, maxCount: 100, maxBytes: 1 << 30)
        #expect(spool.stats.depth == 3 && held.count == 3)
        #expect(spool.stats.bytes == held.reduce(Int64(0)) { $0 + Int64($1.payload.count) })
        await spool.close()
        let report = try f.reportLines(reportPath)
        #expect(report.map { $0["line"] as? Int } == [4, 5, 6, 7])
        #expect((report[1]["errors"] as? [String])?.contains { $0.contains("email") } == true, "a repeated key names its path")
    }

    @Test func theSameFileTwiceIsSkippedAndItsRecordsInAnotherFileAreNotQueuedAgain() async throws {
        let f = try await ImportFixture()
        let file = ImportFixture.fixture("calls.ndjson")
        _ = try f.importer().importFile(file)
        guard case .alreadyImported(let run) = try f.importer().importFile(file) else { Issue.record("imported twice"); return }
        #expect(run.stored == 3)
        let copy = try f.write("more.ndjson", try String(contentsOfFile: file, encoding: .utf8)
                               + #"{"type":"identify","userId":"n9","timestamp":"2024-01-02T03:04:10Z"}"# + "\n")
        let p = try finished(try f.importer().importFile(copy))
        #expect((p.stored, p.duplicates) == (1, 3), "same records, same derived ids: held already")
        #expect(try await f.queued().count == 4)
    }

    @Test func aStoppedImportResumesExactlyWhereItsLastSliceCommitted() async throws {
        let f = try await ImportFixture()
        let lines = (0..<25).map { #"{"type":"identify","userId":"r\#($0)","timestamp":"2024-01-02T03:04:05Z"}"# }
        let file = try f.write("r.ndjson", lines.joined(separator: "\n") + "\n")
        guard case .stopped(let first) = try f.importer({ $0.recordsPerCommit = 10 }, stopAfterSlices: 1).importFile(file) else {
            Issue.record("did not stop"); return
        }
        #expect(first.records == 10)
        #expect(throws: ImportError.self, "without --resume an unfinished run is not started over") { try f.importer().importFile(file) }
        let rest = try finished(try f.importer({ $0.resume = true; $0.recordsPerCommit = 10 }).importFile(file))
        #expect((rest.resumedFrom, rest.records, rest.stored, rest.duplicates) == (10, 25, 25, 0))
        #expect(try await f.queued().map { $0["user_id"] as? String } == (0..<25).map { "r\($0)" })
    }

    @Test func aFullSpoolPausesTheImportAndAResumeFinishesIt() async throws {
        let f = try await ImportFixture()
        let lines = (0..<40).map { #"{"type":"identify","userId":"f\#($0)","timestamp":"2024-01-02T03:04:05Z"}"# }
        let file = try f.write("f.ndjson", lines.joined(separator: "\n"))
        guard case .spoolFull(let p, _) = try f.importer({ $0.recordsPerCommit = 10 }, maxBytes: 6_000).importFile(file) else {
            Issue.record("not stopped by max_bytes"); return
        }
        #expect(p.stored > 0 && p.stored < 40 && p.stored % 10 == 0, "whole slices only: \(p.stored)")
        let rest = try finished(try f.importer({ $0.resume = true }).importFile(file))
        #expect(rest.stored == 40)
        #expect(Set(try await f.queued().compactMap { $0["user_id"] as? String }).count == 40)
    }

    @Test func checkOnlyStoresNothingAndTimestampNowAcceptsUndatedRecords() async throws {
        let f = try await ImportFixture()
        let file = try f.write("u.ndjson", #"{"type":"identify","userId":"t1"}"# + "\n")
        let checked = try finished(try f.importer { $0.checkOnly = true }.importFile(file))
        #expect((checked.invalid, checked.stored) == (1, 0))
        let p = try finished(try f.importer { $0.timestampNow = true }.importFile(file))
        #expect(p.stored == 1)
        let call = try await f.queued()[0]
        #expect(call["timestamp"] as? String == call["received_at"] as? String)
    }

    @Test func aLineOverTheLimitIsOneInvalidRecordAndTheNextLineIsRead() async throws {
        let f = try await ImportFixture()
        let long = #"{"type":"identify","userId":"big","timestamp":"2024-01-02T03:04:05Z","traits":{"pad":""# + String(repeating: "x", count: 3_000_000) + "\"}}"
        let file = try f.write("l.ndjson", long + "\n" + #"{"type":"identify","userId":"ok","timestamp":"2024-01-02T03:04:05Z"}"# + "\n")
        let p = try finished(try f.importer().importFile(file))
        #expect((p.records, p.invalid, p.stored) == (2, 1, 1))
    }
}

@Suite struct CSVMappingTests {
    @Test func aHeaderThatCannotMapIsRefusedForTheWholeFile() {
        #expect(throws: ImportError.self) { try CSVMapping(header: ["user_id", "email", "email"]) }
        #expect(throws: ImportError.self) { try CSVMapping(header: ["user_id", "address", "address.city"]) }
        #expect(throws: ImportError.self) { try CSVMapping(header: ["user_id", "userId"]) }
        #expect(throws: ImportError.self) { try CSVMapping(header: ["user_id", "a..b"]) }
    }

    @Test func valuesAreTypedAsAPersonWouldReadThemUnlessAllStrings() throws {
        #expect(CSVMapping.typed("42") == .int(42) && CSVMapping.typed("-3") == .int(-3) && CSVMapping.typed("2.50") == .double(2.5))
        #expect(CSVMapping.typed("007") == .string("007") && CSVMapping.typed("+44") == .string("+44"))
        #expect(CSVMapping.typed("99999999999999999999") == .string("99999999999999999999"))
        #expect(CSVMapping.typed("True") == .bool(true) && CSVMapping.typed("1.") == .string("1."))
        let m = try CSVMapping(header: ["userId", "n"], allStrings: true)
        guard case .success(.object(let call)) = m.call(["u", "5"], row: 2) else { Issue.record("not mapped"); return }
        #expect(call["traits"]?.objectValue?["n"] == .string("5"))
    }
}
