import CParley
public import Logging
public import ParleyDispatch
public import ParleyWorkers
import ParleyJSON
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Loads plugins (`dlopen`, never `dlclose`), checks them, and routes their host-API calls.
///
/// Typical use at startup (off any event loop):
/// ```swift
/// let host = PluginHost(pool: pool, logger: logger)
/// let (agents, formatters) = try await host.loadAll(agents: config.agents, formatters: config.formatters)
/// // next to the server: deliver plugin `emit`s (in parley serve: to the dispatcher, which records and formats
/// // them in order with the conversation's turns, then hands them to the channel)
/// await host.run { emitted in _ = try? await dispatcher.emit(emitted.responses, to: emitted.senderID, channel: emitted.channel) }
/// // at the end: await host.shutdown()
/// ```
public final class PluginHost: Sendable {
    /// Settings.
    public let configuration: PluginHostConfiguration
    private let pool: WorkerPool
    private let logger: Logger
    private let registry = Mutex<[LoadedPlugin]>([])
    /// Plugins replaced by a reload: still mapped (never dlclosed), finishing calls that started on them; their
    /// shutdown hooks run at ``shutdown()`` like the others'.
    private let retired = Mutex<[LoadedPlugin]>([])
    private let emits: EmitQueue
    private let isClosed = Atomic<Bool>(false)

    /// - Parameters:
    ///   - pool: the worker pool every plugin call runs on (shared with other foreign calls).
    ///   - configuration: deadlines and queue sizes.
    ///   - logger: used for the host's own lines and for plugin log lines (with `parley.plugin` metadata).
    public init(pool: WorkerPool, configuration: PluginHostConfiguration = .init(), logger: Logger = Logger(label: "parley.plugins")) {
        self.pool = pool
        self.configuration = configuration
        self.logger = logger
        self.emits = EmitQueue(capacity: configuration.emitQueueCapacity)
    }

    /// The plugins loaded so far, in load order.
    public var plugins: [LoadedPlugin] { registry.withLock { $0 } }

    /// Hands plugin `emit`s to `deliver`, in the order they were made, until ``shutdown()``; run it next to the
    /// server (in its service group). Emits made before it runs wait in the bounded queue; a full queue
    /// (``PluginHostConfiguration/emitQueueCapacity``) makes `emit` return `PARLEY_E_BUSY`.
    public func run(delivering deliver: @escaping @Sendable (EmittedMessage) async -> Void) async {
        for await message in emits.stream { await deliver(message) }
    }

    /// Loads one plugin and checks it; see ``PluginLoadError`` for every refusal.
    public func load(_ config: PluginConfiguration) async throws(PluginLoadError) -> LoadedPlugin {
        try await load(config, expecting: config.kind)
    }

    /// Loads a plugin of either kind (`config.kind` is ignored), as `parley plugins check` does.
    public func loadAnyKind(_ config: PluginConfiguration) async throws(PluginLoadError) -> LoadedPlugin {
        try await load(config, expecting: nil)
    }

    /// Loads an agent plugin.
    public func loadAgent(_ config: PluginConfiguration) async throws(PluginLoadError) -> PluginAgent {
        var config = config
        config.kind = .agent
        return PluginAgent(plugin: try await load(config))
    }

    /// Loads a formatter plugin.
    public func loadFormatter(_ config: PluginConfiguration) async throws(PluginLoadError) -> PluginFormatter {
        var config = config
        config.kind = .formatter
        return PluginFormatter(plugin: try await load(config))
    }

    /// Loads every configured plugin; the first failure is thrown (the server must not start with a broken
    /// plugin). Formatters come back in configured order (apply them with ``FormatterChain``).
    public func loadAll(
        agents: [PluginConfiguration], formatters: [PluginConfiguration]
    ) async throws(PluginLoadError) -> (agents: [PluginAgent], formatters: [PluginFormatter]) {
        var loadedAgents: [PluginAgent] = []
        var loadedFormatters: [PluginFormatter] = []
        for a in agents { loadedAgents.append(try await loadAgent(a)) }
        for f in formatters { loadedFormatters.append(try await loadFormatter(f)) }
        return (loadedAgents, loadedFormatters)
    }

