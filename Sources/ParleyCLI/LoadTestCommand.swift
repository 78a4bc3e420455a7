import ArgumentParser
import LoadTest
import ParleyJSON

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension LoadScenario: ExpressibleByArgument {}
extension LoadProtocol: ExpressibleByArgument {}

/// `parley loadtest`: drives a Socket.IO bot server (Parley, Rasa, or anything speaking the Rasa
/// socketio channel) and prints one JSON result line on stdout.
struct LoadTestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loadtest",
        abstract: "Measure a Socket.IO bot server: messages/s and latency, sessions/s, memory per idle session.",
        discussion: """
            Scenarios:
              rtt      C clients chat in a closed loop for D seconds after a warm-up (msgs/s, latency)
              connect  N whole sessions (connect, session, one turn, close), at most K at once (sessions/s)
              idle     N sessions held open for D seconds; with --pid, server RSS bytes per session
            The result is one JSON line on stdout; a progress line goes to stderr when it is a terminal.
            Exit status: 0 without errors, 1 when any request failed, 2 on bad options.
            """)

    @Argument(help: "rtt, connect or idle.")
    var scenario: LoadScenario = .rtt

    @Option(name: [.customShort("H"), .long], help: "Server host.")
    var host = "127.0.0.1"
    @Option(name: .shortAndLong, help: "Server port.")
    var port = 5005
    @Option(name: [.customShort("P"), .long], help: "Path (sio: ?EIO=4&transport=websocket is appended unless a query is given). Default /socket.io/, raw: /.")
    var path: String?
    @Option(help: "sio (Engine.IO + Socket.IO + Rasa events) or raw (WebSocket text echo).")
    var proto: LoadProtocol = .sio
    @Option(name: [.customShort("c"), .long], help: "rtt: concurrent clients.")
    var clients = 100
    @Option(name: [.customShort("n"), .long], help: "connect/idle: sessions.")
    var sessions = 1000
    @Option(name: [.customShort("k"), .customLong("in-flight")], help: "Sessions being opened at once.")
    var inFlight = 100
    @Option(name: [.customShort("d"), .long], help: "rtt: measured seconds; idle: hold seconds.")
    var duration = 10.0
    @Option(name: [.customShort("w"), .long], help: "rtt: warm-up seconds (not recorded).")
    var warmup = 2.0
    @Option(name: [.customShort("t"), .long], help: "Seconds a reply may take before it is a timeout error.")
    var timeout = 10.0
    @Option(name: [.customShort("E"), .customLong("establish-timeout")], help: "Seconds a session may take to open.")
    var establishTimeout = 60.0
    @Option(name: [.customShort("s"), .long], help: "Minimum message size in bytes (padding added; raw default 64).")
    var size: Int?
    @Option(name: .customLong("max-msgs"), help: "rtt: stop after this many measured round trips (0 = no cap).")
    var maxMessages = 0
    @Option(help: "Server PID: report its CPU, and for idle its RSS bytes per session.")
    var pid: Int32?
    @Option(name: .customLong("req-evt"), help: "Session request event.")
    var requestEvent = "session_request"
    @Option(name: .customLong("confirm-evt"), help: "Session confirm event.")
    var confirmEvent = "session_confirm"
    @Option(name: .customLong("user-evt"), help: "User message event.")
    var userEvent = "user_uttered"
    @Option(name: .customLong("bot-evt"), help: "Bot reply event.")
    var botEvent = "bot_uttered"
    @Option(help: "Generator event-loop threads (1 when pinned to one CPU).")
    var threads = 1
    @Flag(help: "Print a one-line human summary to stderr after the JSON line.")
    var summary = false

    func options() -> LoadTestOptions {
        var o = LoadTestOptions()
        o.scenario = scenario
        o.proto = proto
        o.host = host
        o.port = port
        o.path = path
        o.clients = clients
        o.sessions = sessions
        o.inFlight = inFlight
        o.duration = duration
        o.warmup = warmup
        o.replyTimeout = timeout
        o.establishTimeout = establishTimeout
        o.messageSize = size
        o.maxMessages = maxMessages
        o.serverPID = pid
        o.requestEvent = requestEvent
        o.confirmEvent = confirmEvent
        o.userEvent = userEvent
        o.botEvent = botEvent
        o.threads = threads
        return o
    }

    func validate() throws {
        if let problem = options().validate() { throw ValidationError(problem) }
    }

    func run() async throws {
        let tty = isatty(2) != 0
        let progress: (@Sendable (String) -> Void)? = tty ? { @Sendable line in writeStderr("\r\u{1B}[2K" + line) } : nil
        let result: LoadTestResult
        do {
            result = try await LoadGenerator.run(options(), progress: progress)
        } catch let error as LoadTestError {
            if tty { writeStderr("\r\u{1B}[2K") }
            throw ValidationError(error.description)
        }
        if tty { writeStderr("\r\u{1B}[2K") }
        print(result.json.serialized)
        if summary || tty { writeStderr(result.summary + "\n") }
        if result.errors > 0 { throw ExitCode(1) }
    }
}

/// Writes `s` to file descriptor 2 (unbuffered, so the progress line shows at once).
private func writeStderr(_ s: String) {
    let bytes = Array(s.utf8)
    bytes.withUnsafeBytes { raw in
        var offset = 0
        while offset < raw.count {
            let n = write(2, raw.baseAddress! + offset, raw.count - offset)
            if n <= 0 { return }
            offset += n
        }
    }
}
