import EngineIO
import Foundation
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOWebSocket
import NIOEmbedded
import Synchronization
import Testing

// MARK: - Server under test

/// A delegate that echoes every message and records what happens. Special texts:
/// `close-me` closes the session from the server; `flood:<count>:<size>` sends `count` messages of `size` bytes.
final class RecordingDelegate: EngineServerDelegate, EngineConnectionDelegate {
    let closes = Mutex<[EngineCloseReason]>([])
    let opened = Mutex<Int>(0)

    func engineServer(didOpen connection: any EngineConnection) -> any EngineConnectionDelegate {
        opened.withLock { $0 += 1 }
        return self
    }

    func engineConnection(_ connection: any EngineConnection, didReceive message: EngineMessage) {
        if case .text(let text) = message {
            if text == "close-me" {
                connection.send([.text("bye")])
                connection.close()
                return
            }
            if text.hasPrefix("flood:") {
                let parts = text.split(separator: ":")
                let count = Int(parts[1]) ?? 0
                let size = Int(parts[2]) ?? 0
                let payload = String(repeating: "x", count: size)
                for _ in 0..<count { connection.send([.text(payload)]) }
                return
            }
        }
        connection.send([message])
    }

    func engineConnection(_ connection: any EngineConnection, didCloseWith reason: EngineCloseReason) {
        closes.withLock { $0.append(reason) }
    }

    var closeReasons: [EngineCloseReason] { closes.withLock { $0 } }
}

/// A running Hummingbird application with one Engine.IO server, on an ephemeral loopback port.
struct TestServer {
    let engine: EngineIOServer
    let delegate: RecordingDelegate
    let port: Int

    /// Starts a server, runs `body`, then stops the server.
    static func with(
        _ configuration: EngineIOConfiguration = .init(path: "/engine.io/"),
        _ body: (TestServer) async throws -> Void
    ) async throws {
        var logger = Logger(label: "engineio-test")
        logger.logLevel = .critical
        let delegate = RecordingDelegate()
        let engine = EngineIOServer(configuration: configuration, delegate: delegate, logger: logger)
        let router = Router()
        router.get("/hello") { _, _ in "hello" }
        let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
        let app = Application(
            router: router,
            server: .engineIO([engine]),
            configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in portContinuation.yield(channel.localAddress?.port ?? 0) },
            logger: logger
        )
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.runService(gracefulShutdownSignals: []) }
            var iterator = ports.makeAsyncIterator()
            let port = await iterator.next() ?? 0
            let server = TestServer(engine: engine, delegate: delegate, port: port)
            do {
                try await body(server)
            } catch {
                group.cancelAll()
                await engine.shutdown()
                throw error
            }
            await engine.shutdown()
            group.cancelAll()
        }
    }

    /// Waits (bounded) until the session table is empty.
    func expectNoSessions(sourceLocation: SourceLocation = #_sourceLocation) async {
        let empty = await eventually { engine.sessionCount == 0 }
        #expect(empty, "session table not empty: \(engine.sessionCount)", sourceLocation: sourceLocation)
    }

    /// Opens a polling session and returns its sid.
    func openPollingSession() async throws -> String {
        let response = try await HTTPTestClient.request("GET", "/engine.io/?EIO=4&transport=polling", port: port)
        #expect(response.status == 200)
        return try #require(Self.sid(fromOpenPacket: response.text))
    }

    static func sid(fromOpenPacket text: String) -> String? {
        guard text.hasPrefix("0{\"sid\":\""), let end = text.dropFirst(9).firstIndex(of: "\"") else { return nil }
        return String(text[text.index(text.startIndex, offsetBy: 9)..<end])
    }
}

/// Polls `condition` every 10 ms for at most `timeout`. For waiting on effects, never for measuring speed.
func eventually(timeout: Duration = .seconds(5), _ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return condition()
}

// MARK: - Raw TCP connection

struct TestClientError: Error, CustomStringConvertible {
    var description: String
}

