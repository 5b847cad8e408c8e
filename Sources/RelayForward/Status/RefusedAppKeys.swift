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
// recorded (its calls are stored as any others). Never logged, never shown:
// a key is a credential.

import Synchronization

/// The app write keys the upstream refused and has not accepted since.
public final class RefusedAppKeys: Sendable {
    /// Most keys kept.
    public static let limit = 1_000
    /// Longest key kept (as the forwarder's holds).
    public static let maxKeyBytes = 256
    /// Key → when its refusal lapses (unix ms).
    private let keys = Mutex<[String: Int64]>([:])
    /// Whether `keys` is non-empty: the check on every call looks here first.
    private let any = Atomic<Bool>(false)

    public init() {}

    /// Whether the upstream refused `writeKey` and that has not lapsed at `nowMillis`.
    public func contains(_ writeKey: String, nowMillis: Int64) -> Bool {
        guard any.load(ordering: .relaxed) else { return false }
        return keys.withLock { keys in
            guard let until = keys[writeKey] else { return false }
            if until > nowMillis { return true }
            keys[writeKey] = nil
            any.store(!keys.isEmpty, ordering: .relaxed)
            return false
        }
    }

    /// The upstream refused `writeKey` at `nowMillis`; the refusal lapses
    /// `lapseMillis` later unless renewed.
    func refused(_ writeKey: String, nowMillis: Int64, lapseMillis: Int64) {
        guard writeKey.utf8.count <= Self.maxKeyBytes else { return }
        keys.withLock { keys in
            if keys[writeKey] == nil && keys.count >= Self.limit {
                keys = keys.filter { $0.value > nowMillis }  // lapsed ones make room
                guard keys.count < Self.limit else { return }
            }
            keys[writeKey] = nowMillis + lapseMillis
            any.store(true, ordering: .relaxed)
        }
    }

    /// The upstream accepted a batch sent with `writeKey`.
    func accepted(_ writeKey: String) {
        guard any.load(ordering: .relaxed) else { return }
        keys.withLock { keys in
            keys[writeKey] = nil
            any.store(!keys.isEmpty, ordering: .relaxed)
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
