// ImportReport: the invalid records of an import, one JSON object a line:
// {"errors":[...],"file":"users.csv","row":18} (CSV, counting the header)
// or {"errors":[...],"file":"calls.ndjson","line":7}. Appended to, so a
// resumed import adds to the same report.

#if canImport(Glibc)
import Glibc
#endif
import RelayMessage

/// Writes the report file.
public final class ImportReport {
    private let fd: Int32
    public let path: String
    public private(set) var written = 0

    /// Opens (creating, appending) `path`.
    public init(path: String) throws(ImportError) {
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        if fd < 0 { throw ImportError("cannot write the report \(path): \(String(cString: strerror(errno)))") }
        self.path = path
    }

    deinit { close(fd) }

    func add(path file: String, format: ImportFormat, line: Int64, errors: [String]) {
        var entry: JSONObject = ["errors": .array(errors.map { .string($0) }), "file": .string(file)]
        entry[format == .csv ? "row" : "line"] = .int(line)
        var bytes = JSONValue.object(entry).encoded()
        bytes.append(0x0A)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        written += 1
    }
}
