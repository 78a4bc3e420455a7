/// Which load pattern to run.
public enum LoadScenario: String, Sendable, CaseIterable {
    /// `C` clients in a closed loop (one message outstanding each) for a fixed time: throughput and latency.
    case rtt
    /// `N` whole sessions (connect, handshake, session, one turn, close) with at most `K` in flight.
    case connect
    /// `N` sessions held open (pings answered) so the server's memory per idle session can be read.
    case idle
}

/// What the generator speaks on top of WebSocket.
public enum LoadProtocol: String, Sendable, CaseIterable {
    /// Engine.IO v4 + Socket.IO v5 + the Rasa socketio channel events.
    case sio
    /// Plain WebSocket text frames, echoed back byte for byte (transport-limit servers).
    case raw
}

/// Everything a load test run needs. Every field has a default; a run always ends by itself
/// (establishment timeout + warm-up + duration + drain, each bounded).
public struct LoadTestOptions: Sendable, Equatable {
    /// The pattern to run.
    public var scenario: LoadScenario = .rtt
    /// Socket.IO (default) or raw WebSocket echo.
    public var proto: LoadProtocol = .sio
    /// Server host (an IP address or a name resolved once).
    public var host: String = "127.0.0.1"
    /// Server port.
    public var port: Int = 5005
    /// Request path. For `sio`, `?EIO=4&transport=websocket` is appended unless it has a query already.
    /// Defaults to `/socket.io/` (`sio`) or `/` (`raw`).
    public var path: String?
    /// Concurrent clients for `rtt`.
    public var clients: Int = 100
    /// Sessions for `connect` and `idle`.
    public var sessions: Int = 1000
    /// At most this many sessions being opened at once.
    public var inFlight: Int = 100
    /// Measured seconds (`rtt`) or hold time (`idle`).
    public var duration: Double = 10
    /// Warm-up seconds before measuring (`rtt`).
    public var warmup: Double = 2
    /// Seconds a reply may take before it counts as a `timeout` error.
    public var replyTimeout: Double = 10
    /// Seconds all sessions may take to open before the rest count as errors.
    public var establishTimeout: Double = 60
    /// Minimum message text size in bytes (padding added); raw frames default to 64.
    public var messageSize: Int?
    /// Stop after this many round trips in the measured window (0 = no cap).
    public var maxMessages: Int = 0
    /// Server process id: enables server CPU and RSS (`idle`: bytes per session) readings.
    public var serverPID: Int32?
    /// Event names of the Rasa socketio channel.
    public var requestEvent = "session_request"
    /// Event the server confirms a session with (argument: the id, or `{"session_id": id}`).
    public var confirmEvent = "session_confirm"
    /// Event carrying the user's message.
    public var userEvent = "user_uttered"
    /// Event carrying the bot's reply (`{"text": ...}`).
    public var botEvent = "bot_uttered"
    /// Event-loop threads of the generator (1 is right when it is pinned to one CPU).
    public var threads: Int = 1
    /// Print a progress line to stderr once a second (only used when stderr is a terminal).
    public var progress: Bool = true

    /// Defaults everywhere.
    public init() {}

    /// The request target actually sent.
    public var requestPath: String {
        switch proto {
        case .raw: return path ?? "/"
        case .sio:
            let p = path ?? "/socket.io/"
            return p.contains("?") ? p : p + "?EIO=4&transport=websocket"
        }
    }

    /// The effective minimum text size.
    public var effectiveMessageSize: Int { messageSize ?? (proto == .raw ? 64 : 0) }

    /// Checks ranges; returns a message naming the flag and the fix.
    public func validate() -> String? {
        if port < 1 || port > 65535 { return "--port \(port): must be 1...65535" }
        if scenario == .rtt && clients < 1 { return "--clients \(clients): must be at least 1" }
        if scenario != .rtt && sessions < 1 { return "--sessions \(sessions): must be at least 1" }
        if inFlight < 1 { return "--in-flight \(inFlight): must be at least 1" }
        if duration <= 0 || duration > 86_400 { return "--duration \(duration): must be > 0 and at most 86400 seconds" }
        if warmup < 0 || warmup > 3600 { return "--warmup \(warmup): must be 0...3600 seconds" }
        if replyTimeout <= 0 || replyTimeout > 600 { return "--timeout \(replyTimeout): must be > 0 and at most 600 seconds" }
        if establishTimeout <= 0 || establishTimeout > 3600 { return "--establish-timeout \(establishTimeout): must be > 0 and at most 3600 seconds" }
        if let s = messageSize, s < 0 || s > 1 << 20 { return "--size \(s): must be 0...1048576 bytes" }
        if threads < 1 || threads > 64 { return "--threads \(threads): must be 1...64" }
        return nil
    }
}
