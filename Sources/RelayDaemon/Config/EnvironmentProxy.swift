// EnvironmentProxy: the proxy libcurl takes from the environment for the
// upstream when `upstream.proxy` is not set, found the way libcurl finds it:
// `{scheme}_proxy`, then its uppercase form (never `HTTP_PROXY`), then
// `all_proxy` and `ALL_PROXY`; an empty variable counts as unset; a host that
// `no_proxy` (else `NO_PROXY`) lists goes direct. The relay checks it when it
// starts, as it checks `upstream.proxy`: a proxy libcurl cannot use would
// fail every request, retried for ever, where a refusal at start names the
// variable. Nothing here ever repeats a value (it may hold a password).
// `no_proxy` is read as libcurl 7.88 (Debian 12's) reads it (`lists`).

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

/// The proxy that one environment variable names for the upstream.
/// Printed, it shows the variable and the proxy's host and port only.
public struct EnvironmentProxy: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The variable libcurl reads it from, e.g. `https_proxy`.
    public let variable: String
    /// Its value (never printed: it may hold a password).
    let value: String

    /// The proxy libcurl would take from `environment` for requests to
    /// `upstream`; nil when none applies (none set, or `no_proxy` lists the host).
    public static func find(upstream: String, environment: [String: String]) -> EnvironmentProxy? {
        guard let url = URL(string: upstream), let scheme = url.scheme?.lowercased(), let host = url.host else { return nil }
        if let exempt = set(environment, "no_proxy") ?? set(environment, "NO_PROXY"), lists(exempt, host: host) { return nil }
        var names = [scheme + "_proxy"]
        if scheme != "http" { names.append(scheme.uppercased() + "_PROXY") }  // (HTTP_PROXY: CGI puts a request header there)
        names += ["all_proxy", "ALL_PROXY"]
        for name in names {
            if let value = set(environment, name) { return EnvironmentProxy(variable: name, value: value) }
        }
        return nil
    }

    /// Why libcurl could not use it, or nil (`RelayConfig.proxyProblem`).
    public var problem: String? { RelayConfig.proxyProblem(value) }

    /// The proxy's host and port as an operator may read them (libcurl's
    /// default port when it names none): no scheme, no user, no password.
    public var endpoint: String {
        let url = URL(string: value.contains("://") ? value : "http://" + value)
        guard let host = url?.host else { return "?" }
        let shown = host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
        let port = url?.port ?? (url?.scheme?.lowercased() == "https" ? 443 : 1080)
        return "\(shown):\(port)"
    }

    public var description: String { "\(variable) (\(endpoint))" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["variable": variable, "endpoint": endpoint]) }

    private static func set(_ environment: [String: String], _ name: String) -> String? {
        guard let value = environment[name], !value.isEmpty else { return nil }
        return value
    }

    /// Whether the `no_proxy` list `exempt` names `host`, as libcurl reads
    /// it: "*" alone names every host. For an IPv4 host (in the form
    /// libcurl's URL parser gives it: `127.1` is 127.0.0.1) an entry is an
    /// address or a range (`10.0.0.0/8`; the bits read as C's `atoi` reads
    /// them, none meaning the address alone), and names never match. For
    /// any other host (IPv6 addresses too, without their brackets) an entry
    /// is a name, matching itself and its subdomains, a dot before or after
    /// it ignored, as one after the host is.
    static func lists(_ exempt: String, host rawHost: String) -> Bool {
        if exempt == "*" { return true }
        let tokens = exempt.split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\t" })
        if let address = ipv4(normalizing: rawHost) {
            for token in tokens {
                var network = Substring(token), bits = 0
                if let slash = token.firstIndex(of: "/") {
                    network = token[..<slash]
                    guard let b = atoi(token[token.index(after: slash)...]) else { continue }
                    bits = b
                }
                guard (0...32).contains(bits), let net = ipv4(strict: network) else { continue }
                let mask: UInt32 = bits == 0 || bits == 32 ? ~0 : ~UInt32(0) << (32 - bits)
                if address & mask == net & mask { return true }
            }
            return false
        }
        var host = rawHost.lowercased()
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host.contains(":") { host = ipv6(normalizing: host) }
        if host.hasSuffix(".") { host.removeLast() }
        for token in tokens {
            var name = token.lowercased()
            if name.hasSuffix(".") { name.removeLast() }
            if name.hasPrefix(".") { name.removeFirst() }
            guard !name.isEmpty else { continue }
            if host == name || host.hasSuffix("." + name) { return true }
        }
        return false
    }

    /// C's `atoi` of the text: an optional sign, then the digits that lead; nil below zero.
    private static func atoi(_ s: Substring) -> Int? {
        var rest = s, negative = false
        if let sign = rest.first, sign == "+" || sign == "-" { negative = sign == "-"; rest = rest.dropFirst() }
        let digits = rest.prefix { $0.isASCII && $0.isNumber }.prefix(9)
        let value = Int(digits) ?? 0
        return negative && value > 0 ? nil : value
    }

    /// A dotted quad, each part 0-255 in decimal (`inet_pton`).
    private static func ipv4(strict s: Substring) -> UInt32? {
        var address = in_addr()
        guard inet_pton(AF_INET, String(s), &address) == 1 else { return nil }
        return UInt32(bigEndian: address.s_addr)
    }

    /// An IPv4 address in any form a URL may write it (`127.1`, `0x7f.0.0.1`: `inet_aton`).
    private static func ipv4(normalizing s: String) -> UInt32? {
        guard !s.isEmpty, s.allSatisfy({ $0.isHexDigit || $0 == "." || $0 == "x" || $0 == "X" }) else { return nil }
        var address = in_addr()
        guard inet_aton(s, &address) != 0 else { return nil }
        return UInt32(bigEndian: address.s_addr)
    }

    /// An IPv6 address in its shortest form (`0:0::1` is `::1`), or `s` as it is.
    private static func ipv6(normalizing s: String) -> String {
        var address = in6_addr()
        guard inet_pton(AF_INET6, s, &address) == 1 else { return s }
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(AF_INET6, &address, &buffer, socklen_t(buffer.count)) != nil else { return s }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
