// CSVMapping: a CSV header row → where each column goes in an identify call.
//
// `user_id` / `anonymous_id` / `timestamp` / `message_id` (or their camelCase
// spellings) are the call's own fields; every other column is a trait, and a
// dotted header (`address.city`) nests it. Values are typed the way a person
// reading the file would: whole numbers, decimals and true/false become
// numbers and booleans, except in the id columns and when `allStrings` is
// set; an empty cell is left out. Checked once, at the header: a column
// named twice, or a name that is both a value and an object
// (`address`, `address.city`), is an error for the whole file.

import Foundation
import RelayMessage

/// Maps CSV rows to identify calls.
public struct CSVMapping: Sendable {
    enum Target: Sendable, Hashable {
        case field(String)
        case trait([String])
    }

    let targets: [Target]
    let allStrings: Bool

    static let fields: [String: String] = [
        "user_id": "userId", "userid": "userId",
        "anonymous_id": "anonymousId", "anonymousid": "anonymousId",
        "timestamp": "timestamp",
        "message_id": "messageId", "messageid": "messageId",
    ]

    /// Checks a header row and prepares the mapping.
    public init(header: [String], allStrings: Bool = false) throws(ImportError) {
        self.allStrings = allStrings
        var targets: [Target] = []
        var seen: [String: Int] = [:]
        var traitPaths: [[String]] = []
        for (i, raw) in header.enumerated() {
            let name = raw.trimmingCharacters(in: .whitespaces)
            if name.isEmpty { throw ImportError("CSV header: column \(i + 1) has no name") }
            if let first = seen[name] { throw ImportError("CSV header: column \"\(name)\" appears twice (columns \(first + 1) and \(i + 1))") }
            seen[name] = i
            if let field = Self.fields[name.lowercased()] {
                if targets.contains(.field(field)) { throw ImportError("CSV header: column \"\(name)\" repeats \(field) (columns \(targets.firstIndex(of: .field(field))! + 1) and \(i + 1))") }
                targets.append(.field(field))
            } else {
                let path = name.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
                if path.contains(where: \.isEmpty) { throw ImportError("CSV header: column \"\(name)\" has an empty part between dots") }
                for other in traitPaths where other.starts(with: path) || path.starts(with: other) {
                    throw ImportError("CSV header: \"\(name)\" and \"\(other.joined(separator: "."))\" would make traits.\(path.count < other.count ? name : other.joined(separator: ".")) both a value and an object")
                }
                traitPaths.append(path)
                targets.append(.trait(path))
            }
        }
        self.targets = targets
    }

    /// The identify call for one data row (`row` is its 1-based row in the file, for messages).
    public func call(_ cells: [String], row: Int64) -> Result<JSONValue, ImportRecordError> {
        if cells.count != targets.count {
            return .failure(ImportRecordError(["row has \(cells.count) cells; the header has \(targets.count) columns"]))
        }
        var call: JSONObject = ["type": .string("identify")]
        var traits = JSONObject()
        for (target, cell) in zip(targets, cells) where !cell.isEmpty {
            switch target {
            case .field(let name):
                call[name] = .string(cell)
            case .trait(let path):
                Self.set(&traits, path[...], allStrings ? .string(cell) : Self.typed(cell))
            }
        }
        if !traits.isEmpty { call["traits"] = .object(traits) }
        return .success(.object(call))
    }

    private static func set(_ obj: inout JSONObject, _ path: ArraySlice<String>, _ value: JSONValue) {
        guard let key = path.first else { return }
        if path.count == 1 {
            obj[key] = value
            return
        }
        var inner = obj[key]?.objectValue ?? JSONObject()
        set(&inner, path.dropFirst(), value)
        obj[key] = .object(inner)
    }

    /// A cell as a number or boolean when it plainly is one; else the string.
    /// Leading zeros (`02134`), a plus sign and digits past Int64 stay text.
    static func typed(_ cell: String) -> JSONValue {
        switch cell.lowercased() {
        case "true": return .bool(true)
        case "false": return .bool(false)
        default: break
        }
        let u = Array(cell.utf8)
        let digits = u.first == UInt8(ascii: "-") ? u.dropFirst() : u[...]
        guard let firstDigit = digits.first, (0x30...0x39).contains(firstDigit) else { return .string(cell) }
        let dot = digits.firstIndex(of: UInt8(ascii: "."))
        let intPart = dot.map { digits[..<$0] } ?? digits
        let frac = dot.map { digits[digits.index(after: $0)...] }
        guard !intPart.isEmpty, intPart.allSatisfy({ (0x30...0x39).contains($0) }),
              intPart.count == 1 || intPart.first != 0x30 else { return .string(cell) }
        if let frac {
            guard !frac.isEmpty, frac.allSatisfy({ (0x30...0x39).contains($0) }), let d = Double(cell), d.isFinite else { return .string(cell) }
            return .double(d)
        }
        return Int64(cell).map { .int($0) } ?? .string(cell)
    }
}
