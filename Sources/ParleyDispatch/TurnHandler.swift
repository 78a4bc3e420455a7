public import ParleyCore
public import ParleyJSON
import Synchronization

/// The outcome of one turn, as a channel receives it.
public struct TurnResult: Sendable, Hashable {
    /// The responses to send, after routing, actions and the formatter chain: Rasa response dicts
    /// (`{"text"}`, `{"text","buttons"}`, `{"image"}`, `{"custom"}`, …). Channels map them to their wire
    /// shapes with the channel-neutral output mapping.
    public var responses: [JSONValue]
    /// The tracker events recorded for this turn (user, bot, slot, action, …), in order.
    public var events: [JSONValue]
    /// `sequences[i]` is the number of `responses[i]` in its conversation (1, 2, 3, … across sessions; see
    /// `Tracker.lastMessageSequence`); empty when the responses are not numbered.
    public var sequences: [Int64]
    /// The message repeated a `message_id` the conversation already answered: nothing was recorded and
    /// ``responses`` are that first answer, sent again.
    public var isRepeat: Bool

    public init(responses: [JSONValue] = [], events: [JSONValue] = [], sequences: [Int64] = [], isRepeat: Bool = false) {
        self.responses = responses
        self.events = events
        self.sequences = sequences
        self.isRepeat = isRepeat
    }
}

/// What channels hand user messages to. Implemented by the dispatcher.
///
/// Turns of one conversation (``UserMessage/senderID``) run one at a time in arrival order; turns of
/// different conversations run concurrently. Every event of a turn is durable in the store before this
/// returns.
public protocol TurnHandler: Sendable {
    /// Runs one turn. Throws when the message is refused (the conversation's mailbox is full, the
    /// message is invalid, the store failed); agent failures and timeouts do not throw but produce the
    /// fallback response.
    func handle(_ message: UserMessage) async throws -> TurnResult

    /// Enqueues a turn without waiting and reports its result through `completion` (called once, on any
    /// thread). Messages submitted one after another from the same caller are processed in that order, which
    /// lets a connection's event handler preserve arrival order without awaiting. Refusals (full mailbox,
    /// invalid message) are reported through `completion` as failures.
    func submit(_ message: UserMessage, completion: @escaping @Sendable (Result<TurnResult, any Error>) -> Void)

    /// Reads the bot messages of conversation `senderID` numbered after `sequence` (``TurnResult/responses`` with
    /// their ``TurnResult/sequences``), from the store, and reports them through `completion` (once, on any
    /// thread). The default reports none.
    func submitReplay(of senderID: String, after sequence: Int64, completion: @escaping @Sendable (Result<TurnResult, any Error>) -> Void)
}

extension TurnHandler {
    public func submitReplay(of senderID: String, after sequence: Int64, completion: @escaping @Sendable (Result<TurnResult, any Error>) -> Void) {
        completion(.success(TurnResult()))
    }
}

/// Receives messages that are not replies to a user message: plugin `emit`s, reminders.
public protocol ProactiveOutput: Sendable {
    /// Delivers messages (``TurnResult/responses``: Rasa response dicts, already formatted, numbered by
    /// ``TurnResult/sequences``) to every client of the conversation.
    func deliver(_ messages: TurnResult, to senderID: String, channel: String?) async

    /// Tells every client of the conversation that the bot is typing (`true`) or stopped (`false`). Called by the
    /// dispatcher while it holds the conversation's lock: queue the event and return, never wait or call back
    /// into the dispatcher. The default does nothing.
    func indicateTyping(_ typing: Bool, to senderID: String, channel: String?)

    /// Shows a streamed reply: `.start`, the `.chunk`s in order, `.end` (just before the turn is answered). Called
    /// by the dispatcher while it holds the conversation's lock: queue the event and return. The default does
    /// nothing (the final message still arrives as usual).
    func stream(_ event: StreamEvent, to senderID: String, channel: String?)
}

extension ProactiveOutput {
    public func indicateTyping(_ typing: Bool, to senderID: String, channel: String?) {}
    public func stream(_ event: StreamEvent, to senderID: String, channel: String?) {}
}

/// One step of a streamed reply (an agent's ``AgentRequest/stream``). `seq` is the number the final message
/// will have (``TurnResult/sequences``); chunks are numbered 0, 1, 2, … within it.
public enum StreamEvent: Sendable, Hashable {
    case start(seq: Int64)
    case chunk(seq: Int64, index: Int, text: String)
    case end(seq: Int64)
}

/// The dispatcher's outbound sink for proactive messages, given to it at construction: channels that can push
/// to a user (Socket.IO) register here under their name when they are built, so nothing is set on the
/// dispatcher afterwards and no reference cycle is needed.
///
/// An emit goes to the output of its channel. A channel that cannot push (REST answers only the request that
/// asked) has no output: its emits go to every registered output (a widget on Socket.IO with the same session
/// id still gets them); with no output at all they are recorded only.
public final class ProactiveOutputs: Sendable {
    private let outputs = Mutex<[String: any ProactiveOutput]>([:])

    /// An empty sink.
    public init() {}

    /// Delivers the emits of channel `name` to `output` (replacing an earlier registration of that name).
    public func register(_ output: any ProactiveOutput, for name: String) {
        outputs.withLock { $0[name] = output }
    }

    /// The registered channel names.
    public var channelNames: [String] { outputs.withLock { Array($0.keys).sorted() } }

    /// Delivers `messages` to the output of `channel`, or to every output when `channel` has none.
    public func deliver(_ messages: TurnResult, to senderID: String, channel: String?) async {
        let targets: [any ProactiveOutput] = outputs.withLock { all in
            if let channel, let output = all[channel] { return [output] }
            return Array(all.values)
        }
        for output in targets { await output.deliver(messages, to: senderID, channel: channel) }
    }

    /// Hands a step of a streamed reply to the output of `channel` (or every output when `channel` has none).
    public func stream(_ event: StreamEvent, to senderID: String, channel: String?) {
        let targets: [any ProactiveOutput] = outputs.withLock { all in
            if let channel, let output = all[channel] { return [output] }
            return Array(all.values)
        }
        for output in targets { output.stream(event, to: senderID, channel: channel) }
    }

    /// Tells the output of `channel` (or every output when `channel` has none) that the bot is typing or stopped.
    public func indicateTyping(_ typing: Bool, to senderID: String, channel: String?) {
        let targets: [any ProactiveOutput] = outputs.withLock { all in
            if let channel, let output = all[channel] { return [output] }
            return Array(all.values)
        }
        for output in targets { output.indicateTyping(typing, to: senderID, channel: channel) }
    }
}
