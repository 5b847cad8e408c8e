import Foundation
import Testing
@testable import RelayMessage

/// Generated calls: normalization is idempotent and never loses a non-reserved trait.
@Suite struct NormalizationPropertyTests {
    struct SplitMix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static let reservedCamel = ["firstName", "lastName", "createdAt", "email", "age", "company", "address"]

    static func randomValue(_ rng: inout SplitMix, depth: Int) -> JSONValue {
        switch Int.random(in: 0..<(depth > 2 ? 4 : 6), using: &rng) {
        case 0: return .string(["", "x", "héllo", "a\"b", "tab\t"][Int.random(in: 0..<5, using: &rng)])
        case 1: return .int(Int64.random(in: -1000...1000, using: &rng))
        case 2: return .bool(Bool.random(using: &rng))
        case 3: return .null
        case 4: return .array((0..<Int.random(in: 0..<3, using: &rng)).map { _ in randomValue(&rng, depth: depth + 1) })
        default:
            var o: JSONObject = [:]
            for i in 0..<Int.random(in: 0..<3, using: &rng) { o["k\(i)_\(depth)"] = randomValue(&rng, depth: depth + 1) }
            return .object(o)
        }
    }

    static func randomCall(_ rng: inout SplitMix) -> JSONValue {
        var traits: JSONObject = [:]
        for i in 0..<Int.random(in: 0..<6, using: &rng) { traits["custom\(i)"] = randomValue(&rng, depth: 0) }
        if Bool.random(using: &rng) { traits["firstName"] = .string("Ada") }
        if Bool.random(using: &rng) { traits["last_name"] = .string("Lovelace") }
        if Bool.random(using: &rng) { traits["createdAt"] = .string("2020-01-02T03:04:05Z") }
        if Bool.random(using: &rng) { traits["company"] = .object(["employeeCount": .int(3), "extra": .string("kept")]) }
        var call: JSONObject = ["traits": .object(traits)]
        call[Bool.random(using: &rng) ? "userId" : "anonymous_id"] = .string("id-\(rng.next() % 1000)")
        if Bool.random(using: &rng) { call["timestamp"] = .string("2019-06-01T00:00:00.5Z") }
        if Bool.random(using: &rng) { call["context"] = .object(["ip": .string("127.0.0.1")]) }
        return .object(call)
    }

    @Test func normalizationIsIdempotentAndKeepsEveryNonReservedTrait() throws {
        var rng = SplitMix(state: 20261129)
        let normalizer = MessageNormalizer()
        let ctx = NormalizeContext(receivedAt: Date(timeIntervalSince1970: 1_600_000_000), makeMessageID: { "fixed" })
        for _ in 0..<500 {
            let call = Self.randomCall(&rng)
            guard case .success(let once) = normalizer.normalize(call, endpointType: .identify, context: ctx) else {
                Issue.record("generated call refused: \(String(decoding: call.encoded(), as: UTF8.self))"); continue
            }
            guard case .success(let twice) = normalizer.normalize(once.body, endpointType: .identify, context: ctx) else {
                Issue.record("normalized call refused on a second pass"); continue
            }
            #expect(once.encoded == twice.encoded)
            let sent = call.objectValue?["traits"]?.objectValue ?? [:]
            let kept = once.body.objectValue?["traits"]?.objectValue ?? [:]
            for (key, value) in sent where key.hasPrefix("custom") {
                #expect(kept[key] == value, "non-reserved trait \(key) kept as sent")
            }
            // and the wire bytes parse back to the same document
            #expect(try JSONValue.parse(once.encoded, maxDepth: 64) == once.body)
        }
    }
}
