import NIOCore
import NIOEmbedded
import ParleyJSON
import SocketIO
import Testing

@testable import SocketIORedis

@Suite("MessagePack")
struct MessagePackTests {
    @Test("values round-trip, with the shortest encodings")
    func roundTrip() throws {
        let values: [MessagePackValue] = [
            .nil, .bool(true), .bool(false), .uint(0), .uint(127), .uint(128), .uint(65_536), .uint(UInt64.max), .int(-1), .int(-33),
            .int(Int64.min), .double(2.5), .string(""), .string("ädа 😀"), .string(String(repeating: "x", count: 70_000)), .binary([1, 2, 3]),
            .array((0..<20).map { .uint(UInt64($0)) }), .map([MessagePackPair(.string("a"), .array([.nil, .map([])]))]),
        ]
        for value in values {
            #expect(try MessagePackValue.decode(value.encoded()) == value)
        }
        #expect(MessagePackValue.uint(5).encoded() == [5])
        #expect(MessagePackValue.int(-5).encoded() == [0xFB])
        #expect(MessagePackValue.string("ab").encoded() == [0xA2, 0x61, 0x62])
    }

    @Test("hostile input is an error, never a crash")
    func hostile() {
        let cases: [[UInt8]] = [
            [], [0xC1], [0xDD, 0xFF, 0xFF, 0xFF, 0xFF], [0xDF, 0x7F, 0xFF, 0xFF, 0xFF], [0xDB, 0xFF, 0xFF, 0xFF, 0xFF, 0x61], [0xA3, 0x61],
            [0xC4, 0x05, 1], [0xA2, 0xFF, 0xFE], [0x01, 0x02], Array(repeating: 0x91, count: 200) + [0xC0], [0xD4, 0x01, 0x02],
        ]
        for bytes in cases {
            #expect(throws: MessagePackError.self, "\(bytes.prefix(8))") { try MessagePackValue.decode(bytes) }
        }
    }
}

@Suite("socket.io Redis adapter message format")
struct RedisWireFormatTests {
    @Test("what Parley publishes reads back: event, namespace, rooms, except")
    func roundTrip() throws {
        let packet = SocketIOPacket(
            type: .event, namespace: "/", data: .array([.json("bot_uttered"), .json(["text": "hi", "n": 2]), .binary([0, 1, 255])]))
        let target = SocketIOBroadcastTarget(rooms: ["s1"], exceptRooms: ["x"])
        let bytes = RedisWireFormat.encode(uid: "abc123", packet: packet, target: target, namespace: "/")
        let message = try RedisWireFormat.decode(bytes)
        #expect(message.uid == "abc123" && message.target == target)
        #expect(message.packet.namespace == "/" && message.packet.eventName == "bot_uttered")
        #expect(message.packet.data == packet.data)
        // The shape Node's adapter writes: [uid, {type, data, nsp}, {rooms, except, flags}].
        guard case .array(let parts) = try MessagePackValue.decode(bytes) else { Issue.record("not an array"); return }
        #expect(parts[1]["type"] == .uint(2) && parts[1]["nsp"] == .string("/") && parts[2]["rooms"] == .array([.string("s1")]))
    }

    @Test("an emitter's message without nsp goes to /; numeric rooms are names; anything else is refused")
    func emitterShapes() throws {
        let emitter = MessagePackValue.array([
            .string("emitter"), .map([MessagePackPair(.string("type"), .uint(2)), MessagePackPair(.string("data"), .array([.string("e"), .uint(1)]))]),
            .map([MessagePackPair(.string("rooms"), .array([.uint(42)]))]),
        ])
        let message = try RedisWireFormat.decode(emitter.encoded())
        #expect(message.packet.namespace == "/" && message.target.rooms == ["42"])
        let refused: [MessagePackValue] = [
            .map([]), .array([.string("u")]), .array([.uint(1), .map([])]),
            .array([.string("u"), .map([MessagePackPair(.string("type"), .uint(3)), MessagePackPair(.string("data"), .array([.string("e")]))])]),
            .array([.string("u"), .map([MessagePackPair(.string("type"), .uint(2)), MessagePackPair(.string("data"), .array([]))])]),
        ]
        for value in refused {
            #expect(throws: MessagePackError.self) { try RedisWireFormat.decode(value.encoded()) }
        }
    }
}

