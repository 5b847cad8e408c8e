// EnvironmentProxy: the proxy libcurl takes from the environment for the
// upstream when `upstream.proxy` is not set, found the way libcurl finds it:
// `{scheme}_proxy`, then its uppercase form (never `HTTP_PROXY`), then
// `all_proxy` and `ALL_PROXY`; an empty variable counts as unset; a host that
// `no_proxy` (else `NO_PROXY`) lists goes direct. The relay checks it when it
// starts, as it checks `upstream.proxy`: a proxy libcurl cannot use would
// fail every request, retried for ever, where a refusal at start names the
// variable. Nothing here ever repeats a value (it may hold a password).
// Where this cannot tell whether `no_proxy` lists the host (an IPv6 range),
// it takes the host as listed: a proxy is refused only when libcurl would use it.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The proxy that one environment variable names for the upstream.
public struct EnvironmentProxy: Sendable, Equatable {
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

    /// The proxy's host and port as an operator may read them: no scheme, no user, no password.
    public var endpoint: String {
        let url = URL(string: value.contains("://") ? value : "http://" + value)
        guard let host = url?.host else { return "?" }
        let shown = host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
        return url?.port.map { "\(shown):\($0)" } ?? shown
    }

    private static func set(_ environment: [String: String], _ name: String) -> String? {
        guard let value = environment[name], !value.isEmpty else { return nil }
        return value
    }

    /// Whether the `no_proxy` list `exempt` names `host`: "*" names every
    /// host; a name names itself and its subdomains (a leading dot or not);
    /// an address names itself; an IPv4 range (`10.0.0.0/8`) its addresses.
    static func lists(_ exempt: String, host rawHost: String) -> Bool {
        let host = rawHost.filter { $0 != "[" && $0 != "]" }.lowercased()
        let tokens = exempt.split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\t" }).map { $0.lowercased() }
        if tokens == ["*"] { return true }
        let hostIPv4 = ipv4(host)
        for token in tokens {
            if let slash = token.firstIndex(of: "/") {
                let network = String(token[..<slash]), bits = Int(token[token.index(after: slash)...])
                if let hostIPv4, let net = ipv4(network), let bits, (0...32).contains(bits) {
                    let mask: UInt32 = bits == 0 ? 0 : ~UInt32(0) << (32 - bits)
                    if hostIPv4 & mask == net & mask { return true }
                } else if host.contains(":") && network.contains(":") {
                    return true  // an IPv6 range: not decided here, so no proxy is refused for it
                }
                continue
            }
            var name = Substring(token)
            if name.hasPrefix(".") { name = name.dropFirst() }
            if name.hasSuffix(".") { name = name.dropLast() }
            guard !name.isEmpty else { continue }
            if host == name || host.hasSuffix("." + name) { return true }
        }
        return false
    }

    private static func ipv4(_ s: String) -> UInt32? {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for part in parts {
            guard let octet = UInt8(part) else { return nil }
            value = value << 8 | UInt32(octet)
        }
        return value
    }
}
