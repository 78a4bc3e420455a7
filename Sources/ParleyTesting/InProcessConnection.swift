public import EngineIO
import ParleyJSON
public import SocketIO
import Synchronization

/// An Engine.IO session to a ``SocketIO/SocketIOServer`` held in memory: no socket, no event loop, no frames.
/// What the server sends is kept as Socket.IO packet texts (`0{"sid":…}`, `2["bot_uttered",{…}]`; the wire adds
/// the Engine.IO `4`); what a client would send goes in with ``receive(_:)``.
///
/// The server's handlers run on the calling thread; replies that a turn completes on a worker thread arrive
/// there too, so wait for them with ``next(timeout:)``.
public final class InProcessConnection: EngineConnection {
    public let id: String
    public let handshake: EngineHandshake
    private let state = Mutex<(sent: [String], delegate: (any EngineConnectionDelegate)?, closed: Bool)>(([], nil, false))

    private init(id: String, handshake: EngineHandshake) {
        self.id = id
        self.handshake = handshake
    }

    /// Opens a session on `server`, as a new Engine.IO connection would.
    public static func open(on server: SocketIOServer, handshake: EngineHandshake = EngineHandshake()) -> InProcessConnection {
        let connection = InProcessConnection(id: "in-process-\(UInt64.random(in: 0...UInt64.max))", handshake: handshake)
        let delegate = server.engineServer(didOpen: connection)
        connection.state.withLock { $0.delegate = delegate }
        return connection
    }

    /// Keeps what the server sends (text messages; binary attachments are not kept).
    public func send(_ messages: [EngineMessage]) {
        state.withLock { s in
            guard !s.closed else { return }
            for case .text(let text) in messages { s.sent.append(text) }
        }
    }

    /// Closes the session as the server would (the delegate hears of it once).
    public func close() { end(.serverClose) }

    /// Whether the session was closed (by the server or by ``disconnect()``).
    public var isClosed: Bool { state.withLock { $0.closed } }

    /// A Socket.IO packet from the client (`0` to connect the main namespace, `2["event",…]`).
    public func receive(_ packet: String) {
        let delegate = state.withLock { $0.closed ? nil : $0.delegate }
        delegate?.engineConnection(self, didReceive: .text(packet))
    }

    /// The client goes away (its transport closed).
    public func disconnect() { end(.clientClose) }

    /// Ends the session once; the delegate hears `reason`.
    private func end(_ reason: EngineCloseReason) {
        let delegate: (any EngineConnectionDelegate)? = state.withLock { s in
            guard !s.closed else { return nil }
            s.closed = true
            return s.delegate
        }
        delegate?.engineConnection(self, didCloseWith: reason)
    }

    /// Returns and forgets everything sent so far.
    public func take() -> [String] {
        state.withLock { s in
            defer { s.sent = [] }
            return s.sent
        }
    }

    /// The next packet the server sends, waiting up to `timeout` (on the monotonic clock); nil when none came.
    public func next(timeout: Duration = .seconds(5)) async -> String? {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while true {
            let packet: String? = state.withLock { s in s.sent.isEmpty ? nil : s.sent.removeFirst() }
            if let packet { return packet }
            if clock.now >= deadline { return nil }
            try? await Task.sleep(for: .milliseconds(2))
        }
    }
}

/// A Rasa `socketio` widget in process (what the Rasa web widgets do on the wire): connects to the namespace,
/// asks for a session, sends `user_uttered` and reads `bot_uttered`.
///
/// ```swift
/// let client = try await RasaTestClient.connect(to: socketIOServer)
/// let session = try await client.requestSession("my-session")
/// client.say("hello")
/// let replies = try await client.botUtterances(1)   // [{"text": "hello"}]
/// ```
public final class RasaTestClient: Sendable {
    /// The underlying session.
    public let connection: InProcessConnection
    /// The session id the server confirmed (after ``requestSession(_:)``).
    public var sessionID: String? { session.withLock { $0 } }
    private let session = Mutex<String?>(nil)
    private let events: Mutex<[(name: String, argument: JSONValue)]> = Mutex([])
    private let userEvent: String
    private let botEvent: String

