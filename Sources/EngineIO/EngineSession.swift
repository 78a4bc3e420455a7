import Logging
import NIOCore
import NIOWebSocket

/// What a long-polling GET gets back from a session.
enum PollOutcome: Sendable {
    /// HTTP 200 with this payload.
    case payload([UInt8])
    /// HTTP 400 with this reason (the session may or may not have been closed, see the caller).
    case badRequest(String)
}

/// What a long-polling POST gets back.
enum PostOutcome: Sendable {
    case ok
    case badRequest(String)
}

/// One Engine.IO session.
///
/// Every piece of mutable state is confined to ``eventLoop`` (the loop of the connection that opened the
/// session): public entry points hop onto it when called from elsewhere, so delegate calls for one session are
/// serialized and in order without a lock. This is why the class is `@unchecked Sendable`.
final class EngineSession: EngineConnection, NIOScheduledCallbackHandler, @unchecked Sendable {
    enum Transport {
        case polling
        case websocket(EngineWebSocketHandler)
    }

    enum Upgrade {
        case none
        /// A WebSocket upgrade request with this sid was accepted; its handler is not attached yet.
        case expecting(Scheduled<Void>, connection: ObjectIdentifier)
        /// A WebSocket with the same sid is open; `probed` once it sent `2probe`.
        case probing(EngineWebSocketHandler, probed: Bool, timer: Scheduled<Void>?)
    }

    enum Phase {
        case open
        /// Closed by the server over polling with no GET pending: the next GET (within pingTimeout) gets the
        /// queued packets and the close packet, then the session leaves the table.
        case draining(Scheduled<Void>?)
        case closed
    }

    enum Heartbeat {
        case waitingToPing
        case awaitingPong
    }

    let id: String
    let handshake: EngineHandshake
    let eventLoop: any EventLoop
    let server: EngineIOServer
    let logger: Logger
    /// Batches messages sent from other threads to this session's loop.
    let loopOutbox: LoopOutbox

    // MARK: loop-confined state
    private var delegate: (any EngineConnectionDelegate)?
    private var phase: Phase = .open
    private var transport: Transport
    private var upgrade: Upgrade = .none
    private var outbox: [EnginePacket] = []
    private var outboxBytes = 0
    private var pendingPoll: EventLoopPromise<PollOutcome>?
    private var postInFlight = false
    /// Set while the pending poll is held because it arrived during an upgrade (see ``poll(promise:)``): the
    /// grace timer that answers it with a noop. Cancelled whenever the held poll is answered earlier.
    private var heldPollTimer: Scheduled<Void>?
    static let upgradePollGrace = TimeAmount.milliseconds(100)
    static let probedPollGrace = TimeAmount.milliseconds(30)
    private var heartbeatState: Heartbeat = .waitingToPing
    private var heartbeatCallback: NIOScheduledCallback?
    /// When the session was created: the heartbeat clock starts here, before the open packet is sent.
    private var heartbeatDeadline = NIODeadline.now()

    init(
        id: String,
        handshake: EngineHandshake,
        eventLoop: any EventLoop,
        server: EngineIOServer,
        transport: Transport
    ) {
        self.id = id
        self.handshake = handshake
        self.eventLoop = eventLoop
        self.server = server
        self.transport = transport
        self.loopOutbox = server.outboxes.outbox(for: eventLoop)
        var logger = server.logger
        logger[metadataKey: "engineio.sid"] = .string(id)
        self.logger = logger
    }

    var configuration: EngineIOConfiguration { server.configuration }

    // MARK: EngineConnection

    func send(_ messages: [EngineMessage]) {
        EngineMetrics.sent(messages.count)
        if eventLoop.inEventLoop {
            sendOnLoop(messages)
        } else {
            loopOutbox.submit(messages, to: self)
        }
    }

    func execute(_ work: @escaping @Sendable () -> Void) {
        if eventLoop.inEventLoop {
            work()
        } else {
            loopOutbox.execute(work)
        }
    }

    func close() {
        if eventLoop.inEventLoop {
            closeSession(.serverClose)
        } else {
            eventLoop.execute { self.closeSession(.serverClose) }
        }
    }

