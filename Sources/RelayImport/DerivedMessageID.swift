// DerivedMessageID: the message_id of a record that has none, made from its
// content, so that importing the same record again (a re-run, a resume after
// a crash) gives the same id and the relay and the upstream dedupe it.
//
// SHA-256 of the record as read (compact JSON, its own key order), before the
// relay adds anything (a receive time, `--timestamp-now`), shaped as a
// version-8 UUID (RFC 9562: custom, here name-based on SHA-256).

import Crypto
import RelayMessage

enum DerivedMessageID {
    static func make(for record: JSONValue) -> String {
        let digest = Array(SHA256.hash(data: record.encoded()))
        var b = Array(digest.prefix(16))
        b[6] = (b[6] & 0x0F) | 0x80  // version 8
        b[8] = (b[8] & 0x3F) | 0x80  // RFC 9562 variant
        let hex = b.map { byte -> String in
            let h = String(byte, radix: 16)
            return h.count == 1 ? "0" + h : h
        }.joined()
        let c = Array(hex)
        return String(c[0..<8]) + "-" + String(c[8..<12]) + "-" + String(c[12..<16]) + "-" + String(c[16..<20]) + "-" + String(c[20..<32])
    }

    /// SHA-256 of a whole file, hex: the identity of an import run.
    static func fingerprint(fd: Int32, path: String, progress: (Int64) -> Void) throws(ImportError) -> String {
        var hasher = SHA256()
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var total: Int64 = 0
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ImportError("cannot read \(path): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            hasher.update(data: buffer[0..<n])
            total += Int64(n)
            progress(total)
        }
        return hasher.finalize().map { byte -> String in
            let h = String(byte, radix: 16)
            return h.count == 1 ? "0" + h : h
        }.joined()
    }
}

#if canImport(Glibc)
import Glibc
#endif
