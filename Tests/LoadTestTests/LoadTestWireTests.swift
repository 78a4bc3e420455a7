import LoadTest
import NIOCore
import ParleyJSON
import Testing

/// Runs `body` over the UTF-8 bytes of `s`.
private func withBytes<T>(_ s: String, _ body: (UnsafeRawBufferPointer) -> T) -> T {
    Array(s.utf8).withUnsafeBytes(body)
}

/// Decodes one client frame built by the codec as a server would: header, mask, payload.
private func decodeClientFrame(_ frame: ByteBuffer) -> (fin: Bool, opcode: UInt8, masked: Bool, payload: [UInt8])? {
    var b = frame
    guard let b0 = b.readInteger(as: UInt8.self), let b1 = b.readInteger(as: UInt8.self) else { return nil }
    var length = Int(b1 & 0x7F)
    if length == 126 { length = Int(b.readInteger(as: UInt16.self)!) } else if length == 127 { length = Int(b.readInteger(as: UInt64.self)!) }
    guard let mask = b.readBytes(length: 4), var payload = b.readBytes(length: length), b.readableBytes == 0 else { return nil }
    for i in payload.indices { payload[i] ^= mask[i % 4] }
    return (b0 & 0x80 != 0, b0 & 0x0F, b1 & 0x80 != 0, payload)
}

@Suite("WebSocket client framing")
struct WebSocketFramingTests {
    @Test("client frames are masked and carry the payload", arguments: [0, 5, 125, 126, 300, 65535, 65536, 70000])
    func encodeRoundTrip(length: Int) throws {
        let payload = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let frame = WebSocketClientCodec.clientFrame(opcode: WebSocketClientCodec.opText, payload: payload, mask: 0xA1B2_C3D4, allocator: ByteBufferAllocator())
        let decoded = try #require(decodeClientFrame(frame))
        #expect(decoded.fin && decoded.masked && decoded.opcode == 1)
        #expect(decoded.payload == payload)
    }

    @Test("server frames: 7-bit, 16-bit and 64-bit lengths, partial input")
    func parseServerFrames() throws {
        for length in [3, 200, 70000] {
            var wire = ByteBuffer()
            wire.writeInteger(UInt8(0x81))
            if length < 126 {
                wire.writeInteger(UInt8(length))
            } else if length <= 0xFFFF {
                wire.writeInteger(UInt8(126)); wire.writeInteger(UInt16(length))
            } else {
                wire.writeInteger(UInt8(127)); wire.writeInteger(UInt64(length))
            }
            wire.writeBytes([UInt8](repeating: 0x61, count: length))
            wire.writeBytes([0x89, 0x00])  // a ping after it
            var partial = wire.getSlice(at: 0, length: wire.readableBytes - 3)!
            #expect(try WebSocketClientCodec.nextFrame(from: &partial) == nil)
            let frame = try #require(try WebSocketClientCodec.nextFrame(from: &wire))
            #expect(frame.fin && frame.opcode == WebSocketClientCodec.opText && frame.payload.readableBytes == length)
            let ping = try #require(try WebSocketClientCodec.nextFrame(from: &wire))
            #expect(ping.opcode == WebSocketClientCodec.opPing && ping.payload.readableBytes == 0)
            #expect(try WebSocketClientCodec.nextFrame(from: &wire) == nil)
        }
    }

    @Test("a masked server frame is unmasked; fragmented and reserved-bit frames are recognised")
    func maskedAndInvalid() throws {
        var wire = ByteBuffer(bytes: [0x01, 0x83, 1, 2, 3, 4, UInt8(ascii: "a") ^ 1, UInt8(ascii: "b") ^ 2, UInt8(ascii: "c") ^ 3])
        let frame = try #require(try WebSocketClientCodec.nextFrame(from: &wire))
        #expect(!frame.fin && frame.payload == ByteBuffer(string: "abc"))
        var reserved = ByteBuffer(bytes: [0xC1, 0x00])
        #expect(throws: WebSocketClientError.self) { try WebSocketClientCodec.nextFrame(from: &reserved) }
        var bigPing = ByteBuffer(bytes: [0x89, 126, 0, 200])
        #expect(throws: WebSocketClientError.self) { try WebSocketClientCodec.nextFrame(from: &bigPing) }
    }

