public import ParleyJSON

/// Conversation events in Rasa's tracker vocabulary.
///
/// An event is a JSON object with an `"event"` key naming its type and a `"timestamp"` (seconds since 1970),
/// exactly as Rasa serialises it (`rasa/shared/core/events.py`), so agents and tools that read Rasa trackers
/// read Parley's unchanged. Events are kept as ``JSONObject`` values rather than a closed Swift enum because
/// agents may return any Rasa event (`followup`, `reminder`, `loop_interrupted`, …); the ones the tracker
/// interprets are named by ``TrackerEvent/Kind``.
public enum TrackerEvent {
    /// The `"event"` names the tracker interprets. Other names are recorded and replayed but change no state.
    public enum Kind {
        /// A user message (`UserUttered`).
        public static let user = "user"
        /// A bot message (`BotUttered`).
        public static let bot = "bot"
        /// A slot was set (`SlotSet`): `{"name", "value"}`.
        public static let slot = "slot"
        /// Every slot was reset (`AllSlotsReset`).
        public static let resetSlots = "reset_slots"
        /// A new session started (`SessionStarted`): clears the tracker state; carried-over slots follow as slot events.
        public static let sessionStarted = "session_started"
        /// An action ran (`ActionExecuted`): `{"name", "policy", "confidence"}`.
        public static let action = "action"
        /// An action refused to run (`ActionExecutionRejected`): `{"name"}`.
        public static let actionExecutionRejected = "action_execution_rejected"
        /// The conversation was restarted (`Restarted`): clears the tracker state.
        public static let restart = "restart"
        /// The bot stops responding to user messages (`ConversationPaused`).
        public static let pause = "pause"
        /// The bot responds again (`ConversationResumed`).
        public static let resume = "resume"
        /// A loop (form) became active or inactive (`ActiveLoop`): `{"name"}` (null name = inactive).
        public static let activeLoop = "active_loop"
    }

    /// The action Rasa runs at the start of every session.
    public static let sessionStartActionName = "action_session_start"
    /// The action that ends every bot turn (the bot waits for the user).
    public static let listenActionName = "action_listen"

    /// The event type name of `event`, or nil when it is not an object with a string `"event"`.
    public static func kind(of event: JSONValue) -> String? {
        event["event"]?.stringValue
    }

    /// A `user` event, as Rasa's `UserUttered.as_dict()` shapes it (`parse_data` without NLU results).
    public static func user(_ message: UserMessage, timestamp: Double) -> JSONValue {
        // Filling a template keeps the key order and sizes the hash table once (building objects key by key
        // regrows it several times, which showed up as a top cost of a turn).
        var o = userTemplate
        o["timestamp"] = .double(timestamp)
        o["metadata"] = .object(message.metadata)
        o["text"] = .string(message.text)
        o["parse_data"] = parseData(message)
        o["input_channel"] = .string(message.inputChannel)
        o["message_id"] = .string(message.messageID)
        return .object(o)
    }

    static let userTemplate: JSONObject = [
        "event": "user", "timestamp": nil, "metadata": nil, "text": nil, "parse_data": nil, "input_channel": nil, "message_id": nil,
    ]
    static let parseDataTemplate: JSONObject = ["intent": [:], "entities": [], "text": nil, "message_id": nil, "metadata": nil]
    static let actionTemplate: JSONObject = ["event": "action", "timestamp": nil, "name": nil, "policy": nil, "confidence": nil]
    static let botTemplate: JSONObject = ["event": "bot", "timestamp": nil, "metadata": nil, "text": nil, "data": nil, "parley_seq": nil]

    /// Rasa's `parse_data` / `latest_message` for a message without NLU: `{"intent":{}, "entities":[], "text",
    /// "message_id", "metadata"}`.
    public static func parseData(_ message: UserMessage) -> JSONValue {
        var o = parseDataTemplate
        o["text"] = .string(message.text)
        o["message_id"] = .string(message.messageID)
        o["metadata"] = .object(message.metadata)
        return .object(o)
    }

