// Where public Segment-style SDKs differ from the canonical call, and how the
// rules bring them together (docs/CLIENTS.md lists every difference found,
// including those that need no code).
//
// - An identify's traits under `context.traits`: RudderStack's Python SDK
//   (and SDKs derived from it) sends an identify's traits only there, never
//   at the top level. The upstream reads an identify's traits from `traits`,
//   so they are moved there and checked as traits (reserved traits renamed
//   and typed); errors name the path the app sent (`context.traits.age`).
//   The rest of the context stays as sent. Only when the call has no traits
//   of its own (absent, null or `{}`): a call with both keeps both as sent.

extension MessageNormalizer {
    /// Moves an identify's `context.traits` to `traits` when the call has
    /// none of its own. Returns the path the traits came from
    /// (`context.traits`), or nil when nothing moved.
    static func hoistContextTraits(_ fields: inout JSONObject) -> String? {
        switch fields["traits"] {
        case nil, .null?: break
        case .object(let own)? where own.isEmpty: break
        default: return nil
        }
        guard let c = fields.index(forKey: "context"), case .object(var context) = fields[c].value,
              let t = context.index(forKey: "traits"), case .object(let traits) = context[t].value else { return nil }
        context.removeMember(at: t)
        fields.setValue(.object(context), at: c)
        fields["traits"] = .object(traits)
        return "context.traits"
    }
}
