import ParleyJSON
import HTTPTypes
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization

/// An Engine.IO v4 server: the session table, the long-polling HTTP endpoint and the WebSocket transport for
/// one path (e.g. `/socket.io/`).
///
/// Mount it on a Hummingbird application with ``Hummingbird/HTTPServerBuilder/engineIO(_:configuration:)``
/// (which serves its path, polling and WebSocket, in front of the application's router) and add it to the
/// application's services so a graceful shutdown closes every session with a close packet:
///
/// ```swift
/// let engine = EngineIOServer(configuration: .init(path: "/socket.io/"), delegate: myDelegate, logger: logger)
/// var app = Application(router: router, server: .engineIO([engine]), configuration: .init(address: .hostname("0.0.0.0", port: 5005)))
/// app.addServices(engine)
/// try await app.runService()
/// ```
public final class EngineIOServer: Service, Sendable {
    /// The server's configuration (fixed for its lifetime).
    public let configuration: EngineIOConfiguration
    let delegate: any EngineServerDelegate
    let logger: Logger
    private let sessions = Mutex<[String: EngineSession]>([:])
    /// Per-event-loop batching of messages sent from other threads.
    let outboxes = LoopOutboxes()
    private let normalizedPath: String

    /// Creates a server.
    /// - Parameters:
    ///   - configuration: paths, timings, limits; every field has a default.
    ///   - delegate: receives every new session and returns the delegate for its events.
    ///   - logger: used for session-level log lines (each carries `engineio.sid`).
    public init(configuration: EngineIOConfiguration = .init(), delegate: any EngineServerDelegate, logger: Logger) {
        self.configuration = configuration
        self.delegate = delegate
        self.logger = logger
        self.normalizedPath = configuration.normalizedPath
    }

    /// Number of sessions in the session table (open ones, plus closed polling sessions whose final packets
    /// wait for one last GET, at most pingTimeout). Zero once every client has gone.
    public var sessionCount: Int {
        sessions.withLock { $0.count }
    }

    /// Waits for the graceful-shutdown signal of the surrounding `ServiceGroup`, then closes every session
    /// (``EngineCloseReason/shutdown``; clients get a close packet).
    public func run() async throws {
        try? await gracefulShutdown()
        await shutdown()
    }

    /// Closes every session with ``EngineCloseReason/shutdown`` and returns once all of them have been closed
    /// on their event loops: a pending poll gets the queued packets and `1`, a WebSocket gets `1` and a close
    /// frame.
    public func shutdown() async {
        let all = sessions.withLock { Array($0.values) }
        for session in all {
            try? await session.eventLoop.submit { session.closeSession(.shutdown) }.get()
        }
        sessions.withLock { $0.removeAll() }
    }

    // MARK: Session table

    func lookupSession(_ sid: String) -> EngineSession? {
        sessions.withLock { $0[sid] }
    }

    func removeSession(_ session: EngineSession) {
        sessions.withLock { table in
            if table[session.id] === session { table[session.id] = nil }
        }
    }

    private func insert(_ session: EngineSession) {
        sessions.withLock { $0[session.id] = session }
    }

