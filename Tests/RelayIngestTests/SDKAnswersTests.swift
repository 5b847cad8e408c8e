import Foundation
import Testing
@testable import RelayIngest
import RelayMessage
import RelaySpool

/// What Segment-style SDKs and line-protocol clients read from a refusal,
/// and the batch envelope the Python SDKs send.
@Suite struct SDKAnswersTests {
    typealias Fixture = IngestPipelineTests.Fixture
    func send(_ p: IngestPipeline, _ route: IngestRoute, _ json: String) async -> (IngestReply, [String: Any]) {
        await IngestPipelineTests().send(p, route, json)
    }

    @Test func aRefusalHasTheCodeAndMessageSDKsReadBesideEveryError() async throws {
        let f = try Fixture()
        let (reply, json) = await send(f.pipeline(), .batch(priority: .live),
                                       #"{"batch":[{"type":"identify","userId":"u","traits":{"age":"old","email":1,"phone":2,"title":3}}]}"#)
        #expect(reply.status == 400)
        #expect(json["code"] as? String == "invalid")
        #expect(json["status"] as? Int == 400)
        #expect((json["errors"] as? [String])?.count == 4)
        #expect(json["message"] as? String ==
            "batch[0].traits.age: expected a number, got a string; batch[0].traits.email: expected a string, got a number; batch[0].traits.phone: expected a string, got a number; and 1 more (see errors)")
        #expect(json["retry_after"] == nil)
        await f.spool.close()
    }

    @Test func a503SaysWhenToRetryInItsBodyForTheLineProtocol() async throws {
        let f = try Fixture(maxBytes: 300)
        let p = f.pipeline()
        #expect(await send(p, .single(.identify), #"{"userId":"u1"}"#).0.status == 200)
        let (reply, json) = await send(p, .single(nil), #"{"type":"identify","userId":"u2","traits":{"bio":"\#(String(repeating: "x", count: 200))"}}"#)
        #expect(reply.status == 503)
        #expect(json["code"] as? String == "unavailable")
        #expect(json["retry_after"] as? Int == reply.retryAfterSeconds)
        #expect(reply.retryAfterSeconds == 5)
        await f.spool.close()
    }

    @Test func theSegmentBatchEnvelopeIsAcceptedAndItsWriteKeyAndSentAtAreNotStored() async throws {
        let f = try Fixture()
        let (reply, json) = await send(f.pipeline(), .batch(priority: .live), #"""
            {"batch": [{"integrations": {}, "anonymousId": null, "timestamp": "2026-11-29T12:44:38.602+00:00", "context": {"library": {"name": "analytics-python", "version": "2.4.0"}}, "type": "identify", "userId": "u1", "traits": {"firstName": "Ada"}, "messageId": "m1"}],
             "sentAt": "2026-11-29T12:44:39.000123+00:00", "writeKey": "app-key"}
            """#)
        #expect(reply.status == 200)
        #expect(json["stored"] as? Int == 1)
        let batch = try f.spool.makeReader().leaseBatch(nowMillis: .max / 2, maxCount: 10, maxBytes: 1 << 20)
        let stored = String(decoding: try #require(batch.first).payload, as: UTF8.self)
        #expect(stored.contains(#""first_name":"Ada""#))
        #expect(!stored.contains("writeKey") && !stored.contains("app-key") && !stored.contains("sentAt"),
                "the batch-level key and send time are the envelope's, not the message's: \(stored)")
        await f.spool.close()
    }
}