/// A raw loopback TCP connection that collects everything it receives.
final class RawConnection: Sendable {
    let channel: any Channel
    private let state: NIOLockedValueBox<(bytes: [UInt8], closed: Bool)>

    private final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let state: NIOLockedValueBox<(bytes: [UInt8], closed: Bool)>
        init(state: NIOLockedValueBox<(bytes: [UInt8], closed: Bool)>) { self.state = state }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = unwrapInboundIn(data)
            state.withLockedValue { $0.bytes.append(contentsOf: buffer.readableBytesView) }
        }
        func channelInactive(context: ChannelHandlerContext) {
            state.withLockedValue { $0.closed = true }
        }
        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }

    private init(channel: any Channel, state: NIOLockedValueBox<(bytes: [UInt8], closed: Bool)>) {
        self.channel = channel
        self.state = state
    }

    static func connect(port: Int) async throws -> RawConnection {
        let state = NIOLockedValueBox<(bytes: [UInt8], closed: Bool)>(([], false))
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Collector(state: state))
                }
            }
            .connect(host: "127.0.0.1", port: port)
            .get()
        return RawConnection(channel: channel, state: state)
    }

    func send(_ bytes: [UInt8]) async throws {
        try await channel.writeAndFlush(channel.allocator.buffer(bytes: bytes)).get()
    }

    func send(_ text: String) async throws {
        try await send(Array(text.utf8))
    }

    /// Stops reading from the socket (the peer's writes then pile up): a client that stopped consuming.
    func stopReading() async throws {
        try await channel.setOption(ChannelOptions.autoRead, value: false).get()
    }

    var isClosed: Bool { state.withLockedValue { $0.closed } }

    /// Waits until `parse` finds a complete item at the start of the received bytes; removes and returns it.
    /// Returns nil if the connection closed (or `timeout` passed) first.
    func next<T>(timeout: Duration = .seconds(5), _ parse: ([UInt8]) -> (T, consumed: Int)?) async -> T? {
        let deadline = ContinuousClock.now + timeout
        while true {
            let result: T?? = state.withLockedValue { state in
                if let (value, consumed) = parse(state.bytes) {
                    state.bytes.removeFirst(consumed)
                    return .some(value)
                }
                return state.closed ? .some(nil) : nil
            }
            if let result { return result }
            if ContinuousClock.now >= deadline { return nil }
            try? await Task.sleep(for: .milliseconds(2))
        }
    }

    /// Waits until the peer closes the connection; false on timeout.
    func waitForClose(timeout: Duration = .seconds(5)) async -> Bool {
        await eventually(timeout: timeout) { isClosed }
    }

    func close() {
        channel.close(promise: nil)
    }
}

// MARK: - HTTP/1.1

struct HTTPTestResponse {
    var status: Int
    var headers: [String: String]
    var body: [UInt8]
    var text: String { String(decoding: body, as: UTF8.self) }
}

enum HTTPTestClient {
    /// Parses one response with a Content-Length (or up to close when closed is true).
    static func parse(_ bytes: [UInt8]) -> (HTTPTestResponse, consumed: Int)? {
        guard let headerEnd = find([13, 10, 13, 10], in: bytes) else { return nil }
        let head = String(decoding: bytes[..<headerEnd], as: UTF8.self)
        var lines = head.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst().split(separator: " ")
        guard statusLine.count >= 2, let status = Int(statusLine[1]) else { return nil }
        var headers: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let bodyStart = headerEnd + 4
        let length = Int(headers["content-length"] ?? "0") ?? 0
        guard bytes.count >= bodyStart + length else { return nil }
        return (HTTPTestResponse(status: status, headers: headers, body: Array(bytes[bodyStart..<bodyStart + length])), bodyStart + length)
    }

