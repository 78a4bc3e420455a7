import EngineIO
import ParleyJSON
import SocketIO
import Synchronization

/// An in-memory Engine.IO session: records what the Socket.IO layer sends and lets a test feed packets
/// in, as the real transports do (delegate calls one at a time; `close` reports the close once).
final class TestConnection: EngineConnection {
    let id: String
    let handshake: EngineHandshake

    private struct State {
        var sent: [EngineMessage] = []
        var closed = false
        var closeReason: EngineCloseReason?
        var delegate: (any EngineConnectionDelegate)?
    }

    private let state = Mutex(State())

    init(id: String = "eio-" + String(Int.random(in: 1000...9999)), handshake: EngineHandshake = EngineHandshake()) {
        self.id = id
        self.handshake = handshake
    }

    /// Opens the session on `server`, as the transport does after the handshake.
    static func open(on server: SocketIOServer, handshake: EngineHandshake = EngineHandshake()) -> TestConnection {
        let connection = TestConnection(handshake: handshake)
        let delegate = server.engineServer(didOpen: connection)
        connection.state.withLock { $0.delegate = delegate }
        return connection
    }

    func send(_ messages: [EngineMessage]) {
        state.withLock { s in
            guard !s.closed else { return }
            s.sent.append(contentsOf: messages)
        }
    }

    func close() { closeFromEngine(.serverClose) }

    /// Ends the session as the transport would (client close, ping timeout...).
    func closeFromEngine(_ reason: EngineCloseReason) {
        let delegate: (any EngineConnectionDelegate)? = state.withLock { s in
            guard !s.closed else { return nil }
            s.closed = true
            s.closeReason = reason
            return s.delegate
        }
        delegate?.engineConnection(self, didCloseWith: reason)
    }

    /// Feeds a Socket.IO packet as the payload of an Engine.IO message (`"40"` on the wire is `"0"` here).
    func receive(_ text: String) {
        let delegate = state.withLock { $0.closed ? nil : $0.delegate }
        delegate?.engineConnection(self, didReceive: .text(text))
    }

    /// Feeds a binary Engine.IO message (an attachment).
    func receive(binary: [UInt8]) {
        let delegate = state.withLock { $0.closed ? nil : $0.delegate }
        delegate?.engineConnection(self, didReceive: .binary(binary))
    }

    var isClosed: Bool { state.withLock { $0.closed } }
    var closeReason: EngineCloseReason? { state.withLock { $0.closeReason } }

    /// Everything sent so far, text messages as strings and binary ones as `<bin:1,2,3>`.
    var sent: [String] {
        state.withLock { $0.sent.map(Self.render) }
    }

    /// The raw messages sent so far.
    var sentMessages: [EngineMessage] { state.withLock { $0.sent } }

    /// Returns and forgets what was sent so far.
    func take() -> [String] {
        state.withLock { s in
            defer { s.sent = [] }
            return s.sent.map(Self.render)
        }
    }

    static func render(_ m: EngineMessage) -> String {
        switch m {
        case .text(let t): t
        case .binary(let b): "<bin:" + b.map(String.init).joined(separator: ",") + ">"
        }
    }

    /// Connects to a namespace and returns the socket id from the CONNECT reply; forgets that reply but
    /// keeps everything else (earlier messages and what the connection handlers sent after it).
    @discardableResult
    func connect(_ namespace: String = "/", auth: String = "") throws -> String {
        let prefix = namespace == "/" ? "0" : "0\(namespace),"
        let before = state.withLock { $0.sent.count }
        receive(prefix + auth)
        let first: EngineMessage? = state.withLock { s in s.sent.count > before ? s.sent.remove(at: before) : nil }
        guard case .text(let reply)? = first, reply.hasPrefix(prefix) else {
            throw TestFailure("no CONNECT reply, got \(first.map(Self.render) ?? "nothing")")
        }
        let json = try JSONValue.parse(String(reply.dropFirst(prefix.count)))
        guard let sid = json["sid"]?.stringValue else { throw TestFailure("no sid in \(reply)") }
        return sid
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// A scheduler whose timers fire only when the test advances its clock.
final class ManualScheduler: SocketIOScheduler {
    private struct Entry {
        var id: Int
        var deadline: Duration
        var work: @Sendable () -> Void
    }

    private struct State {
        var now: Duration = .zero
        var nextID = 0
        var entries: [Entry] = []
    }

    private let state = Mutex(State())

    func schedule(after delay: Duration, _ work: @escaping @Sendable () -> Void) -> SocketIOTimer {
        let id = state.withLock { s in
            let id = s.nextID
            s.nextID += 1
            s.entries.append(Entry(id: id, deadline: s.now + delay, work: work))
            return id
        }
        return SocketIOTimer { [weak self] in
            self?.state.withLock { s in s.entries.removeAll { $0.id == id } }
        }
    }

    /// Timers scheduled and not yet fired or cancelled.
    var pendingCount: Int { state.withLock { $0.entries.count } }

    /// Moves the clock forward and runs the timers that became due (outside the lock, in deadline order).
    func advance(by delta: Duration) {
        let due: [Entry] = state.withLock { s in
            s.now += delta
            let now = s.now
            let due = s.entries.filter { $0.deadline <= now }.sorted { $0.deadline < $1.deadline }
            s.entries.removeAll { $0.deadline <= now }
            return due
        }
        for entry in due { entry.work() }
    }
}

/// Collects values from handlers running on other threads.
final class Recorder<T: Sendable>: Sendable {
    private let items = Mutex<[T]>([])
    func append(_ item: T) { items.withLock { $0.append(item) } }
    var values: [T] { items.withLock { $0 } }
}

/// A server on a manual clock.
func makeServer(
    _ configure: (inout SocketIOConfiguration) -> Void = { _ in }
) -> (SocketIOServer, ManualScheduler) {
    var config = SocketIOConfiguration()
    configure(&config)
    let scheduler = ManualScheduler()
    return (SocketIOServer(configuration: config, scheduler: scheduler), scheduler)
}
