// Which configuration file a command reads, and whether the settings can be
// used on this machine (not only parsed): the spool's directory exists and
// this user may write there, the socket's directory exists. `check-config`
// prints every finding; `run` refuses to start on a problem, naming the
// path, before SQLite or the listeners would fail less clearly.

#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// One thing found about a configuration.
public struct ConfigFinding: Sendable, Equatable, Encodable {
    public enum Level: String, Sendable, Encodable {
        /// Usable as it is.
        case ok
        /// Worth knowing, not a problem (e.g. no file: the defaults).
        case note
        /// The relay cannot run like this.
        case problem
    }

    public var level: Level
    /// What it is about: "config", "spool", "listen.unix", "upstream", ...
    public var subject: String
    public var message: String

    public init(_ level: Level, _ subject: String, _ message: String) {
        self.level = level
        self.subject = subject
        self.message = message
    }
}

extension RelayConfig {
    /// The variable that names the configuration file for every command.
    public static let fileVariable = "PLAINFLOW_RELAY_CONFIG"

    /// The configuration a command uses: `--config FILE`, else
    /// `$PLAINFLOW_RELAY_CONFIG`, else `/etc/plainflow-relay/relay.toml` when it
    /// exists, else the defaults; then the `PLAINFLOW_RELAY_*` variables.
    /// A file named by the flag or the variable must exist.
    public static func locate(flag: String?, environment: [String: String]) throws(ConfigError) -> RelayConfig {
        var config: RelayConfig
        if let path = try filePath(flag: flag, environment: environment) {
            config = try load(path: path)
        } else {
            config = RelayConfig()
        }
        config.applyEnvironment(environment)
        return config
    }

    /// The file `locate` reads: the flag's, else the variable's (which must
    /// exist), else the default path when it exists; nil for none.
    private static func filePath(flag: String?, environment: [String: String]) throws(ConfigError) -> String? {
        if let path = flag ?? environment[fileVariable].flatMap({ $0.isEmpty ? nil : $0 }) {
            guard FileManager.default.fileExists(atPath: path) else {
                let how = flag != nil ? "--config" : fileVariable
                throw ConfigError("\(path): no such configuration file (named by \(how)); give an existing file, or leave it out to use \(defaultPath)")
            }
            return path
        }
        return FileManager.default.fileExists(atPath: defaultPath) ? defaultPath : nil
    }

    /// The `[listen]` section alone of the file `locate` reads, with the
    /// environment applied: how `status` finds a running relay when the
    /// whole file does not load (an edit in progress). Nil when there is no
    /// file or that section does not load either.
    public static func locateListeners(flag: String?, environment: [String: String]) -> RelayConfig? {
        guard let path = try? filePath(flag: flag, environment: environment) ?? nil,
              let text = try? readText(path) else { return nil }
        var inListen = false
        let listenOnly = text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> Substring in
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("[") { inListen = trimmed.hasPrefix("[listen]") }
            return inListen ? line : ""  // the other lines blank: line numbers stay the file's
        }.joined(separator: "\n")
        guard var config = try? parse(toml: listenOnly, path: path) else { return nil }
        config.applyEnvironment(environment)
        return config
    }

    /// Where the values came from, as `check-config` says it.
    public var sourceFinding: ConfigFinding {
        if let source { return ConfigFinding(.ok, "config", "read \(source.path)") }
        return ConfigFinding(.note, "config", "no configuration file: \(Self.defaultPath) does not exist, so the defaults are used (give a file with --config FILE or \(Self.fileVariable)=FILE)")
    }
}

