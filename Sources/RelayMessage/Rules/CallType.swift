/// The kinds of call the relay accepts, named as on the wire.
public enum CallType: String, Sendable, CaseIterable, Hashable {
    case identify, track, page, screen, group, alias

    /// Parses a `type` field as sent by an app (case-insensitive).
    public init?(wireName: String) {
        self.init(rawValue: wireName.lowercased())
    }
}
