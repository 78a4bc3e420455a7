public import EngineIO
public import ParleyJSON
public import SocketIO

/// Settings of ``SocketIOChannel``: Rasa's `credentials.yml` `socketio:` keys, plus Parley's (the names in
/// parentheses are the YAML keys under `channels.socketio`).
public struct SocketIOChannelConfiguration: Sendable, Hashable {
    /// Inbound event name (`user_message_evt`, default `user_uttered`).
    public var userMessageEvent: String
    /// Outbound event name (`bot_message_evt`, default `bot_uttered`).
    public var botMessageEvent: String
    /// The Socket.IO namespace of handlers, rooms and emits (`namespace`, default `/`).
    public var namespace: String
    /// Rasa's `session_persistence` (default false): true = the conversation id is the client's `session_id`
    /// and replies go to every socket of that session; false = the conversation id is the socket id.
    public var sessionPersistence: Bool
    /// Engine.IO path at the server root (`socketio_path`, default `/socket.io`).
    public var socketIOPath: String
    /// JWT authentication of connections; nil = every connection is accepted.
    public var jwt: JWTConfiguration?
    /// The key of `user_uttered` data read as message metadata (`metadata_key`, default `metadata`).
    public var metadataKey: String
    /// Origins allowed to connect from a browser (`cors_origins`): empty (default) = no CORS headers and no
    /// Origin check (Rasa's behaviour); `["*"]` = any origin; otherwise an allowlist.
    public var corsOrigins: [String]
    /// Engine.IO ping interval in seconds (`ping_interval`, default 25).
    public var pingInterval: Double
    /// Engine.IO ping timeout in seconds (`ping_timeout`, default 20).
    public var pingTimeout: Double
    /// Largest accepted Engine.IO payload in bytes (`max_payload`, default 1 000 000).
    public var maxPayload: Int
    /// WebSocket permessage-deflate (`per_message_deflate`): nil (the default, `false`) = never negotiated;
    /// set (`true` or a mapping) = offered to clients that ask for it.
    public var perMessageDeflate: PerMessageDeflate?
    /// The event a refused message gets back on its socket (`error_event`, default `parley_error`); empty = none
    /// (refusals are then only logged, as in Rasa). Stock Rasa widgets ignore events they do not know.
    public var errorEvent: String
    /// Messages per second a socket may send on average (`rate_limit.messages_per_second`, default 20); 0 = no
    /// limit. Messages over the limit are refused with `rate_limited`.
    public var messagesPerSecond: Double
    /// Messages a socket may send at once above the average (`rate_limit.burst`, default 40).
    public var messageBurst: Int
    /// Binary attachments one Socket.IO packet may announce (`max_attachments`, default 16).
    public var maxAttachments: Int = 16
    /// Bytes of attachments one packet may carry (`max_attachment_bytes`, default 4 MiB).
    public var maxAttachmentBytes: Int = 4 << 20
    /// Bytes of incomplete binary packets all sessions may hold together (`pending_attachment_budget`, default 64 MiB).
    public var pendingAttachmentBudget: Int = 64 << 20
    /// The events that tell clients the bot is typing and stopped (sent when the dispatcher says so, see
    /// `DispatcherConfiguration.typingDelay`); nil: none are sent.
    public var typing: TypingEvents?
    /// Socket.IO connection state recovery (`connectionStateRecovery` of socket.io ≥ 4.6); nil: off.
    public var connectionStateRecovery: SocketIOConnectionStateRecovery?

    /// The typing events.
    public struct TypingEvents: Sendable, Hashable {
        /// Sent when the bot starts typing (and again while it keeps typing).
        public var on: TypingEvent
        /// Sent when it stops (just before its reply).
        public var off: TypingEvent
        public init(on: TypingEvent = .init(event: "typing_on", payload: [:]), off: TypingEvent = .init(event: "typing_off", payload: [:])) {
            self.on = on
            self.off = off
        }
    }

    /// One typing event: its name and payload (null: sent without an argument).
    public struct TypingEvent: Sendable, Hashable {
        public var event: String
        public var payload: JSONValue
        public init(event: String, payload: JSONValue) {
            self.event = event
            self.payload = payload
        }
    }

    public init(
        userMessageEvent: String = "user_uttered",
        botMessageEvent: String = "bot_uttered",
        namespace: String = "/",
        sessionPersistence: Bool = false,
        socketIOPath: String = "/socket.io",
        jwt: JWTConfiguration? = nil,
        metadataKey: String = "metadata",
        corsOrigins: [String] = [],
        pingInterval: Double = 25,
        pingTimeout: Double = 20,
        maxPayload: Int = 1_000_000,
        perMessageDeflate: PerMessageDeflate? = nil,
        errorEvent: String = "parley_error",
        messagesPerSecond: Double = 20,
        messageBurst: Int = 40
    ) {
        self.userMessageEvent = userMessageEvent
        self.botMessageEvent = botMessageEvent
        self.namespace = namespace
        self.sessionPersistence = sessionPersistence
        self.socketIOPath = socketIOPath
        self.jwt = jwt
        self.metadataKey = metadataKey
        self.corsOrigins = corsOrigins
        self.pingInterval = pingInterval
        self.pingTimeout = pingTimeout
        self.maxPayload = maxPayload
        self.perMessageDeflate = perMessageDeflate
        self.errorEvent = errorEvent
        self.messagesPerSecond = messagesPerSecond
        self.messageBurst = messageBurst
    }
}

