public import ParleyCore
public import ParleyDispatch
public import ParleyJSON

/// An ``ParleyDispatch/Agent`` whose replies come from a closure: for tests of dispatchers, channels and
/// applications that need a bot without a plugin.
///
/// ```swift
/// let echo = ScriptedAgent { message in AgentReply(responses: [["text": .string(message.text)]]) }
/// let dispatcher = Dispatcher(agent: echo, store: InMemoryConversationStore())
/// ```
public struct ScriptedAgent: Agent {
    public let name: String
    public let deadline: Duration?
    public let trackerEventLimit: Int?
    private let script: @Sendable (UserMessage) async throws -> AgentReply

    /// An agent called `name` answering with `script` (which may throw: the turn then gets the fallback).
    public init(
        name: String = "scripted", deadline: Duration? = nil, trackerEventLimit: Int? = 0,
        _ script: @escaping @Sendable (UserMessage) async throws -> AgentReply
    ) {
        self.name = name
        self.deadline = deadline
        self.trackerEventLimit = trackerEventLimit
        self.script = script
    }

    /// An agent that answers every message with its own text (`{"text": T}`).
    public static var echo: ScriptedAgent {
        ScriptedAgent(name: "echo") { AgentReply(responses: [["text": .string($0.text)]]) }
    }

    public func respond(to request: AgentRequest) async throws -> AgentReply {
        try await script(request.message)
    }
}
