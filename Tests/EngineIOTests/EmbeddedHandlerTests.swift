@testable import EngineIO
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOWebSocket
import Testing

/// The pipeline's own handlers on `EmbeddedChannel`, one behaviour per test, as SwiftNIO tests its handlers:
/// no socket, no event-loop thread, time advanced by hand.
@Suite("handlers on EmbeddedChannel")
struct EmbeddedHandlerTests {
    static let mask = WebSocketMaskingKey([1, 2, 3, 4])!

    static func frame(
        _ opcode: WebSocketOpcode, _ text: String = "x", fin: Bool = true, masked: Bool = true, rsv1: Bool = false, rsv2: Bool = false
    ) -> WebSocketFrame {
        maskedFrame(fin: fin, rsv1: rsv1, rsv2: rsv2, opcode: opcode, masked: masked, ByteBuffer(string: text))
    }

    /// A frame as a client sends it: `payload` masked with ``mask`` (unless `masked` is false).
    static func maskedFrame(
        fin: Bool = true, rsv1: Bool = false, rsv2: Bool = false, opcode: WebSocketOpcode, masked: Bool = true, _ payload: ByteBuffer
    ) -> WebSocketFrame {
        var data = payload
        if masked { data.webSocketMask(mask) }
        return WebSocketFrame(fin: fin, rsv1: rsv1, rsv2: rsv2, opcode: opcode, maskKey: masked ? mask : nil, data: data)
    }

