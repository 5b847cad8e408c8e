// RequestBuilder: one batch → one upstream request (DESIGN §5).
//
// `POST {upstream}/v1/batch` with the BatchEncoder envelope, `sent_at`
// stamped at this attempt (so a retry carries a new one), Basic auth with
// the relay's write key or else the batch's own (one key per batch), an
// `X-Retry-Count` header when any message was tried before, and gzip when
// configured (sent plain if zlib fails). Pure: the time is passed in.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import CompressNIO
import NIOCore
import RelaySpool

/// Builds upstream requests from batches.
enum RequestBuilder {
    /// The request for `batch` at `nowMillis`.
    static func request(for batch: [SpoolMessage], options: ForwarderOptions, nowMillis: Int64) -> UpstreamRequest {
        let attempt = batch.map(\.attempts).max() ?? 0
        let key = options.writeKey ?? (batch.first.map(\.writeKey).flatMap { $0.isEmpty ? nil : $0 })
        // Half a millisecond in: the formatter truncates, and n/1000 is often a hair below n ms.
        let sentAt = Date(timeIntervalSince1970: (Double(nowMillis) + 0.5) / 1000)
        var body = BatchEncoder.encode(batch, sentAt: sentAt)
        var headers = attempt > 0 ? ["X-Retry-Count: \(attempt)"] : []
        if options.gzip, let compressed = gzip(body) {
            body = compressed
            headers.append("Content-Encoding: gzip")
        }
        return UpstreamRequest(url: options.batchURL, body: body, writeKey: key, headers: headers)
    }

    /// The body gzip-compressed, or nil (then it goes uncompressed) if zlib fails.
    static func gzip(_ body: [UInt8]) -> [UInt8]? {
        var buffer = ByteBuffer(bytes: body)
        guard let compressed = try? buffer.compress(with: .gzip()) else { return nil }
        return Array(compressed.readableBytesView)
    }
}
