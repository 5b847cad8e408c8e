// RelayConfig: the relay's settings, as read from relay.toml, the
// environment and the command line (in that order; later wins).
//
// Every field is optional in the file; what is absent keeps its default.
// Errors name the key and, where the file has it, its line. A relative path
// in the file (spool, socket, key file, CA file) is relative to the file's
// directory; one from the environment or a flag, to the working directory.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import RelayForward
import RelayIngest
import RelayMessage
import RelaySpool

/// The whole configuration, in the file's sections.
public struct RelayConfig: Sendable, Codable, Equatable {
    public struct Listen: Sendable, Codable, Equatable {
        public init() {}
        /// `host:port`, or "off".
        public var tcp: String?
        /// Socket path, or "off".
        public var unix: String?
        /// Octal mode of the socket file, e.g. "0660".
        public var unix_mode: String?
        public var unix_group: String?
        public var allow_remote: Bool?
        public var line_protocol_on_tcp: Bool?
        public var max_connections: Int?
        public var idle_timeout_seconds: Int?
        /// Longest a client may take to send one HTTP request (headers and body).
        public var request_timeout_seconds: Int?
    }

    public struct Upstream: Sendable, Codable, Equatable {
        public init() {}
        public var url: String?
        public var write_key: String?
        /// A file holding the write key (mode 0640, root:plainflow-relay):
        /// the production way, since the config and the command line are readable.
        public var write_key_file: String?
        public var batch_max_messages: Int?
        public var batch_max_bytes: ByteSize?
        public var flush_interval_ms: Int?
        public var max_requests_per_second: TOMLNumber?
        public var connect_timeout_ms: Int?
        public var timeout_ms: Int?
        public var ca_file: String?
        public var proxy: String?
        public var max_age_hours: TOMLNumber?
        /// Backoff after a failed request: full jitter from 0 up to
        /// retry_base_ms * 2^(failures-1), at most retry_cap_ms.
        public var retry_base_ms: Int?
        public var retry_cap_ms: Int?
        /// Compress request bodies with gzip.
        public var gzip: Bool?
        /// Most requests in flight at once.
        public var max_in_flight: Int?
    }

    public struct SpoolSection: Sendable, Codable, Equatable {
        public init() {}
        public var path: String?
        public var max_bytes: ByteSize?
        /// "reject" or "drop_oldest".
        public var on_full: String?
        /// "full" or "normal".
        public var synchronous: String?
        public var commit_window_us: Int?
    }

    public struct Limits: Sendable, Codable, Equatable {
        public init() {}
        public var max_message_bytes: ByteSize?
        public var max_request_bytes: ByteSize?
        public var max_batch_messages: Int?
        public var max_depth: Int?
        /// When set, apps must send one of these keys.
        public var accepted_write_keys: [String]?
    }

    public struct Log: Sendable, Codable, Equatable {
        public init() {}
        /// trace, debug, info, notice, warning, error, critical.
        public var level: String?
    }

    public var listen: Listen?
    public var upstream: Upstream?
    public var spool: SpoolSection?
    public var limits: Limits?
    public var log: Log?

    /// Where the values came from, so that errors can name the file and line.
    public struct Source: Sendable, Equatable {
        /// The file that was read.
        public var path: String
        /// Its text, to find a key's line.
        public var text: String
        /// Dotted keys set afterwards by the environment or a flag: their
        /// values are not the file's, so errors about them name no line.
        public var overridden: Set<String> = []

        public init(path: String, text: String) {
            self.path = path
            self.text = text
        }
    }

    /// The file these values were read from; nil for the defaults.
    public var source: Source?

    enum CodingKeys: String, CodingKey {
        case listen, upstream, spool, limits, log
    }

    public init() {}

    /// Notes that `key` (dotted, e.g. `spool.path`) no longer holds the file's value.
    public mutating func markOverridden(_ key: String) {
        source?.overridden.insert(key)
    }
}

/// A size in bytes, written as an integer (`1073741824`) or as a string with
/// a unit (`"1GiB"`, `"500 KB"`): B, KB, MB, GB, TB count in 1000s, KiB, MiB,
/// GiB, TiB in 1024s, any case; a decimal number (`"1.5GiB"`) is rounded down.
public struct ByteSize: Sendable, Codable, Equatable {
    public let bytes: Int64