@Suite("RESP through hiredis")
struct RESPTests {
    @Test("replies split across reads, nested arrays, errors; commands are binary-safe")
    func decoding() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(RESPDecoder()))
        let wire = "+OK\r\n:42\r\n-ERR no\r\n*4\r\n$8\r\npmessage\r\n$1\r\np\r\n$1\r\nc\r\n$4\r\na\r\nb\r\n$-1\r\n"
        let bytes = Array(wire.utf8)
        // Fed one byte at a time: hiredis keeps partial replies.
        for byte in bytes { try channel.writeInbound(ByteBuffer(bytes: [byte])) }
        var replies: [RedisReply] = []
        while let reply = try channel.readInbound(as: RedisReply.self) { replies.append(reply) }
        #expect(
            replies == [
                .status("OK"), .integer(42), .error("ERR no"),
                .array([.bulk(Array("pmessage".utf8)), .bulk(Array("p".utf8)), .bulk(Array("c".utf8)), .bulk(Array("a\r\nb".utf8))]), .bulk(nil),
            ])
        let command = redisCommand([Array("PUBLISH".utf8), Array("c".utf8), [0, 13, 10, 255]])
        #expect(Array(command.readableBytesView) == Array("*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$4\r\n".utf8) + [0, 13, 10, 255] + Array("\r\n".utf8))
        #expect(throws: (any Error).self) { try channel.writeInbound(ByteBuffer(string: "?garbage\r\n")) }
    }
}

@Suite("Redis adapter configuration")
struct RedisConfigurationTests {
    @Test func urls() throws {
        let c = try SocketIORedisConfiguration(url: "redis://:pw@cache:6380/0", key: "k")
        #expect(c.host == "cache" && c.port == 6380 && c.password == "pw" && c.key == "k")
        #expect(try SocketIORedisConfiguration(url: "redis://127.0.0.1").port == 6379)
        for bad in ["http://x", "redis://", "redis://h:0", "redis://h:x"] {
            #expect(throws: SocketIORedisConfigurationError.self) { try SocketIORedisConfiguration(url: bad) }
        }
    }
}

@Suite("Redis adapter requests between nodes")
struct RedisRequestTests {
    @Test("joins, leaves and disconnects are socket.io-redis-adapter's JSON requests; their target reads back")
    func operations() throws {
        let target = SocketIOBroadcastTarget(rooms: ["b", "a"], exceptRooms: ["x"])
        let join = RedisRequests.request(.join(["r1"]), target: target, uid: "node01")
        #expect(join.serialized == #"{"uid":"node01","opts":{"rooms":["a","b"],"except":["x"]},"type":2,"rooms":["r1"]}"#)
        #expect(RedisRequests.target(join["opts"]) == target)
        #expect(RedisRequests.request(.leave(["r1"]), target: target, uid: "u")["type"] == .int(3))
        let disconnect = RedisRequests.request(.disconnect(close: true), target: target, uid: "u")
        #expect(disconnect["type"] == .int(4) && disconnect["close"] == .bool(true))
    }

    @Test("requests and answers are read as JSON or MessagePack; anything else is nil")
    func decoding() {
        #expect(RedisRequests.decode(Array(#"{"requestId":"q","type":1}"#.utf8))?["type"] == .int(1))
        let packed = MessagePackValue.map([
            MessagePackPair(.string("requestId"), .string("q")), MessagePackPair(.string("rooms"), .array([.string("r"), .uint(7)])),
        ]).encoded()
        let answer = RedisRequests.decode(packed)
        #expect(answer?["requestId"] == .string("q"))
        #expect(answer?["rooms"]?.arrayValue?.compactMap(RedisRequests.roomName) == ["r", "7"])
        #expect(RedisRequests.decode([0xC1]) == nil)
        #expect(RedisRequests.decode(Array("{not json".utf8)) == nil)
    }
}
