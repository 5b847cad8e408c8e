import Foundation
import Testing
@testable import RelayMessage

@Suite struct JSONParserTests {
    func parse(_ s: String, depth: Int = 64) throws -> JSONValue { try JSONValue.parse(Array(s.utf8), maxDepth: depth) }

    @Test func scalarsAndContainers() throws {
        #expect(try parse(#" {"a":[1,-2,3.5,1e3,true,false,null,"x"]} "#) == .object(["a": .array([
            .int(1), .int(-2), .double(3.5), .double(1000), .bool(true), .bool(false), .null, .string("x"),
        ])]))
        #expect(try parse("9223372036854775807") == .int(.max))
        #expect(try parse("9223372036854775808") == .double(9_223_372_036_854_775_808))
        #expect(try parse("[]") == .array([]))
        #expect(try parse("{}") == .object([:]))
    }

    @Test func escapesAndUnicode() throws {
        #expect(try parse(#""a\"b\\c\/d\n\t\u00e9\ud83d\ude00""#) == .string("a\"b\\c/d\n\té😀"))
        #expect(try parse(#""héllo 😀""#) == .string("héllo 😀"))
    }

    @Test(arguments: [
        "", "{", "[1,]", "{\"a\":1,}", "01", "-", "1.", "1e", "+1", "NaN", "tru", "nul",
        "\"unterminated", "\"\\x\"", "\"\\ud83d\"", "\"\\ude00\"", "\"a\u{01}b\"", "{\"a\" 1}", "{1:2}",
        "[1 2]", "1 2", "// c\n1", "'x'",
    ])
    func invalidDocumentsAreRefused(_ s: String) {
        #expect(throws: JSONParseError.self) { try parse(s) }
    }

    @Test func anErrorDeepInsideLargeContainersIsReportedAndTheRestReleased() throws {
        // 40 members and 40 elements on the scratch stacks (past their first capacity), long
        // strings and nested containers among them, then a syntax error at the very end.
        let long = String(repeating: "x", count: 100)
        let members = (0..<40).map { #""k\#($0)":["\#(long)",{"n":[\#($0),"\#(long)"]}]"# }.joined(separator: ",")
        let elements = (0..<40).map { #"{"e":"\#(long)\#($0)"}"# }.joined(separator: ",")
        let good = #"{\#(members),"list":[\#(elements)]}"#
        let value = try JSONValue.parse(Array(good.utf8), maxDepth: 64)
        #expect(value.objectValue?.count == 41)
        #expect(value.objectValue?["list"].flatMap { if case .array(let a) = $0 { a.count } else { nil } } == 40)
        for broken in [String(good.dropLast()), String(good.dropLast(2)) + ",]}", good + "x"] {
            #expect(throws: JSONParseError.self) { try JSONValue.parse(Array(broken.utf8), maxDepth: 64) }
        }
    }

    @Test func invalidUTF8IsRefusedNotRepaired() {
        #expect(throws: JSONParseError.self) { try JSONValue.parse([0x22, 0xC3, 0x28, 0x22], maxDepth: 64) }
    }

    @Test func depthIsBoundedWhileParsing() throws {
        #expect(throws: JSONParseError.self) { try parse(String(repeating: "[", count: 100_000)) }
        #expect(try parse(String(repeating: "[", count: 3) + String(repeating: "]", count: 3), depth: 3) != .null)
        #expect(throws: JSONParseError.self) { try parse(#"{"a":{"b":{"c":{}}}}"#, depth: 3) }
    }

    /// Generated documents: our parser and Foundation's agree, and encoding round-trips.
    @Test func agreesWithFoundationOnGeneratedDocuments() throws {
        var rng = NormalizationPropertyTests.SplitMix(state: 7)
        for _ in 0..<300 {
            let doc = NormalizationPropertyTests.randomValue(&rng, depth: 0)
            let bytes = doc.encoded()
            #expect(try JSONValue.parse(bytes, maxDepth: 64) == doc)
            let foundation = try JSONSerialization.jsonObject(with: Data(bytes), options: .fragmentsAllowed)
            let reencoded = try JSONSerialization.data(withJSONObject: foundation, options: [.sortedKeys, .fragmentsAllowed])
            #expect(try JSONValue.parse(Array(reencoded), maxDepth: 64) == doc)
        }
    }
}
