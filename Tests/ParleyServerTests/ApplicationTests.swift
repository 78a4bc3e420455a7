import Foundation
import Logging
import ParleyChannels
import ParleyCore
import ParleyDispatch
import ParleyJSON
import ParleyServer
import ParleyTesting
import Synchronization
import Testing

/// The mirror agent built from `Plugins/mirror-c` with its own Makefile (or `$PARLEY_PLUGINS/libmirror.so`).
enum Mirror {
    static let root: String = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
    static let path: Result<String, any Error> = Result {
        if let prebuilt = ProcessInfo.processInfo.environment["PARLEY_PLUGINS"], FileManager.default.fileExists(atPath: prebuilt + "/libmirror.so") {
            return prebuilt + "/libmirror.so"
        }
        let dir = NSTemporaryDirectory() + "parley-server-tests-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["make", "--no-print-directory", "-C", root + "/Plugins/mirror-c", "OUT=" + dir]
        try p.run()
        p.waitUntilExit()
        return dir + "/libmirror.so"
    }
}

let quiet = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

/// Runs `app` while `body` gets the bound port, then stops it (cancellation ends its service group).
func withRunning<T: Sendable>(_ app: ParleyApplication, _ body: @escaping @Sendable (Int) async throws -> T) async throws -> T {
    let (ports, bound) = AsyncStream.makeStream(of: Int.self)
    var service = app
    service.gracefulShutdownSignals = []
    service.onServerRunning = { bound.yield($0) }
    return try await withThrowingTaskGroup(of: T?.self) { [service] group in
        group.addTask {
            try? await service.run()
            return nil
        }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { throw CancellationError() }
        let result = try await body(port)
        group.cancelAll()
        for try await _ in group {}
        return result
    }
}

/// One HTTP/1.1 request on a fresh connection; returns the status and body.
func http(_ method: String, port: Int, path: String, body: String? = nil) throws -> (Int, String) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
    let bytes = Array(body.map(\.utf8) ?? "".utf8)
    var request = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    if body != nil { request += "Content-Type: application/json\r\nContent-Length: \(bytes.count)\r\n" }
    request += "\r\n"
    let all = Array(request.utf8) + bytes
    _ = all.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
    var response: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = recv(fd, &buffer, buffer.count, 0)
        if n <= 0 { break }
        response += buffer[0..<n]
    }
    let text = String(decoding: response, as: UTF8.self)
    let status = Int(text.split(separator: " ").dropFirst().first ?? "") ?? 0
    let payload = text.range(of: "\r\n\r\n").map { String(text[$0.upperBound...]) } ?? ""
    return (status, payload)
}

@Suite struct ApplicationTests {
    /// The whole application in process: the C mirror agent, the memory store, the REST channel and the
    /// conversation API on a free port.
    @Test func buildsAndServesInProcess() async throws {
        var configuration = ParleyServerConfiguration(agents: [AgentConfiguration(name: "mirror", pluginPath: try Mirror.path.get())])
        configuration.server.port = 0
        configuration.store.kind = .memory
        configuration.metrics.enabled = false
        let app = try await buildApplication(configuration, logger: quiet)
        try await withRunning(app) { port in
            let (status, body) = try http("POST", port: port, path: "/webhooks/rest/webhook", body: #"{"sender":"in-process","message":"hello"}"#)
            #expect(status == 200)
            #expect(try JSONValue.parse(body) == [["recipient_id": "in-process", "text": "hello"]])
            let (historyStatus, history) = try http("GET", port: port, path: "/conversations/in-process/messages")
            #expect(historyStatus == 200)
            #expect(history.contains("hello"))
        }
        #expect(try await app.store.events(of: "in-process", types: ["user"])?.count == 1)
    }

    /// A Rasa widget's conversation with the C mirror agent, in process (ParleyTesting's client on the
    /// application's Socket.IO server), recorded in the store.
    @Test func aRasaConversationInProcess() async throws {
        var configuration = ParleyServerConfiguration(agents: [AgentConfiguration(name: "mirror", pluginPath: try Mirror.path.get())])
        configuration.server.port = 0
        configuration.store.kind = .memory
        configuration.channels.socketIO?.sessionPersistence = true
        let app = try await buildApplication(configuration, logger: quiet)
        let io = try #require(app.socketIOServer)
        try await withRunning(app) { _ in
            let client = try await RasaTestClient.connect(to: io)
            #expect(try await client.requestSession("widget-1") == "widget-1")
            client.say("hello there")
            #expect(try await client.botUtterances(1) == [["text": "hello there"]])
            client.say("/buttons")
            let buttons = try await client.botUtterances(1)
            // Rasa's socketio channel sends buttons as quick replies.
            #expect(buttons.first?["quick_replies"]?.arrayValue?.count == 2)
        }
        let users = try await app.store.events(of: "widget-1", types: ["user"]) ?? []
        #expect(users.map { $0["text"]?.stringValue } == ["hello there", "/buttons"])
    }

    @Test func refusesWhatCannotServeWithTheKeyAndTheFix() async throws {
        await #expect {
            _ = try await buildApplication(ParleyServerConfiguration(), logger: quiet)
        } throws: { error in
            (error as? StartupError)?.key == "agents"
        }
        var twoConditions = ParleyServerConfiguration(agents: [
            AgentConfiguration(name: "a", pluginPath: "/nonexistent.so"),
            AgentConfiguration(name: "b", pluginPath: "/nonexistent.so", route: AgentRouteConditions(prefix: "/x", channels: ["rest"])),
        ])
        twoConditions.store.kind = .memory
        await #expect {
            _ = try await buildApplication(twoConditions, logger: quiet)
        } throws: { error in
            "\(error)" == "agents[1].route: give exactly one condition (prefix, one metadata key, or one channel); got 2"
        }
    }
}

@Suite struct ConfigurationRulesTests {
    @Test func aRouteHasExactlyOneCondition() throws {
        #expect(try AgentRouteConditions(prefix: "/faq").rule() == .prefix("/faq"))
        #expect(try AgentRouteConditions(metadata: ["lang": "de"]).rule() == .metadata(key: "lang", value: "de"))
        #expect(try AgentRouteConditions(channels: ["rest"]).rule() == .channel("rest"))
        #expect(throws: RouteError(conditions: 0)) { try AgentRouteConditions().rule() }
        #expect(throws: RouteError(conditions: 2)) { try AgentRouteConditions(channels: ["rest", "socketio"]).rule() }
    }

    @Test func defaultsComeFromTheLibraries() {
        let c = ParleyServerConfiguration()
        #expect(c.dispatcher.turnDeadline == DispatcherConfiguration().turnDeadline)
        #expect(c.channels.socketIO == SocketIOChannelConfiguration())
        #expect(c.server.port == 5005 && c.server.host == "127.0.0.1")
    }
}
