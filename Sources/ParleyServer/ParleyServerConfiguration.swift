public import EngineIO
public import ParleyChannels
public import ParleyDispatch
public import ParleyJSON
public import ParleyPostgres
public import SocketIORedis

/// Everything ``buildApplication(_:logger:metrics:)`` needs to serve a bot, made of the configuration structs
/// the libraries own: the channels' (`ParleyChannels`), the dispatcher's (`ParleyDispatch`), the HTTP limits
/// (`EngineIO`), and the few that only this library uses (server address, agents, store, metrics).
///
/// Every field has a default, so `ParleyServerConfiguration(agents: [...])` serves. `parley serve` fills it
/// from `parley.yml` (the `ParleyConfig` module, which maps YAML onto these structs and keeps no defaults of
/// its own); tests and embedders build it in code.
public struct ParleyServerConfiguration: Sendable {
    /// Listening address, TLS, HTTP limits, shutdown.
    public var server: ServerConfiguration
    /// Which channels are served and how.
    public var channels: ChannelsConfiguration
    /// Agent plugins; the first one without a route (or the first one) is the default agent.
    public var agents: [AgentConfiguration]
    /// Formatter plugins, applied in this order.
    public var formatters: [FormatterConfiguration]
    /// Plain C functions bound as actions through a manifest.
    public var actions: ActionsConfiguration
    /// The conversation store.
    public var store: StoreConfiguration
    /// Mailboxes, deadlines, the fallback response, input limits and Rasa sessions (`dispatcher:` and `session:`).
    public var dispatcher: DispatcherConfiguration
    /// Worker threads for plugin and action calls (`dispatcher.workers`, default 4).
    public var workers: Int
    /// Most worker threads, counting those started while others are held by plugin calls that block or hang
    /// (`dispatcher.max_threads`); nil: ``workers`` + 32. Keep it at least ``workers`` plus the slots of every
    /// thread-safe in-process plugin (`max_concurrent_calls`, 16 each by default) so that plugins hung in every
    /// slot still leave ``workers`` threads for everything else; `parley serve` warns when it is smaller.
    public var maxThreads: Int?
    /// The conversation HTTP API.
    public var api: APIConfiguration
    /// `GET /metrics` for Prometheus.
    public var metrics: MetricsConfiguration
    /// `adapter:`: Socket.IO rooms across nodes through Redis; nil keeps them in this process.
    public var redisAdapter: SocketIORedisConfiguration?
    /// The `parley-plugin-host` executable for agents with `isolation: process`; nil: the one beside the running
    /// executable.
    public var pluginHostExecutable: String?

    /// A configuration; every parameter has the default documented on its property.
    public init(
        server: ServerConfiguration = .init(),
        channels: ChannelsConfiguration = .init(),
        agents: [AgentConfiguration] = [],
        formatters: [FormatterConfiguration] = [],
        actions: ActionsConfiguration = .init(),
        store: StoreConfiguration = .init(),
        dispatcher: DispatcherConfiguration = .init(),
        workers: Int = 4,
        api: APIConfiguration = .init(),
        metrics: MetricsConfiguration = .init(),
        redisAdapter: SocketIORedisConfiguration? = nil
    ) {
        self.server = server
        self.channels = channels
        self.agents = agents
        self.formatters = formatters
        self.actions = actions
        self.store = store
        self.dispatcher = dispatcher
        self.workers = workers
        self.api = api
        self.metrics = metrics
        self.redisAdapter = redisAdapter
    }
}

/// `server:`: where the HTTP server listens.
public struct ServerConfiguration: Sendable {
    /// Bind address (`host`, default `127.0.0.1`; use `0.0.0.0` to listen on every interface).
    public var host: String
    /// TCP port (`port`, default 5005 as Rasa; 0 = any free port, see ``ParleyApplication/onServerRunning``).
    public var port: Int
    /// TLS certificate and key (`tls: {cert, key}`), PEM files; nil serves plain HTTP.
    public var tls: TLSConfiguration?
    /// How long a graceful shutdown waits for running turns before closing (`shutdown_timeout`, seconds, default 10).
    public var shutdownTimeout: Double
    /// `limits:`: HTTP timeouts, request head limits and per-address connection limits.
    public var limits: HTTPConnectionLimits
    /// `chat_page`: serve the chat page at `GET /chat` (default false; `make run`'s parley.yml turns it on).
    public var chatPage: Bool
    /// `node_id`: this node's name in a cluster (letters, digits, `_`, `-`; at most 32). Engine.IO session ids
    /// then start with `NODE_ID.`, so a front can send every request of a session to its node
    /// (docs/scaling.md); nil (default) leaves session ids as they are.
    public var nodeID: String?

