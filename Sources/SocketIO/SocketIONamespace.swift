public import ParleyJSON
import Synchronization

/// A connection middleware's verdict.
public enum SocketIOConnectDecision: Sendable, Hashable {
    /// Let the client connect (or run the next middleware).
    case accept
    /// Refuse: the client gets CONNECT_ERROR `{"message": message, "data": data}` (`data` left out when nil).
    case refuse(message: String, data: JSONValue? = nil)
}

/// Runs before a socket connects to a namespace; sees the handshake and auth payload via
/// ``SocketIOSocket/handshake``, may store things in ``SocketIOSocket/data``. Must not block.
public typealias SocketIOMiddleware = @Sendable (_ socket: SocketIOSocket) -> SocketIOConnectDecision

/// Runs when a socket has connected (after the CONNECT reply was queued, so anything it emits follows it).
public typealias SocketIOConnectionHandler = @Sendable (_ socket: SocketIOSocket) -> Void

/// A Socket.IO namespace: its sockets, middleware, connection handlers and rooms (through its adapter).
///
/// Thread-safety: every method may be called from any thread.
public final class SocketIONamespace: Sendable {
    /// The namespace's name, e.g. `/` or `/admin`.
    public let name: String
    /// The rooms and broadcast implementation of this namespace.
    public let adapter: any SocketIOAdapter
    /// The dynamic namespace family that created this namespace, if any.
    public let parent: SocketIODynamicNamespace?
    let configuration: SocketIOConfiguration
    let scheduler: any SocketIOScheduler
    /// Recent events and dropped sockets, when connection state recovery is on.
    let recovery: SocketIORecoveryLog?

    private struct State {
        var middleware: [SocketIOMiddleware] = []
        var connectionHandlers: [SocketIOConnectionHandler] = []
        var sockets: [String: SocketIOSocket] = [:]
    }

    private let state = Mutex(State())

    init(name: String, server: SocketIOServer, parent: SocketIODynamicNamespace?) {
        self.name = name
        self.parent = parent
        self.configuration = server.configuration
        self.scheduler = server.scheduler
        self.adapter = server.configuration.adapter.make(name)
        self.recovery = server.configuration.connectionStateRecovery.map { SocketIORecoveryLog(settings: $0) }
    }

    /// Adds a connection middleware. Middleware runs in registration order (a dynamic family's first);
    /// the first refusal wins.
    public func use(_ middleware: @escaping SocketIOMiddleware) {
        state.withLock { $0.middleware.append(middleware) }
    }

    /// Adds a connection handler, called for each socket that connects.
    public func onConnection(_ handler: @escaping SocketIOConnectionHandler) {
        state.withLock { $0.connectionHandlers.append(handler) }
    }

    /// The connected sockets.
    public var sockets: [SocketIOSocket] { state.withLock { Array($0.sockets.values) } }

    /// The number of connected sockets.
    public var socketCount: Int { state.withLock { $0.sockets.count } }

    /// The connected socket with this id.
    public func socket(id: String) -> SocketIOSocket? { state.withLock { $0.sockets[id] } }

    /// A broadcast to the sockets in `room` (chain ``SocketIOBroadcastOperator/to(_:)`` and
    /// ``SocketIOBroadcastOperator/except(_:)``, then emit).
    public func to(_ room: String) -> SocketIOBroadcastOperator {
        SocketIOBroadcastOperator(namespace: self).to(room)
    }

    /// A broadcast to the sockets in any of `rooms`.
    public func to(_ rooms: [String]) -> SocketIOBroadcastOperator {
        SocketIOBroadcastOperator(namespace: self).to(rooms)
    }

    /// A broadcast to every socket except those in `room`.
    public func except(_ room: String) -> SocketIOBroadcastOperator {
        SocketIOBroadcastOperator(namespace: self).except(room)
    }

    /// Emits an event to every socket of the namespace.
    public func emit(_ event: String, _ arguments: SocketIOValue...) {
        SocketIOBroadcastOperator(namespace: self).emit(event, arguments: arguments)
    }

    /// Emits an event to every socket of the namespace.
    public func emit(_ event: String, arguments: [SocketIOValue]) {
        SocketIOBroadcastOperator(namespace: self).emit(event, arguments: arguments)
    }

    /// The number of this server's sockets in `room`.
    public func socketCount(inRoom room: String) -> Int { adapter.socketCount(inRoom: room) }

    /// Every room with at least one socket, on every server sharing the adapter.
    public func fetchRooms() async throws -> Set<String> { try await adapter.fetchRooms() }

    // MARK: Internal

    var middlewareChain: [SocketIOMiddleware] {
        (parent?.middleware ?? []) + state.withLock { $0.middleware }
    }

    var connectionHandlerChain: [SocketIOConnectionHandler] {
        (parent?.connectionHandlers ?? []) + state.withLock { $0.connectionHandlers }
    }

    func insert(_ socket: SocketIOSocket) {
        state.withLock { $0.sockets[socket.id] = socket }
    }

    /// Removes the socket; returns whether the namespace is now empty.
    func remove(_ socket: SocketIOSocket) -> Bool {
        state.withLock { s in
            if s.sockets[socket.id] === socket { s.sockets[socket.id] = nil }
            return s.sockets.isEmpty
        }
    }
}

/// A family of namespaces created on demand for names a predicate accepts (see
/// ``SocketIOServer/dynamicNamespace(matching:)``). Middleware and connection handlers registered here
/// apply to every namespace of the family.
public final class SocketIODynamicNamespace: Sendable {
    let predicate: @Sendable (String, SocketIOHandshake) -> Bool

