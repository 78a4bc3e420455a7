public import Logging
public import ParleyDispatch
public import ParleyWorkers

/// The result of checking one plugin file (``checkPlugins(paths:pool:logger:)``).
public struct PluginCheckReport: Sendable, CustomStringConvertible {
    /// The file as given.
    public var path: String
    /// What the plugin reports, when it loaded.
    public var name: String?
    /// Agent or formatter, when it loaded.
    public var kind: PluginKind?
    /// The plugin's version string, when it loaded.
    public var version: String?
    /// ABI version `major.minor`, when it loaded.
    public var abi: String?
    /// Whether it declares `PARLEY_FLAG_THREAD_SAFE`.
    public var isThreadSafe: Bool
    /// Why it failed; nil when it passed.
    public var error: PluginLoadError?

    /// Whether the plugin passed every load check.
    public var passed: Bool { error == nil }

    /// One line: `ok   PATH: agent "mirror" 1.0.0, ABI 1.0, thread-safe` or `FAIL plugin PATH: reason`.
    public var description: String {
        if let error { return "FAIL \(error)" }
        let kindText = kind?.rawValue ?? "?"
        return "ok   \(path): \(kindText) \"\(name ?? "?")\" \(version ?? "unknown"), ABI \(abi ?? "?")\(isThreadSafe ? ", thread-safe" : "")"
    }
}

/// Validates plugin files without starting a server (`parley plugins check PATH...`): each is loaded
/// with `{}` as its configuration, checked like a configured plugin (of either kind; duplicate names
/// among `paths` are reported), then its shutdown hook is called. Libraries stay mapped.
///
/// - Parameters:
///   - paths: plugin files.
///   - pool: the worker pool for the entry points; a private 2-thread pool when nil.
///   - logger: receives the plugins' log lines.
/// - Returns: one report per path, in order.
public func checkPlugins(paths: [String], pool: WorkerPool? = nil, logger: Logger = Logger(label: "parley.plugins.check")) async -> [PluginCheckReport] {
    let workers = pool ?? WorkerPool(threads: 2)
    let host = PluginHost(pool: workers, logger: logger)
    var reports: [PluginCheckReport] = []
    for path in paths {
        do {
            let plugin = try await host.load(PluginConfiguration(path: path, kind: .agent), expecting: nil)
            reports.append(
                PluginCheckReport(
                    path: path, name: plugin.name, kind: plugin.kind, version: plugin.version,
                    abi: "\(plugin.abiMajor).\(plugin.abiMinor)", isThreadSafe: plugin.isThreadSafe, error: nil))
        } catch {
            reports.append(PluginCheckReport(path: path, isThreadSafe: false, error: error))
        }
    }
    await host.shutdown()
    if pool == nil { try? await workers.shutdown() }
    return reports
}
