import Dispatch
import GRDB
import GRDBSQLite
public import Logging
public import ServiceLifecycle
import ParleyCore
public import ParleyDispatch
public import ParleyJSON
public import ParleyWorkers
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Settings of the embedded SQLite store. Every field has a default.
public struct SQLiteStoreConfiguration: Sendable {
    /// When a commit counts as durable.
    public struct Durability: Sendable, Hashable, CustomStringConvertible {
        enum _Mode: String, Hashable, Sendable { case full = "FULL", normal = "NORMAL" }
        let mode: _Mode
        /// `PRAGMA synchronous = FULL`: every commit is fsynced; survives a crash of the process and of the machine.
        public static let full = Durability(mode: .full)
        /// `PRAGMA synchronous = NORMAL`: survives a crash of the process (`kill -9`), a power loss may drop the
        /// latest commits. Faster on slow disks.
        public static let normal = Durability(mode: .normal)
        /// `FULL` or `NORMAL`.
        public var description: String { mode.rawValue }
    }

    /// The database file; relative paths are relative to the working directory.
    public var path: String
    /// When a turn's events count as written.
    public var durability: Durability
    /// Largest database size in pages (`PRAGMA max_page_count`); nil = SQLite's default (no practical limit).
    /// A write past it fails like a full disk.
    public var maxPageCount: Int?
    /// How long a writer waits for a lock held by another process, in seconds.
    public var busyTimeoutSeconds: Double
    /// Most concurrent appends committed in one transaction (group commit).
    public var maxBatchSize: Int
    /// Unindexed events (the tail of the log) that make the writer index them, in one transaction of its own
    /// (a longer tail, e.g. left by a crash, is indexed this many events per transaction). The store keeps the
    /// tail's ids per conversation in memory, so this bounds that memory; larger batches write fewer index pages.
    public var indexBatchEvents: Int
    /// Seconds without appends after which the writer indexes the tail even when it is shorter than
    /// ``indexBatchEvents``; nil = only by size.
    public var indexIdleSeconds: Double?
    /// WAL size in pages that starts a checkpoint into the database file, in the background (a PASSIVE
    /// checkpoint on a connection of its own, so no commit waits for it); at 8 times this size the committing
    /// connection checkpoints itself. A larger WAL writes a page changed by several commits once per
    /// checkpoint; the WAL file is truncated back to at most this size after a checkpoint
    /// (`PRAGMA journal_size_limit`).
    public var walAutocheckpointPages: Int

    /// Creates a configuration; every parameter has the default documented on its property.
    public init(
        path: String = "parley.db",
        durability: Durability = .full,
        maxPageCount: Int? = nil,
        busyTimeoutSeconds: Double = 5,
        maxBatchSize: Int = 512,
        indexBatchEvents: Int = 32_768,
        indexIdleSeconds: Double? = 1,
        walAutocheckpointPages: Int = 4_096
    ) {
        self.path = path
        self.durability = durability
        self.maxPageCount = maxPageCount
        self.busyTimeoutSeconds = busyTimeoutSeconds
        self.maxBatchSize = maxBatchSize
        self.indexBatchEvents = indexBatchEvents
        self.indexIdleSeconds = indexIdleSeconds
        self.walAutocheckpointPages = walAutocheckpointPages
    }
}

/// Why the store could not open or write its database. The description names the file and the fix.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    /// The kind of failure; compare with the static members (new kinds may be added).
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable { case readOnly, corrupt, cannotOpen, full, newerSchema, other }
        private let base: Base
        private init(_ base: Base) { self.base = base }
        public var description: String { base.rawValue }

        /// The file exists but is not writable.
        public static let readOnly = Code(.readOnly)
        /// The file is not a SQLite database or is damaged.
        public static let corrupt = Code(.corrupt)
        /// The file or its directory cannot be opened or created.
        public static let cannotOpen = Code(.cannotOpen)
        /// The disk (or `maxPageCount`) is full; the write was rolled back.
        public static let full = Code(.full)
        /// The schema was written by a newer Parley.
        public static let newerSchema = Code(.newerSchema)
        /// Any other SQLite error.
        public static let other = Code(.other)
    }

    /// The kind of failure.
    public var code: Code
    /// The database file.
    public var path: String
    /// What happened, naming the file and the fix.
    public var description: String
}

