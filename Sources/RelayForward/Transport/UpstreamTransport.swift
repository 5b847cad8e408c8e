// UpstreamTransport: how a request reaches the upstream, as the loop sees
// it. One request at a time per transport; the loop holds one transport per
// request it allows in flight. CurlTransport is the production one; tests
// use a fake that answers from a script.

/// Sends one upstream request and reports how it ended.
public protocol UpstreamTransport: Sendable {
    /// Performs the request; never throws: every failure is an outcome.
    func send(_ request: UpstreamRequest) async -> DeliveryOutcome
    /// New client settings (SIGHUP), from the next request on.
    func update(options: TransportOptions)
}

extension UpstreamTransport {
    /// Transports without settings ignore them.
    public func update(options: TransportOptions) {}
}

extension CurlTransport: UpstreamTransport {}
