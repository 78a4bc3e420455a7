import NIOCore
import NIOSSL
public import Logging
public import ParleyDispatch
public import ParleyJSON
import PostgresNIO
public import ServiceLifecycle
import Synchronization

/// A failure of the PostgreSQL store, naming the server and the fix.
public struct PostgresStoreError: Error, Sendable, CustomStringConvertible {
    /// The kind of failure; compare with the static members (new kinds may be added).
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable { case configuration, unreachable, newerSchema, shuttingDown, database }
        private let base: Base
        private init(_ base: Base) { self.base = base }
        public var description: String { base.rawValue }

        /// A setting is wrong (URL, schema name).
        public static let configuration = Code(.configuration)
        /// The server cannot be reached or refused the login.
        public static let unreachable = Code(.unreachable)
        /// The schema was migrated by a newer Parley.
        public static let newerSchema = Code(.newerSchema)
        /// The store stopped (graceful shutdown) before the append was written.
        public static let shuttingDown = Code(.shuttingDown)
        /// The server answered a statement with an error.
        public static let database = Code(.database)
    }

    /// The kind of failure.
    public let code: Code
    /// What happened and what to do.
    public let description: String

    init(_ code: Code, _ description: String) {
        self.code = code
        self.description = description
    }

    static func configuration(_ text: String) -> PostgresStoreError { PostgresStoreError(.configuration, text) }
}

/// The conversation store on PostgreSQL (postgres-nio): every node of a cluster reads and writes the same history.
///
/// - Events are rows of `SCHEMA.events (sender_id, seq, type, data, session_start)`, `PRIMARY KEY (sender_id, seq)`:
///   `seq` numbers a conversation's events from 1 with no gap, `data` is the event's JSON text as the dispatcher
///   serialised it (text, not `jsonb`, so key order and numbers read back byte for byte).
/// - Appends are group-committed: one writer per node takes every waiting ``TurnRecord`` (of any conversations),
///   writes them in one `INSERT … SELECT FROM unnest(…)` statement (one round trip, one commit with
///   `synchronous_commit` on), then completes them. Each conversation's new rows continue from its highest
///   `seq` inside that statement, so two nodes appending to one conversation at once cannot both succeed with the
///   same numbers: the loser gets a unique violation and the writer retries its batch on the new top.
/// - The schema is created and migrated by ``open(_:logger:)`` under a PostgreSQL advisory lock (nodes starting
///   together do not race); a schema written by a newer Parley is refused.
/// - Run it as a `Service` (first in the group, so it stops last): `run()` runs the connection pool and the
///   writer; a graceful shutdown writes what is queued, then closes the pool.
public final class PostgresConversationStore: ConversationStore, Service {
    /// The schema version this build writes and reads.
    public static let schemaVersion = 1
    /// Most records one commit takes.
    static let maxBatch = 512
    /// How often a group commit without numbered records is written again after a unique violation.
    static let maxUnnumberedRetries = 20
    /// Nesting that events read back with (as the SQLite store: deeper than anything accepted from outside).
    static let readDepth = 512

    /// Where the store connects.
    public let configuration: PostgresStoreConfiguration
    private let client: PostgresClient
    private let logger: Logger
    private let events: String
    private let writer: Mutex<WriterState>
    private let wake: AsyncStream<Void>.Continuation
    private let wakes: AsyncStream<Void>
    private let health = Mutex<String?>(nil)

    private struct Pending {
        let record: TurnRecord
        let completion: @Sendable (Result<Void, any Error>) -> Void
    }

    private struct WriterState {
        var queue: [Pending] = []
        var closed = false
    }

