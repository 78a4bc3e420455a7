import CoreMetrics
import Metrics
import Synchronization

/// The channels' metrics (swift-metrics), created on first use.
enum ChannelMetrics {
    private static let sockets = Meter(label: "parley_socketio_connected_sockets")
    private static let userMessages = Counter(label: "parley_user_messages_total", dimensions: [("channel", "socketio")])
    /// One counter per refusal code, made on the first refusal with that code.
    private static let refusals = Mutex<[String: Counter]>([:])

    static func socketConnected() { sockets.increment() }
    static func socketDisconnected() { sockets.decrement() }
    static func userMessage() { userMessages.increment() }
    /// A refused message (`parley_refusals_total{code}`), for every channel.
    static func refused(code: String) {
        let counter = refusals.withLock { all in
            if let c = all[code] { return c }
            let c = Counter(label: "parley_refusals_total", dimensions: [("code", code)])
            all[code] = c
            return c
        }
        counter.increment()
    }
}
