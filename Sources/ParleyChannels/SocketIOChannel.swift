public import Logging

import EngineIO
import Synchronization
import ParleyCore
public import ParleyDispatch
public import ParleyJSON
public import SocketIO

/// Rasa's `socketio` channel on a Parley Socket.IO server, byte-compatible with Rasa 3.6 / Pro
/// (`docs/../shared/spec/rasa-socketio.md` §2–§6), with namespaces that work.
///
/// - CONNECT: with a JWT key configured, the CONNECT auth object must carry a valid token (``JWTVerifier``);
///   otherwise the client gets `44{"message":"Connection rejected by server"}`.
/// - `session_request` `{"session_id": X}`: X absent or null → a fresh 32-hex id; any other value is echoed
///   unchanged (`""` and non-strings included) as the **bare** `session_confirm` argument, to the requesting
///   socket only. With `session_persistence` the socket joins the room named after the session id.
/// - `user_uttered` `{"message", "session_id"?, "<metadata_key>"?}`: the conversation id is `session_id`
///   (persistence; missing/empty ones are ignored with a warning) or the socket id. Metadata is an object or
///   a JSON string holding one. Replies go, one `bot_uttered` per message of
///   ``OutputMapping/socketIOMessages(for:)-(JSONValue)``, to the session room (persistence) or the socket.
/// - Everything happens on the configured namespace: handlers, rooms and emits.
/// - Invalid or refused events get no reply, as in Rasa, and the socket stays connected; unlike Rasa the socket
///   is told why: the ``SocketIOChannelConfiguration/errorEvent`` (`parley_error`) with a ``Refusal``
///   (`{"code","message","event"}`), and a log line at most once per socket per 10 s.
/// - Each socket may send `rate_limit.messages_per_second` messages on average, `rate_limit.burst` at once;
///   more are refused with `rate_limited` without reaching the dispatcher.
///
/// Also the ``ProactiveOutput`` for plugin `emit`s: they go to the conversation's room.
public final class SocketIOChannel: ProactiveOutput, Sendable {
    /// The channel name recorded as `input_channel`.
    public static let name = "socketio"
    /// Rasa's CONNECT_ERROR message.
    public static let rejectionMessage = "Connection rejected by server"

    /// The channel's settings.
    public let configuration: SocketIOChannelConfiguration
    /// The namespace the channel serves.
    public let namespace: SocketIONamespace
    let turns: any TurnHandler
    let jwt: JWTVerifier?
    let logger: Logger
    /// The sockets that asked for numbered messages, by socket id.
    let sequenced = Mutex<[String: SequencedDelivery]>([:])
    /// The namespace's rooms are this process's only (the in-memory adapter): numbered messages need not be
    /// broadcast when no socket here asked for them.
    let localRoomsOnly: Bool

    /// The event numbered messages travel as between the channel and the sockets that asked for them (never
    /// sent to a client): `[seq, response]` to the conversation's ``numberedRoom(_:)``.
    static let sequencedEvent = "parley:numbered"
    /// The event stream steps travel as to the numbering sockets: `[kind ("start", "chunk", "end"), seq, index, text]`.
    static let streamEvent = "parley:stream"
    /// Replies being streamed on this node right now, by conversation: the final message's number and the chunks
    /// so far (what a client that reconnects mid-stream lacks).
    let openStreams = Mutex<[String: (seq: Int64, chunks: [String])]>([:])

    /// Installs the channel's middleware and handlers on `server`'s configured namespace.
    /// - Parameters:
    ///   - server: the Socket.IO server (mounted on the Engine.IO endpoint at `socketio_path`).
    ///   - configuration: the `channels.socketio` section.
    ///   - turns: the dispatcher.
    ///   - jwt: the verifier built from `jwt_key`/`jwt_method`, or nil for no authentication.
    ///   - outputs: the dispatcher's proactive sink; the channel registers itself there as ``name`` so emits reach
    ///     the conversation's room. Nil: this channel delivers no emits.
    ///   - logger: one line per connection, session and refused input.
    public init(
        server: SocketIOServer, configuration: SocketIOChannelConfiguration, turns: any TurnHandler, jwt: JWTVerifier?,
        outputs: ProactiveOutputs? = nil, logger: Logger
    ) {
        self.configuration = configuration
        self.namespace = server.of(configuration.namespace)
        self.localRoomsOnly = namespace.adapter is SocketIOInMemoryAdapter
        self.turns = turns
        self.jwt = jwt
        self.logger = logger
        install()
        outputs?.register(self, for: Self.name)
    }

