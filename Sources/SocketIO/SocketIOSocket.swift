public import EngineIO
public import ParleyJSON
import Synchronization

/// One event received from a client.
public struct SocketIOEvent: Sendable {
    /// The event name (`"message"` in `42["message",1]`).
    public var name: String
    /// The arguments after the name.
    public var arguments: [SocketIOValue]
    /// Present when the client asked for an acknowledgement (`42<id>[…]`): answer it once, from any thread.
    public var ack: SocketIOAck?

    /// Creates an event.
    public init(name: String, arguments: [SocketIOValue], ack: SocketIOAck? = nil) {
        self.name = name
        self.arguments = arguments
        self.ack = ack
    }
}

/// Handles one event of one socket. Called one at a time per socket, in packet arrival order, on the
/// thread that delivered the packet: it must not block (hand slow work to a task or a queue).
public typealias SocketIOEventHandler = @Sendable (_ socket: SocketIOSocket, _ event: SocketIOEvent) -> Void

/// Called once when a socket leaves its namespace.
public typealias SocketIODisconnectHandler = @Sendable (_ socket: SocketIOSocket, _ reason: SocketIODisconnectReason) -> Void

/// Why a socket left its namespace.
public enum SocketIODisconnectReason: Sendable, Hashable, CustomStringConvertible {
    /// The client sent DISCONNECT (`41`) for this namespace.
    case clientNamespaceDisconnect
    /// The server called ``SocketIOSocket/disconnect(close:)``.
    case serverNamespaceDisconnect
    /// The Engine.IO session ended (client close, ping timeout, transport error, slow consumer, shutdown).
    case engineClosed(EngineCloseReason)
    /// The client sent an invalid packet, so the session was closed.
    case protocolViolation(String)

    /// Whether the client may come back to the same socket (connection state recovery): the connection dropped,
    /// rather than the client or the server leaving on purpose or the client breaking the protocol.
    public var isRecoverable: Bool {
        switch self {
        case .engineClosed(let reason):
            switch reason {
            case .protocolViolation, .slowConsumer: false
            default: true
            }
        default: false
        }
    }

    public var description: String {
        switch self {
        case .clientNamespaceDisconnect: "client namespace disconnect"
        case .serverNamespaceDisconnect: "server namespace disconnect"
        case .engineClosed(let r): r.description
        case .protocolViolation(let s): "parse error: \(s)"
        }
    }
}

/// Why an acknowledgement did not arrive.
public struct SocketIOAckError: Error, Sendable, Hashable, CustomStringConvertible {
    private enum Code: Hashable, Sendable { case timeout, disconnected, tooManyPendingAcks }
    private let code: Code

    /// The client did not answer within the timeout.
    public static let timeout = SocketIOAckError(code: .timeout)
    /// The socket disconnected before the client answered (or was not connected).
    public static let disconnected = SocketIOAckError(code: .disconnected)
    /// The socket already waits for ``SocketIOConfiguration/maxPendingAcks`` acknowledgements.
    public static let tooManyPendingAcks = SocketIOAckError(code: .tooManyPendingAcks)

    public var description: String {
        switch code {
        case .timeout: "acknowledgement timed out"
        case .disconnected: "socket disconnected before the acknowledgement arrived"
        case .tooManyPendingAcks: "too many acknowledgements pending on this socket (raise maxPendingAcks or stop emitting with acks)"
        }
    }
}

/// The answer to a client's event that asked for an acknowledgement. The first ``send(arguments:)`` sends
/// the ACK packet; later calls do nothing. May be called from any thread, at any later time.
public final class SocketIOAck: Sendable {
    /// The acknowledgement id the client chose.
    public let id: Int
    private let socket: SocketIOSocket
    private let used = Atomic<Bool>(false)

    init(socket: SocketIOSocket, id: Int) {
        self.socket = socket
        self.id = id
    }

    /// Sends the acknowledgement with these arguments (binary allowed: sent as BINARY_ACK).
    public func send(_ arguments: SocketIOValue...) { send(arguments: arguments) }

