public import ParleyCore
public import ParleyJSON

/// What an agent receives for one turn.
///
/// ``payload`` is the JSON handed to plugins, shaped like Rasa's action-server request:
/// `{"sender_id", "message": {"text", "message_id", "metadata", "input_channel"}, "tracker": {"sender_id",
/// "slots", "latest_message", "events", …}}`.
public struct AgentRequest: Sendable {
    public var message: UserMessage
    /// The request JSON. Setting it drops ``encodedPayload``.
    public var payload: JSONValue {
        didSet { encodedPayload = nil }
    }
    /// Writes the compact JSON text of ``payload`` (exactly `payload.serialized`'s bytes) faster than serialising
    /// it, e.g. from event text cached by the tracker; nil when there is no faster way. Agents that send the
    /// payload as text (plugins) use it.
    public var encodedPayload: (@Sendable (inout [UInt8]) -> Void)?

    public init(message: UserMessage, payload: JSONValue, encodedPayload: (@Sendable (inout [UInt8]) -> Void)? = nil) {
        self.message = message
        self.payload = payload
        self.encodedPayload = encodedPayload
    }

    /// Appends the compact JSON text of ``payload`` to `out` (through ``encodedPayload`` when set).
    public func serializePayload(into out: inout [UInt8]) {
        if let encodedPayload { encodedPayload(&out) } else { payload.serialize(into: &out) }
    }
}

/// What an agent returns for one turn: tracker events to record (Rasa event dicts such as
/// `{"event":"slot","name":"x","value":1}`) and responses to send (Rasa response dicts such as
/// `{"text":"hi","buttons":[…]}`).
public struct AgentReply: Sendable, Hashable {
    public var events: [JSONValue]
    public var responses: [JSONValue]

    public init(events: [JSONValue] = [], responses: [JSONValue] = []) {
        self.events = events
        self.responses = responses
    }
}

/// Bot logic for a conversation turn. Implemented by C-ABI plugins (`ParleyPlugins`) and by
/// in-process Swift agents (tests, embedding).
///
/// The dispatcher calls ``respond(to:)`` for at most one turn of a given conversation at a time,
/// and enforces a deadline around it: an agent that throws or does not return in time yields the
/// configured fallback response.
public protocol Agent: Sendable {
    /// The configured name, used in logs and routing rules.
    var name: String { get }
    /// Computes the reply to one user message.
    func respond(to request: AgentRequest) async throws -> AgentReply
}

/// Transforms outgoing responses for a channel (Markdown to HTML, truncation, …).
///
/// Formatters run in configured order; each gets the previous one's output.
public protocol MessageFormatter: Sendable {
    /// The configured name, used in logs.
    var name: String { get }
    /// Returns the transformed responses for `channel`; responses it does not handle are returned unchanged.
    func format(_ responses: [JSONValue], channel: String, senderID: String) async throws -> [JSONValue]
}
