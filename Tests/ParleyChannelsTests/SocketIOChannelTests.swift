import EngineIO
import Logging
import ParleyChannels

import ParleyCore
import ParleyDispatch
import ParleyJSON
import ParleyTesting
import SocketIO
import Synchronization
import Testing

/// A channel on an in-memory server with the in-process mirror agent.
struct Harness {
    let server = SocketIOServer(logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
    let channel: SocketIOChannel

    init(
        _ config: SocketIOChannelConfiguration = SocketIOChannelConfiguration(sessionPersistence: true), jwt: JWTVerifier? = nil,
        script: @escaping @Sendable (UserMessage) throws -> [JSONValue] = mirror
    ) {
        channel = SocketIOChannel(
            server: server, configuration: config, turns: ScriptedTurns(script), jwt: jwt,
            logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
    }

    /// A connected client (CONNECT answered and taken).
    func connect(_ connect: String = "0") -> InProcessConnection {
        let c = InProcessConnection.open(on: server)
        c.receive(connect)
        return c
    }
}

@Suite("Socket.IO channel (in memory, byte-exact)")
struct SocketIOChannelTests {
    @Test func sessionConfirmIsTheBareIdAndIdsAreEchoed() {
        let h = Harness()
        let c = h.connect()
        #expect(c.take().first?.hasPrefix("0{\"sid\":\"") == true)
        c.receive(#"2["session_request",{"session_id":"abc"}]"#)
        #expect(c.take() == [#"2["session_confirm","abc"]"#])
        c.receive(#"2["session_request",{"session_id":""}]"#)
        #expect(c.take() == [#"2["session_confirm",""]"#])
        c.receive(#"2["session_request",{"session_id":5}]"#)
        #expect(c.take() == [#"2["session_confirm",5]"#])
        for request in [#"2["session_request",{"session_id":null}]"#, #"2["session_request",{}]"#, #"2["session_request",null]"#] {
            c.receive(request)
            let sent = c.take()
            #expect(sent.count == 1)
            let id = sent.first.flatMap { try? JSONValue.parse(String($0.dropFirst())) }?.arrayValue?.last?.stringValue ?? ""
            #expect(id.count == 32 && id.allSatisfy { $0.isHexDigit && !$0.isUppercase }, "\(sent)")
        }
    }

    @Test func invalidSessionRequestsAreRefusedVisibly() {
        let h = Harness()
        let c = h.connect()
        _ = c.take()
        c.receive(#"2["session_request"]"#)
        c.receive(#"2["session_request","abc"]"#)
        c.receive(#"2["session_request",[1]]"#)
        let sent = c.take()
        #expect(sent.count == 3)
        #expect(sent.allSatisfy { $0.hasPrefix(#"2["parley_error",{"code":"invalid_input","#) && $0.contains(#""event":"session_request""#) }, "\(sent)")
    }

    @Test func refusalsAreSilentWithoutAnErrorEvent() {
        let h = Harness(SocketIOChannelConfiguration(sessionPersistence: true, errorEvent: ""))
        let c = h.connect()
        _ = c.take()
        c.receive(#"2["session_request","abc"]"#)
        c.receive(#"2["user_uttered",{"message":"x"}]"#)
        #expect(c.take() == [])
    }

    @Test func persistenceRoutesRepliesToTheSessionRoom() {
        let h = Harness()
        let a = h.connect(), b = h.connect(), outsider = h.connect()
        for c in [a, b] { c.receive(#"2["session_request",{"session_id":"s1"}]"#) }
        outsider.receive(#"2["session_request",{"session_id":"s2"}]"#)
        _ = (a.take(), b.take(), outsider.take())
        outsider.receive(#"2["user_uttered",{"message":"a\n\nb","session_id":"s1"}]"#)
        #expect(a.take() == [#"2["bot_uttered",{"text":"a"}]"#, #"2["bot_uttered",{"text":"b"}]"#])
        #expect(b.take() == [#"2["bot_uttered",{"text":"a"}]"#, #"2["bot_uttered",{"text":"b"}]"#])
        #expect(outsider.take() == [])
    }

    @Test func messagesWithoutAValidSessionIdAreIgnored() {
        let h = Harness()
        let c = h.connect()
        c.receive(#"2["session_request",{"session_id":"s"}]"#)
        _ = c.take()
        for packet in [
            #"2["user_uttered",{"message":"x"}]"#, #"2["user_uttered",{"message":"x","session_id":""}]"#,
            #"2["user_uttered",{"message":"x","session_id":null}]"#, #"2["user_uttered","text"]"#, #"2["user_uttered"]"#,
            #"2["user_uttered",[1]]"#, #"2["user_uttered",{"message":5,"session_id":"s"}]"#,
            #"2["user_uttered",{"message":"/metadata","session_id":"s","metadata":"{bad"}]"#,
            #"2["user_uttered",{"message":"   ","session_id":"s"}]"#,
        ] {
            c.receive(packet)
        }
        // No reply; each invalid one is refused with an error event to this socket (the blank message is a turn
        // whose mirror reply is empty).
        let sent = c.take()
        #expect(sent.count == 8, "\(sent)")
        #expect(sent.allSatisfy { $0.hasPrefix(#"2["parley_error",{"code":"invalid_input","#) }, "\(sent)")
    }

    @Test func everyResponseShape() {
        let h = Harness()
        let c = h.connect()
        c.receive(#"2["session_request",{"session_id":"s"}]"#)
        _ = c.take()
        let cases: [(String, [String])] = [
            (
                "/buttons",
                [
                    #"2["bot_uttered",{"text":"pick one","quick_replies":[{"content_type":"text","title":"Yes","payload":"/yes"},{"content_type":"text","title":"No","payload":"/no"}]}]"#
                ]
            ),
            ("/image", [#"2["bot_uttered",{"attachment":{"type":"image","payload":{"src":"https://example.com/cat.png"}}}]"#]),
            (
                "/elements",
                [
                    #"2["bot_uttered",{"attachment":{"type":"template","payload":{"template_type":"generic","elements":{"title":"Card","subtitle":"sub","buttons":[{"title":"Go","payload":"/go"}]}}}}]"#
                ]
            ),
            ("/custom", [#"2["bot_uttered",{"foo":"bar","n":1}]"#]),
            ("/metadata", [#"2["bot_uttered",{"metadata":{}}]"#]),
        ]
        for (text, expected) in cases {
            c.receive(#"2["user_uttered",{"message":"\#(text)","session_id":"s"}]"#)
            #expect(c.take() == expected, "\(text)")
        }
        c.receive(#"2["user_uttered",{"message":"/metadata","session_id":"s","metadata":"{\"k\":1}"}]"#)
        #expect(c.take() == [#"2["bot_uttered",{"metadata":{"k":1}}]"#])
    }

    @Test func withoutPersistenceTheSocketIdIsTheSender() {
        let h = Harness(SocketIOChannelConfiguration(sessionPersistence: false))
        let c = h.connect()
        let connect = c.take().first ?? ""
        let sid = (try? JSONValue.parse(String(connect.dropFirst())))?["sid"]?.stringValue ?? "?"
        c.receive(#"2["user_uttered",{"message":"/sender"}]"#)
        #expect(c.take() == ["2[\"bot_uttered\",{\"text\":\"\(sid)\"}]"])
    }

    @Test func namespacesWork() {
        let h = Harness(SocketIOChannelConfiguration(namespace: "/chat", sessionPersistence: true))
        let c = h.connect("0/chat,")
        #expect(c.take().first?.hasPrefix("0/chat,{\"sid\":") == true)
        c.receive(#"2/chat,["session_request",{"session_id":"n"}]"#)
        #expect(c.take() == [#"2/chat,["session_confirm","n"]"#])
        c.receive(#"2/chat,["user_uttered",{"message":"hi","session_id":"n"}]"#)
        #expect(c.take() == [#"2/chat,["bot_uttered",{"text":"hi"}]"#])
    }

    @Test func jwtRejectionIsRasas() async throws {
        let verifier = try await JWTVerifier(method: "HS256", key: "secret")
        let h = Harness(jwt: verifier)
        let c = h.connect(#"0{"token":"bad"}"#)
        #expect(c.take() == [#"4{"message":"Connection rejected by server"}"#])
        let d = h.connect()
        #expect(d.take() == [#"4{"message":"Connection rejected by server"}"#])
    }

    @Test func proactiveDeliveryGoesToTheRoom() async {
        let h = Harness()
        let c = h.connect()
        c.receive(#"2["session_request",{"session_id":"p"}]"#)
        _ = c.take()
        await h.channel.deliver(TurnResult(responses: [["text": "reminder"]]), to: "p", channel: nil)
        #expect(c.take() == [#"2["bot_uttered",{"text":"reminder"}]"#])
    }

    @Test func quickRepliesGoOnTheLastParagraphAndNullCustomDataHasNoArgument() {
        let h = Harness(script: { m in
            switch m.text {
            case "buttons": return [["text": "a\n\nb", "buttons": [["title": "t"]]]]
            case "null": return [["custom": ["data": nil]]]
            default: return []
            }
        })
        let c = h.connect()
        c.receive(#"2["session_request",{"session_id":"q"}]"#)
        _ = c.take()
        c.receive(#"2["user_uttered",{"message":"buttons","session_id":"q"}]"#)
        #expect(
            c.take() == [
                #"2["bot_uttered",{"text":"a","quick_replies":[]}]"#,
                #"2["bot_uttered",{"text":"b","quick_replies":[{"content_type":"text","title":"t","payload":"t"}]}]"#,
            ])
        c.receive(#"2["user_uttered",{"message":"null","session_id":"q"}]"#)
        #expect(c.take() == [#"2["bot_uttered"]"#])
    }
}
