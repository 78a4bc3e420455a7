import Logging
import NIOCore
import NIOWebSocket

/// The Engine.IO WebSocket transport as a plain NIO channel handler.
///
/// Why not hummingbird-websocket's `WebSocketDataHandler`: that API runs one async task per connection and
/// hands every frame through a `NIOAsyncChannel` stream, which costs a task switch and several allocations per
/// message and a suspended task per idle client. Engine.IO's hot path (one text frame in, one text frame out)
/// and its idle-memory budget are better served by handling frames directly on the event loop: a frame is
/// decoded, passed to the session (same loop, no hop for WebSocket-only sessions) and answered with
/// `context.write`, with no task or stream involved.
///
/// Pipeline after the upgrade: `WebSocketFrameEncoder`, `WebSocketFrameDecoder(maxFrameSize)`,
/// `WebSocketProtocolErrorHandler`, `NIOWebSocketFrameAggregator`, this handler.
final class EngineWebSocketHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let server: EngineIOServer
    /// The sid of the query (nil: a WebSocket-only session is created on this connection).
    private let requestedSID: String?
    private let handshake: EngineHandshake
    let channel: any Channel
    // Loop-confined (channel loop).
    private var context: ChannelHandlerContext?
    private var session: EngineSession?
    private var closeSent = false
    private var closing = false
    private var closeReason: EngineCloseReason?
    /// `3probe` was already written for this (upgrade) connection.
    private(set) var probeAnswered = false

    init(server: EngineIOServer, requestedSID: String?, handshake: EngineHandshake, channel: any Channel) {
        self.server = server
        self.requestedSID = requestedSID
        self.handshake = handshake
        self.channel = channel
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        // The HTTP encoder is already gone at this point (NIO removes it before calling the upgrader), so
        // WebSocket frames can be written right away.
        if let sid = requestedSID {
            guard let session = server.lookupSession(sid) else {
                close(code: .policyViolation)
                return
            }
            self.session = session
            // Always enqueue (even on the session's own loop): attach requests then reach the session in the
            // order they were made, even when a loop runs a later connection's I/O before its queued tasks.
            session.eventLoop.execute { session.attachProbe(self) }
        } else {
            session = server.openWebSocketSession(link: self, handshake: handshake, eventLoop: context.eventLoop)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    /// Hands an inbound packet to the session: a direct call when the session lives on this connection's loop
    /// (every WebSocket-only session), so the per-message path allocates no closure and makes no hop.
    @inline(__always)
    private func deliver(_ result: Result<EnginePacket, EngineDecodingError>, to session: EngineSession) {
        if session.eventLoop === channel.eventLoop {
            session.webSocketReceived(result, from: self)
        } else {
            session.eventLoop.execute { session.webSocketReceived(result, from: self) }
        }
    }

    @inline(__always)
    private func onSessionLoop(_ session: EngineSession, _ body: @escaping @Sendable (EngineSession) -> Void) {
        if session.eventLoop === channel.eventLoop || session.eventLoop.inEventLoop {
            body(session)
        } else {
            session.eventLoop.execute { body(session) }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text:
            guard let session else { return }
            let result: Result<EnginePacket, EngineDecodingError>
            if frame.length > server.configuration.maxPayload {
                closeReason = .protocolViolation("payload too large (\(frame.length) bytes)")
                result = .failure(EngineDecodingError("payload too large (\(frame.length) bytes)"))
            } else if !frame.unmaskedData.withUnsafeReadableBytes({ Self.isValidUTF8($0) }) {
                // RFC 6455 8.1: a text message that is not UTF-8 fails the connection with 1007 (checked on the
                // whole message, after reassembly and permessage-deflate).
                closeReason = .protocolViolation("invalid UTF-8 in a text message")
                server.logger.info("Engine.IO session closed: invalid UTF-8 in a text message", metadata: ["engineio.sid": .string(session.id)])
                close(code: .dataInconsistentWithMessage)
                return
            } else {
                let data = frame.unmaskedData
                result = data.withUnsafeReadableBytes { bytes in
                    do throws(EngineDecodingError) {
                        return .success(try EngineCodec.decodeText(bytes))
                    } catch {
                        return .failure(error)
                    }
                }
            }
            if requestedSID != nil, !probeAnswered, case .success(.ping("probe")) = result {
                // Answer the probe right here on the connection's loop, before handing it to the session (which
                // may live on another loop): a client that sends `2probe`, `5` and then polls must see `3probe`
                // first, as it would with a single-threaded server.
                probeAnswered = true
                writeNow(packets: [.pong("probe")])
            }
            deliver(result, to: session)
        case .binary:
            guard let session else { return }
            let result: Result<EnginePacket, EngineDecodingError>
            if frame.length > server.configuration.maxPayload {
                result = .failure(EngineDecodingError("payload too large (\(frame.length) bytes)"))
            } else {
                var data = frame.unmaskedData
                let bytes = data.readBytes(length: data.readableBytes) ?? []
                result = .success(.message(.binary(bytes)))
            }
            deliver(result, to: session)
        case .ping:
            guard !closeSent else { return }
            let pong = WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
        case .connectionClose:
            // Echo the close frame (RFC 6455 5.5.1) and close the connection.
            if !closeSent {
                closeSent = true
                var data = frame.unmaskedData
                var code = data.readInteger(as: UInt16.self) ?? 1000
                // RFC 6455 7.4: a code that must not be sent, or a reason that is not UTF-8, is a protocol error.
                let sendable = (1000...1003).contains(code) || (1007...1014).contains(code) || (3000...4999).contains(code)
                if !sendable {
                    code = 1002
                } else if !data.withUnsafeReadableBytes({ Self.isValidUTF8($0) }) {
                    code = 1007
                }
                var buffer = context.channel.allocator.buffer(capacity: 2)
                buffer.writeInteger(code)
                let reply = WebSocketFrame(fin: true, opcode: .connectionClose, data: buffer)
                context.writeAndFlush(wrapOutboundOut(reply)).assumeIsolated().whenComplete { _ in
                    context.close(promise: nil)
                }
            }
        default:
            break
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        // The channel's high water mark is the session's maxOutboundQueueBytes: becoming unwritable means the
        // client stopped reading and the bounded queue is full.
        if !context.channel.isWritable, let session {
            closeReason = .slowConsumer
            server.logger.warning(
                "Engine.IO session closed: slow consumer",
                metadata: ["engineio.sid": .string(session.id), "engineio.limit": "\(server.configuration.maxOutboundQueueBytes)"]
            )
            onSessionLoop(session) { $0.webSocketClosed(self, reason: .slowConsumer) }
            context.close(promise: nil)
        }
        context.fireChannelWritabilityChanged()
    }

    /// Whether `bytes` are valid UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF). ASCII, the common
    /// case for Engine.IO text, is checked eight bytes at a time.
    static func isValidUTF8(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var i = 0
        let n = bytes.count
        while i < n {
            if i + 8 <= n, bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self) & 0x8080_8080_8080_8080 == 0 {
                i += 8
                continue
            }
            let b0 = bytes[i]
            if b0 < 0x80 {
                i += 1
                continue
            }
            let length: Int
            let lower: UInt8
            let upper: UInt8
            switch b0 {
            case 0xC2...0xDF: (length, lower, upper) = (2, 0x80, 0xBF)
            case 0xE0: (length, lower, upper) = (3, 0xA0, 0xBF)
            case 0xE1...0xEC, 0xEE...0xEF: (length, lower, upper) = (3, 0x80, 0xBF)
            case 0xED: (length, lower, upper) = (3, 0x80, 0x9F)
            case 0xF0: (length, lower, upper) = (4, 0x90, 0xBF)
            case 0xF1...0xF3: (length, lower, upper) = (4, 0x80, 0xBF)
            case 0xF4: (length, lower, upper) = (4, 0x80, 0x8F)
            default: return false
            }
            guard i + length <= n, (lower...upper).contains(bytes[i + 1]) else { return false }
            for k in 2..<length where bytes[i + k] & 0xC0 != 0x80 { return false }
            i += length
        }
        return true
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let violation = error as? WebSocketProtocolViolation {
            // WebSocketStrictnessHandler sends the 1002 close frame and closes.
            if closeReason == nil { closeReason = .protocolViolation(violation.reason) }
            server.logger.info("Engine.IO session closed: \(violation.reason)", metadata: ["engineio.sid": .string(session?.id ?? requestedSID ?? "-")])
            closeSent = true
            return
        }
        if let failure = error as? PerMessageDeflateFailure {
            // permessage-deflate rejected an inbound message (e.g. over maxPayload once decompressed).
            if closeReason == nil { closeReason = .protocolViolation(failure.reason) }
            server.logger.info(
                "Engine.IO session closed: \(failure.reason)",
                metadata: ["engineio.sid": .string(session?.id ?? requestedSID ?? "-")]
            )
            close(code: failure.closeCode)
            return
        }
        if let error = error as? NIOWebSocketError, error == .invalidFrameLength {
            closeReason = .protocolViolation("payload too large (WebSocket frame over maxPayload)")
        } else if closeReason == nil {
            closeReason = .transportError("\(error)")
        }
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // Hummingbird enables remote half-closure on its connections: a client that closes its socket shows up
        // as `inputClosed`, not as an inactive channel. A WebSocket cannot continue half-closed, so close it.
        if let event = event as? ChannelEvent, event == .inputClosed {
            if closeReason == nil { closeReason = .transportError("WebSocket closed by the peer") }
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let session {
            let reason = closeReason ?? .transportError("WebSocket closed by the peer")
            onSessionLoop(session) { $0.webSocketClosed(self, reason: reason) }
            self.session = nil
        }
        context.fireChannelInactive()
    }

    // MARK: Writing (callable from any thread; hops to the channel loop when needed)

    /// Writes one packet and flushes.
    func write(packet: EnginePacket) {
        write(packets: [packet])
    }

    /// Writes packets as consecutive frames and flushes once.
    func write(packets: [EnginePacket]) {
        guard !packets.isEmpty else { return }
        if channel.eventLoop.inEventLoop {
            writeNow(packets: packets)
        } else {
            channel.eventLoop.execute { self.writeNow(packets: packets) }
        }
    }

    private func writeNow(packets: [EnginePacket]) {
        guard let context, !closeSent else { return }
        for packet in packets {
            writeFrame(packet, context: context)
        }
        context.flush()
    }

    /// Writes `4…` text frames / binary frames and flushes once. This is the hot path: on the channel's own
    /// loop it writes straight into the pipeline without allocating a closure.
    func write(messages: [EngineMessage]) {
        if channel.eventLoop.inEventLoop {
            writeNow(messages: messages)
        } else {
            channel.eventLoop.execute { self.writeNow(messages: messages) }
        }
    }

    private func writeNow(messages: [EngineMessage]) {
        guard let context, !closeSent else { return }
        for message in messages {
            writeFrame(.message(message), context: context)
        }
        context.flush()
    }

    /// Closes the connection; with a code, a close frame is sent first.
    func close(code: WebSocketErrorCode?) {
        onChannelLoop { handler, context in
            guard !handler.closing else { return }
            handler.closing = true
            guard let code, !handler.closeSent else {
                context.close(promise: nil)
                return
            }
            handler.closeSent = true
            var buffer = context.channel.allocator.buffer(capacity: 2)
            buffer.write(webSocketErrorCode: code)
            let frame = WebSocketFrame(fin: true, opcode: .connectionClose, data: buffer)
            context.writeAndFlush(handler.wrapOutboundOut(frame)).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        }
    }

    @inline(__always)
    private func onChannelLoop(_ body: @escaping (EngineWebSocketHandler, ChannelHandlerContext) -> Void) {
        if channel.eventLoop.inEventLoop {
            guard let context, !closeSent else { return }
            body(self, context)
        } else {
            let sendableBody = UnsafeTransfer(body)
            channel.eventLoop.execute {
                guard let context = self.context, !self.closeSent else { return }
                sendableBody.value(self, context)
            }
        }
    }

    /// Frame header room reserved in front of the payload so `WebSocketFrameEncoder` can write the header in
    /// place instead of allocating a second buffer.
    private static let headerRoom = 14

    private func writeFrame(_ packet: EnginePacket, context: ChannelHandlerContext) {
        let frame: WebSocketFrame
        switch packet {
        case .message(.binary(let bytes)):
            var buffer = context.channel.allocator.buffer(capacity: bytes.count + Self.headerRoom)
            buffer.moveWriterIndex(forwardBy: Self.headerRoom)
            buffer.moveReaderIndex(forwardBy: Self.headerRoom)
            buffer.writeBytes(bytes)
            frame = WebSocketFrame(fin: true, opcode: .binary, data: buffer)
        case .message(.text(let text)):
            var buffer = context.channel.allocator.buffer(capacity: text.utf8.count + 1 + Self.headerRoom)
            buffer.moveWriterIndex(forwardBy: Self.headerRoom)
            buffer.moveReaderIndex(forwardBy: Self.headerRoom)
            buffer.writeInteger(UInt8(ascii: "4"))
            buffer.writeString(text)
            frame = WebSocketFrame(fin: true, opcode: .text, data: buffer)
        default:
            var bytes: [UInt8] = []
            EngineCodec.appendPollingForm(of: packet, to: &bytes)
            var buffer = context.channel.allocator.buffer(capacity: bytes.count + Self.headerRoom)
            buffer.moveWriterIndex(forwardBy: Self.headerRoom)
            buffer.moveReaderIndex(forwardBy: Self.headerRoom)
            buffer.writeBytes(bytes)
            frame = WebSocketFrame(fin: true, opcode: .text, data: buffer)
        }
        context.write(wrapOutboundOut(frame), promise: nil)
    }
}

/// Moves a non-Sendable value across a hop that is known to be safe (the value is only used on the target loop).
struct UnsafeTransfer<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
