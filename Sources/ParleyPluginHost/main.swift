// parley-plugin-host: loads ONE plugin (an agent or a formatter) with the in-process loader and serves the calls
// Parley frames over stdin/stdout (ParleyPlugins.IsolationFrame). Started by the server for `isolation: process`; a
// crash here costs the server only the calls in flight. Log lines (the plugin's own and the loader's) go to stderr,
// which the server relays to its log and keeps for crash reports. With --check it only loads the plugin, reports
// it (`ready` or `loadFailed`), runs its shutdown hook and exits (`parley plugins check --isolated`).
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
    /// nil: either kind (--check).
    var kind: PluginKind? = .agent
    var check = false
    var limits: [(Int32, Int)] = []
    /// `memory_limit_mb` in bytes: resident memory at which the host asks to be replaced.
    var memoryLimit: Int?

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
            case "--kind": kind = PluginKind(rawValue: value())
            case "--check":
                check = true
                kind = nil
            case "--memory-limit": memoryLimit = Int(value())
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
    // CPU time: SIGXCPU at the limit (reported as such), SIGKILL a second later if the plugin catches it.
    let hard = resource == Int32(RLIMIT_CPU.rawValue) ? value + 1 : value
    var limit = rlimit(rlim_cur: rlim_t(value), rlim_max: rlim_t(hard))
    #if canImport(Glibc)
    setrlimit(__rlimit_resource_t(UInt32(resource)), &limit)
    #endif
}

/// Bytes of this process: virtual size and resident set (`/proc/self/statm`, in pages).
func memoryUse() -> (virtual: Int, resident: Int)? {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return nil }
    let fields = text.split(separator: " ").compactMap { Int($0) }
    guard fields.count >= 2 else { return nil }
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    return (fields[0] * page, fields[1] * page)
}

/// Frames to Parley, from any thread (batched while another thread writes).
let out = FrameWriter(fd: STDOUT_FILENO)
func send(_ type: UInt8, _ id: UInt64, _ body: [UInt8]) {
    out.write(IsolationFrame.encode(type: type, id: id, body: body))
}

let pool = WorkerPool(threads: max(2, ProcessInfo.processInfo.activeProcessorCount))
var hostConfiguration = PluginHostConfiguration(defaultDeadline: options.deadline)
hostConfiguration.tracksRunningHandles = true
let host = PluginHost(pool: pool, configuration: hostConfiguration, logger: Logger(label: "parley.plugin-host"))
let plugin: LoadedPlugin
do {
    let configuration = PluginConfiguration(
        path: options.plugin, kind: options.kind ?? .agent, name: options.name, deadline: options.deadline, config: options.config,
        threadSafe: options.threadSafe)
    plugin = options.kind == nil ? try await host.loadAnyKind(configuration) : try await host.load(configuration)
} catch {
    send(IsolationFrame.loadFailed, 0, Array("\(error)".utf8))
    exit(2)
}
let info: JSONValue = [
    "name": .string(plugin.name), "kind": .string(plugin.kind.rawValue), "version": .string(plugin.version),
    "abi": .string("\(plugin.abiMajor).\(plugin.abiMinor)"), "thread_safe": .bool(plugin.isThreadSafe),
    "tracker_events": .bool(plugin.wantsTrackerEvents),
]
// The memory limit (`memory_limit_mb`) is on resident memory: checked after each call, at the limit the host asks
// Parley to replace it between calls (no call is lost); checked by the watchdog below, at 1.5 times the limit
// (a leak within one call) the host exits at once. An address-space limit in the kernel is `address_space_limit_mb`
// (RLIMIT_AS, set above): it makes allocations fail, which not every plugin survives.
let recycleAsked = Atomic<Bool>(false)
func checkMemory() {
    guard let limit = options.memoryLimit, !recycleAsked.load(ordering: .relaxed), let use = memoryUse(), use.resident >= limit else { return }
    guard !recycleAsked.exchange(true, ordering: .relaxed) else { return }
    send(IsolationFrame.recycle, 0, Array("it uses \(use.resident >> 20) MB of its \(limit >> 20) MB memory limit".utf8))
}
send(IsolationFrame.ready, 0, Array(info.serialized.utf8))
if options.check {
    await host.shutdown()
    exit(0)
}

