// BatchEncoder: the upstream request body. The spool holds each message as
// canonical JSON already, so a batch is those bytes joined, wrapped in
// `{"batch":[...],"sent_at":"..."}`: no message is parsed again on the way out.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import RelaySpool

/// Builds batch request bodies.
public enum BatchEncoder {
    /// Bytes the envelope adds around the messages (plus one comma per message).
    public static let envelopeBytes = 64

    /// `{"batch":[m1,m2,...],"sent_at":"<sentAt>"}`
    public static func encode(_ messages: [SpoolMessage], sentAt: Date) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(messages.reduce(envelopeBytes) { $0 + $1.payload.count + 1 })
        out.append(contentsOf: #"{"batch":["#.utf8)
        for (i, m) in messages.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: m.payload)
        }
        out.append(contentsOf: #"],"sent_at":""#.utf8)
        out.append(contentsOf: Date.ISO8601FormatStyle(includingFractionalSeconds: true).format(sentAt).utf8)
        out.append(contentsOf: #""}"#.utf8)
        return out
    }
}
