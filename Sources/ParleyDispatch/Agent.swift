public import ParleyCore
public import ParleyJSON

/// What an agent receives for one turn.
///
/// ``payload`` is the JSON handed to plugins, shaped like Rasa's action-server request:
/// `{"sender_id", "message": {"text", "message_id", "metadata", "input_channel"}, "tracker": {"sender_id",
/// "slots", "latest_message", "events", …}}`.
public struct AgentRequest: Sendable {
    public var message: UserMessage
    /// The request JSON (built on first read when the request was made with a builder). Setting it drops
    /// ``encodedPayload``.
    public var payload: JSONValue {
        get { storedPayload ?? makePayload?() ?? .null }
        set {
            storedPayload = newValue
            makePayload = nil
            encodedPayload = nil
        }
    }
    /// Writes the compact JSON text of ``payload`` (exactly `payload.serialized`'s bytes) faster than serialising
    /// it, e.g. from event text cached by the tracker; nil when there is no faster way. Agents that send the
    /// payload as text (plugins) use it.
    public var encodedPayload: (@Sendable (inout [UInt8]) -> Void)?
    /// Shows partial text of the reply to the conversation's clients while the agent works (an LLM answering
    /// word by word): each call appends `text` to what they see. Returns false once the turn is over (the
    /// text was not shown). The agent's reply is still what is stored and sent as the final message. Nil when
    /// the request cannot stream.
    public var stream: (@Sendable (String) -> Bool)?
    private var storedPayload: JSONValue?
    private var makePayload: (@Sendable () -> JSONValue)?

    public init(message: UserMessage, payload: JSONValue, encodedPayload: (@Sendable (inout [UInt8]) -> Void)? = nil) {
        self.message = message
        self.storedPayload = payload
        self.encodedPayload = encodedPayload
    }

    /// A request whose ``payload`` is built by `payload` only if an agent reads it (plugins only need
    /// `encodedPayload`'s text).
    public init(
        message: UserMessage, payload: @escaping @Sendable () -> JSONValue, encodedPayload: @escaping @Sendable (inout [UInt8]) -> Void,
        stream: (@Sendable (String) -> Bool)? = nil
    ) {
        self.stream = stream
        self.message = message
        self.makePayload = payload
        self.encodedPayload = encodedPayload
    }

    /// Whether ``payload`` is a JSON object (the Rasa request shape), without building it.
    public var hasObjectPayload: Bool {
        if let storedPayload { return storedPayload.objectValue != nil }
        return makePayload != nil
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
/// and enforces the turn's one deadline around it: an agent that throws or does not return in time yields the
/// configured fallback response. The deadline is the dispatcher's, never the agent's: an agent that blocks its
/// thread past it still gets the fallback sent on time (the dispatcher answers from another task; what the
/// blocked call returns later is dropped).
public protocol Agent: Sendable {
    /// The configured name, used in logs and routing rules.
    var name: String { get }
    /// Computes the reply to one user message.
    func respond(to request: AgentRequest) async throws -> AgentReply
    /// Most tracker events the agent needs in ``AgentRequest/payload`` (`tracker.events`); nil = the
    /// dispatcher's ``DispatcherConfiguration/agentTrackerEventLimit``. An agent that reads only the message
    /// returns 0, which saves copying the history into every request.
    var trackerEventLimit: Int? { get }
    /// The longest a turn answered by this agent may take; the dispatcher sends the fallback at the earlier of
    /// this and ``DispatcherConfiguration/turnDeadline``. nil = the turn deadline alone.
    var deadline: Duration? { get }
}

extension Agent {
    /// nil: the dispatcher's limit.
    public var trackerEventLimit: Int? { nil }
    /// nil: the dispatcher's turn deadline.
    public var deadline: Duration? { nil }
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
