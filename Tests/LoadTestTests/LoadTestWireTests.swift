import LoadTest
import NIOCore
import ParleyJSON
import Testing

/// Runs `body` over the UTF-8 bytes of `s`.
private func withBytes<T>(_ s: String, _ body: (UnsafeRawBufferPointer) -> T) -> T {
    Array(s.utf8).withUnsafeBytes(body)
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
