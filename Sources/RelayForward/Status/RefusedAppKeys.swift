// RefusedAppKeys: the apps' own write keys the upstream refuses now, shared
// with ingest so that one app's revoked key cannot fill the spool that every
// app on the host shares.
//
// Owns: a bounded map of keys to when their refusal lapses. Invariants: a
// key is in it from the upstream's refusal (401/403) of a batch sent with it
// until a batch sent with it is delivered, a reload gives the relay a write
// key of its own (apps' keys are then not used), or its refusal lapses: the
// forwarder tries a refused key again every `credentialRetryMillis` while
// calls with it are queued, and each refusal renews it, so a key whose calls
// left another way (expired, dropped, purged) lapses by itself. At most
// `limit` keys of at most `maxKeyBytes`; past that a refused key is not
// recorded (its calls are stored as any others). A key is never logged or
// shown (it is a credential); its fingerprint is, so that an operator can
// tell which app's key it is.

import Crypto
import Synchronization

/// The app write keys the upstream refused and has not accepted since.
public final class RefusedAppKeys: Sendable {
    /// Most keys kept.
    public static let limit = 1_000
    /// Longest key kept (as the forwarder's holds).
    public static let maxKeyBytes = 256
    /// Key → when its refusal lapses (unix ms), and its fingerprint.
    private let keys = Mutex<[String: (untilMillis: Int64, fingerprint: String)]>([:])
    /// Whether `keys` is non-empty: the check on every call looks here first.
    private let any = Atomic<Bool>(false)

    public init() {}

    /// The key's fingerprint when the upstream refused it and that has not
    /// lapsed at `nowMillis` (read only then: ingest asks on every call);
    /// nil otherwise.
    public func refusal(of writeKey: String, nowMillis: @autoclosure () -> Int64) -> String? {
        guard any.load(ordering: .relaxed) else { return nil }
        return keys.withLock { keys in
            guard let entry = keys[writeKey] else { return nil }
            if entry.untilMillis > nowMillis() { return entry.fingerprint }
            keys[writeKey] = nil
            any.store(!keys.isEmpty, ordering: .relaxed)
            return nil
        }
    }

    /// How many keys are refused at `nowMillis`, and the first `max` of
    /// their fingerprints in order.
    public func fingerprints(nowMillis: Int64, max: Int) -> (shown: [String], total: Int) {
        guard any.load(ordering: .relaxed) else { return ([], 0) }
        let live = keys.withLock { $0.values.filter { $0.untilMillis > nowMillis }.map(\.fingerprint) }
        return (max > 0 ? Array(live.sorted().prefix(max)) : [], live.count)
    }

    /// What the log shows for a key: the first 12 hex digits of its SHA-256,
    /// which an operator matches with `printf %s "$KEY" | sha256sum | cut -c1-12`.
    public static func fingerprint(_ writeKey: String) -> String {
        SHA256.hash(data: Array(writeKey.utf8)).prefix(6).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    /// The upstream refused `writeKey` at `nowMillis`; the refusal lapses
    /// `lapseMillis` later unless renewed.
    func refused(_ writeKey: String, nowMillis: Int64, lapseMillis: Int64) {
        guard writeKey.utf8.count <= Self.maxKeyBytes else { return }
        keys.withLock { keys in
            if keys[writeKey] == nil && keys.count >= Self.limit {
                keys = keys.filter { $0.value.untilMillis > nowMillis }  // lapsed ones make room
                guard keys.count < Self.limit else { return }
            }
            keys[writeKey] = (nowMillis + lapseMillis, keys[writeKey]?.fingerprint ?? Self.fingerprint(writeKey))
            any.store(true, ordering: .relaxed)
        }
    }

    /// The upstream accepted a batch sent with `writeKey`; its fingerprint
    /// when the key was refused until then.
    @discardableResult
    func accepted(_ writeKey: String) -> String? {
        guard any.load(ordering: .relaxed) else { return nil }
        return keys.withLock { keys in
            defer { any.store(!keys.isEmpty, ordering: .relaxed) }
            return keys.removeValue(forKey: writeKey)?.fingerprint
        }
    }

    /// Forgets every key (the relay now sends its own).
    func removeAll() {
        keys.withLock { keys in
            keys.removeAll()
            any.store(false, ordering: .relaxed)
        }
    }
}
