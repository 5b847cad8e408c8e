// A fake upstream behind the UpstreamTransport protocol: records every
// request (virtual start time from its sent_at, message ids, write key, headers, body size,
// how many requests were in flight), answers from a closure, and can hold
// a request open until the test lets it finish.

import Foundation
import RelayForward
import Synchronization

final class FakeUpstream: UpstreamTransport {
    struct Request: Sendable {
        let index: Int
        let atMillis: Int64
        let ids: [String]
        let writeKey: String?
        let headers: [String]
        let bodyBytes: Int
        let sentAt: String?
        let url: String
        /// Requests in flight while this one was (itself included).
        var peakConcurrency: Int
        func header(_ name: String) -> String? {
            headers.first { $0.lowercased().hasPrefix(name.lowercased() + ":") }.map { String($0.split(separator: ":", maxSplits: 1)[1].drop { $0 == " " }) }
        }
    }
    private struct State {
        var requests: [Request] = []
        var inFlight: [Int] = []
        var held: CheckedContinuation<Void, Never>?
        var holdNext = false
    }
    private let state = Mutex(State())
    private let clock: any ForwardClock
    private let answer: @Sendable (Request) -> DeliveryOutcome

    init(clock: any ForwardClock, answer: @escaping @Sendable (Request) -> DeliveryOutcome = { _ in .response(status: 200, retryAfter: nil, body: "") }) {
        self.clock = clock
        self.answer = answer
    }

    /// Every request so far, in the order the loop started them.
    var requests: [Request] {
        state.withLock { $0.requests }.sorted { ($0.atMillis, $0.index) < ($1.atMillis, $1.index) }
    }

    /// `sent_at` in virtual milliseconds: when the loop built the request
    /// (the child task that calls `send` may run a little later).
    static func millis(_ sentAt: String?) -> Int64? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return sentAt.flatMap { f.date(from: $0) }.map { Int64(($0.timeIntervalSince1970 * 1000).rounded()) }
    }

    /// The next request stays in flight until `finishHeld()`.
    func holdNextRequest() { state.withLock { $0.holdNext = true } }
    var isHolding: Bool { state.withLock { $0.held != nil } }
    func finishHeld() { state.withLock { s in s.held?.resume(); s.held = nil } }

    func send(_ request: UpstreamRequest) async -> DeliveryOutcome {
        let gzipped = request.headers.contains("Content-Encoding: gzip")
        let json = gzipped ? nil : (try? JSONSerialization.jsonObject(with: Data(request.body))) as? [String: Any]
        let ids = (json?["batch"] as? [[String: Any]])?.compactMap { $0["message_id"] as? String } ?? []
        let (index, hold) = state.withLock { s -> (Int, Bool) in
            let i = s.requests.count
            s.requests.append(Request(index: i, atMillis: Self.millis(json?["sent_at"] as? String) ?? clock.nowMillis(), ids: ids, writeKey: request.writeKey, headers: request.headers,
                                      bodyBytes: request.body.count, sentAt: json?["sent_at"] as? String, url: request.url, peakConcurrency: 0))
            s.inFlight.append(i)
            for j in s.inFlight { s.requests[j].peakConcurrency = max(s.requests[j].peakConcurrency, s.inFlight.count) }
            let hold = s.holdNext
            s.holdNext = false
            return (i, hold)
        }
        if hold {
            await withCheckedContinuation { c in state.withLock { $0.held = c } }
        }
        for _ in 0..<1_000 { await Task.yield() }  // let a concurrent request overlap, if the loop sent one
        let recorded = state.withLock { s in
            s.inFlight.removeAll { $0 == index }
            return s.requests[index]
        }
        return answer(recorded)
    }
}