    /// Loads a new set of plugins that replaces every loaded one (a configuration reload): names may be reused; a
    /// new build of a library must come at a new path or as a new file (`mv` over the old one, never writing
    /// into it: the old one stays mapped and in use). On success the old instances are retired: no new call
    /// reaches them through the host, calls running on them finish, and their shutdown hooks run at
    /// ``shutdown()``. On failure nothing changes (what was loaded of the new set stays mapped, unused) and the
    /// error is thrown.
    public func reload(
        agents: [PluginConfiguration], formatters: [PluginConfiguration]
    ) async throws(PluginLoadError) -> (agents: [PluginAgent], formatters: [PluginFormatter]) {
        let previous = registry.withLock { list in
            defer { list = [] }
            return list
        }
        do {
            let loaded = try await loadAll(agents: agents, formatters: formatters)
            retired.withLock { $0.append(contentsOf: previous) }
            return loaded
        } catch {
            let partial = registry.withLock { list in
                defer { list = previous }
                return list
            }
            retired.withLock { $0.append(contentsOf: partial) }
            throw error
        }
    }

    /// Queues a message emitted by a plugin outside this process (`isolation: process`) with the others, for
    /// ``run(delivering:)``; dropped (and logged) when the queue is full or the host is shut down.
    public func enqueue(_ message: EmittedMessage) {
        if emits.enqueue(message) != PARLEY_OK {
            logger.warning("plugin \(message.plugin): emit to \(message.senderID) dropped (the emit queue is full or the host is stopping)")
        }
    }

