import Logging
public import NIOCore
import NIOHTTP1
import Synchronization

/// Limits on the HTTP connections of an ``EngineIOHTTPChannel`` (Engine.IO and the application's routes share
/// them), against clients that hold connections open or open too many. Every default leaves real browsers and
/// widgets alone; `make bench`, which opens thousands of sessions from 127.0.0.1, is exempt by default like every
/// loopback client (behind a reverse proxy every client is 127.0.0.1: limit per address there).
public struct HTTPConnectionLimits: Sendable {
    /// Time from accepting a connection to a complete first request head; then the connection is closed
    /// (default 10 s). A slow or silent client cannot hold a connection (and a file descriptor) for long.
    public var headerTimeout: TimeAmount
    /// Time a keep-alive connection may stay without a request after its last response (default 60 s). A
    /// request in progress (a long-poll GET held for up to the ping interval) is never cut; nor is a WebSocket.
    public var idleTimeout: TimeAmount
    /// Largest request head (request line and all header fields) in bytes (default 32 KiB); larger: 400.
    public var maxHeaderBytes: Int
    /// Most header fields in a request (default 100); more: 400.
    public var maxHeaderCount: Int
    /// Most open connections from one client address (default 256); more are closed at once. 0 = no limit.
    public var maxConnectionsPerAddress: Int
    /// New connections per second from one client address on average (default 50); 0 = no limit.
    public var connectionsPerSecondPerAddress: Double
    /// New connections from one client address at once above the average (default 100).
    public var connectionBurstPerAddress: Int
    /// Client addresses the per-address limits do not apply to: exact addresses or IPv4 CIDR blocks (default
    /// `127.0.0.0/8` and `::1`).
    public var exemptAddresses: [String]

    /// Creates limits; every parameter has the default documented on its property.
    public init(
        headerTimeout: TimeAmount = .seconds(10),
        idleTimeout: TimeAmount = .seconds(60),
        maxHeaderBytes: Int = 32 * 1024,
        maxHeaderCount: Int = 100,
        maxConnectionsPerAddress: Int = 256,
        connectionsPerSecondPerAddress: Double = 50,
        connectionBurstPerAddress: Int = 100,
        exemptAddresses: [String] = ["127.0.0.0/8", "::1"]
    ) {
        self.headerTimeout = headerTimeout
        self.idleTimeout = idleTimeout
        self.maxHeaderBytes = maxHeaderBytes
        self.maxHeaderCount = maxHeaderCount
        self.maxConnectionsPerAddress = maxConnectionsPerAddress
        self.connectionsPerSecondPerAddress = connectionsPerSecondPerAddress
        self.connectionBurstPerAddress = connectionBurstPerAddress
        self.exemptAddresses = exemptAddresses
    }
}

/// Counts open connections and new-connection tokens per client address across every event loop. One `Mutex`
/// taken twice per connection (accept and close), never per request or message: connections of one address
/// arrive on any loop, so a loop-bound count cannot see them all.
final class ConnectionLimiter: Sendable {
    private struct Entry {
        var open = 0
        var tokens: Double
        var last: NIODeadline
    }

    let limits: HTTPConnectionLimits
    private let exempt: [(network: UInt32, mask: UInt32)]
    private let exemptExact: Set<String>
    private let entries = Mutex<[String: Entry]>([:])
    private let lastLog = Mutex<(NIODeadline, Int)>((.uptimeNanoseconds(0), 0))
    private let logger: Logger

    init(limits: HTTPConnectionLimits, logger: Logger) {
        self.limits = limits
        self.logger = logger
        var blocks: [(UInt32, UInt32)] = []
        var exact: Set<String> = []
        for entry in limits.exemptAddresses {
            let parts = entry.split(separator: "/", maxSplits: 1)
            if parts.count == 2, let bits = Int(parts[1]), (0...32).contains(bits), let net = Self.ipv4(String(parts[0])) {
                let mask: UInt32 = bits == 0 ? 0 : ~UInt32(0) << (32 - bits)
                blocks.append((net & mask, mask))
            } else {
                exact.insert(entry)
            }
        }
        self.exempt = blocks
        self.exemptExact = exact
    }

    /// Whether per-address limits apply to no client at all.
    var isUnlimited: Bool {
        limits.maxConnectionsPerAddress <= 0 && limits.connectionsPerSecondPerAddress <= 0
    }

