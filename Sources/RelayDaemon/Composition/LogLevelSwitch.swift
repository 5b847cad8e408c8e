// The relay's log level: one for the whole process, read by every logger
// at each log call, so SIGHUP can change it while the relay runs. swift-log
// copies a handler into each Logger value, which is why the level cannot
// live in the handler itself; swift-log allows a backend-wide level
// ("a change in logLevel to one Logger might have no effect").

import Logging
import Synchronization

/// The process's log level. `handler(label:)` makes standard-error handlers
/// that follow it; `level` changes it for all of them at once.
public final class LogLevelSwitch: Sendable {
    private let index: Atomic<Int>

    public init(_ level: Logger.Level) {
        index = Atomic(Self.index(of: level))
    }

    public var level: Logger.Level {
        get { Logger.Level.allCases[index.load(ordering: .relaxed)] }
        set { index.store(Self.index(of: newValue), ordering: .relaxed) }
    }

    /// A handler for `LoggingSystem.bootstrap` that writes to standard error
    /// (journald under systemd) at this switch's level.
    public func handler(label: String) -> any LogHandler {
        SwitchedLogHandler(inner: StreamLogHandler.standardError(label: label), levelSwitch: self)
    }

    private static func index(of level: Logger.Level) -> Int {
        Logger.Level.allCases.firstIndex(of: level) ?? 0
    }
}

/// A `StreamLogHandler` whose level is the switch's. Setting `logLevel` on
/// one logger has no effect: the level is the configuration's `log.level`.
struct SwitchedLogHandler: LogHandler {
    var inner: StreamLogHandler
    let levelSwitch: LogLevelSwitch

    var logLevel: Logger.Level {
        get { levelSwitch.level }
        set {}  // backend-wide level; see the file comment
    }

    var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue }
    }

    var metadataProvider: Logger.MetadataProvider? {
        get { inner.metadataProvider }
        set { inner.metadataProvider = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) {
        inner.log(event: event)
    }
}
