public import HTTPTypes

/// Configuration of one ``EngineIOServer``. Every field has a default; the defaults match the Engine.IO
/// reference server (`/socket.io/`, 25 s ping interval, 20 s ping timeout, 1 MB max payload).
public struct EngineIOConfiguration: Sendable {
    /// Transports a server can offer.
    public enum Transport: String, Sendable, Hashable, CaseIterable {
        /// HTTP long-polling (GET to receive, POST to send).
        case polling
        /// WebSocket (one packet per frame).
        case websocket
    }

    /// Cross-origin settings for browser clients.
    public struct CORS: Sendable, Hashable {
        /// Allowed origins. `["*"]` allows every origin. An empty list sends no CORS headers and rejects
        /// nothing (the way Rasa's socketio channel behaves by default). Otherwise a request whose `Origin`
        /// is not in the list gets HTTP 400 `Not an accepted origin.` (requests without `Origin` pass).
        public var allowedOrigins: [String]
        /// Sends `Access-Control-Allow-Credentials: true` (the request's origin is then echoed instead of `*`).
        public var allowCredentials: Bool

        /// Creates a CORS configuration.
        /// - Parameters:
        ///   - allowedOrigins: origins allowed to call the server, `["*"]` for all, `[]` for no CORS handling.
        ///   - allowCredentials: whether browsers may send cookies and auth headers cross-origin.
        public init(allowedOrigins: [String] = [], allowCredentials: Bool = false) {
            self.allowedOrigins = allowedOrigins
            self.allowCredentials = allowCredentials
        }

        /// No CORS headers and no origin check.
        public static var disabled: Self { .init() }
        /// Every origin allowed (`Access-Control-Allow-Origin: *`).
        public static var anyOrigin: Self { .init(allowedOrigins: ["*"]) }

        /// The CORS response headers for a request from `origin` (the `Origin` header, nil when absent), or nil
        /// when the origin is not allowed. With no allowed origins every request passes with no headers; a
        /// request without `Origin` (not from a browser page) always passes.
        public func responseHeaders(origin: String?) -> HTTPFields? {
            guard !allowedOrigins.isEmpty else { return [:] }
            var headers = HTTPFields()
            if allowedOrigins.contains("*") {
                if allowCredentials, let origin {
                    headers[.accessControlAllowOrigin] = origin
                    headers[.vary] = "Origin"
                } else {
                    headers[.accessControlAllowOrigin] = "*"
                }
            } else {
                guard let origin else { return [:] }
                guard allowedOrigins.contains(origin) else { return nil }
                headers[.accessControlAllowOrigin] = origin
                headers[.vary] = "Origin"
            }
            if allowCredentials {
                headers[.accessControlAllowCredentials] = "true"
            }
            return headers
        }

        /// The headers of a preflight (`OPTIONS`) answer: ``responseHeaders(origin:)`` plus the allowed methods,
        /// the requested headers and a max age of one day.
        public func preflightHeaders(origin: String?, requestedHeaders: String?) -> HTTPFields? {
            guard var headers = responseHeaders(origin: origin) else { return nil }
            headers[.accessControlAllowMethods] = "GET,HEAD,PUT,PATCH,POST,DELETE"
            if let requestedHeaders { headers[.accessControlAllowHeaders] = requestedHeaders }
            headers[.accessControlMaxAge] = "86400"
            return headers
        }
    }

    /// The HTTP path the server answers on, e.g. `/socket.io/` or `/engine.io/`. Matched with or without the
    /// trailing slash.
    public var path: String
    /// Time between two server pings.
    public var pingInterval: Duration
    /// Time the client has to answer a ping; the session closes at pingInterval + pingTimeout without pong.
    public var pingTimeout: Duration
    /// Largest accepted polling POST body and WebSocket message, in bytes. Larger input closes the session
    /// (HTTP 413 over polling, close code 1009 over WebSocket).
    public var maxPayload: Int
    /// The transports clients may use.
    public var transports: Set<Transport>
    /// Whether polling sessions may upgrade to WebSocket (`upgrades: ["websocket"]` in the open packet).
    public var allowUpgrades: Bool
    /// Time a client has to finish an upgrade (`2probe` … `5`) once its WebSocket is open.
    public var upgradeTimeout: Duration
    /// Cross-origin settings.
    public var cors: CORS
    /// Upper bound, in bytes, of packets queued for one client and not yet taken by it (polling: not yet
    /// fetched by a GET; WebSocket: not yet accepted by the kernel). A client that lets it overflow is
    /// disconnected with ``EngineCloseReason/slowConsumer`` and a log line.
    public var maxOutboundQueueBytes: Int
    /// Most packets one long-polling response carries; the rest wait for the next GET. python-engineio
    /// clients refuse a payload of more than 16 packets ("Too many packets in payload"), so that is the default.
    public var maxPacketsPerPoll: Int
    /// WebSocket permessage-deflate (RFC 7692). `nil` (the default): never negotiated, frames are sent as they
    /// are. Set: offered to clients that ask for it in `Sec-WebSocket-Extensions`; ``maxPayload`` then applies
    /// to the decompressed size of inbound messages.
    public var perMessageDeflate: PerMessageDeflate?
    /// Written in front of every session id this server makes (default empty). A cluster sets it to
    /// `NODE.` so that a front (nginx) can route every request after the handshake to the node that holds the
    /// session by looking at the `sid` query parameter, whatever the client's address.
    public var sessionIDPrefix: String = ""

    /// Creates a configuration; every parameter has the reference server's default.
    /// - Parameters:
    ///   - path: HTTP path, default `/socket.io/`.
    ///   - pingInterval: default 25 s.
    ///   - pingTimeout: default 20 s.
    ///   - maxPayload: bytes, default 1 000 000.
    ///   - transports: default polling and WebSocket.
    ///   - allowUpgrades: default true.
    ///   - upgradeTimeout: default 10 s.
    ///   - cors: default ``CORS-swift.struct/disabled``.
    ///   - maxOutboundQueueBytes: default 4 MiB.
    ///   - maxPacketsPerPoll: default 16.
    ///   - perMessageDeflate: default nil (WebSocket compression off).
    public init(
        path: String = "/socket.io/",
        pingInterval: Duration = .seconds(25),
        pingTimeout: Duration = .seconds(20),
        maxPayload: Int = 1_000_000,
        transports: Set<Transport> = [.polling, .websocket],
        allowUpgrades: Bool = true,
        upgradeTimeout: Duration = .seconds(10),
        cors: CORS = .disabled,
        maxOutboundQueueBytes: Int = 4 * 1024 * 1024,
        maxPacketsPerPoll: Int = 16,
        perMessageDeflate: PerMessageDeflate? = nil
    ) {
        self.path = path
        self.pingInterval = pingInterval
        self.pingTimeout = pingTimeout
        self.maxPayload = maxPayload
        self.transports = transports
        self.allowUpgrades = allowUpgrades
        self.upgradeTimeout = upgradeTimeout
        self.cors = cors
        self.maxOutboundQueueBytes = maxOutboundQueueBytes
        self.maxPacketsPerPoll = max(1, maxPacketsPerPoll)
        self.perMessageDeflate = perMessageDeflate
    }

    /// The path without trailing slashes, for matching (`/socket.io`).
    var normalizedPath: String {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        if !p.hasPrefix("/") { p = "/" + p }
        return p
    }
}

extension Duration {
    /// Whole milliseconds (rounded down), as Engine.IO advertises them.
    var engineMilliseconds: Int64 {
        let (seconds, attoseconds) = self.components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