extension ResolvedSettings {
    /// Whether these settings can be used here by this user: the spool's
    /// directory and file, the socket's directory, the listeners, the upstream
    /// and the proxy libcurl would take for it from `environment`.
    public func usabilityFindings(environment: [String: String] = ProcessInfo.processInfo.environment) -> [ConfigFinding] {
        var found: [ConfigFinding] = []
        let spoolPath = spool.path
        let spoolDir = Self.directory(of: spoolPath)
        if let problem = Self.writableDirectoryProblem(spoolDir) {
            found.append(ConfigFinding(.problem, "spool", "spool.path \(spoolPath): \(problem), or set spool.path (or --spool) to a file in a directory that exists"))
        } else if FileManager.default.fileExists(atPath: spoolPath) {
            if access(spoolPath, R_OK | W_OK) != 0 {
                found.append(ConfigFinding(.problem, "spool", "spool.path \(spoolPath): this user (uid \(getuid())) may not read and write it; run as its owner (the plainflow-relay user) or fix its mode"))
            } else {
                found.append(ConfigFinding(.ok, "spool", "\(spoolPath) exists and is writable (max \(ByteCount.format(spool.maxBytes)), on_full = \(spool.onFull.rawValue))"))
            }
        } else {
            found.append(ConfigFinding(.ok, "spool", "\(spoolPath) will be created at the first run (directory \(spoolDir) is writable; max \(ByteCount.format(spool.maxBytes)))"))
        }

        if let unix = ingest.unixPath {
            let dir = Self.directory(of: unix)
            if let problem = Self.writableDirectoryProblem(dir) {
                found.append(ConfigFinding(.problem, "listen.unix", "listen.unix \(unix): \(problem), or set listen.unix (\"off\" to disable the socket)"))
            } else if unix.utf8.count > 107 {
                found.append(ConfigFinding(.problem, "listen.unix", "listen.unix \(unix): \(unix.utf8.count) bytes, longer than a socket path may be (107); choose a shorter path"))
            } else {
                found.append(ConfigFinding(.ok, "listen.unix", "socket \(unix) (mode \(String(ingest.unixMode, radix: 8))\(ingest.unixGroup.map { ", group \($0)" } ?? ""))"))
            }
        } else {
            found.append(ConfigFinding(.note, "listen.unix", "no Unix socket (listen.unix = \"off\")"))
        }
        if let host = ingest.tcpHost {
            found.append(ConfigFinding(.ok, "listen.tcp", "HTTP on \(host.contains(":") ? "[\(host)]" : host):\(ingest.tcpPort)"))
        } else {
            found.append(ConfigFinding(.note, "listen.tcp", "no TCP listener (listen.tcp = \"off\")"))
        }
        let batches = "batches go to \(forward.batchURL) (write key \(forward.writeKey == nil ? "sent by each app" : "configured"))"
        if forward.transport.proxy != nil {
            found.append(ConfigFinding(.ok, "upstream", batches + ", through upstream.proxy"))
        } else if let (proxy, problem) = environmentProxy(environment) {
            if let problem {
                found.append(ConfigFinding(.problem, "upstream", problem))
            } else {
                found.append(ConfigFinding(.ok, "upstream", batches + ", through the proxy at \(proxy.endpoint) (from \(proxy.variable) in the environment)"))
            }
        } else {
            found.append(ConfigFinding(.ok, "upstream", batches))
        }
        return found
    }

    /// The proxy libcurl would take from `environment` for the upstream
    /// (none when `upstream.proxy` is set), and why libcurl could not use
    /// it (nil: it can). Checked at start, by `check-config` and at a reload.
    public func environmentProxy(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> (proxy: EnvironmentProxy, problem: String?)? {
        guard forward.transport.proxy == nil,
              let proxy = EnvironmentProxy.find(upstream: forward.upstream, environment: environment) else { return nil }
        let problem = proxy.problem.map {
            "\(proxy.variable) in the environment, the proxy libcurl would use for \(forward.upstream): \($0); correct or unset \(proxy.variable) (or set upstream.proxy, which takes its place)"
        }
        return (proxy, problem)
    }

    /// The directory part of `path` ("." for a bare file name).
    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// Why this user cannot create files in `dir`, or nil when it can.
    static func writableDirectoryProblem(_ dir: String) -> String? {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir) else {
            return "the directory \(dir) does not exist; create it (mkdir -p \(dir), owned by the user the relay runs as)"
        }
        guard isDir.boolValue else { return "\(dir) is not a directory" }
        guard access(dir, W_OK | X_OK) == 0 else {
            return "this user (uid \(getuid())) may not create files in \(dir); run as the user that owns it (the plainflow-relay user) or change its owner"
        }
        return nil
    }
}

/// Byte counts for people: 1.5 KiB, 20.0 MiB, 1.0 GiB.
public enum ByteCount {
    /// `bytes` in the largest binary unit that keeps it at 1 or more, to one decimal.
    public static func format(_ bytes: Int64) -> String {
        let units = ["KiB", "MiB", "GiB", "TiB"]
        guard bytes >= 1024 else { return "\(bytes) B" }
        var value = Double(bytes) / 1024
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return "\((value * 10).rounded() / 10) \(units[unit])"
    }
}
