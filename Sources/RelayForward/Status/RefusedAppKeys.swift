// RefusedAppKeys: the apps' own write keys the upstream refuses now, shared
// with ingest so that one app's revoked key cannot fill the spool that every
// app on the host shares.
//
// Owns: a bounded set of keys. Invariants: a key is in it from the
// upstream's refusal (401/403) of a batch sent with it until a batch sent
// with it is delivered, or a reload gives the relay a write key of its own
// (apps' keys are then not used). At most `limit` keys; past it a refused
// key is not recorded (its calls are stored as any others). Never logged,
// never shown: a key is a credential.

import Synchronization

/// The app write keys the upstream refused and has not accepted since.
public final class RefusedAppKeys: Sendable {
    /// Most keys kept (the forwarder holds back at most as many).
    public static let limit = 1_000
    private let keys = Mutex<Set<String>>([])
    /// Whether `keys` is non-empty: the check on every call looks here first.
    private let any = Atomic<Bool>(false)

    public init() {}

    /// Whether the upstream's last answer to a batch sent with `writeKey` refused the key.
    public func contains(_ writeKey: String) -> Bool {
        guard any.load(ordering: .relaxed) else { return false }
        return keys.withLock { $0.contains(writeKey) }
    }

    /// The upstream refused `writeKey`.
    func refused(_ writeKey: String) {
        keys.withLock { keys in
            guard keys.count < Self.limit else { return }
            keys.insert(writeKey)
            any.store(true, ordering: .relaxed)
        }
    }

    /// The upstream accepted a batch sent with `writeKey`.
    func accepted(_ writeKey: String) {
        guard any.load(ordering: .relaxed) else { return }
        keys.withLock { keys in
            keys.remove(writeKey)
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