/// The embedded conversation store: SQLite through GRDB, in WAL mode.
///
/// Events are rows `(id, sender_id, type, timestamp, data)` with `data` the event's JSON; `id` orders them.
/// ``append(_:completion:)`` answers only after the transaction holding the events has committed (with
/// ``SQLiteStoreConfiguration/Durability/full``, after the fsync). Appends arriving while a commit is under way
/// wait and are committed together in the next transaction (group commit), so concurrent conversations
/// share fsyncs without weakening durability; if that combined transaction fails, each append is retried in
/// its own transaction so only the appends that really fail report an error, and a failed transaction
/// leaves nothing behind. The schema is versioned with GRDB's `DatabaseMigrator`.
///
/// The table is a log: a commit only appends rows in `id` order, so it dirties the few rightmost pages of
/// the table and nothing else. The per-conversation index (`event_index(sender_id, id)` and
/// `session_starts(sender_id, id)`) is written off the commit path: when the unindexed tail (the events
/// after the watermark `event_index_state.indexed_through`) reaches ``SQLiteStoreConfiguration/indexBatchEvents``
/// rows, or after ``SQLiteStoreConfiguration/indexIdleSeconds`` without appends, the writer indexes the whole
/// tail in one transaction of its own that also moves the watermark. A batch of thousands of events from
/// the same conversations lands on the same index pages, instead of every commit rewriting one index page
/// per conversation. Reads combine the indexed part with a scan of the tail (`id > watermark`), in one read
/// transaction; after a crash the tail is just still unindexed, so nothing is lost and reads stay right.
public final class SQLiteConversationStore: ConversationStore {
    /// The settings it was opened with.
    public let configuration: SQLiteStoreConfiguration
    private let workers: (any BlockingExecutor)?
    private let pool: DatabasePool
    /// Checkpoints the WAL off the commit path.
    private let checkpointer: Checkpointer
    /// Events that could not be read back: skipped by reads, logged once, recorded in `quarantined_events`.
    private let quarantine: Quarantine
    private let writerQueue = DispatchQueue(label: "parley.store.writer")
    private let pending = Mutex(PendingWrites())

    private struct PendingWrite: Sendable {
        let senderID: String
        let rows: [EncodedEvent]
        /// Called once with the outcome of the transaction holding `rows`.
        let done: @Sendable (Result<Void, any Error>) -> Void
    }

    /// An event ready for its row: encoded by the appending task, so the single writer only binds and inserts.
    private struct EncodedEvent: Sendable {
        let type: String
        let timestamp: Double
        /// The event's compact JSON (UTF-8), bound as the `data` text without a copy.
        let data: [UInt8]
    }

    private struct PendingWrites: Sendable {
        var writes: [PendingWrite] = []
        var writing = false
        var commits = 0
        var committedAppends = 0
        /// Why the latest commit failed; nil once a commit succeeds again (``checkHealth()``).
        var lastWriteFailure: String?
        /// ``close()`` has run: appends are refused.
        var closed = false
        /// Committed events not yet indexed (above the watermark), as the writer counts them.
        var unindexed = 0
        /// Index when `unindexed` reaches this (raised after a failed indexer run so it is not retried per commit).
        var indexAt = 0
        /// An idle indexer run is scheduled.
        var idleScheduled = false
        var indexRuns = 0
    }

    /// Where each conversation's unindexed events are: the ids above the watermark, per sender, in order. Reads
    /// fetch those rows by id instead of scanning the tail (a scan per conversation load made opening many
    /// new conversations cost milliseconds each). Filled at open and after each commit, trimmed by the indexer.
    private struct TailIndex: Sendable {
        var watermark = 0
        var ids: [String: [Int64]] = [:]

        /// Records committed ids; ids the indexer already covers are dropped (a commit can finish after an
        /// indexer run that included it).
        mutating func add(_ id: Int64, for sender: String) {
            guard id > watermark else { return }
            ids[sender, default: []].append(id)
        }

        /// Moves the watermark to `last` and forgets the ids it covers.
        mutating func indexed(through last: Int) {
            guard last > watermark else { return }
            watermark = last
            ids = ids.compactMapValues { list in
                let kept = list.filter { $0 > last }
                return kept.isEmpty ? nil : kept
            }
        }
    }
    private let tail = Mutex(TailIndex())

    /// Transactions committed and appends they held since opening (appends / commits = the group-commit batch).
    /// For tests and benchmarks (`@_spi(Testing) import ParleyStore`), not part of the store's API.
    @_spi(Testing) public var commitStatistics: (commits: Int, appends: Int) {
        pending.withLock { ($0.commits, $0.committedAppends) }
    }

    /// The event types that start a session (`currentSession` returns the events from the latest one on).
    static let sessionStartTypes = "('session_started', 'restart')"