    /// What the file may hold, for messages.
    static let expected = #"a size: bytes as an integer, or a string such as "1GiB" or "500KB" (B, KB, MB, GB, TB count in 1000s; KiB, MiB, GiB, TiB in 1024s)"#

    private static let units: [String: Int64] = [
        "": 1, "b": 1, "kb": 1_000, "mb": 1_000_000, "gb": 1_000_000_000, "tb": 1_000_000_000_000,
        "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
    ]

    /// `text` as a size, or nil when it is not one. Integer arithmetic, so
    /// that `"2.01KB"` is 2010 bytes, not one short; fraction digits past
    /// the sixth are dropped (it rounds down anyway).
    public init?(parsing text: String) {
        let t = text.trimmingCharacters(in: .whitespaces)
        let number = t.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
        let unit = t.dropFirst(number.count).trimmingCharacters(in: .whitespaces).lowercased()
        let parts = number.split(separator: ".", omittingEmptySubsequences: false)
        guard let scale = Self.units[unit], parts.count <= 2, parts.allSatisfy({ !$0.isEmpty }),
              let whole = Int64(parts[0]) else { return nil }
        let fraction = parts.count == 2 ? String(parts[1].prefix(6)) : ""
        var fractionPart: Int64 = 0
        if !fraction.isEmpty {
            guard let digits = Int64(fraction) else { return nil }
            var tenth: Int64 = 1
            for _ in fraction { tenth *= 10 }
            fractionPart = digits * scale / tenth  // < 10^6 * 2^40: no overflow
        }
        let (scaled, overflow) = whole.multipliedReportingOverflow(by: scale)
        let (total, overflow2) = scaled.addingReportingOverflow(fractionPart)
        guard !overflow, !overflow2 else { return nil }
        bytes = total
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let n = try? c.decode(Int64.self) { bytes = n; return }
        guard let text = try? c.decode(String.self) else {
            throw DecodingError.typeMismatch(ByteSize.self, .init(codingPath: c.codingPath, debugDescription: Self.expected))
        }
        guard let size = ByteSize(parsing: text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath, debugDescription: "expected \(Self.expected), got \"\(text)\""))
        }
        self = size
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(bytes)
    }
}

/// A number that may be written `100` or `0.5` in the file.
public struct TOMLNumber: Sendable, Codable, Equatable, ExpressibleByFloatLiteral, ExpressibleByIntegerLiteral {
    public let value: Double
    public init(floatLiteral value: Double) { self.value = value }
    public init(integerLiteral value: Int) { self.value = Double(value) }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let d = try? c.decode(Double.self) { value = d; return }
        value = Double(try c.decode(Int.self))
    }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(value)
    }
}

/// A configuration that cannot be used, with where and why.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Settings resolved from a RelayConfig, ready for the modules.
public struct ResolvedSettings: Sendable {
    public var ingest: IngestOptions
    public var spool: SpoolOptions
    public var forward: ForwarderOptions
    public var logLevel: String
}

extension RelayConfig {
    public static let defaultPath = "/etc/plainflow-relay/relay.toml"

