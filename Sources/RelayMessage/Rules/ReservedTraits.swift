// The reserved traits of the identify spec (seed table, DESIGN §3): their
// canonical snake_case names, the camelCase spelling apps may use instead,
// and the type each must have. Traits that are not reserved are kept as sent.

/// The type a reserved trait must have.
indirect enum TraitType: Sendable {
    case string
    case number
    case stringOrNumber
    /// An ISO-8601 calendar date or date-time.
    case date
    /// One of a fixed list of strings.
    case oneOf([String])
    /// Three lowercase ASCII letters (an ISO-4217 code in lowercase).
    case currency
    /// An object whose reserved members are listed; other members pass through.
    case object([String: TraitType])
}

enum ReservedTraits {
    static let subscriptionStatuses = ["never subscribed", "trial active", "trial canceled", "trial expired",
                                       "active", "blocked", "canceled", "expired", "unknown"]
    static let paymentStatuses = ["pending", "paid", "dunning", "past due", "unpaid", "canceled", "disputed",
                                  "refunded", "unknown"]

    /// The reserved top-level traits, by canonical name.
    static let schema: [String: TraitType] = [
        "address": .object([
            "street": .string, "city": .string, "state": .string, "postal_code": .string, "country": .string,
        ]),
        "age": .number,
        "avatar": .string,
        "birthday": .date,
        "created_at": .date,
        "description": .string,
        "email": .string,
        "first_name": .string,
        "last_name": .string,
        "name": .string,
        "gender": .string,
        "id": .string,
        "phone": .string,
        "title": .string,
        "username": .string,
        "website": .string,
        "company": .object([
            "name": .string, "id": .stringOrNumber, "industry": .string, "employee_count": .number, "plan": .string,
        ]),
        "subscription": .object([
            "plan_name": .string,
            "plan_id": .string,
            "status": .oneOf(subscriptionStatuses),
            "payment_status": .oneOf(paymentStatuses),
            "plan_interval_count": .number,
            "plan_interval_unit": .oneOf(["day", "week", "month", "year"]),
            "service_trial_period_start_at": .date,
            "service_trial_period_end_at": .date,
            "service_period_start_at": .date,
            "service_period_end_at": .date,
            "service_period_cancelled_at": .date,
            "due_date": .date,
            // The seed documents the cents fields as strings; integer amounts
            // are accepted too, since that is what billing systems emit.
            "amount_in_cents": .stringOrNumber,
            "discount_amount_in_cents": .stringOrNumber,
            "tax_amount_in_cents": .stringOrNumber,
            "currency": .currency,
            "discount_code": .string,
        ]),
    ]

    /// A schema as the normalizer walks it: canonical name, camelCase
    /// spelling and type, in a fixed order, computed once.
    struct Entry: Sendable {
        let name: String
        let camel: String?
        let type: CompiledType
    }

    indirect enum CompiledType: Sendable {
        case leaf(TraitType)
        case object(Level)
    }

    /// One object's reserved traits: the entries in name order (the order
    /// their errors are reported in), and every spelling (name and camelCase
    /// name) in a `KeySpellings`, so that an object's members are matched in
    /// one pass.
    struct Level: Sendable {
        let entries: [Entry]
        /// Each entry's name (at the entry's position), then the camelCase names.
        private let spellings: KeySpellings
        /// The entry of each camelCase name, in the order `spellings` has them.
        private let camelEntries: [Int]

        init(_ entries: [Entry]) {
            self.entries = entries
            let camels = entries.indices.filter { entries[$0].camel != nil }
            spellings = KeySpellings(entries.map(\.name) + camels.map { entries[$0].camel! })
            camelEntries = camels
        }

        /// The entry `key` spells (compared byte for byte), and whether it is
        /// the camelCase spelling; nil for a trait that is not reserved.
        func match(_ key: String) -> (entry: Int, camel: Bool)? {
            guard let i = spellings.index(of: key) else { return nil }
            return i < entries.count ? (i, false) : (camelEntries[i - entries.count], true)
        }
    }

    static func compile(_ schema: [String: TraitType]) -> Level {
        Level(schema.keys.sorted().map { name in
            let camel = camelCase(name)
            let type: CompiledType
            if case .object(let members) = schema[name]! { type = .object(compile(members)) } else { type = .leaf(schema[name]!) }
            return Entry(name: name, camel: camel == name ? nil : camel, type: type)
        })
    }

    static let compiled: Level = compile(schema)

    /// `first_name` → `firstName`.
    static func camelCase(_ snake: String) -> String {
        var out = ""
        var upper = false
        for ch in snake {
            if ch == "_" { upper = true; continue }
            out.append(upper ? Character(ch.uppercased()) : ch)
            upper = false
        }
        return out
    }
}