    /// Opens (creating if needed) the database and brings its schema up to date.
    ///
    /// - Parameters:
    ///   - workers: the executor turns run on (the dispatcher's). Called from one of its threads, a read runs
    ///     right there and, when nothing else waits, a commit too (instead of two thread hand-offs); nil = reads
    ///     on GRDB's reader queue and every commit on the writer queue.
    /// - Throws: ``StoreError`` naming the file: `.readOnly`, `.corrupt`, `.cannotOpen`, `.newerSchema`.
    public init(
        configuration: SQLiteStoreConfiguration = .init(), workers: (any BlockingExecutor)? = nil,
        logger: Logger = Logger(label: "parley.store")
    ) throws {
        self.configuration = configuration
        self.workers = workers
        self.quarantine = Quarantine(path: configuration.path, logger: logger)
        let path = configuration.path
        var config = Configuration()
        config.busyMode = .timeout(configuration.busyTimeoutSeconds)
        let synchronous = configuration.durability.mode.rawValue
        let maxPages = configuration.maxPageCount
        let walPages = max(1, configuration.walAutocheckpointPages)
        let checkpointer = Checkpointer(path: path, softLimit: walPages, hardLimit: walPages * 8)
        self.checkpointer = checkpointer
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = \(synchronous)")
            if let maxPages { try db.execute(sql: "PRAGMA max_page_count = \(maxPages)") }
            try db.execute(sql: "PRAGMA journal_size_limit = \(walPages * 4096 + 65536)")
            // Replaces the automatic checkpoint (a WAL hook of its own): checkpoints run in the background.
            checkpointer.install(on: db.sqliteConnection!)
        }
        do {
            pool = try DatabasePool(path: path, configuration: config)
            let migrator = Self.migrator
            if try pool.read({ db in try migrator.hasBeenSuperseded(db) }) {
                throw StoreError(
                    code: .newerSchema, path: path,
                    description: "conversation store \(path): its schema was written by a newer Parley; use that version, or set store.path to another file")
            }
            try migrator.migrate(pool)
            // Fail now, not at the first turn, when the file cannot be written.
            try pool.write { db in try db.execute(sql: "UPDATE parley_meta SET value = value WHERE key = 'opened'") }
            // The tail left unindexed by the previous run (a crash, or a stop before the idle indexer ran).
            let left = try pool.read { db -> TailIndex in
                var left = TailIndex()
                left.watermark = try Self.watermark(db)
                let rows = try Row.fetchCursor(db, sql: "SELECT id, sender_id FROM events WHERE id > ? ORDER BY id", arguments: [left.watermark])
                while let row = try rows.next() { left.add(row[0], for: row[1]) }
                return left
            }
            tail.withLock { $0 = left }
            pending.withLock { $0.unindexed = left.ids.values.reduce(0) { $0 + $1.count } }
        } catch {
            throw Self.openError(error, path: path)
        }
        // Index that tail once idle. (Not through `writerQueue.async { self… }`: holding the store there would
        // keep the file open after the owner lets go of it.)
        afterWrites()
    }

    deinit {
        checkpointer.close()
    }

    /// Ends the store cleanly, as the last step of a graceful stop: later appends are refused, the appends
    /// still queued are committed, the unindexed tail is indexed, and the WAL is checkpointed into the database
    /// file and truncated (`PRAGMA wal_checkpoint(TRUNCATE)`), so that `parley.db` alone — without
    /// `parley.db-wal` — holds every event (a backup that copies only the database file is complete). Reads
    /// keep working. Idempotent.
    /// - Throws: ``StoreError`` when the final commit or the checkpoint fails (the events stay in the WAL, where
    ///   the next open finds them).
    public func close() async throws {
        pending.withLock { $0.closed = true }
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            // On the writer queue: after any write loop and idle indexer run already queued there.
            writerQueue.async { [self] in
                // An inline writer (a worker thread committing its own batch) may still be running: wait for it.
                while pending.withLock({ $0.writing }) { usleep(1000) }
                while writeOneBatch() {}
                indexTail()
                do {
                    try pool.writeWithoutTransaction { db in _ = try db.checkpoint(.truncate) }
                    continuation.resume()
                } catch {
                    continuation.resume(throwing: Self.writeError(error, path: configuration.path))
                }
            }
        }
        checkpointer.close()
    }

    /// The schema migrations, in order. Never edit a registered migration: add a new one.
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: events") { db in
            try db.execute(
                sql: """
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
                    """)
        }
        // The events table becomes an append-only log; the per-conversation index moves to tables written in
        // large batches by the writer (see the type's documentation), up to the watermark `indexed_through`.
        migrator.registerMigration("v2: batch-indexed log") { db in
            try db.execute(
                sql: """
                    CREATE TABLE event_index (
                        sender_id TEXT NOT NULL,
                        id INTEGER NOT NULL,
                        PRIMARY KEY (sender_id, id)
                    ) WITHOUT ROWID;
                    CREATE TABLE session_starts (
                        sender_id TEXT NOT NULL,
                        id INTEGER NOT NULL,
                        PRIMARY KEY (sender_id, id)
                    ) WITHOUT ROWID;
                    CREATE TABLE event_index_state (
                        singleton INTEGER PRIMARY KEY CHECK (singleton = 0),
                        indexed_through INTEGER NOT NULL
                    );
                    INSERT INTO event_index (sender_id, id) SELECT sender_id, id FROM events ORDER BY sender_id, id;
                    INSERT INTO session_starts (sender_id, id)
                        SELECT sender_id, id FROM events WHERE type IN \(sessionStartTypes) ORDER BY sender_id, id;
                    INSERT INTO event_index_state (singleton, indexed_through) VALUES (0, coalesce((SELECT max(id) FROM events), 0));
                    DROP INDEX events_by_sender;
                    DROP INDEX events_session_starts;
                    """)
        }
        // Events that could not be read back (for example JSON nested deeper than the reader accepts, written by
        // an older version that did not limit input): reads skip them and the store records them here once; the
        // event's bytes stay in `events` for an operator.
        migrator.registerMigration("v3: quarantined events") { db in
            try db.execute(
                sql: """
                    CREATE TABLE quarantined_events (
                        id INTEGER PRIMARY KEY,
                        sender_id TEXT NOT NULL,
                        reason TEXT NOT NULL,
                        quarantined_at REAL NOT NULL
                    );
                    """)
        }
        return migrator
    }

    /// The events reads have skipped because they could not be read: `(id, sender_id, reason)`, oldest first.
    public func quarantinedEvents() throws -> [(id: Int64, senderID: String, reason: String)] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT id, sender_id, reason FROM quarantined_events ORDER BY id").map { ($0[0], $0[1], $0[2]) }
        }
    }

    /// Records newly found unreadable events in `quarantined_events`, on the writer queue (off the read path).
    private func recordQuarantine() {
        let found = quarantine.takeUnrecorded()
        guard !found.isEmpty else { return }
        writerQueue.async { [pool] in
            try? pool.write { db in
                for f in found {
                    try db.execute(
                        sql: "INSERT OR IGNORE INTO quarantined_events (id, sender_id, reason, quarantined_at) VALUES (?, ?, ?, julianday('now'))",
                        arguments: [f.id, f.senderID, f.reason])
                }
            }
        }
    }

    /// The names of the applied schema migrations (for tests: `@_spi(Testing) import ParleyStore`).
    @_spi(Testing) public func appliedMigrations() throws -> [String] {
        try pool.read { db in try Array(Self.migrator.appliedIdentifiers(db)).sorted() }
    }

    // MARK: - Reads

    public func currentSession(of senderID: String) async throws -> [JSONValue]? {
        let (watermark, tailIDs) = tail.withLock { ($0.watermark, $0.ids[senderID] ?? []) }
        let quarantine = self.quarantine
        return try await read { db in
            // The tail first: a session start there makes the indexed part irrelevant.
            let tail = try Self.tailEvents(db, ids: tailIDs, typeFilter: nil)
            if let start = tail.lastIndex(where: { $0.start }) {
                return tail[start...].compactMap { quarantine.decode($0.data, id: $0.id, senderID: senderID) }
            }
            let latestStart = try db.cachedStatement(sql: "SELECT max(id) FROM session_starts WHERE sender_id = ?1 AND id <= ?2")
            let start = try Int.fetchOne(latestStart, arguments: [senderID, watermark]) ?? 0
            var events = try Self.indexedEvents(db, senderID: senderID, from: start, through: watermark, typeFilter: nil, quarantine: quarantine)
            for row in tail { if let event = quarantine.decode(row.data, id: row.id, senderID: senderID) { events.append(event) } }
            // A stored conversation has at least the event its session starts with (unless it was quarantined).
            if events.isEmpty && (start > 0 || !tail.isEmpty) { return [] }
            return events.isEmpty ? nil : events
        }
    }

    /// Healthy when the file can be read and the latest commit did not fail (a full disk or a read-only file
    /// makes every commit fail while reads still work).
    public func checkHealth() async throws {
        if let failure = pending.withLock({ $0.lastWriteFailure }) {
            throw StoreError(code: .other, path: configuration.path, description: "the latest commit failed: \(failure)")
        }
        _ = try await read { db in
            _ = try Int.fetchOne(db, sql: "SELECT count(*) FROM sqlite_master")
            return nil
        }
    }

    public func events(of senderID: String, types: Set<String>?) async throws -> [JSONValue]? {
        let typeFilter: String? = types.map { types in
            // Event type names are plain identifiers; anything else cannot match a stored type.
            let names = types.filter {
                !$0.isEmpty && $0.utf8.allSatisfy { $0 == UInt8(ascii: "_") || (0x30...0x39).contains($0) || (0x61...0x7A).contains($0) }
            }
            let list = names.sorted().map { "'\($0)'" }.joined(separator: ", ")
            return "(\(list.isEmpty ? "NULL" : list))"
        }
        let (watermark, tailIDs) = tail.withLock { ($0.watermark, $0.ids[senderID] ?? []) }
        let quarantine = self.quarantine
        return try await read { db in
            var events = try Self.indexedEvents(db, senderID: senderID, from: 0, through: watermark, typeFilter: typeFilter, quarantine: quarantine)
            for row in try Self.tailEvents(db, ids: tailIDs, typeFilter: types) {
                if let event = quarantine.decode(row.data, id: row.id, senderID: senderID) { events.append(event) }
            }
            if events.isEmpty {
                let indexed =
                    try Bool.fetchOne(
                        db, sql: "SELECT EXISTS(SELECT 1 FROM event_index WHERE sender_id = ?1 AND id <= ?2)", arguments: [senderID, watermark])
                    ?? false
                let exists = !tailIDs.isEmpty || indexed
                return exists ? [] : nil
            }
            return events
        }
    }

    /// The unindexed events with the given ids (one conversation's, from the in-memory tail index), in order:
    /// whether each starts a session, and its JSON text; only types in `typeFilter` when given.
    private static func tailEvents(_ db: Database, ids: [Int64], typeFilter: Set<String>?) throws -> [(id: Int64, start: Bool, data: String)] {
        guard !ids.isEmpty else { return [] }
        let statement = try db.cachedStatement(sql: "SELECT type, data FROM events WHERE id = ?")
        var out: [(id: Int64, start: Bool, data: String)] = []
        out.reserveCapacity(ids.count)
        for id in ids {
            guard let row = try Row.fetchOne(statement, arguments: [id]) else { continue }
            let type: String = row[0]
            if let typeFilter, !typeFilter.contains(type) { continue }
            let data: String = row[1]
            out.append((id, type == "session_started" || type == "restart", data))
        }
        return out
    }

    /// The last indexed event id: `event_index` and `session_starts` hold every event up to it, none after.
    private static func watermark(_ db: Database) throws -> Int {
        try Int.fetchOne(db, sql: "SELECT indexed_through FROM event_index_state") ?? 0
    }

    /// The indexed events of `senderID` from id `from` on, in order, only those whose type is in `typeFilter` (an SQL list).
    private static func indexedEvents(
        _ db: Database, senderID: String, from: Int, through: Int, typeFilter: String?, quarantine: Quarantine
    ) throws -> [JSONValue] {
        // CROSS JOIN keeps event_index as the outer loop: one index range, then a rowid lookup per event.
        // Cached: a conversation load (every new conversation) must not parse SQL each time.
        let statement = try db.cachedStatement(
            sql: """
                SELECT e.id, e.data FROM event_index i CROSS JOIN events e ON e.id = i.id
                WHERE i.sender_id = ?1 AND i.id >= ?2 AND i.id <= ?3 \(typeFilter.map { "AND e.type IN \($0)" } ?? "") ORDER BY i.id
                """)
        let rows = try Row.fetchCursor(statement, arguments: [senderID, from, through])
        var events: [JSONValue] = []
        while let row = try rows.next() {
            if let event = quarantine.decode(row[1], id: row[0], senderID: senderID) { events.append(event) }
        }
        return events
    }

    /// Runs `body` in a read transaction (one snapshot: the watermark and both parts agree).
    private func read(_ body: @escaping @Sendable (Database) throws -> [JSONValue]?) async throws -> [JSONValue]? {
        let path = configuration.path
        do {
            // On a worker thread (a turn loading its conversation), read right here: a few indexed lookups cost
            // less than two thread hand-offs to GRDB's reader queue and back.
            defer { recordQuarantine() }
            if let workers, workers.isCurrentThreadWorker {
                return try workers.runBlocking(long: false) { try pool.read(body) }
            }
            return try await pool.read(body)
        } catch {
            throw Self.writeError(error, path: path)
        }
    }

    /// Number of stored events (for tests: `@_spi(Testing) import ParleyStore`).
    @_spi(Testing) public func eventCount() throws -> Int {
        try pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM events") ?? 0 }
    }

    // MARK: - Group-committed writes

    /// Queues the record for the group-committing writer; `completion` runs once its transaction has ended
    /// (see ``ConversationStore/append(_:completion:)``).
    public func append(_ record: TurnRecord, completion: @escaping @Sendable (Result<Void, any Error>) -> Void) {
        guard !record.isEmpty else { return completion(.success(())) }
        var rows: [EncodedEvent] = []
        rows.reserveCapacity(record.events.count)
        for (event, text) in zip(record.events, record.encoded) {
            rows.append(EncodedEvent(type: TrackerEvent.kind(of: event) ?? "", timestamp: event["timestamp"]?.doubleValue ?? 0, data: text))
        }
        enqueue(rows, to: record.senderID, done: completion)
    }

    /// Queues `rows` for the group-committing writer; `done` gets the outcome once their transaction ends.
    private func enqueue(_ rows: [EncodedEvent], to senderID: String, done: @escaping @Sendable (Result<Void, any Error>) -> Void) {
        let startWriter: Bool? = pending.withLock { p in
            if p.closed { return nil }
            p.writes.append(PendingWrite(senderID: senderID, rows: rows, done: done))
            if p.writing { return false }
            p.writing = true
            return true
        }
        guard let startWriter else {
            done(
                .failure(
                    StoreError(
                        code: .other, path: configuration.path,
                        description: "conversation store \(configuration.path): closed (the server is stopping); the turn was not recorded")))
            return
        }
        guard startWriter else { return }
        if let workers, workers.isCurrentThreadWorker, !workers.hasQueuedWork {
            // Called from a turn on the dispatcher's worker pool with nothing else waiting: this thread commits
            // the batch itself instead of waking a writer thread and being woken again (a latency win when
            // turns come one at a time). Under load the writer queue commits, so that appends arriving
            // during one fsync share the next (group commit). Later batches go to the writer queue.
            let more = workers.runBlocking(long: true) { () -> Bool in
                _ = writeOneBatch()
                return pending.withLock { p in
                    if p.writes.isEmpty { p.writing = false }
                    return p.writing
                }
            }
            if more { writerQueue.async { self.writeLoop() } } else { afterWrites() }
        } else {
            writerQueue.async { self.writeLoop() }
        }
    }

    /// Commits pending appends, a batch per transaction, until none is left. Runs on `writerQueue` (or, for
    /// one batch, on the thread that started the writer; see `enqueue(_:to:done:)`), one writer at a time.
    private func writeLoop() {
        while writeOneBatch() {}
        afterWrites()
    }

    /// Commits one batch of pending appends and answers them; false (and the writer stopped) when none was pending.
    private func writeOneBatch() -> Bool {
        let maxBatch = max(1, configuration.maxBatchSize)
        do {
            let batch: [PendingWrite] = pending.withLock { p in
                guard !p.writes.isEmpty else {
                    p.writing = false
                    return []
                }
                let n = min(maxBatch, p.writes.count)
                let batch = Array(p.writes.prefix(n))
                p.writes.removeFirst(n)
                return batch
            }
            if batch.isEmpty { return false }
            checkpointer.recordBatch(batch.count)
            var committedRows = 0
            do {
                let started = ContinuousClock.now
                try commit(batch)
                ConversationStoreMetrics.committed(
                    appends: batch.count, bytes: batch.reduce(0) { $0 + $1.rows.reduce(0) { $0 + $1.data.count } },
                    after: ContinuousClock.now - started)
                pending.withLock {
                    $0.commits += 1
                    $0.committedAppends += batch.count
                    $0.lastWriteFailure = nil
                }
                for w in batch { w.done(.success(())) }
                committedRows = batch.reduce(0) { $0 + $1.rows.count }
            } catch  where batch.count > 1 {
                // Find which appends fail on their own; the others still get written.
                for w in batch {
                    do {
                        try commit([w])
                        pending.withLock { $0.lastWriteFailure = nil }
                        w.done(.success(()))
                        committedRows += w.rows.count
                    } catch {
                        let failure = Self.writeError(error, path: configuration.path)
                        ConversationStoreMetrics.commitFailed()
                        pending.withLock { $0.lastWriteFailure = failure.description }
                        w.done(.failure(failure))
                    }
                }
            } catch {
                let failure = Self.writeError(error, path: configuration.path)
                ConversationStoreMetrics.commitFailed()
                pending.withLock { $0.lastWriteFailure = failure.description }
                batch[0].done(.failure(failure))
            }
            // Index the tail once it is long enough: after the appends above were answered, before the next batch.
            let due = pending.withLock { p in
                p.unindexed += committedRows
                return p.unindexed >= max(p.indexAt, max(1, configuration.indexBatchEvents))
            }
            if due { indexTail(limit: max(1, configuration.indexBatchEvents)) }
        }
        return true
    }

    /// When the writer goes idle with an unindexed tail: index it after `indexIdleSeconds` without appends.
    /// Touches only `pending`; the scheduled check holds the store weakly.
    private func afterWrites() {
        guard let idle = configuration.indexIdleSeconds else { return }
        let schedule = pending.withLock { p in
            guard p.unindexed > 0, !p.idleScheduled else { return false }
            p.idleScheduled = true
            return true
        }
        guard schedule else { return }
        let commits = commitStatistics.commits
        writerQueue.asyncAfter(deadline: .now() + max(0, idle)) { [weak self] in
            self?.idleCheck(commitsWhenScheduled: commits)
        }
    }

    private func idleCheck(commitsWhenScheduled: Int) {
        let idle = pending.withLock { p in
            p.idleScheduled = false
            // Writes under way or since scheduling: not idle; the write loop schedules again when it ends.
            return p.writes.isEmpty && !p.writing && p.commits == commitsWhenScheduled
        }
        if idle {
            indexTail()
        } else if pending.withLock({ !$0.writing }) {
            afterWrites()
        }
    }

    /// Indexes every committed event after the watermark, a chunk per transaction.
    func indexTail() {
        while indexTail(limit: max(1, configuration.indexBatchEvents)) {}
    }

    /// Indexes the committed events after the watermark, at most `limit` ids' worth, and moves the watermark, in
    /// one transaction; true when events remain unindexed. Runs in the writer only (one writer at a time). A
    /// failure (a full disk) leaves the tail unindexed; reads stay right.
    @discardableResult
    func indexTail(limit: Int) -> Bool {
        do {
            let moved = try pool.write { db -> (from: Int, through: Int, end: Int)? in
                let watermark = try Self.watermark(db)
                guard let end = try Int.fetchOne(db, sql: "SELECT max(id) FROM events"), end > watermark else { return nil }
                let last = end - watermark <= limit ? end : watermark + limit
                try db.execute(
                    sql: "INSERT INTO event_index (sender_id, id) SELECT sender_id, id FROM events WHERE id > ?1 AND id <= ?2 ORDER BY sender_id, id",
                    arguments: [watermark, last])
                try db.execute(
                    sql: """
                        INSERT INTO session_starts (sender_id, id) SELECT sender_id, id FROM events
                        WHERE id > ?1 AND id <= ?2 AND type IN \(Self.sessionStartTypes) ORDER BY sender_id, id
                        """,
                    arguments: [watermark, last])
                try db.execute(sql: "UPDATE event_index_state SET indexed_through = ?", arguments: [last])
                return (watermark, last, end)
            }
            guard let moved else {
                pending.withLock {
                    $0.unindexed = 0
                    $0.indexAt = 0
                }
                return false
            }
            tail.withLock { $0.indexed(through: moved.through) }
            pending.withLock {
                $0.unindexed = max(0, $0.unindexed - (moved.through - moved.from))
                if moved.through == moved.end { $0.unindexed = 0 }
                $0.indexAt = 0
                $0.indexRuns += 1
            }
            return moved.through < moved.end
        } catch {
            // Retry after another batch's worth of events rather than at every commit.
            let batch = max(1, configuration.indexBatchEvents)
            pending.withLock { p in
                let (next, overflow) = p.unindexed.addingReportingOverflow(batch)
                p.indexAt = overflow ? .max : next
            }
            return false
        }
    }

    /// Background checkpoints run since opening (for tests).
    var checkpointRuns: Int { checkpointer.checkpointRuns }

    /// The watermark, the unindexed events the writer counts, and the indexer runs since opening (for tests).
    func indexState() throws -> (watermark: Int, unindexed: Int, runs: Int) {
        let watermark = try pool.read { db in try Self.watermark(db) }
        return pending.withLock { (watermark, $0.unindexed, $0.indexRuns) }
    }

    /// Runs the indexer now on the writer queue and waits for it (for tests).
    func indexNow() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            writerQueue.async {
                self.indexTail()
                continuation.resume()
            }
        }
    }

    /// Inserts the batch's rows in one transaction. The statement is GRDB's, stepped through the SQLite C API so
    /// the JSON bytes are bound where they are (no `String`, no copy by SQLite: `SQLITE_STATIC` while stepping).
    private func commit(_ batch: [PendingWrite]) throws {
        let inserted = try pool.write { db -> [(String, Int64)] in
            var inserted: [(String, Int64)] = []
            let statement = try db.cachedStatement(sql: "INSERT INTO events (sender_id, type, timestamp, data) VALUES (?, ?, ?, ?)")
            let raw = statement.sqliteStatement
            defer {
                sqlite3_reset(raw)
                sqlite3_clear_bindings(raw)
            }
            for w in batch {
                var sender = w.senderID
                try sender.withUTF8 { senderBytes in
                    try Self.check(Self.bindText(raw, 1, senderBytes), db)
                    for row in w.rows {
                        var type = row.type
                        try type.withUTF8 { typeBytes in
                            try Self.check(Self.bindText(raw, 2, typeBytes), db)
                            try Self.check(sqlite3_bind_double(raw, 3, row.timestamp), db)
                            try row.data.withUnsafeBufferPointer { dataBytes in
                                try Self.check(Self.bindText(raw, 4, dataBytes), db)
                                let code = sqlite3_step(raw)
                                guard code == SQLITE_DONE else {
                                    let message = String(cString: sqlite3_errmsg(db.sqliteConnection))
                                    sqlite3_reset(raw)
                                    throw DatabaseError(resultCode: ResultCode(rawValue: code), message: message, sql: statement.sql)
                                }
                                sqlite3_reset(raw)
                                inserted.append((w.senderID, sqlite3_last_insert_rowid(db.sqliteConnection)))
                            }
                        }
                    }
                }
            }
            return inserted
        }
        // Committed: reads find these rows through the tail index from now on.
        tail.withLock { t in for (sender, id) in inserted { t.add(id, for: sender) } }
    }

    /// A pointer to an empty C string that lives as long as the process (an empty buffer has no base address).
    nonisolated(unsafe) private static let emptyText: UnsafeMutablePointer<CChar> = {
        let p = UnsafeMutablePointer<CChar>.allocate(capacity: 1)
        p.pointee = 0
        return p
    }()

    /// Binds UTF-8 bytes as TEXT without a copy: the bytes must stay valid until the statement is stepped and reset.
    private static func bindText(_ statement: SQLiteStatement, _ index: Int32, _ bytes: UnsafeBufferPointer<UInt8>) -> Int32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return sqlite3_bind_text(statement, index, emptyText, 0, nil) }
        return UnsafeRawPointer(base).withMemoryRebound(to: CChar.self, capacity: bytes.count) {
            sqlite3_bind_text(statement, index, $0, Int32(bytes.count), nil)
        }
    }

    private static func check(_ code: Int32, _ db: Database) throws {
        guard code == SQLITE_OK else {
            throw DatabaseError(resultCode: ResultCode(rawValue: code), message: String(cString: sqlite3_errmsg(db.sqliteConnection)))
        }
    }

    // MARK: - Errors

    static func openError(_ error: any Error, path: String) -> StoreError {
        if let e = error as? StoreError { return e }
        guard let db = error as? DatabaseError else {
            return StoreError(code: .other, path: path, description: "conversation store \(path): \(error)")
        }
        let detail = db.message ?? "\(db.resultCode)"
        switch db.resultCode.primaryResultCode {
        case .SQLITE_NOTADB, .SQLITE_CORRUPT:
            return StoreError(
                code: .corrupt, path: path,
                description:
                    "conversation store \(path): the file is not a SQLite database or is damaged (\(detail)); move it away to start empty, or set store.path to another file"
            )
        case .SQLITE_READONLY, .SQLITE_PERM, .SQLITE_AUTH:
            return StoreError(
                code: .readOnly, path: path,
                description:
                    "conversation store \(path): the file is read-only (\(detail)); make it and its directory writable, or set store.path to a writable file")
        case .SQLITE_CANTOPEN:
            if access(path, F_OK) == 0 {
                return StoreError(
                    code: .readOnly, path: path,
                    description:
                        "conversation store \(path): the file cannot be opened for writing (\(detail)); make it and its directory writable, or set store.path to a writable file"
                )
            }
            return StoreError(
                code: .cannotOpen, path: path,
                description:
                    "conversation store \(path): cannot create the file (\(detail)); check that the directory exists and is writable, or set store.path")
        case .SQLITE_FULL:
            return StoreError(code: .full, path: path, description: "conversation store \(path): disk full (\(detail)); free space on the disk")
        default:
            if detail.contains("unknown migration") || detail.contains("newer") {
                return StoreError(
                    code: .newerSchema, path: path,
                    description: "conversation store \(path): written by a newer Parley (\(detail)); use that version or another file")
            }
            return StoreError(code: .other, path: path, description: "conversation store \(path): \(detail)")
        }
    }

    static func writeError(_ error: any Error, path: String) -> StoreError {
        if let e = error as? StoreError { return e }
        if let db = error as? DatabaseError, db.resultCode.primaryResultCode == .SQLITE_FULL {
            return StoreError(
                code: .full, path: path,
                description:
                    "conversation store \(path): disk full, the turn was not recorded (nothing of it was written); free space on the disk or raise store.maxPageCount"
            )
        }
        return openError(error, path: path)
    }
}

