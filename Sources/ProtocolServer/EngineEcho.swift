import EngineIO
import Logging

/// The server the official Engine.IO test suite expects at `/engine.io/`: every message is echoed back.
/// Settings from the suite's README: pingInterval 300 ms, pingTimeout 200 ms, maxPayload 1e6, CORS `*`.
enum EngineEcho {
    /// The suite's Engine.IO configuration.
    static let configuration = EngineIOConfiguration(
        path: "/engine.io/",
        pingInterval: .milliseconds(300),
        pingTimeout: .milliseconds(200),
        maxPayload: 1_000_000,
        cors: .anyOrigin
    )

    /// Builds the echo server. `pingInterval` / `pingTimeout` override the suite's values (for idle-memory
    /// measurements with slow clients only; the suite needs 300 / 200 ms).
    /// `perMessageDeflate` enables WebSocket compression (TEST-ONLY flag `--per-message-deflate`; off by default,
    /// as the suite expects).
    static func makeServer(
        logger: Logger,
        pingInterval: Duration? = nil,
        pingTimeout: Duration? = nil,
        perMessageDeflate: PerMessageDeflate? = nil
    ) -> EngineIOServer {
        var configuration = configuration
        configuration.perMessageDeflate = perMessageDeflate
        if let pingInterval { configuration.pingInterval = pingInterval }
        if let pingTimeout { configuration.pingTimeout = pingTimeout }
        return EngineIOServer(configuration: configuration, delegate: EchoServerDelegate(), logger: logger)
    }
}

/// Opens every session with the echo delegate.
struct EchoServerDelegate: EngineServerDelegate {
    func engineServer(didOpen connection: any EngineConnection) -> any EngineConnectionDelegate {
        EchoConnectionDelegate.shared
    }
}

/// Sends every received message back on the same session.
final class EchoConnectionDelegate: EngineConnectionDelegate {
    static let shared = EchoConnectionDelegate()

    func engineConnection(_ connection: any EngineConnection, didReceive message: EngineMessage) {
        connection.send([message])
    }

    func engineConnection(_ connection: any EngineConnection, didCloseWith reason: EngineCloseReason) {}
}