    // MARK: Opening

    /// Starts the heartbeat and asks the server delegate for the session delegate. Call on the loop, after
    /// the open packet was written (WebSocket) or handed to the HTTP response (polling).
    func start(delegateFactory: any EngineServerDelegate) {
        eventLoop.preconditionInEventLoop()
        scheduleHeartbeat(after: configuration.pingInterval)
        EngineMetrics.sessionOpened(webSocket: usesWebSocket)
        delegate = delegateFactory.engineServer(didOpen: self)
    }

    var isOpen: Bool {
        if case .open = phase { return true }
        return false
    }

    /// The session's transport is a WebSocket (it opened on one, or was upgraded). Loop only.
    var usesWebSocket: Bool {
        if case .websocket = transport { return true }
        return false
    }

    /// A polling GET is waiting for an answer (held or not). Loop only; for tests that must order a GET before
    /// a WebSocket packet on another connection.
    var hasPendingPoll: Bool { pendingPoll != nil }

    // MARK: Sending

    func sendOnLoop(_ messages: [EngineMessage]) {
        guard isOpen, !messages.isEmpty else { return }
        if case .websocket(let link) = transport, case .none = upgrade {
            link.write(messages: messages)
            return
        }
        for message in messages {
            enqueue(.message(message))
        }
        flushPollIfPossible()
    }

    /// Sends one control packet on the current transport.
    private func sendPacket(_ packet: EnginePacket) {
        if case .websocket(let link) = transport, case .none = upgrade {
            link.write(packet: packet)
            return
        }
        enqueue(packet)
        flushPollIfPossible()
    }

    private static func queuedSize(of packet: EnginePacket) -> Int {
        switch packet {
        case .message(.text(let text)): text.utf8.count + 1
        case .message(.binary(let bytes)): (bytes.count + 2) / 3 * 4 + 1
        default: 2
        }
    }

    private func enqueue(_ packet: EnginePacket) {
        outbox.append(packet)
        outboxBytes += Self.queuedSize(of: packet)
        if outboxBytes > configuration.maxOutboundQueueBytes {
            logger.warning(
                "Engine.IO session closed: slow consumer",
                metadata: ["engineio.queued_bytes": "\(outboxBytes)", "engineio.limit": "\(configuration.maxOutboundQueueBytes)"]
            )
            closeSession(.slowConsumer)
        }
    }

    /// Takes at most ``EngineIOConfiguration/maxPacketsPerPoll`` packets for one polling response (a final
    /// `last`, such as the close packet, always goes with everything that is left). Loop only.
    private func takeOutboxPayload(appending last: EnginePacket? = nil) -> [UInt8] {
        var packets: [EnginePacket]
        if last == nil, outbox.count > configuration.maxPacketsPerPoll {
            packets = Array(outbox.prefix(configuration.maxPacketsPerPoll))
            outbox.removeFirst(configuration.maxPacketsPerPoll)
            for packet in packets { outboxBytes -= Self.queuedSize(of: packet) }
        } else {
            packets = outbox
            outbox = []
            outboxBytes = 0
        }
        if let last { packets.append(last) }
        return EngineCodec.encodePayload(packets)
    }

    private func flushPollIfPossible() {
        guard let poll = pendingPoll, !outbox.isEmpty, case .polling = transport, case .none = upgrade else { return }
        pendingPoll = nil
        poll.succeed(.payload(takeOutboxPayload()))
    }

    // MARK: Polling

