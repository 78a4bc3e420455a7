import EngineIO
import ParleyJSON
import SocketIO
import Testing

/// Encodes a packet and renders the messages (`<bin:…>` for attachments).
private func wire(_ packet: SocketIOPacket) -> [String] {
    SocketIOPacketEncoder.encode(packet).map(TestConnection.render)
}

/// Decodes messages with a fresh decoder; returns every completed packet.
private func decodeAll(_ messages: [EngineMessage]) throws -> [SocketIOPacket] {
    var decoder = SocketIOPacketDecoder()
    var out: [SocketIOPacket] = []
    for m in messages {
        if let p = try decoder.decode(m) { out.append(p) }
    }
    return out
}

private func decodeOne(_ text: String) throws -> SocketIOPacket {
    var decoder = SocketIOPacketDecoder()
    guard let p = try decoder.decode(.text(text)) else { throw TestFailure("incomplete packet") }
    return p
}

@Suite struct PacketEncodingTests {
    @Test func connect() {
        #expect(wire(SocketIOPacket(type: .connect)) == ["0"])
        #expect(wire(SocketIOPacket(type: .connect, data: .json(["sid": "abc"]))) == [#"0{"sid":"abc"}"#])
        #expect(wire(SocketIOPacket(type: .connect, namespace: "/admin", data: .json(["sid": "oSO0"]))) == [#"0/admin,{"sid":"oSO0"}"#])
        #expect(wire(SocketIOPacket(type: .connect, namespace: "/admin")) == ["0/admin,"])
    }

    @Test func disconnect() {
        #expect(wire(SocketIOPacket(type: .disconnect)) == ["1"])
        #expect(wire(SocketIOPacket(type: .disconnect, namespace: "/admin")) == ["1/admin,"])
    }

