// Reading relay.toml with TOMLKit. Unknown keys are errors (a typo must not
// silently fall back to a default), and every error names the key and line.

import Foundation
import TOMLKit

extension RelayConfig {
    /// Parses a TOML document; `path` is only used in messages. Every key of
    /// the wrong type and every unknown key is reported at once, one a line
    /// in file order, so that one run of `check-config` lists all there is to fix.
    public static func parse(toml text: String, path: String) throws(ConfigError) -> RelayConfig {
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let e as TOMLParseError {
            // TOMLKit's text spans lines and repeats the position: one line, position first.
            let what = e.description.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
                .filter { !$0.isEmpty }.joined(separator: " ")
            throw ConfigError("\(path):\(e.source.begin.line):\(e.source.begin.column): TOML syntax error: \(what)\(quoteHint(line: e.source.begin.line, in: text))")
        } catch {
            throw ConfigError("\(path): \(error)")
        }
        // Decode; on an error, note it, take the key out and decode again (each
        // round removes a key, so this ends), until it decodes or an error names no key.
        var problems: [(line: Int, text: String)] = []
        var reported: [String] = []
        func note(_ key: String, _ message: String) {
            problems.append((line(ofKey: key, in: text) ?? 0, message))
            reported.append(key)
        }
        while true {
            do {
                var config = try TOMLDecoder(strictDecoding: true).decode(RelayConfig.self, from: table)
                config.source = Source(path: path, text: text)
                guard !problems.isEmpty else { return config }
                // The values the rest of the file sets are checked too, so that one run lists
                // everything (but not what only follows from the keys taken out).
                do { _ = try config.resolve() } catch {
                    for line in error.description.split(separator: "\n").map(String.init)
                    where !reported.contains(where: { !$0.isEmpty && line.contains($0) }) {
                        let number = line.hasPrefix(path + ":") ? Int(line.dropFirst(path.count + 1).prefix { $0.isNumber }) : nil
                        problems.append((number ?? 0, line))
                    }
                }
                break
            } catch let e as UnexpectedKeysError {
                for (key, codingPath) in e.keys {
                    var full = codingPath.map(\.stringValue).filter { !$0.isEmpty }
                    if full.last != key { full.append(key) }
                    let dotted = full.joined(separator: ".")
                    let hint = suggestion(for: full).map { #" (did you mean "\#($0)"?)"# } ?? ""
                    note(dotted, "\(line(ofKey: dotted, in: text).map { "\(path):\($0)" } ?? path): unknown key \"\(dotted)\"\(hint)")
                    remove(full, from: table)
                }
            } catch let e as DecodingError {
                let (key, message) = describe(e, text: text, path: path, present: { contains($0, in: table) })
                note(key.joined(separator: "."), message)
                if key.isEmpty || !remove(key, from: table) { break }
            } catch {
                problems.append((0, "\(path): \(error)"))
                break
            }
        }
        throw ConfigError(problems.sorted { $0.line < $1.line }.map(\.text).joined(separator: "\n"))
    }

    /// Whether `table` holds `key` (a path of table keys).
    private static func contains(_ key: [String], in table: TOMLTable) -> Bool {
        guard let first = key.first, table.contains(key: first) else { return false }
        guard key.count > 1 else { return true }
        return table[first]?.table.map { contains(Array(key.dropFirst()), in: $0) } ?? false
    }

    /// ` (a text value needs quotes: key = "value")` when line `n` of `text`
    /// sets a key to a bare word (`level = info`, `tcp = 127.0.0.1:8787`),
    /// the usual cause of the TOML parser's harder messages; "" otherwise.
    static func quoteHint(line n: Int, in text: String) -> String {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard n >= 1, n <= lines.count, let eq = lines[n - 1].firstIndex(of: "=") else { return "" }
        let key = lines[n - 1][..<eq].trimmingCharacters(in: .whitespaces)
        var value = lines[n - 1][lines[n - 1].index(after: eq)...].trimmingCharacters(in: .whitespaces)
        if let hash = value.firstIndex(of: "#") { value = value[..<hash].trimmingCharacters(in: .whitespaces) }
        guard let first = value.first, !"\"'[{".contains(first), !["true", "false", "inf", "nan"].contains(value),
              Double(value.replacingOccurrences(of: "_", with: "")) == nil else { return "" }
        return " (a text value needs quotes: \(key) = \"\(value)\")"
    }

    /// Takes `key` (a path of table keys) out of `table`: the deepest table
    /// it reaches, or the whole value where the path goes into an array.
    @discardableResult
    private static func remove(_ key: [String], from table: TOMLTable) -> Bool {
        guard let first = key.first, table.contains(key: first) else { return false }
        if key.count > 1, let inner = table[first]?.table, remove(Array(key.dropFirst()), from: inner) { return true }
        table.remove(at: first)
        return true
    }

    /// Reads and parses the file at `path`.
    public static func load(path: String) throws(ConfigError) -> RelayConfig {
        try parse(toml: readText(path), path: path)
    }

    /// The file's text; the error says why it cannot be read as the system
    /// does ("No such file or directory", "Permission denied", ...).
    static func readText(_ path: String) throws(ConfigError) -> String {
        func failure(_ why: String) -> ConfigError { ConfigError("cannot read config file \(path): \(why)") }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw failure(String(cString: strerror(errno))) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 { bytes += chunk[0..<n] } else if n == 0 { break } else if errno != EINTR { throw failure(String(cString: strerror(errno))) }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw failure("it is not UTF-8 text") }
        return text
    }

