// CurlTransport: one libcurl easy handle, one request at a time.
//
// Owns: the handle (and through it the upstream connection, reused across
// requests), confined to a serial dispatch queue of its own so that the
// blocking `curl_easy_perform` never runs on an event loop or the
// cooperative pool. Every curl call is wrapped once; a failing setopt is a
// programming or configuration error and is reported as such.
//
// TLS verification stays on (libcurl's default) for https; a CA file may be
// configured; proxies come from the config or libcurl's usual environment
// variables (`https_proxy`, `HTTPS_PROXY`, `http_proxy`, `all_proxy`,
// `ALL_PROXY`, `no_proxy`, `NO_PROXY`; the daemon checks them at start).
// No failure message carries a proxy's user or password (`ProxyCredentials`).

import CCurl
import Dispatch
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Why no HTTP answer came back.
public struct TransportFailure: Error, Sendable, Hashable, CustomStringConvertible {
    /// libcurl's result code.
    public let code: Int
    public let message: String
    /// True for time-outs (connect or total).
    public var isTimeout: Bool { code == Int(CURLE_OPERATION_TIMEDOUT.rawValue) }

    /// True when no attempt can work as configured, however often retried:
    /// a URL libcurl cannot use (a port out of range, a scheme it lacks) or
    /// a CA file it cannot read. The operator's to fix, as a 404 is.
    public var isConfigurationError: Bool {
        [CURLE_UNSUPPORTED_PROTOCOL, CURLE_URL_MALFORMAT, CURLE_NOT_BUILT_IN, CURLE_SSL_CACERT_BADFILE].contains { Int($0.rawValue) == code }
    }

    public var description: String { "\(message) (curl error \(code))" }

    /// `text` without the user and password of any proxy libcurl may use:
    /// libcurl quotes a proxy it cannot use whole ("Unsupported proxy scheme
    /// for 'socks9://user:pw@host'"), and this text goes to the log,
    /// `/v1/status` and the spool. Each of `known` (as the proxy was written:
    /// `ProxyCredentials`) is replaced by `***` wherever it appears, whatever
    /// it holds (spaces, quotes, `@`); then anything else shaped like
    /// `user:pw@host` (back to a quote, a space or a bracket, after "://").
    static func withoutCredentials(_ text: String, known: [String] = []) -> String {
        var text = text
        for secret in known.sorted(by: { $0.count > $1.count }) where !secret.isEmpty {
            text = text.replacing(secret, with: "***")
        }
        var out = "", rest = Substring(text)
        while let at = rest.firstIndex(of: "@") {
            let before = rest[..<at]
            var start = before.lastIndex { " '\"(<\t".contains($0) }.map(before.index(after:)) ?? before.startIndex
            if let scheme = before[start...].range(of: "://") { start = scheme.upperBound }
            out += before[..<start] + (start < at ? "***@" : "@")
            rest = rest[rest.index(after: at)...]
        }
        return out + rest
    }

    public init(code: Int, message: String) {
        self.code = code
        self.message = message
    }
}

/// The user and password parts of the proxies libcurl may use, as written
/// (what comes before the last `@` of the value, after any `scheme://`):
/// the configured one and those of libcurl's environment variables.
enum ProxyCredentials {
    static let variables = ["http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]

    /// The environment's, read once (the relay never changes its environment).
    static let environment: [String] = variables.compactMap { name in getenv(name).flatMap { of(String(cString: $0)) } }

    /// `proxy`'s `user:password`, nil when it has none.
    static func of(_ proxy: String) -> String? {
        guard let at = proxy.lastIndex(of: "@") else { return nil }
        let start = proxy.range(of: "://").map(\.upperBound) ?? proxy.startIndex
        guard start < at else { return nil }
        return String(proxy[start..<at])
    }

    /// The configured proxy's and the environment's.
    static func all(configured: String?) -> [String] {
        (configured.flatMap(of).map { [$0] } ?? []) + environment
    }
}

/// Settings of the HTTP client.
public struct TransportOptions: Sendable, Hashable {
    public var connectTimeoutMillis: Int
    public var totalTimeoutMillis: Int
    public var caFile: String?
    public var proxy: String?
    public var userAgent: String

