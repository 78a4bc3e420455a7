import Logging
import ParleyDispatch
import ParleyJSON
import ParleyTesting
import Testing

@testable import ParleyPostgres

#if canImport(Glibc)
import Glibc
#endif

/// The real PostgreSQL that `scripts/with-services.sh` (run by `make test`) starts; these tests need it.
enum TestDatabase {
    static let url: String? = getenv("PARLEY_TEST_POSTGRES_URL").map { String(cString: $0) }
    static var available: Bool { url != nil }

    /// The test server's configuration on a fresh schema of its own.
    static func configuration(schema: String = uniqueSchema()) throws -> PostgresStoreConfiguration {
        try PostgresStoreConfiguration(url: url ?? "postgres://missing@127.0.0.1/none", schema: schema, poolSize: 4)
    }

    static func uniqueSchema() -> String {
        "t_\(UInt64.random(in: 0...UInt64.max) & 0xFFFF_FFFF_FFFF)"
    }

    static let logger: Logger = {
        var logger = Logger(label: "test.postgres")
        logger.logLevel = .warning
        return logger
    }()

    /// Opens `count` stores on one schema, runs them for the duration of `body`, then closes them.
    static func withStores<T: Sendable>(
        _ count: Int = 1, schema: String = uniqueSchema(), _ body: @Sendable ([PostgresConversationStore]) async throws -> T
    ) async throws -> T {
        var stores: [PostgresConversationStore] = []
        for _ in 0..<count { stores.append(try await PostgresConversationStore.open(try configuration(schema: schema), logger: logger)) }
        let opened = stores
        return try await withThrowingTaskGroup(of: Void.self) { group in
            for store in opened { group.addTask { try await store.run() } }
            defer {
                for store in opened { store.close() }
            }
            let result = try await body(opened)
            for store in opened { store.close() }
            try await group.waitForAll()
            return result
        }
    }
}

@Suite("PostgreSQL store: the conformance suite", .enabled(if: TestDatabase.available, "needs PARLEY_TEST_POSTGRES_URL (make test starts PostgreSQL)"))
struct PostgresConformanceTests {
    @Test(arguments: ConversationStoreConformance.checks)
    func conformance(_ check: ConversationStoreConformance.Check) async throws {
        // Two instances on one fresh schema: the second is the "reopened" store (another process, same data).
        try await TestDatabase.withStores(2) { stores in
            let first = stores[0]
            let second = stores[1]
            try await check.run(ConversationStoreConformance.Subject { .init(store: first, reopen: { second }) })
        }
    }
}

@Suite("PostgreSQL store", .enabled(if: TestDatabase.available, "needs PARLEY_TEST_POSTGRES_URL (make test starts PostgreSQL)"))
struct PostgresStoreTests {
    static func event(_ kind: String, _ n: Int) -> JSONValue {
        ["event": .string(kind), "timestamp": 1.5, "n": .int(Int64(n))]
    }