    private init(connection: InProcessConnection, userEvent: String, botEvent: String) {
        self.connection = connection
        self.userEvent = userEvent
        self.botEvent = botEvent
    }

    /// Connects to the main namespace of `server`; `auth` is the CONNECT payload (`{"token": "…"}`).
    /// - Throws: ``RasaTestClientError`` when the server refuses the connection or does not answer.
    public static func connect(
        to server: SocketIOServer, auth: JSONValue? = nil, userMessageEvent: String = "user_uttered", botMessageEvent: String = "bot_uttered",
        timeout: Duration = .seconds(5)
    ) async throws -> RasaTestClient {
        let connection = InProcessConnection.open(on: server)
        let client = RasaTestClient(connection: connection, userEvent: userMessageEvent, botEvent: botMessageEvent)
        connection.receive("0" + (auth?.serialized ?? ""))
        guard let reply = await connection.next(timeout: timeout) else { throw RasaTestClientError("no answer to CONNECT") }
        guard reply.hasPrefix("0") else { throw RasaTestClientError("connection refused: \(reply)") }
        return client
    }

    /// Sends `session_request` (nil: a new session) and returns the confirmed session id.
    public func requestSession(_ id: String?, timeout: Duration = .seconds(5)) async throws -> String {
        let request: JSONValue = ["session_request", ["session_id": id.map { .string($0) } ?? .null]]
        connection.receive("2" + request.serialized)
        guard let confirm = try await nextEvent(named: "session_confirm", timeout: timeout) else {
            throw RasaTestClientError("no session_confirm within \(timeout)")
        }
        let confirmed = confirm.stringValue ?? confirm.serialized
        session.withLock { $0 = confirmed }
        return confirmed
    }

    /// Sends a user message to the confirmed session (or with no session id before one is confirmed).
    public func say(_ text: String, metadata: JSONObject? = nil) {
        var data: JSONObject = ["message": .string(text)]
        if let id = sessionID { data["session_id"] = .string(id) }
        if let metadata { data["metadata"] = .object(metadata) }
        connection.receive("2" + JSONValue.array([.string(userEvent), .object(data)]).serialized)
    }

    /// The next `count` `bot_uttered` payloads; throws when fewer arrive within `timeout`. Other events seen
    /// meanwhile stay available to ``nextEvent(named:timeout:)``.
    public func botUtterances(_ count: Int, timeout: Duration = .seconds(5)) async throws -> [JSONValue] {
        var out: [JSONValue] = []
        while out.count < count {
            guard let next = try await nextEvent(named: botEvent, timeout: timeout) else {
                throw RasaTestClientError("\(out.count) of \(count) \(botEvent) events within \(timeout): \(out.map(\.serialized))")
            }
            out.append(next)
        }
        return out
    }

    /// The argument of the next event called `name` (nil when it does not come within `timeout`).
    public func nextEvent(named name: String, timeout: Duration = .seconds(5)) async throws -> JSONValue? {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while true {
            if let found = take(named: name) { return found }
            let left = deadline - clock.now
            guard left > .zero, let packet = await connection.next(timeout: left) else { return take(named: name) }
            guard packet.hasPrefix("2"), case .array(let items)? = try? JSONValue.parse(String(packet.dropFirst())),
                case .string(let event)? = items.first
            else { continue }
            events.withLock { $0.append((event, items.dropFirst().first ?? .null)) }
        }
    }

    private func take(named name: String) -> JSONValue? {
        events.withLock { list in
            guard let i = list.firstIndex(where: { $0.name == name }) else { return nil }
            return list.remove(at: i).argument
        }
    }
}

/// The in-process client saw something else than expected.
public struct RasaTestClientError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
