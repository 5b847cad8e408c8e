// End-to-end: what apps see at the relay's door (batches, the line
// protocol, limits), with the real binary and a local upstream.

import Foundation
import Testing

@Suite(.serialized) struct IngestEndToEndTests {
    @Test func aBatchStoresEveryValidMessageAndListsTheInvalidOnesByIndex() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let relay = try RelayProcess(upstream: upstream.url, config: testConfig())
        try relay.start()
        defer { relay.stop() }
        let body = """
        {"batch":[
          {"type":"identify","userId":"a"},
          {"type":"identify","traits":{"age":"x"}},
          {"type":"track","userId":"b","event":"Signed Up","properties":{"plan":"pro"}},
          {"type":"page","userId":"c","properties":{"bad.key":1}},
          {"type":"identify","anonymousId":"d","context":{"app":"mine"}}
        ],"context":{"library":{"name":"sdk"},"app":"batch"}}
        """
        let r = try http(relay.tcp, "POST", "/v1/batch", json: body)
        #expect(r.status == 200)
        #expect(r.json["stored"] as? Int == 3)
        let rejected = r.json["rejected"] as? [[String: Any]] ?? []
        #expect(rejected.map { $0["index"] as? Int } == [1, 3])
        #expect((rejected.first?["errors"] as? [String])?.contains("traits.age: expected a number, got a string") == true)
        #expect(eventually { upstream.delivered.count == 3 })
        let last = try #require(upstream.delivered.first { $0["anonymous_id"] as? String == "d" })
        let context = last["context"] as? [String: Any]
        #expect(context?["app"] as? String == "mine", "the message's own context wins")
        #expect((context?["library"] as? [String: Any])?["name"] as? String == "sdk", "batch context merged in")

        let none = try http(relay.tcp, "POST", "/v1/batch", json: #"{"batch":[{"type":"identify"}]}"#)
        #expect(none.status == 400)
    }