    /// A channel with `handler`, connected (active) as a server connection is.
    static func connected(_ handler: some ChannelHandler) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel(handler: handler)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return channel
    }

    /// The close code of the close frame written to `channel`, if any.
    static func closeCode(_ channel: EmbeddedChannel) throws -> UInt16? {
        guard let written = try channel.readOutbound(as: WebSocketFrame.self), written.opcode == .connectionClose else { return nil }
        var data = written.data
        return data.readInteger(as: UInt16.self)
    }

    // MARK: WebSocketStrictnessHandler

    @Test func strictnessPassesValidFramesInOrder() throws {
        let channel = try Self.connected(WebSocketStrictnessHandler(allowRSV1: false))
        try channel.writeInbound(Self.frame(.text, "a", fin: false))
        try channel.writeInbound(Self.frame(.ping, "p"))
        try channel.writeInbound(Self.frame(.continuation, "b"))
        #expect(try channel.readInbound(as: WebSocketFrame.self)?.opcode == .text)
        #expect(try channel.readInbound(as: WebSocketFrame.self)?.opcode == .ping)
        #expect(try channel.readInbound(as: WebSocketFrame.self)?.opcode == .continuation)
        #expect(channel.isActive)
        _ = try channel.finish()
    }

    @Test(arguments: [
        ("unmasked", [frame(.text, masked: false)]),
        ("RSV1 without deflate", [frame(.text, rsv1: true)]),
        ("RSV2", [frame(.text, rsv2: true)]),
        ("reserved opcode", [WebSocketFrame(fin: true, opcode: WebSocketOpcode(encodedWebSocketOpcode: 0x3)!, maskKey: mask, data: ByteBuffer())]),
        ("continuation without a message", [frame(.continuation)]),
        ("new message inside a fragmented one", [frame(.text, fin: false), frame(.binary)]),
        ("fragmented control frame", [frame(.ping, fin: false)]),
    ])
    func strictnessClosesWith1002(_ name: String, _ frames: [WebSocketFrame]) throws {
        let channel = try Self.connected(WebSocketStrictnessHandler(allowRSV1: false))
        var caught: (any Error)?
        for f in frames {
            do { try channel.writeInbound(f) } catch { caught = error }
        }
        #expect(caught is WebSocketProtocolViolation, "\(name)")
        // Frames before the violation pass; nothing after it does.
        while let passed = try channel.readInbound(as: WebSocketFrame.self) { #expect(passed.opcode != .binary) }
        #expect(try Self.closeCode(channel) == 1002, "\(name)")
        #expect(!channel.isActive, "\(name)")
        try channel.writeInbound(Self.frame(.text))
        #expect(try channel.readInbound(as: WebSocketFrame.self) == nil)
    }

    @Test func strictnessAllowsRSV1WhenDeflateWasNegotiated() throws {
        let channel = EmbeddedChannel(handler: WebSocketStrictnessHandler(allowRSV1: true))
        try channel.writeInbound(Self.frame(.text, rsv1: true))
        #expect(try channel.readInbound(as: WebSocketFrame.self)?.rsv1 == true)
        _ = try channel.finish()
    }

    // MARK: HTTPRequestTimeoutHandler

    @Test func headerTimeoutClosesASilentConnection() throws {
        let channel = EmbeddedChannel()
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try channel.pipeline.syncOperations.addHandler(HTTPRequestTimeoutHandler(headerTimeout: .seconds(10), idleTimeout: .seconds(60)))
        channel.embeddedEventLoop.advanceTime(by: .seconds(9))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(!channel.isActive)
    }

    @Test func aRequestInProgressIsNeverCutAndIdleTimeStartsAfterTheResponse() throws {
        let channel = EmbeddedChannel()
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try channel.pipeline.syncOperations.addHandler(HTTPRequestTimeoutHandler(headerTimeout: .seconds(10), idleTimeout: .seconds(60)))
        try channel.writeInbound(HTTPServerRequestPart.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: "/socket.io/")))
        // A long-poll held for minutes is not cut.
        channel.embeddedEventLoop.advanceTime(by: .seconds(300))
        #expect(channel.isActive)
        try channel.writeOutbound(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: .ok)))
        try channel.writeOutbound(HTTPServerResponsePart.end(nil))
        channel.embeddedEventLoop.advanceTime(by: .seconds(59))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(!channel.isActive)
    }

    @Test func aParserErrorClosesTheConnection() throws {
        let channel = EmbeddedChannel()
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try channel.pipeline.syncOperations.addHandler(HTTPRequestTimeoutHandler(headerTimeout: .seconds(10), idleTimeout: .seconds(60)))
        channel.pipeline.fireErrorCaught(HTTPParserError.invalidHeaderToken)
        #expect(!channel.isActive)
        #expect(throws: HTTPParserError.self) { try channel.throwIfErrorCaught() }
    }

    // MARK: PerMessageDeflateHandler

    static let negotiated = NegotiatedDeflate(
        serverNoContextTakeover: false, clientNoContextTakeover: false, serverWindowBits: 15, clientWindowBits: 15, threshold: 16, level: 6,
        responseHeader: "permessage-deflate")

    @Test func deflateCompressesLargeOutboundMessagesOnly() throws {
        let channel = EmbeddedChannel(handler: PerMessageDeflateHandler(negotiated: Self.negotiated, maxPayload: 1_000_000))
        let big = String(repeating: "hello parley ", count: 100)
        try channel.writeOutbound(WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(string: big)))
        try channel.writeOutbound(WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(string: "tiny")))
        let compressed = try #require(try channel.readOutbound(as: WebSocketFrame.self))
        #expect(compressed.rsv1 && compressed.data.readableBytes < big.utf8.count)
        var output = ByteBufferAllocator().buffer(capacity: 0)
        try RawInflater(windowBits: 15, resetAfterMessage: false).decompress(compressed.data, final: true, limit: 1_000_000, into: &output)
        #expect(String(buffer: output) == big)
        let small = try #require(try channel.readOutbound(as: WebSocketFrame.self))
        #expect(!small.rsv1 && String(buffer: small.data) == "tiny")
        _ = try channel.finish()
    }

    @Test func deflateReassemblesAndInflatesAFragmentedCompressedMessage() throws {
        let channel = EmbeddedChannel(handler: PerMessageDeflateHandler(negotiated: Self.negotiated, maxPayload: 1_000_000))
        let text = String(repeating: "fragmented ", count: 200)
        var compressed = try RawDeflater(windowBits: 15, level: 6, resetAfterMessage: false)
            .compress(ByteBuffer(string: text), allocator: ByteBufferAllocator(), headerRoom: 0)
        let first = compressed.readSlice(length: compressed.readableBytes / 2)!
        try channel.writeInbound(Self.maskedFrame(fin: false, rsv1: true, opcode: .text, first))
        #expect(try channel.readInbound(as: WebSocketFrame.self) == nil)
        try channel.writeInbound(Self.maskedFrame(opcode: .continuation, compressed))
        let message = try #require(try channel.readInbound(as: WebSocketFrame.self))
        #expect(message.fin && !message.rsv1 && message.opcode == .text)
        #expect(String(buffer: message.unmaskedData) == text)
        _ = try channel.finish()
    }

    @Test func deflateRefusesADecompressionBombPastMaxPayload() throws {
        let channel = EmbeddedChannel(handler: PerMessageDeflateHandler(negotiated: Self.negotiated, maxPayload: 10_000))
        let bomb = try RawDeflater(windowBits: 15, level: 9, resetAfterMessage: true)
            .compress(ByteBuffer(bytes: [UInt8](repeating: 0x41, count: 1_000_000)), allocator: ByteBufferAllocator(), headerRoom: 0)
        #expect {
            try channel.writeInbound(Self.maskedFrame(rsv1: true, opcode: .text, bomb))
        } throws: { error in
            (error as? PerMessageDeflateFailure)?.closeCode == .messageTooLarge
        }
        #expect(try channel.readInbound(as: WebSocketFrame.self) == nil)
    }
}

