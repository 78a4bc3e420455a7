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
    /// How long past a call's deadline the host may take to answer before it is killed and restarted.
    public var killGrace: Duration
    /// Resource limits of the host process: address space in bytes (`RLIMIT_AS`), CPU seconds, open files;
    /// nil: inherited.
    public var memoryLimit: Int?
    public var cpuSeconds: Int?
    public var openFiles: Int?

    public init(
        hostExecutable: String, breakerThreshold: Int = 5, crashWindow: Duration = .seconds(60), breakerOpenFor: Duration = .seconds(30),
        killGrace: Duration = .seconds(2), memoryLimit: Int? = nil, cpuSeconds: Int? = nil, openFiles: Int? = nil
    ) {
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

/// An agent plugin loaded in a host process of its own (`isolation: process`): the same `.so`, the same header,
/// but a crash, an `abort()` or a hang costs only the turns it was answering.
///
/// The host process (`parley-plugin-host`) loads the plugin with the in-process loader and serves calls framed
/// over its stdin/stdout (``IsolationFrame``); its stderr (the plugin's log lines and whatever it prints) is
/// relayed to the log and the last lines are kept for the crash report. The process is started on the first call.
/// When it dies, every call in flight fails (the dispatcher sends the fallback), the crash is logged with the
/// signal and the last stderr lines, and the next call starts a new host — not before a backoff (0.1 s doubling
/// to 5 s per crash in a row). ``PluginIsolationSettings/breakerThreshold`` crashes within
/// ``PluginIsolationSettings/crashWindow`` open a circuit breaker: calls fail at once, without waiting for a
/// deadline, until ``PluginIsolationSettings/breakerOpenFor`` passed; then one host is tried again (half-open).
/// A host that does not answer a call by its deadline plus ``PluginIsolationSettings/killGrace`` is killed.
///
/// Threads: one reader thread per running host for its stdout frames and one for its stderr (blocking reads of a
/// pipe; they end with the process). Calls write their frame from the calling thread under a lock.
public final class IsolatedPlugin: Agent, Sendable {
    public let name: String
    public let path: String
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
    }

    private final class Child: @unchecked Sendable {
        let process: Process
        /// The write end of the host's stdin. Its descriptor is only used under `input` and closed once, through
        /// the FileHandle (a descriptor closed twice could be another connection's by then).
        private let handle: FileHandle
        private let input = Mutex<Bool>(true)
        let pending = Mutex<[UInt64: Pending]>([:])
        let stderrTail = Mutex<[String]>([])
        /// Signalled when the stderr reader has read everything (the pipe closed with the process).
        let stderrDone = DispatchSemaphore(value: 0)
        init(process: Process, stdin: FileHandle) {
            self.process = process
            self.handle = stdin
        }

        /// Writes a frame; false when the host is gone.
        func write(_ frame: [UInt8]) -> Bool {
            input.withLock { open in open && writeAll(handle.fileDescriptor, frame) }
        }

        /// No more writes; closes the descriptor.
        func closeInput() {
            input.withLock { open in
                guard open else { return }
                open = false
                try? handle.close()
            }
        }
    }

    private struct State {
        var child: Child?
        var nextID: UInt64 = 1
        var crashes: [ContinuousClock.Instant] = []
        var crashesInARow = 0
        var notBefore: ContinuousClock.Instant?
        var breakerOpenUntil: ContinuousClock.Instant?
        var lastCrash = ""
    }

    private let state = Mutex(State())
    private let crashCounter: Counter
    private let restartCounter: Counter
    private let breakerGauge: Gauge

    /// - Parameters:
    ///   - deadline: the agent's deadline (the dispatcher's fallback comes at it); `callDeadline` is the per-call
    ///     deadline the host process applies (the plugin's cancel hook).
    ///   - emit: where the plugin's `emit`s go (the plugin host's queue).
    public init(
        name: String, path: String, deadline: Duration?, callDeadline: Duration, config: JSONValue, threadSafe: Bool?, trackerEvents: Int?,
        settings: PluginIsolationSettings, logger: Logger, emit: @escaping @Sendable (EmittedMessage) -> Void
    ) {
        self.name = name
        self.path = path
        self.deadline = deadline
        self.callDeadline = callDeadline
        self.config = config
        self.threadSafe = threadSafe
        self.trackerEvents = trackerEvents
        self.settings = settings
        self.logger = logger
        self.emit = emit
        crashCounter = Counter(label: "parley_plugin_crashes_total", dimensions: [("plugin", name)])
        restartCounter = Counter(label: "parley_plugin_restarts_total", dimensions: [("plugin", name)])
        breakerGauge = Gauge(label: "parley_plugin_breaker_open", dimensions: [("plugin", name)])
        // A write to the pipe of a host that just died must be an error, not a signal that kills the server.
        signal(SIGPIPE, SIG_IGN)
    }

    public var trackerEventLimit: Int? { trackerEvents }

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

    /// One call through the host process.
    public func call(senderID: String, request: [UInt8], stream: (@Sendable (String) -> Bool)? = nil) async throws -> JSONValue {
        let child = try running()
        let id = state.withLock { s in
            defer { s.nextID += 1 }
            return s.nextID
        }
        let frame = IsolationFrame.encode(type: IsolationFrame.call, id: id, body: IsolationFrame.callBody(sender: senderID, request: request))
        let limit = callDeadline + settings.killGrace
        return try await withThrowingTaskGroup(of: JSONValue?.self) { group in
            group.addTask {
                try await withTaskCancellationHandler {
                    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<JSONValue, any Error>) in
                        child.pending.withLock { $0[id] = Pending(continuation: continuation, stream: stream) }
                        let written = child.write(frame)
                        if !written, let pending = child.pending.withLock({ $0.removeValue(forKey: id) }) {
                            pending.continuation.resume(throwing: PluginCallError(code: .crashed, plugin: self.name, reason: "its host process is gone"))
                        }
                    }
                } onCancel: {
                    child.pending.withLock { $0.removeValue(forKey: id) }?.continuation.resume(
                        throwing: PluginCallError(code: .cancelled, plugin: self.name, reason: "the turn no longer waits for this call"))
                }
            }
            group.addTask {
                try? await Task.sleep(for: limit)
                return nil
            }
            let first = try await group.next() ?? nil
            group.cancelAll()
            if let first {
                state.withLock { $0.crashesInARow = 0 }
                return first
            }
            // No answer by the deadline plus the grace period: the host is hung; kill it (its calls fail).
            logger.error(
                "plugin \(name): its host process did not answer a call within \(limit); killing it (pid \(child.process.processIdentifier))")
            kill(child.process.processIdentifier, SIGKILL)
            throw PluginCallError(code: .deadlineExceeded, plugin: name, reason: "no reply within \(limit); its host process was killed")
        }
    }

    /// The running host, started if needed; throws at once while a restart backoff or the breaker holds.
    private func running() throws(PluginCallError) -> Child {
        let now = ContinuousClock.now
        let decision: Result<Child?, PluginCallError> = state.withLock { s in
            if let child = s.child { return .success(child) }
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
        let process = Process()
        process.executableURL = URL(fileURLWithPath: settings.hostExecutable)
        var arguments = [
            "--plugin", path, "--name", name, "--deadline-ms",
            String(callDeadline.components.seconds * 1000 + callDeadline.components.attoseconds / 1_000_000_000_000_000),
        ]
        arguments += ["--config", config.serialized]
        if let threadSafe { arguments += ["--thread-safe", threadSafe ? "true" : "false"] }
        if let v = settings.memoryLimit { arguments += ["--limit-as", String(v)] }
        if let v = settings.cpuSeconds { arguments += ["--limit-cpu", String(v)] }
        if let v = settings.openFiles { arguments += ["--limit-files", String(v)] }
        process.arguments = arguments
        let input = Pipe(), output = Pipe(), errors = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = errors
        // The plugin's crash is reported here; Swift's backtracer in the host would only delay it by seconds.
        var environment = ProcessInfo.processInfo.environment
        environment["SWIFT_BACKTRACE"] = "enable=no"
        process.environment = environment
        do {
            try process.run()
        } catch {
            throw PluginCallError(code: .unavailable, plugin: name, reason: "cannot start \(settings.hostExecutable): \(error)")
        }
        let child = Child(process: process, stdin: input.fileHandleForWriting)
        let restarted = state.withLock { s in
            s.child = child
            return !s.crashes.isEmpty
        }
        if restarted { restartCounter.increment() }
        breakerGauge.record(0)
        logger.info("plugin \(name): host process started (pid \(process.processIdentifier), isolation: process)")
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
            case IsolationFrame.loadFailed:
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
        let now = ContinuousClock.now
        let (opened, inARow, crashes) = state.withLock { s -> (Bool, Int, Int) in
            if s.child === child { s.child = nil }
            s.crashes = s.crashes.filter { now - $0 < settings.crashWindow } + [now]
            s.crashesInARow += 1
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
        crashCounter.increment()
        if opened { breakerGauge.record(1) }
        let error = PluginCallError(code: .crashed, plugin: name, reason: "its host process died (\(how)) during the call")
        for p in pending { p.continuation.resume(throwing: error) }
        logger.error(
            "plugin \(name): host process (pid \(process.processIdentifier)) died with \(how); \(pending.count) call(s) get the fallback; crash \(inARow) in a row, \(crashes) within \(settings.crashWindow)\(opened ? "; circuit breaker open for \(settings.breakerOpenFor)" : ""); last stderr lines: \(tail.suffix(5).joined(separator: " | "))"
        )
    }

    /// Stops the host process (asks it to finish, then kills it after `grace`).
    public func shutdown(grace: Duration = .seconds(2)) async {
        guard
            let child = state.withLock({ s in
                defer { s.child = nil }; return s.child
            })
        else { return }
        _ = child.write(IsolationFrame.encode(type: IsolationFrame.shutdown, id: 0, body: []))
        let until = ContinuousClock.now + grace
        while child.process.isRunning && ContinuousClock.now < until { try? await Task.sleep(for: .milliseconds(10)) }
        if child.process.isRunning { kill(child.process.processIdentifier, SIGKILL) }
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
