// ImportRecord: one record of a historical file, before the message rules.
//
// Readers (NDJSON, CSV) turn a file into records with their place in it;
// the Importer validates each with the same rules as a live call.

import RelayMessage

/// A record read from an import file.
public struct ImportRecord: Sendable {
    /// Where it is: the line (NDJSON) or the row counting the header (CSV).
    public let line: Int64
    /// The call it describes, or why it could not be read.
    public let value: Result<JSONValue, ImportRecordError>
    /// Keys the record repeats (each makes it invalid, as for a live call).
    public let duplicateKeys: [DuplicateKey]
}

/// Why a record could not be read as a call.
public struct ImportRecordError: Error, Sendable, Hashable {
    public let errors: [String]
    public init(_ errors: [String]) { self.errors = errors }
}

/// Reads records from one file, in order, and says how far it got.
public protocol ImportReader {
    /// The next record; nil at the end of the file.
    mutating func next() throws(ImportError) -> ImportRecord?
    /// Bytes of the file consumed by the records returned so far (for
    /// progress; a resumable reader also resumes from it).
    var bytesConsumed: Int64 { get }
    /// Records returned so far, counting blank lines where the format has them.
    var recordsRead: Int64 { get }
}

/// The file formats `import` reads.
public enum ImportFormat: String, Sendable, CaseIterable {
    case ndjson, csv

    /// The format a file name implies: `.csv` is CSV, anything else NDJSON.
    public static func guess(path: String) -> ImportFormat {
        path.lowercased().hasSuffix(".csv") ? .csv : .ndjson
    }
}

/// A failure that stops the import of a file (not one bad record).
public struct ImportError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
