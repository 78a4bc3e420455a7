import Hummingbird
import Logging
import NIOCore
import ParleyChannels
import ParleyConfig
import ParleyDispatch
import ServiceLifecycle
import UnixSignals

/// The running bot: store, plugins, dispatcher and channels on one Hummingbird server, in one `ServiceGroup`.
///
/// Graceful shutdown (SIGTERM/SIGINT): the HTTP server stops accepting and finishes running requests,
/// the Socket.IO sessions get close packets, the dispatcher finishes running turns (bounded by
/// `server.shutdown_timeout`), then the store is flushed and closed.
struct ParleyServer {
    let configuration: ParleyConfiguration
    let logger: Logger

    func run() async throws {
        if let tls = configuration.server.tls {
            throw StartupError(
                "server.tls (\(tls.certificatePath)): TLS is not built into this Parley; remove server.tls and terminate TLS at a reverse proxy (nginx, Caddy) in front of Parley")
        }
        let runtime = try await Runtime.make(configuration, logger: logger)
        let router = Router()
        router.get("/") { _, _ in "Hello from Parley: \(parleyVersion)" }
        if let rest = configuration.channels.rest {
            RESTChannel(turns: runtime.turns, maxBodySize: rest.maxBodySize).addRoutes(to: router)
        }
        let host = configuration.server.host
        let logger = self.logger
        let app = Application(
            router: router,
            configuration: .init(address: .hostname(host, port: configuration.server.port), serverName: "parley"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? 0
                logger.info("serving", metadata: ["url": "http://\(host):\(port)", "host": "\(host)", "port": "\(port)"])
            },
            logger: logger
        )
        let group = ServiceGroup(
            configuration: .init(
                services: runtime.services + [app],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
        logger.info("stopped")
    }
}

/// Everything behind the channels.
struct Runtime {
    /// What channels hand user messages to.
    var turns: any TurnHandler
    /// Services that start before and stop after the HTTP server (dispatcher drain, store flush).
    var services: [any Service]

    static func make(_ configuration: ParleyConfiguration, logger: Logger) async throws -> Runtime {
        throw StartupError("the dispatcher is not wired into parley serve yet")
    }
}