    /// A `bot` event for one Rasa response dict, as Rasa's `create_bot_utterance` records it: `text`, the rich
    /// parts under `data` (`elements`, `quick_replies`, `buttons`, `attachment`, `image`, `custom`), every other
    /// key of the response under `metadata`. A response that is not an object is recorded as `{"custom": value}`.
    /// - Parameter sequence: the message's number in its conversation (``sequenceKey``), nil for none.
    public static func bot(response: JSONValue, timestamp: Double, sequence: Int64? = nil) -> JSONValue {
        var rest = response.objectValue ?? ["custom": response]
        let text = rest["text"] ?? .null
        rest["text"] = nil
        let data: JSONObject
        if richKeys.contains(where: { rest[$0] != nil }) {
            var d = JSONObject()
            for key in richKeys {
                d[key] = rest[key] ?? .null
                rest[key] = nil
            }
            data = d
        } else {
            data = emptyBotData
        }
        var o = botTemplate
        o["timestamp"] = .double(timestamp)
        o["metadata"] = .object(rest)
        o["text"] = text
        o["data"] = .object(data)
        // The key is in the template (so numbering never grows the object); an unnumbered message drops it.
        if let sequence { o[sequenceKey] = .int(sequence) } else { o[sequenceKey] = nil }
        return .object(o)
    }

    /// The response dict a `bot` event stands for (Rasa's `BotUttered.message()`): `text`, the non-null rich parts
    /// and the metadata keys. Returns nil for events that are not `bot` events.
    public static func response(fromBotEvent event: JSONValue) -> JSONValue? {
        guard kind(of: event) == Kind.bot else { return nil }
        var out = JSONObject()
        if let text = event["text"], !text.isNull { out["text"] = text }
        if let data = event["data"]?.objectValue {
            for (key, value) in data where !value.isNull { out[key] = value }
        }
        if let metadata = event["metadata"]?.objectValue {
            for (key, value) in metadata where out[key] == nil { out[key] = value }
        }
        return .object(out)
    }

    /// `data` of a bot event without rich parts (shared, so text replies build no extra object).
    static let emptyBotData: JSONObject = [
        "elements": nil, "quick_replies": nil, "buttons": nil, "attachment": nil, "image": nil, "custom": nil,
    ]

    /// The keys of a Rasa response dict that `BotUttered` keeps under `data`.
    public static let richKeys = ["elements", "quick_replies", "buttons", "attachment", "image", "custom"]

    /// An `action` event (`ActionExecuted`).
    public static func action(_ name: String, timestamp: Double, policy: String? = nil, confidence: Double? = nil) -> JSONValue {
        var o = actionTemplate
        o["timestamp"] = .double(timestamp)
        o["name"] = .string(name)
        if let policy { o["policy"] = .string(policy) }
        if let confidence { o["confidence"] = .double(confidence) }
        return .object(o)
    }

    /// An `action_execution_rejected` event.
    public static func actionExecutionRejected(_ name: String, timestamp: Double) -> JSONValue {
        .object(["event": "action_execution_rejected", "timestamp": .double(timestamp), "name": .string(name)])
    }

    /// The key of a bot message's sequence number in its `bot` event (and of the number reached so far in a
    /// `session_started` or `restart` event): `"parley_seq": 42`, beside Rasa's keys (Rasa ignores it).
    public static let sequenceKey = "parley_seq"

    /// `event` with `"parley_seq": sequence` added (`event` must be an object).
    public static func numbered(_ event: JSONValue, _ sequence: Int64) -> JSONValue {
        guard case .object(var object) = event else { return event }
        object[sequenceKey] = .int(sequence)
        return .object(object)
    }

    /// Whether the event starts a session (`session_started` or `restart`).
    public static func startsSession(_ event: JSONValue) -> Bool {
        let kind = kind(of: event)
        return kind == Kind.sessionStarted || kind == Kind.restart
    }

    /// The sequence number of a `bot` event, nil when it has none.
    public static func sequence(of event: JSONValue) -> Int64? {
        event[sequenceKey]?.int64Value
    }

    /// A `session_started` event.
    public static func sessionStarted(timestamp: Double) -> JSONValue {
        .object(["event": "session_started", "timestamp": .double(timestamp)])
    }

    /// A `slot` event.
    public static func slot(_ name: String, _ value: JSONValue, timestamp: Double) -> JSONValue {
        .object(["event": "slot", "timestamp": .double(timestamp), "name": .string(name), "value": value])
    }

    /// A `restart` event.
    public static func restart(timestamp: Double) -> JSONValue {
        .object(["event": "restart", "timestamp": .double(timestamp)])
    }

    /// Returns `event` with a `"timestamp"` when it has none (agents may omit it), or nil when `event` is not an
    /// object with a string `"event"` key (such events are refused, never recorded).
    public static func normalized(_ event: JSONValue, timestamp: Double) -> JSONValue? {
        guard case .object(var object) = event, object["event"]?.stringValue != nil else { return nil }
        if object["timestamp"]?.doubleValue == nil { object["timestamp"] = .double(timestamp) }
        return .object(object)
    }
}
