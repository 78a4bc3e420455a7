import ParleyCore
import ParleyDispatch
import ParleyJSON
import Testing

@Suite struct TrackerTests {
    @Test func appliesRasaEvents() {
        var t = Tracker(senderID: "s")
        #expect(t.isEmpty)
        let user = TrackerEvent.user(UserMessage(text: "hi", senderID: "s", inputChannel: "socketio", metadata: ["k": 1], messageID: "m1"), timestamp: 10)
        t.apply(user)
        t.apply(TrackerEvent.slot("a", 1, timestamp: 11))
        t.apply(TrackerEvent.action("utter_x", timestamp: 12))
        t.apply(["event": "active_loop", "name": "form", "timestamp": 13])
        t.apply(["event": "pause", "timestamp": 14])
        #expect(t.slots == ["a": 1])
        #expect(t.latestMessage["text"] == "hi")
        #expect(t.latestMessage["message_id"] == "m1")
        #expect(t.latestInputChannel == "socketio")
        #expect(t.latestActionName == "utter_x")
        #expect(t.activeLoop == ["name": "form"])
        #expect(t.paused)
        #expect(t.latestEventTime == 14)
        t.apply(["event": "resume", "timestamp": 15])
        t.apply(["event": "reset_slots", "timestamp": 16])
        #expect(!t.paused)
        #expect(t.slots.isEmpty)
        t.apply(TrackerEvent.slot("b", 2, timestamp: 17))
        t.apply(TrackerEvent.restart(timestamp: 18))
        #expect(t.slots.isEmpty)
        #expect(t.activeLoop.isEmpty)
        #expect(t.recentEvents.count == 1)
        t.apply(5)  // ignored
        #expect(t.appliedEventCount == 9)
    }

    @Test func jsonHasRasaShape() {
        var t = Tracker(senderID: "s")
        t.apply(TrackerEvent.sessionStarted(timestamp: 1))
        t.apply(TrackerEvent.user(UserMessage(text: "hi", senderID: "s", inputChannel: "rest", messageID: "m"), timestamp: 2))
        t.apply(TrackerEvent.action("action_listen", timestamp: 3))
        let json = t.json()
        let keys = json.objectValue?.keys ?? []
        for key in [
            "sender_id", "slots", "latest_message", "latest_event_time", "paused", "events", "latest_input_channel", "active_loop", "latest_action_name",
        ] {
            #expect(keys.contains(key), "missing \(key)")
        }
        #expect(json["events"]?.arrayValue?.count == 3)
        #expect(json["latest_action_name"] == "action_listen")
        #expect(json["active_loop"] == [:])
        #expect(t.json(eventLimit: 1)["events"]?.arrayValue?.count == 1)
    }

    @Test func keepsOnlyRecentEvents() {
        var t = Tracker(senderID: "s", retainedEventLimit: 5)
        for i in 0..<100 { t.apply(TrackerEvent.slot("n", .int(Int64(i)), timestamp: Double(i))) }
        #expect(t.recentEvents.count == 5)
        #expect(t.recentEvents.last?["value"] == 99)
        #expect(t.slots["n"] == 99)
    }

    @Test func sessionExpiry() {
        var t = Tracker(senderID: "s")
        #expect(!t.sessionExpired(now: 1e9, expirationMinutes: 1))
        t.apply(TrackerEvent.user(UserMessage(text: "x", senderID: "s", inputChannel: "c"), timestamp: 1000))
        #expect(!t.sessionExpired(now: 1060, expirationMinutes: 1))
        #expect(t.sessionExpired(now: 1061, expirationMinutes: 1))
        #expect(!t.sessionExpired(now: 1e12, expirationMinutes: 0))
    }

    @Test func botEventRoundTripsToResponse() {
        let response: JSONValue = ["text": "t", "buttons": [["title": "a"]], "template_name": "utter_t"]
        let event = TrackerEvent.bot(response: response, timestamp: 5)
        #expect(event["data"]?["buttons"] == [["title": "a"]])
        #expect(event["data"]?["image"] == .null)
        #expect(event["metadata"] == ["template_name": "utter_t"])
        #expect(TrackerEvent.response(fromBotEvent: event) == response)
    }
}
