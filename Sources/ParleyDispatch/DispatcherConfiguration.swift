public import ParleyCore
public import ParleyJSON

/// Settings of a ``Dispatcher``. Every field has a default.
public struct DispatcherConfiguration: Sendable {
    /// Messages that may wait per conversation behind the running turn; one more is refused with
    /// ``DispatchError/Code/mailboxFull``.
    public var mailboxCapacity: Int
    /// Time a turn (agent, actions, formatters) may take before the fallback response is sent instead.
    public var turnDeadline: Duration
    /// The text of the fallback response sent when the agent or an action throws or the turn misses its deadline.
    public var fallbackText: String
    /// Largest accepted message text in UTF-8 bytes; larger messages are refused with ``InputError``.
    public var maxMessageBytes: Int
    /// Deepest accepted message metadata (an object holding a scalar is depth 1); deeper metadata is refused
    /// with ``InputError``. Stored events wrap metadata two levels deeper; the store reads back 512 levels.
    public var maxMetadataDepth: Int
    /// Largest accepted message metadata as compact JSON, in bytes; larger metadata is refused with ``InputError``.
    public var maxMetadataBytes: Int
    /// Rasa `session_expiration_time` in minutes: a user message after this much inactivity starts a new
    /// session (`action_session_start`, `session_started`). 0 = sessions never expire.
    public var sessionExpirationMinutes: Double
    /// Rasa `carry_over_slots_to_new_session`: slots set in the old session are set again in the new one.
    public var carryOverSlotsToNewSession: Bool
    /// Conversations without activity for this many seconds are dropped from memory (they reload from the
    /// store on their next message).
    public var idleEvictionSeconds: Double
    /// How often idle conversations are looked for.
    public var evictionInterval: Duration
    /// Most conversations held in memory; past it, the least recently active idle ones are evicted at once
    /// (down to 90 %), so a flood of new conversations cannot grow memory until the idle eviction.
    public var maxResidentConversations: Int
    /// How often running turns are checked against their deadline (the granularity of the deadline).
    public var deadlineCheckInterval: Duration
    /// Most recent events of the current session put into the tracker an agent receives.
    public var agentTrackerEventLimit: Int
    /// Most bot messages one replay sends (the latest ones; see ``Dispatcher/submitReplay(of:after:completion:)``).
    public var replayLimit: Int
    /// Bot messages older than this many seconds are not replayed; nil: no age limit.
    public var replayMaxAge: Double?
    /// The typing indicator: how long a turn runs before the conversation's clients are told the bot is typing
    /// (``ProactiveOutput/indicateTyping(_:to:channel:)``), so fast turns show nothing; nil: off (the default,
    /// as stock Rasa never sends it).
    public var typingDelay: Duration?
    /// While a turn runs longer, "typing" is said again this often (clients hide the indicator after a while).
    public var typingRepeat: Duration
    /// Seconds since 1970 "now": event timestamps, session expiry and eviction read it. Tests inject a clock.
    public var clock: @Sendable () -> Double

    /// Creates a configuration; every parameter has the default documented on its property.
    public init(
        mailboxCapacity: Int = 64,
        turnDeadline: Duration = .seconds(10),
        fallbackText: String = "Sorry, something went wrong. Please try again.",
        maxMessageBytes: Int = 64 * 1024,
        maxMetadataDepth: Int = 32,
        maxMetadataBytes: Int = 16 * 1024,
        sessionExpirationMinutes: Double = 60,
        carryOverSlotsToNewSession: Bool = true,
        idleEvictionSeconds: Double = 300,
        evictionInterval: Duration = .seconds(30),
        maxResidentConversations: Int = 20_000,
        deadlineCheckInterval: Duration = .milliseconds(20),
        agentTrackerEventLimit: Int = 50,
        replayLimit: Int = 200,
        replayMaxAge: Double? = 86_400,
        typingDelay: Duration? = nil,
        typingRepeat: Duration = .seconds(5),
        clock: @escaping @Sendable () -> Double = { Clock.unixNow() }
    ) {
        self.mailboxCapacity = mailboxCapacity
        self.turnDeadline = turnDeadline
        self.fallbackText = fallbackText
        self.maxMessageBytes = maxMessageBytes
        self.maxMetadataDepth = maxMetadataDepth
        self.maxMetadataBytes = maxMetadataBytes
        self.sessionExpirationMinutes = sessionExpirationMinutes
        self.carryOverSlotsToNewSession = carryOverSlotsToNewSession
        self.idleEvictionSeconds = idleEvictionSeconds
        self.evictionInterval = evictionInterval
        self.maxResidentConversations = max(1, maxResidentConversations)
        self.deadlineCheckInterval = deadlineCheckInterval
        self.agentTrackerEventLimit = agentTrackerEventLimit
        self.replayLimit = max(0, replayLimit)
        self.replayMaxAge = replayMaxAge
        self.typingDelay = typingDelay
        self.typingRepeat = max(typingRepeat, .milliseconds(100))
        self.clock = clock
    }
}

/// A rule sending matching messages to another agent than the default one. Rules are tried in order; the
/// first match wins.
public struct AgentRoute: Sendable {
    /// What a message must look like to match.
    public enum Rule: Sendable, Hashable {
        /// The text starts with this string (for example `"/faq"`).
        case prefix(String)
        /// The metadata has this key with this value.
        case metadata(key: String, value: JSONValue)
        /// The metadata has this key (any value).
        case metadataKey(String)
        /// The message came in on this channel (`socketio`, `rest`, …).
        case channel(String)

        /// Whether `message` matches.
        public func matches(_ message: UserMessage) -> Bool {
            switch self {
            case .prefix(let p): message.text.hasPrefix(p)
            case .metadata(let key, let value): message.metadata[key] == value
            case .metadataKey(let key): message.metadata[key] != nil
            case .channel(let c): message.inputChannel == c
            }
        }
    }

    /// When the route applies.
    public var rule: Rule
    /// The agent that gets matching messages.
    public var agent: any Agent

    /// Sends messages matching `rule` to `agent`.
    public init(_ rule: Rule, to agent: any Agent) {
        self.rule = rule
        self.agent = agent
    }
}

/// Why the dispatcher refused or could not finish a request.
public struct DispatchError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of failure.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum _Code: Hashable, Sendable { case mailboxFull, notRunning, shuttingDown, unknownConversation, storeFailed, deadlineExceeded }
        private let code: _Code
        /// Too many messages are waiting for this conversation.
        public static let mailboxFull = Code(code: .mailboxFull)
        /// ``Dispatcher/run()`` is not running.
        public static let notRunning = Code(code: .notRunning)
        /// The dispatcher is shutting down and accepts no new work.
        public static let shuttingDown = Code(code: .shuttingDown)
        /// The store has no conversation with that id.
        public static let unknownConversation = Code(code: .unknownConversation)
        /// The store could not load or save the conversation; nothing of the turn was recorded.
        public static let storeFailed = Code(code: .storeFailed)
        /// A proactive emit missed the turn deadline (a formatter or the output hung); nothing was recorded.
        public static let deadlineExceeded = Code(code: .deadlineExceeded)
        /// The code's name.
        public var description: String { "\(code)" }
    }

    /// The kind of failure.
    public var code: Code
    /// The conversation concerned.
    public var senderID: String
    /// What happened and what to do about it.
    public var description: String

    /// Creates an error.
    public init(_ code: Code, senderID: String, _ description: String) {
        self.code = code
        self.senderID = senderID
        self.description = description
    }
}