/// The store as a service of the server's `ServiceGroup`: it runs until the graceful shutdown reaches it —
/// listed first, it is the last service to stop, after the dispatcher has finished every turn — and then
/// ``SQLiteConversationStore/close()`` checkpoints the WAL into the database file.
extension SQLiteConversationStore: Service {
    public func run() async throws {
        try? await gracefulShutdown()
        try await close()
    }
}

extension SQLiteConversationStore {
    /// What ``backup(from:to:)`` copied.
    public struct BackupSummary: Sendable {
        /// Events in the copy.
        public var events: Int
        /// Conversations in the copy.
        public var conversations: Int
        /// Size of the copy in bytes.
        public var bytes: Int
    }

    /// Copies the store at `source` to a new database file at `destination` with SQLite's online backup API,
    /// while a server may be writing to `source`: the copy holds every event committed when the backup's read
    /// transaction started, consistently (whole turns only), in one self-contained file (no `-wal` beside it).
    /// The copy is checked (`PRAGMA quick_check`) before this returns.
    /// - Throws: ``StoreError`` naming the file: `source` missing or not a Parley store, `destination` existing
    ///   or not writable, a damaged copy.
    public static func backup(from source: String, to destination: String) throws -> BackupSummary {
        guard FileManagerShim.exists(source) else {
            throw StoreError(
                code: .cannotOpen, path: source,
                description: "conversation store \(source): no such file; give the store.path of the running server (or --config)")
        }
        guard !FileManagerShim.exists(destination) else {
            throw StoreError(
                code: .cannotOpen, path: destination, description: "backup \(destination): the file exists; choose a new file name (a backup never overwrites)")
        }
        do {
            var readOnly = Configuration()
            readOnly.readonly = true
            readOnly.busyMode = .timeout(5)
            let from = try DatabaseQueue(path: source, configuration: readOnly)
            let hasEvents = try from.read { db in try db.tableExists("events") }
            guard hasEvents else {
                throw StoreError(code: .corrupt, path: source, description: "conversation store \(source): not a Parley store (no events table)")
            }
            let to = try DatabaseQueue(path: destination)
            try from.backup(to: to)
            // The source's WAL mode came with its pages; the copy is a single file.
            try to.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA journal_mode = DELETE") }
            let summary = try to.read { db -> BackupSummary in
                let check = try String.fetchOne(db, sql: "PRAGMA quick_check") ?? "?"
                guard check == "ok" else {
                    throw StoreError(code: .corrupt, path: destination, description: "backup \(destination): the copy failed its check (\(check)); try again")
                }
                let events = try Int.fetchOne(db, sql: "SELECT count(*) FROM events") ?? 0
                let conversations = try Int.fetchOne(db, sql: "SELECT count(DISTINCT sender_id) FROM events") ?? 0
                return BackupSummary(events: events, conversations: conversations, bytes: 0)
            }
            try to.close()
            try from.close()
            return BackupSummary(events: summary.events, conversations: summary.conversations, bytes: FileManagerShim.size(destination))
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError(code: .other, path: destination, description: "backup of \(source) to \(destination): \(error)")
        }
    }
}

