import HTTPTypes
import Hummingbird
import Logging
import ParleyChannels
import ParleyCore
import ParleyDispatch
import ParleyJSON
import Synchronization
import Testing

/// An in-process turn handler: replies with fixed responses per text and records what it received.
final class ScriptedTurns: TurnHandler {
    let received = Mutex<[UserMessage]>([])
    let script: @Sendable (UserMessage) throws -> [JSONValue]

    init(_ script: @escaping @Sendable (UserMessage) throws -> [JSONValue]) { self.script = script }

    func handle(_ message: UserMessage) async throws -> TurnResult {
        received.withLock { $0.append(message) }
        return TurnResult(responses: try script(message))
    }

    func submit(_ message: UserMessage, completion: @escaping @Sendable (Result<TurnResult, any Error>) -> Void) {
        received.withLock { $0.append(message) }
        completion(Result { TurnResult(responses: try script(message)) })
    }
}

struct MailboxFull: Error, CustomStringConvertible { var description: String { "mailbox full" } }

/// The mirror agent's responses (the conformance agent of the plugin issue), in process.
let mirror: @Sendable (UserMessage) throws -> [JSONValue] = { m in
    switch m.text {
    case "/buttons": return [["text": "pick one", "buttons": [["title": "Yes", "payload": "/yes"], ["title": "No", "payload": "/no"]]]]
    case "/quick": return [["text": "quick", "quick_replies": [["title": "A", "payload": "/a"]]]]
    case "/image": return [["image": "https://example.com/cat.png"]]
    case "/attachment": return [["attachment": ["type": "video", "payload": ["src": "https://example.com/v.mp4"]]]]
    case "/elements": return [["elements": [["title": "Card", "subtitle": "sub", "buttons": [["title": "Go", "payload": "/go"]]]]]]
    case "/custom": return [["custom": ["foo": "bar", "n": 1]]]
    case "/metadata": return [["custom": ["metadata": .object(m.metadata)]]]
    case "/sender": return [["text": .string(m.senderID)]]
    case "/many": return (1...5).map { ["text": .string("\($0)")] }
    case "/full": throw DispatchError(.mailboxFull, senderID: "u", "mailbox full")
    case "/store": throw MailboxFull()
    case let t where t.hasPrefix("/"): return []
    default: return [["text": .string(m.text)]]
    }
}

@Suite("REST channel")
struct RESTChannelTests {
    let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

    func post(_ channel: RESTChannel, _ body: String) async -> (HTTPResponse.Status, JSONValue) {
        let reply = await channel.reply(toBody: Array(body.utf8), logger: logger)
        return (reply.status, reply.body)
    }

    @Test func everyResponseShape() async throws {
        let channel = RESTChannel(turns: ScriptedTurns(mirror))
        let cases: [(String, JSONValue)] = [
            ("hello", [["recipient_id": "u1", "text": "hello"]]),
            ("  a\n\nb  ", [["recipient_id": "u1", "text": "a"], ["recipient_id": "u1", "text": "b"]]),
            ("/buttons", [["recipient_id": "u1", "text": "pick one", "buttons": [["title": "Yes", "payload": "/yes"], ["title": "No", "payload": "/no"]]]]),
            ("/quick", [["recipient_id": "u1", "text": "quick", "buttons": [["title": "A", "payload": "/a"]]]]),
            ("/image", [["recipient_id": "u1", "image": "https://example.com/cat.png"]]),
            ("/attachment", [["recipient_id": "u1", "attachment": ["type": "video", "payload": ["src": "https://example.com/v.mp4"]]]]),
            ("/elements", [["recipient_id": "u1", "text": "Card : sub", "buttons": [["title": "Go", "payload": "/go"]]]]),
            ("/custom", [["recipient_id": "u1", "custom": ["foo": "bar", "n": 1]]]),
            ("/many", .array((1...5).map { ["recipient_id": "u1", "text": .string("\($0)")] })),
            ("/unknown", []),
        ]
        for (text, expected) in cases {
            let body = JSONValue.object(["sender": "u1", "message": .string(text)]).serialized
            let (status, json) = await post(channel, body)
            #expect(status == .ok, "\(text)")
            #expect(json == expected, "\(text)")
        }
    }

