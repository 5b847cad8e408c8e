import Foundation
import Testing
@testable import RelayMessage

/// DESIGN §3: object keys compared byte for byte and kept in the order sent;
/// a key repeated in one object refuses the call with its path.
@Suite struct OrderedKeysTests {
    static let clock = Date(timeIntervalSince1970: 1_700_000_000.123)
    let context = NormalizeContext(receivedAt: OrderedKeysTests.clock, makeMessageID: { "generated-id" })

    /// Parses leniently and normalizes, as ingest does.
    func normalize(_ json: String, type: CallType? = .identify) throws -> Result<NormalizedMessage, MessageRejection> {
        var duplicates: [DuplicateKey] = []
        let value = try JSONValue.parse(Array(json.utf8), maxDepth: 64, duplicateKeys: &duplicates)
        return MessageNormalizer().normalize(value, endpointType: type, context: context, duplicateKeys: duplicates)
    }

    func wire(_ json: String) throws -> String {
        let result = try normalize(json)
        guard case .success(let m) = result else { Issue.record("rejected: \(result)"); return "" }
        return String(decoding: m.encoded, as: UTF8.self)
    }

    /// Whether `needle`'s bytes occur in `haystack`'s (String.contains would match canonical equivalents).
    func containsBytes(_ haystack: String, _ needle: String) -> Bool {
        let h = Array(haystack.utf8), n = Array(needle.utf8)
        guard n.count <= h.count else { return false }
        return (0...(h.count - n.count)).contains { h[$0..<($0 + n.count)].elementsEqual(n) }
    }

    func errors(_ json: String) throws -> [String] {
        guard case .failure(let r) = try normalize(json) else { Issue.record("accepted: \(json)"); return [] }
        return r.errors.map(\.description)
    }

    // MARK: Unicode

    @Test func canonicallyEquivalentKeysAreTwoKeysAndBothAreDelivered() throws {
        // "\u00e9" (é, one scalar) and "e\u0301" (e + combining acute): equal as Swift Strings, not as bytes.
        #expect("\u{E9}" == "e\u{301}", "the premise: Swift's String == follows canonical equivalence")
        let json = #"{"user_id":"u","traits":{"\u00e9":1,"e\u0301":2}}"#
        let value = try JSONValue.parse(Array(json.utf8), maxDepth: 64)
        let traits = try #require(value.objectValue?["traits"]?.objectValue)
        #expect(traits.count == 2)
        #expect(traits["\u{E9}"] == .int(1))
        #expect(traits["e\u{301}"] == .int(2))

        let out = try wire(json)
        #expect(containsBytes(out, "\"traits\":{\"\u{E9}\":1,\"e\u{301}\":2}"), "both traits, each with its own bytes: \(out)")
        #expect(!containsBytes(out, "\"traits\":{\"\u{E9}\":1,\"\u{E9}\":2}"), "the second key is not normalized to the first")
        let delivered = try JSONValue.parse(Array(out.utf8), maxDepth: 64)
        #expect(delivered.objectValue?["traits"]?.objectValue?.count == 2)
    }

