import EngineIO
import Logging
import ParleyJSON
import Synchronization

/// The Socket.IO side of one Engine.IO session: decodes its packets, holds its sockets (one per
/// namespace), enforces the connect timeout and closes the session on protocol violations.
final class SocketIOClient: EngineConnectionDelegate, Sendable {
    let server: SocketIOServer
    let connection: any EngineConnection
    let logger: Logger

    private struct State {
        var decoder: SocketIOPacketDecoder
        var sockets: [String: SocketIOSocket] = [:]
        var connectTimer: SocketIOTimer?
        var closed = false
        /// Set when this layer closes the session, so sockets get the real reason.
        var closeReason: SocketIODisconnectReason?
        /// Messages held after a CONNECT reply (see ``SocketIOConfiguration/connectReplyDelay``); nil when
        /// not holding.
        var held: [EngineMessage]?
        /// Bytes of incomplete-packet attachments this client holds from the server's pending-attachment budget.
        var reservedAttachmentBytes = 0
    }

    /// The most messages held after a CONNECT reply before they are sent anyway.
    private static let maxHeld = 1024

    private let state: Mutex<State>

    init(server: SocketIOServer, connection: any EngineConnection) {
        self.server = server
        self.connection = connection
        var logger = server.logger
        logger[metadataKey: "eio.sid"] = .string(connection.id)
        self.logger = logger
        let config = server.configuration
        self.state = Mutex(
            State(
                decoder: SocketIOPacketDecoder(
                    maxAttachments: config.maxAttachments, maxDepth: config.maxPayloadDepth, maxAttachmentBytes: config.maxAttachmentBytes)))
    }

    func start() {
        let timer = server.scheduler.schedule(after: server.configuration.connectTimeout) { [weak self] in
            self?.connectTimeoutFired()
        }
        let keep = state.withLock { s in
            guard !s.closed else { return false }
            s.connectTimer = timer
            return true
        }
        if !keep { timer.cancel() }
    }

    func send(_ messages: [EngineMessage]) {
        let direct = state.withLock { s in
            guard s.held != nil else { return true }
            s.held?.append(contentsOf: messages)
            return false
        }
        if direct {
            connection.send(messages)
        } else if state.withLock({ ($0.held?.count ?? 0) > Self.maxHeld }) {
            flushHeld()
        }
    }

    /// Starts holding outgoing messages for `delay` (after a CONNECT reply).
    private func hold(for delay: Duration) {
        let start = state.withLock { s in
            guard s.held == nil else { return false }
            s.held = []
            return true
        }
        guard start else { return }
        _ = server.scheduler.schedule(after: delay) { [weak self] in self?.flushHeld() }
    }

    /// Sends the held messages in order and stops holding. Messages sent while this runs stay in order:
    /// they are appended to the held list until it is empty.
    private func flushHeld() {
        while true {
            let batch: [EngineMessage]? = state.withLock { s in
                guard let held = s.held else { return nil }
                if held.isEmpty {
                    s.held = nil
                    return nil
                }
                s.held = []
                return held
            }
            guard let batch else { return }
            connection.send(batch)
        }
    }

    /// Closes the Engine.IO session; sockets will disconnect with `reason`.
    func close(reason: SocketIODisconnectReason) {
        let first = state.withLock { s in
            guard !s.closed, s.closeReason == nil else { return false }
            s.closeReason = reason
            return true
        }
        if first { connection.close() }
    }

    /// Removes a socket the server disconnects; false if it was not (or no longer) registered.
    func removeSocket(_ socket: SocketIOSocket) -> Bool {
        state.withLock { s in
            guard s.sockets[socket.namespace.name] === socket else { return false }
            s.sockets[socket.namespace.name] = nil
            return true
        }
    }

    var socketCount: Int { state.withLock { $0.sockets.count } }

