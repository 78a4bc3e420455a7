import ArgumentParser
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import ParleyJSON
import Synchronization

/// `parley shell`: chat with a running server from the terminal, like `rasa shell`, over the same Socket.IO
/// channel a web widget uses (Engine.IO v4 over a WebSocket, NIO's WebSocket client).
///
/// Bot messages are printed as they arrive; buttons and quick replies are listed with numbers, and typing a
/// number sends that button's payload. `/restart` is sent as a message (Rasa's restart intent); `/exit` or
/// end of input quits. With `--session` the conversation resumes and its history is printed first (from
/// `GET /conversations/{id}/messages`, with `--api-token` when the server requires one).
struct ShellCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shell",
        abstract: "Chat with a running Parley server in the terminal (like rasa shell).")

    @Option(name: .long, help: "The server's URL.")
    var url: String = "http://127.0.0.1:5005"

    @Option(name: .long, help: "Resume this session id (prints its history first); default: a new session.")
    var session: String?

    @Option(name: .long, help: "A JWT for the Socket.IO channel (when it has jwt_key).")
    var token: String?

    @Option(name: .long, help: "The conversation API token, to print the history of --session.")
    var apiToken: String?

    @Option(name: .long, help: "The Socket.IO path (channels.socketio.socketio_path).")
    var socketioPath: String = "/socket.io"

    func run() async throws {
        guard let parsed = URL(string: url), let host = parsed.host, parsed.scheme == "http" else {
            throw ValidationError("--url must be http://HOST[:PORT] (for https use a reverse proxy's plain port), got \(url)")
        }
        let port = parsed.port ?? 80
        if let session {
            await printHistory(host: host, port: port, session: session)
        }
        let socket: NIOAsyncChannel<WebSocketFrame, WebSocketFrame>
        do {
            socket = try await Self.connectWebSocket(host: host, port: port, path: "\(socketioPath)/?EIO=4&transport=websocket")
        } catch {
            throw ShellError("cannot open a WebSocket to \(url)\(socketioPath)/: \(error); is `parley serve` running there?")
        }
        let state = ShellStateBox()
        let session = self.session
        let token = self.token
        try await socket.executeThenClose { inbound, outbound in
            @Sendable func send(_ text: String) async throws {
                try await outbound.write(WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: ByteBuffer(string: text)))
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for try await frame in inbound {
                        guard frame.opcode == .text else {
                            if frame.opcode == .connectionClose { return }
                            continue
                        }
                        let packet = String(buffer: frame.unmaskedData)
                        switch packet.first {
                        case "0":
                            let auth = token.map { #"{"token":"Bearer \#($0)"}"# } ?? ""
                            try await send("40" + auth)
                        case "2":
                            try await send("3")
                        case "4":
                            try await handleSocketIO(String(packet.dropFirst()), state: state, session: session, send: send)
                        case "1":
                            print("(the server closed the session)")
                            return
                        default:
                            break
                        }
                    }
                    print("(disconnected)")
                }
                group.addTask {
                    for await line in Self.standardInputLines() {
                        let text = line.trimmingCharacters(in: .whitespaces)
                        if text == "/exit" || text == "/quit" { break }
                        guard !text.isEmpty else { continue }
                        let (sessionID, payload) = state.value.withLock { s -> (String?, String) in
                            if let n = Int(text), n >= 1, n <= s.buttons.count { return (s.sessionID, s.buttons[n - 1]) }
                            return (s.sessionID, text)
                        }
                        guard let sessionID else {
                            print("(not connected yet)")
                            continue
                        }
                        let event: JSONValue = ["user_uttered", ["message": .string(payload), "session_id": .string(sessionID)]]
                        try await send("42" + event.serialized)
                    }
                    try await outbound.write(WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: ByteBuffer(bytes: [0x03, 0xE8])))
                }
                try await group.next()
                group.cancelAll()
            }
        }
    }

    /// The terminal's lines. `readLine` blocks, so it runs on a thread of its own (never on a Swift concurrency
    /// thread, whose pool is as small as the CPU count); the thread ends at end of input or with the process.
    static func standardInputLines() -> AsyncStream<String> {
        let (lines, continuation) = AsyncStream.makeStream(of: String.self)
        let reader = Thread {
            while let line = readLine(strippingNewline: true) { continuation.yield(line) }
            continuation.finish()
        }
        reader.start()
        return lines
    }

    /// One Socket.IO packet (the Engine.IO `4` stripped).
    private func handleSocketIO(
        _ packet: String, state: ShellStateBox, session: String?, send: @Sendable (String) async throws -> Void
    ) async throws {
        if packet.hasPrefix("0") {
            let request: JSONValue = ["session_request", ["session_id": session.map { .string($0) } ?? .null]]
            try await send("42" + request.serialized)
            return
        }
        if packet.hasPrefix("4") {
            print("(connection refused: \(packet.dropFirst()))")
            return
        }
        guard packet.hasPrefix("2"), let event = try? JSONValue.parse(String(packet.dropFirst())), case .array(let items) = event,
            case .string(let name)? = items.first
        else { return }
        let argument = items.dropFirst().first ?? .null
        switch name {
        case "session_confirm":
            let id = argument.stringValue ?? argument.serialized
            state.value.withLock { $0.sessionID = id }
            print("Your session: \(id). Type a message (/restart, /exit).")
        case "bot_uttered":
            // Remember the buttons before showing them: a person may type a number as soon as it appears.
            let buttons = Self.choices(of: argument).map(\.payload)
            if !buttons.isEmpty { state.value.withLock { $0.buttons = buttons } }
            Self.render(argument)
        case "parley_error":
            print("(refused: \(argument["message"]?.stringValue ?? argument.serialized))")
        default:
            break
        }
    }

    /// The buttons or quick replies of a bot message, in the order they are numbered (from 1).
    static func choices(of message: JSONValue) -> [(title: String, payload: String)] {
        var out: [(title: String, payload: String)] = []
        for key in ["quick_replies", "buttons"] {
            guard case .array(let buttons)? = message[key] else { continue }
            for button in buttons {
                let title = button["title"]?.stringValue ?? "?"
                out.append((title, button["payload"]?.stringValue ?? title))
            }
        }
        return out
    }

    /// Prints a bot message, its buttons or quick replies numbered from 1.
    static func render(_ message: JSONValue) {
        if let text = message["text"]?.stringValue { print("Bot: \(text)") }
        if let image = message["attachment"]?["payload"]?["src"]?.stringValue ?? message["image"]?.stringValue { print("Bot: [image] \(image)") }
        if message["text"] == nil, message["quick_replies"] == nil, message["attachment"] == nil, !message.isNull {
            print("Bot: \(message.serialized)")
        }
        for (number, choice) in choices(of: message).enumerated() {
            print("  \(number + 1): \(choice.title)")
        }
    }

    /// Prints the stored messages of `session` (best effort: a server without the API says why).
    private func printHistory(host: String, port: Int, session: String) async {
        let path = "/conversations/\(session.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? session)/messages"
        do {
            let (status, body) = try await Self.httpGet(host: host, port: port, path: path, bearer: apiToken)
            guard status == 200, let json = try? JSONValue.parse(body), case .array(let messages) = json["messages"] ?? json else {
                print("(no history: GET \(path) answered \(status)\(status == 401 || status == 403 ? "; pass --api-token" : ""))")
                return
            }
            print("History of \(session):")
            for m in messages {
                let who = m["sender"]?.stringValue == "user" || m["event"]?.stringValue == "user" ? "You" : "Bot"
                print("  \(who): \(m["text"]?.stringValue ?? m.serialized)")
            }
        } catch {
            print("(no history: \(error))")
        }
    }

    // MARK: - Connections (NIO's HTTP/1.1 and WebSocket client)

    enum Upgrade: Sendable {
        case webSocket(NIOAsyncChannel<WebSocketFrame, WebSocketFrame>)
        case refused
    }

    static func connectWebSocket(host: String, port: Int, path: String) async throws -> NIOAsyncChannel<WebSocketFrame, WebSocketFrame> {
        let upgrade: EventLoopFuture<Upgrade> = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let upgrader = NIOTypedWebSocketClientUpgrader<Upgrade>(
                        upgradePipelineHandler: { channel, _ in
                            channel.eventLoop.makeCompletedFuture {
                                .webSocket(try NIOAsyncChannel<WebSocketFrame, WebSocketFrame>(wrappingChannelSynchronously: channel))
                            }
                        })
                    var headers = HTTPHeaders()
                    headers.add(name: "Host", value: "\(host):\(port)")
                    let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers)
                    let configuration = NIOTypedHTTPClientUpgradeConfiguration<Upgrade>(
                        upgradeRequestHead: head, upgraders: [upgrader],
                        notUpgradingCompletionHandler: { channel in channel.eventLoop.makeCompletedFuture { .refused } })
                    // The server's first frame (the Engine.IO open packet) often arrives in the same read as the
                    // 101 response; NIO drops such bytes unless told to forward them to the WebSocket decoder.
                    var pipeline = NIOUpgradableHTTPClientPipelineConfiguration(upgradeConfiguration: configuration)
                    pipeline.leftOverBytesStrategy = .forwardBytes
                    return try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(configuration: pipeline)
                }
            }
        guard case .webSocket(let socket) = try await upgrade.get() else {
            throw ShellError("the server refused the WebSocket upgrade at \(path)")
        }
        return socket
    }

    static func httpGet(host: String, port: Int, path: String, bearer: String?, method: HTTPMethod = .GET) async throws -> (Int, [UInt8]) {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            var headers: HTTPHeaders = ["Host": "\(host):\(port)", "Connection": "close"]
            if let bearer { headers.add(name: "Authorization", value: "Bearer \(bearer)") }
            if method == .POST { headers.add(name: "Content-Length", value: "0") }
            try await outbound.write(.head(HTTPRequestHead(version: .http1_1, method: method, uri: path, headers: headers)))
            try await outbound.write(.end(nil))
            var status = 0
            var body: [UInt8] = []
            for try await part in inbound {
                switch part {
                case .head(let head): status = Int(head.status.code)
                case .body(let buffer): body += Array(buffer.readableBytesView)
                case .end: return (status, body)
                }
            }
            return (status, body)
        }
    }
}

/// The shell's state, shared by the task reading the terminal and the task reading the socket.
final class ShellStateBox: Sendable {
    let value = Mutex(ShellState())
}

/// What the shell remembers between the reader and the printer.
struct ShellState: Sendable {
    var sessionID: String?
    /// Payloads of the latest message's buttons, in the order they were numbered.
    var buttons: [String] = []
}

/// A shell failure with what to do about it.
struct ShellError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