    /// 20 URL-safe characters from 120 random bits.
    static func makeSessionID() -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        var generator = SystemRandomNumberGenerator()
        var out = [UInt8]()
        out.reserveCapacity(20)
        var bits: UInt64 = 0
        var available = 0
        while out.count < 20 {
            if available < 6 {
                bits = generator.next()
                available = 64
            }
            out.append(alphabet[Int(bits & 63)])
            bits >>= 6
            available -= 6
        }
        return String(decoding: out, as: UTF8.self)
    }

    private func openPacket(sid: String, upgrades: [String]) -> EnginePacket {
        .open(
            EngineCodec.openPacketJSON(
                sid: sid,
                upgrades: upgrades,
                pingIntervalMilliseconds: configuration.pingInterval.engineMilliseconds,
                pingTimeoutMilliseconds: configuration.pingTimeout.engineMilliseconds,
                maxPayload: configuration.maxPayload
            )
        )
    }

    /// Creates a WebSocket-only session on the channel's loop and writes its open packet. Channel loop only.
    func openWebSocketSession(link: EngineWebSocketHandler, handshake: EngineHandshake, eventLoop: any EventLoop) -> EngineSession {
        let session = EngineSession(
            id: configuration.sessionIDPrefix + Self.makeSessionID(),
            handshake: handshake,
            eventLoop: eventLoop,
            server: self,
            transport: .websocket(link)
        )
        insert(session)
        link.write(packet: openPacket(sid: session.id, upgrades: []))
        session.start(delegateFactory: delegate)
        return session
    }

    // MARK: Paths

    /// Whether a request path belongs to this server (`/socket.io` or `/socket.io/`).
    public func matches(path: String) -> Bool {
        if path == normalizedPath { return true }
        return path.count == normalizedPath.count + 1 && path.hasPrefix(normalizedPath) && path.hasSuffix("/")
    }

    // MARK: CORS

    // MARK: HTTP (long-polling)

    static let unsupportedVersionMessage =
        "The client is using an unsupported version of the Socket.IO or Engine.IO protocols"

    /// Answers one HTTP request on this server's path (polling GET/POST, handshake, CORS preflight, errors).
    /// - Parameters:
    ///   - request: the request; its body is read here (up to ``EngineIOConfiguration/maxPayload``).
    ///   - channel: the connection it came on (its event loop hosts new sessions; its peer address is recorded).
    /// - Returns: the complete response.
    public func respond(to request: Request, channel: any Channel) async -> EngineHTTPResponse {
        guard let corsHeaders = configuration.cors.responseHeaders(origin: request.headers[.origin]) else {
            logger.info("Engine.IO request refused: origin not allowed", metadata: ["engineio.origin": "\(request.headers[.origin] ?? "")"])
            return .text(.badRequest, "Not an accepted origin.", headers: [:])
        }
        if request.method == .options {
            let headers =
                configuration.cors.preflightHeaders(origin: request.headers[.origin], requestedHeaders: request.headers[.accessControlRequestHeaders])
                ?? corsHeaders
            return EngineHTTPResponse(status: .noContent, headers: headers, body: [])
        }
        let query = request.uri.queryParameters
        guard let eio = query["EIO"], eio == "4" else {
            return .text(.badRequest, Self.unsupportedVersionMessage, headers: corsHeaders)
        }
        guard let transportName = query["transport"], let transport = EngineIOConfiguration.Transport(rawValue: String(transportName)),
            configuration.transports.contains(transport)
        else {
            return .json(.badRequest, code: 0, "Transport unknown", headers: corsHeaders)
        }
        guard transport == .polling else {
            // A WebSocket request that reached HTTP: the upgrade was refused or not attempted.
            if let sid = query["sid"], lookupSession(String(sid)) == nil {
                return .json(.badRequest, code: 1, "Session ID unknown", headers: corsHeaders)
            }
            return .json(.badRequest, code: 3, "Bad request", headers: corsHeaders)
        }
        guard let sidValue = query["sid"] else {
            guard request.method == .get else {
                return .json(.badRequest, code: 2, "Bad handshake method", headers: corsHeaders)
            }
            return await pollingHandshake(request: request, channel: channel, corsHeaders: corsHeaders)
        }
        guard let session = lookupSession(String(sidValue)) else {
            return .json(.badRequest, code: 1, "Session ID unknown", headers: corsHeaders)
        }
        switch request.method {
        case .get:
            let promise = session.eventLoop.makePromise(of: PollOutcome.self)
            session.eventLoop.execute { session.poll(promise: promise) }
            // A pending poll must not hold up a graceful shutdown: the session is closed and the poll answered.
            let outcome = await withGracefulShutdownHandler {
                try? await promise.futureResult.get()
            } onGracefulShutdown: {
                session.eventLoop.execute { session.closeSession(.shutdown) }
            }
            switch outcome {
            case .payload(let bytes):
                return EngineHTTPResponse(status: .ok, headers: corsHeaders, body: bytes)
            case .badRequest(let reason):
                return .json(.badRequest, code: 3, reason, headers: corsHeaders)
            case nil:
                return .json(.badRequest, code: 3, "Bad request", headers: corsHeaders)
            }
        case .post:
            return await handlePost(request: request, session: session, corsHeaders: corsHeaders)
        default:
            return .json(.badRequest, code: 2, "Bad request method", headers: corsHeaders)
        }
    }

    private func pollingHandshake(request: Request, channel: any Channel, corsHeaders: HTTPFields) async -> EngineHTTPResponse {
        let session = EngineSession(
            id: configuration.sessionIDPrefix + Self.makeSessionID(),
            handshake: Self.handshake(query: request.uri.queryParameters, headers: request.headers, channel: channel),
            eventLoop: channel.eventLoop,
            server: self,
            transport: .polling
        )
        let upgrades = configuration.allowUpgrades && configuration.transports.contains(.websocket) ? ["websocket"] : []
        let body = EngineCodec.encodePayload([openPacket(sid: session.id, upgrades: upgrades)])
        insert(session)
        let delegate = self.delegate
        try? await session.eventLoop.submit { session.start(delegateFactory: delegate) }.get()
        return EngineHTTPResponse(status: .ok, headers: corsHeaders, body: body)
    }

    private func handlePost(request: Request, session: EngineSession, corsHeaders: HTTPFields) async -> EngineHTTPResponse {
        let refusal: String?
        do {
            refusal = try await session.eventLoop.submit { session.beginPost() }.get()
        } catch {
            refusal = "Session ID unknown"
        }
        if let refusal {
            return .json(.badRequest, code: 3, refusal, headers: corsHeaders)
        }
        var tooLarge = false
        let body: Result<[UInt8], EngineSession.PostFailure>
        do {
            var collected: [UInt8] = []
            for try await chunk in request.body {
                if collected.count + chunk.readableBytes > configuration.maxPayload {
                    tooLarge = true
                    break
                }
                collected.append(contentsOf: chunk.readableBytesView)
            }
            body = tooLarge ? .failure(.init(reason: "payload too large (over \(configuration.maxPayload) bytes)")) : .success(collected)
        } catch {
            body = .failure(.init(reason: "request body failed: \(error)"))
        }
        let outcome = (try? await session.eventLoop.submit { session.finishPost(body) }.get()) ?? .badRequest("Session ID unknown")
        switch outcome {
        case .ok:
            var headers = corsHeaders
            headers[.contentType] = "text/html"
            return EngineHTTPResponse(status: .ok, headers: headers, body: Array("ok".utf8))
        case .badRequest(let reason):
            if tooLarge {
                return .json(.contentTooLarge, code: 3, reason, headers: corsHeaders)
            }
            return .json(.badRequest, code: 3, reason, headers: corsHeaders)
        }
    }

    static func handshake(query: FlatDictionary<Substring, Substring>, headers: HTTPFields, channel: any Channel) -> EngineHandshake {
        var q: [String: String] = [:]
        for (key, value) in query { q[String(key)] = String(value) }
        var h: [String: String] = [:]
        for field in headers { h[field.name.canonicalName] = field.value }
        return EngineHandshake(query: q, headers: h, remoteAddress: channel.remoteAddress?.description)
    }

    // MARK: WebSocket upgrade

    /// The decision for a WebSocket upgrade request on this server's path.
    enum WebSocketDecision {
        case accept(sid: String?, handshake: EngineHandshake)
        /// Refused: the reason for the log and the HTTP answer (the same 400 a polling request would get).
        case refuse(String, EngineHTTPResponse)
    }

    /// Validates a WebSocket upgrade request (query, origin, sid). Runs on the connection's loop.
    func webSocketDecision(uri: URI, headers: HTTPHeaders, channel: any Channel) -> WebSocketDecision {
        guard let corsHeaders = configuration.cors.responseHeaders(origin: headers.first(name: "origin")) else {
            return .refuse("origin not allowed", .text(.badRequest, "Not an accepted origin.", headers: [:]))
        }
        let query = uri.queryParameters
        guard query["EIO"] == "4" else {
            return .refuse("unsupported EIO", .text(.badRequest, Self.unsupportedVersionMessage, headers: corsHeaders))
        }
        guard query["transport"] == "websocket", configuration.transports.contains(.websocket) else {
            return .refuse("transport unknown", .json(.badRequest, code: 0, "Transport unknown", headers: corsHeaders))
        }
        var sid: String?
        if let value = query["sid"] {
            guard lookupSession(String(value)) != nil else {
                return .refuse("unknown sid", .json(.badRequest, code: 1, "Session ID unknown", headers: corsHeaders))
            }
            sid = String(value)
        }
        var q: [String: String] = [:]
        for (key, value) in query { q[String(key)] = String(value) }
        var h: [String: String] = [:]
        for (name, value) in headers { h[name.lowercased()] = value }
        return .accept(sid: sid, handshake: EngineHandshake(query: q, headers: h, remoteAddress: channel.remoteAddress?.description))
    }
}

