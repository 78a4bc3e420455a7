import Histogram
import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A configuration or setup problem that stops a run before it starts.
public struct LoadTestError: Error, Sendable, CustomStringConvertible {
    /// What went wrong and how to fix it.
    public var description: String
    /// Creates an error with a message naming the thing and the fix.
    public init(_ description: String) { self.description = description }
}

/// The Parley load generator: WebSocket + Engine.IO v4 + Socket.IO v5 + the Rasa channel events, on
/// SwiftNIO, with one channel handler per simulated user.
///
/// ```swift
/// var o = LoadTestOptions()
/// o.scenario = .rtt; o.clients = 100; o.port = 5005
/// let result = try await LoadGenerator.run(o)
/// print(result.json.serialized)
/// ```
public enum LoadGenerator {
    /// Runs one scenario to the end and returns its result.
    ///
    /// Every run is bounded: sessions that do not open within `establishTimeout` and replies that do
    /// not arrive within `replyTimeout` count as errors, and the run goes on without them.
    /// `progress` (if given) receives a one-line status about once a second.
    public static func run(_ options: LoadTestOptions, progress: (@Sendable (String) -> Void)? = nil) async throws -> LoadTestResult {
        if let problem = options.validate() { throw LoadTestError(problem) }
        let address: SocketAddress
        do {
            address = try SocketAddress.makeAddressResolvingHost(options.host, port: options.port)
        } catch {
            throw LoadTestError("cannot resolve --host \(options.host): \(error); use an IP address such as 127.0.0.1")
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: options.threads)
        let loops = (0..<options.threads).map { _ in group.next() }
        let workers = loops.enumerated().map { i, loop in
            Worker(loop: loop, options: options, address: address, idBase: i * 10_000_000)
        }
        do {
            let result = try await Runner(options: options, workers: workers, progress: progress).run()
            try await group.shutdownGracefully()
            return result
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    /// Splits `total` into `parts` nearly equal shares.
    static func share(_ total: Int, _ parts: Int, _ index: Int) -> Int {
        total / parts + (index < total % parts ? 1 : 0)
    }
}

/// Sequences the phases of one run across the workers.
struct Runner {
    let options: LoadTestOptions
    let workers: [Worker]
    let progress: (@Sendable (String) -> Void)?

    func onAll<T: Sendable>(_ body: @escaping @Sendable (Worker) -> T) async throws -> [T] {
        var out: [T] = []
        for w in workers { out.append(try await w.loop.submit { body(w) }.get()) }
        return out
    }

    func onAllFutures(_ body: @escaping @Sendable (Worker) -> EventLoopFuture<Void>) async throws {
        let futures = workers.map { w in w.loop.flatSubmit { body(w) } }
        for f in futures { try await f.get() }
    }

    func open(count: Int, inFlight: Int) async throws {
        let n = workers.count
        let counts = (0..<n).map { LoadGenerator.share(count, n, $0) }
        let ks = (0..<n).map { max(1, LoadGenerator.share(inFlight, n, $0)) }
        let futures = workers.enumerated().map { i, w in w.loop.flatSubmit { w.open(count: counts[i], inFlight: ks[i]) } }
        let label = options.scenario == .connect ? "sessions done" : "established"
        try await waitAll(futures, label: label, total: count)
    }

    /// Awaits `futures`, printing progress once a second.
    func waitAll(_ futures: [EventLoopFuture<Void>], label: String, total: Int) async throws {
        let start = monotonicNanos()
        let done = futures.first!.eventLoop.makePromise(of: Void.self)
        EventLoopFuture.andAllComplete(futures, on: done.futureResult.eventLoop).cascade(to: done)
        let box = DoneFlag()
        done.futureResult.whenComplete { _ in box.set() }
        while !box.isSet {
            try await Task.sleep(for: .milliseconds(100))
            if progress != nil, (monotonicNanos() - start) / 100_000_000 % 10 == 0 {
                let s = try await snapshot()
                let n = options.scenario == .connect ? s.completed + s.errors : s.established + s.errors
                report("\(options.scenario.rawValue): \(label) \(n)/\(total), errors \(s.errors)", start: start)
            }
        }
        try await done.futureResult.get()
    }

    func snapshot() async throws -> WorkerSnapshot {
        var total = WorkerSnapshot()
        for s in try await onAll({ $0.snapshot() }) {
            total.established += s.established
            total.alive += s.alive
            total.completed += s.completed
            total.repliesTotal += s.repliesTotal
            total.errors += s.errors
        }
        return total
    }

    func report(_ line: String, start: UInt64) {
        let t = Double(monotonicNanos() - start) / 1e9
        progress?("[\(String(format1(t)))s] \(line)")
    }

    /// Sleeps `seconds`, printing a progress line each second.
    func hold(_ seconds: Double, label: String, runStart: UInt64, stopEarly: (@Sendable (WorkerSnapshot) -> Bool)? = nil) async throws {
        let end = monotonicNanos() + UInt64(seconds * 1e9)
        var lastReplies = try await snapshot().repliesTotal
        var lastTime = monotonicNanos()
        while true {
            let now = monotonicNanos()
            if now >= end { return }
            let step = min(end - now, stopEarly == nil ? 1_000_000_000 : 100_000_000)
            try await Task.sleep(for: .nanoseconds(Int64(step)))
            if progress != nil || stopEarly != nil {
                let s = try await snapshot()
                if let stopEarly, stopEarly(s) { return }
                let t = monotonicNanos()
                if t - lastTime >= 900_000_000 {
                    let rate = Double(s.repliesTotal - lastReplies) / (Double(t - lastTime) / 1e9)
                    lastReplies = s.repliesTotal
                    lastTime = t
                    var line = "\(options.scenario.rawValue) \(label): alive \(s.alive), errors \(s.errors)"
                    if options.scenario == .rtt { line += ", \(Int(rate)) msgs/s" }
                    report(line, start: runStart)
                }
            }
        }
    }

    func run() async throws -> LoadTestResult {
        let o = options
        let runStart = monotonicNanos()
        var result = LoadTestResult(scenario: o.scenario, proto: o.proto)
        result.inFlight = o.inFlight
        result.messageSize = o.effectiveMessageSize
        result.serverPID = o.serverPID
        var cpu0 = SystemStats.CPUSnapshot.take(server: o.serverPID)
        var cpu1 = cpu0
        switch o.scenario {
        case .rtt:
            result.clients = o.clients
            try await open(count: o.clients, inFlight: min(o.inFlight, o.clients))
            _ = try await onAll { $0.startSending() }
            if o.warmup > 0 { try await hold(o.warmup, label: "warm-up", runStart: runStart) }
            _ = try await onAll { $0.beginRecording() }
            cpu0 = SystemStats.CPUSnapshot.take(server: o.serverPID)
            if o.maxMessages > 0 {
                let cap = o.maxMessages
                try await hold(o.duration, label: "measuring", runStart: runStart) { $0.completed >= cap }
            } else {
                try await hold(o.duration, label: "measuring", runStart: runStart)
            }
            _ = try await onAll { $0.endRecording() }
            cpu1 = SystemStats.CPUSnapshot.take(server: o.serverPID)
            let wait = TimeAmount.nanoseconds(Int64(min(o.replyTimeout, 5) * 1e9))
            try await onAllFutures { $0.drain(maxWait: wait) }
        case .connect:
            result.sessions = o.sessions
            try await open(count: o.sessions, inFlight: o.inFlight)
            cpu1 = SystemStats.CPUSnapshot.take(server: o.serverPID)
        case .idle:
            result.sessions = o.sessions
            if let pid = o.serverPID { result.rssBeforeKB = SystemStats.statusKB(pid, "VmRSS") }
            try await open(count: o.sessions, inFlight: o.inFlight)
            try await hold(1, label: "settling", runStart: runStart)
            if let pid = o.serverPID { result.rssEstablishedKB = SystemStats.statusKB(pid, "VmRSS") }
            cpu0 = SystemStats.CPUSnapshot.take(server: o.serverPID)
            try await hold(o.duration, label: "holding", runStart: runStart)
            if let pid = o.serverPID { result.rssEndKB = SystemStats.statusKB(pid, "VmRSS") }
            cpu1 = SystemStats.CPUSnapshot.take(server: o.serverPID)
            result.aliveAtEnd = try await onAll { $0.aliveCount() }.reduce(0, +)
        }
        if let pid = o.serverPID { result.serverHWMKB = SystemStats.statusKB(pid, "VmHWM") }
        // Merge statistics, then close everything (bounded: close futures or 5 s).
        var stats = WorkerStats()
        for w in workers { stats.merge(try await w.loop.submit { w.stats }.get()) }
        try await closeAll()
        let end = monotonicNanos()

        result.established = stats.established
        result.completed = stats.completed
        result.otherEvents = stats.otherEvents
        result.eioPings = stats.eioPings
        result.wsPings = stats.wsPings
        var counts = ErrorKind.allCases.map { ($0.key, stats.errors[$0.rawValue]) }
        let unfinished = o.scenario == .connect ? max(0, o.sessions - stats.completed - stats.errorTotal) : 0
        counts.append(("unfinished", unfinished))
        result.errorCounts = counts
        let h = stats.histogram
        if h.totalCount > 0 {
            result.latency = LatencySummary(
                p50: Double(h.valueAtPercentile(50)) / 1000, p90: Double(h.valueAtPercentile(90)) / 1000,
                p99: Double(h.valueAtPercentile(99)) / 1000, max: Double(h.max) / 1000, mean: h.mean / 1000)
        }
        switch o.scenario {
        case .rtt: result.windowSeconds = Double(cpu1.time - cpu0.time) / 1e9
        case .connect: result.windowSeconds = Double((stats.lastCompletionNs > runStart ? stats.lastCompletionNs : cpu1.time) - runStart) / 1e9
        case .idle: result.windowSeconds = Double(cpu1.time - cpu0.time) / 1e9
        }
        let cw = Double(cpu1.time - cpu0.time) / 1e9
        if cw > 0 {
            result.genCPUPercent = (cpu1.own - cpu0.own) / cw * 100
            if let a = cpu0.server, let b = cpu1.server { result.serverCPUPercent = (b - a) / cw * 100 }
            if let a = cpu0.machine, let b = cpu1.machine {
                let busy = (b.busy - a.busy) / cw * 100
                result.machineBusyPercent = busy
                result.otherCPUPercent = busy - result.genCPUPercent - (result.serverCPUPercent ?? 0)
                result.stealPercent = (b.steal - a.steal) / cw * 100
            }
        }
        result.wallSeconds = Double(end - runStart) / 1e9
        return result
    }

    func closeAll() async throws {
        let futures = workers.map { w in w.loop.flatSubmit { w.closeAll() } }
        let box = DoneFlag()
        EventLoopFuture.andAllComplete(futures, on: workers[0].loop).whenComplete { _ in box.set() }
        let deadline = monotonicNanos() + 5_000_000_000
        while !box.isSet && monotonicNanos() < deadline { try await Task.sleep(for: .milliseconds(20)) }
    }
}

/// A flag set from an event loop and read from a task.
final class DoneFlag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}

func format1(_ v: Double) -> String {
    let tenths = Int((v * 10).rounded())
    return "\(tenths / 10).\(tenths % 10)"
}