    /// The key an error is about (as a path) and what to tell the operator.
    private static func describe(_ e: DecodingError, text: String, path: String, present: ([String]) -> Bool) -> (key: [String], message: String) {
        // The file's key: TOMLKit repeats some, and goes on into arrays ("Index 0"): the array is the key.
        func keyPath(_ p: [any CodingKey]) -> [String] {
            var parts: [String] = []
            for k in p where k.stringValue != parts.last {
                if k.intValue != nil || k.stringValue.hasPrefix("Index ") { break }
                parts.append(k.stringValue)
            }
            return parts
        }
        func at(_ key: String) -> String { line(ofKey: key, in: text).map { "\(path):\($0)" } ?? path }
        switch e {
        case .typeMismatch(let type, let ctx), .valueNotFound(let type, let ctx):
            let parts = keyPath(ctx.codingPath), key = parts.joined(separator: ".")
            return (parts, "\(at(key)): \(key): expected \(expectedType(key) ?? typeName(type))\(found(key, in: text))")
        case .keyNotFound(let codingKey, let ctx):
            // TOMLKit reports a value of the wrong type as a missing key.
            let parts = keyPath(ctx.codingPath + [codingKey]), key = parts.joined(separator: ".")
            if line(ofKey: key, in: text) != nil || present(parts) {  // (a dotted key or an inline table has no line of its own here)
                return (parts, "\(at(key)): \(key): expected \(expectedType(key) ?? "another type")\(found(key, in: text))")
            }
            return ([], "\(path): \(key): required")
        case .dataCorrupted(let ctx):
            let parts = keyPath(ctx.codingPath), key = parts.joined(separator: ".")
            return (parts, "\(at(key)): \(key): \(ctx.debugDescription)")
        @unknown default:
            return ([], "\(path): \(e)")
        }
    }

    /// The file's sections, by name.
    private static let sections: [String: any Sendable] = [
        "listen": Listen(), "upstream": Upstream(), "spool": SpoolSection(), "limits": Limits(), "log": Log(),
    ]

    /// The fields of the file's top level (`section` nil) or of one of its sections.
    private static func fields(of section: String?) -> Mirror.Children? {
        guard let section else { return Mirror(reflecting: RelayConfig()).children }
        return sections[section].map { Mirror(reflecting: $0).children }
    }

    /// The known key an unknown one was most likely meant to be: the same
    /// name in another section, else the one key of its section at most two
    /// letters off or with the same words in another order, and never one
    /// that counts in other units (`max_age_days` is not `max_age_hours`).
    static func suggestion(for key: [String]) -> String? {
        guard key.count == 1 || key.count == 2, let name = key.last else { return nil }
        if key.count == 2 {
            let elsewhere = sections.keys.sorted().filter { section in
                section != key[0] && (fields(of: section)?.contains { $0.label == name } ?? false)
            }
            if elsewhere.count == 1 { return "\(elsewhere[0]).\(name)" }
        }
        guard let known = fields(of: key.count == 2 ? key[0] : nil) else { return nil }
        let units = ["ms", "second", "minute", "hour", "day", "byte", "mb", "kb", "gb"]
        func unit(_ s: String) -> String? {  // the last word when it is a unit, singular
            guard var last = s.split(separator: "_").last.map(String.init) else { return nil }
            if last != "ms" && last.hasSuffix("s") { last.removeLast() }
            return units.contains(last) ? last : nil
        }
        let words = Set(name.split(separator: "_"))
        let close = known.compactMap(\.label).filter { $0 != "source" && unit($0) == unit(name) }.filter { candidate in
            let shared = words.intersection(candidate.split(separator: "_")).count
            return (shared >= 2 && abs(words.count - shared) <= 1) || editDistance(Array(name.utf8), Array(candidate.utf8)) <= 2
        }
        guard close.count == 1 else { return nil }  // none, or several as likely: no guess
        return (key.dropLast() + [close[0]]).joined(separator: ".")
    }

