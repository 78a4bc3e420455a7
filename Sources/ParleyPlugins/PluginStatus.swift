public import ParleyJSON

/// What one loaded plugin is doing now: `GET /admin/plugins` and `parley plugins status`.
public struct PluginStatus: Sendable, Hashable {
    /// The configured name.
    public var name: String
    /// Agent or formatter.
    public var kind: PluginKind
    /// The plugin file.
    public var path: String
    /// `in_process` or `process`.
    public var isolation: String
    /// Calls made since the plugin was loaded (refused ones included).
    public var calls = 0
    /// Calls that failed: the plugin reported an error, broke the calling contract, replied with invalid JSON, or
    /// its host process died during the call.
    public var errors = 0
    /// Calls that missed their deadline.
    public var deadlineExpiries = 0
    /// Calls refused at once without reaching the plugin: every slot hung, circuit breaker open, or the host
    /// process restarting.
    public var refused = 0
    /// Host processes that died (isolated plugins).
    public var crashes = 0
    /// Host processes started again after a crash.
    public var restarts = 0
    /// Host processes replaced between calls because they reached `memory_limit_mb`.
    public var memoryRecycles = 0
    /// `handle()` calls running now (in process) or calls waiting for their host processes (isolated).
    public var running = 0
    /// In process: `handle()` calls still running past their deadline, each holding a slot.
    public var hung = 0
    /// In process: most `handle()` calls at once; isolated: host processes configured.
    public var slots = 0
    /// Isolated: host processes running now.
    public var processesRunning = 0
    /// Isolated: whether the circuit breaker is open (calls refused until it half-opens).
    public var breakerOpen = false
    /// Call latency in microseconds (`p50`, `p99`, `max`); empty before the first answered call.
    public var latencyMicroseconds: [String: Int] = [:]
    /// What is wrong now (the health route shows it), nil when healthy.
    public var problem: String?

    /// A status with zero counts.
    public init(name: String, kind: PluginKind, path: String, isolation: String) {
        self.name = name
        self.kind = kind
        self.path = path
        self.isolation = isolation
    }

    /// Calls that got no answer from the plugin (the dispatcher sent the fallback, or unformatted responses).
    public var fallbacks: Int { errors + deadlineExpiries + refused }

    /// The JSON object of `GET /admin/plugins`.
    public var json: JSONValue {
        var object: JSONObject = [
            "name": .string(name), "kind": .string(kind.rawValue), "path": .string(path), "isolation": .string(isolation),
            "calls": .int(Int64(calls)), "errors": .int(Int64(errors)), "deadline_expiries": .int(Int64(deadlineExpiries)), "refused": .int(Int64(refused)),
            "fallbacks": .int(Int64(fallbacks)), "running": .int(Int64(running)), "hung": .int(Int64(hung)), "slots": .int(Int64(slots)),
            "latency_us": .object(JSONObject(latencyMicroseconds.sorted { $0.key < $1.key }.map { ($0.key, JSONValue.int(Int64($0.value))) })),
            "status": .string(problem == nil ? "ok" : "degraded"),
        ]
        if isolation == "process" {
            object["crashes"] = .int(Int64(crashes))
            object["restarts"] = .int(Int64(restarts))
            object["memory_recycles"] = .int(Int64(memoryRecycles))
            object["processes_running"] = .int(Int64(processesRunning))
            object["breaker"] = .string(breakerOpen ? "open" : "closed")
        }
        if let problem { object["problem"] = .string(problem) }
        return .object(object)
    }
}

/// Something that can say how a loaded plugin is doing.
public protocol PluginStatusReporting: Sendable {
    /// The plugin's status now.
    var status: PluginStatus { get }
}
