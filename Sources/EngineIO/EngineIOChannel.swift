import HTTPTypes
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOWebSocket

/// A Hummingbird child channel that serves HTTP/1.1 and Engine.IO on the same port.
///
/// Requests on an Engine.IO path (polling, handshake, preflight) are answered by the matching
/// ``EngineIOServer``; every other request goes to the application's responder (its router). WebSocket upgrade
/// requests on an Engine.IO path are upgraded here and then served by ``EngineWebSocketHandler`` directly on
/// the event loop (see that type for why this does not use hummingbird-websocket's async handler): once
/// upgraded, ``handle(value:logger:)`` returns and the connection lives on in NIO alone, without a task.
public struct EngineIOHTTPChannel: ServerChildChannel, HTTPChannelHandler {
    /// What the connection became after its first request.
    public enum UpgradeResult: Sendable {
        /// An Engine.IO WebSocket, owned by channel handlers from now on.
        case engineWebSocket
        /// Plain HTTP/1.1.
        case http(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
        /// A refused WebSocket upgrade: NIO has consumed the request, so the answer is written directly.
        case refusedUpgrade(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>, EngineHTTPResponse)
    }

    /// The connection being set up.
    public struct Value: ServerChildChannelValue {
        let result: EventLoopFuture<UpgradeResult>
        /// The connection.
        public let channel: any Channel
    }

    /// The responder: Engine.IO paths first, then the application's responder.
    public let responder: HTTPChannelHandler.Responder
    let engines: [EngineIOServer]
    let configuration: HTTP1Channel.Configuration
    let limits: HTTPConnectionLimits
    let limiter: ConnectionLimiter

    /// Creates the channel setup.
    /// - Parameters:
    ///   - engines: the Engine.IO servers to serve, each on its own path.
    ///   - responder: the application's responder for every other request.
    ///   - configuration: HTTP/1.1 settings (idle timeout, decoder limits).
    ///   - limits: timeouts, request head limits and per-address connection limits.
    public init(
        engines: [EngineIOServer], responder: @escaping HTTPChannelHandler.Responder, configuration: HTTP1Channel.Configuration = .init(),
        limits: HTTPConnectionLimits = .init()
    ) {
        self.engines = engines
        self.configuration = configuration
        self.limits = limits
        self.limiter = ConnectionLimiter(limits: limits, logger: Logger(label: "parley.http"))
        self.responder = { request, writer, channel in
            if let engine = engines.first(where: { $0.matches(path: request.uri.path) }) {
                let response = await engine.respond(to: request, channel: channel)
                var buffer = channel.allocator.buffer(capacity: response.body.count)
                buffer.writeBytes(response.body)
                try await writer.write(response: response.head, body: ResponseBody(byteBuffer: buffer))
            } else {
                try await responder(request, writer, channel)
            }
        }
    }

