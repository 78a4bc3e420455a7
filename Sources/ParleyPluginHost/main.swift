// parley-plugin-host: loads ONE plugin (an agent) with the in-process loader and serves the calls Parley frames
// over stdin/stdout (ParleyPlugins.IsolationFrame). Started by the server for `isolation: process`; a crash here
// costs the server only the calls in flight. Log lines (the plugin's own and the loader's) go to stderr, which the
// server relays to its log and keeps for crash reports.
import Foundation
import Logging
import ParleyCore
import ParleyDispatch
import ParleyJSON
import ParleyPlugins
import ParleyWorkers
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

struct Options {
    var plugin = ""
    var name: String?
    var deadline = Duration.seconds(10)
    var config: JSONValue = .object([:])
    var threadSafe: Bool?
    var limits: [(Int32, Int)] = []

    init(_ arguments: [String]) {
        var i = 1
        func value() -> String {
            i += 1
            return i < arguments.count ? arguments[i] : ""
        }
        while i < arguments.count {
            switch arguments[i] {
            case "--plugin": plugin = value()
            case "--name": name = value()
            case "--deadline-ms": deadline = .milliseconds(Int64(value()) ?? 10_000)
            case "--config": config = (try? JSONValue.parse(value())) ?? .object([:])
            case "--thread-safe": threadSafe = value() == "true"
            case "--limit-as": limits.append((Int32(RLIMIT_AS.rawValue), Int(value()) ?? 0))
            case "--limit-cpu": limits.append((Int32(RLIMIT_CPU.rawValue), Int(value()) ?? 0))
            case "--limit-files": limits.append((Int32(RLIMIT_NOFILE.rawValue), Int(value()) ?? 0))
            default: break
            }
            i += 1
        }
    }
}

let options = Options(CommandLine.arguments)
LoggingSystem.bootstrap { label in
    var handler = StreamLogHandler.standardError(label: label)
    handler.logLevel = .info
    return handler
}
signal(SIGPIPE, SIG_IGN)
for (resource, value) in options.limits where value > 0 {
    var limit = rlimit(rlim_cur: rlim_t(value), rlim_max: rlim_t(value))
    #if canImport(Glibc)
    setrlimit(__rlimit_resource_t(UInt32(resource)), &limit)
    #endif
}

let out = Mutex<Void>(())
func send(_ type: UInt8, _ id: UInt64, _ body: [UInt8]) {
    let frame = IsolationFrame.encode(type: type, id: id, body: body)
    out.withLock { _ in _ = writeAll(STDOUT_FILENO, frame) }
}

/// Frames from stdin, read on a thread of their own (blocking reads); the stream ends at end of file.
let (frames, framesIn) = AsyncStream.makeStream(of: (UInt8, UInt64, ArraySlice<UInt8>).self)
Thread.detachNewThread {
    var reader = IsolationFrameReader(fd: STDIN_FILENO)
    while let frame = reader.next() { framesIn.yield((frame.type, frame.id, frame.body)) }
    framesIn.finish()
}

let pool = WorkerPool(threads: max(2, ProcessInfo.processInfo.activeProcessorCount))
var hostConfiguration = PluginHostConfiguration(defaultDeadline: options.deadline)
hostConfiguration.tracksRunningHandles = true
let host = PluginHost(pool: pool, configuration: hostConfiguration, logger: Logger(label: "parley.plugin-host"))
let agent: PluginAgent
do {
    agent = try await host.loadAgent(
        PluginConfiguration(
            path: options.plugin, kind: .agent, name: options.name, deadline: options.deadline, config: options.config, threadSafe: options.threadSafe))
} catch {
    send(IsolationFrame.loadFailed, 0, Array("\(error)".utf8))
    exit(2)
}
let info: JSONValue = [
    "name": .string(agent.plugin.name), "version": .string(agent.plugin.version),
    "thread_safe": .bool(agent.plugin.isThreadSafe),
]
send(IsolationFrame.ready, 0, Array(info.serialized.utf8))

/// A handle() still running this long after the call's deadline is hung: the host exits, so that Parley restarts
/// it (the thread cannot be taken back from the plugin any other way). Parley reports the exit with these lines.
let hangLimit = options.deadline + .seconds(2)

await withDiscardingTaskGroup { group in
    group.addTask {
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(250))
            if let running = agent.plugin.longestRunningHandle, running > hangLimit {
                FileHandle.standardError.write(
                    Data(
                        "parley-plugin-host: plugin \(agent.plugin.name): handle() has not returned for \(running) (deadline \(options.deadline)); exiting so Parley restarts this host\n"
                            .utf8))
                exit(70)
            }
        }
    }
    group.addTask {
        await host.run { emitted in
            var message: JSONObject = ["sender": .string(emitted.senderID), "responses": .array(emitted.responses)]
            if let channel = emitted.channel { message["channel"] = .string(channel) }
            send(IsolationFrame.emit, 0, Array(JSONValue.object(message).serialized.utf8))
        }
    }
    for await (type, id, body) in frames {
        guard type == IsolationFrame.call else { break }
        guard let (sender, request) = IsolationFrame.splitCall(body) else { continue }
        group.addTask {
            do {
                let reply = try await agent.plugin.call(
                    senderID: sender,
                    stream: { text in
                        send(IsolationFrame.stream, id, Array(text.utf8))
                        return true
                    },
                    encode: { $0 = request })
                var bytes: [UInt8] = []
                reply.serialize(into: &bytes)
                send(IsolationFrame.reply, id, bytes)
            } catch {
                send(IsolationFrame.failed, id, Array("\(error)".dropFirst("plugin \(agent.plugin.name): ".count).utf8))
            }
        }
    }
    // Parley closed our stdin or asked us to stop: finish what runs (bounded by the host's drain deadline).
    await host.shutdown()
    group.cancelAll()
}
exit(0)
