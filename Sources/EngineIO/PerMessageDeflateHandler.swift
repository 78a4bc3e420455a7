import NIOCore
import NIOWebSocket

/// A permessage-deflate failure on an inbound message; ``EngineWebSocketHandler`` closes the WebSocket with
/// ``closeCode`` and ends the session with ``reason``.
struct PerMessageDeflateFailure: Error, CustomStringConvertible {
    /// 1009 for a message over maxPayload once decompressed, 1007 for corrupt compressed data, 1002 for
    /// misused RSV bits or fragments.
    var closeCode: WebSocketErrorCode
    /// What went wrong, for the log line and ``EngineCloseReason/protocolViolation(_:)``.
    var reason: String
    var description: String { reason }
}

/// The permessage-deflate extension (RFC 7692) of one negotiated WebSocket, as a duplex channel handler.
///
/// Installed instead of `NIOWebSocketFrameAggregator` (which drops RSV1 on fragmented messages) only when the
/// extension was negotiated, between `WebSocketProtocolErrorHandler` and ``EngineWebSocketHandler``:
/// - inbound, it reassembles fragmented messages and decompresses those whose first frame has RSV1, bounded by
///   `maxPayload` on the decompressed size, and forwards one unfragmented, uncompressed frame per message
///   (control frames pass straight through);
/// - outbound, it compresses whole text/binary frames of at least the threshold and sets RSV1; control frames
///   and small messages go out unchanged.
///
/// Loop-confined like the rest of the pipeline.
final class PerMessageDeflateHandler: ChannelDuplexHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = WebSocketFrame
    typealias OutboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    /// Frame header room left in front of compressed payloads (see ``EngineWebSocketHandler``).
    private static let headerRoom = 14
    /// Most fragments accepted for one message (as the aggregator it replaces).
    static let maxFragments = 1024

    private let threshold: Int
    private let maxPayload: Int
    private let deflater: RawDeflater
    private let inflater: RawInflater

    // The message being reassembled.
    private var messageOpcode: WebSocketOpcode?
    private var messageCompressed = false
    private var messageBuffer: ByteBuffer?
    private var fragmentCount = 0
    /// After a failure every further inbound frame is dropped (the connection is closing).
    private var failed = false

    init(negotiated: NegotiatedDeflate, maxPayload: Int) {
        self.threshold = negotiated.threshold
        self.maxPayload = maxPayload
        self.deflater = RawDeflater(windowBits: negotiated.serverWindowBits, level: negotiated.level, resetAfterMessage: negotiated.serverNoContextTakeover)
        self.inflater = RawInflater(windowBits: negotiated.clientWindowBits, resetAfterMessage: negotiated.clientNoContextTakeover)
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        let frame = unwrapInboundIn(data)
        if frame.rsv2 || frame.rsv3 {
            return fail(context, .protocolError, "RSV2/RSV3 set without a negotiated extension using them")
        }
        switch frame.opcode {
        case .text, .binary:
            guard messageOpcode == nil else {
                return fail(context, .protocolError, "new message before the previous fragmented message ended")
            }
            if frame.fin && !frame.rsv1 {
                // The common uncompressed, unfragmented case: nothing to do.
                context.fireChannelRead(data)
                return
            }
            messageOpcode = frame.opcode
            messageCompressed = frame.rsv1
            fragmentCount = 0
            append(frame, context: context)
        case .continuation:
            guard messageOpcode != nil else {
                return fail(context, .protocolError, "continuation frame without a message in progress")
            }
            guard !frame.rsv1 else {
                return fail(context, .protocolError, "RSV1 set on a continuation frame")
            }
            append(frame, context: context)
        default:
            guard !frame.rsv1 else {
                return fail(context, .protocolError, "RSV1 set on a control frame")
            }
            context.fireChannelRead(data)
        }
    }

    private func append(_ frame: WebSocketFrame, context: ChannelHandlerContext) {
        fragmentCount += 1
        guard frame.fin || fragmentCount < Self.maxFragments else {
            return fail(context, .protocolError, "more than \(Self.maxFragments) fragments in one message")
        }
        var buffer = messageBuffer ?? context.channel.allocator.buffer(capacity: 0)
        messageBuffer = nil
        if messageCompressed {
            do throws(DeflateError) {
                try inflater.decompress(frame.unmaskedData, final: frame.fin, limit: maxPayload, into: &buffer)
            } catch {
                switch error {
                case .tooLarge: return fail(context, .messageTooLarge, error.description)
                case .invalidData, .zlib: return fail(context, .dataInconsistentWithMessage, error.description)
                }
            }
        } else {
            guard buffer.readableBytes + frame.length <= maxPayload else {
                return fail(context, .messageTooLarge, "payload too large (message over \(maxPayload) bytes)")
            }
            var data = frame.unmaskedData
            buffer.writeBuffer(&data)
        }
        guard frame.fin, let opcode = messageOpcode else {
            messageBuffer = buffer
            return
        }
        messageOpcode = nil
        messageCompressed = false
        context.fireChannelRead(wrapInboundOut(WebSocketFrame(fin: true, opcode: opcode, data: buffer)))
    }

    private func fail(_ context: ChannelHandlerContext, _ code: WebSocketErrorCode, _ reason: String) {
        failed = true
        messageBuffer = nil
        messageOpcode = nil
        context.fireErrorCaught(PerMessageDeflateFailure(closeCode: code, reason: reason))
    }

    // MARK: Outbound

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let frame = unwrapOutboundIn(data)
        guard frame.fin, !frame.rsv1, frame.opcode == .text || frame.opcode == .binary, frame.length >= threshold else {
            context.write(data, promise: promise)
            return
        }
        do throws(DeflateError) {
            let compressed = try deflater.compress(frame.data, allocator: context.channel.allocator, headerRoom: Self.headerRoom)
            guard compressed.readableBytes < frame.length else {
                // Incompressible: send it as it is, and make sure the next message does not refer to it.
                deflater.reset()
                context.write(data, promise: promise)
                return
            }
            let out = WebSocketFrame(fin: true, rsv1: true, opcode: frame.opcode, data: compressed)
            context.write(wrapOutboundOut(out), promise: promise)
        } catch {
            deflater.reset()
            context.write(data, promise: promise)
        }
    }
}