    /// Installs HTTP/1.1 with the Engine.IO WebSocket upgrader on a new connection.
    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let engines = self.engines
        let configuration = self.configuration
        let limits = self.limits
        // Per-address limits first: a refused connection is closed before anything is read from it.
        let address = channel.remoteAddress?.ipAddress
        if let refusal = limiter.admit(address) {
            channel.close(promise: nil)
            return channel.eventLoop.makeFailedFuture(HTTPConnectionRefused(reason: refusal))
        }
        let limiter = self.limiter
        channel.closeFuture.whenComplete { _ in limiter.release(address) }
        return channel.eventLoop.makeCompletedFuture {
            let timeouts = HTTPRequestTimeoutHandler(headerTimeout: limits.headerTimeout, idleTimeout: limits.idleTimeout)
            // Set when an upgrade request is refused: NIO then hands the connection to the HTTP side without
            // replaying the request, so the refusal is answered from here.
            let refusal = NIOLoopBoundBox<EngineHTTPResponse?>(nil, eventLoop: channel.eventLoop)
            let maxFrameSize = engines.map(\.configuration.maxPayload).max() ?? (1 << 20)
            let upgrader = NIOTypedWebSocketServerUpgrader<UpgradeResult>(
                maxFrameSize: max(maxFrameSize, 126),
                shouldUpgrade: { channel, head in
                    let uri = URI(head.uri)
                    guard let engine = engines.first(where: { $0.matches(path: uri.path) }) else {
                        refusal.value = .json(.badRequest, code: 3, "Bad request: no WebSocket endpoint at \(uri.path)", headers: [:])
                        return channel.eventLoop.makeSucceededFuture(nil)
                    }
                    switch engine.webSocketDecision(uri: uri, headers: head.headers, channel: channel) {
                    case .accept(let sid, _):
                        if let sid, let session = engine.lookupSession(sid) {
                            // Before the 101 goes out: polls racing with this upgrade are held from now on.
                            let connection = ObjectIdentifier(channel)
                            session.eventLoop.execute { session.expectProbe(connection: connection) }
                        }
                        var extraHeaders = HTTPHeaders()
                        if let deflate = Self.negotiateDeflate(engine: engine, headers: head.headers) {
                            extraHeaders.add(name: "Sec-WebSocket-Extensions", value: deflate.responseHeader)
                        }
                        return channel.eventLoop.makeSucceededFuture(extraHeaders)
                    case .refuse(let reason, let response):
                        engine.logger.debug("Engine.IO WebSocket upgrade refused: \(reason)")
                        refusal.value = response
                        return channel.eventLoop.makeSucceededFuture(nil)
                    }
                },
                upgradePipelineHandler: { channel, head in
                    channel.eventLoop.makeCompletedFuture {
                        // A WebSocket has its own heartbeat: no HTTP timeouts from here on.
                        channel.pipeline.syncOperations.removeHandler(timeouts, promise: nil)
                        try Self.installEngineWebSocket(engines: engines, channel: channel, head: head, position: .last)
                        return UpgradeResult.engineWebSocket
                    }
                }
            )
            let upgradeConfiguration = NIOTypedHTTPServerUpgradeConfiguration<UpgradeResult>(
                upgraders: [upgrader],
                notUpgradingCompletionHandler: { channel in
                    channel.eventLoop.makeCompletedFuture {
                        // Later requests of this keep-alive connection may still ask for the upgrade.
                        try channel.pipeline.syncOperations.addHandler(
                            EngineKeepAliveUpgradeHandler(
                                engines: engines,
                                upgrader: upgrader,
                                refusal: refusal,
                                maxFrameSize: max(maxFrameSize, 126)
                            )
                        )
                        try channel.pipeline.syncOperations.addHandler(HTTP1ToHTTPServerCodec(secure: false))
                        try channel.pipeline.syncOperations.addHandlers(configuration.additionalChannelHandlers())
                        try channel.pipeline.syncOperations.addHandler(
                            HTTPConnectionStateHandler(idleTimeout: configuration.idleTimeout.map { .init($0) }, logger: logger)
                        )
                        let asyncChannel = try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                            wrappingChannelSynchronously: channel,
                            configuration: .init(isOutboundHalfClosureEnabled: true)
                        )
                        if let response = refusal.value {
                            return UpgradeResult.refusedUpgrade(asyncChannel, response)
                        }
                        return UpgradeResult.http(asyncChannel)
                    }
                }
            )
            var pipelineConfiguration = NIOUpgradableHTTPServerPipelineConfiguration<UpgradeResult>(
                upgradeConfiguration: upgradeConfiguration
            )
            pipelineConfiguration.enablePipelining = false  // NIOAsyncChannel serializes requests
            // An unparsable request (garbage, a bare LF, Content-Length with Transfer-Encoding, two different
            // Content-Lengths, a TLS ClientHello on the plain port) gets `400` with `Connection: close`.
            pipelineConfiguration.enableErrorHandling = true
            pipelineConfiguration.enableResponseHeaderValidation = false  // swift-http-types validates
            pipelineConfiguration.decoderConfiguration.maxHeaderFieldSize = min(configuration.httpDecoder.maxHeaderFieldSize, limits.maxHeaderBytes)
            pipelineConfiguration.decoderConfiguration.maxHeaderListSize = min(configuration.httpDecoder.maxHeaderListSize, limits.maxHeaderBytes)
            pipelineConfiguration.decoderConfiguration.maxHeaderFieldCount = min(configuration.httpDecoder.maxHeaderFieldCount, limits.maxHeaderCount)
            let result = try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(
                configuration: pipelineConfiguration
            )
            try channel.pipeline.syncOperations.addHandler(timeouts)
            return Value(result: result, channel: channel)
        }
    }

    /// Installs the Engine.IO WebSocket handlers (permessage-deflate or the frame aggregator, then
    /// ``EngineWebSocketHandler``) after the WebSocket frame codec, at `position`.
    /// - Throws: `NIOWebSocketUpgradeError.unsupportedWebSocketTarget` when the request no longer matches an
    ///   accepting Engine.IO server; pipeline errors.
    static func installEngineWebSocket(
        engines: [EngineIOServer],
        channel: any Channel,
        head: HTTPRequestHead,
        position: ChannelPipeline.SynchronousOperations.Position
    ) throws {
        let uri = URI(head.uri)
        guard let engine = engines.first(where: { $0.matches(path: uri.path) }),
            case .accept(let sid, let handshake) = engine.webSocketDecision(uri: uri, headers: head.headers, channel: channel)
        else {
            throw NIOWebSocketUpgradeError.unsupportedWebSocketTarget
        }
        let limit = engine.configuration.maxOutboundQueueBytes
        try channel.syncOptions?.setOption(
            ChannelOptions.writeBufferWaterMark,
            value: .init(low: max(1, limit / 2), high: max(2, limit))
        )
        let operations = channel.pipeline.syncOperations
        let deflate = Self.negotiateDeflate(engine: engine, headers: head.headers)
        // RFC 6455 rules NIO's decoder leaves to the application (masking, RSV bits, opcodes, fragmentation).
        try operations.addHandler(WebSocketStrictnessHandler(allowRSV1: deflate != nil), position: position)
        if let deflate {
            // permessage-deflate: reassembles and decompresses (replaces the aggregator).
            try operations.addHandler(
                PerMessageDeflateHandler(negotiated: deflate, maxPayload: engine.configuration.maxPayload),
                position: position
            )
        } else {
            try operations.addHandler(
                NIOWebSocketFrameAggregator(
                    minNonFinalFragmentSize: 0,
                    maxAccumulatedFrameCount: 1024,
                    maxAccumulatedFrameSize: engine.configuration.maxPayload
                ),
                position: position
            )
        }
        try operations.addHandler(
            EngineWebSocketHandler(server: engine, requestedSID: sid, handshake: handshake, channel: channel),
            position: position
        )
    }

    /// The permessage-deflate agreement for an upgrade request (nil: not configured or not offered/acceptable).
    /// Deterministic, so the 101 response and the pipeline set-up agree.
    static func negotiateDeflate(engine: EngineIOServer, headers: HTTPHeaders) -> NegotiatedDeflate? {
        guard let settings = engine.configuration.perMessageDeflate else { return nil }
        let offers = headers[canonicalForm: "Sec-WebSocket-Extensions"].map(String.init)
        guard !offers.isEmpty else { return nil }
        return NegotiatedDeflate.negotiate(offers: offers, settings: settings)
    }

    /// Serves plain HTTP connections; returns at once for Engine.IO WebSockets, which need no task.
    public func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.result.get() {
            case .engineWebSocket:
                return
            case .http(let asyncChannel):
                await handleHTTP(asyncChannel: asyncChannel, logger: logger)
            case .refusedUpgrade(let asyncChannel, var response):
                response.headers[.connection] = "close"
                let head = response.head
                let body = response.body
                try await asyncChannel.executeThenClose { _, outbound in
                    var buffer = value.channel.allocator.buffer(capacity: body.count)
                    buffer.writeBytes(body)
                    try await outbound.write(contentsOf: [.head(head), .body(buffer), .end(nil)])
                }
            }
        } catch {
            logger.debug("Connection setup failed", metadata: ["error": "\(error)"])
            value.channel.close(promise: nil)
        }
    }
}

/// A connection closed at once by ``HTTPConnectionLimits`` (per-address limits).
struct HTTPConnectionRefused: Error, CustomStringConvertible {
    var reason: String
    var description: String { "connection refused: \(reason)" }
}

extension HTTPServerBuilder {
    /// HTTP/1.1 with the given Engine.IO servers mounted in front of the application's router: each serves
    /// its ``EngineIOConfiguration/path`` (long-polling and WebSocket); every other path goes to the router.
    ///
    /// ```swift
    /// let app = Application(router: router, server: .engineIO([engine]))
    /// ```
    /// - Parameters:
    ///   - engines: the Engine.IO servers (distinct paths).
    ///   - configuration: HTTP/1.1 settings.
    ///   - limits: timeouts, request head limits and per-address connection limits.
    public static func engineIO(
        _ engines: [EngineIOServer], configuration: HTTP1Channel.Configuration = .init(), limits: HTTPConnectionLimits = .init()
    ) -> HTTPServerBuilder {
        .init { responder in
            EngineIOHTTPChannel(engines: engines, responder: responder, configuration: configuration, limits: limits)
        }
    }
}