    /// A long-polling GET arrived for this session. Loop only.
    func poll(promise: EventLoopPromise<PollOutcome>) {
        logger.trace("Engine.IO poll", metadata: ["engineio.phase": "\(phase)", "engineio.upgrade": "\(upgrade)"])
        switch phase {
        case .closed:
            promise.succeed(.badRequest("Session ID unknown"))
            return
        case .draining(let timer):
            timer?.cancel()
            phase = .closed
            server.removeSession(self)
            promise.succeed(.payload(takeOutboxPayload(appending: .close)))
            return
        case .open:
            break
        }
        guard case .polling = transport else {
            promise.succeed(.badRequest("Bad request: the session uses the websocket transport"))
            return
        }
        if case .expecting = upgrade, pendingPoll == nil {
            holdPoll(promise, grace: Self.upgradePollGrace)
            return
        }
        if case .probing(_, let probed, _) = upgrade, pendingPoll == nil {
            // A poll that arrives while an upgrade is in flight is held until the upgrade completes (then it gets
            // 400: the session has moved to the WebSocket) or for a short grace time (then it gets a noop so the
            // client can send `5`). Holding it keeps the order a client sees when its `2probe`, `5` and this GET
            // race on two connections handled by different event loops. Real clients never poll during a probe
            // (they pause polling first), so the grace costs them nothing.
            holdPoll(promise, grace: probed ? Self.probedPollGrace : Self.upgradePollGrace)
            return
        }
        if pendingPoll != nil {
            logger.info("Engine.IO session closed: overlapping GET requests")
            closeSession(.protocolViolation("overlapping GET requests"))
            promise.succeed(.badRequest("Bad request: overlapping GET requests"))
            return
        }
        pendingPoll = promise
        flushPollIfPossible()
    }

    private func holdPoll(_ promise: EventLoopPromise<PollOutcome>, grace: TimeAmount) {
        pendingPoll = promise
        heldPollTimer = eventLoop.scheduleTask(in: grace) { [weak self] in
            guard let self, self.heldPollTimer != nil else { return }
            self.answerPendingPollWithNoop()
        }
    }

    /// Answers the pending poll with a noop (`6`) and stops its grace timer, if one is held or pending.
    private func answerPendingPollWithNoop() {
        heldPollTimer?.cancel()
        heldPollTimer = nil
        guard let poll = pendingPoll else { return }
        pendingPoll = nil
        poll.succeed(.payload([UInt8(ascii: "6")]))
    }

    /// A WebSocket upgrade request for this session was accepted and its 101 is about to be sent; the handler
    /// attaches shortly after. Polls arriving in between are held like polls during the probe. Loop only.
    func expectProbe(connection: ObjectIdentifier) {
        guard isOpen, case .polling = transport, case .none = upgrade else { return }
        let timer = eventLoop.scheduleTask(in: TimeAmount(configuration.upgradeTimeout)) { [weak self] in
            guard let self, case .expecting = self.upgrade else { return }
            self.upgrade = .none
            self.releaseHeldPoll()
        }
        upgrade = .expecting(timer, connection: connection)
    }

    /// A held poll goes back to being an ordinary pending poll.
    private func releaseHeldPoll() {
        heldPollTimer?.cancel()
        heldPollTimer = nil
        flushPollIfPossible()
    }

    /// Marks a POST as in flight; returns a reason to answer 400 instead. Loop only.
    func beginPost() -> String? {
        guard isOpen else { return "Session ID unknown" }
        guard case .polling = transport else { return "Bad request: the session uses the websocket transport" }
        if postInFlight {
            logger.info("Engine.IO session closed: overlapping POST requests")
            closeSession(.protocolViolation("overlapping POST requests"))
            return "Bad request: overlapping POST requests"
        }
        postInFlight = true
        return nil
    }

    /// Handles a POST body that was collected (or failed to be). Loop only.
    func finishPost(_ body: Result<[UInt8], PostFailure>) -> PostOutcome {
        postInFlight = false
        guard isOpen else { return .badRequest("Session ID unknown") }
        let bytes: [UInt8]
        switch body {
        case .failure(let failure):
            logger.info("Engine.IO session closed: \(failure.reason)")
            closeSession(.protocolViolation(failure.reason))
            return .badRequest(failure.reason)
        case .success(let b):
            bytes = b
        }
        let packets: [EnginePacket]
        do {
            packets = try EngineCodec.decodePayload(bytes)
        } catch {
            logger.info("Engine.IO session closed: \(error)")
            closeSession(.protocolViolation(error.reason))
            return .badRequest("Bad request: \(error.reason)")
        }
        for packet in packets {
            guard isOpen else { break }
            switch packet {
            case .message(let message):
                EngineMetrics.received()
                delegate?.engineConnection(self, didReceive: message)
            case .pong:
                receivedPong()
            case .ping(let data):
                sendPacket(.pong(data))
            case .close:
                closeSession(.clientClose)
            case .noop:
                break
            case .open, .upgrade:
                logger.info("Engine.IO session closed: unexpected packet over polling")
                closeSession(.protocolViolation("unexpected packet over polling"))
                return .badRequest("Bad request: unexpected packet")
            }
        }
        return .ok
    }