    @Test("two nodes appending to one conversation at once: every event stored once, numbered without a gap")
    func twoNodesOneConversation() async throws {
        try await TestDatabase.withStores(2) { stores in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (node, store) in stores.enumerated() {
                    group.addTask {
                        for i in 0..<50 { try await store.append([Self.event("user", node * 1000 + i), Self.event("bot", node * 1000 + i)], to: "shared") }
                    }
                }
                try await group.waitForAll()
            }
            let events = try #require(try await stores[0].events(of: "shared", types: nil))
            #expect(events.count == 200)
            let numbers = events.compactMap { $0["n"]?.int64Value }
            for node in 0..<2 {
                // Each node's own appends keep their order, and each turn's two events stay together.
                let mine: [Int64] = numbers.filter { $0 / 1000 == Int64(node) }
                var expected: [Int64] = []
                for i in 0..<50 { expected += [Int64(node * 1000 + i), Int64(node * 1000 + i)] }
                #expect(mine == expected)
            }
            for pair in stride(from: 0, to: events.count, by: 2) {
                let kinds = (events[pair]["event"]?.stringValue, events[pair + 1]["event"]?.stringValue)
                #expect(kinds.0 == "user" && kinds.1 == "bot" && numbers[pair] == numbers[pair + 1])
            }
        }
    }

    @Test("a turn computed on a stale state is refused; after reloading it is stored")
    func optimisticConcurrency() async throws {
        try await TestDatabase.withStores(2) { stores in
            let (a, b) = (stores[0], stores[1])
            #expect(try await a.load("oc")?.lastSequence == 0)
            try await a.append([Self.event("session_started", 0)], to: "oc")
            let seenByA = try #require(try await a.load("oc"))
            let seenByB = try #require(try await b.load("oc"))
            #expect(seenByA.lastSequence == 1 && seenByB.lastSequence == 1 && seenByB.currentSession.count == 1)
            var turnA = TurnRecord(senderID: "oc", events: [Self.event("user", 1), Self.event("bot", 1)])
            turnA.expectedLastSequence = 1
            var turnB = TurnRecord(senderID: "oc", events: [Self.event("user", 2), Self.event("bot", 2)])
            turnB.expectedLastSequence = 1
            try await a.append(turnA)
            await #expect {
                try await b.append(turnB)
            } throws: { ($0 as? ConversationChangedError)?.expectedLastSequence == 1 }
            // B reloads, sees A's turn, and its turn goes after it.
            let reloaded = try #require(try await b.load("oc"))
            #expect(reloaded.lastSequence == 3 && reloaded.currentSession.count == 3)
            turnB.expectedLastSequence = 3
            try await b.append(turnB)
            let numbers = try await a.events(of: "oc", types: nil)?.compactMap { $0["n"]?.int64Value }
            #expect(numbers == [0, 1, 1, 2, 2])
            // In one group commit with other conversations, only the stale record is refused.
            var stale = TurnRecord(senderID: "oc", events: [Self.event("user", 9)])
            stale.expectedLastSequence = 3
            var fresh = TurnRecord(senderID: "oc-other", events: [Self.event("user", 1)])
            fresh.expectedLastSequence = 0
            let results = await withTaskGroup(of: Bool.self) { group in
                for record in [stale, fresh] {
                    group.addTask {
                        do {
                            try await a.append(record)
                            return true
                        } catch { return false }
                    }
                }
                return await group.reduce(into: [Bool]()) { $0.append($1) }
            }
            #expect(results.filter { $0 }.count == 1 && results.count == 2)
        }
    }

    @Test("nodes starting together migrate one fresh schema once")
    func concurrentMigrations() async throws {
        let schema = TestDatabase.uniqueSchema()
        let configuration = try TestDatabase.configuration(schema: schema)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<6 {
                group.addTask { _ = try await PostgresConversationStore.open(configuration, logger: TestDatabase.logger) }
            }
            try await group.waitForAll()
        }
        try await TestDatabase.withStores(schema: schema) { stores in
            try await stores[0].append([Self.event("user", 1)], to: "m")
            #expect(try await stores[0].events(of: "m", types: nil)?.count == 1)
        }
    }

    @Test("a schema written by a newer Parley is refused with the version and the fix")
    func newerSchema() async throws {
        let schema = TestDatabase.uniqueSchema()
        try await TestDatabase.withStores(schema: schema) { stores in
            try await stores[0].append([Self.event("user", 1)], to: "x")
        }
        try await Self.sql("INSERT INTO \(schema).schema_version (version) VALUES (99)")
        do {
            _ = try await PostgresConversationStore.open(try TestDatabase.configuration(schema: schema), logger: TestDatabase.logger)
            Issue.record("a newer schema was accepted")
        } catch let error as PostgresStoreError {
            #expect(error.code == .newerSchema)
            #expect(error.description.contains("schema version 99") && error.description.contains("supports up to 1"), "\(error)")
        }
    }

    @Test("wrong password and nothing listening: one message naming the server")
    func unreachable() async throws {
        var wrong = try TestDatabase.configuration()
        wrong.password = "not-the-password"
        await #expect {
            _ = try await PostgresConversationStore.open(wrong, logger: TestDatabase.logger)
        } throws: { error in
            let e = error as? PostgresStoreError
            return e?.code == .unreachable && e!.description.contains("\(wrong.host):\(wrong.port)/\(wrong.database)")
                && e!.description.contains("password authentication failed")
        }
        var closed = try TestDatabase.configuration()
        closed.port = 1
        closed.connectTimeout = .seconds(2)
        await #expect {
            _ = try await PostgresConversationStore.open(closed, logger: TestDatabase.logger)
        } throws: { error in
            (error as? PostgresStoreError)?.code == .unreachable && "\(error)".contains("127.0.0.1:1/")
        }
    }

    @Test("an event the server holds but cannot be parsed is skipped, the rest of the conversation reads")
    func unreadableEvent() async throws {
        let schema = TestDatabase.uniqueSchema()
        try await TestDatabase.withStores(schema: schema) { stores in
            try await stores[0].append([Self.event("user", 1), Self.event("bot", 2)], to: "q")
            try await Self.sql("UPDATE \(schema).events SET data = '{not json' WHERE sender_id = 'q' AND seq = 1")
            let events = try await stores[0].events(of: "q", types: nil)
            #expect(events?.count == 1 && events?.first?["n"] == 2)
        }
    }

    @Test("appends after a graceful stop fail with shuttingDown; queued ones were written")
    func closing() async throws {
        let schema = TestDatabase.uniqueSchema()
        let store = try await PostgresConversationStore.open(try TestDatabase.configuration(schema: schema), logger: TestDatabase.logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await store.run() }
            try await store.append([Self.event("user", 1)], to: "c")
            store.close()
            try await group.waitForAll()
        }
        await #expect {
            try await store.append([Self.event("user", 2)], to: "c")
        } throws: { ($0 as? PostgresStoreError)?.code == .shuttingDown }
    }

    /// Runs SQL on the test database through a store's own pool.
    static func sql(_ text: String) async throws {
        let store = try await PostgresConversationStore.open(try TestDatabase.configuration(schema: "public"), logger: TestDatabase.logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await store.run() }
            try await store.execute(text)
            store.close()
            try await group.waitForAll()
        }
    }
}

