// Reading relay.toml with TOMLKit. Unknown keys are errors (a typo must not
// silently fall back to a default), and every error names the key and line.

import Foundation
import TOMLKit

extension RelayConfig {
    /// Parses a TOML document; `path` is only used in messages.
    public static func parse(toml text: String, path: String) throws(ConfigError) -> RelayConfig {
        do {
            return try TOMLDecoder(strictDecoding: true).decode(RelayConfig.self, from: text)
        } catch let e as TOMLParseError {
            throw ConfigError("\(path): line \(e.source.begin.line), column \(e.source.begin.column): \(e.description)")
        } catch let e as UnexpectedKeysError {
            let lines = e.keys.map { key, codingPath -> String in
                var full = codingPath.map(\.stringValue).filter { !$0.isEmpty }
                if full.last != key { full.append(key) }
                let dotted = full.joined(separator: ".")
                return "\(path)\(lineSuffix(text, key: key)): unknown key \"\(dotted)\""
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
        switch e {
        case .typeMismatch(let type, let ctx), .valueNotFound(let type, let ctx):
            let key = ctx.codingPath.last?.stringValue ?? ""
            return "\(path)\(lineSuffix(text, key: key)): \(keyPath(ctx.codingPath)): expected \(typeName(type))"
        case .keyNotFound(let key, let ctx):
            // TOMLKit reports a value of the wrong type as a missing key.
            let line = lineSuffix(text, key: key.stringValue)
            if !line.isEmpty { return "\(path)\(line): \(keyPath(ctx.codingPath + [key])): has the wrong type" }
            return "\(path): \(keyPath(ctx.codingPath + [key])): required"
        case .dataCorrupted(let ctx):
            let key = ctx.codingPath.last?.stringValue ?? ""
            return "\(path)\(lineSuffix(text, key: key)): \(keyPath(ctx.codingPath)): \(ctx.debugDescription)"
        @unknown default:
            return "\(path): \(e)"
        }
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

    /// `:LINE` of the first `key =` in the file, or "".
    private static func lineSuffix(_ text: String, key: String) -> String {
        guard !key.isEmpty else { return "" }
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.drop(while: { $0 == " " || $0 == "\t" })
            if trimmed.hasPrefix(key), trimmed.dropFirst(key.count).drop(while: { $0 == " " || $0 == "\t" }).first == "=" {
                return ":\(i + 1)"
            }
            if trimmed.hasPrefix("[\(key)]") { return ":\(i + 1)" }
        }
        return ""
    }
}