    /// Applies `PLAINFLOW_RELAY_*` environment overrides.
    public mutating func applyEnvironment(_ env: [String: String]) {
        if let v = env["PLAINFLOW_RELAY_WRITE_KEY"] { upstream = upstream ?? .init(); upstream!.write_key = v; markOverridden("upstream.write_key") }
        if let v = env["PLAINFLOW_RELAY_UPSTREAM_URL"] { upstream = upstream ?? .init(); upstream!.url = v; markOverridden("upstream.url") }
        if let v = env["PLAINFLOW_RELAY_SPOOL"] { spool = spool ?? .init(); spool!.path = v; markOverridden("spool.path") }
        if let v = env["PLAINFLOW_RELAY_TCP"] { listen = listen ?? .init(); listen!.tcp = v; markOverridden("listen.tcp") }
        if let v = env["PLAINFLOW_RELAY_UNIX"] { listen = listen ?? .init(); listen!.unix = v; markOverridden("listen.unix") }
        if let v = env["PLAINFLOW_RELAY_LOG_LEVEL"] { log = log ?? .init(); log!.level = v; markOverridden("log.level") }
        // Under systemd, `LoadCredential=write_key:...` puts the key in $CREDENTIALS_DIRECTORY. An empty
        // credential (the unit's `SetCredential=write_key:` default while the key file is absent) is no key.
        if let dir = env["CREDENTIALS_DIRECTORY"], upstream?.write_key?.isEmpty ?? true, upstream?.write_key_file == nil,
           let data = FileManager.default.contents(atPath: dir + "/write_key"),
           !String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            upstream = upstream ?? .init()
            upstream!.write_key_file = dir + "/write_key"
        }
    }

    /// The key in `file`, without surrounding white space.
    static func readWriteKey(_ file: String) throws(ConfigError) -> String {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw ConfigError("upstream.write_key_file: cannot read \(file); check that it exists and that the relay's user may read it (mode 0640, group plainflow-relay)")
        }
        let key = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if key.isEmpty { throw ConfigError("upstream.write_key_file: \(file) is empty; put the upstream write key in it") }
        return key
    }

    /// Checks every value and turns the file's view into the modules' options.
    public func resolve() throws(ConfigError) -> ResolvedSettings {
        var problems: [String] = []
        func positive(_ v: Int?, _ key: String) -> Int? {
            guard let v else { return nil }
            if v <= 0 { problems.append("\(key): must be a positive number, got \(v)") }
            return v
        }
        /// A size up to `limit` (what the code's arithmetic is sized for, far above any real need).
        func positive(_ v: ByteSize?, _ key: String, atMost limit: Int64) -> Int? {
            guard let v else { return nil }
            if v.bytes <= 0 { problems.append("\(key): must be a positive size, got \(v.bytes)") }
            if v.bytes > limit { problems.append("\(key): must be at most \(ByteCount.format(limit)), got \(v.bytes) bytes") }
            return Int(clamping: v.bytes)
        }

        var ingest = IngestOptions()
        if let tcp = listen?.tcp {
            if tcp == "off" || tcp.isEmpty {
                ingest.tcpHost = nil
            } else if let (host, port) = Self.splitHostPort(tcp) {
                ingest.tcpHost = host
                ingest.tcpPort = port
            } else {
                problems.append("listen.tcp: expected HOST:PORT (e.g. 127.0.0.1:8787) or \"off\", got \"\(tcp)\"")
            }
        }
        if let unix = listen?.unix { ingest.unixPath = (unix == "off" || unix.isEmpty) ? nil : filePath(unix, key: "listen.unix") }
        if let mode = listen?.unix_mode {
            if let m = UInt16(mode, radix: 8), m <= 0o777 { ingest.unixMode = m } else { problems.append("listen.unix_mode: expected an octal mode such as \"0660\", got \"\(mode)\"") }
        }
        ingest.unixGroup = listen?.unix_group.flatMap { $0.isEmpty ? nil : $0 }
        ingest.allowRemote = listen?.allow_remote ?? false
        ingest.lineProtocolOnTCP = listen?.line_protocol_on_tcp ?? false
        if let v = positive(listen?.max_connections, "listen.max_connections") { ingest.maxConnections = v }
        if let v = positive(listen?.idle_timeout_seconds, "listen.idle_timeout_seconds") { ingest.idleTimeoutSeconds = Int64(v) }
        if let v = positive(listen?.request_timeout_seconds, "listen.request_timeout_seconds") { ingest.requestTimeoutSeconds = Int64(v) }
        if ingest.tcpHost == nil && ingest.unixPath == nil { problems.append("listen: both tcp and unix are off; the relay would accept nothing") }
        do { try IngestServer.checkAddress(ingest) } catch { problems.append(error.description) }

        var limits = MessageLimits()
        if let v = positive(self.limits?.max_message_bytes, "limits.max_message_bytes", atMost: 1 << 30) { limits.maxMessageBytes = v }
        if let v = positive(self.limits?.max_depth, "limits.max_depth") { limits.maxDepth = v }
        ingest.limits = limits
        if let v = positive(self.limits?.max_request_bytes, "limits.max_request_bytes", atMost: 1 << 30) { ingest.maxRequestBytes = v }
        if let v = positive(self.limits?.max_batch_messages, "limits.max_batch_messages") { ingest.maxBatchMessages = v }
        ingest.acceptedWriteKeys = self.limits?.accepted_write_keys.flatMap { $0.isEmpty ? nil : $0 }

        var forward = ForwarderOptions()
        if let url = upstream?.url {
            if let problem = Self.urlProblem(url) { problems.append("upstream.url: \(problem)") } else { forward.upstream = url }
        }
        forward.writeKey = upstream?.write_key.flatMap { $0.isEmpty ? nil : $0 }
        if let file = upstream?.write_key_file.map({ filePath($0, key: "upstream.write_key_file") }), !file.isEmpty {
            if forward.writeKey != nil {
                problems.append("upstream: both write_key and write_key_file are set; keep one (write_key_file in production)")
            } else {
                do { forward.writeKey = try Self.readWriteKey(file) } catch { problems.append(error.description) }
            }
        }
        ingest.relayHasWriteKey = forward.writeKey != nil
        if let v = positive(upstream?.batch_max_messages, "upstream.batch_max_messages") { forward.maxBatchCount = v }
        if let v = positive(upstream?.batch_max_bytes, "upstream.batch_max_bytes", atMost: 1 << 30) { forward.maxBatchBytes = v }
        if let v = positive(upstream?.flush_interval_ms, "upstream.flush_interval_ms") { forward.flushIntervalMillis = Int64(v) }
        if let v = upstream?.max_requests_per_second?.value {
            if !(v > 0) || !v.isFinite { problems.append("upstream.max_requests_per_second: must be a positive number, got \(v)") } else { forward.maxRequestsPerSecond = v }
        }
        if let v = positive(upstream?.connect_timeout_ms, "upstream.connect_timeout_ms") { forward.transport.connectTimeoutMillis = v }
        if let v = positive(upstream?.timeout_ms, "upstream.timeout_ms") { forward.transport.totalTimeoutMillis = v }
        forward.gzip = upstream?.gzip ?? false
        if let v = positive(upstream?.max_in_flight, "upstream.max_in_flight") { forward.maxInFlight = v }
        forward.transport.caFile = upstream?.ca_file.flatMap { $0.isEmpty ? nil : filePath($0, key: "upstream.ca_file") }
        if let proxy = upstream?.proxy, !proxy.isEmpty {
            if let problem = Self.proxyProblem(proxy) { problems.append("upstream.proxy: \(problem)") } else { forward.transport.proxy = proxy }
        }
        var maxAgeMillis: Int64?
        if let h = upstream?.max_age_hours?.value {
            if h <= 0 { problems.append("upstream.max_age_hours: must be positive, got \(h)") } else { maxAgeMillis = Int64(h * 3_600_000) }
        }

        if let v = positive(upstream?.retry_base_ms, "upstream.retry_base_ms") { forward.backoff.baseMillis = Int64(v) }
        if let v = positive(upstream?.retry_cap_ms, "upstream.retry_cap_ms") { forward.backoff.capMillis = Int64(v) }
        if forward.backoff.capMillis < forward.backoff.baseMillis { problems.append("upstream.retry_cap_ms: must not be below retry_base_ms") }

        var spoolOptions = SpoolOptions(path: spool?.path.map { filePath($0, key: "spool.path") } ?? "/var/lib/plainflow-relay/spool.db")
        if let v = positive(spool?.max_bytes, "spool.max_bytes", atMost: 1 << 50) { spoolOptions.maxBytes = Int64(v) }
        if let v = spool?.on_full {
            if let mode = SpoolOptions.OnFull(rawValue: v) { spoolOptions.onFull = mode } else { problems.append("spool.on_full: expected \"reject\" or \"drop_oldest\", got \"\(v)\"") }
        }
        if let v = spool?.synchronous {
            switch v.lowercased() {
            case "full": spoolOptions.synchronousFull = true
            case "normal": spoolOptions.synchronousFull = false
            default: problems.append("spool.synchronous: expected \"full\" or \"normal\", got \"\(v)\"")
            }
        }
        if let maxAgeMillis { spoolOptions.maxAgeMillis = maxAgeMillis }
        if let v = spool?.commit_window_us {
            if v < 0 { problems.append("spool.commit_window_us: must not be negative") } else { spoolOptions.commitLingerNanos = Int64(v) * 1000 }
        }

        let level = log?.level ?? "info"
        if !["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(level) {
            problems.append("log.level: expected one of trace, debug, info, notice, warning, error, critical; got \"\(level)\"")
        }
        if !problems.isEmpty { throw ConfigError(problems.map(located).joined(separator: "\n")) }
        return ResolvedSettings(ingest: ingest, spool: spoolOptions, forward: forward, logLevel: level)
    }

    /// The file's `key` as a path. A relative path written in the file is
    /// relative to the file's own directory, so every command finds the same
    /// spool and socket whatever directory it is started from; a path from
    /// the environment or a flag is used as given (relative to the working
    /// directory, as on any command line).
    func filePath(_ value: String, key: String) -> String {
        guard let source, !value.isEmpty, !value.hasPrefix("/"), !source.overridden.contains(key) else { return value }
        let file = source.path.hasPrefix("/") ? source.path : FileManager.default.currentDirectoryPath + "/" + source.path
        // Joined, not normalized: the kernel resolves "..", also where the
        // file's directory is a symbolic link.
        return file[..<(file.lastIndex(of: "/") ?? file.startIndex)] + "/" + value
    }

    /// "FILE:LINE: problem" when the problem's key (its text up to the first
    /// ": ") holds the file's value, "FILE: problem" when it is the file's
    /// but not on a line of its own; as it is when it came from elsewhere.
    func located(_ problem: String) -> String {
        guard let source else { return problem }
        let key = problem.prefix { $0 != ":" }
        if source.overridden.contains(String(key)) { return "\(problem) (set by the environment or a flag)" }
        if let line = Self.line(ofKey: String(key), in: source.text) { return "\(source.path):\(line): \(problem)" }
        return "\(source.path): \(problem)"
    }

    /// Why `url` cannot be the upstream, or nil when it can.
    static func urlProblem(_ url: String) -> String? {
        guard url.hasPrefix("https://") || url.hasPrefix("http://") else {
            return "expected an http:// or https:// URL, got \"\(url)\""
        }
        guard let parsed = parsedWithHost(url) else {
            return "\"\(url)\" is not a valid URL (expected e.g. https://api.example.com)"
        }
        if let port = parsed.port, !(1...65535).contains(port) {
            return "port \(port) in \"\(url)\" is out of range (1 to 65535)"
        }
        if parsed.query != nil || parsed.fragment != nil {
            return "expected the upstream's base URL without ?query or #fragment, got \"\(url)\" (batches go to {url}/v1/batch)"
        }
        return nil
    }

    /// Why libcurl could not use `proxy` (`[scheme://][user:password@]host[:port]`;
    /// without a scheme, http), or nil. The message never repeats the value:
    /// it may hold a password.
    static func proxyProblem(_ proxy: String) -> String? {
        // (libcurl refuses these, and quotes the whole value when it does.)
        if proxy.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7F }) {
            return "it contains a space or a control character; a user name or password with one must be percent-encoded (%20) (the value is not repeated here: it may hold a password)"
        }
        let url = proxy.contains("://") ? proxy : "http://" + proxy
        let scheme = url.prefix { $0 != ":" }.lowercased()
        guard ["http", "https", "socks", "socks4", "socks4a", "socks5", "socks5h"].contains(scheme) else {
            // Named only when it looks like a scheme: before "://" may lie a user name and password.
            let named = scheme.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "+-.".contains($0)) } ? " \"\(scheme)\"" : ""
            return "unsupported scheme\(named) (use http, https, socks4, socks4a, socks5 or socks5h)"
        }
        guard let parsed = parsedWithHost(url), let host = parsed.host else {
            return "expected [scheme://][user:password@]host[:port], e.g. http://proxy.internal:3128 (the value is not repeated here: it may hold a password)"
        }
        if let port = parsed.port, !(1...65535).contains(port) { return "port \(port) of \(host) is out of range (1 to 65535)" }
        return nil
    }

    /// `url` parsed, when it has a host that is a name or an address.
    private static func parsedWithHost(_ url: String) -> URL? {
        guard let parsed = URL(string: url), let host = parsed.host, !host.isEmpty,
              host.allSatisfy({ $0.isLetter || $0.isNumber || ".-_:[]".contains($0) }) else { return nil }
        return parsed
    }

    /// `127.0.0.1:8787`, `[::1]:8787` → host and port.
    static func splitHostPort(_ s: String) -> (String, Int)? {
        guard let colon = s.lastIndex(of: ":"), let port = Int(s[s.index(after: colon)...]), (0...65535).contains(port) else { return nil }
        var host = String(s[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return host.isEmpty ? nil : (host, port)
    }
}