    @Test("handshake: RFC 6455 sample key, accept check, leftover bytes")
    func handshake() {
        #expect(WebSocketHandshake.acceptValue(forKey: "dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        let ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        #expect(
            withBytes(ok + "\u{81}\u{01}0") { WebSocketHandshake.checkResponse($0, key: "dGhlIHNhbXBsZSBub25jZQ==") } == .upgraded(headerLength: ok.utf8.count))
        #expect(withBytes(String(ok.dropLast(2))) { WebSocketHandshake.checkResponse($0, key: "dGhlIHNhbXBsZSBub25jZQ==") } == .incomplete)
        let wrong = ok.replacingOccurrences("s3pP", "XXXX")
        guard case .rejected = withBytes(wrong, { WebSocketHandshake.checkResponse($0, key: "dGhlIHNhbXBsZSBub25jZQ==") }) else {
            Issue.record("wrong accept passed"); return
        }
        guard case .rejected = withBytes("HTTP/1.1 400 Bad Request\r\n\r\n", { WebSocketHandshake.checkResponse($0, key: "k") }) else {
            Issue.record("400 passed"); return
        }
    }

    @Test("SHA-1 and base64 against known vectors")
    func digests() {
        let hex = SHA1.hash(Array("abc".utf8)).map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
        #expect(hex == "a9993e364706816aba3e25717850c26c9cd0d89d")
        // RFC 6455 1.3's example: the accept value for the key "dGhlIHNhbXBsZSBub25jZQ==".
        #expect(WebSocketHandshake.acceptValue(forKey: "dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    }
}