    public init(
        host: String = "127.0.0.1", port: Int = 5005, tls: TLSConfiguration? = nil, shutdownTimeout: Double = 10,
        limits: HTTPConnectionLimits = .init(), chatPage: Bool = false, nodeID: String? = nil
    ) {
        self.host = host
        self.port = port
        self.tls = tls
        self.shutdownTimeout = shutdownTimeout
        self.limits = limits
        self.chatPage = chatPage
        self.nodeID = nodeID
    }

    /// Whether `id` is usable as a node id (the characters of Engine.IO session ids, 1 to 32 of them).
    public static func isValidNodeID(_ id: String) -> Bool {
        (1...32).contains(id.utf8.count)
            && id.utf8.allSatisfy { c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F || c == 0x2D
            }
    }
}

/// `server.tls:`: PEM certificate chain and private key.
public struct TLSConfiguration: Sendable, Hashable {
    /// Path of the PEM certificate chain (`cert`).
    public var certificatePath: String
    /// Path of the PEM private key (`key`).
    public var keyPath: String

    public init(certificatePath: String, keyPath: String) {
        self.certificatePath = certificatePath
        self.keyPath = keyPath
    }
}

/// `channels:`: a channel is served when its section is present (as in Rasa's `credentials.yml`). Without a
/// `channels:` section both `socketio` and `rest` are served with their defaults.
public struct ChannelsConfiguration: Sendable, Hashable {
    /// The Rasa-compatible Socket.IO channel, or nil when not served.
    public var socketIO: SocketIOChannelConfiguration?
    /// Rasa's REST channel, or nil when not served.
    public var rest: RESTChannelConfiguration?

    public init(socketIO: SocketIOChannelConfiguration? = .init(), rest: RESTChannelConfiguration? = .init()) {
        self.socketIO = socketIO
        self.rest = rest
    }
}

/// One `agents:` entry: a plugin that answers user messages.
public struct AgentConfiguration: Sendable, Hashable {
    /// Unique name, used in logs and routing (`name`).
    public var name: String
    /// Path of the plugin shared object (`plugin`).
    public var pluginPath: String
    /// Deadline of one turn answered by this agent, in seconds (`deadline`); nil = `dispatcher.turn_deadline`.
    public var deadline: Double?
    /// Overrides what the plugin declares about thread safety (`thread_safe`); nil = trust the plugin. `false`
    /// serialises every call of a plugin that declares itself thread-safe; `true` cannot make parallel a plugin
    /// that declared otherwise.
    public var threadSafe: Bool?
    /// The configuration object handed to the plugin at init (`config`, default `{}`).
    public var config: JSONValue
    /// When this agent handles a message instead of the default agent (`route`); nil = no rule.
    public var route: AgentRouteConditions?
    /// Most tracker events sent to the agent each turn (`tracker_events`); nil = what the plugin declares
    /// (`PARLEY_FLAG_NO_TRACKER_EVENTS` = none), else the dispatcher's limit (50). 0 sends an empty list.
    public var trackerEvents: Int?
    /// `isolation: process` and its settings: the plugin runs in host processes of its own, so a crash or hang
    /// costs only its turns; nil (`isolation: in_process`, the default): inside the server.
    public var isolation: ProcessIsolation?
    /// In process: most `handle()` calls of a thread-safe plugin at once (`max_concurrent_calls`); nil: 16.
    public var maxConcurrentCalls: Int?

    /// Whether the plugin runs in host processes of its own.
    public var isolated: Bool { isolation != nil }

