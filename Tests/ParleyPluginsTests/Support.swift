import Foundation
import Logging
import ParleyCore
import ParleyDispatch
import ParleyWorkers
import ParleyJSON
import ParleyPlugins
import Synchronization
import Testing

/// Builds the example plugins and the broken fixtures into a per-process temp directory (once each), with
/// the same Makefiles / compilers a plugin author uses.
enum Build {
    /// The package root (three levels above this file).
    static let root: String = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
    static let dir: String = {
        let d = NSTemporaryDirectory() + "parley-plugin-tests-\(getpid())"
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }()
    private static let cache = Mutex<[String: String]>([:])
    private static let counter = Atomic<Int>(0)

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Runs a command; throws with its output when it fails.
    @discardableResult
    static func run(_ args: [String], cwd: String? = nil) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let out = String(decoding: data, as: UTF8.self)
        guard p.terminationStatus == 0 else { throw Failure(description: "\(args.joined(separator: " ")) failed:\n\(out)") }
        return out
    }

    private static func cached(_ key: String, _ build: () throws -> String) throws -> String {
        try cache.withLock { c in
            if let path = c[key] { return path }
            let path = try build()
            c[key] = path
            return path
        }
    }

    /// `make -C Plugins/<folder> OUT=<dir>` and the path of `file` in it (or `$PARLEY_PLUGINS/file` if set).
    static func example(_ folder: String, _ file: String) throws -> String {
        if let prebuilt = ProcessInfo.processInfo.environment["PARLEY_PLUGINS"], FileManager.default.fileExists(atPath: prebuilt + "/" + file) {
            return prebuilt + "/" + file
        }
        return try cached(folder) {
            try run(["make", "--no-print-directory", "-C", root + "/Plugins/" + folder, "OUT=" + dir])
            return dir + "/" + file
        }
    }

    static func mirror() throws -> String { try example("mirror-c", "libmirror.so") }
    static func markdown() throws -> String { try example("markdown-c", "libmarkdown.so") }
    static func rust() throws -> String { try example("agent-rust", "librustcalc.so") }

    /// The SwiftPM-built `libParleyAssistant.so` (`swift build --product ParleyAssistant`, done by `make plugins`).
    static func assistant() -> String? {
        var candidates: [String] = []
        if let prebuilt = ProcessInfo.processInfo.environment["PARLEY_PLUGINS"] { candidates.append(prebuilt + "/libParleyAssistant.so") }
        // The test bundle sits next to the products of the same build.
        let here = Bundle.main.bundlePath
        candidates.append(here + "/libParleyAssistant.so")
        candidates.append(URL(fileURLWithPath: here).deletingLastPathComponent().path + "/libParleyAssistant.so")
        candidates.append(root + "/.build/debug/libParleyAssistant.so")
        candidates.append(root + "/build/plugins/libParleyAssistant.so")
        return candidates.first { FileManager.default.fileExists(atPath: $0) }
    }

    /// Compiles Fixtures/fixture.c with `defines` and returns a fresh copy (its own dlopen handle and state).
    static func fixture(_ defines: [String] = []) throws -> String {
        let key = "fixture" + defines.joined()
        let built = try cached(key) {
            let out = dir + "/fixture-\(counter.wrappingAdd(1, ordering: .relaxed).newValue).so"
            try run(
                [
                    "cc", "-std=c99", "-w", "-fPIC", "-fvisibility=hidden", "-I", root + "/include", "-I", root + "/Plugins/common", "-shared",
                    "-o", out, root + "/Tests/ParleyPluginsTests/Fixtures/fixture.c", "-pthread",
                ] + defines)
            return out
        }
        let copy = dir + "/copy-\(counter.wrappingAdd(1, ordering: .relaxed).newValue).so"
        try FileManager.default.copyItem(atPath: built, toPath: copy)
        return copy
    }

    /// A file that is not a shared object.
    static func textFile() throws -> String {
        let path = dir + "/not-a-plugin-\(counter.wrappingAdd(1, ordering: .relaxed).newValue).so"
        try "just text\n".write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }
}

