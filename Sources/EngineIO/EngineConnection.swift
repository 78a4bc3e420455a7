// The seam between the Engine.IO transports (this module) and the Socket.IO layer above it.
// SocketIO only ever sees these types; it can be tested with an in-memory EngineConnection.

/// The payload of one Engine.IO `message` packet (type `4`).
public enum EngineMessage: Sendable, Hashable {
    /// A text message (the `4…` packet's payload, without the type character).
    case text(String)
    /// A binary message (a binary WebSocket frame, or a `b…` base64 packet over polling).
    case binary([UInt8])
}

/// Why an Engine.IO session ended.
public enum EngineCloseReason: Sendable, Hashable, CustomStringConvertible {
    /// The client sent a close packet (`1`).
    case clientClose
    /// The server called ``EngineConnection/close()``.
    case serverClose
    /// No pong within pingInterval + pingTimeout.
    case pingTimeout
    /// The underlying transport failed or the peer went away.
    case transportError(String)
    /// The client sent something the protocol forbids (the text says what).
    case protocolViolation(String)
    /// The client did not read fast enough and the bounded outbound queue overflowed.
    case slowConsumer
    /// The server is shutting down.
    case shutdown

    public var description: String {
        switch self {
        case .clientClose: "client close"
        case .serverClose: "server close"
        case .pingTimeout: "ping timeout"
        case .transportError(let s): "transport error: \(s)"
        case .protocolViolation(let s): "protocol violation: \(s)"
        case .slowConsumer: "slow consumer"
        case .shutdown: "server shutdown"
        }
    }
}

/// What the server knew about the client when the session was opened.
public struct EngineHandshake: Sendable {
    /// The query parameters of the handshake request (e.g. `EIO`, `transport`, custom ones).
    public var query: [String: String]
    /// The request headers, lower-cased names.
    public var headers: [String: String]
    /// The peer address as text, when known.
    public var remoteAddress: String?

    public init(query: [String: String] = [:], headers: [String: String] = [:], remoteAddress: String? = nil) {
        self.query = query
        self.headers = headers
        self.remoteAddress = remoteAddress
    }
}

/// One Engine.IO session, whatever transport it currently uses (polling, WebSocket, or mid-upgrade).
///
/// Thread-safety: every method may be called from any thread or task.
public protocol EngineConnection: AnyObject, Sendable {
    /// The Engine.IO session id (`sid` of the open packet).
    var id: String { get }
    /// The handshake request's details.
    var handshake: EngineHandshake { get }
    /// Queues messages for the client, in order, and returns at once. Messages passed in one call are
    /// flushed together (one polling response or consecutive WebSocket frames). When the bounded outbound
    /// queue would overflow the session is closed with ``EngineCloseReason/slowConsumer``. Messages sent
    /// after close are dropped.
    func send(_ messages: [EngineMessage])
    /// Runs `work` on the event loop that owns the session: at once when called there, otherwise handed over
    /// in order with the session's outgoing messages, one loop wake-up per batch. Completions that finish on
    /// other threads (a turn on a worker) use it to encode and send their output on the loop.
    func execute(_ work: @escaping @Sendable () -> Void)
    /// Closes the session: the client gets a close packet where the transport allows it, and the delegate's
    /// ``EngineConnectionDelegate/engineConnection(_:didCloseWith:)`` is called once.
    func close()
}

extension EngineConnection {
    /// Runs `work` at once (a connection without an event loop of its own).
    public func execute(_ work: @escaping @Sendable () -> Void) { work() }
}

/// Receives what happens on one session. Calls for one session are made one at a time, in order,
/// and must not block (hand slow work to a task).
public protocol EngineConnectionDelegate: AnyObject, Sendable {
    /// A `message` packet arrived.
    func engineConnection(_ connection: any EngineConnection, didReceive message: EngineMessage)
    /// The session ended; no further calls follow for it.
    func engineConnection(_ connection: any EngineConnection, didCloseWith reason: EngineCloseReason)
}

/// Accepts new sessions.
public protocol EngineServerDelegate: Sendable {
    /// A new session was opened (the open packet is on its way). Returns the delegate for its events.
    func engineServer(didOpen connection: any EngineConnection) -> any EngineConnectionDelegate
}
