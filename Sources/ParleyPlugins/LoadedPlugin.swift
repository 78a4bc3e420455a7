import CParley
import Dispatch
public import Logging
import ParleyDispatch
import ParleyWorkers
public import ParleyJSON
import Synchronization

/// The plugin's `parley_plugin_def`, copied at load (only `struct_size` bytes; later fields read as zero).
struct PluginDefinition: @unchecked Sendable {
    // @unchecked: `state` is an opaque plugin pointer the host never dereferences; the function pointers are
    // immutable code addresses.
    var raw: parley_plugin_def
}

/// One loaded plugin instance: its identity and the machinery that calls it.
///
/// Every call runs `handle` on the ``WorkerPool`` (never on an event loop), serialized per conversation, with at
/// most ``slots`` `handle`s of this plugin at a time: one unless the plugin sets `PARLEY_FLAG_THREAD_SAFE`, else
/// ``PluginConfiguration/maxConcurrentCalls`` (default ``PluginHostConfiguration/defaultMaxConcurrentCalls``).
/// The slots bound how many worker threads a hung plugin can hold: a `handle()` still running when its call
/// expires is *hung* (``PluginStatistics/hung``) until it returns; while every slot is hung, calls fail at once
/// (``PluginCallError/Code/unavailable``, the dispatcher sends the fallback without waiting) and ``problem`` says
/// why (the health route reports it).
/// Each call has a deadline; on expiry the caller gets ``PluginCallError/Code/deadlineExceeded``, the
/// plugin's cancel hook runs, and the plugin's late `complete` returns `PARLEY_E_EXPIRED`.
///
/// An agent's deadline belongs to the dispatcher (``Agent/deadline``): it sends the fallback at that instant,
/// whatever thread the call holds. The plugin layer does not race it: an agent call expires here
/// ``agentReleaseMargin`` later, which only releases the waiting task, runs the cancel hook and counts the expiry.
public final class LoadedPlugin: PluginStatusReporting, CustomStringConvertible {
    /// The name used in logs and routing (configured name, or the plugin's own).
    public let name: String
    /// The name the plugin reports in `parley_plugin_def.name`.
    public let pluginName: String
    /// The plugin's version string (`unknown` when NULL).
    public let version: String
    /// The file as configured.
    public let path: String
    /// Agent or formatter.
    public let kind: PluginKind
    /// The ABI version the plugin was built against.
    public let abiMajor: UInt32
    /// The ABI minor version the plugin was built against.
    public let abiMinor: UInt32
    /// Whether calls for different conversations may run concurrently (`PARLEY_FLAG_THREAD_SAFE`).
    public let isThreadSafe: Bool
    /// Whether the agent reads `tracker.events` (false when it sets `PARLEY_FLAG_NO_TRACKER_EVENTS`).
    public let wantsTrackerEvents: Bool
    /// Per-call deadline.
    public let deadline: Duration
    /// Most `handle()` calls of this plugin running at once (each holds a worker thread): 1 for a plugin that is
    /// not thread-safe.
    public let slots: Int
    /// How long after its deadline an agent call is expired here (the dispatcher has sent the fallback by then).
    public static let agentReleaseMargin: Duration = .milliseconds(250)
    /// Logger with `parley.plugin` metadata.
    public let logger: Logger

    let definition: PluginDefinition
    let instance: InstanceContext
    private let pool: WorkerPool
    private let conversationGate: SerialGate
    private let slotGate: SlotGate
    /// When a refusal because every slot is hung was last logged (nanoseconds of the monotonic clock).
    private let lastHungLog = Atomic<Int64>(0)
    private let stats = Mutex(PluginStatistics())
    /// When each `handle()` now running began, by call id (only with `tracksRunningHandles`).
    private let handleStarts = Mutex<[UInt: ContinuousClock.Instant]>([:])
    private let tracksRunningHandles: Bool
    private let metrics: PluginMetrics
    private let closed = Atomic<Bool>(false)

