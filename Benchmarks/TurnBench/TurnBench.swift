// parley-turns: runs turns through the dispatcher with an in-process echo agent.
//
//   parley-turns serve [--db PATH] [--durability full|normal]
//       Reads commands on stdin, one per line, and answers each on stdout after the turn is durable:
//         say <sender> <text>   ->  ok <sender> <responses JSON>     (or: error <sender> <message>)
//         history <sender>      ->  history <messages JSON>           (GET /conversations/{id}/messages)
//         tracker <sender>      ->  tracker <tracker JSON>
//       The agent echoes the text and counts the conversation's turns in the slot "turns", so a test can
//       kill -9 it between turns, start it again on the same file and check that nothing was lost.
//   parley-turns bench [--store memory|sqlite] [--db PATH] [--durability full|normal]
//                      [--conversations 100] [--turns 200000] [--window 1]
//       Cost of a turn through the dispatcher: `conversations` × `window` clients each send turns in a loop.
//   parley-turns store-bench [--db PATH] [--durability full|normal] [--writers 100] [--events 400000] [--per-append 4]
//                            [--index-batch 32768] [--wal-pages 4096]
//       Store throughput: `writers` concurrent appenders (each its own conversation) of `per-append` events each,
//       and the bytes written per event and per append (/proc/self/io). `index-batch` and `wal-pages` override
//       SQLiteStoreConfiguration.indexBatchEvents and walAutocheckpointPages.
import ParleyCore
import ParleyDispatch
import ParleyJSON
@_spi(Testing) import ParleyStore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Echoes the text; with `counting`, also sets the slot "turns" to the previous value + 1.
struct EchoAgent: Agent {
    let name = "echo"
    let counting: Bool

    func respond(to request: AgentRequest) async throws -> AgentReply {
        let response: JSONValue = ["text": .string("echo: " + request.message.text)]
        guard counting else { return AgentReply(responses: [response]) }
        let previous = request.payload["tracker"]?["slots"]?["turns"]?.int64Value ?? 0
        return AgentReply(
            events: [["event": "slot", "name": "turns", "value": .int(previous + 1)]],
            responses: [["text": .string("echo: \(request.message.text) (turn \(previous + 1))")]])
    }
}

struct Options {
    var values: [String: String] = [:]
    init(_ args: ArraySlice<String>) {
        var i = args.startIndex
        while i < args.endIndex {
            let key = args[i]
            if key.hasPrefix("--"), i + 1 < args.endIndex {
                values[String(key.dropFirst(2))] = args[i + 1]
                i += 2
            } else {
                i += 1
            }
        }
    }
    func string(_ key: String, _ fallback: String) -> String { values[key] ?? fallback }
    func int(_ key: String, _ fallback: Int) -> Int { values[key].flatMap { Int($0) } ?? fallback }
}

func say(_ line: String) {
    print(line)
    fflush(nil)
}