    /// Sends the acknowledgement with these arguments (binary allowed: sent as BINARY_ACK).
    public func send(arguments: [SocketIOValue]) {
        guard !used.exchange(true, ordering: .acquiringAndReleasing) else { return }
        socket.deliverIfConnected(SocketIOPacketEncoder.encodeAck(namespace: socket.namespace.name, ackID: id, arguments: arguments))
    }

    /// Whether the acknowledgement was sent.
    public var isSent: Bool { used.load(ordering: .acquiring) }
}

/// A client's connection to one namespace.
///
/// Thread-safety: every method may be called from any thread.
public final class SocketIOSocket: Sendable {
    /// The socket id (the `sid` of the CONNECT reply), distinct from the Engine.IO session id.
    public let id: String
    /// The namespace the socket belongs to.
    public let namespace: SocketIONamespace
    /// The handshake request and the CONNECT payload.
    public let handshake: SocketIOHandshake
    let client: SocketIOClient
    /// The private id a client presents to recover this socket after a drop (connection state recovery on);
    /// never shown to other clients.
    public let privateID: String?
    /// Whether this socket is one that dropped and came back with its id, rooms and data (connection state
    /// recovery); the events it missed were sent again.
    public let recovered: Bool

    private struct PendingAck {
        var callback: @Sendable (Result<[SocketIOValue], SocketIOAckError>) -> Void
        var timer: SocketIOTimer?
    }

    private struct State {
        var connected = false
        var finished = false
        var handlers: [String: [SocketIOEventHandler]] = [:]
        var anyHandlers: [SocketIOEventHandler] = []
        var disconnectHandlers: [SocketIODisconnectHandler] = []
        var pendingAcks: [Int: PendingAck] = [:]
        var nextAckID = 0
        var data: JSONValue = .object([:])
        var broadcastInterceptor: (@Sendable (SocketIOPacket) -> Void)?
    }

    private let state = Mutex(State())

    init(
        id: String, namespace: SocketIONamespace, handshake: SocketIOHandshake, client: SocketIOClient, privateID: String? = nil,
        recovered: Bool = false
    ) {
        self.id = id
        self.namespace = namespace
        self.handshake = handshake
        self.client = client
        self.privateID = privateID
        self.recovered = recovered
    }

    /// The CONNECT payload (auth), nil when the client sent none.
    public var auth: JSONValue? { handshake.auth }

    /// Whether the socket is connected to its namespace.
    public var isConnected: Bool { state.withLock { $0.connected } }

    /// Application data attached to the socket (an object, empty at first), e.g. set by a middleware.
    public var data: JSONValue {
        get { state.withLock { $0.data } }
        set { state.withLock { $0.data = newValue } }
    }

    // MARK: Handlers

    /// Adds a handler for `event`. Several handlers of one event run in registration order.
    public func on(_ event: String, _ handler: @escaping SocketIOEventHandler) {
        state.withLock { $0.handlers[event, default: []].append(handler) }
    }

    /// Adds a handler for every event (runs before the event's own handlers).
    public func onAny(_ handler: @escaping SocketIOEventHandler) {
        state.withLock { $0.anyHandlers.append(handler) }
    }

    /// Adds a handler called once when the socket leaves the namespace (after its rooms were left and
    /// its pending acknowledgements failed).
    public func onDisconnect(_ handler: @escaping SocketIODisconnectHandler) {
        state.withLock { $0.disconnectHandlers.append(handler) }
    }

    // MARK: Emitting

    /// Runs `work` on the event loop that owns this socket's session (at once when called there), in order
    /// with what is being sent to it and batched with other hand-offs to that loop. A completion that finishes
    /// on another thread uses it so that its output is encoded and sent on the loop, as everything else is.
    public func execute(_ work: @escaping @Sendable () -> Void) {
        client.connection.execute(work)
    }

    /// Emits an event to this socket. Dropped if the socket is not connected.
    public func emit(_ event: String, _ arguments: SocketIOValue...) {
        emit(event, arguments: arguments)
    }