/// Calls read and not answered yet.
let callsInFlight = Atomic<Int>(0)

/// Calls from stdin, read on a thread of their own (blocking reads) and handed to the plugin from it: no task per
/// call and no hop to another thread before the worker pool runs `handle()` (measured: isolated S1 p50 and S2, see
/// docs/plugins.md). Each reply is written by whichever thread completes the call. The stream ends with the input.
let (readerEnded, readerEndedIn) = AsyncStream.makeStream(of: Void.self)
Thread.detachNewThread {
    var reader = IsolationFrameReader(fd: STDIN_FILENO)
    while let frame = reader.next() {
        guard frame.type == IsolationFrame.call else { break }
        guard let (sender, request) = IsolationFrame.splitCall(frame.body) else { continue }
        let id = frame.id
        callsInFlight.add(1, ordering: .relaxed)
        // Only an agent's turn shows streamed text (a formatter's parley_stream gets PARLEY_E_UNSUPPORTED).
        plugin.call(senderID: sender, stream: plugin.kind == .agent ? streamSink(call: id) : nil, request: request) { outcome in
            switch outcome {
            case .success(let reply):
                var bytes: [UInt8] = []
                reply.serialize(into: &bytes)
                send(IsolationFrame.reply, id, bytes)
            case .failure(let error):
                send(IsolationFrame.failed, id, Array("\(error)".dropFirst("plugin \(plugin.name): ".count).utf8))
            }
            checkMemory()
            callsInFlight.subtract(1, ordering: .releasing)
        }
    }
    readerEndedIn.finish()
}

/// Where the plugin's `parley_stream` text for call `id` goes: to Parley, framed.
func streamSink(call id: UInt64) -> @Sendable (String) -> Bool {
    { text in
        send(IsolationFrame.stream, id, Array(text.utf8))
        return true
    }
}

/// A handle() still running this long after the call's deadline is hung: the host exits, so that Parley restarts
/// it (the thread cannot be taken back from the plugin any other way). Parley reports the exit with these lines.
let hangLimit = options.deadline + .seconds(2)

await withDiscardingTaskGroup { group in
    group.addTask {
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(250))
            if let limit = options.memoryLimit, let use = memoryUse(), use.resident >= limit + limit / 2 {
                FileHandle.standardError.write(
                    Data(
                        "parley-plugin-host: plugin \(plugin.name): \(use.resident >> 20) MB resident, past 1.5 times its memory limit of \(limit >> 20) MB; exiting so Parley restarts this host\n"
                            .utf8))
                exit(71)
            }
            if let running = plugin.longestRunningHandle, running > hangLimit {
                FileHandle.standardError.write(
                    Data(
                        "parley-plugin-host: plugin \(plugin.name): handle() has not returned for \(running) (deadline \(options.deadline)); exiting so Parley restarts this host\n"
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
    // Parley closed our stdin or sent `shutdown`: no more calls.
    for await _ in readerEnded {}
    // Let the calls in flight be answered (each ends by its deadline at the latest).
    let drainUntil = ContinuousClock.now + options.deadline + .seconds(1)
    while callsInFlight.load(ordering: .acquiring) > 0 && ContinuousClock.now < drainUntil { try? await Task.sleep(for: .milliseconds(5)) }
    // Parley closed our stdin or asked us to stop: finish what runs (bounded by the host's drain deadline).
    await host.shutdown()
    group.cancelAll()
}
// A reply handed to another thread's batch is written before the process ends.
for _ in 0..<1000 where !out.isIdle { usleep(1000) }
exit(0)