    private func install() {
        if let jwt {
            let logger = self.logger
            namespace.use { socket in
                switch jwt.verify(auth: socket.auth) {
                case .success(let identity):
                    if let session = identity.sessionID { socket.data["jwt_session_id"] = .string(session) }
                    return .accept
                case .failure(let rejection):
                    logger.info(
                        "socketio: connection rejected",
                        metadata: [
                            "engineio.sid": "\(socket.handshake.engineID)", "reason": "\(rejection)",
                            "remote": "\(socket.handshake.engine.remoteAddress ?? "?")",
                        ])
                    return .refuse(message: Self.rejectionMessage)
                }
            }
        }
        namespace.onConnection { [self] socket in
            if socket.recovered {
                // Back after a drop (connection state recovery) with its rooms: a numbering socket's sequencer did
                // not survive, so it leaves that room and asks again (session_request with parley.resume_from).
                for room in socket.rooms where room.hasPrefix("\u{1}") { socket.leave(room) }
            }
            logger.debug(
                "socketio: connected", metadata: ["sid": "\(socket.id)", "engineio.sid": "\(socket.handshake.engineID)", "namespace": "\(namespace.name)"])
            ChannelMetrics.socketConnected()
            // Per socket: one guard object and one handler for every event (an idle session holds little).
            let guardian = SocketGuard(messagesPerSecond: configuration.messagesPerSecond, burst: configuration.messageBurst)
            socket.onAny { [self] socket, event in
                switch event.name {
                case "session_request":
                    sessionRequest(socket, event, refusals: guardian)
                case configuration.userMessageEvent:
                    guard guardian.admit() else {
                        refuse(
                            socket,
                            Refusal(
                                "rate_limited",
                                "more than \(configuration.messageBurst) messages at once or \(configuration.messagesPerSecond) per second; slow down"),
                            event: configuration.userMessageEvent, log: guardian)
                        return
                    }
                    userUttered(socket, event, refusals: guardian)
                default:
                    break
                }
            }
            socket.onDisconnect { [self] socket, reason in
                sequenced.withLock { _ = $0.removeValue(forKey: socket.id) }
                ChannelMetrics.socketDisconnected()
                logger.debug("socketio: disconnected", metadata: ["sid": "\(socket.id)", "reason": "\(reason)"])
            }
        }
    }

    /// The room of the sockets of a conversation that asked for numbered messages. Its name starts with a control
    /// character, which no session id may contain, so no client can join it by choosing a session id.
    static func numberedRoom(_ conversationID: String) -> String { "\u{1}numbered\u{1}" + conversationID }

    /// A `bot_uttered` payload with `"parley": {"seq": N}` (and `"part"`/`"parts"` when one response made several
    /// messages). Payloads that are not objects (a custom payload may be anything) go out as they are.
    static func numbered(_ message: JSONValue, seq: Int64, part: Int, parts: Int) -> JSONValue {
        guard case .object(var object) = message else { return message }
        var parley: JSONObject = ["seq": .int(seq)]
        if parts > 1 {
            parley["part"] = .int(Int64(part))
            parley["parts"] = .int(Int64(parts))
        }
        object["parley"] = .object(parley)
        return .object(object)
    }

    /// The room / conversation id for a session id value: strings as they are, other JSON as its text.
    static func roomName(_ sessionID: JSONValue) -> String {
        if case .string(let s) = sessionID { return s }
        return sessionID.serialized
    }