    init(
        name: String, definition: PluginDefinition, path: String, kind: PluginKind, deadline: Duration, threadSafe: Bool?,
        maxConcurrentCalls: Int = PluginHostConfiguration.defaultMaxConcurrentCalls, instance: InstanceContext, pool: WorkerPool, logger: Logger,
        tracksRunningHandles: Bool = false
    ) {
        self.tracksRunningHandles = tracksRunningHandles
        let raw = definition.raw
        self.name = name
        self.metrics = PluginMetrics(plugin: name)
        self.pluginName = raw.name.map { String(cString: $0) } ?? name
        self.version = raw.version.map { String(cString: $0) } ?? "unknown"
        self.path = path
        self.kind = kind
        self.abiMajor = raw.abi_major
        self.abiMinor = raw.abi_minor
        let declaresThreadSafe = raw.flags & PARLEY_FLAG_THREAD_SAFE != 0
        self.isThreadSafe = declaresThreadSafe && threadSafe != false
        if threadSafe == true && !declaresThreadSafe {
            logger.warning("plugin \(name): thread_safe: true is ignored; the plugin does not declare itself thread-safe (PARLEY_FLAG_THREAD_SAFE)")
        }
        self.wantsTrackerEvents = raw.flags & PARLEY_FLAG_NO_TRACKER_EVENTS == 0
        self.deadline = deadline
        self.definition = definition
        self.instance = instance
        self.pool = pool
        self.conversationGate = SerialGate(pool: pool)
        self.slots = isThreadSafe ? max(1, maxConcurrentCalls) : 1
        self.slotGate = SlotGate(limit: slots, pool: pool)
        var logger = logger
        logger[metadataKey: "parley.plugin"] = "\(name)"
        self.logger = logger
        if !isThreadSafe && maxConcurrentCalls != PluginHostConfiguration.defaultMaxConcurrentCalls && maxConcurrentCalls > 1 {
            logger.warning(
                "plugin \(name): max_concurrent_calls \(maxConcurrentCalls) is ignored; the plugin is not thread-safe, so one call runs at a time (use isolation: process with processes: N for parallelism)"
            )
        }
    }

    /// `agent "mirror" 1.0.0 (path, ABI 1.0, thread-safe)`.
    public var description: String {
        "\(kind) \"\(name)\" \(version) (\(path), ABI \(abiMajor).\(abiMinor)\(isThreadSafe ? ", thread-safe" : ""))"
    }

    /// A snapshot of the plugin's counters.
    public var statistics: PluginStatistics { stats.withLock { $0 } }

    /// How long the longest `handle()` running now has been running (nil: none runs, or the host does not track
    /// it: `PluginHostConfiguration.tracksRunningHandles`). A value far past the deadline means the plugin is hung.
    public var longestRunningHandle: Duration? {
        let now = ContinuousClock.now
        return handleStarts.withLock { starts in starts.values.min().map { now - $0 } }
    }

    func updateStatistics(_ body: (inout PluginStatistics) -> Void) { stats.withLock { body(&$0) } }

    /// Counts, slots and latency for `parley plugins status`.
    public var status: PluginStatus {
        var status = PluginStatus(name: name, kind: kind, path: path, isolation: "in_process")
        metrics.fill(&status)
        let stats = self.statistics
        status.running = stats.running
        status.hung = stats.hung
        status.slots = slots
        status.problem = problem
        return status
    }

    /// What is wrong with the plugin now, for the health route: every slot held by a hung `handle()`; nil: healthy.
    public var problem: String? {
        let hung = stats.withLock { $0.hung }
        guard hung >= slots else { return nil }
        return "degraded: all \(slots) slot(s) held by handle() calls that did not return by their deadline; its calls get the fallback at once"
    }

    /// A `handle()` of call `id` was still running when the call expired: it holds its slot (and thread) until it returns.
    func handleHung(callID id: UInt) {
        let hung = stats.withLock { s in
            s.hung += 1
            return s.hung
        }
        logger.error(
            "plugin \(name): handle() of call \(id) has not returned by its deadline (\(formatDuration(deadline))); it keeps its thread until it returns (\(hung) of \(slots) slot(s) hung)"
        )
    }