    private func connectTimeoutFired() {
        let expired = state.withLock { s in
            s.connectTimer = nil
            return !s.closed && s.sockets.isEmpty
        }
        guard expired else { return }
        logger.info("Socket.IO: no namespace connected within connectTimeout \(server.configuration.connectTimeout); closing the session")
        close(reason: .engineClosed(.serverClose))
    }

    private func violation(_ reason: String) {
        logger.notice("Socket.IO: invalid packet, closing the session: \(reason)")
        SocketIOMetrics.protocolError()
        close(reason: .protocolViolation(reason))
    }

    // MARK: EngineConnectionDelegate

    func engineConnection(_ connection: any EngineConnection, didReceive message: EngineMessage) {
        let budget = server.attachmentBudget
        let decoded: Result<SocketIOPacket?, SocketIOProtocolError>? = state.withLock { s in
            guard !s.closed, s.closeReason == nil else { return nil }
            let result: Result<SocketIOPacket?, SocketIOProtocolError>
            do throws(SocketIOProtocolError) {
                result = .success(try s.decoder.decode(message))
            } catch {
                result = .failure(error)
            }
            // Attachments held for an incomplete packet count against the process-wide budget.
            let held = s.decoder.heldAttachmentBytes
            if held > s.reservedAttachmentBytes {
                guard budget.reserve(held - s.reservedAttachmentBytes) else {
                    return .failure(
                        SocketIOProtocolError(
                            "binary attachments refused: the server holds \(budget.limit) bytes of incomplete binary packets (pendingAttachmentBudget)"))
                }
            } else if held < s.reservedAttachmentBytes {
                budget.release(s.reservedAttachmentBytes - held)
            }
            s.reservedAttachmentBytes = held
            return result
        }
        switch decoded {
        case nil, .success(nil)?: return
        case .failure(let error)?: violation(error.reason)
        case .success(let packet?)?: handle(packet)
        }
    }

    func engineConnection(_ connection: any EngineConnection, didCloseWith reason: EngineCloseReason) {
        let budget = server.attachmentBudget
        let (sockets, override, timer) = state.withLock { s in
            s.closed = true
            budget.release(s.reservedAttachmentBytes)
            s.reservedAttachmentBytes = 0
            s.decoder = SocketIOPacketDecoder()  // drops any held attachments now, not when the client goes away
            let sockets = Array(s.sockets.values)
            s.sockets = [:]
            let timer = s.connectTimer
            s.connectTimer = nil
            return (sockets, s.closeReason, timer)
        }
        timer?.cancel()
        let socketReason = override ?? .engineClosed(reason)
        for socket in sockets { socket.finish(socketReason) }
    }

    // MARK: Packets

    private func handle(_ packet: SocketIOPacket) {
        switch packet.type {
        case .connect:
            connect(namespace: packet.namespace, auth: packet.data?.jsonValue)
        case .disconnect:
            guard let socket = state.withLock({ $0.sockets.removeValue(forKey: packet.namespace) }) else {
                logger.debug("Socket.IO: DISCONNECT for namespace \(packet.namespace), which is not connected")
                return
            }
            socket.finish(.clientNamespaceDisconnect)
        case .event, .binaryEvent:
            guard let socket = socket(for: packet.namespace) else {
                logger.debug("Socket.IO: event for namespace \(packet.namespace), which is not connected; ignored")
                return
            }
            socket.handleEvent(packet)
        case .ack, .binaryAck:
            guard let socket = socket(for: packet.namespace) else { return }
            socket.handleAck(packet)
        case .connectError:
            violation("CONNECT_ERROR is sent by servers only")
        }
    }

    private func socket(for namespace: String) -> SocketIOSocket? {
        state.withLock { $0.sockets[namespace] }
    }