    struct PostFailure: Error {
        var reason: String
    }

    // MARK: WebSocket

    /// A WebSocket with this session's sid was opened. Loop only.
    func attachProbe(_ link: EngineWebSocketHandler) {
        logger.trace("Engine.IO probe WebSocket attached")
        if case .expecting(let timer, let expected) = upgrade {
            // Only the connection announced first may become the probe; a racing second one is refused.
            guard expected == ObjectIdentifier(link.channel) else {
                logger.debug("Engine.IO WebSocket refused: another upgrade is in progress")
                link.close(code: .policyViolation)
                return
            }
            timer.cancel()
            upgrade = .none
        }
        guard isOpen, case .polling = transport, case .none = upgrade, configuration.allowUpgrades else {
            logger.debug("Engine.IO WebSocket refused: the session is not open for an upgrade")
            link.close(code: .policyViolation)
            return
        }
        let timer = eventLoop.scheduleTask(in: TimeAmount(configuration.upgradeTimeout)) { [weak self] in
            guard let self else { return }
            self.abortUpgrade(link, reason: "upgrade timeout")
        }
        upgrade = .probing(link, probed: false, timer: timer)
    }

    private func abortUpgrade(_ link: EngineWebSocketHandler, reason: String) {
        guard case .probing(let probing, _, let timer) = upgrade, probing === link else { return }
        timer?.cancel()
        upgrade = .none
        logger.debug("Engine.IO upgrade aborted: \(reason)")
        link.close(code: .policyViolation)
        releaseHeldPoll()
    }

    /// A packet (or a decoding error) arrived on a WebSocket of this session. Loop only.
    func webSocketReceived(_ result: Result<EnginePacket, EngineDecodingError>, from link: EngineWebSocketHandler) {
        guard isOpen else { return }
        if case .probing(let probing, let probed, let timer) = upgrade, probing === link {
            logger.trace("Engine.IO probe packet", metadata: ["engineio.packet": "\(result)"])
            switch result {
            case .success(.ping("probe")):
                // The handler has already answered `3probe` on its own loop.
                if !link.probeAnswered { link.write(packet: .pong("probe")) }
                upgrade = .probing(link, probed: true, timer: timer)
                // A poll pending now (held because it came right after the probe WebSocket opened, as
                // socket.io-client 3.x sends it, or an ordinary one) gets a noop at once, so the client can
                // pause polling and send `5` (python-engineio does the same; Node within 100 ms).
                answerPendingPollWithNoop()
            case .success(.upgrade) where probed:
                timer?.cancel()
                upgrade = .none
                transport = .websocket(link)
                EngineMetrics.sessionUpgraded()
                heldPollTimer?.cancel()
                heldPollTimer = nil
                if let poll = pendingPoll {
                    pendingPoll = nil
                    poll.succeed(.badRequest("Bad request: the session was upgraded to websocket"))
                }
                let queued = outbox
                outbox = []
                outboxBytes = 0
                link.write(packets: queued)
                logger.debug("Engine.IO session upgraded to websocket")
            default:
                abortUpgrade(link, reason: "unexpected packet during upgrade")
            }
            return
        }
        guard case .websocket(let current) = transport, current === link else { return }
        switch result {
        case .success(.message(let message)):
            EngineMetrics.received()
            delegate?.engineConnection(self, didReceive: message)
        case .success(.pong):
            receivedPong()
        case .success(.ping(let data)):
            link.write(packet: .pong(data))
        case .success(.close):
            closeSession(.clientClose)
        case .success(.noop), .success(.upgrade):
            break
        case .success(.open):
            logger.info("Engine.IO session closed: client sent an open packet")
            closeSession(.protocolViolation("client sent an open packet"))
        case .failure(let error):
            logger.info("Engine.IO session closed: \(error)")
            closeSession(.protocolViolation(error.reason))
        }
    }

