// A swift-log handler that keeps every message, for tests of what the
// forwarder tells the operator.

import Logging
import Synchronization

final class LogCapture: Sendable {
    struct Entry: Sendable { let level: Logger.Level; let message: String; let metadata: Logger.Metadata }
    private let entries = Mutex<[Entry]>([])

    var messages: [Entry] { entries.withLock { $0 } }

    var logger: Logger {
        var l = Logger(label: "test") { _ in Handler(capture: self) }
        l.logLevel = .trace
        return l
    }

    func add(_ e: Entry) { entries.withLock { $0.append(e) } }

    struct Handler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            capture.add(Entry(level: event.level, message: event.message.description, metadata: event.metadata ?? [:]))
        }
    }
}