    @Test func equivalentKeysInALargeObjectAreStillTwoKeys() throws {
        // Past the scan limit the parser checks duplicates with a byte-keyed hash set.
        let fillers = (0..<40).map { #""k\#($0)":\#($0)"# }.joined(separator: ",")
        let value = try JSONValue.parse(Array(#"{\#(fillers),"\u00e9":1,"e\u0301":2}"#.utf8), maxDepth: 64)
        #expect(value.objectValue?.count == 42)
    }

    @Test func stringValuesCompareAsBytes() throws {
        #expect(JSONValue.string("\u{E9}") != JSONValue.string("e\u{301}"))
        #expect(Set([JSONValue.string("\u{E9}"), JSONValue.string("e\u{301}")]).count == 2)
        // So two spellings of one id with canonically equivalent but different values disagree.
        #expect(try errors(#"{"userId":"\u00e9","user_id":"e\u0301"}"#) == ["user_id: sent as both user_id and userId with different values"])
    }

    // MARK: Duplicate keys

    @Test func aRepeatedKeyRefusesTheDocumentWithItsPath() throws {
        do {
            _ = try JSONValue.parse(Array(#"{"user_id":"u","traits":{"plan":"a","plan":"b"}}"#.utf8), maxDepth: 64)
            Issue.record("accepted")
        } catch {
            #expect(error.description == "traits.plan: duplicate key")
            #expect(error.duplicateKeys == [DuplicateKey(path: [.key("traits"), .key("plan")])])
        }
    }

    @Test func everyRepeatedKeyIsReportedWithTheCallsOtherProblems() throws {
        let e = try errors(#"{"traits":{"plan":"a","plan":"a","age":"old"},"context":{"list":[{"x":1},{"x":1,"x":2}]},"context":{}}"#)
        #expect(e == [
            "traits.plan: duplicate key",
            "context.list[1].x: duplicate key",
            "context: duplicate key",
            "user_id: required: a call needs a user_id or an anonymous_id (a non-empty string)",
            "traits.age: expected a number, got a string",
        ])
    }

    @Test func theSameValueTwiceIsStillADuplicate() throws {
        #expect(try errors(#"{"user_id":"u","user_id":"u"}"#) == ["user_id: duplicate key"])
    }

    @Test func keysThatNeedQuotingAreQuotedInTheDuplicatesPath() throws {
        #expect(try errors(#"{"user_id":"u","properties":{"a b":{"c":1,"c":2}}}"#).contains(#"properties["a b"].c: duplicate key"#))
    }

    @Test func aDuplicateInALargeObjectIsFoundWithoutScanning() throws {
        let keys = (0..<500).map { #""k\#($0)":\#($0)"# }.joined(separator: ",")
        var duplicates: [DuplicateKey] = []
        let value = try JSONValue.parse(Array(#"{\#(keys),"k250":0,"k499":1}"#.utf8), maxDepth: 64, duplicateKeys: &duplicates)
        #expect(duplicates.map { $0.fieldError().description } == ["k250: duplicate key", "k499: duplicate key"])
        #expect(value.objectValue?.count == 500)
        #expect(value.objectValue?["k250"] == .int(250), "the lenient parse keeps the first value")
    }

    @Test func duplicatesInsideABatchBelongToTheirCall() throws {
        var duplicates: [DuplicateKey] = []
        _ = try JSONValue.parse(Array(#"{"batch":[{"a":1},{"b":{"c":1,"c":2}}],"context":{"d":1,"d":1}}"#.utf8), maxDepth: 64, duplicateKeys: &duplicates)
        #expect(duplicates.map { $0.callIndex(inArray: "batch") } == [1, nil])
        #expect(duplicates[0].relative(toCall: 1, inArray: "batch")?.fieldError().description == "b.c: duplicate key")
        #expect(duplicates[0].relative(toCall: 0, inArray: "batch") == nil)
        #expect(duplicates[1].fieldError().description == "context.d: duplicate key")
    }

    // MARK: Order

    @Test func innerObjectsKeepTheOrderSent() throws {
        let out = try wire(#"{"userId":"u","traits":{"zeta":1,"alpha":2,"Mid":{"z":[{"y":1,"x":2}],"a":null},"firstName":"Ada","lastName":"Lovelace","\u00e9":4},"context":{"z":1,"a":2}}"#)
        #expect(containsBytes(out, #""traits":{"zeta":1,"alpha":2,"Mid":{"z":[{"y":1,"x":2}],"a":null},"first_name":"Ada","last_name":"Lovelace","\#u{E9}":4,"name":"Ada Lovelace"}"#),
                "renamed traits keep their place, the filled name comes last: \(out)")
        #expect(containsBytes(out, #""context":{"z":1,"a":2}"#))
    }

    @Test func theEnvelopeHasOneOrderKnownFieldsFirstThenTheOthersAsSent() throws {
        let out = try wire(#"{"zz":1,"userId":"u","version":"1.2","aa":{"b":1,"a":2},"context":{"ip":"1.2.3.4"},"sentAt":"2017-02-09T12:08:32.111Z"}"#)
        #expect(Array(out.utf8) == Array(#"{"context":{"ip":"1.2.3.4"},"message_id":"generated-id","received_at":"2023-11-14T22:13:20.123Z","timestamp":"2023-11-14T22:13:20.123Z","type":"identify","user_id":"u","zz":1,"version":"1.2","aa":{"b":1,"a":2}}"#.utf8))
    }

    @Test func batchContextComesFirstAndTheMessagesOwnValuesReplaceItInPlace() throws {
        let ctx = NormalizeContext(receivedAt: Self.clock, makeMessageID: { "id" },
                                   batchContext: ["library": .string("sdk"), "ip": .string("1.1.1.1")])
        let v = try JSONValue.parse(Array(#"{"type":"identify","user_id":"u","context":{"locale":"fr","ip":"2.2.2.2"}}"#.utf8), maxDepth: 64)
        guard case .success(let m) = MessageNormalizer().normalize(v, endpointType: nil, context: ctx) else { Issue.record("rejected"); return }
        #expect(containsBytes(String(decoding: m.encoded, as: UTF8.self), #""context":{"library":"sdk","ip":"2.2.2.2","locale":"fr"}"#))
    }

    @Test func mergingLargeObjectsGivesWhatSettingEachMemberGives() {
        var rng = NormalizationPropertyTests.SplitMix(state: 99)
        for (a, b) in [(3, 4), (40, 40), (200, 3), (5, 300)] {
            var base = JSONObject(), other = JSONObject()
            for i in 0..<a { base["k\(i * 3)"] = .int(Int64(i)) }
            for i in 0..<b { other["k\(Int.random(in: 0..<(a * 4 + b), using: &rng))"] = .string("o\(i)") }
            other["\u{E9}"] = .int(1)
            base["e\u{301}"] = .int(2)
            var expected = base
            for (k, v) in other { expected[k] = v }
            #expect(base.merging(other) == expected, "\(a) x \(b)")
            #expect(base.merging(other).count == expected.count)
        }
    }

    @Test func objectEqualityIsOrderSensitive() {
        #expect(JSONValue.object(["a": .int(1), "b": .int(2)]) != .object(["b": .int(2), "a": .int(1)]))
        #expect(JSONValue.object(["a": .int(1), "b": .int(2)]) == .object(["a": .int(1), "b": .int(2)]))
    }

    @Test func editsKeepOrder() {
        var o: JSONObject = ["a": .int(1), "b": .int(2), "c": .int(3)]
        o["b"] = .int(20)
        o["d"] = .int(4)
        o["a"] = nil
        #expect(o.keys == ["b", "c", "d"])
        #expect(o["b"] == .int(20))
        o.renameMember(at: 1, to: "see")
        #expect(JSONValue.object(o).encoded() == Array(#"{"b":20,"see":3,"d":4}"#.utf8))
    }

    // MARK: Same bytes

    @Test func normalizingTheOutputAgainGivesTheSameBytes() throws {
        for json in [SeedExamplesTests.complete, SeedExamplesTests.typical,
                     #"{"userId":7,"traits":{"firstName":"A\"B","e\u0301":"\u0000\t\u2028","company":{"employeeCount":2,"x":[1.5,-0,1e300]}},"z":{"b":1,"a":2}}"#] {
            guard case .success(let once) = try normalize(json) else { Issue.record("rejected \(json)"); continue }
            guard case .success(let twice) = try normalize(String(decoding: once.encoded, as: UTF8.self)) else { Issue.record("normalized output rejected"); continue }
            #expect(twice.encoded == once.encoded)
            guard case .success(let again) = try normalize(json) else { continue }
            #expect(again.encoded == once.encoded, "the same input always gives the same bytes")
        }
    }
}

@Suite struct JSONEncodingTests {
    /// The encoding as a String; compared below through `bytes`, not String ==.
    func text(_ v: JSONValue) -> [UInt8] { v.encoded() }
    func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

    @Test func stringsEscapeOnlyWhatMustBeEscaped() {
        #expect(text(.string("")) == bytes(#""""#))
        #expect(text(.string("plain ascii")) == bytes(#""plain ascii""#))
        #expect(text(.string("a\"b\\c/d\ne\rf\tg\u{01}h\u{1F}i\u{7F}")) == bytes(#""a\"b\\c/d\ne\rf\tg\u0001h\u001fi\#u{7F}""#))
        #expect(text(.string("é😀\u{2028}")) == bytes("\"é😀\u{2028}\""), "non-ASCII is copied as UTF-8")
        #expect(text(.string("\"")) == bytes(#""\"""#))
        #expect(text(.string("x\u{00}")) == bytes(#""x\u0000""#))
        let long = String(repeating: "abcdefgh", count: 100) + "\n" + String(repeating: "é", count: 50)
        #expect(text(.string(long)) == bytes("\"" + String(repeating: "abcdefgh", count: 100) + "\\n" + String(repeating: "é", count: 50) + "\""))
    }

    /// Every ASCII byte at every offset around the 8-byte steps of the scan,
    /// against a byte-at-a-time reference; and through `encodeString(_:into:)`.
    @Test func everyByteIsEscapedOrCopiedAtEveryOffset() throws {
        func reference(_ s: String) -> [UInt8] {
            var out: [UInt8] = [UInt8(ascii: "\"")]
            for b in s.utf8 {
                switch b {
                case UInt8(ascii: "\""): out += Array(#"\""#.utf8)
                case UInt8(ascii: "\\"): out += Array(#"\\"#.utf8)
                case 0x0A: out += Array(#"\n"#.utf8)
                case 0x0D: out += Array(#"\r"#.utf8)
                case 0x09: out += Array(#"\t"#.utf8)
                case 0..<0x20: out += Array(String(format: "\\u%04x", b).utf8)
                default: out.append(b)
                }
            }
            return out + [UInt8(ascii: "\"")]
        }
        for b in UInt8(0)...0x7F {
            for offset in 0..<18 {
                for tail in [0, 1, 7, 9] {
                    let s = String(repeating: "a", count: offset) + String(UnicodeScalar(b)) + String(repeating: "é", count: tail)
                    let expected = reference(s)
                    #expect(JSONValue.string(s).encoded() == expected, "byte \(b) at \(offset)")
                    var appended: [UInt8] = [1, 2]
                    JSONValue.encodeString(s, into: &appended)
                    #expect(appended == [1, 2] + expected)
                    #expect(try JSONValue.parse(expected, maxDepth: 1) == .string(s))
                }
            }
        }
    }

    @Test func encodeIntoAppends() throws {
        var out = Array("x".utf8)
        JSONValue.object(["a": .array([.int(1), .null, .bool(true)])]).encode(into: &out)
        #expect(out == Array(#"x{"a":[1,null,true]}"#.utf8))
        let big = JSONValue.array((0..<2000).map { .string("item \($0)") })
        #expect(try JSONValue.parse(big.encoded(), maxDepth: 2) == big, "a buffer that grows many times")
    }

    @Test func numbers() {
        #expect(text(.array([.int(0), .int(7), .int(-7), .int(10), .int(.max), .int(.min)])) == bytes("[0,7,-7,10,9223372036854775807,-9223372036854775808]"))
        #expect(text(.array([.double(3), .double(-2.5), .double(1e300)])) == bytes("[3,-2.5,1e+300]"))
    }

    @Test func integersParseExactlyAtEveryLength() throws {
        for text in ["0", "-0", "7", "-12", "999999999999999999", "-999999999999999999", "1000000000000000000",
                     "9223372036854775807", "-9223372036854775808"] {
            #expect(try JSONValue.parse(Array(text.utf8), maxDepth: 1) == .int(Int64(text)!), "\(text)")
        }
        #expect(try JSONValue.parse(Array("-9223372036854775809".utf8), maxDepth: 1) == .double(-9.223372036854775809e18))
    }

    @Test func invalidUTF8IsRefusedOnEveryPath() throws {
        for bytes: [UInt8] in [
            [0x22, 0x61, 0xC3, 0x22],                  // truncated sequence
            [0x22, 0xED, 0xA0, 0x80, 0x22],            // an encoded surrogate
            [0x22, 0xC0, 0xAF, 0x22],                  // overlong
            [0x22, 0x5C, 0x6E, 0xC3, 0x28, 0x22],      // after an escape (slow path)
            [0x22, 0xEF, 0xBF, 0xBD, 0xFF, 0x22],      // a real U+FFFD, then a bad byte
        ] {
            #expect(throws: JSONParseError.self) { try JSONValue.parse(bytes, maxDepth: 4) }
        }
        #expect(try JSONValue.parse([0x22, 0xEF, 0xBF, 0xBD, 0x22], maxDepth: 1) == .string("\u{FFFD}"))
    }

    @Test func escapedAndRawSpellingsDecodeToTheSameBytes() throws {
        #expect(try JSONValue.parse(Array(#""\u00e9\u0065\u0301\ud83d\ude00""#.utf8), maxDepth: 1) == .string("\u{E9}e\u{301}😀"))
        #expect(try JSONValue.parse(Array(#""\u00e9""#.utf8), maxDepth: 1) != .string("e\u{301}"))
    }
}