    private func connect(namespace name: String, auth: JSONValue?) {
        if socket(for: name) != nil {
            logger.debug("Socket.IO: second CONNECT for namespace \(name) ignored")
            return
        }
        let handshake = SocketIOHandshake(engine: connection.handshake, engineID: connection.id, namespace: name, auth: auth)
        guard let namespace = server.resolveNamespace(name, handshake: handshake) else {
            logger.info("Socket.IO: CONNECT to unknown namespace \(name) refused")
            refuse(name, message: "Invalid namespace", data: nil)
            return
        }
        // Connection state recovery: `{pid, offset}` in the CONNECT payload names a socket that dropped recently.
        var restored: (session: SocketIORecoveryLog.Session, missed: [SocketIOValue])?
        if let recovery = namespace.recovery, let pid = auth?["pid"]?.stringValue, let offset = auth?["offset"]?.stringValue {
            restored = recovery.restore(privateID: pid, offset: offset)
        }
        let privateID = namespace.recovery == nil ? nil : (restored == nil ? SocketIOClient.makeSocketID() : auth?["pid"]?.stringValue)
        let socket = SocketIOSocket(
            id: restored?.session.socketID ?? SocketIOClient.makeSocketID(), namespace: namespace, handshake: handshake, client: self,
            privateID: privateID, recovered: restored != nil)
        if let restored { socket.data = restored.session.data }
        let skipMiddleware = restored != nil && namespace.recovery?.settings.skipMiddlewares == true
        for middleware in namespace.middlewareChain where !skipMiddleware {
            if case .refuse(let message, let data) = middleware(socket) {
                logger.info("Socket.IO: connection to namespace \(name) refused by middleware: \(message)")
                refuse(name, message: message, data: data)
                return
            }
        }
        let (registered, timer) = state.withLock { s -> (Bool, SocketIOTimer?) in
            guard !s.closed, s.closeReason == nil, s.sockets[name] == nil else { return (false, nil) }
            s.sockets[name] = socket
            let timer = s.connectTimer
            s.connectTimer = nil
            return (true, timer)
        }
        timer?.cancel()
        guard registered else { return }
        guard server.attach(socket) else {
            _ = removeSocket(socket)
            refuse(name, message: "Namespace is being recreated, retry", data: nil)
            return
        }
        socket.markConnected()
        // The CONNECT reply goes out before the socket joins any room, so no broadcast can overtake it.
        var object = JSONObject()
        object["sid"] = .string(socket.id)
        if let privateID { object["pid"] = .string(privateID) }
        send(SocketIOPacketEncoder.encode(SocketIOPacket(type: .connect, namespace: name, data: .json(.object(object)))))
        if let delay = server.configuration.connectReplyDelay { hold(for: delay) }
        socket.join(socket.id)
        if let restored {
            // Its rooms again, then what it missed, before any handler can emit.
            socket.join(Array(restored.session.rooms.subtracting([socket.id])))
            for data in restored.missed {
                send(SocketIOPacketEncoder.encode(SocketIOPacket(type: .event, namespace: name, data: data)))
            }
            logger.debug("Socket.IO: socket \(socket.id) recovered, \(restored.missed.count) missed events sent again")
        }
        for handler in namespace.connectionHandlerChain { handler(socket) }
    }

    private func refuse(_ namespace: String, message: String, data: JSONValue?) {
        var object = JSONObject()
        object["message"] = .string(message)
        if let data { object["data"] = data }
        send(SocketIOPacketEncoder.encode(SocketIOPacket(type: .connectError, namespace: namespace, data: .json(.object(object)))))
    }

    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    /// A random 20-character URL-safe id (120 bits), like the JavaScript server's socket ids.
    static func makeSocketID() -> String {
        var generator = SystemRandomNumberGenerator()
        var bytes = [UInt8](repeating: 0, count: 20)
        var bits: UInt64 = 0
        var available = 0
        for i in 0..<20 {
            if available < 6 {
                bits = generator.next()
                available = 64
            }
            bytes[i] = alphabet[Int(bits & 63)]
            bits >>= 6
            available -= 6
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
