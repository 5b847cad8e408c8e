// A minimal blocking client for the tests: HTTP/1.1 requests and raw lines
// over TCP (127.0.0.1) or a Unix socket. Deliberately independent of the
// relay's own code.

import Foundation
#if canImport(Glibc)
import Glibc
#endif

struct HTTPResponse {
    let status: Int
    let headers: [String: String]
    let body: Data
    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
    var text: String { String(decoding: body, as: UTF8.self) }

    /// Takes one whole response (head and `Content-Length` body) off the
    /// front of `data`; nil while it has not all arrived.
    static func take(from data: inout Data) -> HTTPResponse? {
        guard let he = data.range(of: Data("\r\n\r\n".utf8)) else { return nil }
        let lines = String(decoding: data[data.startIndex..<he.lowerBound], as: UTF8.self).split(separator: "\r\n")
        var hs: [String: String] = [:]
        for l in lines.dropFirst() {
            let parts = l.split(separator: ":", maxSplits: 1)
            if parts.count == 2 { hs[parts[0].lowercased()] = parts[1].trimmingCharacters(in: .whitespaces) }
        }
        let length = Int(hs["content-length"] ?? "0") ?? 0
        guard data.distance(from: he.upperBound, to: data.endIndex) >= length else { return nil }
        let end = data.index(he.upperBound, offsetBy: length)
        let status = lines.first.flatMap { $0.split(separator: " ").dropFirst().first }.flatMap { Int($0) } ?? 0
        let response = HTTPResponse(status: status, headers: hs, body: Data(data[he.upperBound..<end]))
        data = data[end...]  // a slice: no copy of what is left
        return response
    }
}

enum Endpoint {
    case tcp(Int)
    case unix(String)
}

struct SocketError: Error, CustomStringConvertible { let description: String }

final class SocketConnection {
    let fd: Int32

    init(_ endpoint: Endpoint, timeoutSeconds: Int = 10) throws {
        // `fd` is set only once connected: a class whose stored properties are all
        // set runs `deinit` even when `init` throws, and closing the descriptor a
        // second time there could close another test's file that reused its number.
        let fd: Int32
        switch endpoint {
        case .tcp(let port):
            fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = in_port_t(UInt16(port).bigEndian)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            if rc != 0 { close(fd); throw SocketError(description: "connect 127.0.0.1:\(port): \(String(cString: strerror(errno)))") }
        case .unix(let path):
            fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &addr.sun_path) { raw in
                let b = Array(path.utf8)
                raw.copyBytes(from: b)
                raw[b.count] = 0
            }
            let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
            if rc != 0 { close(fd); throw SocketError(description: "connect \(path): \(String(cString: strerror(errno)))") }
        }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        self.fd = fd
    }

    deinit { close(fd) }

    /// How long a read waits for data before it fails.
    func setReadTimeout(milliseconds: Int) {
        var tv = timeval(tv_sec: milliseconds / 1000, tv_usec: suseconds_t((milliseconds % 1000) * 1000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    func write(_ bytes: [UInt8]) throws {
        let sent = Self.send(bytes, on: fd)
        if sent < bytes.count { throw SocketError(description: "send: \(String(cString: strerror(errno)))") }
    }

    /// Sends `bytes` on `fd` (from any thread); returns how many the kernel
    /// took before an error or a send timeout.
    static func send(_ bytes: [UInt8], on fd: Int32) -> Int {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            off += n
        }
        return off
    }

    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

    /// Reads until `done(buffer)` or EOF.
    func read(until done: (Data) -> Bool) throws -> Data {
        var data = Data()
        var buf = [UInt8](repeating: 0, count: 65536)
        while !done(data) {
            let n = recv(fd, &buf, buf.count, 0)
            if n < 0 && errno == EINTR { continue }
            if n == 0 { break }
            if n < 0 { throw SocketError(description: "recv: \(String(cString: strerror(errno)))") }
            data.append(contentsOf: buf[0..<n])
        }
        return data
    }

    /// One HTTP/1.1 request on this (keep-alive) connection.
    func request(_ method: String, _ path: String, body: [UInt8] = [], headers: [String: String] = [:]) throws -> HTTPResponse {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: relay\r\nContent-Length: \(body.count)\r\n"
        for (k, v) in headers { head += "\(k): \(v)\r\n" }
        head += "\r\n"
        try write(Array(head.utf8) + body)
        var data = try read { d in
            var rest = d
            return HTTPResponse.take(from: &rest) != nil
        }
        guard let response = HTTPResponse.take(from: &data) else { throw SocketError(description: "no whole HTTP response before the connection ended") }
        return response
    }
}

/// One request on a new connection.
func http(_ endpoint: Endpoint, _ method: String, _ path: String, json: String? = nil, headers: [String: String] = [:]) throws -> HTTPResponse {
    try SocketConnection(endpoint).request(method, path, body: Array((json ?? "").utf8), headers: headers)
}

func basicAuth(_ key: String) -> [String: String] {
    ["Authorization": "Basic " + Data("\(key):".utf8).base64EncodedString()]
}
