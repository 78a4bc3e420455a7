public import EngineIO
public import Logging
public import ParleyJSON
import Synchronization

/// A Socket.IO v5 server on top of Engine.IO sessions.
///
/// Hand it to the Engine.IO transport as its ``EngineIO/EngineServerDelegate``; declare namespaces with
/// ``of(_:)`` (static) or ``dynamicNamespace(matching:)`` (by predicate), then register middleware and
/// connection handlers on them:
///
/// ```swift
/// let io = SocketIOServer()
/// io.of("/").onConnection { socket in
///     socket.on("message") { socket, event in socket.emit("message-back", arguments: event.arguments) }
/// }
/// ```
///
/// Packets of one Engine.IO session are handled one at a time in arrival order, on the thread that
/// delivers them; handlers must not block.
public final class SocketIOServer: EngineServerDelegate, Sendable {
    /// The server's settings.
    public let configuration: SocketIOConfiguration
    /// Runs connect and ack timeouts.
    public let scheduler: any SocketIOScheduler
    /// Bytes of incomplete binary packets held by all clients (``SocketIOConfiguration/pendingAttachmentBudget``).
    let attachmentBudget: ByteBudget
    let logger: Logger

    private struct State {
        var namespaces: [String: SocketIONamespace] = [:]
        var dynamic: [SocketIODynamicNamespace] = []
    }

    private let state = Mutex(State())

    /// Creates a server with the main namespace `/` declared.
    /// - Parameters:
    ///   - configuration: timeouts, limits and the adapter.
    ///   - scheduler: where timeouts run (default: SwiftNIO event loop timers).
    ///   - logger: receives one line per refused connection, protocol violation and timeout.
    public init(
        configuration: SocketIOConfiguration = SocketIOConfiguration(),
        scheduler: any SocketIOScheduler = EventLoopScheduler(),
        logger: Logger = Logger(label: "parley.socketio")
    ) {
        self.configuration = configuration
        self.scheduler = scheduler
        self.logger = logger
        self.attachmentBudget = ByteBudget(limit: configuration.pendingAttachmentBudget)
        _ = of("/")
    }

    /// The main namespace `/`.
    public var mainNamespace: SocketIONamespace { of("/") }

    /// The namespace called `name`, created (as a static namespace) if it does not exist yet.
    /// A name without a leading `/` gets one.
    public func of(_ name: String) -> SocketIONamespace {
        let name = name.hasPrefix("/") ? name : "/" + name
        return state.withLock { s in
            if let ns = s.namespaces[name] { return ns }
            let ns = SocketIONamespace(name: name, server: self, parent: nil)
            s.namespaces[name] = ns
            return ns
        }
    }

    /// The namespace called `name` if it exists (declared, or created by a dynamic namespace).
    public func existingNamespace(_ name: String) -> SocketIONamespace? {
        state.withLock { $0.namespaces[name] }
    }

    /// Every existing namespace.
    public var namespaces: [SocketIONamespace] {
        state.withLock { Array($0.namespaces.values) }
    }

    /// Declares a family of namespaces: a client connecting to an unknown namespace whose name
    /// `predicate` accepts gets a new namespace that runs the family's middleware and connection
    /// handlers. Predicates are tried in declaration order; static namespaces win over them.
    /// - Parameter predicate: called with the requested name and the handshake; must be fast and not block.
    public func dynamicNamespace(
        matching predicate: @escaping @Sendable (_ name: String, _ handshake: SocketIOHandshake) -> Bool
    ) -> SocketIODynamicNamespace {
        let group = SocketIODynamicNamespace(predicate: predicate)
        state.withLock { $0.dynamic.append(group) }
        return group
    }

    /// Sockets of the main namespace in `room` (see ``SocketIONamespace/to(_:)``).
    public func to(_ room: String) -> SocketIOBroadcastOperator { mainNamespace.to(room) }

    /// Emits an event to every socket of the main namespace.
    public func emit(_ event: String, _ arguments: SocketIOValue...) {
        mainNamespace.emit(event, arguments: arguments)
    }

    // MARK: EngineServerDelegate

    public func engineServer(didOpen connection: any EngineConnection) -> any EngineConnectionDelegate {
        let client = SocketIOClient(server: self, connection: connection)
        client.start()
        return client
    }

    // MARK: Internal

    /// Finds or creates the namespace a CONNECT asks for; nil when none matches.
    func resolveNamespace(_ name: String, handshake: SocketIOHandshake) -> SocketIONamespace? {
        let groups: [SocketIODynamicNamespace] = state.withLock { s in
            s.namespaces[name] == nil ? s.dynamic : []
        }
        if let existing = existingNamespace(name) { return existing }
        // Predicates are user code: run them outside the lock.
        guard let group = groups.first(where: { $0.predicate(name, handshake) }) else { return nil }
        return state.withLock { s in
            if let ns = s.namespaces[name] { return ns }
            let ns = SocketIONamespace(name: name, server: self, parent: group)
            s.namespaces[name] = ns
            group.added(ns)
            return ns
        }
    }

    /// Adds a connected socket to its namespace (re-registering a dropped dynamic namespace). Returns false
    /// if another namespace of the same name replaced it meanwhile.
    func attach(_ socket: SocketIOSocket) -> Bool {
        let ns = socket.namespace
        return state.withLock { s in
            if let current = s.namespaces[ns.name] {
                guard current === ns else { return false }
            } else {
                s.namespaces[ns.name] = ns
                ns.parent?.added(ns)
            }
            ns.insert(socket)
            return true
        }
    }

    /// Removes a disconnected socket from its namespace, dropping an empty dynamic namespace if configured.
    func detach(_ socket: SocketIOSocket) {
        let ns = socket.namespace
        let dropDynamic = configuration.removeEmptyDynamicNamespaces
        state.withLock { s in
            let empty = ns.remove(socket)
            if empty, dropDynamic, let parent = ns.parent, s.namespaces[ns.name] === ns {
                s.namespaces[ns.name] = nil
                parent.removed(ns)
            }
        }
    }
}

/// What a socket knows about its connection: the Engine.IO handshake request and the CONNECT payload.
public struct SocketIOHandshake: Sendable {
    /// The Engine.IO session's handshake request (query, headers, remote address).
    public var engine: EngineHandshake
    /// The Engine.IO session id (distinct from the socket id).
    public var engineID: String
    /// The namespace the client connects to.
    public var namespace: String
    /// The CONNECT packet's payload (`40{"token":"…"}`), nil when the client sent none.
    public var auth: JSONValue?

    /// Creates a handshake description.
    public init(engine: EngineHandshake, engineID: String, namespace: String, auth: JSONValue?) {
        self.engine = engine
        self.engineID = engineID
        self.namespace = namespace
        self.auth = auth
    }
}

/// A process-wide byte budget shared by every connection (an atomic counter: clients on every event loop
/// reserve from it; no lock).
final class ByteBudget: Sendable {
    let limit: Int
    private let used = Atomic<Int>(0)

    init(limit: Int) {
        self.limit = limit
    }

    /// Bytes reserved now.
    var inUse: Int { used.load(ordering: .relaxed) }

    /// Reserves `bytes`; false (nothing reserved) when that would go over the limit.
    func reserve(_ bytes: Int) -> Bool {
        var current = used.load(ordering: .relaxed)
        while true {
            guard current + bytes <= limit else { return false }
            let (exchanged, original) = used.compareExchange(expected: current, desired: current + bytes, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
    }

    /// Gives back `bytes` reserved earlier.
    func release(_ bytes: Int) {
        guard bytes > 0 else { return }
        used.subtract(bytes, ordering: .relaxed)
    }
}