    @Test func keyOrderIsRasas() async throws {
        let channel = RESTChannel(turns: ScriptedTurns(mirror))
        let (_, json) = await post(channel, #"{"sender":"u","message":"/buttons"}"#)
        #expect(json.serialized == #"[{"recipient_id":"u","text":"pick one","buttons":[{"title":"Yes","payload":"/yes"},{"title":"No","payload":"/no"}]}]"#)
    }

    @Test func metadataAndSenderReachTheTurnHandler() async throws {
        let turns = ScriptedTurns(mirror)
        let channel = RESTChannel(turns: turns)
        let (_, json) = await post(channel, #"{"sender":"abc","message":"/metadata","metadata":{"lang":"de"}}"#)
        #expect(json == [["recipient_id": "abc", "custom": ["metadata": ["lang": "de"]]]])
        let (_, numeric) = await post(channel, #"{"sender":42,"message":"/sender"}"#)
        #expect(numeric == [["recipient_id": "42", "text": "42"]])
        let first = try #require(turns.received.withLock { $0.first })
        #expect(first.inputChannel == "rest" && first.senderID == "abc" && first.metadata == ["lang": "de"])
    }

    @Test func badRequests() async throws {
        let channel = RESTChannel(turns: ScriptedTurns(mirror))
        let cases: [(String, String)] = [
            ("{not json", "the body is not valid JSON"),
            ("[1,2]", "the body must be a JSON object"),
            (#"{"message":"hi"}"#, "missing \"sender\""),
            (#"{"sender":"","message":"hi"}"#, "\"sender\" must be a non-empty string"),
            (#"{"sender":["x"],"message":"hi"}"#, "\"sender\" must be a non-empty string"),
            (#"{"sender":"u"}"#, "missing \"message\""),
            (#"{"sender":"u","message":5}"#, "\"message\" must be a string"),
            (#"{"sender":"u","message":"hi","metadata":"x"}"#, "\"metadata\" must be a JSON object"),
            (#"{"sender":"u","message":"hi","metadata":[1]}"#, "\"metadata\" must be a JSON object"),
        ]
        for (body, fragment) in cases {
            let (status, json) = await post(channel, body)
            #expect(status == .badRequest, "\(body)")
            #expect(json["status"] == "failure")
            #expect(json["code"] == 400)
            #expect(json["message"]?.stringValue?.contains(fragment) == true, "\(body): \(json)")
        }
    }

    @Test func refusedMessage() async throws {
        let channel = RESTChannel(turns: ScriptedTurns(mirror))
        var (status, json) = await post(channel, #"{"sender":"u","message":"/full"}"#)
        #expect(status == .tooManyRequests)
        #expect(json["reason"] == "MailboxFull")
        (status, json) = await post(channel, #"{"sender":"u","message":"/store"}"#)
        #expect(status == .serviceUnavailable)
        #expect(json["message"] == "the message was not handled: mailbox full")
    }
}

@Suite("Text helpers")
struct TextHelperTests {
    @Test func paragraphs() {
        #expect(Paragraphs.split("a\n\nb") == ["a", "b"])
        #expect(Paragraphs.split("l1\nl2") == ["l1\nl2"])
        #expect(Paragraphs.split("a\n\n\n\nb") == ["a", "b"])
        #expect(Paragraphs.split(" a  b ") == ["a  b"])
    }

    /// Incoming text and outgoing paragraphs strip what Python's `str.strip()` strips, U+001C–U+001F included
    /// (the channels' copy used to keep them while the output mapping stripped them).
    @Test func stripIsPythons() {
        #expect(Paragraphs.pythonStrip("\u{1C}\u{1D} hi \u{1E}\u{1F}\u{85}\u{3000}") == "hi")
        #expect(Paragraphs.pythonStrip("\u{200B}hi") == "\u{200B}hi")  // ZERO WIDTH SPACE is not whitespace in Python
        #expect(Paragraphs.split("\u{1F}a\n\nb\u{1C}") == ["a", "b"])
    }
}
