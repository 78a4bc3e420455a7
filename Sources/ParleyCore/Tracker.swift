public import ParleyJSON

/// The state of one conversation, rebuilt from its events the way Rasa's `DialogueStateTracker` does.
///
/// A tracker is a value: apply events with ``apply(_:)``, read the derived state (slots, latest message,
/// paused, active loop, latest action) and serialise it with ``json(eventLimit:)`` into the Rasa-shaped
/// tracker agents receive. It keeps the events of the current session only (since the latest
/// `session_started` or `restart`), and of those at most ``retainedEventLimit`` most recent ones; the store
/// keeps everything.
public struct Tracker: Sendable, Hashable {
    /// The conversation id (Rasa `sender_id`).
    public let senderID: String
    /// Current slot values.
    public private(set) var slots: JSONObject = [:]
    /// `parse_data` of the latest user message (Rasa `latest_message`).
    public private(set) var latestMessage: JSONValue = Tracker.emptyLatestMessage
    /// Timestamp of the latest event, nil before the first event.
    public private(set) var latestEventTime: Double?
    /// Timestamp of the latest user message, nil before the first (session expiry counts from it).
    public private(set) var latestUserTime: Double?
    /// Whether the conversation is paused (the bot does not respond until a `resume` event).
    public private(set) var paused = false
    /// The active loop (`{}` when none), Rasa `active_loop`.
    public private(set) var activeLoop: JSONObject = [:]
    /// Name of the latest action run, Rasa `latest_action_name`.
    public private(set) var latestActionName: String?
    /// The channel the latest user message came in on.
    public private(set) var latestInputChannel: String?
    /// Number of events applied since this value was created (across sessions).
    public private(set) var appliedEventCount = 0
    /// Recent events of the current session, oldest first (at most ``retainedEventLimit``; see ``recentEvents``).
    private var buffer: [JSONValue] = []
    /// The compact JSON text of each event in `buffer` (same positions), written once when the event is applied,
    /// so the tracker sent to an agent every turn does not re-serialise its whole history.
    private var encodedBuffer: [[UInt8]] = []
    /// Most recent events of the current session kept in memory.
    public let retainedEventLimit: Int
    /// The sequence number of the conversation's last stored event that this state includes, when the store
    /// numbers events (PostgreSQL, shared by several nodes); nil otherwise. The dispatcher keeps it.
    public var storedSequence: Int64?
    /// The sequence number of the conversation's latest bot message (`parley_seq` of its `bot` event), 0 before
    /// the first. Bot messages are numbered 1, 2, 3, … per conversation across sessions: a `session_started` or
    /// `restart` event carries the number reached so far, so a tracker rebuilt from the current session
    /// continues the count.
    public private(set) var lastMessageSequence: Int64 = 0
    /// The latest user messages of the current session with the bot messages that answered them, newest last
    /// (at most ``recentTurnLimit``): a message sent again with the same `message_id` is answered from here.
    public private(set) var recentTurns: [AnsweredMessage] = []
    /// The ids of ``recentTurns``.
    private var recentMessageIDs: Set<String> = []
    /// Whether bot messages now answer the latest of ``recentTurns`` (from a user message to the next `action_listen`).
    private var answering = false
    /// How many answered messages ``recentTurns`` keeps.
    public static let recentTurnLimit = 64

    /// `latest_message` before any user message.
    public static let emptyLatestMessage: JSONValue = [
        "intent": [:], "entities": [], "text": nil, "message_id": nil, "metadata": [:],
    ]

    /// Creates an empty tracker keeping at most `retainedEventLimit` (at least 1) events of the current session.
    public init(senderID: String, retainedEventLimit: Int = 100) {
        self.senderID = senderID
        self.retainedEventLimit = max(1, retainedEventLimit)
    }

    /// Whether no event was ever applied (a conversation the store does not know).
    public var isEmpty: Bool { appliedEventCount == 0 }

    /// The recent events of the current session, oldest first.
    public var recentEvents: [JSONValue] { buffer }