    static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for i in 0...(haystack.count - needle.count) where haystack[i] == needle[0] {
            if Array(haystack[i..<i + needle.count]) == needle { return i }
        }
        return nil
    }

    static func requestBytes(_ method: String, _ target: String, headers: [(String, String)] = [], body: [UInt8] = []) -> [UInt8] {
        var text = "\(method) \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        if !body.isEmpty || method == "POST" || method == "PUT" { text += "Content-Length: \(body.count)\r\n" }
        text += "\r\n"
        return Array(text.utf8) + body
    }

    /// Sends one request on a new connection and waits for the response.
    static func request(
        _ method: String,
        _ target: String,
        headers: [(String, String)] = [],
        body: [UInt8] = [],
        port: Int,
        timeout: Duration = .seconds(5)
    ) async throws -> HTTPTestResponse {
        let connection = try await RawConnection.connect(port: port)
        defer { connection.close() }
        try await connection.send(requestBytes(method, target, headers: headers, body: body))
        guard let response = await connection.next(timeout: timeout, parse) else {
            throw TestClientError(description: "no response to \(method) \(target)")
        }
        return response
    }

    static func request(_ method: String, _ target: String, body: String, port: Int) async throws -> HTTPTestResponse {
        try await request(method, target, body: Array(body.utf8), port: port)
    }
}

// MARK: - WebSocket

struct WSFrame: Equatable {
    var opcode: UInt8
    var payload: [UInt8]
    var fin = true
    var rsv1 = false
    var text: String { String(decoding: payload, as: UTF8.self) }
    static let text: UInt8 = 1
    static let binary: UInt8 = 2
    static let close: UInt8 = 8
    static let ping: UInt8 = 9
    static let pong: UInt8 = 10
}

/// WebSocket frames to and from bytes with SwiftNIO's own codec (`WebSocketFrameEncoder`, `WebSocketFrameDecoder`)
/// on embedded channels, so the raw test clients write no framing of their own. NIO's encoder writes whatever
/// frame it is given (unmasked, reserved bits or opcodes, oversized control frames), which is what the
/// strictness tests need; byte sequences no encoder produces (bad lengths) are sent as bytes by those tests.
final class WebSocketWire {
    private let encoder = EmbeddedChannel(handler: WebSocketFrameEncoder())
    private let decoder = EmbeddedChannel(handler: ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: 1 << 26)))
    private var decoded: [WSFrame] = []
    private var failed = false

    /// The bytes of one client frame (masked unless `masked` is false).
    func encode(opcode: UInt8, payload: [UInt8], fin: Bool = true, rsv1: Bool = false, masked: Bool = true) -> [UInt8] {
        let frame = WebSocketFrame(
            fin: fin, rsv1: rsv1, opcode: WebSocketOpcode(encodedWebSocketOpcode: opcode)!,
            maskKey: masked ? [0x37, 0xFA, 0x21, 0x3D] : nil, data: ByteBuffer(bytes: payload))
        try! encoder.writeOutbound(frame)
        var bytes: [UInt8] = []
        while let part = try! encoder.readOutbound(as: ByteBuffer.self) { bytes += part.readableBytesView }
        return bytes
    }

    /// Feeds bytes from the server; false once they stopped being valid WebSocket framing.
    func feed(_ bytes: [UInt8]) -> Bool {
        guard !failed else { return false }
        do {
            try decoder.writeInbound(ByteBuffer(bytes: bytes))
            while let frame = try decoder.readInbound(as: WebSocketFrame.self) {
                decoded.append(
                    WSFrame(
                        opcode: UInt8(webSocketOpcode: frame.opcode), payload: Array(frame.unmaskedData.readableBytesView), fin: frame.fin, rsv1: frame.rsv1))
            }
        } catch {
            failed = true
        }
        return !failed
    }

    /// The oldest decoded frame not yet taken.
    func take() -> WSFrame? { decoded.isEmpty ? nil : decoded.removeFirst() }
}

extension RawConnection {
    /// The next frame from the server, decoded by `wire`; nil when the connection closed, the framing broke, or
    /// nothing came in `timeout`.
    func nextFrame(_ wire: WebSocketWire, timeout: Duration) async -> WSFrame? {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let frame = wire.take() { return frame }
            let left = deadline - ContinuousClock.now
            guard left > .zero, let chunk = await next(timeout: left, { $0.isEmpty ? nil : ($0, $0.count) }), wire.feed(chunk) else {
                return wire.take()
            }
        }
    }
}

