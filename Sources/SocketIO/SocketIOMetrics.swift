import CoreMetrics
import Metrics

/// Socket.IO's metrics (swift-metrics), created on first use.
enum SocketIOMetrics {
    private static let protocolErrors = Counter(label: "parley_socketio_protocol_errors_total")

    static func protocolError() { protocolErrors.increment() }
}