    /// Applies one Rasa event dict, updating the derived state. Events that are not objects with a string
    /// `"event"` key are ignored; unknown event types are kept in ``recentEvents`` but change nothing else.
    public mutating func apply(_ event: JSONValue) {
        guard case .object = event else { return }
        var encoded: [UInt8] = []
        event.serialize(into: &encoded)
        apply(event, encoded: encoded)
    }

    /// ``apply(_:)`` for an event whose compact JSON text (`event.serialized`) the caller already has.
    public mutating func apply(_ event: JSONValue, encoded: [UInt8]) {
        guard case .object(let object) = event, let kind = object["event"]?.stringValue else { return }
        appliedEventCount += 1
        if let t = object["timestamp"]?.doubleValue { latestEventTime = t }
        switch kind {
        case TrackerEvent.Kind.bot:
            if let seq = object[TrackerEvent.sequenceKey]?.int64Value, seq > lastMessageSequence { lastMessageSequence = seq }
            if answering { recentTurns[recentTurns.count - 1].botEvents.append(event) }
        case TrackerEvent.Kind.user:
            if let id = object["message_id"]?.stringValue {
                if recentTurns.count >= Self.recentTurnLimit {
                    let dropped = recentTurns.count - Self.recentTurnLimit + 1
                    for turn in recentTurns.prefix(dropped) { recentMessageIDs.remove(turn.messageID) }
                    recentTurns.removeFirst(dropped)
                }
                recentTurns.append(AnsweredMessage(messageID: id))
                recentMessageIDs.insert(id)
                answering = true
            }
            latestMessage = object["parse_data"] ?? Tracker.emptyLatestMessage
            if latestMessage["text"] == nil, let text = object["text"] { latestMessage["text"] = text }
            latestInputChannel = object["input_channel"]?.stringValue
            latestUserTime = object["timestamp"]?.doubleValue ?? latestUserTime
        case TrackerEvent.Kind.slot:
            if let name = object["name"]?.stringValue { slots[name] = object["value"] ?? .null }
        case TrackerEvent.Kind.resetSlots:
            slots = [:]
        case TrackerEvent.Kind.sessionStarted, TrackerEvent.Kind.restart:
            if let seq = object[TrackerEvent.sequenceKey]?.int64Value, seq > lastMessageSequence { lastMessageSequence = seq }
            slots = [:]
            latestMessage = Tracker.emptyLatestMessage
            paused = false
            activeLoop = [:]
            latestActionName = nil
            recentTurns.removeAll()
            recentMessageIDs.removeAll()
            answering = false
            buffer.removeAll(keepingCapacity: true)
            encodedBuffer.removeAll(keepingCapacity: true)
        case TrackerEvent.Kind.action:
            latestActionName = object["name"]?.stringValue
            // The answer ends when the bot listens again; later bot messages (emits) are not part of it.
            if answering && latestActionName == TrackerEvent.listenActionName { answering = false }
        case TrackerEvent.Kind.pause:
            paused = true
        case TrackerEvent.Kind.resume:
            paused = false
        case TrackerEvent.Kind.activeLoop:
            if let name = object["name"]?.stringValue { activeLoop = ["name": .string(name)] } else { activeLoop = [:] }
        default:
            break
        }
        // Keep exactly the retained events, so `json` can hand the buffer out without copying its elements
        // (dropping the oldest is a short memmove).
        if buffer.count >= retainedEventLimit {
            buffer.removeFirst(buffer.count - retainedEventLimit + 1)
            encodedBuffer.removeFirst(encodedBuffer.count - retainedEventLimit + 1)
        }
        buffer.append(event)
        encodedBuffer.append(encoded)
    }

    /// The answer recorded for a user message of the current session with this `message_id`, if it is among
    /// ``recentTurns``.
    public func answer(toMessageID id: String) -> AnsweredMessage? {
        // One hash per turn instead of comparing against every recent id (the common case: a new id).
        guard recentMessageIDs.contains(id) else { return nil }
        return recentTurns.last { $0.messageID == id }
    }

    /// Applies events in order.
    public mutating func apply(contentsOf events: some Sequence<JSONValue>) {
        for event in events { apply(event) }
    }