func fail(_ message: String) -> Never {
    let bytes = Array("parley-turns: \(message)\n".utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    exit(2)
}

func openSQLite(_ options: Options, defaultPath: String) -> SQLiteConversationStore {
    let durability: SQLiteStoreConfiguration.Durability = options.string("durability", "full") == "normal" ? .normal : .full
    do {
        return try SQLiteConversationStore(configuration: .init(path: options.string("db", defaultPath), durability: durability))
    } catch {
        fail("\(error)")
    }
}

/// CPU time (user + system) of this process in seconds: unlike wall time, it does not grow when other
/// processes compete for the cores.
func cpuSeconds() -> Double {
    var usage = rusage()
    #if canImport(Glibc)
    getrusage(RUSAGE_SELF.rawValue, &usage)
    #else
    getrusage(RUSAGE_SELF, &usage)
    #endif
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

/// `write_bytes` (bytes this process sent to the storage layer) and `wchar` (bytes passed to write(2)) from
/// `/proc/self/io`; zeros where the file does not exist (macOS).
func ioCounters() -> (writeBytes: Int, wchar: Int) {
    guard let file = fopen("/proc/self/io", "r") else { return (0, 0) }
    defer { fclose(file) }
    var writeBytes = 0
    var wchar = 0
    var line = [CChar](repeating: 0, count: 256)
    while fgets(&line, Int32(line.count), file) != nil {
        let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let parts = text.split(separator: ":")
        guard parts.count == 2, let value = Int(parts[1].trimmingCharacters(in: " \n")) else { continue }
        if parts[0] == "write_bytes" { writeBytes = value }
        if parts[0] == "wchar" { wchar = value }
    }
    return (writeBytes, wchar)
}

extension Substring {
    func trimmingCharacters(in set: String) -> Substring {
        var s = self
        while let c = s.first, set.contains(c) { s = s.dropFirst() }
        while let c = s.last, set.contains(c) { s = s.dropLast() }
        return s
    }
}

func fileSize(_ path: String) -> Int {
    var st = stat()
    return stat(path, &st) == 0 ? Int(st.st_size) : 0
}

func seconds(_ d: Duration) -> Double {
    Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

@main
struct TurnBench {
    static func main() async throws {
        let args = CommandLine.arguments
        guard args.count >= 2 else { fail("usage: parley-turns serve|bench|store-bench [options] (see Benchmarks/TurnBench/TurnBench.swift)") }
        let options = Options(args.dropFirst(2))
        switch args[1] {
        case "serve": try await serve(options)
        case "bench": try await bench(options)
        case "store-bench": try await storeBench(options)
        default: fail("unknown command \(args[1]); use serve, bench or store-bench")
        }
    }

    static func serve(_ options: Options) async throws {
        let store = openSQLite(options, defaultPath: "parley.db")
        let dispatcher = Dispatcher(agent: EchoAgent(counting: true), store: store)
        let api = ConversationAPI(store: store)
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await dispatcher.run() }
            say("ready")
            while let line = readLine() {
                let parts = line.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
                switch parts.first {
                case "say" where parts.count == 3:
                    do {
                        let result = try await dispatcher.handle(UserMessage(text: parts[2], senderID: parts[1], inputChannel: "rest"))
                        say("ok \(parts[1]) \(JSONValue.array(result.responses).serialized)")
                    } catch {
                        say("error \(parts[1]) \(error)")
                    }
                case "history" where parts.count >= 2:
                    do { say("history \(try await api.messages(conversationID: parts[1]).serialized)") } catch { say("error \(parts[1]) \(error)") }
                case "tracker" where parts.count >= 2:
                    do { say("tracker \(try await api.tracker(conversationID: parts[1]).serialized)") } catch { say("error \(parts[1]) \(error)") }
                default:
                    say("error - unknown command: \(line)")
                }
            }
            dispatcher.shutdown()
        }
    }

    static func bench(_ options: Options) async throws {
        let conversations = max(1, options.int("conversations", 100))
        let window = max(1, options.int("window", 1))
        let turns = max(1, options.int("turns", 200_000))
        let storeName = options.string("store", "memory")
        let store: any ConversationStore
        var dbPath: String?
        if storeName == "sqlite" {
            let path = options.string("db", "/tmp/parley-turns-bench-\(getpid()).db")
            for suffix in ["", "-wal", "-shm"] { unlink(path + suffix) }
            store = openSQLite(Options(["--db", path, "--durability", options.string("durability", "full")]), defaultPath: path)
            dbPath = path
        } else {
            store = InMemoryConversationStore()
        }
        let dispatcher = Dispatcher(
            agent: EchoAgent(counting: false), store: store,
            configuration: .init(mailboxCapacity: window + 1, sessionExpirationMinutes: 0))
        let clients = conversations * window
        let perClient = max(1, turns / clients)
        let clock = ContinuousClock()
        var elapsed = Duration.zero
        var cpu = 0.0
        var ioStart = (writeBytes: 0, wchar: 0)
        var ioEnd = (writeBytes: 0, wchar: 0)
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await dispatcher.run() }
            // Warm up: create every conversation.
            for c in 0..<conversations { _ = try await dispatcher.handle(UserMessage(text: "hi", senderID: "c\(c)", inputChannel: "bench")) }
            let cpuStart = cpuSeconds()
            ioStart = ioCounters()
            defer {
                cpu = cpuSeconds() - cpuStart
                ioEnd = ioCounters()
            }
            elapsed = try await clock.measure {
                try await withThrowingTaskGroup(of: Void.self) { clientsGroup in
                    for k in 0..<clients {
                        clientsGroup.addTask {
                            let sender = "c\(k % conversations)"
                            for i in 0..<perClient {
                                _ = try await dispatcher.handle(
                                    UserMessage(text: "message \(i)", senderID: sender, inputChannel: "bench", messageID: "m", timestamp: 0))
                            }
                        }
                    }
                    try await clientsGroup.waitForAll()
                }
            }
            dispatcher.shutdown()
        }
        let total = perClient * clients
        let s = seconds(elapsed)
        say(
            "bench store=\(storeName)\(storeName == "sqlite" ? " durability=\(options.string("durability", "full"))" : "") conversations=\(conversations) window=\(window) turns=\(total) seconds=\(String(format3(s))) turns_per_s=\(Int(Double(total) / s)) us_per_turn=\(format3(s / Double(total) * 1e6)) cpu_us_per_turn=\(format3(cpu / Double(total) * 1e6)) turns_per_cpu_s=\(Int(Double(total) / cpu))"
        )
        if let dbPath {
            let written = ioEnd.writeBytes - ioStart.writeBytes
            say(
                "bench io write_bytes=\(written) write_bytes_per_turn=\(written / max(1, total)) wchar_per_turn=\((ioEnd.wchar - ioStart.wchar) / max(1, total)) db_bytes=\(fileSize(dbPath)) wal_bytes=\(fileSize(dbPath + "-wal"))"
            )
            for suffix in ["", "-wal", "-shm"] { unlink(dbPath + suffix) }
        }
    }

    static func storeBench(_ options: Options) async throws {
        let writers = max(1, options.int("writers", 100))
        let total = max(1, options.int("events", 400_000))
        let perAppend = max(1, options.int("per-append", 4))
        let path = options.string("db", "/tmp/parley-store-bench-\(getpid()).db")
        for suffix in ["", "-wal", "-shm"] { unlink(path + suffix) }
        let store: SQLiteConversationStore
        do {
            var configuration = SQLiteStoreConfiguration(path: path, durability: options.string("durability", "full") == "normal" ? .normal : .full)
            configuration.indexBatchEvents = options.int("index-batch", configuration.indexBatchEvents)
            configuration.walAutocheckpointPages = options.int("wal-pages", configuration.walAutocheckpointPages)
            store = try SQLiteConversationStore(configuration: configuration)
        } catch {
            fail("\(error)")
        }
        let appendsPerWriter = max(1, total / (writers * perAppend))
        let event: JSONValue = [
            "event": "bot", "timestamp": 1_700_000_000.25, "metadata": [:], "text": "a typical reply of a few words",
            "data": ["elements": nil, "quick_replies": nil, "buttons": nil, "attachment": nil, "image": nil, "custom": nil],
        ]
        let batch = [JSONValue](repeating: event, count: perAppend)
        let ioStart = ioCounters()
        let cpuStart = cpuSeconds()
        let elapsed = try await ContinuousClock().measure {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for w in 0..<writers {
                    group.addTask {
                        for _ in 0..<appendsPerWriter { try await store.append(batch, to: "w\(w)") }
                    }
                }
                try await group.waitForAll()
            }
        }
        let cpu = cpuSeconds() - cpuStart
        let io = ioCounters()
        let events = appendsPerWriter * writers * perAppend
        let appends = events / perAppend
        let s = seconds(elapsed)
        let written = io.writeBytes - ioStart.writeBytes
        let wchar = io.wchar - ioStart.wchar
        say(
            "store-bench durability=\(options.string("durability", "full")) writers=\(writers) per_append=\(perAppend) events=\(events) seconds=\(format3(s)) events_per_s=\(Int(Double(events) / s)) appends_per_s=\(Int(Double(appends) / s)) cpu_us_per_event=\(format3(cpu / Double(events) * 1e6)) appends_per_commit=\(format3(Double(store.commitStatistics.appends) / Double(max(1, store.commitStatistics.commits))))"
        )
        // write_bytes: what reached the storage layer (WAL frames + checkpoints); wchar: every write(2).
        say(
            "store-bench io write_bytes=\(written) write_bytes_per_event=\(written / max(1, events)) write_bytes_per_append=\(written / max(1, appends)) wchar_per_append=\(wchar / max(1, appends)) db_bytes=\(fileSize(path)) wal_bytes=\(fileSize(path + "-wal"))"
        )
        for suffix in ["", "-wal", "-shm"] { unlink(path + suffix) }
    }
}

func format3(_ x: Double) -> String {
    let scaled = (x * 1000).rounded() / 1000
    return "\(scaled)"
}
