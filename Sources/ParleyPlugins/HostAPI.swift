import CParley
import Logging
public import ParleyJSON
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The C side of the host: the `parley_host_api` table and the registries its functions consult.
//
// Handles given to plugins are small integers, not addresses: `parley_host *` is an instance id and
// `parley_call *` a call id. A late, duplicate or foreign handle therefore finds no record and gets a
// status, never a dangling pointer.

/// A proactive message queued by `emit`.
public struct EmittedMessage: Sendable {
    /// The conversation the plugin emitted to.
    public var senderID: String
    /// Rasa response dicts, as the plugin sent them (not formatted yet).
    public var responses: [JSONValue]
    /// The channel the plugin named, or nil (the conversation's latest input channel).
    public var channel: String?
    /// The emitting plugin's name.
    public var plugin: String
}

/// Where an instance's `emit` goes: the host's queue, if the host has an output.
protocol EmitSink: Sendable {
    func enqueue(_ message: EmittedMessage) -> parley_status
}

/// Per-instance context reachable from `parley_host *`.
final class InstanceContext: Sendable {
    let id: UInt
    let path: String
    let logger: Logger
    let sink: any EmitSink
    private let nameBox: Mutex<String>
    private let closedFlag = Atomic<Bool>(false)

    init(id: UInt, path: String, logger: Logger, sink: any EmitSink) {
        self.id = id
        self.path = path
        self.logger = logger
        self.sink = sink
        self.nameBox = Mutex(path)
    }

    /// The plugin's name once known (its path before the entry point returned).
    var name: String {
        get { nameBox.withLock { $0 } }
        set { nameBox.withLock { $0 = newValue } }
    }

    var isClosed: Bool { closedFlag.load(ordering: .acquiring) }
    func close() { closedFlag.store(true, ordering: .releasing) }

    var handle: OpaquePointer? { OpaquePointer(bitPattern: id) }
}

/// All plugin instances of the process, by id (ids are never reused; entries live as long as the process,
/// like the libraries).
final class InstanceRegistry: Sendable {
    private let state = Mutex<(next: UInt, instances: [UInt: InstanceContext])>((1, [:]))

    func make(path: String, logger: Logger, sink: any EmitSink) -> InstanceContext {
        state.withLock { s in
            let ctx = InstanceContext(id: s.next, path: path, logger: logger, sink: sink)
            s.instances[s.next] = ctx
            s.next += 1
            return ctx
        }
    }

    func lookup(_ handle: OpaquePointer?) -> InstanceContext? {
        guard let handle else { return nil }
        let id = UInt(bitPattern: handle)
        return state.withLock { $0.instances[id] }
    }
}

let instanceRegistry = InstanceRegistry()

// MARK: - Views

/// Copies a `parley_str`; nil when it is `{NULL, n > 0}`.
func copyBytes(_ view: parley_str) -> [UInt8]? {
    if view.len == 0 { return [] }
    guard let ptr = view.ptr else { return nil }
    return ptr.withMemoryRebound(to: UInt8.self, capacity: view.len) { Array(UnsafeBufferPointer(start: $0, count: view.len)) }
}

/// Copies a `parley_str` as a String (invalid UTF-8 is repaired); nil when it is `{NULL, n > 0}`.
func copyString(_ view: parley_str) -> String? {
    copyBytes(view).map { String(decoding: $0, as: UTF8.self) }
}

// MARK: - The table

private let hostLog: parley_log_fn = { host, level, message in
    guard let ctx = instanceRegistry.lookup(host) else { return }
    let text = copyString(message) ?? "<log message with NULL pointer and non-zero length>"
    let swiftLevel: Logger.Level =
        switch level.rawValue {
        case PARLEY_LOG_TRACE.rawValue: .trace
        case PARLEY_LOG_DEBUG.rawValue: .debug
        case PARLEY_LOG_INFO.rawValue: .info
        case PARLEY_LOG_NOTICE.rawValue: .notice
        case PARLEY_LOG_WARNING.rawValue: .warning
        case PARLEY_LOG_ERROR.rawValue: .error
        default: .critical
        }
    ctx.logger.log(level: swiftLevel, "\(text)", metadata: ["parley.plugin": "\(ctx.name)"])
}

private let hostComplete: parley_complete_fn = { call, status, json in
    callRegistry.complete(call, status: status.rawValue, json: json)
}

private let hostEmit: parley_emit_fn = { host, senderID, json in
    guard let ctx = instanceRegistry.lookup(host) else { return PARLEY_E_INVALID }
    if ctx.isClosed { return PARLEY_E_CLOSED }
    guard let sender = copyString(senderID), !sender.isEmpty else {
        ctx.logger.error("plugin \(ctx.name): emit with an empty or NULL sender_id was refused (PARLEY_E_INVALID)")
        return PARLEY_E_INVALID
    }
    guard let bytes = copyBytes(json) else {
        ctx.logger.error("plugin \(ctx.name): emit with a NULL json pointer and non-zero length was refused (PARLEY_E_INVALID)")
        return PARLEY_E_INVALID
    }
    let value: JSONValue
    do {
        value = try bytes.withUnsafeBufferPointer { try JSONValue.parse($0, maxDepth: JSONValue.inputParseDepth) }
    } catch {
        ctx.logger.error("plugin \(ctx.name): emit refused, payload is not valid JSON (\(error))")
        return PARLEY_E_BAD_JSON
    }
    guard let object = value.objectValue, let responses = object["responses"]?.arrayValue,
        responses.allSatisfy({ $0.objectValue != nil })
    else {
        ctx.logger.error(#"plugin \#(ctx.name): emit refused, payload must be {"responses": [ {...}, ... ]}"#)
        return PARLEY_E_BAD_JSON
    }
    let channel = object["channel"]?.stringValue
    return ctx.sink.enqueue(EmittedMessage(senderID: sender, responses: responses, channel: channel, plugin: ctx.name))
}

private let hostStream: parley_stream_fn = { call, json in
    callRegistry.stream(call, json: json)
}

private let hostGetAPI: parley_get_api_fn = { name in
    guard let name else { return nil }
    switch String(cString: name) {
    case "parley_log": return unsafeBitCast(hostLog, to: parley_fn.self)
    case "parley_complete": return unsafeBitCast(hostComplete, to: parley_fn.self)
    case "parley_emit": return unsafeBitCast(hostEmit, to: parley_fn.self)
    case "parley_get_api": return unsafeBitCast(hostGetAPI, to: parley_fn.self)
    case "parley_stream": return unsafeBitCast(hostStream, to: parley_fn.self)
    default: return nil
    }
}

/// The version string in `parley_host_api.host_version`.
public let parleyHostVersion = "parley 0.1.0"

/// The host table handed to every plugin: immutable, allocated once, never freed.
nonisolated(unsafe) let hostAPITable: UnsafePointer<parley_host_api> = {
    let table = UnsafeMutablePointer<parley_host_api>.allocate(capacity: 1)
    table.initialize(
        to: parley_host_api(
            struct_size: UInt32(MemoryLayout<parley_host_api>.size),
            abi_major: UInt32(PARLEY_ABI_MAJOR),
            abi_minor: UInt32(PARLEY_ABI_MINOR),
            reserved: 0,
            host_version: UnsafePointer(strdup(parleyHostVersion)),
            log: hostLog,
            complete: hostComplete,
            emit: hostEmit,
            get_api: hostGetAPI,
            stream: hostStream
        )
    )
    return UnsafePointer(table)
}()