    /// A hung `handle()` returned at last.
    func hungHandleReturned(callID id: UInt) {
        stats.withLock { $0.hung -= 1 }
        logger.notice("plugin \(name): the hung handle() of call \(id) returned; its slot is free again")
    }

    /// Sends `request` (serialized as JSON) to the plugin's `handle` for conversation `senderID` and returns
    /// the JSON the plugin completed the call with.
    ///
    /// - Throws: ``PluginCallError`` on deadline, cancellation, plugin failure, invalid JSON or a broken
    ///   calling contract; never crashes on plugin garbage.
    public func call(_ request: JSONValue, senderID: String) async throws -> JSONValue {
        try await call(senderID: senderID) { request.serialize(into: &$0) }
    }

    /// ``call(_:senderID:)`` with the request's JSON text written by `encode` (for callers that have it faster
    /// than serialising a ``JSONValue``, see ``AgentRequest/encodedPayload``).
    /// - Parameter stream: receives the text the plugin passes to `parley_stream` during this call (returning
    ///   false once the turn no longer shows it); nil: the plugin's `parley_stream` gets `PARLEY_E_UNSUPPORTED`.
    public func call(senderID: String, stream: (@Sendable (String) -> Bool)? = nil, encode: (inout [UInt8]) -> Void) async throws -> JSONValue {
        let started = ContinuousClock.now
        do {
            let reply = try await callUnmeasured(senderID: senderID, stream: stream, encode: encode)
            metrics.finished(after: ContinuousClock.now - started, error: nil)
            return reply
        } catch {
            metrics.finished(after: ContinuousClock.now - started, error: error)
            throw error
        }
    }

    /// ``call(senderID:stream:encode:)`` without waiting: `completion` gets the outcome exactly once, on whatever
    /// thread it is known (at once when the call is refused; usually the worker thread whose `handle()` completed
    /// it). For a caller that is not a task — `parley-plugin-host` answers each call from the thread that read it.
    /// - Parameter request: the request's JSON text.
    public func call(
        senderID: String, stream: (@Sendable (String) -> Bool)? = nil, request: [UInt8],
        completion: @escaping @Sendable (Result<JSONValue, PluginCallError>) -> Void
    ) {
        let started = ContinuousClock.now
        let done: CallRegistry.Completion = { [metrics] outcome in
            let error: (any Error)? = if case .failure(let e) = outcome { e } else { nil }
            metrics.finished(after: ContinuousClock.now - started, error: error)
            completion(outcome)
        }
        do {
            try admit()
        } catch {
            done(.failure(error))
            return
        }
        var payload = request
        payload.append(0)  // courtesy NUL after the view (documented in parley.h); not counted in len
        launch(register(senderID: senderID, stream: stream), senderID: senderID, payload: payload, completion: done)
    }

