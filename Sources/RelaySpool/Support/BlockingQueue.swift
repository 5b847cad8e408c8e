// A mutex + condition variable queue and a dedicated OS thread: the spool's
// SQLite connections block on fsync, so they run on threads of their own and
// never on an event loop or the cooperative pool.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A FIFO that one consumer thread drains in bulk.
final class BlockingQueue<Element>: @unchecked Sendable {
    // Allocated once, never moved: a pthread mutex or condition must keep its
    // address, which a stored property passed with `&` does not promise.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var items: [Element] = []  // guarded by mutex
    private var closed = false         // guarded by mutex

    init() {
        mutex.initialize(to: pthread_mutex_t())
        cond.initialize(to: pthread_cond_t())
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(cond, nil)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    /// Adds an item; false when the queue is closed.
    func push(_ item: Element) -> Bool {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        if closed { return false }
        items.append(item)
        pthread_cond_signal(cond)
        return true
    }

    /// Adds a last item and closes the queue in one step: nothing can be
    /// pushed after it. The consumer drains what is left, then `takeAll`
    /// returns nil. False when the queue was already closed.
    func pushAndClose(_ item: Element) -> Bool {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        if closed { return false }
        items.append(item)
        closed = true
        pthread_cond_broadcast(cond)
        return true
    }

    /// Waits up to `idleNanos` for at least one item, then lingers up to
    /// `lingerNanos` (or until `enough(items)` holds) to let concurrent
    /// producers join, then takes all. Returns [] when nothing came within
    /// `idleNanos` (the consumer's chance to do periodic work), nil once the
    /// queue is closed and empty.
    func takeAll(lingerNanos: Int64, idleNanos: Int64, enough: ([Element]) -> Bool) -> [Element]? {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        if items.isEmpty && !closed {
            var deadline = Self.deadline(after: idleNanos)
            while items.isEmpty && !closed {
                if pthread_cond_timedwait(cond, mutex, &deadline) == ETIMEDOUT { break }
            }
        }
        if items.isEmpty { return closed ? nil : [] }
        if lingerNanos > 0 && !closed && !enough(items) {
            var deadline = Self.deadline(after: lingerNanos)
            while !closed && !enough(items) {
                if pthread_cond_timedwait(cond, mutex, &deadline) == ETIMEDOUT { break }
            }
        }
        let taken = items
        items.removeAll(keepingCapacity: true)
        return taken
    }

    private static func deadline(after nanos: Int64) -> timespec {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let total = Int64(now.tv_nsec) + nanos
        return timespec(tv_sec: now.tv_sec + Int(total / 1_000_000_000), tv_nsec: Int(total % 1_000_000_000))
    }
}

/// Starts `body` on a new detached OS thread named `name` (as `top -H` and
/// `/proc/PID/task/*/comm` show it; Linux keeps the first 15 bytes).
func startThread(name: String, _ body: @escaping @Sendable () -> Void) {
    final class Box {
        let name: String
        let body: @Sendable () -> Void
        init(_ n: String, _ b: @escaping @Sendable () -> Void) { name = n; body = b }
    }
    let box = Unmanaged.passRetained(Box(name, body)).toOpaque()
    var tid = pthread_t()
    let rc = pthread_create(&tid, nil, { arg in
        let box = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
        nameThisThread(box.name)
        box.body()
        return nil
    }, box)
    precondition(rc == 0, "pthread_create failed: \(rc)")
    pthread_detach(tid)
}

/// Names the calling thread (best effort). Glibc's `pthread_setname_np` is
/// not visible to Swift without `_GNU_SOURCE` (and `prctl` is variadic), so
/// on Linux this writes the thread's own `comm` file, which sets the same name.
private func nameThisThread(_ name: String) {
    #if os(Linux)
    let fd = open("/proc/thread-self/comm", O_WRONLY)
    guard fd >= 0 else { return }
    defer { close(fd) }
    let bytes = Array(name.utf8.prefix(15))
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    #endif
}
