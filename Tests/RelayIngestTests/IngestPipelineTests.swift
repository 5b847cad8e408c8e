import Foundation
import NIOHTTP1
import Logging
import Synchronization
import Testing
@testable import RelayIngest
import RelayMessage
import RelaySpool

/// The ingest pipeline over a real spool file: what an app is answered.
@Suite struct IngestPipelineTests {
    final class Fixture {
        let dir: String
        let spool: Spool
        init(maxBytes: Int64 = 1 << 30) throws {
            dir = FileManager.default.temporaryDirectory.appendingPathComponent("ingest-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            spool = try Spool(options: SpoolOptions(path: dir + "/spool.db", maxBytes: maxBytes))
        }
        deinit { try? FileManager.default.removeItem(atPath: dir) }

        func pipeline(_ configure: (inout IngestOptions) -> Void = { $0.relayHasWriteKey = true }) -> IngestPipeline {
            var o = IngestOptions()
            configure(&o)
            return IngestPipeline(options: o, store: spool)
        }
    }

    func send(_ p: IngestPipeline, _ route: IngestRoute, _ json: String, key: String? = nil) async -> (IngestReply, [String: Any]) {
        let reply = await withCheckedContinuation { c in p.handle(route, body: Array(json.utf8), writeKey: key) { c.resume(returning: $0) } }
        return (reply, (try? JSONSerialization.jsonObject(with: Data(reply.body))) as? [String: Any] ?? [:])
    }