    /// Stops: refuses new calls and emits, waits up to ``PluginHostConfiguration/drainTimeout`` for running
    /// `handle`s, then calls each plugin's shutdown hook. Libraries stay mapped. ``run()`` returns.
    public func shutdown() async {
        guard !isClosed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let all = retired.withLock { $0 } + plugins
        for p in all { p.close() }
        emits.finish()
        let clock = ContinuousClock()
        let drainUntil = clock.now.advanced(by: configuration.drainTimeout)
        for p in all {
            // Cancelled (the shutdown took too long): stop waiting at once instead of spinning on a sleep that throws.
            while p.statistics.running > 0 && clock.now < drainUntil && !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(10))
            }
            // parley.h: the hook never runs while handle() does; a call still running is abandoned with the process.
            let running = p.statistics.running
            guard running == 0 else {
                p.logger.error(
                    "plugin \(p.name): \(running) call(s) still inside handle() after the drain deadline (\(formatDuration(configuration.drainTimeout))); abandoned, and its shutdown hook is not called"
                )
                continue
            }
            await p.runShutdownHook(deadline: configuration.initDeadline)
        }
    }

    // MARK: - Loading

    func load(_ config: PluginConfiguration, expecting expectedKind: PluginKind?) async throws(PluginLoadError) -> LoadedPlugin {
        let path = config.path
        func fail(_ code: PluginLoadError.Code, _ reason: String) -> PluginLoadError {
            PluginLoadError(code: code, path: path, reason: reason)
        }
        if isClosed.load(ordering: .acquiring) { throw fail(.hostClosed, "the plugin host is shut down") }

        // 1. The file.
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw fail(.fileNotFound, "file not found; check the path in the configuration (build the examples with `make plugins`)")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw fail(.notSharedObject, "not a regular file; point the configuration at the plugin's .so file")
        }
        #if os(Linux)
        guard hasELFMagic(path) else {
            throw fail(
                .notSharedObject,
                "not a shared object (no ELF header); build it as one (cc -shared -fPIC, rustc --crate-type cdylib, a SwiftPM .dynamic product)")
        }
        #endif

        // 2. dlopen; never dlclose (Swift and Rust images cannot be unloaded safely).
        let absolute = absolutePath(path)
        guard let library = dlopen(absolute, RTLD_NOW | RTLD_LOCAL) else {
            let message = dlerror().map { String(cString: $0) } ?? "unknown dlopen error"
            throw fail(.cannotOpen, "cannot be loaded: \(message); check its dependencies with `ldd \(path)`")
        }
        let library_ = LibraryHandle(raw: library)

        // 3. The entry symbol; a different major shows up as a different symbol name.
        guard let entry = dlsym(library, PARLEY_PLUGIN_INIT_SYMBOL) else {
            for major in 2...9 where major != Int(PARLEY_ABI_MAJOR) {
                if dlsym(library, "parley_plugin_init_v\(major)") != nil {
                    throw fail(
                        .abiMajorMismatch,
                        "ABI major \(major) (exports parley_plugin_init_v\(major)), host supports \(PARLEY_ABI_MAJOR); rebuild it against this host's include/parley.h"
                    )
                }
            }
            throw fail(
                .entrySymbolMissing,
                #"entry symbol \#(PARLEY_PLUGIN_INIT_SYMBOL) not found; export it (C: PARLEY_EXPORT with -fvisibility=hidden, Swift: @c(parley_plugin_init_v1), Rust: #[no_mangle] pub extern "C")"#
            )
        }
        _ = library_
        let initFunction = unsafeBitCast(entry, to: parley_plugin_init_fn.self)

        // 4. The entry point, on a worker thread with a deadline.
        let instance = instanceRegistry.make(path: path, logger: logger, sink: emits)
        var configBytes: [UInt8] = []
        (config.config.isNull ? JSONValue.object([:]) : config.config).serialize(into: &configBytes)
        configBytes.append(0)
        let configPayload = configBytes
        let entryBox = EntryBox(function: initFunction)
        let defBox: DefPointerBox
        do {
            defBox = try await pool.run(deadline: configuration.initDeadline) {
                configPayload.withUnsafeBufferPointer { buffer in
                    buffer.withMemoryRebound(to: CChar.self) { chars in
                        DefPointerBox(pointer: entryBox.function(hostAPITable, instance.handle, parley_str(ptr: chars.baseAddress, len: chars.count - 1)))
                    }
                }
            }
        } catch {
            throw fail(
                .initFailed, "\(PARLEY_PLUGIN_INIT_SYMBOL) did not return within \(formatDuration(configuration.initDeadline)) (\(error)); it must not block")
        }
        guard let defPointer = defBox.pointer else {
            throw fail(.initReturnedNull, "\(PARLEY_PLUGIN_INIT_SYMBOL) returned NULL: the plugin refused to load (see its log lines above; check its config)")
        }

        // 5. The definition: size first, then version, then the rest (OBS-style copy of struct_size bytes).
        let minimumSize = MemoryLayout<parley_plugin_def>.offset(of: \parley_plugin_def.cancel) ?? MemoryLayout<parley_plugin_def>.size
        let declaredSize = Int(UnsafeRawPointer(defPointer).load(as: UInt32.self))
        guard declaredSize >= minimumSize else {
            throw fail(
                .invalidDefinition,
                "parley_plugin_def.struct_size is \(declaredSize), smaller than the 1.0 minimum \(minimumSize); set struct_size = sizeof(parley_plugin_def)")
        }
        var raw = parley_plugin_def()
        withUnsafeMutableBytes(of: &raw) { dst in
            dst.copyMemory(from: UnsafeRawBufferPointer(start: UnsafeRawPointer(defPointer), count: min(declaredSize, dst.count)))
        }
        guard raw.abi_major == UInt32(PARLEY_ABI_MAJOR) else {
            throw fail(.abiMajorMismatch, "ABI major \(raw.abi_major), host supports \(PARLEY_ABI_MAJOR); rebuild it against this host's include/parley.h")
        }
        guard raw.abi_minor <= UInt32(PARLEY_ABI_MINOR) else {
            throw fail(
                .abiMinorTooNew,
                "ABI \(raw.abi_major).\(raw.abi_minor) is newer than the host's \(PARLEY_ABI_MAJOR).\(PARLEY_ABI_MINOR); upgrade parley or rebuild the plugin against parley.h \(PARLEY_ABI_MAJOR).\(PARLEY_ABI_MINOR)"
            )
        }
        let definition = PluginDefinition(raw: raw)
        // From here on the plugin accepted a def; give it its shutdown hook when refusing it.
        func refuse(_ code: PluginLoadError.Code, _ reason: String) async -> PluginLoadError {
            if let shutdown = definition.raw.shutdown {
                _ = try? await pool.run(deadline: configuration.initDeadline) { shutdown(definition.raw.state) }
            }
            instance.close()
            return fail(code, reason)
        }
        guard let namePointer = raw.name, namePointer.pointee != 0 else {
            throw await refuse(.invalidDefinition, "parley_plugin_def.name is NULL or empty; set it to a unique name")
        }
        guard raw.handle != nil else {
            throw await refuse(.invalidDefinition, "parley_plugin_def.handle is NULL; set it to the plugin's handle function")
        }
        let kind: PluginKind
        switch raw.kind {
        case UInt32(PARLEY_KIND_AGENT.rawValue): kind = .agent
        case UInt32(PARLEY_KIND_FORMATTER.rawValue): kind = .formatter
        default:
            throw await refuse(.invalidDefinition, "parley_plugin_def.kind is \(raw.kind); use PARLEY_KIND_AGENT or PARLEY_KIND_FORMATTER")
        }
        let ownName = String(cString: namePointer)
        let name = config.name ?? ownName
        if let expectedKind, expectedKind != kind {
            let list = expectedKind == .agent ? "formatters" : "agents"
            throw await refuse(
                .wrongKind,
                "\"\(name)\" is \(kind == .agent ? "an agent" : "a formatter") but is configured as \(expectedKind == .agent ? "an agent" : "a formatter"); list it under \(list)"
            )
        }
        let plugin = LoadedPlugin(
            name: name, definition: definition, path: path, kind: kind,
            deadline: config.deadline ?? configuration.defaultDeadline, threadSafe: config.threadSafe,
            maxConcurrentCalls: config.maxConcurrentCalls ?? PluginHostConfiguration.defaultMaxConcurrentCalls, instance: instance, pool: pool,
            logger: logger, tracksRunningHandles: configuration.tracksRunningHandles)
        let clash: LoadedPlugin? = registry.withLock { list in
            if let other = list.first(where: { $0.name == name }) { return other }
            list.append(plugin)
            return nil
        }
        if let clash {
            throw await refuse(
                .duplicateName, "plugin name \"\(name)\" is already used by \(clash.path); give one of them another name (name: in the configuration)")
        }
        instance.name = name
        logger.info("plugin loaded: \(plugin)")
        return plugin
    }
}