    @Test func event() {
        #expect(wire(SocketIOPacket(type: .event, data: .json(["foo"]))) == [#"2["foo"]"#])
        #expect(wire(SocketIOPacket(type: .event, namespace: "/admin", ackID: 13, data: .json(["bar"]))) == [#"2/admin,13["bar"]"#])
        #expect(
            SocketIOPacketEncoder.encodeEvent(namespace: "/", event: "message-back", arguments: [1, "2", .json(["3": [true]])])
                .map(TestConnection.render) == [#"2["message-back",1,"2",{"3":[true]}]"#])
        #expect(SocketIOPacketEncoder.encodeEvent(namespace: "/x", event: "e", arguments: [], ackID: 7).map(TestConnection.render) == [#"2/x,7["e"]"#])
    }

    @Test func ack() {
        #expect(wire(SocketIOPacket(type: .ack, ackID: 12, data: .json([]))) == ["312[]"])
        #expect(wire(SocketIOPacket(type: .ack, namespace: "/admin", ackID: 13, data: .json(["bar"]))) == [#"3/admin,13["bar"]"#])
        #expect(SocketIOPacketEncoder.encodeAck(namespace: "/", ackID: 456, arguments: [1, "2"]).map(TestConnection.render) == [#"3456[1,"2"]"#])
    }

    @Test func connectError() {
        #expect(wire(SocketIOPacket(type: .connectError, data: .json(["message": "Not authorized"]))) == [#"4{"message":"Not authorized"}"#])
        #expect(
            wire(SocketIOPacket(type: .connectError, namespace: "/random", data: .json(["message": "Invalid namespace"])))
                == [#"4/random,{"message":"Invalid namespace"}"#])
    }

    @Test func binaryEvent() {
        #expect(
            SocketIOPacketEncoder.encodeEvent(namespace: "/", event: "baz", arguments: [.binary([1, 2, 3, 4])]).map(TestConnection.render)
                == [#"51-["baz",{"_placeholder":true,"num":0}]"#, "<bin:1,2,3,4>"])
        #expect(
            SocketIOPacketEncoder.encodeEvent(namespace: "/admin", event: "baz", arguments: [.binary([1, 2]), .binary([3, 4])])
                .map(TestConnection.render)
                == [#"52-/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#, "<bin:1,2>", "<bin:3,4>"])
        // An event packet with binary data is written as BINARY_EVENT, nested buffers in document order.
        let nested = SocketIOValue.object([SocketIOObjectMember("a", .binary([9])), SocketIOObjectMember("b", .array([1, .binary([8])]))])
        #expect(
            wire(SocketIOPacket(type: .event, ackID: 3, data: .array(["up", nested])))
                == [#"52-3["up",{"a":{"_placeholder":true,"num":0},"b":[1,{"_placeholder":true,"num":1}]}]"#, "<bin:9>", "<bin:8>"])
    }

    @Test func binaryAck() {
        #expect(
            SocketIOPacketEncoder.encodeAck(namespace: "/", ackID: 789, arguments: [.binary([1, 2, 3]), .binary([4, 5, 6])]).map(TestConnection.render)
                == [#"62-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#, "<bin:1,2,3>", "<bin:4,5,6>"])
        #expect(
            wire(SocketIOPacket(type: .binaryAck, namespace: "/a", ackID: 1, data: .array([.binary([])]))) == [
                #"61-/a,1[{"_placeholder":true,"num":0}]"#, "<bin:>",
            ])
    }

    @Test func nonCanonicalArrayWithoutBinaryIsPlainEvent() {
        #expect(wire(SocketIOPacket(type: .event, data: .array(["x", .array([1, 2])]))) == [#"2["x",[1,2]]"#])
        // A binary type without buffers has nothing to announce: written as the plain type.
        #expect(wire(SocketIOPacket(type: .binaryEvent, data: .json(["x"]))) == [#"2["x"]"#])
        #expect(wire(SocketIOPacket(type: .binaryAck, ackID: 4, data: .json([]))) == ["34[]"])
    }
}

@Suite struct PacketDecodingTests {
    @Test func connectVariants() throws {
        #expect(try decodeOne("0") == SocketIOPacket(type: .connect))
        #expect(try decodeOne(#"0{"token":"123"}"#) == SocketIOPacket(type: .connect, data: .json(["token": "123"])))
        #expect(try decodeOne("0/custom") == SocketIOPacket(type: .connect, namespace: "/custom"))
        #expect(try decodeOne("0/custom,") == SocketIOPacket(type: .connect, namespace: "/custom"))
        #expect(try decodeOne(#"0/custom,{"token":"abc"}"#) == SocketIOPacket(type: .connect, namespace: "/custom", data: .json(["token": "abc"])))
    }

    @Test func otherTypes() throws {
        #expect(try decodeOne("1") == SocketIOPacket(type: .disconnect))
        #expect(try decodeOne("1/custom,") == SocketIOPacket(type: .disconnect, namespace: "/custom"))
        let event = try decodeOne(#"2["message",1,"2",{"3":[true]}]"#)
        #expect(event.type == .event && event.eventName == "message" && event.ackID == nil)
        #expect(event.arguments == [1, "2", .json(["3": [true]])])
        let withAck = try decodeOne(#"2/admin,456["message-with-ack",1]"#)
        #expect(withAck.namespace == "/admin" && withAck.ackID == 456 && withAck.arguments == [1])
        let ack = try decodeOne(#"312["bar"]"#)
        #expect(ack.type == .ack && ack.ackID == 12 && ack.arguments == ["bar"])
        #expect(try decodeOne("3/admin,13[]") == SocketIOPacket(type: .ack, namespace: "/admin", ackID: 13, data: .json([])))
        #expect(try decodeOne(#"4{"message":"no"}"#).type == .connectError)
        #expect(try decodeOne(#"2[5,"x"]"#).eventName == "5")
    }

    @Test func binaryEventIsReconstructedWhenAllAttachmentsArrived() throws {
        var decoder = SocketIOPacketDecoder()
        #expect(try decoder.decode(.text(#"52-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#)) == nil)
        #expect(decoder.isAwaitingAttachments)
        #expect(try decoder.decode(.binary([1, 2, 3])) == nil)
        let packet = try #require(try decoder.decode(.binary([4, 5, 6])))
        #expect(!decoder.isAwaitingAttachments)
        #expect(packet.type == .binaryEvent && packet.eventName == "message")
        #expect(packet.arguments == [.binary([1, 2, 3]), .binary([4, 5, 6])])
    }

    @Test func binaryAckWithNamespaceAndNesting() throws {
        let packets = try decodeAll([
            .text(#"62-/admin,789[{"file":{"_placeholder":true,"num":1},"n":1},[{"_placeholder":true,"num":0}],"plain"]"#),
            .binary([7]), .binary([8]),
        ])
        let packet = try #require(packets.first)
        #expect(packet.type == .binaryAck && packet.namespace == "/admin" && packet.ackID == 789)
        #expect(
            packet.arguments == [
                .object([SocketIOObjectMember("file", .binary([8])), SocketIOObjectMember("n", 1)]),
                .array([.binary([7])]),
                "plain",
            ])
        #expect(packet.arguments[2].jsonValue == "plain")
        #expect(packet.arguments[0].jsonValue == nil)
    }

    @Test func binaryPacketWithZeroAttachments() throws {
        let p = try decodeOne(#"50-["x",1]"#)
        #expect(p.type == .binaryEvent && p.arguments == [1])
    }

    @Test func placeholderInPlainEventStaysJSON() throws {
        let p = try decodeOne(#"2["x",{"_placeholder":true,"num":0}]"#)
        #expect(p.arguments == [.json(["_placeholder": true, "num": 0])])
    }

    @Test func roundTripThroughEncoder() throws {
        let args: [SocketIOValue] = [
            .json(["text": "héllo 👋", "list": [1, 2.5, nil, false]]), .binary([0, 255]),
            .object([SocketIOObjectMember("k", .binary([1]))]),
        ]
        let messages = SocketIOPacketEncoder.encodeEvent(namespace: "/chat", event: "ev", arguments: args, ackID: 42)
        let packet = try #require(try decodeAll(messages).first)
        #expect(packet.namespace == "/chat" && packet.ackID == 42 && packet.eventName == "ev")
        #expect(packet.arguments == args)
    }

    @Test(arguments: [
        "",  // empty
        "abc",  // 4abc on the wire: unknown type
        "7",  // unknown type
        "9[]",
        "2{}",  // 42{} on the wire: payload is not an array
        #"2abc["message-with-ack",1,"2",{"3":[false]}]"#,  // 42abc[…]: invalid ack id / JSON
        "2",  // event without payload
        "2[]",  // empty event
        "2[1",  // broken JSON
        "2[null]",  // event name must be a string
        #"2["connect"]"#,  // reserved name
        #"2["disconnect",1]"#,
        "0[]",  // CONNECT payload must be an object
        #"0"x""#,
        "1{}",  // DISCONNECT has no payload
        "3[]",  // ACK without id
        "31{}",  // ACK payload must be an array
        "31",
        "4[]",  // CONNECT_ERROR must be an object
        #"5-["x"]"#,  // no attachment count
        #"51["x"]"#,  // no dash
        #"5a-["x"]"#,
        #"51-"x""#,  // binary event not an array
        "21234567890123456[\"x\"]",  // ack id too long
        #"5999-["x"]"#,  // too many attachments
    ])
    func rejectsMalformed(_ text: String) {
        var decoder = SocketIOPacketDecoder()
        #expect(throws: SocketIOProtocolError.self) { _ = try decoder.decode(.text(text)) }
    }

    @Test func rejectsBadPlaceholders() {
        // index out of range
        #expect(throws: SocketIOProtocolError.self) {
            _ = try decodeAll([.text(#"51-["x",{"_placeholder":true,"num":1}]"#), .binary([1])])
        }
        // missing num
        #expect(throws: SocketIOProtocolError.self) {
            _ = try decodeAll([.text(#"51-["x",{"_placeholder":true}]"#), .binary([1])])
        }
        // negative num
        #expect(throws: SocketIOProtocolError.self) {
            _ = try decodeAll([.text(#"61-3[{"_placeholder":true,"num":-1}]"#), .binary([1])])
        }
    }

    @Test func rejectsWrongAttachmentSequence() {
        // a binary message nobody announced
        #expect(throws: SocketIOProtocolError.self) { _ = try decodeAll([.binary([1])]) }
        // a text packet while attachments are still expected
        #expect(throws: SocketIOProtocolError.self) {
            _ = try decodeAll([.text(#"52-["x",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#), .binary([1]), .text(#"2["y"]"#)])
        }
        // too many attachments: the extra one is unannounced
        #expect(throws: SocketIOProtocolError.self) {
            _ = try decodeAll([.text(#"51-["x",{"_placeholder":true,"num":0}]"#), .binary([1]), .binary([2])])
        }
    }

    @Test func limitsAttachmentsAndDepth() {
        var decoder = SocketIOPacketDecoder(maxAttachments: 2)
        #expect(throws: SocketIOProtocolError.self) { _ = try decoder.decode(.text(#"53-["x"]"#)) }
        var shallow = SocketIOPacketDecoder(maxDepth: 4)
        #expect(throws: SocketIOProtocolError.self) { _ = try shallow.decode(.text(#"2["x",[[[[[[1]]]]]]]"#)) }
    }
}
