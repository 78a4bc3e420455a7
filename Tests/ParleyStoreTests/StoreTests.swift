import Foundation
import ParleyCore
import ParleyDispatch
import ParleyWorkers
import ParleyJSON
@_spi(Testing) import ParleyStore
import Synchronization
import Testing

/// A fresh temporary directory, removed after `body`.
func withTemporaryDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
    let dir = NSTemporaryDirectory() + "parley-store-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    return try await body(dir)
}

func event(_ kind: String, _ extra: JSONObject = [:], at t: Double = 1.5) -> JSONValue {
    var o: JSONObject = ["event": .string(kind), "timestamp": .double(t)]
    for (k, v) in extra { o[k] = v }
    return .object(o)
}

// What holds for every store is in ConformanceTests.swift (ParleyTesting.ConversationStoreConformance).

@Suite struct SQLiteStoreTests {
    @Test func reopenKeepsEventsAndSchemaVersion() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/parley.db"
            do {
                let store = try SQLiteConversationStore(configuration: .init(path: path))
                try await store.append([event("user", ["text": "persist me"])], to: "a")
            }
            let reopened = try SQLiteConversationStore(configuration: .init(path: path, durability: .normal))
            #expect(try await reopened.events(of: "a", types: nil)?.first?["text"] == "persist me")
            #expect(try reopened.appliedMigrations() == ["v1: events", "v2: batch-indexed log", "v3: quarantined events"])
            #expect(try reopened.eventCount() == 1)
        }
    }

    @Test func corruptFileIsAClearStartupError() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/broken.db"
            try Data(String(repeating: "this is not a database. ", count: 200).utf8).write(to: URL(fileURLWithPath: path))
            let error = #expect(throws: StoreError.self) { try SQLiteConversationStore(configuration: .init(path: path)) }
            #expect(error?.code == .corrupt)
            #expect(error?.description.contains(path) == true)
            #expect(error?.description.contains("not a SQLite database") == true)
        }
    }

    @Test func readOnlyFileIsAClearStartupError() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/ro.db"
            do { _ = try SQLiteConversationStore(configuration: .init(path: path)) }
            // Root ignores permission bits, so make the file immutable instead when running as root.
            let asRoot = geteuid() == 0
            if asRoot {
                guard shell("/usr/bin/chattr", ["+i", path]) == 0 else {
                    Issue.record("chattr +i failed; cannot make \(path) read-only as root")
                    return
                }
            } else {
                chmod(path, 0o444)
            }
            defer { if asRoot { _ = shell("/usr/bin/chattr", ["-i", path]) } }
            let error = #expect(throws: StoreError.self) { try SQLiteConversationStore(configuration: .init(path: path)) }
            #expect(error?.code == .readOnly)
            #expect(error?.description.contains(path) == true)
            #expect(error?.description.contains("read-only") == true || error?.description.contains("writable") == true)
        }
    }

    @Test func missingDirectoryIsAClearStartupError() async throws {
        let path = "/nonexistent-parley-dir/sub/parley.db"
        let error = #expect(throws: StoreError.self) { try SQLiteConversationStore(configuration: .init(path: path)) }
        #expect(error?.code == .cannotOpen)
        #expect(error?.description.contains(path) == true)
    }

    @Test func newerSchemaIsRefused() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/future.db"
            do { _ = try SQLiteConversationStore(configuration: .init(path: path)) }
            #expect(
                shell("/usr/bin/sqlite3", [path, "INSERT INTO grdb_migrations VALUES ('v99: future')"]) == 0
                    || !FileManager.default.fileExists(atPath: "/usr/bin/sqlite3"))
            guard FileManager.default.fileExists(atPath: "/usr/bin/sqlite3") else { return }
            let error = #expect(throws: StoreError.self) { try SQLiteConversationStore(configuration: .init(path: path)) }
            #expect(error?.code == .newerSchema)
        }
    }

    @Test func fullDiskFailsTheWriteAndLeavesNothingHalfWritten() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/full.db"
            let store = try SQLiteConversationStore(configuration: .init(path: path, maxPageCount: 16))
            let big = String(repeating: "x", count: 1500)
            var stored = 0
            var failure: (any Error)?
            for i in 0..<200 {
                do {
                    try await store.append((0..<4).map { _ in event("bot", ["text": .string(big), "n": .int(Int64(i))]) }, to: "a")
                    stored += 4
                } catch {
                    failure = error
                    break
                }
            }
            let error = try #require(failure as? StoreError)
            #expect(error.code == .full)
            #expect(error.description.contains(path))
            // All-or-nothing: exactly the successful appends are there.
            #expect(try store.eventCount() == stored)
            #expect(try await store.events(of: "a", types: nil)?.count == stored)
        }
    }
}

