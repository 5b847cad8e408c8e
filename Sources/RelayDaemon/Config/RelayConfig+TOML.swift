// Reading relay.toml with TOMLKit. Unknown keys are errors (a typo must not
// silently fall back to a default), and every error names the key and line.

import Foundation
import TOMLKit

extension RelayConfig {
    /// Parses a TOML document; `path` is only used in messages.
    public static func parse(toml text: String, path: String) throws(ConfigError) -> RelayConfig {
        do {
            var config = try TOMLDecoder(strictDecoding: true).decode(RelayConfig.self, from: text)
            config.source = Source(path: path, text: text)
            return config
        } catch let e as TOMLParseError {
            // TOMLKit's text spans lines and repeats the position: one line, position first.
            let what = e.description.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
                .filter { !$0.isEmpty }.joined(separator: " ")
            throw ConfigError("\(path):\(e.source.begin.line):\(e.source.begin.column): TOML syntax error: \(what)")
        } catch let e as UnexpectedKeysError {
            let lines = e.keys.map { key, codingPath -> String in
                var full = codingPath.map(\.stringValue).filter { !$0.isEmpty }
                if full.last != key { full.append(key) }
                let dotted = full.joined(separator: ".")
                return "\(line(ofKey: dotted, in: text).map { "\(path):\($0)" } ?? path): unknown key \"\(dotted)\""
            }
            throw ConfigError(lines.sorted().joined(separator: "\n"))
        } catch let e as DecodingError {
            throw ConfigError(describe(e, text: text, path: path))
        } catch {
            throw ConfigError("\(path): \(error)")
        }
    }

    /// Reads and parses the file at `path`.
    public static func load(path: String) throws(ConfigError) -> RelayConfig {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigError("cannot read config file \(path): \((error as NSError).localizedDescription)")
        }
        return try parse(toml: text, path: path)
    }

    private static func describe(_ e: DecodingError, text: String, path: String) -> String {
        func keyPath(_ p: [any CodingKey]) -> String {
            var parts: [String] = []
            for k in p.map(\.stringValue) where k != parts.last { parts.append(k) }
            return parts.joined(separator: ".")
        }
        func at(_ key: String) -> String { line(ofKey: key, in: text).map { "\(path):\($0)" } ?? path }
        switch e {
        case .typeMismatch(let type, let ctx), .valueNotFound(let type, let ctx):
            let key = keyPath(ctx.codingPath)
            return "\(at(key)): \(key): expected \(expectedType(key) ?? typeName(type))\(found(key, in: text))"
        case .keyNotFound(let codingKey, let ctx):
            // TOMLKit reports a value of the wrong type as a missing key.
            let key = keyPath(ctx.codingPath + [codingKey])
            if line(ofKey: key, in: text) != nil {
                return "\(at(key)): \(key): expected \(expectedType(key) ?? "another type")\(found(key, in: text))"
            }
            return "\(path): \(key): required"
        case .dataCorrupted(let ctx):
            let key = keyPath(ctx.codingPath)
            return "\(at(key)): \(key): \(ctx.debugDescription)"
        @unknown default:
            return "\(path): \(e)"
        }
    }

    /// What the file's `section.key` must hold ("a string", ...), from the
    /// type of that field.
    static func expectedType(_ dottedKey: String) -> String? {
        let parts = dottedKey.split(separator: ".").map(String.init)
        let sections: [String: Any] = [
            "listen": Listen(), "upstream": Upstream(), "spool": SpoolSection(), "limits": Limits(), "log": Log(),
        ]
        let owner: Any
        switch parts.count {
        case 1: owner = RelayConfig()
        case 2: guard let section = sections[parts[0]] else { return nil }; owner = section
        default: return nil
        }
        guard let field = Mirror(reflecting: owner).children.first(where: { $0.label == parts.last }) else { return nil }
        switch type(of: field.value) {
        case is String?.Type: return "a string"
        case is Int?.Type, is Int64?.Type: return "an integer"
        case is TOMLNumber?.Type: return "a number"
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