    private struct State {
        var middleware: [SocketIOMiddleware] = []
        var connectionHandlers: [SocketIOConnectionHandler] = []
        var children: [String: SocketIONamespace] = [:]
    }

    private let state = Mutex(State())

    init(predicate: @escaping @Sendable (String, SocketIOHandshake) -> Bool) {
        self.predicate = predicate
    }

    /// Adds a connection middleware for every namespace of the family (runs before their own).
    public func use(_ middleware: @escaping SocketIOMiddleware) {
        state.withLock { $0.middleware.append(middleware) }
    }

    /// Adds a connection handler for every namespace of the family (runs before their own).
    public func onConnection(_ handler: @escaping SocketIOConnectionHandler) {
        state.withLock { $0.connectionHandlers.append(handler) }
    }

    /// The namespaces created so far (and not dropped).
    public var namespaces: [SocketIONamespace] { state.withLock { Array($0.children.values) } }

    /// Emits an event to every socket of every namespace of the family.
    public func emit(_ event: String, arguments: [SocketIOValue]) {
        for ns in namespaces { ns.emit(event, arguments: arguments) }
    }

    var middleware: [SocketIOMiddleware] { state.withLock { $0.middleware } }
    var connectionHandlers: [SocketIOConnectionHandler] { state.withLock { $0.connectionHandlers } }

    func added(_ ns: SocketIONamespace) { state.withLock { $0.children[ns.name] = ns } }
    func removed(_ ns: SocketIONamespace) {
        state.withLock { s in
            if s.children[ns.name] === ns { s.children[ns.name] = nil }
        }
    }
}

/// Selects sockets of a namespace by room, then emits to them. Values: each call returns a new operator.
///
/// ```swift
/// namespace.to("room").except("other").emit("ev", "hello")
/// ```
public struct SocketIOBroadcastOperator: Sendable {
    /// The namespace whose sockets are selected.
    public let namespace: SocketIONamespace
    /// The selection so far.
    public private(set) var target: SocketIOBroadcastTarget
    /// Whether the events are kept for connection state recovery (see ``volatile``).
    private var recorded = true

    /// An operator over every socket of `namespace`.
    public init(namespace: SocketIONamespace, target: SocketIOBroadcastTarget = SocketIOBroadcastTarget()) {
        self.namespace = namespace
        self.target = target
    }

    /// The same selection, but the events are not kept for connection state recovery: a client that misses them
    /// does not get them again (for events that only matter now, or that the application delivers its own way).
    public var volatile: SocketIOBroadcastOperator {
        var copy = self
        copy.recorded = false
        return copy
    }

    /// Also reach the sockets in `room` (a socket id is a room holding that socket).
    public func to(_ room: String) -> SocketIOBroadcastOperator {
        var copy = self
        copy.target.rooms.insert(room)
        return copy
    }

    /// Also reach the sockets in any of `rooms`.
    public func to(_ rooms: [String]) -> SocketIOBroadcastOperator {
        var copy = self
        copy.target.rooms.formUnion(rooms)
        return copy
    }

    /// Same as ``to(_:)-(String)``.
    public func `in`(_ room: String) -> SocketIOBroadcastOperator { to(room) }

    /// Leave out the sockets in `room`.
    public func except(_ room: String) -> SocketIOBroadcastOperator {
        var copy = self
        copy.target.exceptRooms.insert(room)
        return copy
    }

    /// Leave out the sockets in any of `rooms`.
    public func except(_ rooms: [String]) -> SocketIOBroadcastOperator {
        var copy = self
        copy.target.exceptRooms.formUnion(rooms)
        return copy
    }

    /// Emits an event to the selected sockets: encoded once, the same bytes queued for each.
    public func emit(_ event: String, _ arguments: SocketIOValue...) {
        emit(event, arguments: arguments)
    }

    /// Emits an event to the selected sockets: encoded once, the same bytes queued for each.
    public func emit(_ event: String, arguments: [SocketIOValue]) {
        var items: [SocketIOValue] = [.json(.string(event))]
        items.append(contentsOf: arguments)
        var data = SocketIOValue.array(items)
        if recorded, let recovery = namespace.recovery { data = recovery.record(data, to: target) }
        let packet = SocketIOPacket(type: .event, namespace: namespace.name, data: data)
        namespace.adapter.broadcast(packet, to: target)
    }

    /// The ids of the selected sockets of this server.
    public func socketIDs() -> Set<String> { namespace.adapter.socketIDs(for: target) }

    /// The ids of the selected sockets on every server sharing the adapter (Node's `allSockets()`).
    /// - Throws: when another server does not answer in time.
    public func fetchSocketIDs() async throws -> Set<String> { try await namespace.adapter.fetchSocketIDs(for: target) }

    /// The selected sockets of this server.
    public func sockets() -> [SocketIOSocket] { namespace.adapter.sockets(for: target) }

    /// Makes the selected sockets, on every server, join `room`.
    public func socketsJoin(_ room: String) {
        namespace.adapter.apply(.join([room]), to: target)
    }

    /// Makes the selected sockets, on every server, leave `room`.
    public func socketsLeave(_ room: String) {
        namespace.adapter.apply(.leave([room]), to: target)
    }

    /// Disconnects the selected sockets, on every server, from the namespace (`close`: also close their
    /// Engine.IO sessions).
    public func disconnectSockets(close: Bool = false) {
        namespace.adapter.apply(.disconnect(close: close), to: target)
    }
}