    public init(connectTimeoutMillis: Int = 5_000, totalTimeoutMillis: Int = 30_000, caFile: String? = nil, proxy: String? = nil, userAgent: String = "plainflow-relay") {
        self.connectTimeoutMillis = connectTimeoutMillis
        self.totalTimeoutMillis = totalTimeoutMillis
        self.caFile = caFile
        self.proxy = proxy
        self.userAgent = userAgent
    }
}

/// One POST to send.
public struct UpstreamRequest: Sendable {
    public var url: String
    public var body: [UInt8]
    /// Sent as Basic auth user name with an empty password; nil sends no auth.
    public var writeKey: String?
    public var headers: [String]
    /// GET instead of POST (the body is then ignored).
    public var isGet: Bool
    /// Connect through this Unix socket instead of TCP (the URL's host is then ignored).
    public var unixSocketPath: String?

    public init(url: String, body: [UInt8] = [], writeKey: String? = nil, headers: [String] = [], isGet: Bool = false, unixSocketPath: String? = nil) {
        self.url = url
        self.body = body
        self.writeKey = writeKey
        self.headers = headers
        self.isGet = isGet
        self.unixSocketPath = unixSocketPath
    }
}

/// Performs upstream requests with libcurl, one at a time per transport.
public final class CurlTransport: @unchecked Sendable {
    // Confined to `queue`: the handle is only touched by blocks running on it.
    private let handle: UnsafeMutableRawPointer
    /// libcurl's message for the last failure, which names what failed (the
    /// host it could not resolve, the address and port it could not connect
    /// to, the certificate problem) where `curl_easy_strerror` names only
    /// the kind. Confined to `queue` with the handle.
    private let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE))
    private let queue = DispatchQueue(label: "plainflow-relay.curl")
    private let currentOptions: Mutex<TransportOptions>

    private static let globalInit: Void = {
        curl_global_init(Int(CURL_GLOBAL_DEFAULT))
    }()

    public init(options: TransportOptions) {
        _ = Self.globalInit
        guard let h = curl_easy_init() else { fatalError("curl_easy_init failed: out of memory") }
        self.handle = h
        self.currentOptions = Mutex(options)
    }

    /// New timeouts, CA file or proxy, for the requests that start from now on.
    public func update(options: TransportOptions) {
        currentOptions.withLock { $0 = options }
    }

    deinit {
        curl_easy_cleanup(handle)
        errorBuffer.deallocate()
    }

    /// Sends `request`; returns the status and the first bytes of the answer, or the failure.
    public func send(_ request: UpstreamRequest) async -> DeliveryOutcome {
        await withCheckedContinuation { c in
            queue.async { c.resume(returning: self.perform(request)) }
        }
    }

    /// Collects the response as libcurl hands it over.
    private final class Response {
        var body: [UInt8] = []
        var retryAfter: String?
        static let maxBody = 4096
    }

    private func perform(_ request: UpstreamRequest) -> DeliveryOutcome {
        let h = handle
        let options = currentOptions.withLock { $0 }
        curl_easy_reset(h)
        let response = Response()
        let ctx = Unmanaged.passUnretained(response).toOpaque()

        var headers: UnsafeMutablePointer<curl_slist>? = nil
        for line in ["Content-Type: application/json", "Expect:"] + request.headers {
            headers = curl_slist_append(headers, line)
        }
        defer { curl_slist_free_all(headers) }

        let failure = request.body.withUnsafeBufferPointer { body -> TransportFailure? in
            var rc = CURLE_OK
            func set(_ r: CURLcode) { if rc == CURLE_OK { rc = r } }
            set(pf_curl_setopt_string(h, CURLOPT_URL, request.url))
            errorBuffer[0] = 0
            set(pf_curl_setopt_pointer(h, CURLOPT_ERRORBUFFER, errorBuffer))
            set(pf_curl_setopt_long(h, CURLOPT_NOSIGNAL, 1))
            if request.isGet {
                set(pf_curl_setopt_long(h, CURLOPT_HTTPGET, 1))
            } else {
                set(pf_curl_setopt_long(h, CURLOPT_POST, 1))
                set(pf_curl_setopt_pointer(h, CURLOPT_POSTFIELDS, UnsafeMutableRawPointer(mutating: body.baseAddress)))
                set(pf_curl_setopt_off(h, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(body.count)))
            }
            if let path = request.unixSocketPath { set(pf_curl_setopt_string(h, CURLOPT_UNIX_SOCKET_PATH, path)) }
            set(pf_curl_setopt_slist(h, CURLOPT_HTTPHEADER, headers))
            set(pf_curl_setopt_string(h, CURLOPT_USERAGENT, options.userAgent))
            set(pf_curl_setopt_long(h, CURLOPT_CONNECTTIMEOUT_MS, options.connectTimeoutMillis))
            set(pf_curl_setopt_long(h, CURLOPT_TIMEOUT_MS, options.totalTimeoutMillis))
            set(pf_curl_setopt_long(h, CURLOPT_TCP_KEEPALIVE, 1))
            set(pf_curl_setopt_string(h, CURLOPT_PROTOCOLS_STR, "http,https"))
            set(pf_curl_setopt_long(h, CURLOPT_SSL_VERIFYPEER, 1))
            set(pf_curl_setopt_long(h, CURLOPT_SSL_VERIFYHOST, 2))
            if let ca = options.caFile { set(pf_curl_setopt_string(h, CURLOPT_CAINFO, ca)) }
            if let proxy = options.proxy { set(pf_curl_setopt_string(h, CURLOPT_PROXY, proxy)) }
            if let key = request.writeKey {
                set(pf_curl_setopt_long(h, CURLOPT_HTTPAUTH, pf_curlauth_basic()))
                set(pf_curl_setopt_string(h, CURLOPT_USERNAME, key))
                set(pf_curl_setopt_string(h, CURLOPT_PASSWORD, ""))
            }
            set(pf_curl_setopt_write_cb(h, CURLOPT_WRITEFUNCTION, { ptr, size, count, userdata in
                let n = size * count
                let r = Unmanaged<Response>.fromOpaque(userdata!).takeUnretainedValue()
                let room = max(0, Response.maxBody - r.body.count)
                if room > 0, let ptr {
                    ptr.withMemoryRebound(to: UInt8.self, capacity: n) { r.body.append(contentsOf: UnsafeBufferPointer(start: $0, count: min(n, room))) }
                }
                return n
            }))
            set(pf_curl_setopt_pointer(h, CURLOPT_WRITEDATA, ctx))
            set(pf_curl_setopt_write_cb(h, CURLOPT_HEADERFUNCTION, { ptr, size, count, userdata in
                let n = size * count
                let r = Unmanaged<Response>.fromOpaque(userdata!).takeUnretainedValue()
                if let ptr {
                    let line = ptr.withMemoryRebound(to: UInt8.self, capacity: n) { String(decoding: UnsafeBufferPointer(start: $0, count: n), as: UTF8.self) }
                    if line.lowercased().hasPrefix("retry-after:") {
                        r.retryAfter = String(line.dropFirst("retry-after:".count)).trimming([" ", "\t", "\r", "\n", "\r\n"])
                    } else if line.hasPrefix("HTTP/") {
                        r.retryAfter = nil  // a new response (after 100 Continue or a redirect)
                    }
                }
                return n
            }))
            set(pf_curl_setopt_pointer(h, CURLOPT_HEADERDATA, ctx))
            if rc != CURLE_OK { return TransportFailure(code: Int(rc.rawValue), message: "could not configure the request: \(String(cString: curl_easy_strerror(rc)))") }

            let result = curl_easy_perform(h)
            if result != CURLE_OK {
                let detail = TransportFailure.withoutCredentials(String(cString: errorBuffer).trimming([" ", "\n"]),
                                                                 known: ProxyCredentials.all(configured: options.proxy))
                return TransportFailure(code: Int(result.rawValue), message: detail.isEmpty ? String(cString: curl_easy_strerror(result)) : detail)
            }
            return nil
        }
        if let failure { return .transportFailure(failure) }
        var status = 0
        _ = pf_curl_getinfo_long(h, CURLINFO_RESPONSE_CODE, &status)
        return .response(status: status, retryAfter: response.retryAfter, body: String(decoding: response.body, as: UTF8.self))
    }
}

extension String {
    /// `self` without the given characters at either end.
    func trimming(_ set: Set<Character>) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s.removeFirst() }
        while let l = s.last, set.contains(l) { s.removeLast() }
        return String(s)
    }
}
