import RelaySpool

/// What ingest needs from the spool: a durable append and a place to keep
/// samples of refused calls. `Spool` is the production store.
public protocol MessageStore: Sendable {
    /// Completes only after the messages are committed (or with the error),
    /// on `executor` when given.
    func append(_ messages: [SpoolAppend], on executor: (any CompletionExecutor)?,
                completion: @escaping @Sendable (Result<[AppendOutcome], SpoolError>) -> Void)
    func recordRejected(errorsJSON: String, sample: [UInt8], atMillis: Int64)
}

extension Spool: MessageStore {}
