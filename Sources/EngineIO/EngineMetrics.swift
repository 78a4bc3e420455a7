import CoreMetrics
import Metrics

/// Engine.IO's metrics (swift-metrics; exported at `GET /metrics` when the executable bootstraps a backend).
/// The metric objects are created on first use, after the backend is bootstrapped; a call is one atomic update.
enum EngineMetrics {
    private static let pollingSessions = Meter(label: "parley_engineio_sessions", dimensions: [("transport", "polling")])
    private static let webSocketSessions = Meter(label: "parley_engineio_sessions", dimensions: [("transport", "websocket")])
    private static let messagesIn = Counter(label: "parley_engineio_messages_received_total")
    private static let messagesOut = Counter(label: "parley_engineio_messages_sent_total")
    private static let protocolErrors = Counter(label: "parley_engineio_protocol_errors_total")
    private static let connectionRefusals = Counter(label: "parley_http_connection_refusals_total")

    static func sessionOpened(webSocket: Bool) { (webSocket ? webSocketSessions : pollingSessions).increment() }
    static func sessionClosed(webSocket: Bool) { (webSocket ? webSocketSessions : pollingSessions).decrement() }
    static func sessionUpgraded() {
        pollingSessions.decrement()
        webSocketSessions.increment()
    }
    static func received() { messagesIn.increment() }
    static func sent(_ count: Int) { messagesOut.increment(by: Int64(count)) }
    static func protocolError() { protocolErrors.increment() }
    static func connectionRefused() { connectionRefusals.increment() }
}
