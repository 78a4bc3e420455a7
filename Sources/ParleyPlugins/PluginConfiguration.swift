public import ParleyJSON

/// What a plugin is configured as. A plugin whose `parley_plugin_def.kind` differs is refused.
public enum PluginKind: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// Bot logic: user message + conversation in, events + responses out.
    case agent
    /// Output transformation: responses for a channel in, responses out.
    case formatter

    /// `agent` or `formatter`.
    public var description: String { rawValue }
}

/// One configured plugin instance.
///
/// In the YAML configuration (`ParleyConfig`) this is an entry under `plugins.agents` or
/// `plugins.formatters` (the list the entry sits in gives ``kind``; formatters apply in list order):
/// ```yaml
/// plugins:
///   deadline: 10s               # default for every plugin
///   agents:
///     - path: build/plugins/libmirror.so
///       name: mirror            # optional; defaults to the plugin's own name
///       deadline: 2s            # optional per-plugin override
///       config: {greeting: hi}  # optional; handed to the entry point as JSON
///   formatters:
///     - path: build/plugins/libmarkdown.so
/// ```
public struct PluginConfiguration: Sendable, Hashable {
    /// Path of the shared object; relative paths are resolved against the current directory.
    public var path: String
    /// The slot the plugin is configured in.
    public var kind: PluginKind
    /// The name used in logs, routing and duplicate detection; `nil` uses `parley_plugin_def.name`.
    public var name: String?
    /// Per-call deadline; `nil` uses ``PluginHostConfiguration/defaultDeadline``.
    public var deadline: Duration?
    /// JSON handed to the plugin's entry point (`config_json`); `{}` when absent.
    public var config: JSONValue
    /// Overrides the plugin's `PARLEY_FLAG_THREAD_SAFE`: `false` runs its calls one at a time across all
    /// conversations although it declares itself thread-safe; `true` is ignored for a plugin that does not
    /// declare it (nothing can make such a plugin safe to call concurrently), with a warning. nil = the flag.
    public var threadSafe: Bool?
    /// Most `handle()` calls of a thread-safe plugin running at once, each on a worker thread of its own (nil:
    /// ``PluginHostConfiguration/defaultMaxConcurrentCalls``). It bounds how many threads the plugin can hold when
    /// it hangs; once all are hung its calls get the fallback at once. Ignored for a plugin that is not thread-safe
    /// (one at a time).
    public var maxConcurrentCalls: Int?

    /// One plugin entry; everything but the path and the slot is optional.
    public init(
        path: String, kind: PluginKind, name: String? = nil, deadline: Duration? = nil, config: JSONValue = .object([:]),
        threadSafe: Bool? = nil, maxConcurrentCalls: Int? = nil
    ) {
        self.path = path
        self.kind = kind
        self.name = name
        self.deadline = deadline
        self.config = config
        self.threadSafe = threadSafe
        self.maxConcurrentCalls = maxConcurrentCalls
    }
}

/// Settings of a ``PluginHost``; every field has a default.
public struct PluginHostConfiguration: Sendable {
    /// Deadline of one plugin call when the plugin's configuration gives none (default 10 s). On expiry the
    /// caller gets ``PluginCallError/Code/deadlineExceeded`` (the dispatcher sends the fallback), the plugin's
    /// cancel hook runs and the late completion is dropped.
    public var defaultDeadline: Duration
    /// Deadline of a plugin's entry point at load and of its shutdown hook (default 10 s).
    public var initDeadline: Duration
    /// How long ``PluginHost/shutdown()`` waits for running plugin calls before calling shutdown hooks.
    public var drainTimeout: Duration
    /// Capacity of the queue of proactive messages (`emit`); a full queue refuses with `PARLEY_E_BUSY`.
    public var emitQueueCapacity: Int
    /// Whether each plugin remembers when every running `handle()` began (``LoadedPlugin/longestRunningHandle``;
    /// two more lock operations per call): on in `parley-plugin-host`, which exits when a call hangs. Default off.
    public var tracksRunningHandles = false
    /// ``PluginConfiguration/maxConcurrentCalls`` when a plugin's configuration gives none.
    public static let defaultMaxConcurrentCalls = 16

    /// Host settings; every parameter has a default.
    public init(
        defaultDeadline: Duration = .seconds(10),
        initDeadline: Duration = .seconds(10),
        drainTimeout: Duration = .seconds(5),
        emitQueueCapacity: Int = 1024
    ) {
        self.defaultDeadline = defaultDeadline
        self.initDeadline = initDeadline
        self.drainTimeout = drainTimeout
        self.emitQueueCapacity = emitQueueCapacity
    }
}

/// Counters of one loaded plugin, for logs, metrics and tests.
public struct PluginStatistics: Sendable, Hashable {
    /// Calls started.
    public var calls = 0
    /// Calls that ended with a usable completion (before shape validation).
    public var completed = 0
    /// Calls that failed (plugin error, protocol violation, invalid JSON).
    public var failed = 0
    /// Calls that missed their deadline or were cancelled.
    public var expired = 0
    /// Completions that arrived after expiry and were dropped (`PARLEY_E_EXPIRED`).
    public var lateCompletions = 0
    /// Second completions of one call, dropped (`PARLEY_E_ALREADY_COMPLETED`).
    public var duplicateCompletions = 0
    /// Times the cancel hook was called.
    public var cancelHookCalls = 0
    /// `handle` invocations currently running on worker threads.
    public var running = 0
    /// Of those, the ones still running after their call expired (hung: each holds a slot and a thread).
    public var hung = 0
    /// Calls refused at once because every slot was hung.
    public var refused = 0

    /// All counters zero.
    public init() {}
}
