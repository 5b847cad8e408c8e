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
    /// name) by UTF-8 length, in flat arrays of plain values, so that an
    /// object's members are matched in one pass without a reference count.
    struct Level: Sendable {
        let entries: [Entry]
        /// Every spelling's bytes, one after another, shortest first.
        private let bytes: [UInt8]
        /// Per spelling, shortest first: where its bytes start, its entry,
        /// and whether it is the camelCase spelling.
        private let spellings: [(offset: Int, entry: Int, camel: Bool)]
        /// `spellings[first[n]..<first[n + 1]]` are the spellings n bytes long.
        private let first: [Int]

        init(_ entries: [Entry]) {
            self.entries = entries
            var all: [(name: [UInt8], entry: Int, camel: Bool)] = []
            for (i, e) in entries.enumerated() {
                all.append((Array(e.name.utf8), i, false))
                if let camel = e.camel { all.append((Array(camel.utf8), i, true)) }
            }
            all.sort { $0.name.count < $1.name.count }
            let longest = all.last?.name.count ?? 0
            var bytes: [UInt8] = []
            var spellings: [(offset: Int, entry: Int, camel: Bool)] = []
            var first = [Int](repeating: 0, count: longest + 2)
            for s in all {
                spellings.append((bytes.count, s.entry, s.camel))
                bytes += s.name
            }
            for n in 0...(longest + 1) { first[n] = all.firstIndex { $0.name.count >= n } ?? all.count }
            self.bytes = bytes
            self.spellings = spellings
            self.first = first
        }

        /// The entry `key` spells (compared byte for byte), and whether it is
        /// the camelCase spelling; nil for a trait that is not reserved.
        func match(_ key: String) -> (entry: Int, camel: Bool)? {
            let n = key.utf8.count
            guard n + 1 < first.count else { return nil }
            let range = first[n]..<first[n + 1]
            if range.isEmpty { return nil }
            let found: (entry: Int, camel: Bool)?? = key.utf8.withContiguousStorageIfAvailable { k in
                bytes.withUnsafeBufferPointer { b in
                    spellings.withUnsafeBufferPointer { sp in
                        for j in range {
                            let o = sp[j].offset
                            var same = true
                            for x in 0..<n where b[o + x] != k[x] { same = false; break }
                            if same { return (sp[j].entry, sp[j].camel) }
                        }
                        return nil
                    }
                }
            }
            if case .some(let hit) = found { return hit }
            // A key without contiguous UTF-8 (not one the parser makes).
            for j in range {
                let o = spellings[j].offset
                if bytes[o..<(o + n)].elementsEqual(key.utf8) { return (spellings[j].entry, spellings[j].camel) }
            }
            return nil
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