    /// Emits an event to this socket. Dropped if the socket is not connected.
    public func emit(_ event: String, arguments: [SocketIOValue]) {
        if let recovery = namespace.recovery {
            // Kept and numbered as a broadcast to the socket's own room would be, so it is sent again after a drop
            // (delivered directly: an emit to the socket is never intercepted).
            var items: [SocketIOValue] = [.json(.string(event))]
            items.append(contentsOf: arguments)
            let data = recovery.record(.array(items), to: SocketIOBroadcastTarget(rooms: [id]))
            deliverIfConnected(SocketIOPacketEncoder.encode(SocketIOPacket(type: .event, namespace: namespace.name, data: data)))
            return
        }
        deliverIfConnected(SocketIOPacketEncoder.encodeEvent(namespace: namespace.name, event: event, arguments: arguments))
    }

    /// Emits an event asking for an acknowledgement; `ack` is called exactly once, with the client's
    /// arguments or an error (timeout, disconnect, too many pending), on an arbitrary thread.
    /// - Parameter timeout: nil uses ``SocketIOConfiguration/ackTimeout``.
    public func emit(
        _ event: String, arguments: [SocketIOValue], timeout: Duration? = nil,
        ack: @escaping @Sendable (Result<[SocketIOValue], SocketIOAckError>) -> Void
    ) {
        let maxPending = namespace.configuration.maxPendingAcks
        let registered: Result<Int, SocketIOAckError> = state.withLock { s in
            guard s.connected else { return .failure(.disconnected) }
            guard s.pendingAcks.count < maxPending else { return .failure(.tooManyPendingAcks) }
            let id = s.nextAckID
            s.nextAckID = s.nextAckID == Int.max / 2 ? 0 : s.nextAckID + 1
            s.pendingAcks[id] = PendingAck(callback: ack, timer: nil)
            return .success(id)
        }
        let id: Int
        switch registered {
        case .failure(let error):
            ack(.failure(error))
            return
        case .success(let i): id = i
        }
        if let timeout = timeout ?? namespace.configuration.ackTimeout {
            let timer = namespace.scheduler.schedule(after: timeout) { [weak self] in self?.resolveAck(id, .failure(.timeout)) }
            let keep = state.withLock { s in
                guard s.pendingAcks[id] != nil else { return false }
                s.pendingAcks[id]?.timer = timer
                return true
            }
            if !keep { timer.cancel() }
        }
        client.send(SocketIOPacketEncoder.encodeEvent(namespace: namespace.name, event: event, arguments: arguments, ackID: id))
    }

