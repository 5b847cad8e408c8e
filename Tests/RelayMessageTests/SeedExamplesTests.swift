import Foundation
import Testing
@testable import RelayMessage

/// The seed's own examples, braces restored, and the core identify rules.
@Suite struct SeedExamplesTests {
    static let clock = Date(timeIntervalSince1970: 1_700_000_000.123)
    let normalizer = MessageNormalizer()
    let context = NormalizeContext(receivedAt: SeedExamplesTests.clock, makeMessageID: { "generated-id" })

    static let typical = """
    {
      "type": "identify",
      "traits": {
        "name": "Mark Twain",
        "email": "",
        "plan": "premium",
        "logins": 5
      },
      "user_id": "97980cfea0067"
    }
    """

    static let complete = """
    {
      "anonymousId": "59f75a945b289f44d6e8aca5",
      "context": {
        "ip": "",
        "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11) AppleWebKit/601.1.32 (KHTML, like Gecko) Version/8.1 Safari/601.1.32"
      },
      "message_id": "aaf06138-2ceb-4881-9c73-79a1c782f370",
      "received_at": "2017-02-09T12:08:32.387Z",
      "sent_at": "2017-02-09T12:08:32.111Z",
      "timestamp": "2017-02-09T12:08:32.111Z",
      "traits": {
        "name": "Mark Twain",
        "email": "",
        "plan": "premium",
        "logins": 5,
        "address": {
          "street": "351 Farmington Avenue",
          "city": "Hartford",
          "state": "CT",
          "postal_code": "06105",
          "country": "USA"
        }
      },
      "type": "identify",
      "user_id": "97980cfea0067",
      "version": "1.2"
    }
    """

    func normalize(_ json: String, type: CallType? = .identify) throws -> Result<NormalizedMessage, MessageRejection> {
        normalizer.normalize(try JSONValue.parse(Array(json.utf8), maxDepth: 64), endpointType: type, context: context)
    }

    func body(_ json: String, type: CallType? = .identify) throws -> JSONObject {
        let result = try normalize(json, type: type)
        guard case .success(let m) = result else { Issue.record("rejected: \(result)"); return [:] }
        return m.body.objectValue ?? [:]
    }

    func errors(_ json: String, type: CallType? = .identify) throws -> [String] {
        guard case .failure(let r) = try normalize(json, type: type) else { Issue.record("accepted: \(json)"); return [] }
        return r.errors.map(\.description)
    }

    @Test func typicalSeedPayloadIsValidAndKeptAsSent() throws {
        let b = try body(Self.typical)
        #expect(b["user_id"] == .string("97980cfea0067"))
        #expect(b["traits"] == .object(["name": .string("Mark Twain"), "email": .string(""), "plan": .string("premium"), "logins": .int(5)]))
        #expect(b["message_id"] == .string("generated-id"))
        #expect(b["received_at"] == .string("2023-11-14T22:13:20.123Z"))
        #expect(b["timestamp"] == b["received_at"], "no timestamp sent: it is the receive time")
    }

    @Test func completeSeedPayloadIsValidAndCanonical() throws {
        let b = try body(Self.complete)
        #expect(b["anonymous_id"] == .string("59f75a945b289f44d6e8aca5"))
        #expect(b["anonymousId"] == nil)
        #expect(b["message_id"] == .string("aaf06138-2ceb-4881-9c73-79a1c782f370"))
        #expect(b["timestamp"] == .string("2017-02-09T12:08:32.111Z"), "historical timestamp kept")
        #expect(b["received_at"] == .string("2023-11-14T22:13:20.123Z"), "received_at is the relay's clock")
        #expect(b["version"] == .string("1.2"), "unknown top-level fields pass through")
        #expect(b["context"]?.objectValue?["userAgent"] != nil, "context passes through")
        #expect(b["traits"]?.objectValue?["address"]?.objectValue?["postal_code"] == .string("06105"))
    }

    @Test func canonicalBytesUseSnakeCaseAndSortedKeys() throws {
        guard case .success(let m) = try normalize(#"{"userId":"u1","messageId":"m1","timestamp":"2017-02-09T12:08:32Z"}"#) else {
            Issue.record("rejected"); return
        }
        #expect(String(decoding: m.encoded, as: UTF8.self) ==
            #"{"message_id":"m1","received_at":"2023-11-14T22:13:20.123Z","timestamp":"2017-02-09T12:08:32Z","type":"identify","user_id":"u1"}"#)
    }

