import Foundation
import Testing
@testable import RelayMessage

/// Calls exactly as the public Python SDKs build them (captured from
/// segment-analytics-python 2.4.0 and rudder-sdk-python 2.1.9 with
/// `send=False`), and what the relay makes of them.
@Suite struct SDKCompatibilityTests {
    let normalizer = MessageNormalizer()
    let context = NormalizeContext(receivedAt: Date(timeIntervalSince1970: 1_700_000_000.123), makeMessageID: { "generated-id" })

    static let segmentIdentify = #"""
    {"integrations": {}, "anonymousId": null, "timestamp": "2026-11-29T12:44:38.602+00:00", "context": {"ip": "1.2.3.4", "library": {"name": "analytics-python", "version": "2.4.0"}}, "type": "identify", "userId": "u1", "traits": {"firstName": "Ada", "lastName": "Lovelace", "createdAt": "2020-01-02T03:04:05"}, "messageId": "m1"}
    """#
    static let rudderIdentify = #"""
    {"integrations": {"All": true}, "anonymousId": null, "timestamp": "2026-11-29T12:44:38.603044+00:00", "context": {"ip": "1.2.3.4", "traits": {"firstName": "Ada", "lastName": "Lovelace", "createdAt": "2020-01-02T03:04:05"}, "library": {"name": "analytics-python", "version": "2.1.9"}}, "type": "identify", "userId": "u1", "messageId": "m1", "channel": "server"}
    """#

    func normalize(_ json: String) throws -> Result<NormalizedMessage, MessageRejection> {
        normalizer.normalize(try JSONValue.parse(Array(json.utf8), maxDepth: 64), endpointType: nil, context: context)
    }

    func body(_ json: String) throws -> JSONObject {
        let result = try normalize(json)
        guard case .success(let m) = result else { Issue.record("rejected: \(result)"); return [:] }
        return m.body.objectValue ?? [:]
    }

    func errors(_ json: String) throws -> [String] {
        guard case .failure(let r) = try normalize(json) else { Issue.record("accepted: \(json)"); return [] }
        return r.errors.map(\.description)
    }

    static let canonicalTraits: JSONObject = [
        "first_name": .string("Ada"), "last_name": .string("Lovelace"), "created_at": .string("2020-01-02T03:04:05"), "name": .string("Ada Lovelace"),
    ]

    /// analytics-clj and Analytics.NET put the write key in every message:
    /// it is the call's credential, taken out, never stored or sent as data.
    @Test func aWriteKeyInTheMessageIsTakenOutOfIt() throws {
        for json in [#"{"type":"identify","userId":"u1","writeKey":"k1","traits":{"a":1}}"#,
                     #"{"type":"identify","write_key":"k1","userId":"u1","traits":{"a":1}}"#,
                     #"{"type":"identify","writeKey":"k1","write_key":"k1","userId":"u1","traits":{"a":1}}"#] {
            guard case .success(let m) = try normalize(json) else { Issue.record("rejected: \(json)"); continue }
            #expect(m.writeKey == "k1", "\(json)")
            #expect(!String(decoding: m.encoded, as: UTF8.self).contains("k1") && m.body.objectValue?.keys.contains { $0.lowercased().contains("key") } == false, "\(json)")
        }
        #expect(try errors(#"{"type":"identify","userId":"u1","writeKey":"a","write_key":"b"}"#) == ["write_key: sent as both write_key and writeKey with different values"])
        // An empty or non-string key is no key, and taken out all the same.
        for json in [#"{"type":"identify","userId":"u1"}"#, #"{"type":"identify","userId":"u1","writeKey":""}"#, #"{"type":"identify","userId":"u1","write_key":7}"#] {
            guard case .success(let none) = try normalize(json) else { Issue.record("rejected: \(json)"); continue }
            #expect(none.writeKey == nil && none.body.objectValue?.keys.contains { $0.lowercased().contains("key") } == false, "\(json)")
        }
    }

    @Test func segmentIdentifyIsCanonical() throws {
        let b = try body(Self.segmentIdentify)
        #expect(b["user_id"] == .string("u1"))
        #expect(b["message_id"] == .string("m1"))
        #expect(b["anonymous_id"] == nil && b["anonymousId"] == nil, "a null anonymousId is no id")
        #expect(b["timestamp"] == .string("2026-11-29T12:44:38.602+00:00"), "the SDK's timestamp (an offset, not Z) is kept as sent")
        #expect(b["traits"] == .object(Self.canonicalTraits), "reserved traits in snake_case, name filled; a naive datetime is a date")
        #expect(b["context"]?.objectValue?["library"]?.objectValue?["name"] == .string("analytics-python"))
    }

    @Test func rudderStackIdentifyTraitsUnderContextBecomeTheTraits() throws {
        let b = try body(Self.rudderIdentify)
        #expect(b["traits"] == .object(Self.canonicalTraits), "context.traits delivered as the identify's traits, canonical")
        let context = try #require(b["context"]?.objectValue)
        #expect(context.keys == ["ip", "library"], "the rest of the context is kept, in its order; the traits moved")
        #expect(context["library"]?.objectValue?["version"] == .string("2.1.9"))
        #expect(b["timestamp"] == .string("2026-11-29T12:44:38.603044+00:00"), "microseconds are ISO-8601 too")
        #expect(b["channel"] == .string("server"), "unknown top-level fields pass through")
        #expect(b["integrations"] == .object(["All": .bool(true)]))
    }

    @Test func contextTraitsErrorsNameThePathTheAppSent() throws {
        #expect(try errors(#"{"type":"identify","userId":"u","context":{"traits":{"age":"old","first name":"x"}}}"#) == [
            "context.traits[\"first name\"]: keys must not contain a space or a full stop",
            "context.traits.age: expected a number, got a string",
        ])
    }

    @Test func contextTraitsAreMovedOnlyWhenTheCallHasNoTraitsOfItsOwn() throws {
        let empty = try body(#"{"type":"identify","userId":"u","traits":{},"context":{"traits":{"firstName":"Ada"}}}"#)
        #expect(empty["traits"] == .object(["first_name": .string("Ada")]))
        #expect(empty["context"] == .object([:]))

        let both = try body(#"{"type":"identify","userId":"u","traits":{"plan":"pro"},"context":{"traits":{"firstName":"Ada"}}}"#)
        #expect(both["traits"] == .object(["plan": .string("pro")]), "the call's own traits win")
        #expect(both["context"] == .object(["traits": .object(["firstName": .string("Ada")])]), "and the context is kept as sent")

        let track = try body(#"{"type":"track","userId":"u","event":"e","context":{"traits":{"firstName":"Ada"}}}"#)
        #expect(track["traits"] == nil, "only an identify's traits move: a track's context.traits describe the user, as sent")
        #expect(track["context"] == .object(["traits": .object(["firstName": .string("Ada")])]))

        let notObject = try body(#"{"type":"identify","userId":"u","context":{"traits":"x"}}"#)
        #expect(notObject["traits"] == nil)
        #expect(notObject["context"] == .object(["traits": .string("x")]))
    }

    @Test func normalizingTwiceChangesNothing() throws {
        guard case .success(let once) = try normalize(Self.rudderIdentify) else { Issue.record("rejected"); return }
        guard case .success(let twice) = normalizer.normalize(once.body, endpointType: nil, context: context) else { Issue.record("rejected"); return }
        #expect(once.encoded == twice.encoded)
    }

    @Test func dateTraitsMayBeLocalDateTimesButTimestampsNeedAZone() throws {
        for s in ["2020-01-02T03:04:05", "2020-01-02T03:04:05.123456", "2020-01-02T03:04:05+00:00", "2020-01-02"] {
            let b = try body(#"{"type":"identify","userId":"u","traits":{"createdAt":"\#(s)"}}"#)
            #expect(b["traits"] == .object(["created_at": .string(s)]), "\(s) is accepted and kept as sent")
        }
        for s in ["2020-01-02T03:04", "2020-01-02T03:04:05.", "2020-01-02 03:04:05", "2020-01-02T03:04:05 ", "2020-13-02T03:04:05"] {
            #expect(try errors(#"{"type":"identify","userId":"u","traits":{"created_at":"\#(s)"}}"#).first?.hasPrefix("traits.created_at: expected an ISO-8601 date") == true, "\(s)")
        }
        #expect(try errors(#"{"type":"identify","userId":"u","timestamp":"2020-01-02T03:04:05"}"#).first?.hasPrefix("timestamp: expected an ISO-8601 date-time") == true,
                "a timestamp without its zone is ambiguous")
    }
}