    /// Emits an event and waits for the client's acknowledgement.
    /// - Throws: ``SocketIOAckError``.
    public func emitWithAck(_ event: String, arguments: [SocketIOValue], timeout: Duration? = nil) async throws(SocketIOAckError) -> [SocketIOValue] {
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<[SocketIOValue], SocketIOAckError>, Never>) in
            emit(event, arguments: arguments, timeout: timeout) { continuation.resume(returning: $0) }
        }
        return try result.get()
    }

    /// Queues already encoded messages for this socket's client (used by adapters to send one encoding to
    /// many sockets). Dropped if the socket is not connected.
    public func deliver(_ messages: [EngineMessage]) {
        deliverIfConnected(messages)
    }

    /// Hands every broadcast this socket receives (from this node or, through the adapter, another) to `handler`
    /// instead of queuing it for the client: the handler decides what the client gets (for example, messages
    /// numbered in order, each once, after a replay). Emits to the socket itself are not intercepted. Called on
    /// any thread; it must not block.
    public func interceptBroadcasts(_ handler: @escaping @Sendable (SocketIOPacket) -> Void) {
        state.withLock { $0.broadcastInterceptor = handler }
    }

    /// Queues a broadcast packet (`messages` is its encoding, shared with the other recipients), or hands it
    /// to the socket's interceptor (``interceptBroadcasts(_:)``). Dropped if the socket is not connected.
    public func deliver(_ packet: SocketIOPacket, encoded messages: [EngineMessage]) {
        let (connected, interceptor) = state.withLock { ($0.connected, $0.broadcastInterceptor) }
        guard connected else { return }
        if let interceptor { interceptor(packet) } else { client.send(messages) }
    }

    func deliverIfConnected(_ messages: [EngineMessage]) {
        guard state.withLock({ $0.connected }) else { return }
        client.send(messages)
    }

    // MARK: Rooms

    /// Joins a room. Only while connected (join in the connection handler, not in middleware).
    public func join(_ room: String) { join([room]) }

    /// Joins rooms. Only while connected.
    public func join(_ rooms: [String]) {
        // Under the socket lock, so a concurrent disconnect cannot leave the socket behind in a room.
        state.withLock { s in
            guard s.connected else { return }
            namespace.adapter.addSocket(self, toRooms: rooms)
        }
    }

    /// Leaves a room.
    public func leave(_ room: String) {
        namespace.adapter.removeSocket(self, fromRoom: room)
    }

    /// The rooms the socket is in (including the one named after its id).
    public var rooms: Set<String> { namespace.adapter.rooms(of: self) }

    /// A broadcast to the sockets in `room`, leaving this socket out.
    public func to(_ room: String) -> SocketIOBroadcastOperator {
        SocketIOBroadcastOperator(namespace: namespace).to(room).except(id)
    }

    /// A broadcast to every other socket of the namespace.
    public var broadcast: SocketIOBroadcastOperator {
        SocketIOBroadcastOperator(namespace: namespace).except(id)
    }

    // MARK: Disconnecting

    /// Disconnects the socket from its namespace: the client gets DISCONNECT (`41`). With `close`, the whole
    /// Engine.IO session is closed instead (every namespace of that client).
    public func disconnect(close: Bool = false) {
        if close {
            client.close(reason: .serverNamespaceDisconnect)
            return
        }
        guard client.removeSocket(self) else { return }
        let packet = SocketIOPacketEncoder.encode(SocketIOPacket(type: .disconnect, namespace: namespace.name))
        if isConnected { client.send(packet) }
        finish(.serverNamespaceDisconnect)
    }

    // MARK: Internal

    /// Marks the socket connected (after middleware accepted it).
    func markConnected() {
        state.withLock { $0.connected = true }
    }

    /// Ends the socket: leaves rooms and the namespace, fails pending acks, runs disconnect handlers. Once.
    func finish(_ reason: SocketIODisconnectReason) {
        let taken: ([PendingAck], [SocketIODisconnectHandler])? = state.withLock { s in
            guard !s.finished else { return nil }
            s.finished = true
            s.connected = false
            let acks = Array(s.pendingAcks.values)
            let handlers = s.disconnectHandlers
            s.pendingAcks = [:]
            // Drop handlers: they often capture the socket.
            s.handlers = [:]
            s.anyHandlers = []
            s.disconnectHandlers = []
            s.broadcastInterceptor = nil
            return (acks, handlers)
        }
        guard let (acks, handlers) = taken else { return }
        if let recovery = namespace.recovery, let privateID, reason.isRecoverable {
            recovery.persist(
                privateID: privateID,
                session: .init(socketID: id, rooms: namespace.adapter.rooms(of: self), data: data, disconnectedAt: .now))
        }
        namespace.adapter.removeSocketFromAllRooms(self)
        client.server.detach(self)
        for pending in acks {
            pending.timer?.cancel()
            pending.callback(.failure(.disconnected))
        }
        for handler in handlers { handler(self, reason) }
    }

    func handleEvent(_ packet: SocketIOPacket) {
        guard let name = packet.eventName else { return }
        let ack = packet.ackID.map { SocketIOAck(socket: self, id: $0) }
        let (handlers, anyHandlers) = state.withLock { s in (s.handlers[name] ?? [], s.anyHandlers) }
        guard !handlers.isEmpty || !anyHandlers.isEmpty else { return }
        let event = SocketIOEvent(name: name, arguments: packet.arguments, ack: ack)
        for handler in anyHandlers { handler(self, event) }
        for handler in handlers { handler(self, event) }
    }

    func handleAck(_ packet: SocketIOPacket) {
        guard let id = packet.ackID else { return }
        resolveAck(id, .success(packet.arguments))
    }

    private func resolveAck(_ id: Int, _ result: Result<[SocketIOValue], SocketIOAckError>) {
        guard let pending = state.withLock({ $0.pendingAcks.removeValue(forKey: id) }) else { return }
        pending.timer?.cancel()
        pending.callback(result)
    }

    /// Acknowledgements waiting for the client (for tests and metrics).
    var pendingAckCount: Int { state.withLock { $0.pendingAcks.count } }
}
