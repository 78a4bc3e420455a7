import Foundation
import ParleyDispatch
import ParleyJSON
@_spi(Testing) @testable import ParleyStore
import Testing

/// The batch-indexed log: reads combine the indexed part with the unindexed tail, before, during and after
/// indexer runs, after a crash that left the tail unindexed, and after migrating a v1 database.
@Suite struct LogIndexTests {
    /// A store that indexes only when told (no size or idle trigger).
    func manualStore(_ path: String) throws -> SQLiteConversationStore {
        try SQLiteConversationStore(configuration: .init(path: path, indexBatchEvents: .max, indexIdleSeconds: nil))
    }

    /// Every read the store offers, compared with the in-memory store fed the same appends.
    func expectSameReads(
        _ store: SQLiteConversationStore, _ reference: InMemoryConversationStore, senders: [String], sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        for sender in senders + ["nobody"] {
            #expect(
                try await store.currentSession(of: sender) == reference.currentSession(of: sender), "currentSession(\(sender))", sourceLocation: sourceLocation)
            #expect(
                try await store.events(of: sender, types: nil) == reference.events(of: sender, types: nil), "events(\(sender))", sourceLocation: sourceLocation)
            for types: Set<String> in [["user"], ["bot", "restart"], ["session_started"], ["no_such_type"], ["bad'type"]] {
                #expect(
                    try await store.events(of: sender, types: types) == reference.events(of: sender, types: types), "events(\(sender), \(types))",
                    sourceLocation: sourceLocation)
            }
        }
    }

    @Test func readsCombineTheIndexedPartAndTheTail() async throws {
        try await withTemporaryDirectory { dir in
            let store = try manualStore(dir + "/parley.db")
            let reference = InMemoryConversationStore()
            let senders = ["a", "b", "c", "d"]
            var generator = SplitMix(seed: 42)
            let kinds = ["user", "bot", "bot", "slot", "session_started", "restart", "user", "action"]
            var n: Int64 = 0
            for step in 0..<60 {
                let sender = senders[Int(generator.next() % UInt64(senders.count))]
                let count = 1 + Int(generator.next() % 4)
                let events = (0..<count).map { _ -> JSONValue in
                    n += 1
                    return event(kinds[Int(generator.next() % UInt64(kinds.count))], ["n": .int(n)], at: Double(n) + 0.5)
                }
                try await store.append(events, to: sender)
                try await reference.append(events, to: sender)
                if step % 7 == 3 { await store.indexNow() }
                if step % 5 == 0 { try await expectSameReads(store, reference, senders: senders) }
            }
            try await expectSameReads(store, reference, senders: senders)
            await store.indexNow()
            let state = try store.indexState()
            #expect(state.unindexed == 0)
            #expect(state.watermark == (try store.eventCount()))
            try await expectSameReads(store, reference, senders: senders)
        }
    }

    @Test func sessionStartInTheTailHidesTheIndexedSession() async throws {
        try await withTemporaryDirectory { dir in
            let store = try manualStore(dir + "/parley.db")
            try await store.append([event("session_started", at: 1), event("user", ["text": "old"], at: 1)], to: "a")
            await store.indexNow()
            #expect(try await store.currentSession(of: "a")?.count == 2)
            // Unindexed: a new session in the tail.
            try await store.append([event("restart", at: 2), event("user", ["text": "new"], at: 2)], to: "a")
            #expect(try await store.currentSession(of: "a")?.map { $0["event"]?.stringValue ?? "" } == ["restart", "user"])
            // Unindexed events after an indexed session start belong to it.
            try await store.append([event("session_started", at: 3)], to: "b")
            await store.indexNow()
            try await store.append([event("user", ["text": "tail"], at: 4)], to: "b")
            #expect(try await store.currentSession(of: "b")?.map { $0["event"]?.stringValue ?? "" } == ["session_started", "user"])
            // Only a type filter that matches nothing: the conversation still exists.
            #expect(try await store.events(of: "b", types: ["bot"]) == [])
            #expect(try await store.events(of: "zzz", types: ["bot"]) == nil)
            await store.indexNow()
            #expect(try await store.currentSession(of: "a")?.map { $0["event"]?.stringValue ?? "" } == ["restart", "user"])
            #expect(try await store.currentSession(of: "b")?.count == 2)
        }
    }

    @Test func theWriterIndexesWhenTheTailReachesTheBatchSize() async throws {
        try await withTemporaryDirectory { dir in
            let store = try SQLiteConversationStore(configuration: .init(path: dir + "/parley.db", indexBatchEvents: 10, indexIdleSeconds: nil))
            for i in 0..<12 { try await store.append([event("user", ["n": .int(Int64(i))]), event("bot")], to: "s\(i % 3)") }
            let state = try store.indexState()
            #expect(state.runs >= 2)
            #expect(state.watermark >= 20)
            #expect(state.unindexed < 10)
            for s in 0..<3 {
                let users = try #require(try await store.events(of: "s\(s)", types: ["user"]))
                #expect(users.map { $0["n"]?.int64Value ?? -1 } == stride(from: Int64(s), to: 12, by: 3).map { $0 })
                #expect(try await store.currentSession(of: "s\(s)")?.count == 8)
            }
        }
    }

    @Test func theWriterIndexesTheTailWhenIdle() async throws {
        try await withTemporaryDirectory { dir in
            let store = try SQLiteConversationStore(configuration: .init(path: dir + "/parley.db", indexIdleSeconds: 0.05))
            try await store.append([event("session_started"), event("user")], to: "a")
            var state = try store.indexState()
            // The watermark moves at the commit, the writer's count just after: wait for both.
            for _ in 0..<200 where state.watermark < 2 || state.unindexed > 0 {
                try await Task.sleep(for: .milliseconds(20))
                state = try store.indexState()
            }
            #expect(state.watermark == 2)
            #expect(state.unindexed == 0)
            #expect(try await store.currentSession(of: "a")?.count == 2)
        }
    }

    /// A crash leaves committed events unindexed: reopening reads them from the tail, then indexes them.
    @Test func reopeningAfterACrashReadsTheUnindexedTail() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/parley.db"
            let reference = InMemoryConversationStore()
            do {
                let store = try manualStore(path)
                try await store.append([event("session_started", at: 1.5), event("user", ["text": "one"], at: 1.5)], to: "a")
                try await reference.append([event("session_started", at: 1.5), event("user", ["text": "one"], at: 1.5)], to: "a")
                await store.indexNow()
                for i in 0..<5 {
                    let events = [event("user", ["n": .int(Int64(i))], at: 2.5), event("bot", at: 2.5)]
                    try await store.append(events, to: i % 2 == 0 ? "a" : "b")
                    try await reference.append(events, to: i % 2 == 0 ? "a" : "b")
                }
                #expect(try store.indexState().watermark == 2)
                // Closed without indexing the tail, as a kill -9 would leave it.
            }
            let reopened = try manualStore(path)
            let state = try reopened.indexState()
            #expect(state.watermark == 2)
            #expect(state.unindexed == 10)
            try await expectSameReads(reopened, reference, senders: ["a", "b"])
            await reopened.indexNow()
            #expect(try reopened.indexState().watermark == 12)
            try await expectSameReads(reopened, reference, senders: ["a", "b"])
            // The default configuration indexes the leftover tail on its own once idle.
            let next = try SQLiteConversationStore(configuration: .init(path: path, indexIdleSeconds: 0.01))
            try await expectSameReads(next, reference, senders: ["a", "b"])
        }
    }

    @Test func migratesAVersion1Database() async throws {
        guard FileManager.default.fileExists(atPath: "/usr/bin/sqlite3") else { return }
        try await withTemporaryDirectory { dir in
            let path = dir + "/v1.db"
            // The v1 schema exactly as the "v1: events" migration created it, with rows of two conversations.
            let rows: [(String, String, String)] = [
                ("a", "session_started", #"{"event":"session_started","timestamp":1}"#),
                ("a", "user", #"{"event":"user","timestamp":1,"text":"hi"}"#),
                ("b", "user", #"{"event":"user","timestamp":2,"text":"yo"}"#),
                ("a", "bot", #"{"event":"bot","timestamp":3,"text":"hello"}"#),
                ("a", "restart", #"{"event":"restart","timestamp":4}"#),
                ("a", "user", #"{"event":"user","timestamp":5,"text":"again"}"#),
                ("b", "bot", #"{"event":"bot","timestamp":6,"text":"b!"}"#),
            ]
            let inserts = rows.map { "INSERT INTO events (sender_id, type, timestamp, data) VALUES ('\($0.0)', '\($0.1)', 1.0, '\($0.2)');" }.joined(
                separator: "\n")
            let script = """
                PRAGMA journal_mode = WAL;
                CREATE TABLE grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY);
                INSERT INTO grdb_migrations VALUES ('v1: events');
                CREATE TABLE events (
                    id INTEGER PRIMARY KEY,
                    sender_id TEXT NOT NULL,
                    type TEXT NOT NULL,
                    timestamp REAL NOT NULL,
                    data TEXT NOT NULL
                );
                CREATE INDEX events_by_sender ON events(sender_id, id);
                CREATE INDEX events_session_starts ON events(sender_id, id) WHERE type IN ('session_started', 'restart');
                CREATE TABLE parley_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                INSERT INTO parley_meta (key, value) VALUES ('opened', '1');
                \(inserts)
                """
            #expect(sqlite(path, script) != nil)
            do {
                let store = try SQLiteConversationStore(configuration: .init(path: path, indexIdleSeconds: nil))
                #expect(try store.appliedMigrations() == ["v1: events", "v2: batch-indexed log", "v3: quarantined events"])
                #expect(try store.indexState().watermark == rows.count)
                #expect(try store.indexState().unindexed == 0)
                #expect(try await store.currentSession(of: "a")?.map { $0["event"]?.stringValue ?? "" } == ["restart", "user"])
                #expect(try await store.events(of: "a", types: nil)?.count == 5)
                #expect(try await store.events(of: "b", types: ["bot"])?.first?["text"] == "b!")
                #expect(try await store.currentSession(of: "b")?.count == 2)
                try await store.append([event("user", ["text": "after"])], to: "b")
                #expect(try await store.events(of: "b", types: ["user"])?.map { $0["text"]?.stringValue ?? "" } == ["yo", "after"])
            }
            let indexes = sqlite(path, "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'events%' ORDER BY name;")
            #expect(indexes == "")
            // The migrated rows are indexed; the append after the migration is still in the tail.
            #expect(
                sqlite(path, "SELECT count(*) FROM event_index; SELECT count(*) FROM session_starts; SELECT indexed_through FROM event_index_state;")
                    == "7\n2\n7\n")
        }
    }

    @Test func concurrentAppendsToManyConversationsWhileIndexing() async throws {
        try await withTemporaryDirectory { dir in
            let store = try SQLiteConversationStore(configuration: .init(path: dir + "/parley.db", indexBatchEvents: 97, indexIdleSeconds: 0.01))
            try await withThrowingTaskGroup(of: Void.self) { group in
                for w in 0..<100 {
                    group.addTask {
                        try await store.append([event("session_started")], to: "w\(w)")
                        for i in 0..<15 {
                            try await store.append([event("user", ["n": .int(Int64(i))]), event("bot")], to: "w\(w)")
                            // Reads during writes and indexer runs see a consistent prefix.
                            if i % 5 == 4 {
                                let session = try #require(try await store.currentSession(of: "w\(w)"))
                                #expect(session.count == 1 + 2 * (i + 1))
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
            #expect(try store.indexState().runs > 0)
            for w in 0..<100 {
                let users = try #require(try await store.events(of: "w\(w)", types: ["user"]))
                #expect(users.map { $0["n"]?.int64Value ?? -1 } == (0..<15).map(Int64.init))
                #expect(try await store.currentSession(of: "w\(w)")?.count == 31)
            }
        }
    }
}

/// Runs `script` with the sqlite3 command-line shell on `path`; its output, nil when it fails.
func sqlite(_ path: String, _ script: String) -> String? {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
    p.arguments = [path]
    let input = Pipe()
    let output = Pipe()
    p.standardInput = input
    p.standardOutput = output
    p.standardError = FileHandle.nullDevice
    do { try p.run() } catch { return nil }
    input.fileHandleForWriting.write(Data(script.utf8))
    try? input.fileHandleForWriting.close()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return p.terminationStatus == 0 ? String(decoding: data, as: UTF8.self) : nil
}

/// A small deterministic generator (SplitMix64) for reproducible random sequences.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE5_E9B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Under load (commits holding several appends) the WAL is checkpointed in the background, so no commit waits
/// for it; with one append per commit the writer checkpoints itself. Either way the WAL stays bounded and
/// nothing is lost.
@Suite struct CheckpointTests {
    static let pages = 16

    func walSize(_ path: String) -> Int {
        (try? FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? Int) ?? 0
    }

    @Test func concurrentAppendsCheckpointInTheBackground() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/parley.db"
            do {
                let store = try SQLiteConversationStore(configuration: .init(path: path, walAutocheckpointPages: Self.pages))
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for c in 0..<40 {
                        group.addTask {
                            for i in 0..<10 {
                                try await store.append(
                                    [event("user", ["text": .string(String(repeating: "x", count: 300)), "n": .int(Int64(i))], at: Double(i))], to: "c\(c)")
                            }
                        }
                    }
                    try await group.waitForAll()
                }
                for _ in 0..<400 where store.checkpointRuns == 0 { try await Task.sleep(for: .milliseconds(5)) }
                #expect(store.checkpointRuns > 0)
                #expect(walSize(path) <= Self.pages * 8 * 4096 + 64 * 1024 + 8 * 4096)
            }
            let reopened = try SQLiteConversationStore(configuration: .init(path: path))
            #expect(try reopened.eventCount() == 400)
            #expect(try await reopened.events(of: "c7", types: nil)?.count == 10)
        }
    }

    @Test func oneAppendPerCommitCheckpointsInTheWriter() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/parley.db"
            do {
                let store = try SQLiteConversationStore(configuration: .init(path: path, walAutocheckpointPages: Self.pages))
                for i in 0..<300 {
                    try await store.append(
                        [event("user", ["text": .string(String(repeating: "x", count: 300)), "n": .int(Int64(i))], at: Double(i))], to: "c\(i % 7)")
                }
                #expect(store.checkpointRuns == 0)
                #expect(walSize(path) <= Self.pages * 2 * 4096 + 64 * 1024 + 8 * 4096)
            }
            let reopened = try SQLiteConversationStore(configuration: .init(path: path))
            #expect(try reopened.eventCount() == 300)
        }
    }
}