// MARK: - Helpers

private struct LibraryHandle: @unchecked Sendable { let raw: UnsafeMutableRawPointer }
private struct EntryBox: @unchecked Sendable { let function: parley_plugin_init_fn }
private struct DefPointerBox: @unchecked Sendable { let pointer: UnsafePointer<parley_plugin_def>? }

private func hasELFMagic(_ path: String) -> Bool {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var magic = [UInt8](repeating: 0, count: 4)
    let n = magic.withUnsafeMutableBytes { read(fd, $0.baseAddress, 4) }
    return n == 4 && magic == [0x7F, 0x45, 0x4C, 0x46]
}

private func absolutePath(_ path: String) -> String {
    if path.hasPrefix("/") { return path }
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    guard getcwd(&buffer, buffer.count) != nil else { return path }
    let cwd = String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return cwd + "/" + path
}

/// The bounded queue of emitted messages, drained by ``PluginHost/run(delivering:)``.
final class EmitQueue: EmitSink {
    let stream: AsyncStream<EmittedMessage>
    private let continuation: AsyncStream<EmittedMessage>.Continuation

    init(capacity: Int) {
        (stream, continuation) = AsyncStream.makeStream(of: EmittedMessage.self, bufferingPolicy: .bufferingOldest(max(1, capacity)))
    }

    func enqueue(_ message: EmittedMessage) -> parley_status {
        switch continuation.yield(message) {
        case .enqueued: return PARLEY_OK
        case .dropped: return PARLEY_E_BUSY
        case .terminated: return PARLEY_E_CLOSED
        @unknown default: return PARLEY_E_INTERNAL
        }
    }

    func finish() { continuation.finish() }
}