    private func callUnmeasured(senderID: String, stream: (@Sendable (String) -> Bool)?, encode: (inout [UInt8]) -> Void) async throws -> JSONValue {
        try admit()
        var bytes: [UInt8] = []
        encode(&bytes)
        bytes.append(0)  // courtesy NUL after the view (documented in parley.h); not counted in len
        let payload = bytes
        let id = register(senderID: senderID, stream: stream)
        let deadline = self.deadline
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<JSONValue, any Error>) in
                launch(id, senderID: senderID, payload: payload) { continuation.resume(with: $0.mapError { $0 as any Error }) }
            }
        } onCancel: {
            callRegistry.expire(id, deadline: deadline, cancelled: true)
        }
    }

    /// Counts a call, or refuses it at once: the host is shut down, or every slot is hung (waiting for a slot would
    /// only end at the deadline; the log says why, at most once a second).
    private func admit() throws(PluginCallError) {
        if closed.load(ordering: .acquiring) {
            throw PluginCallError(code: .closed, plugin: name, reason: "the plugin host is shut down")
        }
        let hung = stats.withLock { s in
            s.calls += 1
            if s.hung >= slots { s.refused += 1 }
            return s.hung
        }
        guard hung >= slots else { return }
        let now = Int64(DispatchTime.now().uptimeNanoseconds)
        let last = lastHungLog.load(ordering: .relaxed)
        if now - last > 1_000_000_000, lastHungLog.compareExchange(expected: last, desired: now, ordering: .relaxed).exchanged {
            logger.warning(
                "plugin \(name): call refused at once (fallback): all \(slots) slot(s) are held by handle() calls past their deadline\(isThreadSafe ? "" : " (the plugin is not thread-safe: one slot)")"
            )
        }
        throw PluginCallError(code: .unavailable, plugin: name, reason: "all \(slots) slot(s) are held by handle() calls that did not return by their deadline")
    }

    /// A new call record; its conversation's turn is released when it settles.
    private func register(senderID: String, stream: (@Sendable (String) -> Bool)?) -> UInt {
        callRegistry.register(owner: self, stream: stream) { [conversationGate] in conversationGate.release(senderID) }
    }

    /// Attaches `completion`, arms the call's deadline and queues it behind its conversation and a free slot.
    private func launch(_ id: UInt, senderID: String, payload: [UInt8], completion: @escaping CallRegistry.Completion) {
        callRegistry.attach(id, completion)
        // One shared timer for every call's deadline, not a GCD timer per call.
        callDeadlines.schedule(id, after: kind == .agent ? deadline + Self.agentReleaseMargin : deadline, deadline: deadline)
        conversationGate.enqueue(senderID) { [self] in
            if callRegistry.isFinished(id) {
                start(id, payload: payload, releasing: nil)
            } else {
                slotGate.acquire { self.start(id, payload: payload, releasing: self.slotGate) }
            }
        }
    }

    /// Runs `handle` for call `id` on a worker thread, unless the call already finished.
    private func start(_ id: UInt, payload: [UInt8], releasing gate: SlotGate?) {
        guard callRegistry.begin(id) else {
            gate?.release()
            return
        }
        let definition = self.definition
        let run: @Sendable () -> Void = { [self] in
            stats.withLock { $0.running += 1 }
            if tracksRunningHandles { handleStarts.withLock { $0[id] = .now } }
            defer { if tracksRunningHandles { handleStarts.withLock { _ = $0.removeValue(forKey: id) } } }
            let status: Int32 = pool.runBlocking {
                payload.withUnsafeBufferPointer { buffer in
                    buffer.withMemoryRebound(to: CChar.self) { chars in
                        let view = parley_str(ptr: chars.baseAddress, len: chars.count - 1)
                        guard let handle = definition.raw.handle else { return PARLEY_E_INTERNAL.rawValue }
                        return handle(definition.raw.state, OpaquePointer(bitPattern: id), view).rawValue
                    }
                }
            }
            stats.withLock { $0.running -= 1 }
            gate?.release()
            callRegistry.handleReturned(id, status: status)
        }
        // A turn running on the pool (the dispatcher's executor) calls the plugin right here: no hand-off.
        if pool.isCurrentThreadWorker { run() } else { pool.submit(run) }
    }

    /// Calls the plugin's optional cancel hook for call `id` on a worker thread.
    func runCancelHook(callID id: UInt) {
        guard let cancel = definition.raw.cancel else { return }
        let state = PluginDefinition(raw: definition.raw)
        stats.withLock { $0.cancelHookCalls += 1 }
        pool.submit { [pool] in
            pool.runBlocking { cancel(state.raw.state, OpaquePointer(bitPattern: id)) }
        }
    }

    /// Refuses new calls; used by ``PluginHost/shutdown()``.
    func close() {
        closed.store(true, ordering: .releasing)
        instance.close()
    }

    /// Runs the plugin's shutdown hook (if any) on a worker thread, with a deadline.
    func runShutdownHook(deadline: Duration) async {
        guard let shutdown = definition.raw.shutdown else { return }
        let definition = self.definition
        do {
            try await pool.run(deadline: deadline) { shutdown(definition.raw.state) }
        } catch {
            logger.error("plugin \(name): shutdown hook did not return within \(formatDuration(deadline)) (\(error))")
        }
    }
}
