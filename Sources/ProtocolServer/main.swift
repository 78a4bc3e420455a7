// parley-protocol-server: the conformance server for the official Engine.IO and Socket.IO test suites.
//   swift run parley-protocol-server --port 3000
//   SERVER_URL=http://127.0.0.1:3000 bash ../shared/protocol/run.sh engine   (or: socket, all)
import ArgumentParser
import EngineIO
import Hummingbird
import Logging

struct ProtocolServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parley-protocol-server",
        abstract: "Serves the Engine.IO echo server (/engine.io/) and the Socket.IO test server (/socket.io/)."
    )

    @Option(help: "Address to bind.") var host = "127.0.0.1"
    @Option(help: "Port to listen on.") var port = 3000
    @Option(help: "Log level (trace, debug, info, notice, warning, error).") var logLevel = "info"
    @Option(help: "Override the echo server's ping interval in ms (measurements only; the suite needs 300).")
    var echoPingIntervalMs: Int?
    // TEST-ONLY (Tests/python/test_websocket_deflate.py): the official suites run without it.
    @Flag(help: "Offer WebSocket permessage-deflate (threshold 1024 bytes) on both endpoints (default off).")
    var perMessageDeflate = false

    func run() async throws {
        var logger = Logger(label: "parley-protocol-server")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info

        var engines: [EngineIOServer] = []
        // Engine.IO suite: raw echo server at /engine.io/ (Sources/ProtocolServer/EngineEcho.swift).
        engines.append(
            EngineEcho.makeServer(
                logger: logger,
                pingInterval: echoPingIntervalMs.map { .milliseconds($0) },
                pingTimeout: echoPingIntervalMs.map { .milliseconds($0) },
                perMessageDeflate: perMessageDeflate ? PerMessageDeflate() : nil
            )
        )

        // MARK: Socket.IO suite mount point
        // Socket.IO suite: /socket.io/ (Sources/ProtocolServer/SocketIOSuite.swift), an EngineIOServer whose
        // delegate is the Socket.IO layer.
        engines.append(SocketIOConformance.makeEngine(logger: logger, perMessageDeflate: perMessageDeflate ? PerMessageDeflate() : nil))

        let app = Application(
            router: Router(),
            server: .engineIO(engines),
            configuration: .init(address: .hostname(host, port: port), serverName: "parley-protocol-server"),
            services: engines,
            logger: logger
        )
        try await app.runService()
    }
}

// Top-level code: parse, then run the async command (ArgumentParser's static `main()` would pick the
// synchronous entry point here).
let command = ProtocolServerCommand.parseOrExit()
do {
    try await command.run()
} catch {
    ProtocolServerCommand.exit(withError: error)
}