    @Test func a200MeansTheMessageIsInTheSpool() async throws {
        let f = try Fixture()
        let (reply, json) = await send(f.pipeline(), .single(.identify), #"{"userId":"u1"}"#)
        #expect(reply.status == 200)
        let id = try #require(json["message_id"] as? String)
        let batch = try f.spool.makeReader().leaseBatch(nowMillis: .max / 2, maxCount: 10, maxBytes: 1 << 20)
        #expect(batch.map(\.messageID) == [id])
        await f.spool.close()
    }

    @Test func aRepeatedMessageIdIsAcknowledgedButStoredOnce() async throws {
        let f = try Fixture()
        let p = f.pipeline()
        let (_, first) = await send(p, .single(.identify), #"{"userId":"u1","messageId":"same"}"#)
        let (reply, second) = await send(p, .single(.identify), #"{"userId":"u1","messageId":"same"}"#)
        #expect(first["duplicate"] == nil)
        #expect(reply.status == 200)
        #expect(second["duplicate"] as? Bool == true)
        #expect(f.spool.stats.depth == 1)
        await f.spool.close()
    }

    /// One app's key is refused upstream (the relay has no key of its own):
    /// its calls are stored until the spool is half full, then answered 503;
    /// the other apps' calls are stored still, and so are its own once the
    /// upstream takes its key again.
    @Test func aKeyTheUpstreamRefusesMayFillHalfTheSpoolNotMore() async throws {
        let f = try Fixture(maxBytes: 20_000)
        let refused = Atomic<Bool>(true)
        let p = IngestPipeline(options: IngestOptions(), store: f.spool,
                               refusedUpstream: { key in key == "revoked" && refused.load(ordering: .relaxed) ? "fingerprint" : nil })
        let call = #"{"userId":"u","traits":{"bio":"\#(String(repeating: "x", count: 400))"}}"#
        var stored = 0
        var refusal: (IngestReply, [String: Any])?
        for _ in 0..<100 {
            let answer = await send(p, .single(.identify), call, key: "revoked")
            if answer.0.status != 200 { refusal = answer; break }
            stored += 1
        }
        let (reply, json) = try #require(refusal, "every call of the refused key was stored")
        #expect(reply.status == 503)
        #expect(reply.retryAfterSeconds == 60)
        #expect((json["message"] as? String)?.contains("the upstream refused this write key") == true, "\(json)")
        #expect(json["code"] as? String == "key_refused", "told apart from a full spool: \(json)")
        #expect(f.spool.stats.totalBytes >= 10_000 && f.spool.stats.totalBytes < 11_000, "half full: \(f.spool.stats.totalBytes)")
        #expect(f.spool.stats.depth == Int64(stored))
        #expect(await send(p, .single(.identify), call, key: "good").0.status == 200, "the other apps keep the other half")
        // Batches, by Basic auth or by the key beside `batch`: refused once counted, a broken one is still a 400.
        let typed = #"{"type":"identify","userId":"u"}"#
        let batch = #"{"batch":[\#(typed),\#(typed)]}"#
        #expect(await send(p, .batch(priority: .live), batch, key: "revoked").0.status == 503)
        let envelopeKey = await send(p, .batch(priority: .live), #"{"writeKey":"revoked","batch":[\#(typed)]}"#)
        #expect(envelopeKey.0.status == 503, "\(envelopeKey.1)")
        #expect(await send(p, .batch(priority: .live), #"{"batch":"not an array"}"#, key: "revoked").0.status == 400)
        let goodBatch = await send(p, .batch(priority: .live), batch, key: "good")
        #expect(goodBatch.0.status == 200, "\(goodBatch.1)")
        // The line protocol: each line's own key decides.
        let lines = [#"{"type":"identify","userId":"a","writeKey":"revoked"}"#, #"{"type":"identify","userId":"b","writeKey":"good"}"#]
        final class Statuses: @unchecked Sendable {  // refusals come at once, the stored after the commit
            let lock = NSLock()
            var byIndex: [Int: Int] = [:]
        }
        let statuses = Statuses()
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            p.handleSingles(lines.map { Array($0.utf8) }, writeKey: nil) { replies in
                let all = statuses.lock.withLock {
                    for r in replies { statuses.byIndex[r.index] = r.reply.status }
                    return statuses.byIndex.count == lines.count
                }
                if all { c.resume() }
            }
        }
        #expect(statuses.byIndex == [0: 503, 1: 200], "each line's own key decides: \(statuses.byIndex)")
        #expect(f.spool.stats.depth == Int64(stored) + 4, "the good app's calls and batch stored, none of the refused key's")
        refused.store(false, ordering: .relaxed)
        #expect(await send(p, .single(.identify), call, key: "revoked").0.status == 200, "taken again once the upstream takes the key")
        await f.spool.close()
    }

    @Test func aFullSpoolAnswers503WithRetryAfter() async throws {
        let f = try Fixture(maxBytes: 300)  // one small call and its dedupe id fit, a 200-byte trait does not
        let p = f.pipeline()
        #expect(await send(p, .single(.identify), #"{"userId":"u1"}"#).0.status == 200)
        let (reply, json) = await send(p, .single(.identify), #"{"userId":"u2","traits":{"bio":"\#(String(repeating: "x", count: 200))"}}"#)
        #expect(reply.status == 503)
        #expect(reply.retryAfterSeconds == 5, "the forwarder delivers (no wait of its own): the default")
        #expect((json["errors"] as? [String])?.first?.contains("spool is full") == true)
        // While the upstream fails, a full spool tells apps when the forwarder tries next.
        let waiting = IngestPipeline(options: { var o = IngestOptions(); o.relayHasWriteKey = true; return o }(), store: f.spool,
                                     fullSpoolRetryAfter: { 42 })
        let (later, laterJSON) = await send(waiting, .single(.identify), #"{"userId":"u3","traits":{"bio":"\#(String(repeating: "y", count: 200))"}}"#)
        #expect(later.status == 503 && later.retryAfterSeconds == 42 && laterJSON["retry_after"] as? Int == 42)
        await f.spool.close()
    }

    @Test func writeKeyPolicy() async throws {
        let f = try Fixture()
        let noRelayKey = f.pipeline { $0.relayHasWriteKey = false }
        #expect(await send(noRelayKey, .single(.identify), #"{"userId":"u"}"#).0.status == 401)
        #expect(await send(noRelayKey, .single(.identify), #"{"userId":"u"}"#, key: "app-key").0.status == 200)
        let batch = try f.spool.makeReader().leaseBatch(nowMillis: .max / 2, maxCount: 10, maxBytes: 1 << 20)
        #expect(batch.map(\.writeKey) == ["app-key"], "the app's key is kept with its message")

        let restricted = f.pipeline { $0.relayHasWriteKey = true; $0.acceptedWriteKeys = ["good"] }
        #expect(await send(restricted, .single(.identify), #"{"userId":"u"}"#, key: "bad").0.status == 401)
        #expect(await send(restricted, .single(.identify), #"{"userId":"u"}"#, key: "good").0.status == 200)
        await f.spool.close()
    }

    @Test func aWriteKeyInTheBodyIsTheCallsCredentialNeverItsData() async throws {
        let f = try Fixture()
        let noRelayKey = f.pipeline { $0.relayHasWriteKey = false }
        // A call's own writeKey (Segment's HTTP API allows it; the line protocol has no other place for one).
        #expect(await send(noRelayKey, .single(.identify), #"{"userId":"a","writeKey":"key-a"}"#).0.status == 200)
        #expect(await send(noRelayKey, .single(.identify), #"{"userId":"b","write_key":"key-b"}"#).0.status == 200)
        // Basic auth, when sent, is the request's key; the body's is taken out all the same.
        #expect(await send(noRelayKey, .single(.identify), #"{"userId":"c","writeKey":"ignored"}"#, key: "key-c").0.status == 200)
        // A batch's key sits beside `batch`.
        #expect(await send(noRelayKey, .batch(priority: .live), #"{"writeKey":"key-d","batch":[{"type":"identify","userId":"d"}]}"#).0.status == 200)
        let lines = Mutex<[(index: Int, reply: IngestReply)]>([])
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            noRelayKey.handleSingles([Array(#"{"type":"identify","userId":"e","writeKey":"key-e"}"#.utf8), Array(#"{"type":"identify","userId":"f"}"#.utf8)],
                                     writeKey: nil) { replies in
                if lines.withLock({ $0 += replies; return $0.count }) == 2 { c.resume() }
            }
        }
        #expect(lines.withLock { $0.sorted { $0.index < $1.index }.map(\.reply.status) } == [200, 401], "the line without a key is refused")
        let reader = try f.spool.makeReader()
        var stored: [SpoolMessage] = []  // one key a batch
        while case let batch = try reader.leaseBatch(nowMillis: .max / 2, maxCount: 10, maxBytes: 1 << 20), !batch.isEmpty { stored += batch }
        #expect(stored.map(\.writeKey) == ["key-a", "key-b", "key-c", "key-d", "key-e"])
        #expect(!stored.contains { String(decoding: $0.payload, as: UTF8.self).lowercased().contains("key") }, "no key in what is stored and sent")

        let (refused, json) = await send(noRelayKey, .single(.identify), #"{"userId":"g"}"#)
        #expect(refused.status == 401 && (json["errors"] as? [String])?.first?.contains("writeKey") == true, "\(json)")
        #expect(await send(noRelayKey, .single(.identify), #"{"userId":"h","writeKey":7}"#).0.status == 401, "not a key")
        #expect(await send(noRelayKey, .single(.identify), #"{"userId":"i","writeKey":""}"#, key: "key-i").0.status == 200, "ignored beside Basic auth")

        let restricted = f.pipeline { $0.relayHasWriteKey = true; $0.acceptedWriteKeys = ["good"] }
        #expect(await send(restricted, .single(.identify), #"{"userId":"u","writeKey":"bad"}"#).0.status == 401)
        #expect(await send(restricted, .single(.identify), #"{"userId":"u","writeKey":"good"}"#).0.status == 200)
        await f.spool.close()
    }

    @Test func refusedCallsAreSampledForTheOperator() async throws {
        let f = try Fixture()
        let p = f.pipeline()
        #expect(await send(p, .single(.identify), #"{"traits":[],"writeKey":"app-secret"}"#).0.status == 400)
        #expect(await send(p, .batch(priority: .live), #"{"batch":[{"type":"identify","userId":"ok"},{"type":"identify","anonymousId":"","traits":{"firstName":"Ada"}}]}"#).0.status == 200)
        #expect(await send(p, .single(.identify), #"{"userId":"u2"}"#).0.status == 200)  // a commit after the samples
        await f.spool.settle()
        #expect(f.spool.stats.rejected == 2)
        // The refused batch call is kept as the app sent it, not as the rules left it; a key in a sample is removed.
        let samples = try SpoolAdmin(path: f.dir + "/spool.db").rejected(limit: 10).map(\.sample)
        #expect(samples == [#"{"type":"identify","anonymousId":"","traits":{"firstName":"Ada"}}"#, #"{"traits":[],"writeKey":"(removed)"}"#])
        await f.spool.close()
    }

    @Test func writeKeysAreRemovedFromSamplesEvenFromBodiesThatDoNotParse() {
        func clean(_ s: String) -> String { String(decoding: IngestPipeline.withoutWriteKeys(Array(s.utf8)), as: UTF8.self) }
        #expect(clean(#"{"a":1,"writeKey" : "se\"cret","write_key":"s2","b":"writeKey"}"#) == #"{"a":1,"writeKey" : "(removed)","write_key":"(removed)","b":"writeKey"}"#)
        #expect(clean(#"{"writeKey":"cut-short"#) == #"{"writeKey":"(removed)""#)
        #expect(clean(#"{"writeKey":7,"x":"writeKey"}"#) == #"{"writeKey":7,"x":"writeKey"}"#, "not a key: as sent")
    }

    @Test func everyRefusedCallOfABatchIsSampledAsSent() async throws {
        let f = try Fixture()
        let p = f.pipeline()
        // A call repeating a key, elements that are not objects, and a valid call among them.
        let body = #"{"batch":[{"type":"identify","userId":"a","traits":{"plan":"a","plan":"b"}},1,"x",null,{"type":"identify","userId":"ok"},{"type":"identify","traits":{"firstName":"A"}}]}"#
        let (reply, json) = await send(p, .batch(priority: .live), body)
        #expect(reply.status == 200)
        #expect((json["rejected"] as? [[String: Any]])?.compactMap { $0["index"] as? Int } == [0, 1, 2, 3, 5])
        #expect(await send(p, .single(.identify), #"{"userId":"u2"}"#).0.status == 200)  // a commit after the samples
        await f.spool.settle()
        let samples = try SpoolAdmin(path: f.dir + "/spool.db").rejected(limit: 10).map(\.sample)
        #expect(samples == [#"{"type":"identify","traits":{"firstName":"A"}}"#, "null", #""x""#, "1",
                            #"{"type":"identify","userId":"a","traits":{"plan":"a"}}"#])
        await f.spool.close()
    }

    @Test func aRepeatedKeyRefusesTheCallWithItsPathAndInABatchOnlyThatCall() async throws {
        let f = try Fixture()
        let p = f.pipeline()
        let (reply, json) = await send(p, .single(.identify), #"{"userId":"u1","traits":{"plan":"a","plan":"b"}}"#)
        #expect(reply.status == 400)
        #expect(json["errors"] as? [String] == ["traits.plan: duplicate key"])

        let (batchReply, batchJSON) = await send(p, .batch(priority: .live),
            #"{"batch":[{"type":"identify","userId":"kept"},{"type":"identify","userId":"u","traits":{"plan":"a","plan":"a"}}]}"#)
        #expect(batchReply.status == 200)
        #expect((batchJSON["message_ids"] as? [String])?.count == 1)
        let rejected = batchJSON["rejected"] as? [[String: Any]]
        #expect(rejected?.first?["index"] as? Int == 1)
        #expect(rejected?.first?["errors"] as? [String] == ["traits.plan: duplicate key"])

        let (envelopeReply, envelopeJSON) = await send(p, .batch(priority: .live),
            #"{"batch":[{"type":"identify","userId":"x"}],"context":{"ip":"1"},"context":{"ip":"2"}}"#)
        #expect(envelopeReply.status == 400)
        #expect(envelopeJSON["errors"] as? [String] == ["context: duplicate key"])

        let batch = try f.spool.makeReader().leaseBatch(nowMillis: .max / 2, maxCount: 10, maxBytes: 1 << 20)
        #expect(batch.count == 1)
        #expect(String(decoding: batch[0].payload, as: UTF8.self).contains(#""user_id":"kept""#))
        await f.spool.close()
    }

    @Test func canonicallyEquivalentTraitKeysAreBothStored() async throws {
        let f = try Fixture()
        #expect(await send(f.pipeline(), .single(.identify), #"{"userId":"u","traits":{"\u00e9":1,"e\u0301":2}}"#).0.status == 200)
        let batch = try f.spool.makeReader().leaseBatch(nowMillis: .max / 2, maxCount: 10, maxBytes: 1 << 20)
        let stored = try JSONValue.parse(batch[0].payload, maxDepth: 64)
        #expect(stored.objectValue?["traits"]?.objectValue?.members.map { Array($0.key.utf8) } == [[0xC3, 0xA9], [0x65, 0xCC, 0x81]])
        await f.spool.close()
    }

    @Test func importIsQueuedBehindLiveCalls() async throws {
        let f = try Fixture()
        let p = f.pipeline()
        _ = await send(p, .batch(priority: .bulk), #"{"batch":[{"type":"identify","userId":"old","timestamp":"2015-01-01T00:00:00Z"}]}"#)
        _ = await send(p, .single(.identify), #"{"userId":"live"}"#)
        let reader = try f.spool.makeReader()
        let first = try reader.leaseBatch(nowMillis: .max / 2, maxCount: 1, maxBytes: 1 << 20)
        #expect(String(decoding: first[0].payload, as: UTF8.self).contains(#""user_id":"live""#))
        await f.spool.close()
    }
}

@Suite struct HTTPRoutingTests {
    @Test func routes() {
        #expect(HTTPIngestHandler.ingestRoute("/v1/identify") == .single(.identify))
        #expect(HTTPIngestHandler.ingestRoute("/v1/alias") == .single(.alias))
        #expect(HTTPIngestHandler.ingestRoute("/v1/batch") == .batch(priority: .live))
        #expect(HTTPIngestHandler.ingestRoute("/v1/import") == .batch(priority: .bulk))
        #expect(HTTPIngestHandler.ingestRoute("/v1/unknown") == nil)
        #expect(HTTPIngestHandler.ingestRoute("/identify") == nil)
    }

    @Test func basicAuthUserIsTheWriteKey() {
        func user(_ value: String) -> String? { HTTPIngestHandler.basicAuthUser(HTTPHeaders([("Authorization", value)])) }
        #expect(user("Basic " + Data("wk_123:".utf8).base64EncodedString()) == "wk_123")
        #expect(user("basic " + Data("wk_123".utf8).base64EncodedString()) == "wk_123")
        #expect(user("Bearer abc") == nil)
        #expect(user("Basic " + Data(":".utf8).base64EncodedString()) == nil)
        #expect(user("Basic !!!") == nil)
    }
}

/// The bound on what waits for the disk, over a store that commits only when
/// told (a stalled disk): calls past it are refused at once, and admitted
/// again once the commit came.
@Suite struct PendingBoundTests {
    /// A MessageStore whose commits wait for `commitAll()`.
    final class StalledStore: MessageStore, @unchecked Sendable {
        private let lock = NSLock()
        private var held: [(Int, @Sendable (Result<[AppendOutcome], SpoolError>) -> Void)] = []
        func append(_ messages: [SpoolAppend], on executor: (any CompletionExecutor)?,
                    completion: @escaping @Sendable (Result<[AppendOutcome], SpoolError>) -> Void) {
            lock.withLock { held.append((messages.count, completion)) }
        }
        func recordRejected(errorsJSON: String, sample: [UInt8], atMillis: Int64) {}
        var waiting: Int { lock.withLock { held.count } }
        func commitAll() {
            let all = lock.withLock { defer { held = [] }; return held }
            for (count, completion) in all { completion(.success(Array(repeating: .stored, count: count))) }
        }
    }

    final class Replies: @unchecked Sendable {
        private let lock = NSLock()
        private var list: [IngestReply] = []
        func add(_ r: IngestReply) { lock.withLock { list.append(r) } }
        var all: [IngestReply] { lock.withLock { list } }
    }

    final class Lines: @unchecked Sendable {
        private let lock = NSLock()
        private var list: [String] = []
        func add(_ line: String) { lock.withLock { list.append(line) } }
        var all: [String] { lock.withLock { list } }
    }

    /// Keeps the warnings logged.
    struct Warnings: LogHandler {
        let lines: Lines
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? { get { metadata[key] } set { metadata[key] = newValue } }
        func log(event: LogEvent) {
            if event.level == .warning { lines.add(event.message.description) }
        }
    }

    @Test func callsPastThePendingBoundAreRefusedWith503AndAdmittedAfterTheCommit() throws {
        let store = StalledStore()
        var options = IngestOptions()
        options.relayHasWriteKey = true
        options.maxPendingBytes = 2_000
        let warnings = Lines()
        let pipeline = IngestPipeline(options: options, store: store, logger: Logger(label: "test") { _ in Warnings(lines: warnings) })
        let replies = Replies()
        let body = Array(#"{"userId":"u","traits":{"bio":"\#(String(repeating: "x", count: 300))"}}"#.utf8)
        for _ in 0..<10 { pipeline.handle(.single(.identify), body: body, writeKey: nil) { replies.add($0) } }

        let admitted = store.waiting
        #expect(admitted >= 3 && admitted < 10, "about 2,000 bytes of ~450-byte calls wait: \(admitted)")
        let refused = replies.all
        #expect(refused.count == 10 - admitted)
        #expect(refused.allSatisfy { $0.status == 503 && $0.retryAfterSeconds == 1 })
        let json = try #require(refused.first.flatMap { try JSONSerialization.jsonObject(with: Data($0.body)) as? [String: Any] })
        #expect((json["message"] as? String)?.contains("waiting for the disk") == true)
        #expect(warnings.all.count == 1 && warnings.all[0].hasPrefix("refusing calls (503): more than"),
                "one warning for all the refusals, not one per call: \(warnings.all)")

        store.commitAll()
        #expect(replies.all.filter { $0.status == 200 }.count == admitted, "the waiting calls are acknowledged")
        pipeline.handle(.single(.identify), body: body, writeKey: nil) { replies.add($0) }
        #expect(store.waiting == 1, "after the commit, calls are admitted again")
    }
}
