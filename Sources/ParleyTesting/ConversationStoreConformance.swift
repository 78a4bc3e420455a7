public import ParleyDispatch
public import ParleyJSON
import Synchronization

/// The behaviour every ``ConversationStore`` must have, as checks that any test framework can run: the
/// executable form of the protocol's documentation. Parley runs them against the in-memory and the SQLite
/// store; a new store (PostgreSQL, Redis, an embedder's own) passes them before the dispatcher uses it.
///
/// ```swift
/// @Test(arguments: ConversationStoreConformance.checks)
/// func myStore(_ check: ConversationStoreConformance.Check) async throws {
///     try await check.run(ConversationStoreConformance.Subject { try await MyStore.openEmpty() })
/// }
/// ```
///
/// Events are compared as JSON text (a store keeps JSON, in which `2.0` and `2` are one number). Each check gets
/// fresh, empty storage from the ``Subject`` and throws a ``ConformanceFailure`` naming
/// the check and what differed. Checks about durability across a restart run only when the subject can
/// ``Subject/reopen`` its storage.
public enum ConversationStoreConformance {
    /// How the checks get a store to test.
    public struct Subject: Sendable {
        /// Opens a store on new, empty storage; every call is independent of the others.
        public var makeEmptyStore: @Sendable () async throws -> Storage

        /// A store and, for a store whose events survive the process, a way to open the same storage again.
        public struct Storage: Sendable {
            /// The store under test.
            public var store: any ConversationStore
            /// Opens the same storage as a new store instance (the caller has stopped using `store`), or nil
            /// when the storage does not outlive the instance (an in-memory store).
            public var reopen: (@Sendable () async throws -> any ConversationStore)?

            /// A store, and how to reopen its storage when it has any.
            public init(store: any ConversationStore, reopen: (@Sendable () async throws -> any ConversationStore)? = nil) {
                self.store = store
                self.reopen = reopen
            }
        }

        /// A subject whose stores are made by `makeEmptyStore`.
        public init(makeEmptyStore: @escaping @Sendable () async throws -> Storage) {
            self.makeEmptyStore = makeEmptyStore
        }

        /// A subject for a store that keeps nothing across instances.
        public init(_ makeStore: @escaping @Sendable () async throws -> any ConversationStore) {
            self.makeEmptyStore = { Storage(store: try await makeStore()) }
        }
    }

    /// One named check.
    public struct Check: Sendable, CustomStringConvertible {
        /// What the check verifies, as a sentence.
        public let name: String
        let body: @Sendable (Subject) async throws -> Void

        /// Runs the check against `subject`; throws a ``ConformanceFailure`` when the store behaves otherwise.
        public func run(_ subject: Subject) async throws {
            try await body(subject)
        }

        public var description: String { name }
    }

