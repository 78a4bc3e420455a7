@testable import EngineIO
import Testing

@Suite("Engine.IO codec (no sockets)")
struct CodecTests {
    @Test(
        "every text packet type decodes",
        arguments: [
            ("0{}", EnginePacket.open("{}")),
            ("1", .close),
            ("2", .ping("")),
            ("2probe", .ping("probe")),
            ("3probe", .pong("probe")),
            ("4hello", .message(.text("hello"))),
            ("4", .message(.text(""))),
            ("4€ 😀", .message(.text("€ 😀"))),
            ("5", .upgrade),
            ("6", .noop),
        ])
    func decodeText(input: String, expected: EnginePacket) throws {
        #expect(try EngineCodec.decodeText(Array(input.utf8)) == expected)
    }

    @Test("malformed text packets are rejected", arguments: ["", "abc", "7", "9x", "1x", "5x", "6x", "b", "\u{1e}"])
    func malformed(input: String) {
        #expect(throws: EngineDecodingError.self) { try EngineCodec.decodeText(Array(input.utf8)) }
    }

    @Test func payloadWithSeveralPacketsAndBinary() throws {
        let packets = try EngineCodec.decodePayload(Array("4hello\u{1e}bAQIDBA==\u{1e}3\u{1e}1".utf8))
        #expect(packets == [.message(.text("hello")), .message(.binary([1, 2, 3, 4])), .pong(""), .close])
    }

    @Test("malformed payloads are rejected", arguments: ["", "4a\u{1e}", "\u{1e}4a", "4a\u{1e}\u{1e}4b", "b!!!!", "bAQ=A", "4a\u{1e}x"])
    func malformedPayload(input: String) {
        #expect(throws: EngineDecodingError.self) { try EngineCodec.decodePayload(Array(input.utf8)) }
    }

    @Test func encodePayloadJoinsWithRecordSeparator() {
        let bytes = EngineCodec.encodePayload([.message(.text("test1")), .message(.binary([1, 2, 3, 4])), .ping(""), .noop])
        #expect(String(decoding: bytes, as: UTF8.self) == "4test1\u{1e}bAQIDBA==\u{1e}2\u{1e}6")
    }

    @Test func payloadRoundTrip() throws {
        let packets: [EnginePacket] = [.message(.text("a\u{1f}b")), .message(.binary([])), .message(.binary([255, 0, 7])), .close]
        #expect(try EngineCodec.decodePayload(EngineCodec.encodePayload(packets)) == packets)
    }

    @Test("base64 round-trips every tail length", arguments: 0..<8)
    func base64(length: Int) {
        let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 * 37 + 200) }
        var text: [UInt8] = []
        EngineBase64.encode(bytes, into: &text)
        #expect(text.count == (length + 2) / 3 * 4)
        #expect(EngineBase64.decode(text) == bytes)
    }

    @Test func base64KnownVectors() {
        var out: [UInt8] = []
        EngineBase64.encode(Array("foobar".utf8), into: &out)
        #expect(String(decoding: out, as: UTF8.self) == "Zm9vYmFy")
        out = []
        EngineBase64.encode(Array("fo".utf8), into: &out)
        #expect(String(decoding: out, as: UTF8.self) == "Zm8=")
        #expect(EngineBase64.decode(Array("Zm8=".utf8)) == Array("fo".utf8))
        #expect(EngineBase64.decode(Array("Zm8".utf8)) == Array("fo".utf8))
        #expect(EngineBase64.decode(Array("Z".utf8)) == nil)
        #expect(EngineBase64.decode(Array("Zm8===".utf8)) == nil)
    }

    @Test func openPacketHasExactlyTheSpecKeys() {
        let json = EngineCodec.openPacketJSON(
            sid: "abc",
            upgrades: ["websocket"],
            pingIntervalMilliseconds: 300,
            pingTimeoutMilliseconds: 200,
            maxPayload: 1_000_000
        )
        #expect(json == #"{"sid":"abc","upgrades":["websocket"],"pingInterval":300,"pingTimeout":200,"maxPayload":1000000}"#)
    }
}