    /// Whether a session started at `latestUserTime` has expired at `now` for `expirationMinutes`
    /// (Rasa `session_expiration_time`; 0 or less = never). A conversation without user messages never expires.
    public func sessionExpired(now: Double, expirationMinutes: Double) -> Bool {
        guard expirationMinutes > 0, let last = latestUserTime else { return false }
        return (now - last) / 60 > expirationMinutes
    }

    /// The Rasa-shaped tracker: `{"sender_id", "slots", "latest_message", "latest_event_time", "followup_action",
    /// "paused", "events", "latest_input_channel", "active_loop", "latest_action", "latest_action_name"}` with at
    /// most `eventLimit` most recent events of the current session (nil = all retained ones).
    public func json(eventLimit: Int? = nil) -> JSONValue {
        guard let eventLimit, eventLimit < buffer.count else { return json(events: buffer) }
        return json(events: Array(buffer.suffix(max(0, eventLimit))))
    }

    /// Appends the compact JSON text of ``json(eventLimit:)`` to `out` (the same bytes as
    /// `json(eventLimit:).serialize(into:)`), copying each event's text written when it was applied instead of
    /// serialising the history again.
    public func serializeJSON(eventLimit: Int? = nil, into out: inout [UInt8]) {
        guard case .object(let object) = json(events: []) else { return }
        let first = eventLimit.map { max(0, encodedBuffer.count - max(0, $0)) } ?? 0
        var size = 512
        for i in first..<encodedBuffer.count { size += encodedBuffer[i].count + 1 }
        out.reserveCapacity(out.count + size)
        out.append(UInt8(ascii: "{"))
        var separator = false
        for (key, value) in object {
            if separator { out.append(UInt8(ascii: ",")) }
            separator = true
            JSONValue.serializeString(key, into: &out)
            out.append(UInt8(ascii: ":"))
            guard key == "events" else {
                value.serialize(into: &out)
                continue
            }
            out.append(UInt8(ascii: "["))
            for i in first..<encodedBuffer.count {
                if i > first { out.append(UInt8(ascii: ",")) }
                out.append(contentsOf: encodedBuffer[i])
            }
            out.append(UInt8(ascii: "]"))
        }
        out.append(UInt8(ascii: "}"))
    }

    /// The Rasa-shaped tracker with the given `events` list (for example every event from the store).
    public func json(events: [JSONValue]) -> JSONValue {
        // Filled from a template: the hash table is sized once (see TrackerEvent.user).
        var o = Tracker.jsonTemplate
        o["sender_id"] = .string(senderID)
        o["slots"] = .object(slots)
        o["latest_message"] = latestMessage
        if let latestEventTime { o["latest_event_time"] = .double(latestEventTime) }
        o["paused"] = .bool(paused)
        o["events"] = .array(events)
        if let latestInputChannel { o["latest_input_channel"] = .string(latestInputChannel) }
        if !activeLoop.isEmpty { o["active_loop"] = .object(activeLoop) }
        if let latestActionName {
            o["latest_action"] = ["action_name": .string(latestActionName)]
            o["latest_action_name"] = .string(latestActionName)
        }
        return .object(o)
    }

    static let jsonTemplate: JSONObject = [
        "sender_id": nil, "slots": [:], "latest_message": nil, "latest_event_time": nil, "followup_action": nil,
        "paused": false, "events": [], "latest_input_channel": nil, "active_loop": [:], "latest_action": [:],
        "latest_action_name": nil,
    ]
}

/// A user message of the current session and the bot messages recorded after it (until the next user message).
public struct AnsweredMessage: Sendable, Hashable {
    /// The message's `message_id`.
    public let messageID: String
    /// The `bot` events recorded after it, in order.
    public var botEvents: [JSONValue] = []

    public init(messageID: String, botEvents: [JSONValue] = []) {
        self.messageID = messageID
        self.botEvents = botEvents
    }

    /// The responses (Rasa response dicts) the bot sent, in order.
    public var responses: [JSONValue] { botEvents.compactMap(TrackerEvent.response(fromBotEvent:)) }
    /// `sequences[i]` is the sequence number of `responses[i]` (0 for a bot event recorded without one).
    public var sequences: [Int64] { botEvents.map { TrackerEvent.sequence(of: $0) ?? 0 } }
}