// MARK: EngineKeepAliveUpgradeHandler

@Suite("keep-alive upgrade handler on EmbeddedChannel")
struct EmbeddedKeepAliveUpgradeTests {
    /// The handler with an upgrader that refuses every upgrade (as `shouldUpgrade` does for an unknown session).
    static func channel() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        let upgrader = NIOTypedWebSocketServerUpgrader<EngineIOHTTPChannel.UpgradeResult>(
            shouldUpgrade: { channel, _ in channel.eventLoop.makeSucceededFuture(nil) },
            upgradePipelineHandler: { channel, _ in channel.eventLoop.makeSucceededFuture(.engineWebSocket) })
        let handler = EngineKeepAliveUpgradeHandler(
            engines: [], upgrader: upgrader, refusal: NIOLoopBoundBox(nil, eventLoop: channel.eventLoop), maxFrameSize: 1 << 20)
        try channel.pipeline.syncOperations.addHandler(handler)
        return channel
    }

    static func head(_ uri: String, upgrade: Bool = false) -> HTTPServerRequestPart {
        var headers = HTTPHeaders()
        if upgrade {
            headers.add(name: "Connection", value: "Upgrade")
            headers.add(name: "Upgrade", value: "websocket")
            headers.add(name: "Sec-WebSocket-Key", value: "dGhlIHNhbXBsZSBub25jZQ==")
            headers.add(name: "Sec-WebSocket-Version", value: "13")
        }
        return .head(HTTPRequestHead(version: .http1_1, method: .GET, uri: uri, headers: headers))
    }

    @Test func plainRequestsPassThroughUnchanged() throws {
        let channel = try Self.channel()
        try channel.writeInbound(Self.head("/socket.io/?EIO=4&transport=polling"))
        try channel.writeInbound(HTTPServerRequestPart.end(nil))
        guard case .head(let head)? = try channel.readInbound(as: HTTPServerRequestPart.self) else {
            Issue.record("the request head did not pass")
            return
        }
        #expect(head.uri == "/socket.io/?EIO=4&transport=polling")
        guard case .end? = try channel.readInbound(as: HTTPServerRequestPart.self) else {
            Issue.record("the request end did not pass")
            return
        }
        // Its response passes outbound unchanged.
        try channel.writeOutbound(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: .ok)))
        try channel.writeOutbound(HTTPServerResponsePart.end(nil))
        #expect(try channel.readOutbound(as: HTTPServerResponsePart.self) != nil)
        #expect(channel.isActive)
        _ = try channel.finish()
    }

    /// An upgrade that the upgrader refuses gets an answer with `Connection: close`, and the connection closes.
    @Test func aRefusedUpgradeIsAnsweredAndCloses() throws {
        let channel = try Self.channel()
        try channel.writeInbound(Self.head("/socket.io/?EIO=4&transport=websocket&sid=unknown", upgrade: true))
        #expect(try channel.readInbound(as: HTTPServerRequestPart.self) == nil)
        try channel.writeInbound(HTTPServerRequestPart.end(nil))
        channel.embeddedEventLoop.run()
        guard case .head(let response)? = try channel.readOutbound(as: HTTPServerResponsePart.self) else {
            Issue.record("no response head")
            return
        }
        #expect(response.status == .badRequest)
        #expect(response.headers["Connection"] == ["close"])
        #expect(!channel.isActive)
    }
}