    func boundSession(_ socket: SocketIOSocket) -> String? {
        socket.data["jwt_session_id"]?.stringValue
    }

    /// Tells `socket` why its `event` was not handled (the error event, unless turned off) and logs it at most
    /// once per interval for that socket.
    func refuse(_ socket: SocketIOSocket, _ refusal: Refusal, event: String, log: SocketGuard) {
        ChannelMetrics.refused(code: refusal.code)
        if !configuration.errorEvent.isEmpty {
            socket.emit(configuration.errorEvent, arguments: [.json(refusal.payload(event: event))])
        }
        let (shouldLog, suppressed) = log.shouldLog()
        if shouldLog {
            logger.info(
                "socketio: \(event) refused",
                metadata: ["sid": "\(socket.id)", "code": "\(refusal.code)", "reason": "\(refusal.message)", "suppressed_since_last_line": "\(suppressed)"])
        }
    }

    func sessionRequest(_ socket: SocketIOSocket, _ event: SocketIOEvent, refusals: SocketGuard) {
        func refuse(_ message: String) {
            self.refuse(socket, Refusal("invalid_input", message), event: "session_request", log: refusals)
        }
        // Rasa: `async def session_request(sid, data)`: no argument → TypeError → no confirm.
        guard let first = event.arguments.first else {
            refuse("session_request needs data: send {\"session_id\": null} for a new session or the id to resume")
            return
        }
        guard let json = first.jsonValue else {
            refuse("session_request data is binary; send {\"session_id\": ...}")
            return
        }
        let data: JSONObject
        switch json {
        case .null: data = [:]
        case .object(let o): data = o
        default:
            refuse("session_request data is not an object; send {\"session_id\": ...}")
            return
        }
        var sessionID: JSONValue
        if let given = data["session_id"], !given.isNull {
            sessionID = given
        } else if let bound = boundSession(socket) {
            sessionID = .string(bound)
        } else {
            sessionID = .string(Identifier.random32Hex())
        }
        let room = Self.roomName(sessionID)
        if let bound = boundSession(socket), room != bound {
            self.refuse(
                socket, Refusal("forbidden", "this token may only use session \(JSONValue.string(bound).serialized)"), event: "session_request", log: refusals)
            return
        }
        // Rasa echoes any id (even ""); one with control characters could name a room of the server's own.
        if room.utf8.count > 256 || room.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            refuse("session_id must be at most 256 bytes without control characters")
            return
        }
        // `"parley": {"resume_from": N}` (or `{}`): numbered messages, and a replay of those after N.
        var delivery: SequencedDelivery?
        var chunksHeld = 0
        switch data["parley"] {
        case nil, .null?: break
        case .object(let options)?:
            guard configuration.sessionPersistence else {
                refuse("parley options (numbered messages, replay) need session_persistence: true on the server")
                return
            }
            var resumeFrom: Int64?
            switch options["resume_from"] {
            case nil, .null?: break
            case .int(let n)? where n >= 0: resumeFrom = n
            default:
                refuse("parley.resume_from must be a whole number >= 0 (the seq of the last message the client has)")
                return
            }
            switch options["chunks"] {
            case nil, .null?: break
            case .int(let n)? where n >= 0: chunksHeld = Int(n)
            default:
                refuse("parley.chunks must be a whole number >= 0 (how many chunks of the streamed message resume_from + 1 the client has)")
                return
            }
            delivery = SequencedDelivery(
                socket: socket, conversationID: room, event: configuration.botMessageEvent, turns: turns, resumeFrom: resumeFrom, logger: logger)
        default:
            refuse("parley must be an object such as {\"resume_from\": 41}")
            return
        }
        if configuration.sessionPersistence {
            if let delivery {
                sequenced.withLock { $0[socket.id] = delivery }
                socket.interceptBroadcasts { delivery.intercept($0) }
                socket.join(Self.numberedRoom(room))
            } else {
                socket.join(room)
            }
        }
        socket.emit("session_confirm", arguments: [.json(sessionID)])
        // After joining the room (whatever is broadcast from now on waits in the delivery until it began).
        delivery?.begin(stream: openStreams.withLock { $0[room] }, chunksHeld: chunksHeld)
        logger.debug("socketio: session confirmed", metadata: ["sid": "\(socket.id)", "session_id": "\(Self.roomName(sessionID))"])
    }

    func userUttered(_ socket: SocketIOSocket, _ event: SocketIOEvent, refusals: SocketGuard) {
        let eventName = configuration.userMessageEvent
        func refuse(_ code: String, _ message: String) {
            self.refuse(socket, Refusal(code, message), event: eventName, log: refusals)
        }
        guard case .object(let data)? = event.arguments.first?.jsonValue else {
            refuse("invalid_input", "\(eventName) data must be an object {\"message\": \"...\", \"session_id\": \"...\"}")
            return
        }
        let text: String
        switch data["message"] {
        case nil, .null?: text = ""
        case .string(let s)?: text = Paragraphs.pythonStrip(s)
        default:
            refuse("invalid_input", "message must be a string")
            return
        }
        var metadata = JSONObject()
        let key = configuration.metadataKey
        switch data[key] {
        case nil, .null?: break
        case .object(let o)?: metadata = o
        case .string(let s)?:
            let parsed: JSONValue
            do {
                parsed = try JSONValue.parse(s, maxDepth: JSONValue.inputParseDepth)
            } catch let error as JSONParseError where error.reason.hasPrefix("nesting deeper") {
                refuse("too_large", "\(key) is nested deeper than \(JSONValue.inputParseDepth) levels; send flatter metadata")
                return
            } catch {
                refuse("invalid_input", "\(key) is a string but not JSON; send an object")
                return
            }
            guard case .object(let o) = parsed else {
                refuse("invalid_input", "\(key) JSON is not an object; send an object")
                return
            }
            metadata = o
        default:
            refuse("invalid_input", "\(key) must be an object (or a JSON string holding one)")
            return
        }
        let senderID: String
        if configuration.sessionPersistence {
            guard let session = data["session_id"], !session.isFalsy else {
                refuse(
                    "invalid_input",
                    "A message without a valid session_id was received. This message will be ignored. Make sure to set a proper session id using the `session_request` socketIO event."
                )
                return
            }
            senderID = Self.roomName(session)
            if let bound = boundSession(socket), bound != senderID {
                refuse("forbidden", "this token may only send to session \(JSONValue.string(bound).serialized)")
                return
            }
        } else {
            senderID = socket.id
        }
        var messageID: String?
        switch data["message_id"] {
        case nil, .null?: break
        case .string(let id)? where InputValidation.isValidMessageID(id):
            messageID = id
        default:
            refuse("invalid_input", "message_id must be a string of 1 to 256 bytes without control characters")
            return
        }
        let message = UserMessage(text: text, senderID: senderID, inputChannel: Self.name, metadata: metadata, messageID: messageID)
        ChannelMetrics.userMessage()
        logger.debug("socketio: turn", metadata: ["sid": "\(socket.id)", "sender_id": "\(senderID)", "message_id": "\(message.messageID)"])
        let room = senderID
        turns.submit(message) { [self] result in
            // The completion runs on a worker thread: the responses are mapped, encoded and sent on the loop that
            // owns the socket (one hand-off per batch of replies to that loop).
            socket.execute { [self] in
                switch result {
                case .success(let turn) where turn.isRepeat:
                    // A message sent again: its first answer goes to this socket only (a numbering socket drops what
                    // it already has).
                    if let delivery = sequenced.withLock({ $0[socket.id] }) {
                        for (seq, response) in zip(turn.sequences, turn.responses) { delivery.receive(seq, response) }
                    } else {
                        for payload in OutputMapping.socketIOMessages(for: turn.responses) {
                            socket.emit(configuration.botMessageEvent, arguments: payload.isNull ? [] : [.json(payload)])
                        }
                    }
                case .success(let turn):
                    emit(turn, room: room)
                    logger.debug("socketio: turn done", metadata: ["sender_id": "\(room)", "responses": "\(turn.responses.count)"])
                case .failure(let error):
                    self.refuse(socket, Refusal.from(error), event: eventName, log: refusals)
                }
            }
        }
    }

    /// Emits the `bot_uttered` events for a turn's responses to the sockets of conversation `room`, in order: as
    /// they are to the room (Rasa's bytes), and numbered to the sockets that asked (through ``numberedRoom(_:)``).
    func emit(_ turn: TurnResult, room: String) {
        let target = namespace.to(room)
        for payload in OutputMapping.socketIOMessages(for: turn.responses) {
            // A custom payload whose `data` is null: python-socketio sends the event without an argument.
            target.emit(configuration.botMessageEvent, arguments: payload.isNull ? [] : [.json(payload)])
        }
        guard configuration.sessionPersistence, turn.sequences.count == turn.responses.count else { return }
        // Only this process holds the rooms (no Redis adapter) and no socket here asked for numbers: nobody to tell.
        if localRoomsOnly && sequenced.withLock({ $0.isEmpty }) { return }
        // Volatile: numbering sockets get these through their sequencer (and a replay), not through recovery.
        let numbered = namespace.to(Self.numberedRoom(room)).volatile
        for (seq, response) in zip(turn.sequences, turn.responses) {
            numbered.emit(Self.sequencedEvent, arguments: [.json(.int(seq)), .json(response)])
        }
    }

    /// The ids of the sockets connected to a conversation (its session room, or the socket itself without
    /// session persistence), on every node sharing the adapter; sorted.
    /// - Throws: when another node does not answer in time (``SocketIOAdapter/fetchSocketIDs(for:)``).
    public func connections(of conversationID: String) async throws -> [String] {
        try await namespace.to([conversationID, Self.numberedRoom(conversationID)]).fetchSocketIDs().sorted()
    }

    /// Shows a streamed reply: Rasa Pro's `stream_start {}`, `stream_chunk {"text"}`, `stream_end {}` to the
    /// conversation's room, and the same steps numbered to the sockets that asked (``SequencedDelivery``).
    public func stream(_ event: StreamEvent, to senderID: String, channel: String?) {
        let plain = namespace.to(senderID)
        let numbered = namespace.to(Self.numberedRoom(senderID)).volatile
        let nobodyNumbered = localRoomsOnly && sequenced.withLock { $0.isEmpty }
        switch event {
        case .start(let seq):
            openStreams.withLock { $0[senderID] = (seq, []) }
            plain.emit("stream_start", .json([:]))
            if !nobodyNumbered { numbered.emit(Self.streamEvent, .json("start"), .json(.int(seq)), .json(0), .json("")) }
        case .chunk(let seq, let index, let text):
            openStreams.withLock { $0[senderID]?.chunks.append(text) }
            plain.emit("stream_chunk", .json(["text": .string(text)]))
            if !nobodyNumbered { numbered.emit(Self.streamEvent, .json("chunk"), .json(.int(seq)), .json(.int(Int64(index))), .json(.string(text))) }
        case .end(let seq):
            openStreams.withLock { _ = $0.removeValue(forKey: senderID) }
            plain.emit("stream_end", .json([:]))
            if !nobodyNumbered { numbered.emit(Self.streamEvent, .json("end"), .json(.int(seq)), .json(0), .json("")) }
        }
    }

    /// Sends the configured typing event (`channels.socketio.typing`) to every socket of the conversation.
    public func indicateTyping(_ typing: Bool, to senderID: String, channel: String?) {
        guard let events = configuration.typing else { return }
        let event = typing ? events.on : events.off
        namespace.to([senderID, Self.numberedRoom(senderID)]).volatile.emit(event.event, arguments: event.payload.isNull ? [] : [.json(event.payload)])
    }

    /// Delivers proactive responses (plugin `emit`) to every socket of the conversation's room.
    public func deliver(_ messages: TurnResult, to senderID: String, channel: String?) async {
        emit(messages, room: senderID)
    }
}
