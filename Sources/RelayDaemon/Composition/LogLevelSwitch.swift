// The relay's log level: one for the whole process, read by every logger
// at each log call, so SIGHUP can change it while the relay runs. swift-log
// copies a handler into each Logger value, which is why the level cannot
// live in the handler itself; swift-log allows a backend-wide level
// ("a change in logLevel to one Logger might have no effect").
// And the relay's log line: time, level, the logger's label, its metadata,
// the message; swift-log's stream handler adds the Swift module that logged
// (`[RelayForward]`), which is the code's business, not the operator's.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
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
        SwitchedLogHandler(label: label, levelSwitch: self, metadataProvider: LoggingSystem.metadataProvider)
    }

    private static func index(of level: Logger.Level) -> Int {
        Logger.Level.allCases.firstIndex(of: level) ?? 0
    }
}

/// Writes `2026-11-30T15:39:49+0000 warning plainflow-relay.spool: count=2
/// spool full: ...` to standard error, one `write` a line, at the switch's
/// level. Setting `logLevel` on one logger has no effect: the level is the
/// configuration's `log.level`.
struct SwitchedLogHandler: LogHandler {
    let label: String
    let levelSwitch: LogLevelSwitch
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    init(label: String, levelSwitch: LogLevelSwitch, metadataProvider: Logger.MetadataProvider?) {
        self.label = label
        self.levelSwitch = levelSwitch
        self.metadataProvider = metadataProvider
    }

    var logLevel: Logger.Level {
        get { levelSwitch.level }
        set {}  // backend-wide level; see the file comment
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var all = metadata
        if let provided = metadataProvider?.get() { all.merge(provided) { $1 } }
        if let given = event.metadata { all.merge(given) { $1 } }
        let pairs = all.sorted { $0.key < $1.key }.map { " \($0.key)=\($0.value)" }.joined()
        Self.emit("\(Self.timestamp()) \(event.level) \(label):\(pairs) \(event.message)\n")
    }

    /// Local time, as `2026-11-30T15:39:49+0000`.
    private static func timestamp() -> String {
        var now = time(nil)
        var parts = tm()
        localtime_r(&now, &parts)
        var buffer = [CChar](repeating: 0, count: 32)
        let n = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%S%z", &parts)
        return String(decoding: buffer.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The whole line in one `write` (lines of concurrent loggers do not mix).
    private static func emit(_ line: String) {
        var bytes = Array(line.utf8)
        bytes.withUnsafeMutableBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = write(2, buffer.baseAddress! + offset, buffer.count - offset)
                if n > 0 { offset += n } else if n < 0 && errno == EINTR { continue } else { return }
            }
        }
    }
}
