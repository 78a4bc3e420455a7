import ParleyCore
public import ParleyJSON
import Synchronization

/// One turn's output for the store: the conversation, its new events in order, and each event's compact JSON
/// text (`encoded[i]` is `events[i]`'s bytes, serialised once by the dispatcher, so a store that keeps JSON
/// text never serialises an event again).
public struct TurnRecord: Sendable {
    /// The conversation (Rasa's `sender_id`).
    public let senderID: String
    /// Rasa event dicts (each with `"event"` and `"timestamp"`), in order.
    public let events: [JSONValue]
    /// `encoded[i]` is the compact JSON text of `events[i]`.
    public let encoded: [[UInt8]]
    /// For a store that numbers events (``StoredConversation/lastSequence``): the number of the conversation's
    /// last stored event when the turn was computed. The store then writes the events as numbers
    /// `expectedLastSequence + 1 …` and fails the append with ``ConversationChangedError`` when another writer
    /// (another node) stored events after that number first. Nil: append after whatever is stored.
    public var expectedLastSequence: Int64?

    /// A record whose texts are serialised here.
    public init(senderID: String, events: [JSONValue]) {
        self.senderID = senderID
        self.events = events
        self.encoded = events.map { event in
            var text: [UInt8] = []
            text.reserveCapacity(256)
            event.serialize(into: &text)
            return text
        }
    }

    /// A record with the texts the caller already has; `encoded.count` must equal `events.count`.
    public init(senderID: String, events: [JSONValue], encoded: [[UInt8]]) {
        precondition(events.count == encoded.count, "TurnRecord: \(events.count) events with \(encoded.count) encoded texts")
        self.senderID = senderID
        self.events = events
        self.encoded = encoded
    }

    /// Whether the record holds no event (appending it stores nothing).
    public var isEmpty: Bool { events.isEmpty }
}

/// A conversation as a turn needs it: the events of its current session and, from a store that numbers events,
/// the number of its last stored event.
public struct StoredConversation: Sendable {
    /// The events of the current session, in order (as ``ConversationStore/currentSession(of:)``).
    public var currentSession: [JSONValue]
    /// The sequence number of the conversation's last stored event (of any session), or nil from a store that
    /// does not number events.
    public var lastSequence: Int64?

    public init(currentSession: [JSONValue], lastSequence: Int64? = nil) {
        self.currentSession = currentSession
        self.lastSequence = lastSequence
    }
}

/// An append refused because the conversation changed after the turn was computed (another node stored a turn
/// of it first): nothing of the record is stored; the dispatcher reloads the conversation and runs the turn again.
public struct ConversationChangedError: Error, Sendable, CustomStringConvertible {
    /// The conversation.
    public let senderID: String
    /// The sequence number the turn was computed on.
    public let expectedLastSequence: Int64

    public init(senderID: String, expectedLastSequence: Int64) {
        self.senderID = senderID
        self.expectedLastSequence = expectedLastSequence
    }

    public var description: String {
        "conversation \(senderID) has events after #\(expectedLastSequence) that this turn did not see (written by another node)"
    }
}

/// Where conversations' events live: the dispatcher appends every turn's ``TurnRecord`` here before replying,
/// and reloads a conversation from here after it was evicted from memory or the process restarted.
///
/// A store implements four things: two reads, one append and a health check. Batching (group commit),
/// checkpoints and threads are the store's own business behind ``append(_:completion:)``. The checks in
/// `ParleyTesting.ConversationStoreConformance` state the whole contract as tests; a new store runs them.
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

    /// Appends the record's events to its conversation, durably and atomically, then calls `completion`
    /// exactly once, on any thread (possibly before returning): `.success` only once every event is stored and
    /// survives a crash; `.failure` when none of them is. Appends to one conversation are stored in the order
    /// of the calls. An empty record stores nothing (an unknown conversation stays unknown).
    ///
    /// A callback rather than `async`: the dispatcher's drain task hands the record over and goes on, and the
    /// commit answers the user (resuming a suspended task per turn cost about as much as the rest of a turn's
    /// dispatch). ``append(_:)`` is the `async` form.
    func append(_ record: TurnRecord, completion: @escaping @Sendable (Result<Void, any Error>) -> Void)

    /// The conversation for a turn: its current session and, when the store numbers events, the number of its
    /// last event (then the dispatcher sets ``TurnRecord/expectedLastSequence`` on its appends, and the store
    /// refuses a stale one with ``ConversationChangedError``). Nil for an unknown conversation — or, from a
    /// store that numbers events, an empty session with `lastSequence` 0, so that the first turn is checked too.
    /// The default reads ``currentSession(of:)`` and numbers nothing.
    func load(_ senderID: String) async throws -> StoredConversation?

    /// Returns when the store can serve reads and appends now; throws an error naming what is wrong otherwise
    /// (`GET /health` answers 503 with it, so a load balancer takes the node out). The default is always healthy.
    func checkHealth() async throws
}

extension ConversationStore {
    public func checkHealth() async throws {}

    public func load(_ senderID: String) async throws -> StoredConversation? {
        try await currentSession(of: senderID).map { StoredConversation(currentSession: $0) }
    }

    /// ``append(_:completion:)``, returning once the record is durable (throwing when nothing of it was stored).
    public func append(_ record: TurnRecord) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            append(record) { continuation.resume(with: $0) }
        }
    }

    /// Appends `events` to `senderID` (a ``TurnRecord`` serialised here): for tests and tools.
    public func append(_ events: [JSONValue], to senderID: String) async throws {
        try await append(TurnRecord(senderID: senderID, events: events))
    }
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

    public func append(_ record: TurnRecord, completion: @escaping @Sendable (Result<Void, any Error>) -> Void) {
        if !record.isEmpty {  // an empty record stores nothing, as in every store
            conversations.withLock { all in
                // Mutated in place: one lookup, no copy of the event list.
                Self.append(record.events, to: &all[record.senderID, default: Conversation()])
            }
        }
        completion(.success(()))
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
