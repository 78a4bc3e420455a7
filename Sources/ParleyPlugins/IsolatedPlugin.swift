import CoreMetrics
import Foundation
public import Logging
import Metrics
import ParleyCore
public import ParleyDispatch
public import ParleyJSON
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// How an isolated plugin's host process is supervised (`isolation: process`).
public struct PluginIsolationSettings: Sendable, Hashable {
    /// The `parley-plugin-host` executable.
    public var hostExecutable: String
    /// Crashes within ``crashWindow`` that open the circuit breaker.
    public var breakerThreshold: Int
    /// The window in which crashes are counted.
    public var crashWindow: Duration
    /// How long the breaker stays open (calls get the fallback at once) before one host is started again.
    public var breakerOpenFor: Duration
    /// How long past a call's deadline the host may take to answer before it is killed and restarted (default 3 s:
    /// a host exits by itself 2 s after a `handle()` passed its deadline; this is the backstop for one that is
    /// wedged).
    public var killGrace: Duration
    /// Resident memory of the host process in bytes: at it the host is replaced between calls, at 1.5 times it
    /// the host exits at once; nil: none.
    public var memoryLimit: Int?
    /// Kernel limits of the host process: address space in bytes (`RLIMIT_AS`), CPU seconds (`RLIMIT_CPU`: SIGXCPU),
    /// open files (`RLIMIT_NOFILE`); nil: inherited.
    public var addressSpaceLimit: Int?
    public var cpuSeconds: Int?
    public var openFiles: Int?
    /// Host processes of the plugin; each call goes to the least busy one (more than one gives a plugin that is
    /// not thread-safe parallelism).
    public var processes: Int

    public init(
        hostExecutable: String, breakerThreshold: Int = 5, crashWindow: Duration = .seconds(60), breakerOpenFor: Duration = .seconds(30),
        killGrace: Duration = .seconds(3), memoryLimit: Int? = nil, addressSpaceLimit: Int? = nil, cpuSeconds: Int? = nil, openFiles: Int? = nil,
        processes: Int = 1
    ) {
        self.processes = max(1, processes)
        self.addressSpaceLimit = addressSpaceLimit
        self.hostExecutable = hostExecutable
        self.breakerThreshold = max(1, breakerThreshold)
        self.crashWindow = crashWindow
        self.breakerOpenFor = breakerOpenFor
        self.killGrace = killGrace
        self.memoryLimit = memoryLimit
        self.cpuSeconds = cpuSeconds
        self.openFiles = openFiles
    }
}

/// An agent or formatter plugin loaded in host processes of its own (`isolation: process`): the same `.so`, the
/// same header, but a crash, an `abort()` or a hang costs only the turns it was answering. As an ``Agent`` it
/// answers turns; ``formatter`` wraps it as a ``MessageFormatter``.
///
/// The host process (`parley-plugin-host`) loads the plugin with the in-process loader and serves calls framed
/// over its stdin/stdout (``IsolationFrame``); its stderr (the plugin's log lines and whatever it prints) is
/// relayed to the log and the last lines are kept for the crash report. The process is started on the first call.
/// With ``PluginIsolationSettings/processes`` N, up to N host processes run: a call goes to an idle one, or starts
/// another while fewer than N run, else to the one with the fewest calls in flight.
/// When it dies, every call in flight fails (the dispatcher sends the fallback), the crash is logged with the
/// signal and the last stderr lines, and the next call starts a new host — not before a backoff (0.1 s doubling
/// to 5 s per crash in a row). ``PluginIsolationSettings/breakerThreshold`` crashes within
/// ``PluginIsolationSettings/crashWindow`` open a circuit breaker: calls fail at once, without waiting for a
/// deadline, until ``PluginIsolationSettings/breakerOpenFor`` passed; then one host is tried again (half-open).
/// A host that does not answer a call by its deadline plus ``PluginIsolationSettings/killGrace`` is killed.
///
/// Threads: one reader thread per running host for its stdout frames and one for its stderr (blocking reads of a
/// pipe; they end with the process). Calls write their frame from the calling thread under a lock.
public final class IsolatedPlugin: Agent, PluginStatusReporting {
    public let name: String
    public let path: String
    /// Agent or formatter (the host process refuses a plugin of the other kind).
    public let kind: PluginKind
    public let deadline: Duration?
    let callDeadline: Duration
    let config: JSONValue
    let threadSafe: Bool?
    let trackerEvents: Int?
    let settings: PluginIsolationSettings
    let logger: Logger
    let emit: @Sendable (EmittedMessage) -> Void

