import ParleyCore
import ParleyDispatch
import ParleyJSON
import Synchronization
import Testing

/// The agent payload text written from the tracker's cached event text is byte for byte the serialised payload.
@Suite struct EncodedPayloadTests {
    /// Records, for every request, the serialised payload and the text from `serializePayload`.
    final class Capture: Sendable {
        let pairs = Mutex<[(String, String)]>([])
    }

    struct CapturingAgent: Agent {
        let name = "capturing"
        let capture: Capture
        func respond(to request: AgentRequest) async throws -> AgentReply {
            var fast: [UInt8] = []
            request.serializePayload(into: &fast)
            capture.pairs.withLock { $0.append((request.payload.serialized, String(decoding: fast, as: UTF8.self))) }
            return AgentReply(
                events: [["event": "slot", "name": "n", "value": .string(request.message.text)]],
                responses: [["text": .string("re \"\(request.message.text)\"\n"), "buttons": [["title": "t"]]]])
        }
    }

    @Test(arguments: [1, 5, 50])
    func encodedPayloadMatchesSerializedPayload(_ limit: Int) async throws {
        let capture = Capture()
        let dispatcher = Dispatcher(agent: CapturingAgent(capture: capture), configuration: .init(agentTrackerEventLimit: limit))
        try await withRunning(dispatcher) { () async throws -> Void in
            for i in 0..<12 {
                let metadata: JSONObject = i % 2 == 0 ? [:] : ["k": .int(Int64(i)), "s": "é\u{1}"]
                _ = try await dispatcher.handle(UserMessage(text: "hi \(i) \\ \"q\"", senderID: "conv", inputChannel: "socketio", metadata: metadata))
            }
        }
        let pairs = capture.pairs.withLock { $0 }
        #expect(pairs.count == 12)
        for (slow, fast) in pairs { #expect(slow == fast) }
    }

    /// An agent that declares it reads no history gets `tracker.events: []` (and the same text both ways).
    @Test func agentTrackerEventLimitTrimsTheHistory() async throws {
        struct NoHistoryAgent: Agent {
            let name = "no-history"
            let capture: Capture
            var trackerEventLimit: Int? { 0 }
            func respond(to request: AgentRequest) async throws -> AgentReply {
                var fast: [UInt8] = []
                request.serializePayload(into: &fast)
                capture.pairs.withLock { $0.append((request.payload.serialized, String(decoding: fast, as: UTF8.self))) }
                #expect(request.payload["tracker"]?["events"] == [])
                #expect(request.payload["tracker"]?["latest_message"]?["text"] == .string(request.message.text))
                return AgentReply(responses: [["text": "ok"]])
            }
        }
        let capture = Capture()
        let dispatcher = Dispatcher(agent: NoHistoryAgent(capture: capture))
        try await withRunning(dispatcher) { () async throws -> Void in
            for i in 0..<3 { _ = try await dispatcher.handle(UserMessage(text: "m\(i)", senderID: "c", inputChannel: "rest")) }
        }
        let pairs = capture.pairs.withLock { $0 }
        #expect(pairs.count == 3)
        for (slow, fast) in pairs { #expect(slow == fast) }
    }

    @Test func trackerTextMatchesItsJSON() {
        var tracker = Tracker(senderID: "s", retainedEventLimit: 4)
        let events: [JSONValue] = [
            TrackerEvent.sessionStarted(timestamp: 1), TrackerEvent.slot("a", 1, timestamp: 2),
            ["event": "user", "text": "x", "timestamp": 3], TrackerEvent.action("y", timestamp: 4),
            TrackerEvent.bot(response: ["text": "z"], timestamp: 5), ["event": "custom_thing", "timestamp": 6],
        ]
        for event in events {
            tracker.apply(event)
            for limit in [nil, 0, 1, 3, 10] as [Int?] {
                var out: [UInt8] = []
                tracker.serializeJSON(eventLimit: limit, into: &out)
                #expect(String(decoding: out, as: UTF8.self) == tracker.json(eventLimit: limit).serialized)
            }
        }
    }
}