    static func ipv4(_ text: String) -> UInt32? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for p in parts {
            guard let b = UInt8(p) else { return nil }
            value = value << 8 | UInt32(b)
        }
        return value
    }

    func isExempt(_ address: String) -> Bool {
        if exemptExact.contains(address) { return true }
        guard let ip = Self.ipv4(address) else { return false }
        return exempt.contains { ip & $0.mask == $0.network }
    }

    /// Admits a new connection from `address` (nil when unknown: admitted), or returns why not. An admitted
    /// connection must be ``release(_:)``d when it closes.
    func admit(_ address: String?) -> String? {
        guard let address, !isUnlimited, !isExempt(address) else { return nil }
        let now = NIODeadline.now()
        let refusal: String? = entries.withLock { all in
            var e = all[address] ?? Entry(tokens: Double(max(1, limits.connectionBurstPerAddress)), last: now)
            if limits.connectionsPerSecondPerAddress > 0 {
                let elapsed = Double((now - e.last).nanoseconds) / 1e9
                e.tokens = min(Double(max(1, limits.connectionBurstPerAddress)), e.tokens + elapsed * limits.connectionsPerSecondPerAddress)
                e.last = now
                guard e.tokens >= 1 else {
                    all[address] = e
                    return "more than \(limits.connectionsPerSecondPerAddress) new connections per second"
                }
            }
            if limits.maxConnectionsPerAddress > 0, e.open >= limits.maxConnectionsPerAddress {
                all[address] = e
                return "more than \(limits.maxConnectionsPerAddress) open connections"
            }
            if limits.connectionsPerSecondPerAddress > 0 { e.tokens -= 1 }
            e.open += 1
            all[address] = e
            return nil
        }
        if let refusal {
            EngineMetrics.connectionRefused()
            logRefusal(address, refusal)
        }
        return refusal
    }

    /// A connection admitted by ``admit(_:)`` closed.
    func release(_ address: String?) {
        guard let address, !isUnlimited, !isExempt(address) else { return }
        entries.withLock { all in
            guard var e = all[address] else { return }
            e.open -= 1
            // Forget an address with nothing open and a full bucket: the table only holds active clients.
            let full =
                limits.connectionsPerSecondPerAddress <= 0
                || e.tokens + Double((NIODeadline.now() - e.last).nanoseconds) / 1e9 * limits.connectionsPerSecondPerAddress
                    >= Double(max(1, limits.connectionBurstPerAddress))
            if e.open <= 0 && full { all[address] = nil } else { all[address] = e }
        }
    }

    /// At most one log line per 10 s for refused connections, with the number refused since the last one.
    private func logRefusal(_ address: String, _ reason: String) {
        let now = NIODeadline.now()
        let (log, count) = lastLog.withLock { state -> (Bool, Int) in
            if now - state.0 < .seconds(10) {
                state.1 += 1
                return (false, 0)
            }
            defer { state = (now, 0) }
            return (true, state.1)
        }
        if log {
            logger.warning(
                "HTTP connection refused: \(reason) from one address (server.limits)",
                metadata: ["remote": "\(address)", "refused_since_last_line": "\(count)"])
        }
    }
}

/// Closes a connection whose first request head does not arrive within `headerTimeout`, and a keep-alive
/// connection idle for `idleTimeout` after its last response. Sits after the HTTP decoder and the upgrade
/// handler; removed when the connection becomes a WebSocket. State lives on the connection's event loop.
final class HTTPRequestTimeoutHandler: ChannelDuplexHandler, RemovableChannelHandler {
    // `Any`: while a connection turns into a WebSocket, frames and bytes may pass before this handler is removed;
    // only HTTP parts are looked at, everything passes on unchanged.
    typealias InboundIn = Any
    typealias InboundOut = Any
    typealias OutboundIn = Any
    typealias OutboundOut = Any

    private let headerTimeout: TimeAmount
    private let idleTimeout: TimeAmount
    private var timer: Scheduled<Void>?

    init(headerTimeout: TimeAmount, idleTimeout: TimeAmount) {
        self.headerTimeout = headerTimeout
        self.idleTimeout = idleTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        // Added to an active connection that has not sent a complete head yet.
        arm(context, headerTimeout)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if let part = unwrapInboundIn(data) as? HTTPServerRequestPart, case .head = part {
            // A request is in progress: no timer until its response has been written.
            timer?.cancel()
            timer = nil
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if let part = unwrapOutboundIn(data) as? HTTPServerResponsePart, case .end = part {
            arm(context, idleTimeout)
        }
        context.write(data, promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // NIO's protocol error handler has written `400` with `Connection: close`; the connection must not stay
        // open for another request (a smuggling attempt, a TLS ClientHello on the plain port).
        if error is HTTPParserError {
            context.close(promise: nil)
        }
        context.fireErrorCaught(error)
    }

    private func arm(_ context: ChannelHandlerContext, _ after: TimeAmount) {
        timer?.cancel()
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: after) {
            loopBound.value.close(promise: nil)
        }
    }
}