    private struct Pending {
        var continuation: CheckedContinuation<JSONValue, any Error>
        var stream: (@Sendable (String) -> Bool)?
        /// When the call was sent: a host that has not answered by then + the call deadline + the kill grace is
        /// killed (``sweep()``).
        var sent: ContinuousClock.Instant
    }

    private final class Child: @unchecked Sendable {
        let process: Process
        /// Its place in ``State/children``.
        let slot: Int
        /// Replaced because it reached its memory limit: its exit is not a crash.
        let retiring = Atomic<Bool>(false)
        /// Calls given to this host and not finished (counted when the host is chosen, so that calls arriving
        /// together spread over the hosts).
        let inFlight = Atomic<Int>(0)
        /// The write end of the host's stdin (a descriptor of its own, closed once by the writer).
        private let input: FrameWriter
        let pending = Mutex<[UInt64: Pending]>([:])
        let stderrTail = Mutex<[String]>([])
        /// Signalled when the stderr reader has read everything (the pipe closed with the process).
        let stderrDone = DispatchSemaphore(value: 0)
        /// Whether the host has loaded the plugin: nil until it says (`ready` or `loadFailed`) or dies; then who
        /// waits for it (``IsolatedPlugin/prepare(timeout:)``) is resumed.
        let readiness = Mutex<(outcome: Result<Void, PluginLoadError>?, waiter: CheckedContinuation<Void, any Error>?)>((nil, nil))

        /// Records the host's load outcome (the first one counts) and wakes the waiter.
        func loaded(_ outcome: Result<Void, PluginLoadError>) {
            let waiter: CheckedContinuation<Void, any Error>? = readiness.withLock { r in
                guard r.outcome == nil else { return nil }
                r.outcome = outcome
                defer { r.waiter = nil }
                return r.waiter
            }
            waiter?.resume(with: outcome.mapError { $0 as any Error })
        }
        init(process: Process, slot: Int, stdin: FileHandle) {
            self.process = process
            self.slot = slot
            // The writer owns a duplicate; the FileHandle (which would close its descriptor again when freed) is
            // closed now.
            self.input = FrameWriter(fd: dup(stdin.fileDescriptor))
            try? stdin.close()
        }

        /// Writes a frame; false when the host is gone.
        func write(_ frame: [UInt8]) -> Bool {
            input.write(frame)
        }

        /// No more writes; closes the descriptor.
        func closeInput() {
            input.close()
        }
    }

    private struct State {
        /// One place per configured process; nil: not running.
        var children: [Child?]
        /// Places whose host is being started.
        var starting: Set<Int> = []

        /// The running host with the fewest calls in flight, and that number.
        func leastBusy() -> (Child, Int)? {
            var best: (Child, Int)?
            for case let child? in children {
                let load = child.inFlight.load(ordering: .relaxed)
                if best == nil || load < best!.1 { best = (child, load) }
                if load == 0 { break }
            }
            return best
        }

        /// A place where another host may start.
        var freePlace: Int? { children.indices.first { children[$0] == nil && !starting.contains($0) } }
        var nextID: UInt64 = 1
        var crashes: [ContinuousClock.Instant] = []
        var crashesInARow = 0
        var notBefore: ContinuousClock.Instant?
        var breakerOpenUntil: ContinuousClock.Instant?
        var lastCrash = ""
    }