    /// Every check, in a stable order.
    public static let checks: [Check] = [
        Check(name: "an unknown conversation reads as nil") { subject in
            let store = try await subject.makeEmptyStore().store
            try expect(try await store.currentSession(of: "nobody") == nil, "currentSession of an unknown conversation is not nil")
            try expect(try await store.events(of: "nobody", types: nil) == nil, "events of an unknown conversation are not nil")
            try expect(try await store.events(of: "nobody", types: ["user"]) == nil, "filtered events of an unknown conversation are not nil")
        },
        Check(name: "appended events read back in order, whole and filtered by type") { subject in
            let store = try await subject.makeEmptyStore().store
            let first: [JSONValue] = [event("session_started"), event("user", ["text": "hi"]), event("bot", ["text": "yo"])]
            let second: [JSONValue] = [event("user", ["text": "again"], at: 2), event("bot", ["text": "sure"], at: 2)]
            try await store.append(first, to: "a")
            try await store.append(second, to: "a")
            try expect(same(try await store.events(of: "a", types: nil), first + second), "events(of:) differ from what was appended")
            try expect(same(try await store.events(of: "a", types: ["user"]), [first[1], second[0]]), "events(of:types: [user]) differ")
            try expect(try await store.events(of: "a", types: ["user", "bot"])?.count == 4, "events(of:types: [user, bot]) count differs")
            try expect(same(try await store.events(of: "a", types: ["restart"]), []), "a type with no events must read as [] for a known conversation")
        },
        Check(name: "the current session starts at the latest session_started or restart") { subject in
            let store = try await subject.makeEmptyStore().store
            let before: [JSONValue] = [event("user", ["text": "pre"], at: 0.5)]
            try await store.append(before, to: "s")
            try expect(same(try await store.currentSession(of: "s"), before), "without session_started or restart the session is every event")
            let one: [JSONValue] = [event("session_started", at: 1), event("user", ["text": "one"], at: 1)]
            try await store.append(one, to: "s")
            try expect(same(try await store.currentSession(of: "s"), one), "the session does not start at session_started")
            let two: [JSONValue] = [event("user", ["text": "more"], at: 2), event("restart", at: 3), event("user", ["text": "fresh"], at: 3)]
            try await store.append(two, to: "s")
            try expect(same(try await store.currentSession(of: "s"), Array(two[1...])), "the session does not start at a restart inside an append")
            try expect(try await store.events(of: "s", types: nil)?.count == 6, "a new session must keep the older events readable")
        },
        Check(name: "conversations are separate, whatever their ids") { subject in
            let store = try await subject.makeEmptyStore().store
            // Ids that trip LIKE patterns, quoting, case folding and prefix matches.
            let ids = ["a", "A", "a%", "a_", "ab", "a'b", "a\"b", "ädа😀", "user@example.com", String(repeating: "x", count: 256)]
            for (i, id) in ids.enumerated() { try await store.append([event("user", ["n": .int(Int64(i))])], to: id) }
            for (i, id) in ids.enumerated() {
                let events = try await store.events(of: id, types: nil)
                try expect(same(events, [event("user", ["n": .int(Int64(i))])]), "conversation \(id) reads \(String(describing: events))")
            }
        },
        Check(name: "an append of no events stores nothing") { subject in
            let store = try await subject.makeEmptyStore().store
            try await store.append([], to: "empty")
            try expect(try await store.events(of: "empty", types: nil) == nil, "an empty append made the conversation known")
            try expect(try await store.currentSession(of: "empty") == nil, "an empty append made a current session")
        },
        Check(name: "an append with the events' encoded text reads back as the events") { subject in
            let store = try await subject.makeEmptyStore().store
            let events: [JSONValue] = [event("user", ["text": "encoded"]), event("bot", ["text": "too"])]
            try await store.append(TurnRecord(senderID: "e", events: events, encoded: events.map(serialized)))
            try expect(same(try await store.events(of: "e", types: nil), events), "events appended with their text differ")
            try expect(same(try await store.events(of: "e", types: ["bot"]), [events[1]]), "the type filter misses events appended with their text")
        },
        Check(name: "values round-trip exactly: Unicode, escapes, large and nested JSON, numbers") { subject in
            let store = try await subject.makeEmptyStore().store
            var nested: JSONValue = "leaf"
            for _ in 0..<48 { nested = ["k": nested] }
            let values: [JSONValue] = [
                "😀 ädа 中文 \u{0} \u{1F} \u{7F} \u{2028} \\ \" /",
                .string(String(repeating: "long text ", count: 20_000)),
                .int(Int64.max), .int(Int64.min), .double(0.1), .double(-2.5e-300), .double(1e300), true, false, nil,
                nested, .array((0..<1000).map { .int($0) }),
            ]
            let events = values.enumerated().map { event("bot", ["value": $0.element, "i": .int(Int64($0.offset))]) }
            try await store.append(events, to: "v")
            let read = try await store.events(of: "v", types: nil) ?? []
            try expect(read.count == events.count, "\(read.count) of \(events.count) events read back")
            for (got, want) in zip(read, events) where got.serialized != want.serialized {
                throw ConformanceFailure("event \(want["i"].map { $0.serialized } ?? "?") reads back as \(got.serialized.prefix(200))")
            }
        },
        Check(name: "concurrent appends to many conversations are all stored, each conversation in order") { subject in
            let store = try await subject.makeEmptyStore().store
            try await withThrowingTaskGroup(of: Void.self) { group in
                for w in 0..<32 {
                    group.addTask {
                        for i in 0..<16 { try await store.append([event("user", ["n": .int(Int64(i))]), event("bot")], to: "w\(w)") }
                    }
                }
                try await group.waitForAll()
            }
            for w in 0..<32 {
                let numbers = (try await store.events(of: "w\(w)", types: ["user"]) ?? []).map { $0["n"]?.int64Value ?? -1 }
                try expect(numbers == (0..<16).map(Int64.init), "conversation w\(w) reads \(numbers)")
            }
        },
        Check(name: "an append calls its completion once, after the events are readable") { subject in
            let store = try await subject.makeEmptyStore().store
            let events: [JSONValue] = [event("user", ["text": "c"]), event("bot", ["text": "d"])]
            let counter = CallCounter()
            let calls = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Int, any Error>) in
                store.append(TurnRecord(senderID: "c", events: events)) { result in
                    if counter.increment() == 1 { continuation.resume(with: result.map { 1 }) }
                }
            }
            try expect(calls == 1, "completion not called")
            try expect(same(try await store.events(of: "c", types: nil), events), "events not readable after the completion")
            try await Task.sleep(for: .milliseconds(50))
            try expect(counter.increment() == 2, "completion called more than once")
        },
        Check(name: "appends to one conversation made without waiting are stored in the order of the calls") { subject in
            let store = try await subject.makeEmptyStore().store
            let count = 64
            let counter = CallCounter()
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let failed = Mutex(false)
                for i in 0..<count {
                    store.append(TurnRecord(senderID: "o", events: [event("user", ["n": .int(Int64(i))])])) { result in
                        if case .failure(let error) = result,
                            failed.withLock({ f in
                                defer { f = true }; return !f
                            })
                        {
                            continuation.resume(throwing: error)
                        } else if counter.increment() == count, !failed.withLock({ $0 }) {
                            continuation.resume()
                        }
                    }
                }
            }
            let numbers = (try await store.events(of: "o", types: nil) ?? []).map { $0["n"]?.int64Value ?? -1 }
            try expect(numbers == (0..<Int64(count)).map { $0 }, "conversation o reads \(numbers)")
        },
        Check(name: "a healthy store says so") { subject in
            let store = try await subject.makeEmptyStore().store
            do {
                try await store.checkHealth()
            } catch {
                throw ConformanceFailure("checkHealth() threw on a new store: \(error)")
            }
        },
        Check(name: "every appended event survives reopening the storage") { subject in
            let storage = try await subject.makeEmptyStore()
            guard let reopen = storage.reopen else { return }
            let a: [JSONValue] = [event("session_started"), event("user", ["text": "keep me"])]
            let b: [JSONValue] = [event("restart", at: 2), event("user", ["text": "and me"], at: 2)]
            try await storage.store.append(a, to: "r")
            try await storage.store.append(b, to: "r")
            try await storage.store.append([event("bot")], to: "other")
            let reopened = try await reopen()
            try expect(same(try await reopened.events(of: "r", types: nil), a + b), "events differ after reopening")
            try expect(same(try await reopened.currentSession(of: "r"), b), "the current session differs after reopening")
            try expect(try await reopened.events(of: "other", types: nil)?.count == 1, "another conversation differs after reopening")
            try await reopened.append([event("user", ["text": "after"], at: 3)], to: "r")
            try expect(try await reopened.currentSession(of: "r")?.count == 3, "an append after reopening is not in the session")
        },
    ]

    static func event(_ kind: String, _ extra: JSONObject = [:], at t: Double = 1.5) -> JSONValue {
        var o: JSONObject = ["event": .string(kind), "timestamp": .double(t)]
        for (k, v) in extra { o[k] = v }
        return .object(o)
    }

    static func serialized(_ value: JSONValue) -> [UInt8] {
        var bytes: [UInt8] = []
        value.serialize(into: &bytes)
        return bytes
    }

    /// The same JSON: a store keeps JSON text, in which `2.0` and `2` are one number.
    static func same(_ a: [JSONValue]?, _ b: [JSONValue]?) -> Bool {
        a.map { $0.map(\.serialized) } == b.map { $0.map(\.serialized) }
    }

    static func expect(_ condition: Bool, _ message: @autoclosure () -> String) throws {
        if !condition { throw ConformanceFailure(message()) }
    }
}

/// A store that does not behave as ``ConversationStore`` promises; the description says what differed.
public struct ConformanceFailure: Error, Sendable, CustomStringConvertible {
    public let description: String

    init(_ description: String) {
        self.description = description
    }
}

/// Counts completion calls from any thread.
private final class CallCounter: Sendable {
    private let count = Mutex(0)

    func increment() -> Int {
        count.withLock { c in
            c += 1
            return c
        }
    }
}
