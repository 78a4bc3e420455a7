import HTTPTypes
import HummingbirdCore
import NIOCore
import NIOHTTP1
import NIOWebSocket

/// Honours an Engine.IO WebSocket upgrade on a later request of a keep-alive HTTP/1.1 connection.
///
/// NIO's upgradable pipeline only considers a connection's first request. Clients such as aiohttp
/// (python-socketio's `AsyncClient`) send the upgrade on the connection that carried their polling requests, so
/// ``EngineIOHTTPChannel`` installs this handler between the HTTP/1.1 codec and Hummingbird's request handling
/// when the first request was not an upgrade. Contract:
/// - A request with `Connection: upgrade` and `Upgrade: websocket` that arrives while no other request is in
///   flight (its response fully written, its body fully read) is taken over here; every other request passes
///   through unchanged.
/// - Accepted (same rules as on a first request, through the same upgrader): the 101 is written, the WebSocket
///   frame codec and the Engine.IO WebSocket handlers are put in front of this handler, the HTTP codec and
///   Hummingbird's idle-timeout handler are removed. The HTTP side behind this handler then stays parked (it
///   receives nothing) until the connection closes.
/// - Refused: the refusal (the Engine.IO JSON error, or a 400 for a malformed upgrade) is written with
///   `Connection: close` and the connection is closed, as for a refused first request.
final class EngineKeepAliveUpgradeHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        /// No request in flight.
        case idle
        /// A request passed through; idle again once both its request end and its response end have passed.
        case inFlight(requestEnded: Bool, responseEnded: Bool)
        /// An upgrade request is being read (its end not yet seen).
        case readingUpgrade(HTTPRequestHead)
        /// The upgrade is being answered.
        case answering
        /// Upgraded or refused: nothing more goes to the HTTP side.
        case done
    }

    private var state = State.idle
    private let engines: [EngineIOServer]
    private let upgrader: NIOTypedWebSocketServerUpgrader<EngineIOHTTPChannel.UpgradeResult>
    private let refusal: NIOLoopBoundBox<EngineHTTPResponse?>
    private let maxFrameSize: Int

    /// - Parameters:
    ///   - engines: the Engine.IO servers of the connection.
    ///   - upgrader: the connection's WebSocket upgrader (its `shouldUpgrade` decides and may set `refusal`).
    ///   - refusal: set by `upgrader` when it refuses; the answer written here.
    ///   - maxFrameSize: the WebSocket frame decoder's limit.
    init(
        engines: [EngineIOServer],
        upgrader: NIOTypedWebSocketServerUpgrader<EngineIOHTTPChannel.UpgradeResult>,
        refusal: NIOLoopBoundBox<EngineHTTPResponse?>,
        maxFrameSize: Int
    ) {
        self.engines = engines
        self.upgrader = upgrader
        self.refusal = refusal
        self.maxFrameSize = maxFrameSize
    }

    /// Whether `head` asks for a WebSocket upgrade (`Connection: upgrade` and `Upgrade: websocket`).
    static func isWebSocketUpgrade(_ head: HTTPRequestHead) -> Bool {
        let connection = head.headers[canonicalForm: "connection"].contains { $0.lowercased() == "upgrade" }
        let upgrade = head.headers[canonicalForm: "upgrade"].contains { $0.lowercased() == "websocket" }
        return connection && upgrade
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        switch state {
        case .done, .answering:
            return
        case .readingUpgrade(let head):
            // An upgrade request's body (there should be none) is dropped.
            if case .end = part {
                state = .answering
                answer(context: context, head: head)
            }
            return
        case .idle:
            if case .head(let head) = part, Self.isWebSocketUpgrade(head) {
                state = .readingUpgrade(head)
                return
            }
            if case .head = part { state = .inFlight(requestEnded: false, responseEnded: false) }
        case .inFlight(let requestEnded, let responseEnded):
            if case .end = part, !requestEnded {
                state = responseEnded ? .idle : .inFlight(requestEnded: true, responseEnded: false)
            }
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data), case .inFlight(let requestEnded, false) = state {
            state = requestEnded ? .idle : .inFlight(requestEnded: false, responseEnded: true)
        }
        context.write(data, promise: promise)
    }

    /// Decides the upgrade with the connection's upgrader, then upgrades or refuses.
    private func answer(context: ChannelHandlerContext, head: HTTPRequestHead) {
        refusal.value = nil
        upgrader.buildUpgradeResponse(channel: context.channel, upgradeRequest: head, initialResponseHeaders: [:])
            .hop(to: context.eventLoop)
            .assumeIsolated()
            .whenComplete { result in
                switch result {
                case .success(let headers):
                    self.upgrade(context: context, head: head, headers: headers)
                case .failure(let error):
                    self.refuse(context: context, error: error)
                }
            }
    }

    private func upgrade(context: ChannelHandlerContext, head: HTTPRequestHead, headers: HTTPHeaders) {
        state = .done
        let response = HTTPResponseHead(version: .http1_1, status: .switchingProtocols, headers: headers)
        context.writeAndFlush(wrapOutboundOut(.head(response)), promise: nil)
        do {
            let operations = context.pipeline.syncOperations
            // The encoder goes first: the Engine.IO handler may write its open packet as soon as it is added.
            operations.removeHandler(context: try operations.context(handlerType: HTTPResponseEncoder.self), promise: nil)
            // HTTP's protocol-error handler (400 for unparsable requests) only understands HTTP parts.
            if let httpErrors = try? operations.context(handlerType: HTTPServerProtocolErrorHandler.self) {
                operations.removeHandler(context: httpErrors, promise: nil)
            }
            try operations.addHandler(WebSocketFrameEncoder(), position: .before(self))
            try operations.addHandler(ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: maxFrameSize)), position: .before(self))
            try operations.addHandler(WebSocketProtocolErrorHandler(), position: .before(self))
            try EngineIOHTTPChannel.installEngineWebSocket(engines: engines, channel: context.channel, head: head, position: .before(self))
            // The idle timeout of the HTTP side would close the WebSocket.
            if let timeouts = try? operations.context(handlerType: HTTPRequestTimeoutHandler.self) {
                operations.removeHandler(context: timeouts, promise: nil)
            }
            if let idle = try? operations.context(handlerType: HTTPConnectionStateHandler.self) {
                operations.removeHandler(context: idle, promise: nil)
            }
            // Last: bytes the HTTP decoder holds beyond the upgrade request are forwarded to the frame decoder.
            operations.removeHandler(
                context: try operations.context(handlerType: ByteToMessageHandler<HTTPRequestDecoder>.self),
                promise: nil
            )
        } catch {
            context.close(promise: nil)
        }
    }

    private func refuse(context: ChannelHandlerContext, error: any Error) {
        state = .done
        let response =
            refusal.value
            ?? .json(.badRequest, code: 3, "Bad request: invalid WebSocket upgrade request (\(error))", headers: [:])
        refusal.value = nil
        var head = HTTPResponseHead(version: .http1_1, status: .init(statusCode: response.status.code))
        for field in response.head.headerFields {
            head.headers.add(name: field.name.rawName, value: field.value)
        }
        head.headers.replaceOrAdd(name: "Connection", value: "close")
        var body = context.channel.allocator.buffer(capacity: response.body.count)
        body.writeBytes(response.body)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }
}
