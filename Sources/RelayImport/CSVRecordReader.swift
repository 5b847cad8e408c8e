// CSVRecordReader: identify calls from a CSV file with a header row, parsed
// by CSV.swift (quoted fields, embedded newlines, a BOM, CRLF line ends) and
// mapped by CSVMapping. The file is streamed, never held whole; the bytes
// read so far (a little ahead of the last row) drive the progress.

import CSV
import Foundation
import RelayMessage

/// Reads CSV records.
public struct CSVRecordReader: ImportReader {
    private let reader: CSVReader
    private let mapping: CSVMapping
    private let counter: CountingInputStream
    private let path: String
    public private(set) var recordsRead: Int64 = 0
    public var bytesConsumed: Int64 { counter.bytesRead }

    /// Opens `path` ("-": standard input), reads and checks its header.
    public init(path: String, allStrings: Bool) throws(ImportError) {
        let inner: InputStream? = path == "-" ? InputStream(fileAtPath: "/dev/stdin") : InputStream(fileAtPath: path)
        guard let inner else { throw ImportError("cannot open \(path)") }
        counter = CountingInputStream(inner)
        self.path = path
        do {
            reader = try CSVReader(stream: counter, hasHeaderRow: true)
        } catch {
            throw ImportError("\(path): cannot read the CSV header row: \(Self.describe(error))")
        }
        mapping = try CSVMapping(header: reader.headerRow ?? [], allStrings: allStrings)
    }

    public mutating func next() throws(ImportError) -> ImportRecord? {
        guard let cells = reader.next() else {
            // CSV.swift asks a file stream for one more byte at its end and
            // reports `cannotReadFile` when none comes: that is the end. A
            // failed read of the file itself is `streamErrorHasOccurred`.
            if let error = reader.error, !Self.isEndOfInput(error) {
                throw ImportError("\(path): after row \(recordsRead + 1): \(Self.describe(error))")
            }
            return nil
        }
        recordsRead += 1
        let row = recordsRead + 1  // the header is row 1
        return ImportRecord(line: row, value: mapping.call(cells, row: row), duplicateKeys: [])
    }

    /// Skips `count` data rows (a resume), without mapping them.
    public mutating func skip(_ count: Int64) throws(ImportError) {
        while recordsRead < count {
            guard reader.next() != nil else {
                if let error = reader.error, !Self.isEndOfInput(error) { throw ImportError("\(path): \(Self.describe(error))") }
                throw ImportError("\(path) has \(recordsRead) rows, fewer than the \(count) already imported: the file changed")
            }
            recordsRead += 1
        }
    }

    static func isEndOfInput(_ error: any Error) -> Bool {
        if case CSVError.cannotReadFile = error { return true }
        return false
    }

    static func describe(_ error: any Error) -> String {
        switch error {
        case CSVError.cannotReadHeaderRow: return "the file is empty (no header row)"
        case CSVError.stringEncodingMismatch, CSVError.unicodeDecoding: return "the file is not UTF-8 (or UTF-16/32 with a BOM)"
        case CSVError.cannotOpenFile: return "cannot open it"
        case CSVError.cannotReadFile: return "cannot read it"
        default: return "\(error)"
        }
    }
}

/// An input stream that counts the bytes read through it.
final class CountingInputStream: InputStream {
    private let inner: InputStream
    private(set) var bytesRead: Int64 = 0

    init(_ inner: InputStream) {
        self.inner = inner
        super.init(data: Data())
    }

    override func open() { inner.open() }
    override func close() { inner.close() }
    override var streamStatus: Stream.Status { inner.streamStatus }
    override var streamError: (any Error)? { inner.streamError }
    override var hasBytesAvailable: Bool { inner.hasBytesAvailable }

    override func read(_ buffer: UnsafeMutablePointer<UInt8>, maxLength len: Int) -> Int {
        let n = inner.read(buffer, maxLength: len)
        if n > 0 { bytesRead += Int64(n) }
        return n
    }
}