// MARK: EngineWebSocketHandler

/// Echoes every message back on its connection.
final class EchoEngineDelegate: EngineServerDelegate, EngineConnectionDelegate, Sendable {
    func engineServer(didOpen connection: any EngineConnection) -> any EngineConnectionDelegate { self }
    func engineConnection(_ connection: any EngineConnection, didReceive message: EngineMessage) { connection.send([message]) }
    func engineConnection(_ connection: any EngineConnection, didCloseWith reason: EngineCloseReason) {}
}

@Suite("Engine.IO WebSocket handler on EmbeddedChannel")
struct EmbeddedEngineWebSocketTests {
    static func channel() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        let server = EngineIOServer(delegate: EchoEngineDelegate(), logger: .init(label: "test"))
        try channel.pipeline.syncOperations.addHandler(
            EngineWebSocketHandler(server: server, requestedSID: nil, handshake: EngineHandshake(), channel: channel))
        return channel
    }

    static func text(_ frame: WebSocketFrame?) -> String? {
        frame.map { String(buffer: $0.unmaskedData) }
    }

    @Test func opensASessionAndEchoesMessages() throws {
        let channel = try Self.channel()
        let open = try #require(Self.text(try channel.readOutbound(as: WebSocketFrame.self)))
        #expect(open.hasPrefix("0{\"sid\":"))
        try channel.writeInbound(EmbeddedHandlerTests.frame(.text, "4hello"))
        channel.embeddedEventLoop.run()
        #expect(Self.text(try channel.readOutbound(as: WebSocketFrame.self)) == "4hello")
        // A ping from the client is answered with a pong.
        try channel.writeInbound(EmbeddedHandlerTests.frame(.text, "2"))
        channel.embeddedEventLoop.run()
        #expect(Self.text(try channel.readOutbound(as: WebSocketFrame.self)) == "3")
        #expect(channel.isActive)
    }

    /// Invalid UTF-8 in a text message closes with 1007 (RFC 6455 8.1) instead of being passed on.
    @Test func invalidUTF8ClosesWith1007() throws {
        let channel = try Self.channel()
        _ = try channel.readOutbound(as: WebSocketFrame.self)
        try channel.writeInbound(EmbeddedHandlerTests.maskedFrame(opcode: .text, ByteBuffer(bytes: [0x34, 0xFF, 0xFE])))
        channel.embeddedEventLoop.run()
        var code: UInt16?
        while let frame = try channel.readOutbound(as: WebSocketFrame.self) {
            if frame.opcode == .connectionClose {
                var data = frame.data
                code = data.readInteger(as: UInt16.self)
            }
        }
        #expect(code == 1007)
    }
}
