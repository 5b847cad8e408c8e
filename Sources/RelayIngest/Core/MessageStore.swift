import RelaySpool

/// What ingest needs from the spool: a durable append and a place to keep
/// samples of refused calls. `Spool` is the production store.
public protocol MessageStore: Sendable {
    /// Completes only after the messages are committed (or with the error),
    /// on `executor` when given.
    func append(_ messages: [SpoolAppend], on executor: (any CompletionExecutor)?,
                completion: @escaping @Sendable (Result<[AppendOutcome], SpoolError>) -> Void)
    func recordRejected(errorsJSON: String, sample: [UInt8], atMillis: Int64)
    /// What the store holds against its limit (`max_bytes`), from memory;
    /// nil when it has no limit.
    var space: (held: Int64, limit: Int64)? { get }
}

extension MessageStore {
    public var space: (held: Int64, limit: Int64)? { nil }
}

extension Spool: MessageStore {
    public var space: (held: Int64, limit: Int64)? { (stats.totalBytes, options.maxBytes) }
}
