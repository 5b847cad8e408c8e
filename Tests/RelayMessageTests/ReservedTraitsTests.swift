import Foundation
import Testing
@testable import RelayMessage

/// Every reserved trait of the seed's table, valid and invalid, in both spellings.
@Suite struct ReservedTraitsTests {
    struct Case: CustomStringConvertible, Sendable {
        let path: [String]     // canonical path inside traits
        let valid: String      // a JSON value of the documented type
        let invalid: String    // a JSON value of another type
        var description: String { path.joined(separator: ".") }
    }

    static let cases: [Case] = [
        Case(path: ["age"], valid: "42", invalid: #""42""#),
        Case(path: ["avatar"], valid: #""https://x/a.png""#, invalid: "1"),
        Case(path: ["birthday"], valid: #""1990-05-17""#, invalid: #""17/05/1990""#),
        Case(path: ["created_at"], valid: #""2017-02-09T12:08:32Z""#, invalid: "1486642112"),
        Case(path: ["description"], valid: #""writer""#, invalid: "true"),
        Case(path: ["email"], valid: #""""#, invalid: "{}"),
        Case(path: ["first_name"], valid: #""Mark""#, invalid: "1"),
        Case(path: ["last_name"], valid: #""Twain""#, invalid: "1"),
        Case(path: ["name"], valid: #""Mark Twain""#, invalid: "[]"),
        Case(path: ["gender"], valid: #""m""#, invalid: "1"),
        Case(path: ["id"], valid: #""u1""#, invalid: "1"),
        Case(path: ["phone"], valid: #""+1 555""#, invalid: "5550100"),
        Case(path: ["title"], valid: #""VP of Engineering""#, invalid: "1"),
        Case(path: ["username"], valid: #""mtwain""#, invalid: "1"),
        Case(path: ["website"], valid: #""https://twain.example""#, invalid: "1"),
        Case(path: ["address"], valid: "{}", invalid: #""351 Farmington Avenue""#),
        Case(path: ["address", "street"], valid: #""351 Farmington Avenue""#, invalid: "351"),
        Case(path: ["address", "city"], valid: #""Hartford""#, invalid: "1"),
        Case(path: ["address", "state"], valid: #""CT""#, invalid: "1"),
        Case(path: ["address", "postal_code"], valid: #""06105""#, invalid: "6105"),
        Case(path: ["address", "country"], valid: #""USA""#, invalid: "1"),
        Case(path: ["company"], valid: "{}", invalid: #""ACME""#),
        Case(path: ["company", "name"], valid: #""ACME""#, invalid: "1"),
        Case(path: ["company", "id"], valid: "17", invalid: "true"),
        Case(path: ["company", "industry"], valid: #""anvils""#, invalid: "1"),
        Case(path: ["company", "employee_count"], valid: "250", invalid: #""250""#),
        Case(path: ["company", "plan"], valid: #""enterprise""#, invalid: "1"),
        Case(path: ["subscription"], valid: "{}", invalid: "[]"),
        Case(path: ["subscription", "plan_name"], valid: #""gold""#, invalid: "1"),
        Case(path: ["subscription", "plan_id"], valid: #""p1""#, invalid: "1"),
        Case(path: ["subscription", "status"], valid: #""trial active""#, invalid: #""trialing""#),
        Case(path: ["subscription", "payment_status"], valid: #""past due""#, invalid: #""late""#),
        Case(path: ["subscription", "plan_interval_count"], valid: "3", invalid: #""3""#),
        Case(path: ["subscription", "plan_interval_unit"], valid: #""month""#, invalid: #""fortnight""#),
        Case(path: ["subscription", "service_trial_period_start_at"], valid: #""2017-02-09T12:08:32Z""#, invalid: #""soon""#),
        Case(path: ["subscription", "service_trial_period_end_at"], valid: #""2017-02-09""#, invalid: "1"),
        Case(path: ["subscription", "service_period_start_at"], valid: #""2017-02-09T12:08:32.111Z""#, invalid: #""2017-13-45""#),
        Case(path: ["subscription", "service_period_end_at"], valid: #""2017-02-09T12:08:32+01:00""#, invalid: "{}"),
        Case(path: ["subscription", "service_period_cancelled_at"], valid: #""2017-02-09""#, invalid: #""never""#),
        Case(path: ["subscription", "due_date"], valid: #""2017-03-01""#, invalid: "20170301"),
        Case(path: ["subscription", "amount_in_cents"], valid: #""1999""#, invalid: "[]"),
        Case(path: ["subscription", "discount_amount_in_cents"], valid: #""100""#, invalid: "{}"),
        Case(path: ["subscription", "tax_amount_in_cents"], valid: "380", invalid: "false"),
        Case(path: ["subscription", "currency"], valid: #""usd""#, invalid: #""USD""#),
        Case(path: ["subscription", "discount_code"], valid: #""SPRING""#, invalid: "1"),
    ]

    static func camel(_ s: String) -> String { ReservedTraits.camelCase(s) }

    /// `{"user_id":"u","traits":{...path: value}}` with keys spelled by `spell`.
    static func call(_ c: Case, _ value: String, spell: (String) -> String) -> String {
        var inner = value
        for key in c.path.reversed() { inner = #"{"\#(spell(key))":\#(inner)}"# }
        return #"{"user_id":"u","traits":\#(inner)}"#
    }

    func run(_ json: String) throws -> Result<NormalizedMessage, MessageRejection> {
        MessageNormalizer().normalize(try JSONValue.parse(Array(json.utf8), maxDepth: 64), endpointType: .identify,
                                      context: NormalizeContext(receivedAt: Date(timeIntervalSince1970: 0), makeMessageID: { "id" }))
    }

    @Test(arguments: cases)
    func validValueIsStoredInSnakeCase(_ c: Case) throws {
        for spell in [{ (s: String) in s }, Self.camel] {
            guard case .success(let m) = try run(Self.call(c, c.valid, spell: spell)) else {
                Issue.record("valid \(c) refused"); continue
            }
            var node: JSONValue? = m.body.objectValue?["traits"]
            for key in c.path { node = node?.objectValue?[key] }
            #expect(node == (try JSONValue.parse(Array(c.valid.utf8), maxDepth: 64)), "\(c) stored under its snake_case name")
        }
    }

    @Test(arguments: cases)
    func invalidValueIsRefusedWithItsPath(_ c: Case) throws {
        for spell in [{ (s: String) in s }, Self.camel] {
            guard case .failure(let r) = try run(Self.call(c, c.invalid, spell: spell)) else {
                Issue.record("invalid \(c) accepted"); continue
            }
            #expect(r.errors.map(\.path) == ["traits." + c.path.joined(separator: ".")])
        }
    }

    @Test func nonReservedTraitsAreKeptExactlyAsSent() throws {
        guard case .success(let m) = try run(#"{"user_id":"u","traits":{"favoriteColor":"red","plan":"premium","logins":5,"nested":{"someKey":[1,{"x":null}]}}}"#) else {
            Issue.record("refused"); return
        }
        #expect(m.body.objectValue?["traits"] == .object([
            "favoriteColor": .string("red"), "plan": .string("premium"), "logins": .int(5),
            "nested": .object(["someKey": .array([.int(1), .object(["x": .null])])]),
        ]))
    }

    @Test func errorsComeInTheSchemasOrderAtEveryLevelWhateverOrderTheTraitsCameIn() throws {
        // Sent in reverse name order, camelCase and snake_case mixed; every reserved trait here is wrong.
        let call = #"{"user_id":"u","traits":{"website":1,"subscription":{"status":"gone","planName":2,"amountInCents":true},"phone":5,"lastName":1,"company":{"plan":1,"employeeCount":"x","name":2},"age":"9","address":{"street":1,"postalCode":2}}}"#
        guard case .failure(let r) = try run(call) else { Issue.record("accepted"); return }
        #expect(r.errors.map(\.description) == [
            "traits.address.postal_code: expected a string, got a number",
            "traits.address.street: expected a string, got a number",
            "traits.age: expected a number, got a string",
            "traits.company.employee_count: expected a number, got a string",
            "traits.company.name: expected a string, got a number",
            "traits.company.plan: expected a string, got a number",
            "traits.last_name: expected a string, got a number",
            "traits.phone: expected a string, got a number",
            "traits.subscription.amount_in_cents: expected a string or a number, got a boolean",
            "traits.subscription.plan_name: expected a string, got a number",
            "traits.subscription.status: \"gone\" is not one of: never subscribed, trial active, trial canceled, trial expired, active, blocked, canceled, expired, unknown",
            "traits.website: expected a string, got a number",
        ])
    }

    @Test func bothSpellingsInOneObjectKeepEveryOtherRuleOfItAndOfTheOthers() throws {
        // company sends employee_count twice over (same value: one member kept, in the snake_case place);
        // its other members and the top level still get renamed and checked.
        let call = #"{"user_id":"u","traits":{"firstName":"A","company":{"employeeCount":5,"id":true,"employee_count":5,"industry":"x"},"createdAt":"2017-02-09T12:08:32Z","age":"x"}}"#
        guard case .failure(let r) = try run(call) else { Issue.record("accepted"); return }
        #expect(r.errors.map(\.description) == [
            "traits.age: expected a number, got a string",
            "traits.company.id: expected a string or a number, got a boolean",
        ])
        let fixed = call.replacingOccurrences(of: #""id":true,"#, with: "").replacingOccurrences(of: #","age":"x""#, with: "")
        guard case .success(let m) = try run(fixed) else { Issue.record("refused"); return }
        #expect(String(decoding: m.body.objectValue?["traits"]?.encoded() ?? [], as: UTF8.self)
                == #"{"first_name":"A","company":{"employee_count":5,"industry":"x"},"created_at":"2017-02-09T12:08:32Z"}"#)
    }

    @Test func reservedTraitInBothSpellingsWithDifferentValuesIsAnError() throws {
        guard case .failure(let r) = try run(#"{"user_id":"u","traits":{"company":{"employeeCount":5,"employee_count":6}}}"#) else {
            Issue.record("accepted"); return
        }
        #expect(r.errors.map(\.description) == ["traits.company.employee_count: sent as both employee_count and employeeCount with different values"])
    }
}