/// A complete HTTP response produced by ``EngineIOServer/respond(to:channel:)``.
public struct EngineHTTPResponse: Sendable {
    /// The status (200, 204, 400, 413).
    public var status: HTTPResponse.Status
    /// Headers, including CORS ones; `Content-Type` and `Content-Length` are set by ``head``.
    public var headers: HTTPFields
    /// The body bytes.
    public var body: [UInt8]

    /// Creates a response.
    public init(status: HTTPResponse.Status, headers: HTTPFields, body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The response head with `Content-Length` and a default `Content-Type` of `text/plain; charset=UTF-8`.
    public var head: HTTPResponse {
        var fields = headers
        if fields[.contentType] == nil { fields[.contentType] = "text/plain; charset=UTF-8" }
        fields[.contentLength] = String(body.count)
        return HTTPResponse(status: status, headerFields: fields)
    }

    static func text(_ status: HTTPResponse.Status, _ text: String, headers: HTTPFields) -> Self {
        .init(status: status, headers: headers, body: Array(text.utf8))
    }

    static func json(_ status: HTTPResponse.Status, code: Int, _ message: String, headers: HTTPFields) -> Self {
        var fields = headers
        fields[.contentType] = "application/json"
        var body: [UInt8] = []
        JSONValue.object(["code": .int(Int64(code)), "message": .string(message)]).serialize(into: &body)
        return .init(status: status, headers: fields, body: body)
    }
}
