// The line protocol's framing: lines split anywhere across reads, CRLF,
// empty lines, the length bound, and a last line without its newline.

import NIOCore
import NIOEmbedded
import Testing
@testable import RelayIngest

@Suite struct LineFramingTests {
    private func frame(_ pieces: [String], maxLength: Int = 64) throws -> (lines: [String], error: (any Error)?) {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(BoundedLineDecoder(maxLength: maxLength)))
        var failure: (any Error)?
        do {
            for piece in pieces { try channel.writeInbound(channel.allocator.buffer(string: piece)) }
            _ = try channel.finish()
        } catch {
            failure = error
        }
        var lines: [String] = []
        while let line = try? channel.readInbound(as: ByteBuffer.self) { lines.append(String(buffer: line)) }
        return (lines, failure)
    }

    @Test func linesSplitAcrossReadsComeOutWhole() throws {
        let (lines, error) = try frame(["{\"a\"", ":1}\n{\"b\":", "2}\r", "\n\n", "{\"c\":3}\n{\"d\"", ":4}"])
        #expect(error == nil)
        #expect(lines == [#"{"a":1}"#, #"{"b":2}"#, "", #"{"c":3}"#, #"{"d":4}"#],
                "CR before LF dropped, an empty line kept, the last line without its newline delivered at the end")
    }

    @Test func aLineLongerThanTheLimitIsRefusedEvenBeforeItsNewline() throws {
        let long = String(repeating: "x", count: 40)
        let (lines, error) = try frame(["{\"ok\":1}\n" + long, long], maxLength: 64)
        #expect(lines == [#"{"ok":1}"#])
        #expect(error is LineTooLongError)
        let (exact, none) = try frame([String(repeating: "y", count: 64) + "\n", String(repeating: "z", count: 64) + "\r", "\n"], maxLength: 64)
        #expect(none == nil && exact.map(\.utf8.count) == [64, 64], "a line of exactly the limit passes, with LF or CR LF")
        let (_, over) = try frame([String(repeating: "y", count: 65) + "\r\n"], maxLength: 64)
        #expect(over is LineTooLongError)
        let (_, lastOver) = try frame(["{}\n", String(repeating: "y", count: 65)], maxLength: 64)
        #expect(lastOver is LineTooLongError, "a last line without its newline is bound too")
    }
}