@Suite("PostgreSQL store configuration")
struct PostgresConfigurationTests {
    @Test("URLs: credentials, port, database, sslmode, percent-encoding")
    func urls() throws {
        let c = try PostgresStoreConfiguration(url: "postgres://bot:p%40ss%3Aword@db.internal:6543/chat?sslmode=require", schema: "s1", poolSize: 3)
        #expect(c.host == "db.internal" && c.port == 6543 && c.username == "bot" && c.password == "p@ss:word" && c.database == "chat")
        #expect(c.requireTLS && c.schema == "s1" && c.poolSize == 3)
        let d = try PostgresStoreConfiguration(url: "postgresql://parley@[::1]/")
        #expect(d.host == "::1" && d.port == 5432 && d.password == nil && d.database == "parley")
        for bad in ["mysql://a@b/c", "postgres://host/db", "postgres://u@h:99999/db", "postgres://u@h/db?sslmode=verify-full", "postgres://u@h/db?x=1"] {
            #expect(throws: PostgresStoreError.self, "\(bad)") { try PostgresStoreConfiguration(url: bad) }
        }
        #expect(PostgresStoreConfiguration.isValidSchemaName("parley_2"))
        #expect(
            !PostgresStoreConfiguration.isValidSchemaName("Parley") && !PostgresStoreConfiguration.isValidSchemaName("a;drop")
                && !PostgresStoreConfiguration.isValidSchemaName(""))
    }
}