    @Test func theRelaySetsItsOwnTopLevelFieldsWhateverTheAppSent() throws {
        // A null message_id is generated, the app's received_at is replaced,
        // sent_at is left out (the forwarder stamps it), unknown fields follow
        // in the order sent, and timestamp falls back to the receive time.
        let sent = #"{"zeta":1,"receivedAt":"2001-01-01T00:00:00.000Z","messageId":null,"sentAt":"2017-02-09T12:08:32.111Z","userId":"u","alpha":2}"#
        let encoded = String(decoding: JSONValue.object(try body(sent)).encoded(), as: UTF8.self)
        #expect(encoded == #"{"message_id":"generated-id","received_at":"2023-11-14T22:13:20.123Z","timestamp":"2023-11-14T22:13:20.123Z","type":"identify","user_id":"u","zeta":1,"alpha":2}"#)
        // An app's own timestamp and message_id are kept.
        let kept = String(decoding: JSONValue.object(try body(#"{"timestamp":"2017-02-09T12:08:32.111Z","user_id":"u","message_id":"m1"}"#)).encoded(), as: UTF8.self)
        #expect(kept == #"{"message_id":"m1","received_at":"2023-11-14T22:13:20.123Z","timestamp":"2017-02-09T12:08:32.111Z","type":"identify","user_id":"u"}"#)
    }

    @Test func userIdOrAnonymousIdIsRequired() throws {
        #expect(try errors(#"{"traits":{}}"#) == ["user_id: required: a call needs a user_id or an anonymous_id (a non-empty string)"])
        #expect(try errors(#"{"user_id":""}"#).contains("user_id: must not be empty"))
        #expect(try errors(#"{"user_id":["a"]}"#).contains("user_id: expected a string or a number, got an array"))
    }

    @Test func numericIdsBecomeStrings() throws {
        #expect(try body(#"{"userId":42}"#)["user_id"] == .string("42"))
        #expect(try body(#"{"anonymous_id":7.0}"#)["anonymous_id"] == .string("7"))
    }

    @Test func bothSpellingsWithDifferentValuesIsAnError() throws {
        #expect(try errors(#"{"userId":"a","user_id":"b"}"#) == ["user_id: sent as both user_id and userId with different values"])
        #expect(try body(#"{"userId":"a","user_id":"a"}"#)["user_id"] == .string("a"))
        // One name under both spellings, others camelCase only: every alias is still settled.
        let mixed = try body(#"{"anonymousId":"x","userId":"a","user_id":"a","previousId":"p","groupId":"g"}"#)
        #expect(mixed.map(\.key).filter { $0.contains("_") }.sorted() == ["anonymous_id", "group_id", "message_id", "previous_id", "received_at", "user_id"])
        #expect(!mixed.map(\.key).contains { $0.hasSuffix("Id") })
        #expect(mixed["anonymous_id"] == .string("x") && mixed["previous_id"] == .string("p") && mixed["group_id"] == .string("g"))
        #expect(try errors(#"{"anonymousId":"x","userId":"a","user_id":"b","groupId":"g"}"#) == ["user_id: sent as both user_id and userId with different values"])
    }

    @Test func traitsMustBeAnObject() throws {
        #expect(try errors(#"{"user_id":"u","traits":"premium"}"#) == ["traits: expected an object, got a string"])
    }

    @Test func everyProblemIsReportedWithItsPath() throws {
        let e = try errors(#"{"traits":{"age":"old","address":{"postalCode":6105},"a.b":{"c d":1}},"timestamp":"yesterday"}"#)
        #expect(Set(e) == [
            "user_id: required: a call needs a user_id or an anonymous_id (a non-empty string)",
            "traits.age: expected a number, got a string",
            "traits.address.postal_code: expected a string, got a number",
            #"traits["a.b"]: keys must not contain a space or a full stop"#,
            #"traits["a.b"]["c d"]: keys must not contain a space or a full stop"#,
            #"timestamp: expected an ISO-8601 date-time such as 2017-02-09T12:08:32.111Z, got "yesterday""#,
        ])
    }

    @Test func keysWithSpaceOrFullStopAreRefusedAtAnyDepthInProperties() throws {
        let e = try errors(#"{"type":"track","event":"Signed Up","user_id":"u","properties":{"list":[{"ok":1,"not ok":2}]}}"#, type: nil)
        #expect(e == [#"properties.list[0]["not ok"]: keys must not contain a space or a full stop"#])
    }

    @Test func nameIsFilledFromFirstAndLastName() throws {
        let t = try body(#"{"user_id":"u","traits":{"firstName":"Mark","lastName":"Twain"}}"#)["traits"]?.objectValue
        #expect(t?["name"] == .string("Mark Twain"))
        #expect(t?["first_name"] == .string("Mark"))
        #expect(t?["firstName"] == nil)
        let kept = try body(#"{"user_id":"u","traits":{"first_name":"Mark","last_name":"Twain","name":"Samuel Clemens"}}"#)
        #expect(kept["traits"]?.objectValue?["name"] == .string("Samuel Clemens"))
    }

    @Test func messageIdMustBeShorterThan100Characters() throws {
        let long = String(repeating: "x", count: 100)
        #expect(try errors(#"{"user_id":"u","message_id":"\#(long)"}"#) == ["message_id: must be shorter than 100 characters (has 100)"])
        #expect(try body(#"{"user_id":"u","message_id":"\#(String(long.dropFirst()))"}"#)["message_id"] == .string(String(long.dropFirst())))
    }

    @Test func typeMustMatchTheEndpoint() throws {
        #expect(try errors(#"{"type":"track","user_id":"u","event":"x"}"#) == [#"type: is "track" but this endpoint takes identify calls"#])
        #expect(try errors(#"{"user_id":"u"}"#, type: nil) == ["type: required: one of identify, track, page, screen, group, alias"])
        #expect(try errors(#"{"type":"explode","user_id":"u"}"#, type: nil).first?.hasPrefix(#"type: unknown call type "explode""#) == true)
    }

    @Test func theReservedTraitsAreIdentifysAGroupsTraitsAreKeptAsSent() throws {
        // A group's traits describe a company: `company` as a string and
        // `createdAt` in camelCase are its own conventions, not identify's.
        let group = try body(#"{"type":"group","user_id":"u","group_id":"g1","traits":{"company":"Acme","createdAt":"2020-01-01","employees":"50"}}"#, type: nil)
        #expect(group["traits"] == .object(["company": .string("Acme"), "createdAt": .string("2020-01-01"), "employees": .string("50")]))
        #expect(try errors(#"{"user_id":"u","traits":{"company":"Acme"}}"#) == ["traits.company: expected an object, got a string"])
        #expect(try errors(#"{"type":"group","user_id":"u","group_id":"g","traits":{"full name":"x"}}"#, type: nil).first?.contains("must not contain a space") == true,
                "the key rules still hold for every call")
    }

    @Test func oversizedMessageIsTooLarge() throws {
        let big = String(repeating: "a", count: 16 * 1024)
        guard case .failure(let r) = try normalize(#"{"user_id":"u","traits":{"bio":"\#(big)"}}"#) else { Issue.record("accepted"); return }
        #expect(r.kind == .tooLarge)
    }

    @Test func deepJSONIsRefusedBeforeDecoding() {
        let deep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        #expect(throws: JSONParseError.self) { try JSONValue.parse(Array(deep.utf8), maxDepth: 64) }
        let ok = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        #expect((try? JSONValue.parse(Array(ok.utf8), maxDepth: 64)) != nil)
    }

    @Test func batchContextMergesUnderTheMessagesOwn() throws {
        let ctx = NormalizeContext(receivedAt: Self.clock, makeMessageID: { "id" },
                                   batchContext: ["library": .string("sdk"), "ip": .string("1.1.1.1")])
        let v = try JSONValue.parse(Array(#"{"type":"identify","user_id":"u","context":{"ip":"2.2.2.2"}}"#.utf8), maxDepth: 64)
        guard case .success(let m) = normalizer.normalize(v, endpointType: nil, context: ctx) else { Issue.record("rejected"); return }
        #expect(m.body.objectValue?["context"] == .object(["library": .string("sdk"), "ip": .string("2.2.2.2")]))
    }
}

@Suite struct ISO8601Tests {
    @Test func formatsMillisecondsExactlyInUTC() {
        #expect(ISO8601.format(millis: 0) == "1970-01-01T00:00:00.000Z")
        #expect(ISO8601.format(millis: 1_486_642_112_387) == "2017-02-09T12:08:32.387Z")
        #expect(ISO8601.format(millis: 951_782_400_000) == "2000-02-29T00:00:00.000Z")
        #expect(ISO8601.format(millis: -1) == "1969-12-31T23:59:59.999Z")
        // The fixed-width years and either side of them.
        #expect(ISO8601.format(millis: -62_167_219_200_000) == "0000-01-01T00:00:00.000Z")
        #expect(ISO8601.format(millis: 253_402_300_799_999) == "9999-12-31T23:59:59.999Z")
        #expect(ISO8601.format(millis: 253_402_300_800_000) == "10000-01-01T00:00:00.000Z")
        #expect(ISO8601.format(millis: -62_167_219_200_001) == "00-1-12-31T23:59:59.999Z")
    }

    @Test func agreesWithTheParserAcrossCenturies() {
        var ms: Int64 = -2_208_988_800_000  // 1900-01-01
        while ms < 4_102_444_800_000 {       // 2100-01-01
            let s = ISO8601.format(millis: ms)
            let back = ISO8601.parseDateTime(s).map { Int64(($0.timeIntervalSince1970 * 1000).rounded()) }
            #expect(back == ms, "\(s)")
            ms += 86_400_000 * 97 + 3_600_123
        }
    }

    /// The integer fast path accepts only what Foundation's parser accepts,
    /// at the same instant, and leaves every other string to Foundation.
    @Test func theFastPathAgreesWithFoundation() {
        let withFraction = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
        let withoutFraction = Date.ISO8601FormatStyle()
        func foundation(_ s: String) -> Int64? {
            let d = (try? withFraction.parse(s)) ?? (try? withoutFraction.parse(s))
            return d.map { Int64(($0.timeIntervalSince1970 * 1000).rounded()) }
        }
        var generator = SystemRandomNumberGenerator()
        var accepted = 0
        for _ in 0..<4_000 {
            let year = Int.random(in: 1...9999, using: &generator) / (Bool.random(using: &generator) ? 1 : 4) + 1500
            let fields = [Int.random(in: 0...13, using: &generator), Int.random(in: 0...32, using: &generator),
                          Int.random(in: 0...24, using: &generator), Int.random(in: 0...60, using: &generator),
                          Int.random(in: 0...60, using: &generator)]
            func pad(_ v: Int, _ w: Int) -> String { String(repeating: "0", count: max(0, w - String(v).count)) + String(v) }
            let zones = ["Z", "+01:00", "-05:30", "+14:00", "-12:45", "+23:59", "+24:00", "z", "+0100", ""]
            let fraction = ["", ".\(pad(Int.random(in: 0...999, using: &generator), 3))", ".5", ".123456"].randomElement(using: &generator)!
            let s = "\(pad(year, 4))-\(pad(fields[0], 2))-\(pad(fields[1], 2))T\(pad(fields[2], 2)):\(pad(fields[3], 2)):\(pad(fields[4], 2))"
                + fraction + zones.randomElement(using: &generator)!
            if let fast = ISO8601.commonDateTimeMillis(s) {
                accepted += 1
                #expect(foundation(s) == fast, "\(s)")
            }
            let viaRelay = ISO8601.parseDateTime(s).map { Int64(($0.timeIntervalSince1970 * 1000).rounded()) }
            #expect(viaRelay == foundation(s), "\(s)")
        }
        #expect(accepted > 500)
        for s in ["2016-02-29T00:00:00Z", "2100-02-28T23:59:59.999-00:30", "1600-03-01T00:00:00+14:00", "9999-12-31T23:59:59.999Z"] {
            #expect(ISO8601.commonDateTimeMillis(s) != nil && ISO8601.commonDateTimeMillis(s) == foundation(s), "\(s)")
        }
        for s in ["2015-02-29T00:00:00Z", "2100-02-29T00:00:00Z", "2017-04-31T00:00:00Z", "2017-02-09T24:00:00Z",
                  "2017-02-09T12:08:32.111", "2017-02-09 12:08:32Z", "1500-01-01T00:00:00Z"] {
            #expect(ISO8601.commonDateTimeMillis(s) == nil, "\(s)")
        }
    }
}