    private init(configuration: PostgresStoreConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        self.events = "\"\(configuration.schema)\".events"
        self.client = PostgresClient(configuration: Self.clientConfiguration(configuration), backgroundLogger: logger)
        self.writer = Mutex(WriterState())
        (wakes, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Connects once to check the server and the credentials, creates or migrates the schema, and returns the
    /// store (its pool and writer start with ``run()``).
    /// - Throws: ``PostgresStoreError`` naming the server: unreachable, login refused, schema newer than this build.
    public static func open(
        _ configuration: PostgresStoreConfiguration, logger: Logger = Logger(label: "parley.store.postgres")
    ) async throws
        -> PostgresConversationStore
    {
        guard PostgresStoreConfiguration.isValidSchemaName(configuration.schema) else {
            throw PostgresStoreError.configuration(
                "store.schema: `\(configuration.schema)` is not a plain PostgreSQL name (lower-case letters, digits and _, at most 63)")
        }
        guard configuration.poolSize >= 1 else { throw PostgresStoreError.configuration("store.pool_size: must be at least 1") }
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(configuration: connectionConfiguration(configuration), id: 1, logger: logger)
        } catch {
            throw PostgresStoreError(
                .unreachable,
                "PostgreSQL at \(configuration.displayName) as \(configuration.username): \(describe(error)); check store.url and that the server is running"
            )
        }
        do {
            try await migrate(connection, configuration: configuration, logger: logger)
        } catch {
            try? await connection.close()
            throw error
        }
        try? await connection.close()
        return PostgresConversationStore(configuration: configuration, logger: logger)
    }

    // MARK: Schema

    /// Runs the migrations this build knows, in one transaction under an advisory lock.
    private static func migrate(_ connection: PostgresConnection, configuration: PostgresStoreConfiguration, logger: Logger) async throws {
        let schema = configuration.schema
        let place = "PostgreSQL at \(configuration.displayName), schema \(schema)"
        do {
            try await connection.query("BEGIN", logger: logger)
            // One key for every Parley schema: migrations are rare and short.
            try await connection.query("SELECT pg_advisory_xact_lock(7263102115)", logger: logger)
            try await connection.query("CREATE SCHEMA IF NOT EXISTS \(unescaped: "\"\(schema)\"")", logger: logger)
            try await connection.query(
                "CREATE TABLE IF NOT EXISTS \(unescaped: "\"\(schema)\"").schema_version (version integer NOT NULL, migrated_at timestamptz NOT NULL DEFAULT now())",
                logger: logger)
            var current = 0
            for try await version in try await connection.query(
                "SELECT COALESCE(max(version), 0) FROM \(unescaped: "\"\(schema)\"").schema_version", logger: logger
            ).decode(Int.self) {
                current = version
            }
            guard current <= schemaVersion else {
                _ = try? await connection.query("ROLLBACK", logger: logger)
                throw PostgresStoreError(
                    .newerSchema,
                    "\(place): schema version \(current) was written by a newer Parley (this one supports up to \(schemaVersion)); run the newer Parley or restore a backup"
                )
            }
            if current < 1 {
                try await connection.query(
                    """
                    CREATE TABLE \(unescaped: "\"\(schema)\"").events (
                        sender_id text NOT NULL,
                        seq bigint NOT NULL,
                        type text NOT NULL,
                        data text NOT NULL,
                        session_start boolean NOT NULL,
                        stored_at timestamptz NOT NULL DEFAULT now(),
                        PRIMARY KEY (sender_id, seq)
                    )
                    """, logger: logger)
                try await connection.query(
                    "CREATE INDEX events_session_starts ON \(unescaped: "\"\(schema)\"").events (sender_id, seq) WHERE session_start",
                    logger: logger)
                try await connection.query("INSERT INTO \(unescaped: "\"\(schema)\"").schema_version (version) VALUES (1)", logger: logger)
            }
            try await connection.query("COMMIT", logger: logger)
            if current < schemaVersion {
                logger.info("conversation store: PostgreSQL schema migrated", metadata: ["store": "\(place)", "from": "\(current)", "to": "\(schemaVersion)"])
            }
        } catch let error as PostgresStoreError {
            throw error
        } catch {
            _ = try? await connection.query("ROLLBACK", logger: logger)
            throw PostgresStoreError(.database, "\(place): creating or migrating the schema failed: \(describe(error))")
        }
    }

    // MARK: Service

    /// Runs the connection pool and the writer until a graceful shutdown (then writes what is queued and
    /// stops) or cancellation (then fails what is queued).
    public func run() async throws {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.client.run() }
            await withGracefulShutdownHandler {
                await self.writeUntilClosed()
            } onGracefulShutdown: {
                self.close()
            }
            group.cancelAll()
        }
    }

    /// Stops taking appends; the writer finishes what is queued.
    public func close() {
        writer.withLock { $0.closed = true }
        wake.finish()
    }

    private func writeUntilClosed() async {
        for await _ in wakes {
            await drain()
        }
        await drain()
        let left = writer.withLock { state in
            defer { state.queue.removeAll() }
            return state.queue
        }
        for pending in left {
            pending.completion(.failure(PostgresStoreError(.shuttingDown, "PostgreSQL store: stopped before this turn was written")))
        }
    }

    private func drain() async {
        while !Task.isCancelled {
            let batch: [Pending] = writer.withLock { state in
                let n = min(state.queue.count, Self.maxBatch)
                defer { state.queue.removeFirst(n) }
                return Array(state.queue.prefix(n))
            }
            if batch.isEmpty { return }
            let results = await write(batch.map(\.record))
            for (pending, result) in zip(batch, results) { pending.completion(result) }
        }
    }

    // MARK: ConversationStore

    public func append(_ record: TurnRecord, completion: @escaping @Sendable (Result<Void, any Error>) -> Void) {
        if record.isEmpty {
            completion(.success(()))
            return
        }
        let accepted = writer.withLock { state in
            guard !state.closed else { return false }
            state.queue.append(Pending(record: record, completion: completion))
            return true
        }
        if accepted {
            wake.yield()
        } else {
            completion(.failure(PostgresStoreError(.shuttingDown, "PostgreSQL store: shutting down; the turn was not written")))
        }
    }

    /// Writes `records` in one statement. A unique violation means another node stored events of one of the
    /// conversations first: a record without ``TurnRecord/expectedLastSequence`` is simply written again on the new
    /// top; a numbered one that lost is refused with ``ConversationChangedError`` (its turn runs again). To tell
    /// them apart the batch is then written record by record.
    private func write(_ records: [TurnRecord]) async -> [Result<Void, any Error>] {
        let started = ContinuousClock.now
        var attempt = 0
        while true {
            attempt += 1
            switch await insert(records) {
            case .success:
                ConversationStoreMetrics.committed(
                    appends: records.count, bytes: records.reduce(0) { $0 + $1.encoded.reduce(0) { $0 + $1.count } }, after: ContinuousClock.now - started)
                health.withLock { $0 = nil }
                return Array(repeating: .success(()), count: records.count)
            case .failure(let error) where Self.isUniqueViolation(error):
                ConversationStoreMetrics.appendConflict()
                if records.count > 1 && records.contains(where: { $0.expectedLastSequence != nil }) {
                    var results: [Result<Void, any Error>] = []
                    for record in records { results += await write([record]) }
                    return results
                }
                if let expected = records.first?.expectedLastSequence, records.count == 1 {
                    return [.failure(ConversationChangedError(senderID: records[0].senderID, expectedLastSequence: expected))]
                }
                if attempt < Self.maxUnnumberedRetries {
                    // Another node keeps writing the same conversation: wait a little, at random, and go again.
                    try? await Task.sleep(for: .microseconds(Int64.random(in: 0...Int64(1_000 * attempt))))
                    continue
                }
                return Array(repeating: .failure(failed(error, turns: records.count)), count: records.count)
            case .failure(let error):
                return Array(repeating: .failure(failed(error, turns: records.count)), count: records.count)
            }
        }
    }

    private func failed(_ error: any Error, turns: Int) -> PostgresStoreError {
        ConversationStoreMetrics.commitFailed()
        let failure = PostgresStoreError(.database, "PostgreSQL at \(configuration.displayName): append failed: \(Self.describe(error))")
        health.withLock { $0 = failure.description }
        logger.error(
            "conversation store: a commit failed; its turns are answered with the fallback",
            metadata: ["store": "\(configuration.displayName)", "turns": "\(turns)", "error": "\(Self.describe(error))"])
        return failure
    }

    /// One `INSERT … SELECT FROM unnest(…)` for every event of `records`: a numbered record's events get the
    /// numbers after its `expectedLastSequence`; the others continue from their conversation's highest `seq`.
    private func insert(_ records: [TurnRecord]) async -> Result<Void, any Error> {
        var senders: [String] = []
        var ordinals: [Int64] = []
        var fixed: [Int64] = []
        var types: [String] = []
        var texts: [String] = []
        var starts: [Bool] = []
        var next: [String: Int64] = [:]
        for record in records {
            for (index, (event, text)) in zip(record.events, record.encoded).enumerated() {
                if let expected = record.expectedLastSequence {
                    fixed.append(expected + Int64(index) + 1)
                    ordinals.append(0)
                } else {
                    let ordinal = next[record.senderID, default: 0] + 1
                    next[record.senderID] = ordinal
                    fixed.append(-1)
                    ordinals.append(ordinal)
                }
                let type = event["event"]?.stringValue ?? ""
                senders.append(record.senderID)
                types.append(type)
                texts.append(String(decoding: text, as: UTF8.self))
                starts.append(type == "session_started" || type == "restart")
            }
        }
        let query: PostgresQuery = """
            WITH input AS (
                SELECT * FROM unnest(\(senders)::text[], \(ordinals)::int8[], \(fixed)::int8[], \(types)::text[], \(texts)::text[], \(starts)::bool[])
                    AS t(sender_id, ordinal, fixed, type, data, session_start)
            ), top AS (
                SELECT s.sender_id, COALESCE((SELECT max(e.seq) FROM \(unescaped: events) e WHERE e.sender_id = s.sender_id), 0) AS seq
                FROM (SELECT DISTINCT sender_id FROM input WHERE fixed < 0) s
            )
            INSERT INTO \(unescaped: events) (sender_id, seq, type, data, session_start)
            SELECT i.sender_id, CASE WHEN i.fixed >= 0 THEN i.fixed ELSE top.seq + i.ordinal END, i.type, i.data, i.session_start
            FROM input i LEFT JOIN top USING (sender_id)
            """
        do {
            try await withTimeout { [client, logger] in _ = try await client.query(query, logger: logger) }
            return .success(())
        } catch {
            return .failure(error)
        }
    }

    /// The current session and the number of the conversation's last event; an unknown conversation is an empty
    /// session at number 0, so that its first turn is numbered (and checked) too.
    public func load(_ senderID: String) async throws -> StoredConversation? {
        let rows = try await rows(
            """
            SELECT seq, data FROM \(unescaped: events) WHERE sender_id = \(senderID) AND seq >= COALESCE(
                (SELECT max(seq) FROM \(unescaped: events) WHERE sender_id = \(senderID) AND session_start), 0)
            ORDER BY seq
            """, senderID: senderID)
        return StoredConversation(currentSession: parse(rows, senderID: senderID), lastSequence: rows.last?.0 ?? 0)
    }

    public func currentSession(of senderID: String) async throws -> [JSONValue]? {
        let rows = try await read(
            """
            SELECT seq, data FROM \(unescaped: events) WHERE sender_id = \(senderID) AND seq >= COALESCE(
                (SELECT max(seq) FROM \(unescaped: events) WHERE sender_id = \(senderID) AND session_start), 0)
            ORDER BY seq
            """, senderID: senderID)
        return rows.isEmpty ? nil : rows
    }

    public func events(of senderID: String, types: Set<String>?) async throws -> [JSONValue]? {
        guard let types else {
            let rows = try await read("SELECT seq, data FROM \(unescaped: events) WHERE sender_id = \(senderID) ORDER BY seq", senderID: senderID)
            return rows.isEmpty ? nil : rows
        }
        let rows = try await read(
            "SELECT seq, data FROM \(unescaped: events) WHERE sender_id = \(senderID) AND type = ANY(\(Array(types))::text[]) ORDER BY seq",
            senderID: senderID)
        if !rows.isEmpty { return rows }
        return try await exists(senderID) ? [] : nil
    }

    public func checkHealth() async throws {
        do {
            try await withTimeout { [client, logger] in _ = try await client.query("SELECT 1", logger: logger) }
        } catch let error as PostgresStoreError {
            throw error
        } catch {
            throw PostgresStoreError(.unreachable, "PostgreSQL at \(configuration.displayName): \(Self.describe(error))")
        }
        if let failure = health.withLock({ $0 }) { throw PostgresStoreError(.database, failure) }
    }

    private func exists(_ senderID: String) async throws -> Bool {
        let query: PostgresQuery = "SELECT 1 FROM \(unescaped: events) WHERE sender_id = \(senderID) LIMIT 1"
        return try await withTimeout { [client, logger] in
            for try await _ in try await client.query(query, logger: logger) { return true }
            return false
        }
    }

    private func read(_ query: PostgresQuery, senderID: String) async throws -> [JSONValue] {
        parse(try await rows(query, senderID: senderID), senderID: senderID)
    }

    private func rows(_ query: PostgresQuery, senderID: String) async throws -> [(Int64, String)] {
        do {
            return try await withTimeout { [client, logger] in
                var rows: [(Int64, String)] = []
                for try await row in try await client.query(query, logger: logger).decode((Int64, String).self) { rows.append(row) }
                return rows
            }
        } catch let error as PostgresStoreError {
            throw error
        } catch {
            throw PostgresStoreError(.database, "PostgreSQL at \(configuration.displayName): reading \(senderID) failed: \(Self.describe(error))")
        }
    }

    private func parse(_ rows: [(Int64, String)], senderID: String) -> [JSONValue] {
        var out: [JSONValue] = []
        out.reserveCapacity(rows.count)
        for (seq, text) in rows {
            do {
                out.append(try JSONValue.parse(text, maxDepth: Self.readDepth))
            } catch {
                ConversationStoreMetrics.eventQuarantined()
                logger.error(
                    "conversation store: an event cannot be read and is skipped; the conversation goes on without it",
                    metadata: ["sender_id": "\(senderID)", "seq": "\(seq)", "error": "\(error)"])
            }
        }
        return out
    }

    // MARK: Helpers

    /// Runs `body` (one statement) with the configured ``PostgresStoreConfiguration/statementTimeout``: while the
    /// server is down, the pool waits for a connection indefinitely, and a turn, a history read or `/health`
    /// must answer instead. Cancelling a wait for a connection is clean; a statement already sent may still
    /// commit after the timeout (the turn was then answered with the fallback but is in the history).
    private func withTimeout<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let limit = configuration.statementTimeout
        let place = configuration.displayName
        return try await withThrowingTaskGroup(of: T.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(for: limit)
                throw PostgresStoreError(.unreachable, "PostgreSQL at \(place): no answer within \(limit) (server down or overloaded)")
            }
            defer { group.cancelAll() }
            return try await group.next()!
        }
    }

    /// Runs one SQL statement through the pool (tests use it to damage or age a schema on purpose).
    func execute(_ sql: String) async throws {
        try await client.query(PostgresQuery(unsafeSQL: sql), logger: logger)
    }

    private static func isUniqueViolation(_ error: any Error) -> Bool {
        (error as? PSQLError)?.serverInfo?[.sqlState] == PostgresError.Code.uniqueViolation.raw
    }

    /// PSQLError's description hides everything (it may hold credentials); say the server's message or the
    /// connection problem instead.
    static func describe(_ error: any Error) -> String {
        guard let error = error as? PSQLError else { return "\(error)" }
        if let info = error.serverInfo, let message = info[.message] {
            return "\(message)\(info[.sqlState].map { " (SQLSTATE \($0))" } ?? "")"
        }
        if let underlying = error.underlying { return "\(underlying)" }
        return "\(error.code)"
    }

    private static func clientConfiguration(_ c: PostgresStoreConfiguration) -> PostgresClient.Configuration {
        var configuration = PostgresClient.Configuration(
            host: c.host, port: c.port, username: c.username, password: c.password, database: c.database,
            tls: c.requireTLS ? .require(.makeClientConfiguration()) : .disable)
        configuration.options.maximumConnections = c.poolSize
        configuration.options.connectTimeout = c.connectTimeout
        configuration.options.additionalStartupParameters = [("synchronous_commit", "on"), ("application_name", "parley")]
        return configuration
    }

    private static func connectionConfiguration(_ c: PostgresStoreConfiguration) throws -> PostgresConnection.Configuration {
        var configuration = PostgresConnection.Configuration(
            host: c.host, port: c.port, username: c.username, password: c.password, database: c.database,
            tls: c.requireTLS ? .require(try NIOSSLContext(configuration: .makeClientConfiguration())) : .disable)
        configuration.options.connectTimeout = TimeAmount(c.connectTimeout)
        configuration.options.additionalStartupParameters = [("application_name", "parley")]
        return configuration
    }
}
