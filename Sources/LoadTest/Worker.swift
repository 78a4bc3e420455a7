import Histogram
import NIOCore
import NIOPosix

/// Monotonic nanoseconds.
@inline(__always) func monotonicNanos() -> UInt64 { NIODeadline.now().uptimeNanoseconds }

/// Counters of one worker; merged across workers at the end.
struct WorkerStats {
    var histogram = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000_000, numberOfSignificantValueDigits: .three)
    var errors = [Int](repeating: 0, count: ErrorKind.allCases.count)
    var established = 0
    var completed = 0
    var repliesTotal = 0
    var otherEvents = 0
    var eioPings = 0
    var wsPings = 0
    var lastCompletionNs: UInt64 = 0

    var errorTotal: Int { errors.reduce(0, +) }

    mutating func merge(_ o: WorkerStats) {
        histogram.add(o.histogram)
        for i in errors.indices { errors[i] += o.errors[i] }
        established += o.established
        completed += o.completed
        repliesTotal += o.repliesTotal
        otherEvents += o.otherEvents
        eioPings += o.eioPings
        wsPings += o.wsPings
        lastCompletionNs = max(lastCompletionNs, o.lastCompletionNs)
    }
}

/// A cheap, point-in-time view of a worker for the progress line.
struct WorkerSnapshot: Sendable {
    var established = 0
    var alive = 0
    var completed = 0
    var repliesTotal = 0
    var errors = 0
}

/// Immutable per-run settings shared by a worker's connections, pre-encoded.
struct SharedSettings {
    let raw: Bool
    let hostHeader: String
    let port: Int
    let path: String
    let messageSize: Int
    let sessionRequest: [UInt8]
    let confirmEvent: [UInt8]
    let botEvent: [UInt8]
    let userEventName: String
    let replyTimeoutNs: UInt64
    let establishTimeoutNs: UInt64

    init(_ o: LoadTestOptions) {
        raw = o.proto == .raw
        hostHeader = o.host
        port = o.port
        path = o.requestPath
        messageSize = o.effectiveMessageSize
        sessionRequest = SocketIOOutbound.sessionRequest(event: o.requestEvent)
        confirmEvent = Array(o.confirmEvent.utf8)
        botEvent = Array(o.botEvent.utf8)
        userEventName = o.userEvent
        replyTimeoutNs = UInt64(o.replyTimeout * 1e9)
        establishTimeoutNs = UInt64(o.establishTimeout * 1e9)
    }
}

/// Drives a share of the connections on one event loop. Every method and property is confined to
/// `loop` (callers hop with `loop.submit`/`flatSubmit`); that is why the type is `@unchecked Sendable`.
final class Worker: @unchecked Sendable {
    let loop: any EventLoop
    let shared: SharedSettings
    let scenario: LoadScenario
    let address: SocketAddress
    let idBase: Int
    var stats = WorkerStats()

    private var connections: [Int: LoadConnection] = [:]
    private var nextID = 0
    private var toOpen = 0
    private var target = 0
    private var inFlight = 0
    private var maxInFlight = 1
    private var finishedSessions = 0
    private var openPromise: EventLoopPromise<Void>?
    private var sending = false
    private var recording = false
    private var measured = 0
    private var outstanding = 0
    private var drainPromise: EventLoopPromise<Void>?
    private var sweepTask: RepeatedTask?

    init(loop: any EventLoop, options: LoadTestOptions, address: SocketAddress, idBase: Int) {
        self.loop = loop
        self.shared = SharedSettings(options)
        self.scenario = options.scenario
        self.address = address
        self.idBase = idBase
    }

    // MARK: Phases (called through loop.submit / flatSubmit)

    /// Opens `count` sessions with at most `inFlight` being set up at once. The future succeeds when
    /// each one is established or failed (`connect`: when each whole session is done).
    func open(count: Int, inFlight: Int) -> EventLoopFuture<Void> {
        let promise = loop.makePromise(of: Void.self)
        openPromise = promise
        toOpen = count
        target = count
        maxInFlight = max(1, inFlight)
        finishedSessions = 0
        if sweepTask == nil {
            sweepTask = loop.scheduleRepeatedTask(initialDelay: .milliseconds(50), delay: .milliseconds(50)) { [self] _ in sweep() }
        }
        if count == 0 { promise.succeed() } else { launch() }
        return promise.futureResult
    }

    /// `rtt`: every ready connection starts its closed loop.
    func startSending() {
        sending = true
        let now = monotonicNanos()
        for conn in connections.values where conn.phase == .ready && !conn.awaitingReply {
            send(conn, now: now)
        }
    }

    /// Starts recording latencies and counting round trips.
    func beginRecording() {
        stats.histogram.reset()
        measured = 0
        recording = true
    }

    /// Stops recording and stops sending new messages; returns the round trips recorded.
    func endRecording() -> Int {
        recording = false
        sending = false
        return measured
    }

    /// Waits until no message is outstanding, at most `maxWait`; what is still outstanding then is a timeout.
    func drain(maxWait: TimeAmount) -> EventLoopFuture<Void> {
        if outstanding == 0 { return loop.makeSucceededVoidFuture() }
        let promise = loop.makePromise(of: Void.self)
        drainPromise = promise
        loop.scheduleTask(in: maxWait) { [self] in
            guard let p = drainPromise else { return }
            drainPromise = nil
            for conn in Array(connections.values) where conn.awaitingReply { failed(conn, .timeout) }
            p.succeed()
        }
        return promise.futureResult
    }

