// The Unix socket file: a stale one left by a crash is replaced, a live one
// (another relay answering on it) is an error, and the new one gets the
// configured mode and group, since group membership is what lets apps write.

#if canImport(Glibc)
import Glibc
#endif
import NIOCore

/// Why a listener could not be set up.
public struct ListenerError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }

    /// A failed bind, said for the operator: the address, the cause, the fix.
    /// - Parameter setting: the configuration key that chose the address.
    static func cannotListen(on address: String, setting: String, _ error: any Error) -> ListenerError {
        guard let io = error as? IOError else { return ListenerError("cannot listen on \(address): \(error)") }
        let fix: String
        switch io.errnoCode {
        case EADDRINUSE:
            fix = "the address is already in use, by another plainflow-relay or another program (`ss -ltnpx` shows which); stop it, or set \(setting) (or its flag) to a free address"
        case EACCES, EPERM:
            fix = "permission denied; choose a port above 1023, or a directory this user may write, with \(setting)"
        case EADDRNOTAVAIL:
            fix = "this host has no such address; use 127.0.0.1 or ::1 in \(setting)"
        case ENOENT, ENOTDIR:
            fix = "its directory does not exist; create it, or set \(setting) to a path in a directory that exists"
        default:
            fix = "\(String(cString: strerror(io.errnoCode))) (errno \(io.errnoCode))"
        }
        return ListenerError("cannot listen on \(address): \(fix)")
    }
}

enum UnixSocketFile {
    /// Removes a stale socket at `path`; throws when one is live or the path is not a socket.
    static func clearStale(_ path: String) throws(ListenerError) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }  // nothing there
        guard (st.st_mode & S_IFMT) == S_IFSOCK else {
            throw ListenerError("\(path) exists and is not a socket; refusing to replace it")
        }
        if isLive(path) {
            throw ListenerError("\(path) is in use: another process (a running relay?) is listening on it")
        }
        if unlink(path) != 0 {
            throw ListenerError("could not remove the stale socket \(path): \(String(cString: strerror(errno)))")
        }
    }

    private static func isLive(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { return false }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        return rc == 0
    }

    /// Sets the socket's mode and, when given, its group.
    static func applyPermissions(_ path: String, mode: UInt16, group: String?) throws(ListenerError) {
        if chmod(path, mode_t(mode)) != 0 {
            throw ListenerError("could not chmod \(path): \(String(cString: strerror(errno)))")
        }
        guard let group else { return }
        guard let gr = getgrnam(group) else {
            throw ListenerError("unix_group \"\(group)\" does not exist")
        }
        if chown(path, uid_t.max, gr.pointee.gr_gid) != 0 {
            throw ListenerError("could not give \(path) to group \(group): \(String(cString: strerror(errno)))")
        }
    }

    static func remove(_ path: String) {
        unlink(path)
    }
}
