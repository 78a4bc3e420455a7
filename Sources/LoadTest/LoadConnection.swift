import NIOCore

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

/// One simulated user: a single channel handler that does the WebSocket handshake and framing,
/// Engine.IO and Socket.IO itself (no codec handlers in between, so the generator stays cheap).
///
/// Confined to its worker's event loop.
final class LoadConnection: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Phase: UInt8, Comparable {
        case connecting, handshaking, awaitingOpen, awaitingConnect, awaitingConfirm, ready, finished
        static func < (a: Phase, b: Phase) -> Bool { a.rawValue < b.rawValue }
    }

    let id: Int
    unowned let worker: Worker
    /// When the session started (before `connect()`), monotonic ns.
    let startNs: UInt64
    var phase: Phase = .connecting
    var context: ChannelHandlerContext?
    private var key = ""
    private var pending: ByteBuffer?
    private var fragments: ByteBuffer?
    private var fragmentOpcode: UInt8 = 0
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

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func channelActive(context: ChannelHandlerContext) {
        phase = .handshaking
        key = WebSocketHandshake.makeKey(&rng)
        let request = WebSocketHandshake.request(host: worker.shared.hostHeader, port: worker.shared.port, path: worker.shared.path, key: key)
        var buffer = context.channel.allocator.buffer(capacity: request.utf8.count)
        buffer.writeString(request)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if phase != .finished { worker.failed(self, .closed) }
        self.context = nil
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if phase != .finished { worker.failed(self, phase <= .connecting ? .connect : .closed) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        if var p = pending {
            p.writeBuffer(&buffer)
            buffer = p
            pending = nil
        }
        if phase == .handshaking {
            let check = buffer.withUnsafeReadableBytes { WebSocketHandshake.checkResponse($0, key: key) }
            switch check {
            case .incomplete:
                pending = buffer
                return
            case .rejected:
                worker.failed(self, .handshake)
                return
            case .upgraded(let headerLength):
                buffer.moveReaderIndex(forwardBy: headerLength)
                if worker.shared.raw {
                    phase = .ready
                    worker.sessionReady(self)
                } else {
                    phase = .awaitingOpen
                }
            }
        }
        do {
            while phase != .finished, let frame = try WebSocketClientCodec.nextFrame(from: &buffer) {
                handle(frame)
            }
        } catch {
            worker.failed(self, .protocol)
            return
        }
        if phase != .finished, buffer.readableBytes > 0 { pending = buffer }
    }

    // MARK: Frames and packets

    private func handle(_ frame: WebSocketInboundFrame) {
        switch frame.opcode {
        case WebSocketClientCodec.opText, WebSocketClientCodec.opBinary:
            if frame.fin {
                handleMessage(frame.payload)
            } else {
                fragments = frame.payload
                fragmentOpcode = frame.opcode
            }
        case WebSocketClientCodec.opContinuation:
            guard var f = fragments else { worker.failed(self, .protocol); return }
            var piece = frame.payload
            f.writeBuffer(&piece)
            if f.readableBytes > WebSocketClientCodec.maxPayload { worker.failed(self, .protocol); return }
            if frame.fin {
                fragments = nil
                handleMessage(f)
            } else {
                fragments = f
            }
        case WebSocketClientCodec.opPing:
            worker.stats.wsPings += 1
            send(opcode: WebSocketClientCodec.opPong, payload: frame.payload)
        case WebSocketClientCodec.opPong:
            break
        case WebSocketClientCodec.opClose:
            worker.failed(self, .closed)
        default:
            worker.failed(self, .protocol)
        }
    }

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
            let frame = WebSocketClientCodec.clientFrame(
                opcode: WebSocketClientCodec.opText, mask: nextMask(), allocator: allocator, capacity: body.readableBytes + 1
            ) { b in
                b.writeInteger(UInt8(ascii: "3"))
                b.writeImmutableBuffer(body)
            }
            context?.writeAndFlush(wrapOutboundOut(frame), promise: nil)
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

    private var allocator: ByteBufferAllocator { context?.channel.allocator ?? ByteBufferAllocator() }

    @inline(__always) private func nextMask() -> UInt32 { UInt32(truncatingIfNeeded: rng.next()) }

    private func send(text: [UInt8]) {
        let frame = WebSocketClientCodec.clientFrame(opcode: WebSocketClientCodec.opText, payload: text, mask: nextMask(), allocator: allocator)
        context?.writeAndFlush(wrapOutboundOut(frame), promise: nil)
    }

    private func send(opcode: UInt8, payload: ByteBuffer) {
        let frame = WebSocketClientCodec.clientFrame(opcode: opcode, mask: nextMask(), allocator: allocator, capacity: payload.readableBytes) { b in
            b.writeImmutableBuffer(payload)
        }
        context?.writeAndFlush(wrapOutboundOut(frame), promise: nil)
    }

    /// Sends the next user message (`hello <id>-<seq>`) and remembers the text the reply must carry.
    func sendMessage(now: UInt64) {
        guard let context else { return }
        sequence += 1
        SocketIOOutbound.messageText(connection: id, sequence: sequence, size: worker.shared.messageSize, into: &expected)
        let raw = worker.shared.raw
        let frame = WebSocketClientCodec.clientFrame(
            opcode: WebSocketClientCodec.opText, mask: nextMask(), allocator: context.channel.allocator,
            capacity: prefix.count + expected.count + suffix.count
        ) { b in
            if raw {
                b.writeBytes(expected)
            } else {
                b.writeBytes(prefix)
                b.writeBytes(expected)
                b.writeBytes(suffix)
            }
        }
        awaitingReply = true
        sentNs = now
        context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
    }

    /// Ends the connection: a WebSocket close frame (1000) first when `graceful`, then TCP close.
    func finish(graceful: Bool) {
        guard phase != .finished else { return }
        let wasOpen = phase > .handshaking
        phase = .finished
        awaitingReply = false
        guard let context else { return }
        if graceful && wasOpen {
            var body = ByteBuffer()
            body.writeInteger(UInt16(1000))
            let frame = WebSocketClientCodec.clientFrame(
                opcode: WebSocketClientCodec.opClose, mask: nextMask(), allocator: context.channel.allocator, capacity: 2
            ) { b in
                b.writeImmutableBuffer(body)
            }
            context.write(wrapOutboundOut(frame), promise: nil)
            context.flush()
        }
        context.close(promise: nil)
    }
}