@Suite("Engine.IO / Socket.IO packets of the generator")
struct SocketIOWireTests {
    @Test("classification of the packets the generator handles")
    func classify() {
        let cases: [(String, InboundPacket)] = [
            (#"0{"sid":"x","pingInterval":25000}"#, .engineOpen), ("1", .engineClose), ("2", .enginePing), ("2probe", .enginePing),
            ("3", .engineOther), ("6", .engineOther), (#"40{"sid":"abc"}"#, .socketConnect), ("41", .socketDisconnect),
            (#"44{"message":"no"}"#, .socketConnectError), (#"42["a",1]"#, .socketEvent(arrayStart: 2)),
            (#"42/chat,17["a"]"#, .socketEvent(arrayStart: 10)), ("42nope", .invalid), ("x", .invalid), ("", .invalid),
        ]
        for (packet, expected) in cases {
            #expect(withBytes(packet) { SocketIOWire.classify($0) } == expected, "\(packet)")
        }
    }

    @Test("session_confirm: bare id or {session_id}")
    func sessionConfirm() throws {
        for (packet, sid) in [
            (#"42["session_confirm","abc123"]"#, #""abc123""#),
            (#"42["session_confirm",{"other":[1,{"x":2}],"session_id":"s\"1"}]"#, #""s\"1""#),
        ] {
            let token: String? = withBytes(packet) { p in
                guard case .socketEvent(let start) = SocketIOWire.classify(p), let e = SocketIOWire.event(p, arrayStart: start),
                    let arg = e.firstArgument, let r = SocketIOWire.sessionIDToken(p, argument: arg)
                else { return nil }
                let nameOK = Array("session_confirm".utf8).withUnsafeBytes { SocketIOWire.stringToken(p, e.name, equals: $0) }
                return nameOK ? String(decoding: UnsafeRawBufferPointer(rebasing: p[r]), as: UTF8.self) : nil
            }
            #expect(token == sid)
        }
        let missing = withBytes(#"42["session_confirm",{"id":"x"}]"#) { p -> Range<Int>? in
            guard case .socketEvent(let start) = SocketIOWire.classify(p), let e = SocketIOWire.event(p, arrayStart: start) else { return nil }
            return e.firstArgument.flatMap { SocketIOWire.sessionIDToken(p, argument: $0) }
        }
        #expect(missing == nil)
    }

    @Test("bot_uttered text is decoded (escapes, \\u, surrogate pairs) and compared exactly")
    func botText() {
        func textMatches(_ packet: String, _ expected: String) -> Bool {
            withBytes(packet) { p in
                guard case .socketEvent(let start) = SocketIOWire.classify(p), let e = SocketIOWire.event(p, arrayStart: start),
                    let arg = e.firstArgument, let v = JSONScanner.member(p, object: arg, key: Array("text".utf8))
                else { return false }
                return Array(expected.utf8).withUnsafeBytes { SocketIOWire.stringToken(p, v, equals: $0) }
            }
        }
        #expect(textMatches(#"42["bot_uttered",{"recipient_id":"x","text":"hello 1-2"}]"#, "hello 1-2"))
        #expect(textMatches(#"42["bot_uttered",{"text":"a\"b\\c\/d\n\u00e9\ud83d\ude00"}]"#, "a\"b\\c/d\né😀"))
        #expect(!textMatches(#"42["bot_uttered",{"text":"hello 1-2"}]"#, "hello 1-3"))
        #expect(!textMatches(#"42["bot_uttered",{"text":"hello 1-2"}]"#, "hello 1-"))
        #expect(!textMatches(#"42["bot_uttered",{"text":"hello"}]"#, "hello 1-2"))
        #expect(!textMatches(#"42["bot_uttered",{"texts":"hello"}]"#, "hello"))
        #expect(!textMatches(#"42["bot_uttered",{"text":"\ud83d"}]"#, "?"))
    }

    @Test("outbound packets are valid JSON with the expected shape")
    func outbound() throws {
        let request = String(decoding: SocketIOOutbound.sessionRequest(event: "session_request"), as: UTF8.self)
        #expect(request == #"42["session_request",{"session_id":null}]"#)
        let (prefix, suffix) = SocketIOOutbound.userMessageParts(event: "user_uttered", sessionIDToken: Array(#""s\"1""#.utf8))
        var text: [UInt8] = []
        SocketIOOutbound.messageText(connection: 7, sequence: 42, size: 20, into: &text)
        #expect(String(decoding: text, as: UTF8.self) == "hello 7-42 abcdefghi")
        let packet = String(decoding: prefix + text + suffix, as: UTF8.self)
        #expect(packet.hasPrefix("42"))
        let json = try JSONValue.parse(String(packet.dropFirst(2)))
        #expect(json == .array(["user_uttered", .object(["message": "hello 7-42 abcdefghi", "session_id": "s\"1"])]))
        SocketIOOutbound.messageText(connection: 0, sequence: 1, size: 0, into: &text)
        #expect(String(decoding: text, as: UTF8.self) == "hello 0-1")
    }

    @Test("options: request path and validation messages name the flag")
    func options() {
        var o = LoadTestOptions()
        #expect(o.requestPath == "/socket.io/?EIO=4&transport=websocket")
        o.path = "/bot/socket.io/?EIO=4&transport=websocket&x=1"
        #expect(o.requestPath == "/bot/socket.io/?EIO=4&transport=websocket&x=1")
        o.proto = .raw
        o.path = nil
        #expect(o.requestPath == "/" && o.effectiveMessageSize == 64)
        o.clients = 0
        #expect(o.validate()?.hasPrefix("--clients") == true)
    }
}

extension String {
    fileprivate func replacingOccurrences(_ a: String, _ b: String) -> String {
        var out = ""
        var rest = Substring(self)
        while let r = rest.firstRange(of: a) {
            out += rest[..<r.lowerBound] + b
            rest = rest[r.upperBound...]
        }
        return out + rest
    }
}