    private let state: Mutex<State>
    /// What the plugin's host reported at load: false when the plugin sets `PARLEY_FLAG_NO_TRACKER_EVENTS`.
    private let wantsTrackerEvents = Atomic<Bool>(true)
    /// Whether ``sweep()`` is scheduled.
    private let sweepArmed = Atomic<Bool>(false)
    /// A copy of ``State/crashesInARow`` readable without the lock (resetting it costs a lock only after a crash).
    private let crashesInARow = Atomic<Int>(0)
    private let metrics: PluginMetrics
    private let breakerGauge: Gauge

    /// - Parameters:
    ///   - deadline: the agent's deadline (the dispatcher's fallback comes at it); `callDeadline` is the per-call
    ///     deadline the host process applies (the plugin's cancel hook).
    ///   - emit: where the plugin's `emit`s go (the plugin host's queue).
    public init(
        name: String, path: String, kind: PluginKind = .agent, deadline: Duration?, callDeadline: Duration, config: JSONValue, threadSafe: Bool?,
        trackerEvents: Int?, settings: PluginIsolationSettings, logger: Logger, emit: @escaping @Sendable (EmittedMessage) -> Void
    ) {
        self.name = name
        self.path = path
        self.kind = kind
        self.state = Mutex(State(children: Array(repeating: nil, count: settings.processes)))
        self.deadline = deadline
        self.callDeadline = callDeadline
        self.config = config
        self.threadSafe = threadSafe
        self.trackerEvents = trackerEvents
        self.settings = settings
        self.logger = logger
        self.emit = emit
        metrics = PluginMetrics(plugin: name)
        breakerGauge = Gauge(label: "parley_plugin_breaker_open", dimensions: [("plugin", name)])
        // A write to the pipe of a host that just died must be an error, not a signal that kills the server.
        signal(SIGPIPE, SIG_IGN)
    }

    /// The configured `tracker_events`, else 0 when the plugin sets `PARLEY_FLAG_NO_TRACKER_EVENTS` (its host says
    /// so when it has loaded it), else nil (the dispatcher's limit) — as ``PluginAgent`` does in process.
    public var trackerEventLimit: Int? { trackerEvents ?? (wantsTrackerEvents.load(ordering: .relaxed) ? nil : 0) }

    /// This plugin as a formatter (it must be one: the host process refuses an agent configured as a formatter).
    public var formatter: IsolatedFormatter { IsolatedFormatter(plugin: self) }

    /// Counts, host processes, breaker and latency for `parley plugins status`.
    public var status: PluginStatus {
        var status = PluginStatus(name: name, kind: kind, path: path, isolation: "process")
        metrics.fill(&status)
        let now = ContinuousClock.now
        state.withLock { s in
            let live = s.children.compactMap { $0 }
            status.processesRunning = live.count
            status.running = live.reduce(0) { $0 + $1.inFlight.load(ordering: .relaxed) }
            status.breakerOpen = s.breakerOpenUntil.map { now < $0 } ?? false
            if status.breakerOpen {
                status.problem =
                    "degraded: circuit breaker open after \(s.crashes.count) crashes within \(settings.crashWindow) (last: \(s.lastCrash)); its calls get the fallback at once"
            }
        }
        status.slots = settings.processes
        return status
    }

    /// What is wrong now (the circuit breaker is open), for the health route; nil: healthy.
    public var problem: String? { status.problem }

    // MARK: Agent

    public func respond(to request: AgentRequest) async throws -> AgentReply {
        var bytes: [UInt8] = []
        if request.hasObjectPayload {
            request.serializePayload(into: &bytes)
        } else {
            PluginAgent.minimalPayload(for: request.message).serialize(into: &bytes)
        }
        let reply = try await call(senderID: request.message.senderID, request: bytes, stream: request.stream)
        return try PluginAgent.parseReply(reply, plugin: name)
    }

