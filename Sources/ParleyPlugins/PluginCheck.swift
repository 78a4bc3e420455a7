import Foundation
public import Logging
public import ParleyDispatch
import ParleyJSON
public import ParleyWorkers
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

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

/// ``checkPlugins(paths:pool:logger:)`` with each plugin loaded in a child process of its own
/// (`parley plugins check --isolated`, the GStreamer registry scanner's idea): a plugin whose entry point crashes,
/// aborts or hangs is reported (``PluginLoadError/Code/crashedWhileLoading``, with the signal and its last stderr
/// lines) instead of taking the checking process down. Each child runs `hostExecutable --check`, which loads the
/// plugin, reports it, runs its shutdown hook and exits; a child still running after `timeout` is killed.
public func checkPluginsIsolated(paths: [String], hostExecutable: String, timeout: Duration = .seconds(10)) async -> [PluginCheckReport] {
    var reports: [PluginCheckReport] = []
    var names: [String: String] = [:]
    for path in paths {
        var report = await checkIsolated(path: path, hostExecutable: hostExecutable, timeout: timeout)
        if let name = report.name, report.passed {
            if let other = names[name] {
                report.error = PluginLoadError(
                    code: .duplicateName, path: path,
                    reason: "plugin name \"\(name)\" is already used by \(other); give one of them another name (name: in the configuration)")
            } else {
                names[name] = path
            }
        }
        reports.append(report)
    }
    return reports
}

private func checkIsolated(path: String, hostExecutable: String, timeout: Duration) async -> PluginCheckReport {
    await withCheckedContinuation { (continuation: CheckedContinuation<PluginCheckReport, Never>) in
        // Blocking reads of the child's pipes: on a thread of GCD's, not the cooperative pool.
        DispatchQueue.global().async {
            continuation.resume(returning: checkIsolatedBlocking(path: path, hostExecutable: hostExecutable, timeout: timeout))
        }
    }
}

private func checkIsolatedBlocking(path: String, hostExecutable: String, timeout: Duration) -> PluginCheckReport {
    func failed(_ code: PluginLoadError.Code, _ reason: String) -> PluginCheckReport {
        PluginCheckReport(path: path, isThreadSafe: false, error: PluginLoadError(code: code, path: path, reason: reason))
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: hostExecutable)
    process.arguments = ["--check", "--plugin", path]
    let output = Pipe(), errors = Pipe()
    IsolatedPlugin.prepareHost(process, stdin: FileHandle.nullDevice, stdout: output, stderr: errors)
    do {
        try process.run()
    } catch {
        return failed(.crashedWhileLoading, "cannot start \(hostExecutable) to check it: \(error)")
    }
    let pid = process.processIdentifier
    let killer = DispatchWorkItem { kill(pid, SIGKILL) }
    let nanos = timeout.components.seconds * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000
    DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(Int(nanos)), execute: killer)
    // stderr is read beside stdout, so that a chatty plugin cannot fill its pipe and block.
    let stderrText = Mutex<[UInt8]>([])
    let stderrDone = DispatchSemaphore(value: 0)
    let stderrHandle = errors.fileHandleForReading
    Thread.detachNewThread {
        let data = stderrHandle.readDataToEndOfFile()
        stderrText.withLock { $0 = Array(data.suffix(4096)) }
        stderrDone.signal()
    }
    var reader = IsolationFrameReader(fd: output.fileHandleForReading.fileDescriptor)
    var info: JSONValue?
    var loadFailure: String?
    while let frame = reader.next() {
        switch frame.type {
        case IsolationFrame.ready: info = try? JSONValue.parse(frame.body)
        case IsolationFrame.loadFailed: loadFailure = String(decoding: frame.body, as: UTF8.self)
        default: break
        }
    }
    process.waitUntilExit()
    killer.cancel()
    _ = stderrDone.wait(timeout: .now() + 1)
    let lastLines = String(decoding: stderrText.withLock { $0 }, as: UTF8.self).split(separator: "\n").suffix(3).joined(separator: " | ")
    if let loadFailure {
        let prefix = "plugin \(path): "
        return failed(.initFailed, loadFailure.hasPrefix(prefix) ? String(loadFailure.dropFirst(prefix.count)) : loadFailure)
    }
    if let info, process.terminationReason == .exit, process.terminationStatus == 0 {
        return PluginCheckReport(
            path: path, name: info["name"]?.stringValue, kind: info["kind"]?.stringValue.flatMap(PluginKind.init(rawValue:)),
            version: info["version"]?.stringValue, abi: info["abi"]?.stringValue, isThreadSafe: info["thread_safe"]?.boolValue ?? false, error: nil)
    }
    let how =
        process.terminationReason == .uncaughtSignal
        ? "signal \(process.terminationStatus) (\(IsolatedPlugin.signalName(process.terminationStatus)))"
        : "exit status \(process.terminationStatus)"
    let stage = info == nil ? "while loading" : "in its shutdown hook"
    let hung = process.terminationReason == .uncaughtSignal && process.terminationStatus == SIGKILL
    return failed(
        .crashedWhileLoading,
        (hung
            ? "did not finish loading within \(timeout) (its entry point must not block); the check process was killed"
            : "crashed the check process \(stage) with \(how); loaded in process it would take the server down")
            + (lastLines.isEmpty ? "" : "; last stderr lines: \(lastLines)"))
}
