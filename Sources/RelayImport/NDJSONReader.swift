// NDJSONReader: one call per line, read in chunks of 1 MiB from a file
// descriptor (a file or standard input), never the whole file in memory.
//
// A line ends at `\n` (a `\r` before it is dropped); blank lines are skipped
// but counted, so line numbers match an editor's. A line longer than
// `maxLineBytes` is reported as one invalid record and skipped. The byte
// count after each record is exact: a resume seeks there.

#if canImport(Glibc)
import Glibc
#endif
import RelayMessage

/// Reads NDJSON records.
public struct NDJSONReader: ImportReader {
    private let fd: Int32
    private let path: String
    private let maxLineBytes: Int
    private let maxDepth: Int
    private var buffer: [UInt8] = []
    private var start = 0
    private var eof = false
    public private(set) var bytesConsumed: Int64
    public private(set) var recordsRead: Int64

    /// Reads from `fd` (owned by the caller), which is positioned at
    /// `offset`, the start of line `linesBefore + 1`.
    public init(fd: Int32, path: String, offset: Int64 = 0, linesBefore: Int64 = 0, maxLineBytes: Int, maxDepth: Int) {
        self.fd = fd
        self.path = path
        self.maxLineBytes = maxLineBytes
        self.maxDepth = maxDepth
        self.bytesConsumed = offset
        self.recordsRead = linesBefore
    }

    public mutating func next() throws(ImportError) -> ImportRecord? {
        while true {
            guard let line = try nextLine() else { return nil }
            let number = recordsRead
            switch line {
            case .tooLong(let bytes):
                return ImportRecord(line: number, value: .failure(ImportRecordError(["line is \(bytes) bytes; the limit is \(maxLineBytes)"])), duplicateKeys: [])
            case .bytes(let bytes):
                if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
                var duplicates: [DuplicateKey] = []
                do {
                    let value = try JSONValue.parse(bytes, maxDepth: maxDepth, duplicateKeys: &duplicates)
                    return ImportRecord(line: number, value: .success(value), duplicateKeys: duplicates)
                } catch {
                    return ImportRecord(line: number, value: .failure(ImportRecordError([error.description])), duplicateKeys: [])
                }
            }
        }
    }

    private enum Line { case bytes([UInt8]), tooLong(Int) }

    /// The next line without its end, or nil at the end of the input.
    private mutating func nextLine() throws(ImportError) -> Line? {
        var skipped = 0  // bytes of an over-long line dropped so far
        while true {
            if let nl = buffer[start...].firstIndex(of: 0x0A) {
                let length = nl - start
                let line = skipped > 0 || length > maxLineBytes ? nil : Array(buffer[start..<(length > 0 && buffer[nl - 1] == 0x0D ? nl - 1 : nl)])
                bytesConsumed += Int64(length + 1)
                recordsRead += 1
                start = nl + 1
                return line.map(Line.bytes) ?? .tooLong(skipped + length)
            }
            if eof {
                guard start < buffer.count else { return nil }
                let length = buffer.count - start
                let end = buffer.last == 0x0D ? buffer.count - 1 : buffer.count
                let line = skipped > 0 || length > maxLineBytes ? nil : Array(buffer[start..<end])
                bytesConsumed += Int64(length)
                recordsRead += 1
                start = buffer.count
                return line.map(Line.bytes) ?? .tooLong(skipped + length)
            }
            if buffer.count - start > maxLineBytes {  // drop what we have of an over-long line
                skipped += buffer.count - start
                bytesConsumed += Int64(buffer.count - start)
                buffer.removeAll(keepingCapacity: true)
                start = 0
            }
            try fill()
        }
    }

    private mutating func fill() throws(ImportError) {
        if start > 0 {
            buffer.removeFirst(start)
            start = 0
        }
        let chunk = 1 << 20
        let old = buffer.count
        buffer.append(contentsOf: repeatElement(0, count: chunk))
        var n: Int
        repeat {
            n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress! + old, chunk) }
        } while n < 0 && errno == EINTR
        if n < 0 {
            let reason = String(cString: strerror(errno))
            buffer.removeLast(chunk)
            throw ImportError("cannot read \(path): \(reason)")
        }
        buffer.removeLast(chunk - n)
        if n == 0 { eof = true }
    }
}
