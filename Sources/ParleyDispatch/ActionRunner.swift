public import ParleyJSON

/// The conversation state an action sees when the dispatcher runs it.
public struct ActionInvocation: Sendable {
    /// The conversation id.
    public var senderID: String
    /// Current slot values of the conversation.
    public var slots: JSONObject
    /// The latest user message as Rasa shapes it: `{"text", "intent"?, "entities": [{"entity","value"}…], "metadata"}`.
    public var latestMessage: JSONValue

    public init(senderID: String, slots: JSONObject, latestMessage: JSONValue) {
        self.senderID = senderID
        self.slots = slots
        self.latestMessage = latestMessage
    }
}

/// Runs named actions that an agent requests in its reply (for example native functions bound through
/// libffi by a manifest, `ParleyActions`).
///
/// When an agent's reply contains the event `{"event":"action","name":N}` and ``hasAction(named:)`` is true
/// for N, the dispatcher runs the action after the agent and records its events and responses in the same turn.
public protocol ActionRunner: Sendable {
    /// Whether this runner provides an action with that name.
    func hasAction(named name: String) -> Bool
    /// Runs the action; the reply's events (e.g. slot sets) are recorded and its responses sent.
    /// Throws when the action cannot run (unset slot, out-of-range value, deadline); the dispatcher then
    /// sends the fallback response and logs the error.
    func runAction(named name: String, invocation: ActionInvocation) async throws -> AgentReply
}
