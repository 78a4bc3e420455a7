import NIOCore
import NIOHTTP1
import NIOWebSocket

/// Error classes counted by the generator (every one is an error in the result).
enum ErrorKind: Int, CaseIterable {
    /// TCP connect failed.
    case connect
    /// The WebSocket upgrade was refused or malformed.
    case handshake
    /// A packet or frame the generator could not make sense of, or a `connect_error`.
    case `protocol`
    /// A reply whose text was not the text sent.
    case mismatch
    /// No reply (or no session) in time.
    case timeout
    /// The server closed the connection (TCP, WebSocket close, Engine.IO close, Socket.IO disconnect).
    case closed

    var key: String {
        switch self {
        case .connect: "connect"
        case .handshake: "handshake"
        case .protocol: "protocol"
        case .mismatch: "mismatch"
        case .timeout: "timeout"
        case .closed: "closed"
        }
    }
}

/// One simulated user. The HTTP upgrade and WebSocket framing are NIO's (`NIOTypedWebSocketClientUpgrader`,
/// its frame decoder/encoder and `NIOWebSocketFrameAggregator`); this handler speaks Engine.IO and Socket.IO on
/// the frames, with a scanner of its own so the generator stays cheap (`SocketIOWire`).
///
/// Confined to its worker's event loop.
final class LoadConnection: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    enum Phase: UInt8, Comparable {
        case connecting, handshaking, awaitingOpen, awaitingConnect, awaitingConfirm, ready, finished
        static func < (a: Phase, b: Phase) -> Bool { a.rawValue < b.rawValue }
    }

    /// Largest message accepted from a server (16 MiB), as a frame or reassembled from fragments.
    static let maxMessageSize = 16 << 20

    let id: Int
    unowned let worker: Worker
    /// When the session started (before `connect()`), monotonic ns.
    let startNs: UInt64
    var phase: Phase = .connecting
    /// The TCP channel, from the moment it exists (so that `finish` can close it during the upgrade).
    var channel: (any Channel)?
    /// Set once the WebSocket handlers are in place and this handler is added after them.
    var context: ChannelHandlerContext?
    /// Whether the server upgraded to WebSocket (fails when the connection ends first).
    var upgraded: EventLoopFuture<Bool>?
    private var prefix: [UInt8] = []
    private var suffix: [UInt8] = []
    private var sequence = 0
    private var expected: [UInt8] = []
    private var rng: SplitMix64
    /// A message is outstanding.
    var awaitingReply = false
    /// When the outstanding message was sent, monotonic ns.
    var sentNs: UInt64 = 0

    init(id: Int, worker: Worker, startNs: UInt64) {
        self.id = id
        self.worker = worker
        self.startNs = startNs
        self.rng = SplitMix64(seed: UInt64(truncatingIfNeeded: id) &* 0x2545_F491_4F6C_DD1D ^ startNs)
        expected.reserveCapacity(64)
    }

    /// Configures `channel` for an HTTP/1.1 upgrade to WebSocket at the run's path; once upgraded, the
    /// frame handlers and this connection's handler are added. The future answers whether the server upgraded.
    func configure(_ channel: any Channel) throws -> EventLoopFuture<Bool> {
        self.channel = channel
        let bound = NIOLoopBound(self, eventLoop: channel.eventLoop)
        let upgrader = NIOTypedWebSocketClientUpgrader<Bool>(
            maxFrameSize: Self.maxMessageSize, enableAutomaticErrorHandling: false,
            upgradePipelineHandler: { channel, _ in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(
                        NIOWebSocketFrameAggregator(
                            minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: 1 << 16, maxAccumulatedFrameSize: Self.maxMessageSize),
                        bound.value)
                    return true
                }
            })
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: "\(worker.shared.hostHeader):\(worker.shared.port)")
        headers.add(name: "User-Agent", value: "parley-loadtest")
        let configuration = NIOTypedHTTPClientUpgradeConfiguration<Bool>(
            upgradeRequestHead: HTTPRequestHead(version: .http1_1, method: .GET, uri: worker.shared.path, headers: headers),
            upgraders: [upgrader],
            notUpgradingCompletionHandler: { channel in channel.eventLoop.makeSucceededFuture(false) })
        // The server's first frame (Engine.IO's open packet) often arrives in the same read as the 101.
        var pipeline = NIOUpgradableHTTPClientPipelineConfiguration(upgradeConfiguration: configuration)
        pipeline.leftOverBytesStrategy = .forwardBytes
        return try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(configuration: pipeline)
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        guard phase <= .handshaking else { return }
        if worker.shared.raw {
            // Not from inside handlerAdded: the upgrade is still configuring the pipeline (NIO's frame encoder is
            // added after this handler), so a frame written now would not be encoded and the echo never comes.
            phase = .ready
            context.eventLoop.execute { [self] in
                guard phase == .ready else { return }
                worker.sessionReady(self)
            }
        } else {
            phase = .awaitingOpen
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if phase != .finished { worker.failed(self, .closed) }
        self.context = nil
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard phase != .finished else { return }
        worker.failed(self, error is NIOWebSocketError || error is NIOWebSocketFrameAggregator.Error ? .protocol : .closed)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard phase != .finished else { return }
        let frame = unwrapInboundIn(data)
        // NIO's decoder leaves reserved bits to extensions; the generator negotiates none.
        if frame.rsv1 || frame.rsv2 || frame.rsv3 {
            worker.failed(self, .protocol)
            return
        }
        switch frame.opcode {
        case .text, .binary:
            handleMessage(frame.data)
        case .ping:
            worker.stats.wsPings += 1
            send(WebSocketFrame(fin: true, opcode: .pong, maskKey: nextMask(), data: frame.data))
        case .pong:
            break
        case .connectionClose:
            worker.failed(self, .closed)
        default:
            worker.failed(self, .protocol)
        }
    }

    // MARK: Packets

    private enum Action {
        case none, other, sendConnect, answerPing, sendSessionRequest, confirmed([UInt8]), replied, mismatch
        case fail(ErrorKind)
    }

    private func handleMessage(_ payload: ByteBuffer) {
        if worker.shared.raw {
            guard awaitingReply else { worker.stats.otherEvents += 1; return }
            let same = payload.withUnsafeReadableBytes { p in expected.withUnsafeBytes { $0.elementsEqual(p) } }
            if same { worker.replied(self) } else { worker.failed(self, .mismatch) }
            return
        }
        let action: Action = payload.withUnsafeReadableBytes { p in
            switch SocketIOWire.classify(p) {
            case .engineOpen: return phase == .awaitingOpen ? .sendConnect : .other
            case .enginePing: return .answerPing
            case .engineOther: return .none
            case .engineClose, .socketDisconnect: return .fail(.closed)
            case .socketConnectError, .invalid: return .fail(.protocol)
            case .socketOther: return .other
            case .socketConnect: return phase == .awaitingConnect ? .sendSessionRequest : .other
            case .socketEvent(let arrayStart):
                guard let event = SocketIOWire.event(p, arrayStart: arrayStart) else { return .fail(.protocol) }
                if awaitingReply, worker.shared.botEvent.withUnsafeBytes({ SocketIOWire.stringToken(p, event.name, equals: $0) }) {
                    guard let arg = event.firstArgument, p[arg.lowerBound] == UInt8(ascii: "{"),
                        let text = JSONScanner.member(p, object: arg, key: Self.textKey)
                    else { return .mismatch }
                    let ok = expected.withUnsafeBytes { SocketIOWire.stringToken(p, text, equals: $0) }
                    return ok ? .replied : .mismatch
                }
                if phase == .awaitingConfirm, worker.shared.confirmEvent.withUnsafeBytes({ SocketIOWire.stringToken(p, event.name, equals: $0) }) {
                    guard let arg = event.firstArgument, let sid = SocketIOWire.sessionIDToken(p, argument: arg) else { return .fail(.protocol) }
                    return .confirmed(Array(UnsafeRawBufferPointer(rebasing: p[sid])))
                }
                return .other
            }
        }
        switch action {
        case .none: break
        case .other: worker.stats.otherEvents += 1
        case .sendConnect:
            phase = .awaitingConnect
            send(text: Self.connectPacket)
        case .answerPing:
            worker.stats.eioPings += 1
            var pong = payload
            pong.moveReaderIndex(forwardBy: 1)
            let body = pong
            sendText(capacity: body.readableBytes + 1) { b in
                b.writeInteger(UInt8(ascii: "3"))
                b.writeImmutableBuffer(body)
            }
        case .sendSessionRequest:
            phase = .awaitingConfirm
            send(text: worker.shared.sessionRequest)
        case .confirmed(let sid):
            (prefix, suffix) = SocketIOOutbound.userMessageParts(event: worker.shared.userEventName, sessionIDToken: sid)
            phase = .ready
            worker.sessionReady(self)
        case .replied: worker.replied(self)
        case .mismatch: worker.failed(self, .mismatch)
        case .fail(let kind): worker.failed(self, kind)
        }
    }

    static let textKey: [UInt8] = Array("text".utf8)
    static let connectPacket: [UInt8] = Array("40".utf8)

    // MARK: Sending

    /// Bytes left free in front of an outbound payload, so NIO's encoder writes the frame header there
    /// instead of in a second buffer (2 + 8 length + 4 mask).
    private static let headerRoom = 14

    @inline(__always) private func nextMask() -> WebSocketMaskingKey { .random(using: &rng) }

    private func send(_ frame: WebSocketFrame) {
        context?.writeAndFlush(wrapOutboundOut(frame), promise: nil)
    }

    /// Sends one masked text frame whose payload `write` appends.
    private func sendText(capacity: Int, _ write: (inout ByteBuffer) -> Void) {
        guard let context else { return }
        var buffer = context.channel.allocator.buffer(capacity: capacity + Self.headerRoom)
        buffer.moveWriterIndex(forwardBy: Self.headerRoom)
        buffer.moveReaderIndex(forwardBy: Self.headerRoom)
        write(&buffer)
        send(WebSocketFrame(fin: true, opcode: .text, maskKey: nextMask(), data: buffer))
    }

    private func send(text: [UInt8]) {
        sendText(capacity: text.count) { $0.writeBytes(text) }
    }

    /// Sends the next user message (`hello <id>-<seq>`) and remembers the text the reply must carry.
    func sendMessage(now: UInt64) {
        guard context != nil else { return }
        sequence += 1
        SocketIOOutbound.messageText(connection: id, sequence: sequence, size: worker.shared.messageSize, into: &expected)
        let raw = worker.shared.raw
        awaitingReply = true
        sentNs = now
        sendText(capacity: prefix.count + expected.count + suffix.count) { b in
            if raw {
                b.writeBytes(expected)
            } else {
                b.writeBytes(prefix)
                b.writeBytes(expected)
                b.writeBytes(suffix)
            }
        }
    }

    /// Ends the connection: a WebSocket close frame (1000) first when `graceful`, then TCP close.
    func finish(graceful: Bool) {
        guard phase != .finished else { return }
        let wasOpen = context != nil
        phase = .finished
        awaitingReply = false
        if graceful && wasOpen, let context {
            var body = context.channel.allocator.buffer(capacity: 2)
            body.writeInteger(UInt16(1000))
            send(WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: nextMask(), data: body))
        }
        channel?.close(promise: nil)
        channel = nil
    }
}

/// A small, fast, non-cryptographic PRNG (SplitMix64) for frame masks.
///
/// Masks only have to be unpredictable to intermediaries; a load generator on loopback needs speed, and
/// the system generator costs a `getrandom` call per frame.
struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    /// Seeds the generator.
    init(seed: UInt64) { state = seed }
    /// The next 64 random bits.
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
