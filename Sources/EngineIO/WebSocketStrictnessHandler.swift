import NIOCore
import NIOWebSocket

/// RFC 6455 checks on every frame a client sends, right after NIO's frame decoder (which checks frame lengths,
/// and control frames over 125 bytes or fragmented, but leaves the rest to the application):
///
/// - a client frame must be masked (§5.1);
/// - RSV1 only with permessage-deflate negotiated, RSV2/RSV3 never (§5.2, RFC 7692);
/// - opcodes 3–7 and 0xB–0xF are reserved (§5.2);
/// - control frames are at most 125 bytes and never fragmented (§5.5; checked again here for a codec built
///   without NIO's checks);
/// - a continuation frame needs a message in progress, and a new text/binary frame must not start while one is
///   in progress (§5.4).
///
/// A violation sends a close frame with 1002 (protocol error) and closes the connection; no later frame is
/// passed on. Invalid UTF-8 in a text message (1007) is checked on the whole message, after reassembly and
/// decompression, by ``EngineWebSocketHandler``. State is per connection, on its event loop.
final class WebSocketStrictnessHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let allowRSV1: Bool
    private var messageInProgress = false
    private var failed = false

    /// - Parameter allowRSV1: permessage-deflate was negotiated (RSV1 marks a compressed message).
    init(allowRSV1: Bool) {
        self.allowRSV1 = allowRSV1
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        let frame = unwrapInboundIn(data)
        if let violation = check(frame) {
            fail(context, violation)
            return
        }
        context.fireChannelRead(data)
    }

    /// The rule `frame` breaks, or nil. Updates the fragmentation state.
    private func check(_ frame: WebSocketFrame) -> String? {
        guard frame.maskKey != nil else { return "unmasked client frame (RFC 6455 5.1)" }
        if frame.rsv2 || frame.rsv3 { return "RSV2/RSV3 set without an extension that uses them" }
        if frame.rsv1 && !allowRSV1 { return "RSV1 set without permessage-deflate" }
        switch frame.opcode {
        case .text, .binary:
            if messageInProgress { return "a new message started before the fragmented one ended" }
            messageInProgress = !frame.fin
        case .continuation:
            if !messageInProgress { return "continuation frame without a message in progress" }
            messageInProgress = !frame.fin
        case .connectionClose, .ping, .pong:
            if !frame.fin { return "fragmented control frame" }
            if frame.length > 125 { return "control frame over 125 bytes" }
            if frame.opcode == .connectionClose && frame.length == 1 { return "close frame with a 1-byte body" }
        default:
            return "reserved opcode \(frame.opcode)"
        }
        return nil
    }

    private func fail(_ context: ChannelHandlerContext, _ reason: String) {
        failed = true
        context.fireErrorCaught(WebSocketProtocolViolation(reason: reason))
        var buffer = context.channel.allocator.buffer(capacity: 2)
        buffer.write(webSocketErrorCode: .protocolError)
        let close = WebSocketFrame(fin: true, opcode: .connectionClose, data: buffer)
        context.writeAndFlush(wrapOutboundOut(close)).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }
}

/// A client broke RFC 6455; the connection was closed with 1002.
struct WebSocketProtocolViolation: Error, CustomStringConvertible {
    var reason: String
    var description: String { "WebSocket protocol violation: \(reason)" }
}