    private static func editDistance(_ a: [UInt8], _ b: [UInt8]) -> Int {
        guard !a.isEmpty, !b.isEmpty else { return max(a.count, b.count) }
        var row = Array(0...b.count)
        for i in 1...a.count {
            var diagonal = row[0]
            row[0] = i
            for j in 1...b.count {
                let above = row[j]
                row[j] = min(above + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1))
                diagonal = above
            }
        }
        return row[b.count]
    }

    /// What the file's `section.key` must hold ("a string", ...), from the
    /// type of that field.
    static func expectedType(_ dottedKey: String) -> String? {
        let parts = dottedKey.split(separator: ".").map(String.init)
        guard parts.count == 1 || parts.count == 2, let known = fields(of: parts.count == 2 ? parts[0] : nil) else { return nil }
        guard let field = known.first(where: { $0.label == parts.last }) else { return nil }
        switch type(of: field.value) {
        case is String?.Type: return "a string"
        case is Int?.Type, is Int64?.Type: return "an integer"
        case is TOMLNumber?.Type: return "a number"
        case is ByteSize?.Type: return ByteSize.expected
        case is Bool?.Type: return "true or false"
        case is [String]?.Type: return "an array of strings"
        default: return "a table"
        }
    }

    /// ", found an integer (8787)": what the file holds at `dottedKey`, or "".
    static func found(_ dottedKey: String, in text: String) -> String {
        guard let n = line(ofKey: dottedKey, in: text) else { return "" }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard let eq = lines[n - 1].firstIndex(of: "=") else { return "" }
        var value = lines[n - 1][lines[n - 1].index(after: eq)...].trimmingCharacters(in: .whitespaces)
        // Without a trailing comment: after a string's closing quote, or from `#`.
        if let quote = value.first, quote == "\"" || quote == "'" {
            if let end = value.dropFirst().firstIndex(of: quote) { value = String(value[...end]) }
        } else if let hash = value.firstIndex(of: "#") {
            value = value[..<hash].trimmingCharacters(in: .whitespaces)
        }
        let kind: String
        switch value.first {
        case "\"", "'": kind = "a string"
        case "[": kind = "an array"
        case "{": kind = "a table"
        case "t", "f": kind = "true or false"
        default: kind = value.contains(where: { ".eE".contains($0) }) ? "a decimal number" : (value.contains { "-:".contains($0) } && value.count > 8 ? "a date" : "an integer")
        }
        return ", found \(kind) (\(value.prefix(40)))"
    }

    private static func typeName(_ t: Any.Type) -> String {
        switch t {
        case is String.Type: return "a string"
        case is Int.Type, is Int64.Type: return "an integer"
        case is Double.Type: return "a number"
        case is Bool.Type: return "true or false"
        case is [String].Type: return "an array of strings"
        default: return "a table"
        }
    }

    /// The line of `section.key =` (or of `[section]` for a bare section
    /// name) in `text`, 1-based; nil when the file does not set it.
    static func line(ofKey dottedKey: String, in text: String) -> Int? {
        guard !dottedKey.isEmpty else { return nil }
        let parts = dottedKey.split(separator: ".").map(String.init)
        let section = parts.count == 1 ? parts[0] : parts.dropLast().joined(separator: ".")
        let key: String? = parts.count == 1 ? nil : parts.last
        var current = ""
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("[") {
                current = line.dropFirst().prefix { $0 != "]" }.trimmingCharacters(in: .whitespaces)
                if key == nil && current == section { return i + 1 }
                continue
            }
            guard let key, current == section, line.hasPrefix(key) else { continue }
            if line.dropFirst(key.count).drop(while: { $0 == " " || $0 == "\t" }).first == "=" { return i + 1 }
        }
        return nil
    }
}