/// Reads `fixture_stat(i)` from a loaded fixture copy.
func fixtureStat(_ path: String, _ index: Int32) -> Int32 {
    guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD), let symbol = dlsym(handle, "fixture_stat") else { return -999 }
    let f = unsafeBitCast(symbol, to: (@convention(c) (Int32) -> Int32).self)
    return f(index)
}

enum FixtureStat {
    static let double: Int32 = 0, late: Int32 = 1, emit: Int32 = 2, concurrent: Int32 = 3, maxConcurrent: Int32 = 4, cancels: Int32 = 5
    static let emitBad: Int32 = 6, handled: Int32 = 7, streamAfter: Int32 = 8, shape: Int32 = 9
}

/// Waits (bounded, not timed: up to ~10 s of polling) until `condition` holds; returns whether it did.
func eventually(_ condition: () -> Bool) async -> Bool {
    for _ in 0..<1000 {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return condition()
}

/// A host with its own small pool; `body` gets it; shut down afterwards. With `output`, the host delivers plugin
/// emits to it while `body` runs (as `parley serve` hands them to the dispatcher).
@discardableResult
func withHost<T: Sendable>(
    defaultDeadline: Duration = .seconds(10), output: (any ProactiveOutput)? = nil,
    _ body: @Sendable (PluginHost) async throws -> T
) async throws -> T {
    let pool = WorkerPool(threads: 4)
    let host = PluginHost(pool: pool, configuration: .init(defaultDeadline: defaultDeadline), logger: testLogger)
    guard let output else { return try await withHost(host, pool: pool, body) }
    return try await withHost(host, pool: pool) { host in
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                await host.run { await output.deliver(TurnResult(responses: $0.responses), to: $0.senderID, channel: $0.channel) }
                return nil
            }
            let result = try await body(host)
            await host.shutdown()
            for try await _ in group {}
            return result
        }
    }
}

private func withHost<T>(_ host: PluginHost, pool: WorkerPool, _ body: (PluginHost) async throws -> T) async throws -> T {
    do {
        let result = try await body(host)
        await host.shutdown()
        try await pool.shutdown()
        return result
    } catch {
        await host.shutdown()
        try await pool.shutdown()
        throw error
    }
}

/// A logger that keeps lines for assertions. One instance is shared by every logger of every test, which run
/// in parallel, so its mutable state sits behind locks.
final class LogCapture: LogHandler, Sendable {
    static let shared = LogCapture()
    private let lines = Mutex<[String]>([])
    private let storedMetadata = Mutex<Logger.Metadata>([:])
    private let storedLevel = Mutex<Logger.Level>(.trace)
    var metadata: Logger.Metadata {
        get { storedMetadata.withLock { $0 } }
        set { storedMetadata.withLock { $0 = newValue } }
    }
    var logLevel: Logger.Level {
        get { storedLevel.withLock { $0 } }
        set { storedLevel.withLock { $0 = newValue } }
    }
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { storedMetadata.withLock { $0[key] } }
        set { storedMetadata.withLock { $0[key] = newValue } }
    }
    func log(event: LogEvent) {
        lines.withLock { $0.append("\(event.level) \(event.message)") }
    }
    func contains(_ text: String) -> Bool { lines.withLock { $0.contains { $0.contains(text) } } }
}

let testLogger = Logger(label: "test", factory: { _ in LogCapture.shared })

/// A user message turned into the agent request the dispatcher would build.
func request(_ text: String, sender: String = "s1", metadata: JSONObject = [:], events: [JSONValue] = []) -> AgentRequest {
    let message = UserMessage(text: text, senderID: sender, inputChannel: "socketio", metadata: metadata)
    var payload = PluginAgent.minimalPayload(for: message)
    if var object = payload.objectValue, var tracker = object["tracker"]?.objectValue {
        tracker["events"] = .array(events)
        object["tracker"] = .object(tracker)
        payload = .object(object)
    }
    return AgentRequest(message: message, payload: payload)
}

/// Collects proactive messages.
final class OutputCollector: ProactiveOutput {
    private let box = Mutex<[(String, [JSONValue])]>([])
    func deliver(_ messages: TurnResult, to senderID: String, channel: String?) async {
        let responses = messages.responses
        box.withLock { $0.append((senderID, responses)) }
    }
    var delivered: [(String, [JSONValue])] { box.withLock { $0 } }
}
