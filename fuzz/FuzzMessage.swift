// libFuzzer entry for the message rules: the JSON parser and the
// normalizer, compiled into the RelayMessage module by scripts/fuzz.sh
// (not part of the package build). For any input bytes:
// - parsing and normalizing never crash, hang or exhaust memory;
// - a refused call always says why (at least one error);
// - an accepted call's canonical bytes parse again, strictly and without a
//   repeated key, and normalizing them again gives the very same bytes
//   (the relay's output is a fixed point of its own rules).
// A violated property is a crash, so libFuzzer keeps the input.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

private let normalizer = MessageNormalizer()
private let context = NormalizeContext(receivedAt: Date(timeIntervalSince1970: 1_700_000_000.123), makeMessageID: { "fuzz-generated-id" })

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMessage(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    var duplicates: [DuplicateKey] = []
    guard let value = try? JSONValue.parse(bytes, maxDepth: normalizer.limits.maxDepth, duplicateKeys: &duplicates) else { return 0 }
    for endpoint in [CallType?.none, .identify, .track] {
        switch normalizer.normalize(value, endpointType: endpoint, context: context, duplicateKeys: duplicates) {
        case .failure(let rejection):
            precondition(!rejection.errors.isEmpty, "a refused call must say why")
        case .success(let message):
            var again: [DuplicateKey] = []
            guard let reparsed = try? JSONValue.parse(message.encoded, maxDepth: normalizer.limits.maxDepth + 2, duplicateKeys: &again) else {
                preconditionFailure("canonical output does not parse: \(String(decoding: message.encoded, as: UTF8.self))")
            }
            precondition(again.isEmpty, "canonical output repeats a key")
            guard case .success(let second) = normalizer.normalize(reparsed, endpointType: endpoint, context: context) else {
                preconditionFailure("canonical output is refused by the rules: \(String(decoding: message.encoded, as: UTF8.self))")
            }
            precondition(second.encoded == message.encoded, "normalizing twice changed the bytes")
        }
    }
    return 0
}