    @Test func theLineProtocolAnswersManyPipelinedCallsInOrder() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let relay = try RelayProcess(upstream: upstream.url, config: testConfig())
        try relay.start()
        defer { relay.stop() }
        let n = 300
        var lines = ""
        for i in 0..<n {
            lines += i == 150 ? #"{"type":"identify","traits":{}}"# + "\n" : #"{"type":"identify","user_id":"line-\#(i)","message_id":"line-id-\#(i)"}"# + "\n"
        }
        let conn = try SocketConnection(relay.unix)
        try conn.write(Array(lines.utf8))
        conn.shutdownWrite()
        let data = try conn.read { d in d.filter { $0 == 0x0A }.count >= n }
        let replies = String(decoding: data, as: UTF8.self).split(separator: "\n").map {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] ?? [:]
        }
        #expect(replies.count == n)
        for (i, reply) in replies.enumerated() {
            if i == 150 {
                #expect(reply["ok"] as? Bool == false)
                #expect(reply["status"] as? Int == 400)
            } else {
                #expect(reply["message_id"] as? String == "line-id-\(i)", "reply \(i) in order")
            }
        }
        #expect(eventually { upstream.delivered.count == n - 1 })
    }

    /// The lines of one read are stored together: a call repeated among them
    /// is stored once and its repeat answered as a duplicate, in order, as
    /// when they come one at a time.
    @Test func aCallRepeatedWithinOneReadIsStoredOnceAndAnsweredAsADuplicate() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let relay = try RelayProcess(upstream: upstream.url, config: testConfig())
        try relay.start()
        defer { relay.stop() }
        let call = #"{"type":"identify","user_id":"twice","message_id":"same-id"}"#
        let other = #"{"type":"identify","user_id":"once","message_id":"other-id"}"#
        let conn = try SocketConnection(relay.unix)
        try conn.write(Array((call + "\n" + other + "\n" + call + "\n").utf8))
        let data = try conn.read { d in d.filter { $0 == 0x0A }.count >= 3 }
        let replies = String(decoding: data, as: UTF8.self).split(separator: "\n").map {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] ?? [:]
        }
        #expect(replies.map { $0["message_id"] as? String } == ["same-id", "other-id", "same-id"])
        #expect(replies.map { $0["duplicate"] as? Bool ?? false } == [false, false, true])
        #expect(eventually { upstream.delivered.count == 2 })
        usleep(300_000)
        #expect(upstream.delivered.count == 2, "the repeat is not sent")
    }

    /// With no key of its own, the relay takes each line's writeKey (the line
    /// protocol has no other place for one): it is sent upstream as that
    /// call's Basic auth, never as data, and a line without one is refused.
    @Test func aLineCarriesItsOwnWriteKeyToARelayThatHasNone() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let relay = try RelayProcess(upstream: upstream.url, config: "[upstream]\nflush_interval_ms = 50\n")
        try relay.start()
        defer { relay.stop() }
        let lines = [
            #"{"type":"identify","user_id":"one","writeKey":"app-one"}"#,
            #"{"type":"identify","user_id":"none"}"#,
            #"{"type":"identify","user_id":"two","write_key":"app-two"}"#,
        ]
        let conn = try SocketConnection(relay.unix)
        try conn.write(Array(lines.map { $0 + "\n" }.joined().utf8))
        let data = try conn.read { d in d.filter { $0 == 0x0A }.count >= 3 }
        let replies = String(decoding: data, as: UTF8.self).split(separator: "\n").map {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] ?? [:]
        }
        #expect(replies.map { $0["status"] as? Int } == [nil, 401, nil], "\(replies)")
        #expect((replies[1]["errors"] as? [String])?.first?.contains("as writeKey in the body") == true, "\(replies[1])")
        #expect(eventually { upstream.delivered.count == 2 }, "log:\n\(relay.log)")
        let byKey = Dictionary(grouping: upstream.requests, by: { $0.writeKey ?? "" }).mapValues { $0.flatMap(\.batch).map { $0["user_id"] as? String } }
        #expect(byKey == ["app-one": ["one"], "app-two": ["two"]], "one key a batch, each call's own")
        #expect(!upstream.delivered.contains { $0.keys.contains { $0.lowercased().contains("key") } }, "the key is not data")
    }

    /// A client that writes its calls, half-closes and reads afterwards gets
    /// every reply before the relay closes: one answered at once (a refusal),
    /// and thousands it reads only after a pause (more than socket buffers hold).
    @Test func aClientThatHalfClosesGetsEveryReplyBeforeTheClose() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let relay = try RelayProcess(upstream: upstream.url, config: testConfig())
        try relay.start()
        defer { relay.stop() }

        let refused = try SocketConnection(relay.unix)
        try refused.write(Array(#"{"type":"identify","traits":{}}"#.utf8) + [0x0A])
        refused.shutdownWrite()
        let one = String(decoding: try refused.read { _ in false }, as: UTF8.self)  // until the relay closes
        #expect(one.split(separator: "\n").count == 1 && one.contains(#""status":400"#), "got: \(one)")

        let n = 5_000
        var lines: [UInt8] = []
        for i in 0..<n { lines += Array(#"{"type":"identify","user_id":"hc-\#(i)","message_id":"hc-id-\#(i)"}"#.utf8) + [0x0A] }
        let late = try SocketConnection(relay.unix, timeoutSeconds: 30)
        try late.write(lines)
        late.shutdownWrite()
        Thread.sleep(forTimeInterval: 1.5)
        let replies = String(decoding: try late.read { _ in false }, as: UTF8.self).split(separator: "\n")
        #expect(replies.count == n)
        #expect(replies.last?.contains(#""message_id":"hc-id-\#(n - 1)""#) == true)
    }

    @Test func oversizedAndDeeplyNestedBodiesAreRefusedAndTheRelayKeepsServing() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let relay = try RelayProcess(upstream: upstream.url, config: testConfig())
        try relay.start()
        defer { relay.stop() }
        let huge = #"{"userId":"u","traits":{"bio":""# + String(repeating: "a", count: 600 * 1024) + #""}}"#
        #expect(try http(relay.tcp, "POST", "/v1/identify", json: huge).status == 413)
        let big = #"{"userId":"u","traits":{"bio":""# + String(repeating: "a", count: 20 * 1024) + #""}}"#
        #expect(try http(relay.tcp, "POST", "/v1/identify", json: big).status == 413, "over the 15 KiB message limit")
        let deep = String(repeating: #"{"a":"#, count: 200) + "1" + String(repeating: "}", count: 200)
        let r = try http(relay.tcp, "POST", "/v1/identify", json: deep)
        #expect(r.status == 400)
        #expect((r.json["errors"] as? [String])?.first?.contains("nested") == true)
        let tooMany = #"{"batch":["# + Array(repeating: #"{"type":"identify","userId":"x"}"#, count: 2501).joined(separator: ",") + "]}"
        #expect(try http(relay.tcp, "POST", "/v1/batch", json: tooMany).status == 413)
        #expect(try http(relay.tcp, "POST", "/v1/identify", json: identify("still-here")).status == 200)
        #expect(try http(relay.tcp, "GET", "/healthz").status == 200)
    }

    @Test func keepAliveServesManyRequestsOnOneConnection() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let relay = try RelayProcess(upstream: upstream.url, config: testConfig())
        try relay.start()
        defer { relay.stop() }
        let conn = try SocketConnection(relay.tcp)
        for i in 0..<50 {
            #expect(try conn.request("POST", "/v1/identify", body: Array(identify("ka\(i)").utf8)).status == 200)
        }
        #expect(try conn.request("GET", "/nope").status == 404)
        #expect(try conn.request("GET", "/v1/identify").status == 405)
        #expect(eventually { upstream.delivered.count == 50 })
    }

    @Test func withoutARelayKeyTheAppsKeyIsKeptAndUsedAndBatchesNeverMixKeys() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let relay = try RelayProcess(upstream: upstream.url, config: keylessConfig())
        try relay.start()
        defer { relay.stop() }
        #expect(try http(relay.tcp, "POST", "/v1/identify", json: identify("nokey")).status == 401)
        for i in 0..<6 {
            let key = i % 2 == 0 ? "key-A" : "key-B"
            #expect(try http(relay.tcp, "POST", "/v1/identify", json: identify("\(key)-\(i)"), headers: basicAuth(key)).status == 200)
        }
        #expect(eventually { upstream.delivered.count == 6 })
        for request in upstream.requests {
            let users = request.batch.map { $0["user_id"] as? String ?? "" }
            #expect(users.allSatisfy { $0.hasPrefix(request.writeKey ?? "?") }, "batch for \(request.writeKey ?? "nil") holds \(users)")
        }
    }

    @Test func gzipBodiesAreAcceptedWholeAndABombIsRefusedWhileInflating() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let relay = try RelayProcess(upstream: upstream.url, config: testConfig())
        try relay.start()
        defer { relay.stop() }
        let batch = #"{"batch":[{"type":"identify","userId":"gz1"},{"type":"track","userId":"gz2","event":"Compressed"}]}"#
        let conn = try SocketConnection(relay.tcp)
        let ok = try conn.request("POST", "/v1/batch", body: [UInt8](try gzip(Data(batch.utf8))), headers: ["Content-Encoding": "gzip"])
        #expect(ok.status == 200, "\(ok.text)")
        #expect(ok.json["stored"] as? Int == 2)
        let bomb = try gzip(Data(("{\"userId\":\"" + String(repeating: "0", count: 10_000_000) + "\"}").utf8))
        #expect(bomb.count < 100_000)
        let refused = try SocketConnection(relay.tcp).request("POST", "/v1/identify", body: [UInt8](bomb), headers: ["Content-Encoding": "gzip"])
        #expect(refused.status == 413, "\(refused.text)")
        let garbage = try http(relay.tcp, "POST", "/v1/identify", json: "not gzip at all", headers: ["Content-Encoding": "gzip"])
        #expect(garbage.status == 400 && garbage.text.contains("not valid gzip: the data is corrupt"), "words, not the library's identifiers: \(garbage.text)")
        #expect(try http(relay.tcp, "POST", "/v1/identify", json: "{}", headers: ["Content-Encoding": "br"]).status == 415)

        // Strict: a stream cut short (even by its trailer only) or followed by other bytes is refused;
        // a body of two members (RFC 1952 allows it) is read whole.
        let whole = [UInt8](try gzip(Data(identify("gz3").utf8)))
        func send(_ body: [UInt8]) throws -> HTTPResponse {
            try SocketConnection(relay.tcp).request("POST", "/v1/identify", body: body, headers: ["Content-Encoding": "gzip"])
        }
        let noTrailer = try send(Array(whole.dropLast(4)))
        #expect(noTrailer.status == 400 && noTrailer.text.contains("cut short"), "\(noTrailer.text)")
        #expect(try send(Array(whole.prefix(whole.count / 2))).status == 400)
        let trailing = try send(whole + Array("junk".utf8))
        #expect(trailing.status == 400 && trailing.text.contains("after the end of the stream"), "\(trailing.text)")
        let call = identify("gz4")
        let split = call.index(call.startIndex, offsetBy: 10)
        let members = try send([UInt8](try gzip(Data(call[..<split].utf8))) + [UInt8](try gzip(Data(call[split...].utf8))))
        #expect(members.status == 200, "\(members.text)")
        let empty = [UInt8](try gzip(Data()))
        let many = try send(Array(repeating: empty, count: 70).flatMap { $0 } + [UInt8](try gzip(Data(identify("gz5").utf8))))
        #expect(many.status == 400 && many.text.contains("gzip members"), "\(many.text)")
        #expect(eventually { upstream.delivered.count == 3 })
        #expect(upstream.delivered.last?["user_id"] as? String == "gz4")
    }
}