    public init(
        name: String, pluginPath: String, deadline: Double? = nil, threadSafe: Bool? = nil, config: JSONValue = .object([:]),
        route: AgentRouteConditions? = nil, trackerEvents: Int? = nil
    ) {
        self.name = name
        self.pluginPath = pluginPath
        self.deadline = deadline
        self.threadSafe = threadSafe
        self.config = config
        self.route = route
        self.trackerEvents = trackerEvents
    }
}

/// `agents[i].route:`: the one condition under which this agent answers instead of the default agent.
public struct AgentRouteConditions: Sendable, Hashable {
    /// The message text starts with this (`prefix`).
    public var prefix: String?
    /// The message metadata has this key with an equal value (`metadata`, one key).
    public var metadata: JSONObject
    /// The message came in on this channel (`channels`: one of `socketio`, `rest`).
    public var channels: [String]?

    public init(prefix: String? = nil, metadata: JSONObject = [:], channels: [String]? = nil) {
        self.prefix = prefix
        self.metadata = metadata
        self.channels = channels
    }

    /// The dispatcher's rule for these conditions.
    /// - Throws: ``RouteError`` unless exactly one condition is given.
    public func rule() throws(RouteError) -> AgentRoute.Rule {
        var rules: [AgentRoute.Rule] = []
        if let prefix { rules.append(.prefix(prefix)) }
        for (key, value) in metadata { rules.append(.metadata(key: key, value: value)) }
        for channel in channels ?? [] { rules.append(.channel(channel)) }
        guard rules.count == 1, let rule = rules.first else { throw RouteError(conditions: rules.count) }
        return rule
    }
}

/// A route with other than one condition.
public struct RouteError: Error, Sendable, Hashable, CustomStringConvertible {
    /// How many conditions were given.
    public let conditions: Int

    /// A route with `conditions` conditions.
    public init(conditions: Int) {
        self.conditions = conditions
    }

    public var description: String {
        "give exactly one condition (prefix, one metadata key, or one channel); got \(conditions)"
    }
}

/// One `formatters:` entry, applied in list order.
public struct FormatterConfiguration: Sendable, Hashable {
    /// Unique name (`name`).
    public var name: String
    /// Path of the plugin shared object (`plugin`).
    public var pluginPath: String
    /// The channels it applies to (`channels`); nil = every channel.
    public var channels: [String]?
    /// The configuration object handed to the plugin at init (`config`, default `{}`).
    public var config: JSONValue
    /// Deadline of one call in seconds (`deadline`); nil = the dispatcher's `turn_deadline`.
    public var deadline: Double?
    /// `isolation: process` and its settings; nil: inside the server (the default).
    public var isolation: ProcessIsolation?
    /// In process: most `format` calls of a thread-safe formatter at once (`max_concurrent_calls`); nil: 16.
    public var maxConcurrentCalls: Int?

    /// Whether the plugin runs in host processes of its own.
    public var isolated: Bool { isolation != nil }

    public init(name: String, pluginPath: String, channels: [String]? = nil, config: JSONValue = .object([:]), deadline: Double? = nil) {
        self.name = name
        self.pluginPath = pluginPath
        self.channels = channels
        self.config = config
        self.deadline = deadline
    }
}

/// The settings of a plugin with `isolation: process` (an `agents:` or `formatters:` entry).
public struct ProcessIsolation: Sendable, Hashable {
    /// Host processes of the plugin (`processes`, default 1); calls go to the least busy one. More than one gives
    /// a plugin that is not thread-safe parallelism (each process runs one call at a time).
    public var processes: Int
    /// Resident memory of each host process in bytes (`memory_limit_mb`); nil: none. Checked after every call: a
    /// host at the limit is replaced between calls (it finishes its calls, a new one takes the next; none is lost);
    /// one at 1.5 times the limit (a leak inside one call) exits at once and is restarted.
    public var memoryLimit: Int?
    /// Address-space limit of each host process in bytes (`address_space_limit_mb`, RLIMIT_AS); nil: none.
    /// Allocations past it fail, which the plugin must survive (or crash, costing its calls).
    public var addressSpaceLimit: Int?
    /// CPU-time limit of each host process in seconds (`cpu_limit_seconds`, RLIMIT_CPU); nil: none. At the limit
    /// the kernel ends the process (SIGXCPU) and the host is restarted with a fresh budget.
    public var cpuSeconds: Int?
    /// Most open file descriptors of each host process (`open_files_limit`, RLIMIT_NOFILE); nil: inherited.
    public var openFiles: Int?