    /// A snapshot for the progress line.
    func snapshot() -> WorkerSnapshot {
        WorkerSnapshot(
            established: stats.established,
            alive: connections.values.reduce(0) { $0 + ($1.phase == .ready ? 1 : 0) },
            completed: stats.completed, repliesTotal: stats.repliesTotal, errors: stats.errorTotal)
    }

    /// Sessions that are open and usable now.
    func aliveCount() -> Int { connections.values.reduce(0) { $0 + ($1.phase == .ready ? 1 : 0) } }

    /// Closes every connection (WebSocket close first) and stops the timeout sweep.
    func closeAll() -> EventLoopFuture<Void> {
        sweepTask?.cancel()
        sweepTask = nil
        sending = false
        let futures = connections.values.compactMap { conn -> EventLoopFuture<Void>? in
            let f = conn.context?.channel.closeFuture
            conn.finish(graceful: true)
            return f
        }
        connections.removeAll()
        return EventLoopFuture.andAllComplete(futures, on: loop)
    }

    // MARK: Connection lifecycle

    private func launch() {
        while inFlight < maxInFlight && toOpen > 0 {
            toOpen -= 1
            inFlight += 1
            startConnection()
        }
    }

    private func startConnection() {
        let id = idBase + nextID
        nextID += 1
        let conn = LoadConnection(id: id, worker: self, startNs: monotonicNanos())
        connections[id] = conn
        let bound = NIOLoopBound(conn, eventLoop: loop)
        ClientBootstrap(group: loop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { bound.value.upgraded = try bound.value.configure(channel) }
            }
            .connect(to: address)
            .flatMap { channel in
                if bound.value.phase == .connecting { bound.value.phase = .handshaking }
                return bound.value.upgraded ?? channel.eventLoop.makeSucceededFuture(false)
            }
            .whenComplete { [self] result in
                let c = bound.value
                guard c.phase != .finished else { return }
                switch result {
                case .success(true): break
                case .success(false): failed(c, .handshake)
                case .failure: failed(c, c.phase <= .connecting ? .connect : .handshake)
                }
            }
    }

    private func send(_ conn: LoadConnection, now: UInt64) {
        conn.sendMessage(now: now)
        if conn.awaitingReply { outstanding += 1 }
    }

    /// A session is established (sio: `session_confirm` received; raw: upgraded).
    func sessionReady(_ conn: LoadConnection) {
        switch scenario {
        case .connect:
            send(conn, now: monotonicNanos())
        case .rtt, .idle:
            stats.established += 1
            inFlight -= 1
            finishedSessions += 1
            if sending { send(conn, now: monotonicNanos()) }
            launch()
            checkOpenDone()
        }
    }

    /// The outstanding message of `conn` got its exact reply.
    func replied(_ conn: LoadConnection) {
        let now = monotonicNanos()
        conn.awaitingReply = false
        outstanding -= 1
        stats.repliesTotal += 1
        switch scenario {
        case .connect:
            stats.established += 1
            stats.completed += 1
            stats.histogram.record(now &- conn.startNs)
            stats.lastCompletionNs = now
            connections[conn.id] = nil
            conn.finish(graceful: true)
            inFlight -= 1
            finishedSessions += 1
            launch()
            checkOpenDone()
        case .rtt, .idle:
            if recording {
                stats.histogram.record(now &- conn.sentNs)
                stats.completed += 1
                measured += 1
            }
            if sending {
                send(conn, now: now)
            } else if outstanding == 0, let p = drainPromise {
                drainPromise = nil
                p.succeed()
            }
        }
    }

    /// `conn` failed with `kind`: count it, close it, and keep the run going.
    func failed(_ conn: LoadConnection, _ kind: ErrorKind) {
        guard conn.phase != .finished else { return }
        let wasReady = conn.phase == .ready
        let wasWaiting = conn.awaitingReply
        conn.finish(graceful: kind == .mismatch || kind == .timeout)
        connections[conn.id] = nil
        stats.errors[kind.rawValue] += 1
        if wasWaiting {
            outstanding -= 1
            if outstanding == 0, let p = drainPromise {
                drainPromise = nil
                p.succeed()
            }
        }
        if scenario == .connect || !wasReady {
            inFlight -= 1
            finishedSessions += 1
            launch()
            checkOpenDone()
        }
    }

    private func checkOpenDone() {
        if finishedSessions >= target, toOpen == 0, let p = openPromise {
            openPromise = nil
            p.succeed()
        }
    }

    /// Every 50 ms: replies past their deadline and sessions that did not open in time are timeouts.
    private func sweep() {
        let now = monotonicNanos()
        var late: [LoadConnection] = []
        for conn in connections.values {
            if conn.awaitingReply {
                if now &- conn.sentNs > shared.replyTimeoutNs { late.append(conn) }
            } else if conn.phase < .ready, now &- conn.startNs > shared.establishTimeoutNs {
                late.append(conn)
            }
        }
        for conn in late { failed(conn, .timeout) }
    }
}
