import EngineIO
import Logging
import ParleyJSON
import SocketIO

/// The server the official Socket.IO test suite expects at `/socket.io/` (see its README and
/// ../shared/spec/socketio-protocol.md): pingInterval 300 ms, pingTimeout 200 ms, maxPayload 1e6,
/// connectTimeout 1000 ms, CORS `*`; on connection emit `auth` with the auth payload; `message` is
/// echoed as `message-back`; `message-with-ack` is acknowledged with its arguments; namespace `/custom`
/// behaves the same.
///
/// TEST-ONLY: the namespace `/parley-test` adds handlers for Parley's own black-box tests
/// (Tests/python/test_socketio_*.py): rooms, server-to-client acks, server-side disconnect. The
/// official suite never connects to it.
enum SocketIOConformance {
    /// The suite's Engine.IO settings.
    static let engineConfiguration = EngineIOConfiguration(
        path: "/socket.io/",
        pingInterval: .milliseconds(300),
        pingTimeout: .milliseconds(200),
        maxPayload: 1_000_000,
        cors: .anyOrigin
    )

    /// Builds the Engine.IO server whose sessions speak Socket.IO.
    /// `perMessageDeflate`: WebSocket compression (TEST-ONLY flag `--per-message-deflate`; default off).
    static func makeEngine(logger: Logger, perMessageDeflate: PerMessageDeflate? = nil) -> EngineIOServer {
        let io = makeSocketIOServer(logger: logger)
        var configuration = engineConfiguration
        configuration.perMessageDeflate = perMessageDeflate
        return EngineIOServer(configuration: configuration, delegate: io, logger: logger)
    }

    /// The Socket.IO layer with the suite's handlers (and the test-only namespace).
    static func makeSocketIOServer(logger: Logger) -> SocketIOServer {
        // connectReplyDelay: the suite's raw `ws` client reads one frame per `await` and drops a frame that
        // arrives in the same read as the CONNECT reply (see SocketIOConfiguration.connectReplyDelay).
        let configuration = SocketIOConfiguration(connectTimeout: .milliseconds(1000), connectReplyDelay: .milliseconds(5))
        let io = SocketIOServer(configuration: configuration, logger: logger)
        installSuiteHandlers(on: io.mainNamespace)
        installSuiteHandlers(on: io.of("/custom"))
        installParleyTestHandlers(on: io.of("/parley-test"))
        return io
    }

    static func installSuiteHandlers(on namespace: SocketIONamespace) {
        namespace.onConnection { socket in
            socket.emit("auth", .json(socket.auth ?? .object([:])))
            socket.on("message") { socket, event in
                socket.emit("message-back", arguments: event.arguments)
            }
            socket.on("message-with-ack") { _, event in
                event.ack?.send(arguments: event.arguments)
            }
        }
    }

    // MARK: TEST-ONLY handlers for Tests/python (namespace /parley-test)

    static func installParleyTestHandlers(on namespace: SocketIONamespace) {
        namespace.use { socket in
            // Refuse when the client asks to be refused, to test CONNECT_ERROR with data.
            if socket.auth?["refuse"] == .bool(true) {
                return .refuse(message: "refused by test", data: ["reason": "asked"])
            }
            return .accept
        }
        namespace.onConnection { socket in
            socket.on("echo") { socket, event in
                socket.emit("echo-back", arguments: event.arguments)
            }
            // ["join", room] -> ack(rooms)
            socket.on("join") { socket, event in
                if let room = event.arguments.first?.jsonValue?.stringValue { socket.join(room) }
                event.ack?.send(.json(.array(socket.rooms.sorted().map { .string($0) })))
            }
            socket.on("leave") { socket, event in
                if let room = event.arguments.first?.jsonValue?.stringValue { socket.leave(room) }
                event.ack?.send(.json(.array(socket.rooms.sorted().map { .string($0) })))
            }
            // ["to-room", room, args...] -> every socket in room (sender included) gets ["room-message", args...]
            socket.on("to-room") { socket, event in
                guard let room = event.arguments.first?.jsonValue?.stringValue else { return }
                socket.namespace.to(room).emit("room-message", arguments: Array(event.arguments.dropFirst()))
                event.ack?.send()
            }
            // ["to-others", room, args...] -> the room without the sender
            socket.on("to-others") { socket, event in
                guard let room = event.arguments.first?.jsonValue?.stringValue else { return }
                socket.to(room).emit("room-message", arguments: Array(event.arguments.dropFirst()))
                event.ack?.send()
            }
            // ["ask", args...] -> the server emits "question" with args and an ack; the client's answer
            // comes back as ["answer", answer...] (or ["answer-error", description]).
            socket.on("ask") { socket, event in
                socket.emit("question", arguments: event.arguments, timeout: .seconds(10)) { result in
                    switch result {
                    case .success(let answer): socket.emit("answer", arguments: answer)
                    case .failure(let error): socket.emit("answer-error", .json(.string(error.description)))
                    }
                }
            }
            socket.on("disconnect-me") { socket, _ in socket.disconnect() }
        }
    }
}
