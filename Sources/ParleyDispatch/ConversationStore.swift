import ParleyCore
public import ParleyJSON
import Synchronization

/// Where conversations' events live: the dispatcher appends every turn's events here before replying, and
/// reloads a conversation from here after it was evicted from memory or the process restarted.
///
/// Implementations: ``InMemoryConversationStore`` (tests, embedding) and `SQLiteConversationStore` in
/// `ParleyStore` (the embedded default).
public protocol ConversationStore: Sendable {
    /// The events of the conversation's current session, in order: from its latest `session_started` or
    /// `restart` event on (every event when it has neither). Nil when the store has no event for `senderID`.
    func currentSession(of senderID: String) async throws -> [JSONValue]?

    /// Every event of the conversation in order, only those whose `"event"` is in `types` when given.
    /// Nil when the store has no event for `senderID`.
    func events(of senderID: String, types: Set<String>?) async throws -> [JSONValue]?

    /// Appends `events` (Rasa event dicts with `"event"` and `"timestamp"`) to the conversation, durably:
    /// when this returns every event is stored and survives a crash; when it throws, none of them is stored.
    /// Appending no events stores nothing (an unknown conversation stays unknown). The checks in
    /// `ParleyTesting.ConversationStoreConformance` state the whole contract as tests.
    func append(_ events: [JSONValue], to senderID: String) async throws

    /// ``append(_:to:)`` with each event's compact JSON text (`encoded[i]` is `events[i].serialized`'s bytes), so
    /// a store that keeps JSON text does not serialise the events again. The default ignores the text.
    func append(_ events: [JSONValue], encoded: [[UInt8]], to senderID: String) async throws

    /// Returns when the store can serve reads and appends now; throws an error naming what is wrong otherwise
    /// (`GET /health` answers 503 with it, so a load balancer takes the node out). The default is always healthy.
    func checkHealth() async throws
}

extension ConversationStore {
    public func checkHealth() async throws {}

    public func append(_ events: [JSONValue], encoded: [[UInt8]], to senderID: String) async throws {
        try await append(events, to: senderID)
    }
}

/// A store that can report an append's outcome through a callback instead of resuming a suspended task.
///
/// The dispatcher uses it when nothing else waits in the conversation's mailbox: the turn's reply is then sent
/// by `completion`, right after the commit, and the drain task ends without waiting (resuming a task per turn
/// through the executor cost about as much as the rest of a turn's dispatch). Same durability as
/// ``ConversationStore/append(_:to:)``: `completion(.success(()))` only once every event is durably stored;
/// `.failure` when none is.
public protocol CompletingConversationStore: ConversationStore {
    /// Appends durably and then calls `completion` exactly once, on any thread (possibly before returning).
    func append(
        _ events: [JSONValue], encoded: [[UInt8]], to senderID: String,
        completion: @escaping @Sendable (Result<Void, any Error>) -> Void)
}

/// A ``ConversationStore`` in process memory: fast, lost on exit. For tests and embedding.
public final class InMemoryConversationStore: ConversationStore {
    private struct Conversation {
        var events: [JSONValue] = []
        var sessionStart = 0
    }

    private let conversations = Mutex<[String: Conversation]>([:])

    /// Creates an empty store.
    public init() {}

    public func currentSession(of senderID: String) async throws -> [JSONValue]? {
        conversations.withLock { all in
            all[senderID].map { Array($0.events[$0.sessionStart...]) }
        }
    }

    public func events(of senderID: String, types: Set<String>?) async throws -> [JSONValue]? {
        conversations.withLock { all in
            guard let events = all[senderID]?.events else { return nil }
            guard let types else { return events }
            return events.filter { TrackerEvent.kind(of: $0).map(types.contains) ?? false }
        }
    }

    public func append(_ events: [JSONValue], to senderID: String) async throws {
        guard !events.isEmpty else { return }  // an empty append stores nothing, as in every store
        conversations.withLock { all in
            // Mutated in place: one lookup, no copy of the event list.
            Self.append(events, to: &all[senderID, default: Conversation()])
        }
    }

    private static func append(_ events: [JSONValue], to conversation: inout Conversation) {
        for event in events {
            let kind = TrackerEvent.kind(of: event)
            if kind == TrackerEvent.Kind.sessionStarted || kind == TrackerEvent.Kind.restart {
                conversation.sessionStart = conversation.events.count
            }
            conversation.events.append(event)
        }
    }

    /// Number of stored events across all conversations.
    public var eventCount: Int {
        conversations.withLock { $0.values.reduce(0) { $0 + $1.events.count } }
    }
}