    /// Starts every host process and waits until each has loaded the plugin (at startup and on reload, so that a
    /// plugin that cannot load is reported then, not at its first call).
    /// - Throws: ``PluginLoadError`` with the host's reason, or ``PluginLoadError/Code/crashedWhileLoading`` when a
    ///   host died or did not answer within `timeout` (its last stderr lines in the reason).
    public func prepare(timeout: Duration) async throws(PluginLoadError) {
        var started: [Child] = []
        for _ in 0..<settings.processes {
            do {
                let child = try start()
                child.inFlight.subtract(1, ordering: .relaxed)  // no call is waiting for it
                started.append(child)
            } catch {
                throw PluginLoadError(code: .crashedWhileLoading, path: path, reason: error.reason)
            }
        }
        for child in started {
            let outcome: Result<Void, any Error>
            do {
                try await withThrowingTaskGroup(of: Bool.self) { group in
                    group.addTask {
                        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                            let done: Result<Void, PluginLoadError>? = child.readiness.withLock { r in
                                if r.outcome == nil { r.waiter = continuation }
                                return r.outcome
                            }
                            if let done { continuation.resume(with: done.mapError { $0 as any Error }) }
                        }
                        return true
                    }
                    group.addTask {
                        // Resolves the wait above with a failure (a no-op once the host answered).
                        try? await Task.sleep(for: timeout)
                        if Task.isCancelled { return false }
                        child.loaded(
                            .failure(
                                PluginLoadError(
                                    code: .crashedWhileLoading, path: self.path,
                                    reason:
                                        "its host process (pid \(child.process.processIdentifier)) did not load it within \(timeout); is its entry point blocking?"
                                )))
                        return false
                    }
                    // The wait ends first (the host answered: stop the timer) or right after the timer resolved it.
                    while let answered = try await group.next() {
                        if answered { group.cancelAll() }
                    }
                }
                outcome = .success(())
            } catch {
                outcome = .failure(error)
            }
            if case .failure(let error) = outcome {
                await shutdown(grace: .milliseconds(500))
                throw (error as? PluginLoadError) ?? PluginLoadError(code: .crashedWhileLoading, path: path, reason: "\(error)")
            }
        }
    }

    /// One call through a host process.
    public func call(senderID: String, request: [UInt8], stream: (@Sendable (String) -> Bool)? = nil) async throws -> JSONValue {
        let started = ContinuousClock.now
        do {
            let reply = try await callUnmeasured(senderID: senderID, request: request, stream: stream)
            metrics.finished(after: ContinuousClock.now - started, error: nil)
            return reply
        } catch {
            metrics.finished(after: ContinuousClock.now - started, error: error)
            throw error
        }
    }

    private func callUnmeasured(senderID: String, request: [UInt8], stream: (@Sendable (String) -> Bool)?) async throws -> JSONValue {
        let child = try running()  // counted in its inFlight
        defer { child.inFlight.subtract(1, ordering: .relaxed) }
        let id = state.withLock { s in
            defer { s.nextID += 1 }
            return s.nextID
        }
        let frame = IsolationFrame.encode(type: IsolationFrame.call, id: id, body: IsolationFrame.callBody(sender: senderID, request: request))
        // No timer per call: the sweep (armed while calls are in flight) kills a host that is overdue.
        armSweep()
        let reply: JSONValue = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<JSONValue, any Error>) in
                child.pending.withLock { $0[id] = Pending(continuation: continuation, stream: stream, sent: .now) }
                let written = child.write(frame)
                if !written, let pending = child.pending.withLock({ $0.removeValue(forKey: id) }) {
                    pending.continuation.resume(throwing: PluginCallError(code: .crashed, plugin: self.name, reason: "its host process is gone"))
                }
            }
        } onCancel: {
            child.pending.withLock { $0.removeValue(forKey: id) }?.continuation.resume(
                throwing: PluginCallError(code: .cancelled, plugin: self.name, reason: "the turn no longer waits for this call"))
        }
        if crashesInARow.load(ordering: .relaxed) != 0 {
            state.withLock { $0.crashesInARow = 0 }
            crashesInARow.store(0, ordering: .relaxed)
        }
        return reply
    }

    /// How often the sweep looks for overdue calls while calls are in flight.
    private static let sweepInterval: Duration = .milliseconds(250)

    /// Arms the sweep unless it is armed (one relaxed load per call when it is).
    private func armSweep() {
        guard !sweepArmed.load(ordering: .relaxed), sweepArmed.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
        else { return }
        let nanos = Self.sweepInterval.components.attoseconds / 1_000_000_000 + Self.sweepInterval.components.seconds * 1_000_000_000
        DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(Int(nanos))) { [self] in sweep() }
    }

    /// Kills every host with a call unanswered past its deadline + ``PluginIsolationSettings/killGrace`` (its calls
    /// fail, the crash is reported as usual); re-arms itself while any call is in flight.
    private func sweep() {
        let limit = callDeadline + settings.killGrace
        let now = ContinuousClock.now
        let children = state.withLock { $0.children.compactMap { $0 } }
        var inFlight = false
        for child in children {
            let (count, oldest) = child.pending.withLock { p in (p.count, p.values.map(\.sent).min()) }
            if count > 0 { inFlight = true }
            if let oldest, now - oldest > limit, child.process.isRunning {
                logger.error(
                    "plugin \(name): its host process did not answer a call within \(limit); killing it (pid \(child.process.processIdentifier))")
                kill(child.process.processIdentifier, SIGKILL)
            }
        }
        sweepArmed.store(false, ordering: .releasing)
        if inFlight { armSweep() }
    }

    /// The host process for the next call, started if needed; throws at once while a restart backoff or the
    /// breaker holds and no host runs.
    private func running() throws(PluginCallError) -> Child {
        let now = ContinuousClock.now
        let decision: Result<Child?, PluginCallError> = state.withLock { s in
            // The least busy running host; an idle one is taken at once, a busy one when no other may start.
            let best = s.leastBusy()
            if let (child, load) = best, load == 0 || s.freePlace == nil {
                child.inFlight.add(1, ordering: .relaxed)
                return .success(child)
            }
            let blocked = (s.breakerOpenUntil.map { now < $0 } ?? false) || (s.notBefore.map { now < $0 } ?? false)
            if let (child, _) = best, blocked {
                child.inFlight.add(1, ordering: .relaxed)
                return .success(child)
            }
            if let open = s.breakerOpenUntil, now < open {
                return .failure(
                    PluginCallError(
                        code: .unavailable, plugin: name,
                        reason:
                            "circuit breaker open after \(s.crashes.count) crashes within \(settings.crashWindow) (last: \(s.lastCrash)); the next host starts in \(open - now)"
                    ))
            }
            if let notBefore = s.notBefore, now < notBefore {
                return .failure(
                    PluginCallError(code: .unavailable, plugin: name, reason: "its host process crashed (\(s.lastCrash)); restarting in \(notBefore - now)"))
            }
            return .success(nil)
        }
        switch decision {
        case .failure(let error): throw error
        case .success(let child?): return child
        case .success(nil): break
        }
        return try start()
    }

    private func start() throws(PluginCallError) -> Child {
        // Claim a free place first, so that two calls starting hosts at once do not start more than configured.
        let (claimed, other): (Int?, Child?) = state.withLock { s in
            if let slot = s.freePlace {
                s.starting.insert(slot)
                return (slot, nil)
            }
            let other = s.leastBusy()?.0
            other?.inFlight.add(1, ordering: .relaxed)
            return (nil, other)
        }
        guard let slot = claimed else {
            if let other { return other }  // every place was taken meanwhile
            throw PluginCallError(code: .unavailable, plugin: name, reason: "its host process is starting")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: settings.hostExecutable)
        var arguments = [
            "--plugin", path, "--name", name, "--kind", kind.rawValue, "--deadline-ms",
            String(callDeadline.components.seconds * 1000 + callDeadline.components.attoseconds / 1_000_000_000_000_000),
        ]
        arguments += ["--config", config.serialized]
        if let threadSafe { arguments += ["--thread-safe", threadSafe ? "true" : "false"] }
        if let v = settings.memoryLimit { arguments += ["--memory-limit", String(v)] }
        if let v = settings.addressSpaceLimit { arguments += ["--limit-as", String(v)] }
        if let v = settings.cpuSeconds { arguments += ["--limit-cpu", String(v)] }
        if let v = settings.openFiles { arguments += ["--limit-files", String(v)] }
        process.arguments = arguments
        let input = Pipe(), output = Pipe(), errors = Pipe()
        Self.prepareHost(process, stdin: input, stdout: output, stderr: errors)
        do {
            try process.run()
        } catch {
            state.withLock { _ = $0.starting.remove(slot) }
            throw PluginCallError(code: .unavailable, plugin: name, reason: "cannot start \(settings.hostExecutable): \(error)")
        }
        let child = Child(process: process, slot: slot, stdin: input.fileHandleForWriting)
        child.inFlight.add(1, ordering: .relaxed)  // the call that started it
        let restarted = state.withLock { s in
            s.starting.remove(slot)
            s.children[slot] = child
            return !s.crashes.isEmpty
        }
        if restarted { metrics.restarted() }
        breakerGauge.record(0)
        logger.info(
            "plugin \(name): host process started (pid \(process.processIdentifier), isolation: process\(settings.processes > 1 ? ", \(slot + 1) of \(settings.processes)" : ""))"
        )
        let stdout = output.fileHandleForReading
        let stderr = errors.fileHandleForReading
        // Reader threads: each ends when the process closes its end of the pipe, and closes its own descriptor.
        Thread.detachNewThread { [self] in readFrames(of: child, from: stdout) }
        Thread.detachNewThread { [self] in readErrors(of: child, from: stderr) }
        return child
    }

    private func readFrames(of child: Child, from handle: FileHandle) {
        var reader = IsolationFrameReader(fd: handle.fileDescriptor)
        while let frame = reader.next() {
            switch frame.type {
            case IsolationFrame.reply:
                let reply = try? JSONValue.parse(frame.body, maxDepth: JSONValue.inputParseDepth)
                if let pending = child.pending.withLock({ $0.removeValue(forKey: frame.id) }) {
                    if let reply {
                        pending.continuation.resume(returning: reply)
                    } else {
                        pending.continuation.resume(throwing: PluginCallError(code: .invalidJSON, plugin: name, reason: "reply is not valid JSON"))
                    }
                }
            case IsolationFrame.failed:
                let text = String(decoding: frame.body, as: UTF8.self)
                child.pending.withLock { $0.removeValue(forKey: frame.id) }?.continuation.resume(
                    throwing: PluginCallError(code: .pluginFailed, plugin: name, reason: text))
            case IsolationFrame.stream:
                let text = String(decoding: frame.body, as: UTF8.self)
                let sink = child.pending.withLock { $0[frame.id]?.stream }
                _ = sink?(text)
            case IsolationFrame.emit:
                if let value = try? JSONValue.parse(frame.body, maxDepth: JSONValue.inputParseDepth), let sender = value["sender"]?.stringValue,
                    let responses = value["responses"]?.arrayValue
                {
                    emit(EmittedMessage(senderID: sender, responses: responses, channel: value["channel"]?.stringValue, plugin: name))
                }
            case IsolationFrame.ready:
                if let info = try? JSONValue.parse(frame.body), let wants = info["tracker_events"]?.boolValue {
                    wantsTrackerEvents.store(wants, ordering: .relaxed)
                }
                child.loaded(.success(()))
            case IsolationFrame.recycle:
                // New calls go to a new host; this one finishes its calls and exits.
                child.retiring.store(true, ordering: .relaxed)
                state.withLock { s in
                    if s.children[child.slot] === child { s.children[child.slot] = nil }
                }
                metrics.recycled()
                logger.notice(
                    "plugin \(name): host process (pid \(child.process.processIdentifier)) reached its memory limit (\(String(decoding: frame.body, as: UTF8.self))); replacing it between calls"
                )
                _ = child.write(IsolationFrame.encode(type: IsolationFrame.shutdown, id: 0, body: []))
            case IsolationFrame.loadFailed:
                let text = String(decoding: frame.body, as: UTF8.self)
                let prefix = "plugin \(path): "
                child.loaded(
                    .failure(PluginLoadError(code: .initFailed, path: path, reason: text.hasPrefix(prefix) ? String(text.dropFirst(prefix.count)) : text)))
                state.withLock { $0.lastCrash = String(decoding: frame.body, as: UTF8.self) }
                logger.error("plugin \(name): its host process could not load it: \(String(decoding: frame.body, as: UTF8.self))")
            default:
                break
            }
        }
        // End of file: the process exited (or closed its stdout).
        try? handle.close()
        child.closeInput()
        child.process.waitUntilExit()
        ended(child)
    }

    private func readErrors(of child: Child, from handle: FileHandle) {
        let fd = handle.fileDescriptor
        defer {
            try? handle.close()
            child.stderrDone.signal()
        }
        var partial: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 8192)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            partial.append(contentsOf: chunk[0..<n])
            while let newline = partial.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: partial[..<newline], as: UTF8.self)
                partial.removeFirst(newline + 1)
                child.stderrTail.withLock { tail in
                    tail.append(line)
                    if tail.count > 20 { tail.removeFirst(tail.count - 20) }
                }
                logger.info("plugin \(name) (host process): \(line)")
            }
        }
    }

    /// The host process is gone: fail its calls, record the crash, log it.
    private func ended(_ child: Child) {
        let process = child.process
        // A host already replaced (memory limit): its end does not hold back its successor (no backoff, no breaker).
        if child.retiring.load(ordering: .relaxed) {
            let error = PluginCallError(code: .crashed, plugin: name, reason: "its host process exited while being replaced")
            let pending = child.pending.withLock { p in
                defer { p = [:] }
                return Array(p.values)
            }
            for p in pending { p.continuation.resume(throwing: error) }
            if process.terminationReason == .exit && process.terminationStatus == 0 {
                logger.info("plugin \(name): the replaced host process (pid \(process.processIdentifier)) finished its calls and exited")
            } else {
                metrics.crashed()
                let how =
                    process.terminationReason == .uncaughtSignal
                    ? "signal \(process.terminationStatus) (\(Self.signalName(process.terminationStatus)))" : "exit status \(process.terminationStatus)"
                logger.error(
                    "plugin \(name): the replaced host process (pid \(process.processIdentifier)) died with \(how) while finishing its calls; \(pending.count) call(s) get the fallback"
                )
            }
            return
        }
        let how: String
        if process.terminationReason == .uncaughtSignal {
            how = "signal \(process.terminationStatus) (\(Self.signalName(process.terminationStatus)))"
        } else {
            how = "exit status \(process.terminationStatus)"
        }
        let pending = child.pending.withLock { p in
            defer { p = [:] }
            return Array(p.values)
        }
        // The last lines: the stderr reader ends when the pipe closes with the process (bounded, in case something
        // the plugin started still holds the pipe).
        _ = child.stderrDone.wait(timeout: .now() + .milliseconds(200))
        let tail = child.stderrTail.withLock { $0 }
        child.loaded(
            .failure(
                PluginLoadError(
                    code: .crashedWhileLoading, path: path,
                    reason: "its host process died with \(how) while loading it; last stderr lines: \(tail.suffix(5).joined(separator: " | "))")))
        let now = ContinuousClock.now
        let (opened, inARow, crashes) = state.withLock { s -> (Bool, Int, Int) in
            if s.children[child.slot] === child { s.children[child.slot] = nil }
            s.crashes = s.crashes.filter { now - $0 < settings.crashWindow } + [now]
            s.crashesInARow += 1
            crashesInARow.store(s.crashesInARow, ordering: .relaxed)
            s.lastCrash = how
            let backoff = min(Duration.milliseconds(100) * (1 << min(s.crashesInARow - 1, 6)), .seconds(5))
            s.notBefore = now + backoff
            var opened = false
            if s.crashes.count >= settings.breakerThreshold {
                s.breakerOpenUntil = now + settings.breakerOpenFor
                opened = true
            }
            return (opened, s.crashesInARow, s.crashes.count)
        }
        metrics.crashed()
        if opened { breakerGauge.record(1) }
        let error = PluginCallError(code: .crashed, plugin: name, reason: "its host process died (\(how)) during the call")
        for p in pending { p.continuation.resume(throwing: error) }
        logger.error(
            "plugin \(name): host process (pid \(process.processIdentifier)) died with \(how); \(pending.count) call(s) get the fallback; crash \(inARow) in a row, \(crashes) within \(settings.crashWindow)\(opened ? "; circuit breaker open for \(settings.breakerOpenFor)" : ""); last stderr lines: \(tail.suffix(5).joined(separator: " | "))"
        )
    }

    /// Stops the host processes (asks them to finish, then kills them after `grace`).
    public func shutdown(grace: Duration = .seconds(2)) async {
        let children = state.withLock { s in
            defer { s.children = Array(repeating: nil, count: s.children.count) }
            return s.children.compactMap { $0 }
        }
        for child in children { _ = child.write(IsolationFrame.encode(type: IsolationFrame.shutdown, id: 0, body: [])) }
        let until = ContinuousClock.now + grace
        for child in children {
            while child.process.isRunning && ContinuousClock.now < until { try? await Task.sleep(for: .milliseconds(10)) }
            if child.process.isRunning { kill(child.process.processIdentifier, SIGKILL) }
        }
    }

    /// Wires a `parley-plugin-host` process's pipes and environment (the plugin's crash is reported by Parley;
    /// Swift's backtracer in the host would only delay it by seconds).
    static func prepareHost(_ process: Process, stdin: Any, stdout: Pipe, stderr: Pipe) {
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        var environment = ProcessInfo.processInfo.environment
        environment["SWIFT_BACKTRACE"] = "enable=no"
        process.environment = environment
    }

    static func signalName(_ signal: Int32) -> String {
        switch signal {
        case SIGSEGV: "SIGSEGV"
        case SIGABRT: "SIGABRT"
        case SIGKILL: "SIGKILL"
        case SIGBUS: "SIGBUS"
        case SIGFPE: "SIGFPE"
        case SIGILL: "SIGILL"
        case SIGTERM: "SIGTERM"
        case SIGXCPU: "SIGXCPU"
        case SIGTRAP: "SIGTRAP"
        default: "signal \(signal)"
        }
    }
}

/// An isolated formatter plugin as a ``MessageFormatter``: sends `{"channel", "sender_id", "responses"}` to its host
/// process and expects `{"responses": [{…}]}`, as ``PluginFormatter`` does in process.
public struct IsolatedFormatter: MessageFormatter {
    /// The isolated plugin.
    public let plugin: IsolatedPlugin

    /// The plugin's configured name.
    public var name: String { plugin.name }

    /// Formats `responses` for `channel` in the plugin's host process. Throws ``PluginCallError``.
    public func format(_ responses: [JSONValue], channel: String, senderID: String) async throws -> [JSONValue] {
        let request: JSONValue = ["channel": .string(channel), "sender_id": .string(senderID), "responses": .array(responses)]
        var bytes: [UInt8] = []
        request.serialize(into: &bytes)
        let reply = try await plugin.call(senderID: senderID, request: bytes)
        return try PluginFormatter.parseReply(reply, plugin: plugin.name)
    }
}