@Suite struct DispatcherWithSQLiteTests {
    struct CountingAgent: Agent {
        let name = "counting"
        func respond(to request: AgentRequest) async throws -> AgentReply {
            let previous = request.payload["tracker"]?["slots"]?["turns"]?.int64Value ?? 0
            return AgentReply(
                events: [["event": "slot", "name": "turns", "value": .int(previous + 1)]],
                responses: [["text": .string("turn \(previous + 1) " + String(repeating: "x", count: 1500))]])
        }
    }

    func run(_ dispatcher: Dispatcher, _ body: @Sendable () async throws -> Void) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await dispatcher.run() }
            defer { dispatcher.shutdown() }
            try await body()
            dispatcher.shutdown()
            try await group.waitForAll()
        }
    }

    func reply(_ dispatcher: Dispatcher, _ text: String) async throws -> String {
        let result = try await dispatcher.handle(UserMessage(text: text, senderID: "alice", inputChannel: "rest"))
        return String(result.responses.first?["text"]?.stringValue?.prefix(6) ?? "")
    }

    /// Messages submitted back to back: each turn's append may still be committing (the drain task does not
    /// wait for it when the mailbox is empty) when the next arrives; the next turn must see its events, and
    /// the replies and stored events keep the order — on the worker pool as in `parley serve`.
    @Test(arguments: [false, true])
    func backToBackMessagesKeepTheirOrder(onWorkerPool: Bool) async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/parley.db"
            let pool = WorkerPool(threads: 2)
            let dispatcher = Dispatcher(
                agent: CountingAgent(), store: try SQLiteConversationStore(configuration: .init(path: path)),
                executor: onWorkerPool ? pool : nil)
            let replies = Mutex<[String]>([])
            try await run(dispatcher) { () async throws -> Void in
                await withTaskGroup(of: Void.self) { group in
                    for i in 0..<30 {
                        // submit() returns at once: the next message is queued while this one is processed.
                        let done = AsyncStream<Void>.makeStream()
                        dispatcher.submit(UserMessage(text: "m\(i)", senderID: "bob", inputChannel: "rest")) { result in
                            if case .success(let turn) = result {
                                replies.withLock {
                                    $0.append(String(turn.responses.first?["text"]?.stringValue?.split(separator: " ").prefix(2).joined(separator: " ") ?? ""))
                                }
                            }
                            done.continuation.finish()
                        }
                        group.addTask { for await _ in done.stream {} }
                        if i % 3 == 0 { try? await Task.sleep(for: .milliseconds(1)) }
                    }
                }
            }
            #expect(replies.withLock { $0 } == (1...30).map { "turn \($0)" })
            let stored = try await SQLiteConversationStore(configuration: .init(path: path)).events(of: "bob", types: ["user"])
            #expect(stored?.compactMap { $0["text"]?.stringValue } == (0..<30).map { "m\($0)" })
            try await pool.shutdown()
        }
    }

    @Test func conversationContinuesAfterRestart() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/parley.db"
            let first = Dispatcher(agent: CountingAgent(), store: try SQLiteConversationStore(configuration: .init(path: path)))
            try await run(first) { () async throws -> Void in
                let r1 = try await reply(first, "one")
                let r2 = try await reply(first, "two")
                #expect([r1, r2] == ["turn 1", "turn 2"])
            }
            let second = Dispatcher(agent: CountingAgent(), store: try SQLiteConversationStore(configuration: .init(path: path)))
            try await run(second) { () async throws -> Void in
                let r3 = try await reply(second, "three")
                #expect(r3 == "turn 3")
            }
        }
    }

    @Test func fullDiskFailsTheTurnAndRecordsNothingOfIt() async throws {
        try await withTemporaryDirectory { dir in
            let store = try SQLiteConversationStore(configuration: .init(path: dir + "/full.db", maxPageCount: 14))
            let dispatcher = Dispatcher(agent: CountingAgent(), store: store)
            try await run(dispatcher) { () async throws -> Void in
                var completed = 0
                var refusal: DispatchError?
                for i in 0..<100 {
                    do {
                        _ = try await reply(dispatcher, "message \(i)")
                        completed += 1
                    } catch let error as DispatchError {
                        refusal = error
                        break
                    }
                }
                let error = try #require(refusal)
                #expect(error.code == .storeFailed)
                #expect(error.description.contains("disk full"))
                let users = try #require(try await store.events(of: "alice", types: ["user"]))
                #expect(users.count == completed)
                let bots = try #require(try await store.events(of: "alice", types: ["bot"]))
                #expect(bots.count == completed)
            }
        }
    }
}

@discardableResult
func shell(_ tool: String, _ arguments: [String]) -> Int32 {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: tool)
    p.arguments = arguments
    p.standardError = FileHandle.nullDevice
    do { try p.run() } catch { return -1 }
    p.waitUntilExit()
    return p.terminationStatus
}