extension SocketIOChannelConfiguration {
    /// The Socket.IO endpoint's CORS settings from ``corsOrigins``; the HTTP routes use the same.
    public var cors: EngineIOConfiguration.CORS {
        .init(allowedOrigins: corsOrigins, allowCredentials: !corsOrigins.isEmpty)
    }

    /// The Engine.IO endpoint these settings describe: ``socketIOPath``, ping timing, payload limit, CORS and
    /// permessage-deflate.
    public var engineIO: EngineIOConfiguration {
        EngineIOConfiguration(
            path: socketIOPath + "/",
            pingInterval: .milliseconds(Int64(pingInterval * 1000)),
            pingTimeout: .milliseconds(Int64(pingTimeout * 1000)),
            maxPayload: maxPayload,
            cors: cors,
            perMessageDeflate: perMessageDeflate)
    }

    /// The Socket.IO server limits these settings describe (attachments).
    public var socketIO: SocketIOConfiguration {
        SocketIOConfiguration(
            maxAttachments: maxAttachments, maxAttachmentBytes: maxAttachmentBytes, pendingAttachmentBudget: pendingAttachmentBudget,
            connectionStateRecovery: connectionStateRecovery)
    }
}

/// JWT settings of the Socket.IO channel, with the key material already read.
public struct JWTConfiguration: Sendable, Hashable {
    /// The algorithms `jwt_method` accepts. `none` is never accepted.
    public static let supportedMethods = ["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "EdDSA"]

    /// The key: the HMAC secret for `HS*`, a PEM public (or private) key for the others.
    public var key: String
    /// Where the key came from, for messages (`channels.socketio.jwt_key`, `file /etc/parley/jwt.pem`, `environment PARLEY_JWT_KEY`).
    public var keySource: String
    /// The one accepted algorithm (`jwt_method`, default `HS256`), one of ``supportedMethods``.
    public var method: String
    /// When set (`jwt_session_claim`, e.g. `sub`), a socket may only use the session whose id equals this claim.
    public var sessionClaim: String?

    public init(key: String, keySource: String = "jwt_key", method: String = "HS256", sessionClaim: String? = nil) {
        self.key = key
        self.keySource = keySource
        self.method = method
        self.sessionClaim = sessionClaim
    }
}

/// `channels.rest:`: Rasa's REST channel (`POST /webhooks/rest/webhook`).
public struct RESTChannelConfiguration: Sendable, Hashable {
    /// Largest accepted request body in bytes (`max_body_size`, default 1 000 000).
    public var maxBodySize: Int
    /// `jwt_key` (or `jwt_key_file` / `jwt_key_env`), `jwt_method`, `jwt_session_claim`: requests must carry
    /// `Authorization: Bearer <JWT>`; with a session claim, `sender` must be the claim's value. Nil: the
    /// Socket.IO channel's JWT settings apply when it has any (so a REST request cannot write into a session the
    /// socket channel binds to a token), else no authentication (as in Rasa).
    public var jwt: JWTConfiguration?

    public init(maxBodySize: Int = 1_000_000, jwt: JWTConfiguration? = nil) {
        self.maxBodySize = maxBodySize
        self.jwt = jwt
    }
}

/// `api:`: the conversation HTTP API (`/conversations/{id}/tracker`, `/conversations/{id}/messages`).
public struct APIConfiguration: Sendable, Hashable {
    /// Whether the routes may be served (`enabled`, default true). They are served only when `token` is set,
    /// or when the server listens on a loopback address only (see ``isServed(host:)``).
    public var enabled: Bool
    /// When set (`token`), requests must carry `Authorization: Bearer <token>` or `?token=<token>`.
    public var token: String?
    /// `session_token`: a request may instead carry the conversation's own JWT (the Socket.IO channel's
    /// `jwt_key` and `jwt_session_claim`) to read that one conversation's history — for widgets that restore
    /// history after a reload. Default false.
    public var sessionToken: Bool

    public init(enabled: Bool = true, token: String? = nil, sessionToken: Bool = false) {
        self.enabled = enabled
        self.token = token
        self.sessionToken = sessionToken
    }

    /// Whether the conversation API is served on a server bound to `host`: enabled, and protected by a token
    /// (the API token, or session tokens) or reachable from this machine only (a loopback `host`). History is
    /// never readable by anyone on the network without a credential.
    public func isServed(host: String) -> Bool {
        enabled && (token != nil || sessionToken || Self.isLoopback(host))
    }

    /// `localhost`, `127.0.0.0/8` or `::1` (with or without brackets).
    public static func isLoopback(_ host: String) -> Bool {
        var h = Substring(host.lowercased())
        if h.hasPrefix("["), h.hasSuffix("]") { h = h.dropFirst().dropLast() }
        if h == "localhost" || h == "::1" || h == "0:0:0:0:0:0:0:1" { return true }
        let parts = h.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }
}