/// File checks without Foundation's FileManager (this target keeps Foundation off the hot path).
enum FileManagerShim {
    static func exists(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0
    }

    static func size(_ path: String) -> Int {
        var info = stat()
        return stat(path, &info) == 0 ? Int(info.st_size) : 0
    }
}

/// Events that cannot be read back. A conversation must never become unusable because one stored event cannot
/// be parsed (JSON nested deeper than the reader's limit, bytes damaged on disk): reads skip such an event, the
/// first time it is met it is logged (conversation, event id, reason) and queued for the `quarantined_events`
/// table, and the conversation goes on with its readable events. Shared by reads on any thread (`Mutex`).
final class Quarantine: Sendable {
    struct Found: Sendable {
        let id: Int64
        let senderID: String
        let reason: String
    }

    /// The JSON nesting the store reads back. Every writer into the store is limited well below it (input at the
    /// edge, plugin replies), so only events written without those limits can exceed it.
    static let readDepth = 512

    private let path: String
    private let logger: Logger
    private let state = Mutex<(seen: Set<Int64>, unrecorded: [Found])>(([], []))

    init(path: String, logger: Logger) {
        self.path = path
        self.logger = logger
    }

    /// The event stored as `text`, or nil (and reported once) when it cannot be parsed.
    func decode(_ text: String, id: Int64, senderID: String) -> JSONValue? {
        do {
            return try JSONValue.parse(text, maxDepth: Self.readDepth)
        } catch {
            let first = state.withLock { s in
                guard s.seen.insert(id).inserted else { return false }
                s.unrecorded.append(Found(id: id, senderID: senderID, reason: "\(error)"))
                return true
            }
            if first {
                ConversationStoreMetrics.eventQuarantined()
                logger.error(
                    "conversation store: an event cannot be read and is skipped (quarantined); the conversation goes on without it",
                    metadata: ["store": "\(path)", "sender_id": "\(senderID)", "event_id": "\(id)", "error": "\(error)"])
            }
            return nil
        }
    }

    /// The events found since the last call, to record.
    func takeUnrecorded() -> [Found] {
        state.withLock { s in
            defer { s.unrecorded = [] }
            return s.unrecorded
        }
    }
}