    /// A WebSocket of this session went away or failed. Loop only.
    func webSocketClosed(_ link: EngineWebSocketHandler, reason: EngineCloseReason) {
        if case .probing(let probing, _, _) = upgrade, probing === link {
            abortUpgrade(link, reason: "probe WebSocket closed")
            return
        }
        guard case .websocket(let current) = transport, current === link else { return }
        if isOpen { logger.debug("Engine.IO session closed: \(reason)") }
        closeSession(reason)
    }

    // MARK: Heartbeat

    /// Schedules the next heartbeat step at `lastHeartbeatDeadline + amount`. Deadlines are computed from the
    /// previous planned deadline, not from when the callback ran, so timer lateness never adds up: the session
    /// closes at (open or last pong) + pingInterval + pingTimeout.
    private func scheduleHeartbeat(after amount: Duration, from base: NIODeadline? = nil) {
        let deadline = (base ?? heartbeatDeadline) + TimeAmount(amount)
        heartbeatDeadline = deadline
        heartbeatCallback = try? eventLoop.scheduleCallback(at: deadline, handler: self)
    }

    func handleScheduledCallback(eventLoop: some EventLoop) {
        guard isOpen else { return }
        switch heartbeatState {
        case .waitingToPing:
            heartbeatState = .awaitingPong
            sendPacket(.ping(""))
            if isOpen { scheduleHeartbeat(after: configuration.pingTimeout) }
        case .awaitingPong:
            logger.info("Engine.IO session closed: ping timeout")
            closeSession(.pingTimeout)
        }
    }

    private func receivedPong() {
        guard case .awaitingPong = heartbeatState else { return }
        heartbeatCallback?.cancel()
        heartbeatState = .waitingToPing
        scheduleHeartbeat(after: configuration.pingInterval, from: .now())
    }

    // MARK: Closing

    /// Ends the session once: answers a pending GET, closes WebSockets, leaves the table (or drains first, see
    /// ``Phase/draining(_:)``) and tells the delegate. Loop only.
    func closeSession(_ reason: EngineCloseReason) {
        guard isOpen else { return }
        EngineMetrics.sessionClosed(webSocket: usesWebSocket)
        if case .protocolViolation = reason { EngineMetrics.protocolError() }
        phase = .closed
        heartbeatCallback?.cancel()
        heartbeatCallback = nil
        if case .probing(let link, _, let timer) = upgrade {
            timer?.cancel()
            link.close(code: .goingAway)
        }
        if case .expecting(let timer, _) = upgrade { timer.cancel() }
        upgrade = .none

        switch transport {
        case .polling:
            let deliverQueued = reason == .serverClose || reason == .shutdown
            heldPollTimer?.cancel()
            heldPollTimer = nil
            if let poll = pendingPoll {
                pendingPoll = nil
                if deliverQueued {
                    poll.succeed(.payload(takeOutboxPayload(appending: .close)))
                } else {
                    poll.succeed(.payload([UInt8(ascii: reason == .clientClose ? "6" : "1")]))
                }
                server.removeSession(self)
            } else if reason == .serverClose {
                let timer = eventLoop.scheduleTask(in: TimeAmount(configuration.pingTimeout)) { [self] in
                    if case .draining = phase {
                        phase = .closed
                        server.removeSession(self)
                    }
                }
                phase = .draining(timer)
            } else {
                server.removeSession(self)
            }
        case .websocket(let link):
            switch reason {
            case .serverClose, .shutdown:
                link.write(packet: .close)
                link.close(code: .goingAway)
            case .clientClose, .pingTimeout:
                link.close(code: .normalClosure)
            case .protocolViolation(let text):
                link.close(code: text.hasPrefix("payload too large") ? .messageTooLarge : .protocolError)
            case .slowConsumer:
                link.close(code: nil)
            case .transportError:
                link.close(code: nil)
            }
            server.removeSession(self)
        }
        if case .draining = phase {
        } else {
            outbox = []
            outboxBytes = 0
        }
        let delegate = self.delegate
        self.delegate = nil
        delegate?.engineConnection(self, didCloseWith: reason)
    }
}
