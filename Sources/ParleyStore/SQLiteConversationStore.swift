import Dispatch
import GRDB
import ParleyCore
public import ParleyDispatch
public import ParleyJSON
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

    /// Creates a configuration; every parameter has the default documented on its property.
    public init(
        path: String = "parley.db",
        durability: Durability = .full,
        maxPageCount: Int? = nil,
        busyTimeoutSeconds: Double = 5,
        maxBatchSize: Int = 512
    ) {
        self.path = path
        self.durability = durability
        self.maxPageCount = maxPageCount
        self.busyTimeoutSeconds = busyTimeoutSeconds
        self.maxBatchSize = maxBatchSize
    }
}

/// Why the store could not open or write its database. The description names the file and the fix.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    /// The kind of failure.
    public enum Code: Sendable, Hashable {
        /// The file exists but is not writable.
        case readOnly
        /// The file is not a SQLite database or is damaged.
        case corrupt
        /// The file or its directory cannot be opened or created.
        case cannotOpen
        /// The disk (or `maxPageCount`) is full; the write was rolled back.
        case full
        /// The schema was written by a newer Parley.
        case newerSchema
        /// Any other SQLite error.
        case other
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
/// ``append(_:to:)`` returns only after the transaction holding the events has committed (with
/// ``SQLiteStoreConfiguration/Durability/full``, after the fsync). Appends arriving while a commit is under way
/// wait and are committed together in the next transaction (group commit), so concurrent conversations
/// share fsyncs without weakening durability; if that combined transaction fails, each append is retried in
/// its own transaction so only the appends that really fail report an error, and a failed transaction
/// leaves nothing behind. The schema is versioned with GRDB's `DatabaseMigrator`.
public final class SQLiteConversationStore: ConversationStore {
    /// The settings it was opened with.
    public let configuration: SQLiteStoreConfiguration
    private let pool: DatabasePool
    private let writerQueue = DispatchQueue(label: "parley.store.writer")
    private let pending = Mutex(PendingWrites())

    private struct PendingWrite: Sendable {
        let senderID: String
        let rows: [EncodedEvent]
        let continuation: CheckedContinuation<Void, any Error>
    }

    /// An event ready for its row: encoded by the appending task, so the single writer only binds and inserts.
    private struct EncodedEvent: Sendable {
        let type: String
        let timestamp: Double
        let data: String
    }

    private struct PendingWrites: Sendable {
        var writes: [PendingWrite] = []
        var writing = false
        var commits = 0
        var committedAppends = 0
    }

    /// Transactions committed and appends they held since opening (appends / commits = the group-commit batch).
    public var commitStatistics: (commits: Int, appends: Int) {
        pending.withLock { ($0.commits, $0.committedAppends) }
    }

    /// Opens (creating if needed) the database and brings its schema up to date.
    /// - Throws: ``StoreError`` naming the file: `.readOnly`, `.corrupt`, `.cannotOpen`, `.newerSchema`.
    public init(configuration: SQLiteStoreConfiguration = .init()) throws {
        self.configuration = configuration
        let path = configuration.path
        var config = Configuration()
        config.busyMode = .timeout(configuration.busyTimeoutSeconds)
        let synchronous = configuration.durability.mode.rawValue
        let maxPages = configuration.maxPageCount
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = \(synchronous)")
            if let maxPages { try db.execute(sql: "PRAGMA max_page_count = \(maxPages)") }
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
        } catch {
            throw Self.openError(error, path: path)
        }
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
        return migrator
    }

    /// The names of the applied schema migrations.
    public func appliedMigrations() throws -> [String] {
        try pool.read { db in try Array(Self.migrator.appliedIdentifiers(db)).sorted() }
    }

    // MARK: - Reads

    public func currentSession(of senderID: String) async throws -> [JSONValue]? {
        try await read(
            sql: """
                SELECT data FROM events WHERE sender_id = ?1 AND id >= coalesce(
                    (SELECT max(id) FROM events WHERE sender_id = ?1 AND type IN ('session_started', 'restart')), 0)
                ORDER BY id
                """,
            senderID: senderID, types: nil)
    }

    public func events(of senderID: String, types: Set<String>?) async throws -> [JSONValue]? {
        guard let types else {
            return try await read(sql: "SELECT data FROM events WHERE sender_id = ?1 ORDER BY id", senderID: senderID, types: nil)
        }
        // Event type names are plain identifiers; anything else cannot match a stored type.
        let names = types.filter { !$0.isEmpty && $0.utf8.allSatisfy { $0 == UInt8(ascii: "_") || (0x30...0x39).contains($0) || (0x61...0x7A).contains($0) } }
        let list = names.sorted().map { "'\($0)'" }.joined(separator: ", ")
        return try await read(
            sql: "SELECT data FROM events WHERE sender_id = ?1 AND type IN (\(list.isEmpty ? "NULL" : list)) ORDER BY id",
            senderID: senderID, types: nil)
    }

    private func read(sql: String, senderID: String, types: Set<String>?) async throws -> [JSONValue]? {
        let path = configuration.path
        do {
            return try await pool.read { db -> [JSONValue]? in
                let rows = try Row.fetchCursor(db, sql: sql, arguments: [senderID])
                var events: [JSONValue] = []
                while let row = try rows.next() {
                    if let types {
                        let type: String = row[1]
                        guard types.contains(type) else { continue }
                    }
                    let text: String = row[0]
                    events.append(try JSONValue.parse(text))
                }
                if events.isEmpty {
                    let exists = try Bool.fetchOne(db, sql: "SELECT EXISTS(SELECT 1 FROM events WHERE sender_id = ?)", arguments: [senderID]) ?? false
                    return exists ? [] : nil
                }
                return events
            }
        } catch {
            throw Self.writeError(error, path: path)
        }
    }

    /// Number of stored events.
    public func eventCount() throws -> Int {
        try pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM events") ?? 0 }
    }

    // MARK: - Group-committed writes

    public func append(_ events: [JSONValue], to senderID: String) async throws {
        guard !events.isEmpty else { return }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(512)
        let rows = events.map { event in
            buffer.removeAll(keepingCapacity: true)
            event.serialize(into: &buffer)
            return EncodedEvent(
                type: TrackerEvent.kind(of: event) ?? "", timestamp: event["timestamp"]?.doubleValue ?? 0,
                data: String(decoding: buffer, as: UTF8.self))
        }
        try await enqueue(rows, to: senderID)
    }

    /// ``append(_:to:)`` writing the events' JSON text the caller already has (`encoded[i]` = `events[i]`'s bytes).
    public func append(_ events: [JSONValue], encoded: [[UInt8]], to senderID: String) async throws {
        guard !events.isEmpty else { return }
        guard encoded.count == events.count else { return try await append(events, to: senderID) }
        var rows: [EncodedEvent] = []
        rows.reserveCapacity(events.count)
        for (event, text) in zip(events, encoded) {
            rows.append(
                EncodedEvent(
                    type: TrackerEvent.kind(of: event) ?? "", timestamp: event["timestamp"]?.doubleValue ?? 0,
                    data: String(decoding: text, as: UTF8.self)))
        }
        try await enqueue(rows, to: senderID)
    }

    /// Queues `rows` for the group-committing writer and returns once their transaction has committed.
    private func enqueue(_ rows: [EncodedEvent], to senderID: String) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let startWriter = pending.withLock { p in
                p.writes.append(PendingWrite(senderID: senderID, rows: rows, continuation: continuation))
                if p.writing { return false }
                p.writing = true
                return true
            }
            if startWriter { writerQueue.async { self.writeLoop() } }
        }
    }

    /// Commits pending appends, a batch per transaction, until none is left. Runs on `writerQueue` only.
    private func writeLoop() {
        let maxBatch = max(1, configuration.maxBatchSize)
        while true {
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
            if batch.isEmpty { return }
            do {
                try commit(batch)
                pending.withLock {
                    $0.commits += 1
                    $0.committedAppends += batch.count
                }
                for w in batch { w.continuation.resume() }
            } catch where batch.count > 1 {
                // Find which appends fail on their own; the others still get written.
                for w in batch {
                    do {
                        try commit([w])
                        w.continuation.resume()
                    } catch {
                        w.continuation.resume(throwing: Self.writeError(error, path: configuration.path))
                    }
                }
            } catch {
                batch[0].continuation.resume(throwing: Self.writeError(error, path: configuration.path))
            }
        }
    }

    private func commit(_ batch: [PendingWrite]) throws {
        try pool.write { db in
            let insert = try db.cachedStatement(sql: "INSERT INTO events (sender_id, type, timestamp, data) VALUES (?, ?, ?, ?)")
            for w in batch {
                for row in w.rows {
                    try insert.execute(arguments: [w.senderID, row.type, row.timestamp, row.data])
                }
            }
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
                description: "conversation store \(path): the file is not a SQLite database or is damaged (\(detail)); move it away to start empty, or set store.path to another file")
        case .SQLITE_READONLY, .SQLITE_PERM, .SQLITE_AUTH:
            return StoreError(
                code: .readOnly, path: path,
                description: "conversation store \(path): the file is read-only (\(detail)); make it and its directory writable, or set store.path to a writable file")
        case .SQLITE_CANTOPEN:
            if access(path, F_OK) == 0 {
                return StoreError(
                    code: .readOnly, path: path,
                    description: "conversation store \(path): the file cannot be opened for writing (\(detail)); make it and its directory writable, or set store.path to a writable file")
            }
            return StoreError(
                code: .cannotOpen, path: path,
                description: "conversation store \(path): cannot create the file (\(detail)); check that the directory exists and is writable, or set store.path")
        case .SQLITE_FULL:
            return StoreError(code: .full, path: path, description: "conversation store \(path): disk full (\(detail)); free space on the disk")
        default:
            if detail.contains("unknown migration") || detail.contains("newer") {
                return StoreError(code: .newerSchema, path: path, description: "conversation store \(path): written by a newer Parley (\(detail)); use that version or another file")
            }
            return StoreError(code: .other, path: path, description: "conversation store \(path): \(detail)")
        }
    }

    static func writeError(_ error: any Error, path: String) -> StoreError {
        if let e = error as? StoreError { return e }
        if let db = error as? DatabaseError, db.resultCode.primaryResultCode == .SQLITE_FULL {
            return StoreError(
                code: .full, path: path,
                description: "conversation store \(path): disk full, the turn was not recorded (nothing of it was written); free space on the disk or raise store.maxPageCount")
        }
        return openError(error, path: path)
    }
}