    public init(
        processes: Int = 1, memoryLimit: Int? = nil, addressSpaceLimit: Int? = nil, cpuSeconds: Int? = nil, openFiles: Int? = nil
    ) {
        self.processes = max(1, processes)
        self.memoryLimit = memoryLimit
        self.addressSpaceLimit = addressSpaceLimit
        self.cpuSeconds = cpuSeconds
        self.openFiles = openFiles
    }
}

/// `actions:`: C functions bound through libffi.
public struct ActionsConfiguration: Sendable, Hashable {
    /// Path of the action manifest (`manifest`); nil = no actions.
    public var manifestPath: String?

    public init(manifestPath: String? = nil) {
        self.manifestPath = manifestPath
    }
}

/// `store:`: where conversations are kept.
public struct StoreConfiguration: Sendable, Hashable {
    /// The kind of store.
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        /// SQLite through GRDB, WAL mode (the default).
        case sqlite
        /// In memory; lost on exit.
        case memory
        /// PostgreSQL, shared by every node of a cluster (docs/scaling.md).
        case postgres
    }
    /// `type`: `sqlite` (default), `memory` or `postgres`.
    public var kind: Kind
    /// The SQLite file (`path`, default `parley.db` in the working directory).
    public var path: String
    /// Where the PostgreSQL store connects (`url`, `schema`, `pool_size`); set when `kind` is `.postgres`.
    public var postgres: PostgresStoreConfiguration?

    public init(kind: Kind = .sqlite, path: String = "parley.db", postgres: PostgresStoreConfiguration? = nil) {
        self.kind = kind
        self.path = path
        self.postgres = postgres
    }
}

/// `metrics:`: `GET /metrics` in Prometheus' text format (docs/operations.md lists every metric). Metrics hold
/// counts and durations only: no conversation id, sender or text.
public struct MetricsConfiguration: Sendable, Hashable {
    /// Whether `/metrics` is served (`enabled`, default true).
    public var enabled: Bool
    /// When set (`token`), scrapes must send `Authorization: Bearer <token>`.
    public var token: String?

    public init(enabled: Bool = true, token: String? = nil) {
        self.enabled = enabled
        self.token = token
    }
}

extension ParleyServerConfiguration {
    /// What serving needs beyond well-formed settings: at least one agent and one channel, and the JWT settings
    /// that `api.session_token` relies on. The message names the key and the fix.
    public func validate() throws(StartupError) {
        if agents.isEmpty {
            throw StartupError(key: "agents", "at least one agent is required, e.g.\n  agents:\n    - name: mirror\n      plugin: build/plugins/libmirror.so")
        }
        if channels.socketIO == nil && channels.rest == nil {
            throw StartupError(key: "channels", "no channel is configured; add socketio: and/or rest:")
        }
        if api.sessionToken && channels.socketIO?.jwt?.sessionClaim == nil {
            throw StartupError(
                key: "api.session_token", "needs the Socket.IO channel's jwt_key and jwt_session_claim (the token names the session it may read)")
        }
        for (i, agent) in agents.enumerated() {
            if let route = agent.route {
                do { _ = try route.rule() } catch { throw StartupError(key: "agents[\(i)].route", error.description) }
            }
        }
    }
}

/// Why the application could not be built or started: the configuration key (when one is at fault), what
/// happened and the fix, in one line.
public struct StartupError: Error, Sendable, CustomStringConvertible {
    /// The configuration key at fault (`agents[0].route`, `server.tls.cert`), or nil.
    public let key: String?
    /// What happened and the fix.
    public let message: String

    /// An error about `key` (nil: no particular key).
    public init(key: String? = nil, _ message: String) {
        self.key = key
        self.message = message
    }

    public var description: String { key.map { "\($0): \(message)" } ?? message }
}