/// A minimal WebSocket client (masked frames, no extensions) over ``RawConnection``, framing by ``WebSocketWire``.
struct WSTestClient {
    let connection: RawConnection
    let upgradeStatus: Int
    let wire = WebSocketWire()

    static func connect(port: Int, target: String) async throws -> WSTestClient {
        try await upgrade(connection: RawConnection.connect(port: port), target: target)
    }

    /// Sends the upgrade request for `target` on `connection` (new or kept alive), followed by `trailing` bytes
    /// in the same write, and reads the answer's head (and a refusal's body).
    static func upgrade(connection: RawConnection, target: String, trailing: [UInt8] = []) async throws -> WSTestClient {
        let request = HTTPTestClient.requestBytes(
            "GET",
            target,
            headers: [
                ("Upgrade", "websocket"), ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13"),
            ]
        )
        try await connection.send(request + trailing)
        let status = await connection.next { bytes -> (Int, consumed: Int)? in
            guard let end = HTTPTestClient.find([13, 10, 13, 10], in: bytes) else { return nil }
            let head = String(decoding: bytes[..<end], as: UTF8.self)
            let parts = head.split(separator: " ")
            let length: Int
            if head.hasPrefix("HTTP/1.1 101") {
                length = 0
            } else {
                // A refusal: skip its body too.
                let lengthLine = head.lowercased().components(separatedBy: "\r\n").first { $0.hasPrefix("content-length:") }
                length = Int(lengthLine?.dropFirst(15).trimmingCharacters(in: .whitespaces) ?? "0") ?? 0
                guard bytes.count >= end + 4 + length else { return nil }
            }
            return (parts.count > 1 ? Int(parts[1]) ?? 0 : 0, end + 4 + length)
        }
        return WSTestClient(connection: connection, upgradeStatus: status ?? 0)
    }

    /// Connects a WebSocket-only session and reads its open packet.
    static func open(port: Int, path: String = "/engine.io/") async throws -> (WSTestClient, sid: String) {
        let client = try await connect(port: port, target: "\(path)?EIO=4&transport=websocket")
        #expect(client.upgradeStatus == 101)
        let open = try #require(await client.nextFrame())
        let sid = try #require(TestServer.sid(fromOpenPacket: open.text))
        return (client, sid)
    }

    func send(opcode: UInt8, payload: [UInt8], fin: Bool = true) async throws {
        try await connection.send(wire.encode(opcode: opcode, payload: payload, fin: fin))
    }

    func send(_ text: String) async throws {
        try await send(opcode: WSFrame.text, payload: Array(text.utf8))
    }

    func sendBinary(_ bytes: [UInt8]) async throws {
        try await send(opcode: WSFrame.binary, payload: bytes)
    }

    /// The next frame from the server; nil when the connection closed (or nothing came in `timeout`).
    func nextFrame(timeout: Duration = .seconds(5)) async -> WSFrame? {
        await connection.nextFrame(wire, timeout: timeout)
    }

    /// The next text frame that is not a ping `2`, answering pings with `3` on the way (when `answerPings`).
    func nextMessage(answerPings: Bool = true, timeout: Duration = .seconds(5)) async throws -> WSFrame? {
        while let frame = await nextFrame(timeout: timeout) {
            if frame.opcode == WSFrame.text && frame.text == "2" {
                if answerPings { try await send("3") }
                continue
            }
            return frame
        }
        return nil
    }

    /// Reads frames until the server's close frame (answering pings); returns its status code, or nil when the
    /// connection ended without one.
    func waitForCloseFrame(answerPings: Bool = true, timeout: Duration = .seconds(5)) async throws -> UInt16? {
        while let frame = try await nextMessage(answerPings: answerPings, timeout: timeout) {
            if frame.opcode == WSFrame.close {
                return frame.payload.count >= 2 ? UInt16(frame.payload[0]) << 8 | UInt16(frame.payload[1]) : 0
            }
        }
        return nil
    }

    func close() { connection.close() }
}
