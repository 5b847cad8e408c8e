// HeapTrimService: gives the heap the relay freed back to the kernel.
//
// glibc keeps freed memory in its arenas (one per thread that allocates:
// event loops, the spool writer, the forwarder) for reuse, and returns it
// only from the top of the main heap. After a burst (a client pipelining
// thousands of calls, a drain) that is megabytes of resident memory the relay
// no longer uses, held until the next burst, if any. Once a second this
// reads the slack: resident private memory (`/proc/self/statm`) minus what
// malloc has handed out (`mallinfo2`), i.e. freed memory still resident.
// When the slack rose more than `thresholdBytes` above its lowest since the
// last trim, `malloc_trim` releases the free pages. What a trim cannot
// release (pages partly in use) becomes the new floor, so it is not retried
// every second; an idle relay does nothing. Both reads take microseconds.

#if canImport(CMalloc)
import CMalloc
import Glibc
#endif
import Logging
import ServiceLifecycle

struct HeapTrimService: Service {
    /// Free arena bytes past which a trim is worth its page faults later.
    var thresholdBytes = 2 << 20
    let logger: Logger

    func run() async throws {
        #if canImport(CMalloc)
        let threshold = thresholdBytes
        let logger = logger
        await cancelWhenGracefulShutdown {
            guard var floor = Self.slack() else { return }
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                guard let slack = Self.slack() else { return }
                floor = min(floor, slack)
                guard slack - floor > threshold else { continue }
                malloc_trim(0)
                floor = Self.slack() ?? slack
                logger.trace("returned freed heap to the kernel", metadata: ["slack_bytes": "\(slack)", "slack_after": "\(floor)"])
            }
        }
        #endif
    }
}

#if canImport(CMalloc)
extension HeapTrimService {
    /// Resident private bytes not handed out by malloc; nil when /proc cannot be read.
    static func slack() -> Int? {
        let fd = open("/proc/self/statm", O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 128)
        let n = read(fd, &buffer, buffer.count)
        guard n > 0 else { return nil }
        // size resident shared text lib data dt, in pages; resident - shared = private.
        let fields = buffer[..<n].split(separator: UInt8(ascii: " ")).prefix(3).compactMap { Int(String(decoding: $0, as: UTF8.self)) }
        guard fields.count == 3 else { return nil }
        let info = mallinfo2()
        return (fields[1] - fields[2]) * Int(sysconf(Int32(_SC_PAGESIZE))) - Int(info.uordblks + info.hblkhd)
    }
}
#endif

extension HeapTrimService: CustomStringConvertible {
    var description: String { "HeapTrimService" }
}
