public import ParleyChannels
public import ParleyJSON

/// Everything `parley serve` needs, loaded from `parley.yml` (and optionally a Rasa `credentials.yml`).
///
/// Every field has a default, so an empty file (or no file) is a valid configuration except that serving
/// needs at least one agent (see ``validateForServing(file:)``). Paths are absolute or relative to the
/// working directory once loaded: the loader resolves paths written in a file against that file's folder.
public struct ParleyConfiguration: Sendable {
    /// Listening address, TLS, shutdown.
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
    /// Rasa-style conversation sessions.
    public var session: SessionConfiguration
    /// Mailboxes, deadlines and the fallback response.
    public var dispatcher: DispatcherConfiguration
    /// The conversation HTTP API.
    public var api: APIConfiguration
    /// `GET /metrics` for Prometheus.
    public var metrics: MetricsConfiguration = .init()
    /// Log level and format.
    public var logging: LoggingConfiguration
    /// Things the loader accepted but wants the user to know (ignored Rasa channels, Pro-only keys…),
    /// one line each, already prefixed with the file name. Log them at startup.
    public var warnings: [String]

    public init(
        server: ServerConfiguration = .init(),
        channels: ChannelsConfiguration = .init(),
        agents: [AgentConfiguration] = [],
        formatters: [FormatterConfiguration] = [],
        actions: ActionsConfiguration = .init(),
        store: StoreConfiguration = .init(),
        session: SessionConfiguration = .init(),
        dispatcher: DispatcherConfiguration = .init(),
        api: APIConfiguration = .init(),
        logging: LoggingConfiguration = .init(),
        warnings: [String] = []
    ) {
        self.server = server
        self.channels = channels
        self.agents = agents
        self.formatters = formatters
        self.actions = actions
        self.store = store
        self.session = session
        self.dispatcher = dispatcher
        self.api = api
        self.logging = logging
        self.warnings = warnings
    }
}

/// `server:`: where the HTTP server listens.
public struct ServerConfiguration: Sendable, Hashable {
    /// Bind address (`host`, default `127.0.0.1`; use `0.0.0.0` to listen on every interface).
    public var host: String
    /// TCP port (`port`, default 5005 as Rasa).
    public var port: Int
    /// TLS certificate and key (`tls: {cert, key}`), PEM files; nil serves plain HTTP.
    public var tls: TLSConfiguration?
    /// How long a graceful shutdown waits for running turns before closing (`shutdown_timeout`, seconds, default 10).
    public var shutdownTimeout: Double
    /// `limits:`: HTTP timeouts, request head limits and per-address connection limits.
    public var limits: ServerLimitsConfiguration
    /// `chat_page`: serve the chat page at `GET /chat` (default false; `make run`'s parley.yml turns it on).
    public var chatPage: Bool = false

    public init(
        host: String = "127.0.0.1", port: Int = 5005, tls: TLSConfiguration? = nil, shutdownTimeout: Double = 10,
        limits: ServerLimitsConfiguration = .init()
    ) {
        self.host = host
        self.port = port
        self.tls = tls
        self.shutdownTimeout = shutdownTimeout
        self.limits = limits
    }
}

/// `server.limits:` (mapped onto EngineIO's `HTTPConnectionLimits`; the defaults are the same).
public struct ServerLimitsConfiguration: Sendable, Hashable {
    /// Seconds to receive a complete first request head (`header_timeout`, default 10).
    public var headerTimeout: Double = 10
    /// Seconds a keep-alive connection may stay without a request (`idle_timeout`, default 60).
    public var idleTimeout: Double = 60
    /// Largest request head in bytes (`max_header_bytes`, default 32768).
    public var maxHeaderBytes: Int = 32 * 1024
    /// Most header fields in a request (`max_header_count`, default 100).
    public var maxHeaderCount: Int = 100
    /// Most open connections from one address (`max_connections_per_address`, default 256; 0 = no limit).
    public var maxConnectionsPerAddress: Int = 256
    /// New connections per second from one address (`connections_per_second_per_address`, default 50; 0 = no limit).
    public var connectionsPerSecondPerAddress: Double = 50
    /// New connections at once from one address (`connection_burst_per_address`, default 100).
    public var connectionBurstPerAddress: Int = 100
    /// Addresses the per-address limits skip (`exempt_addresses`, default 127.0.0.0/8 and ::1).
    public var exemptAddresses: [String] = ["127.0.0.0/8", "::1"]

    public init() {}
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
    /// Deadline of one call in seconds (`deadline`); nil = the dispatcher's `turn_deadline`.
    public var deadline: Double?
    /// Overrides what the plugin declares about thread safety (`thread_safe`); nil = trust the plugin.
    public var threadSafe: Bool?
    /// The configuration object handed to the plugin at init (`config`, default `{}`).
    public var config: JSONValue
    /// When this agent handles a message instead of the default agent (`route`); nil = no rule.
    public var route: AgentRoute?
    /// Most tracker events sent to the agent each turn (`tracker_events`); nil = what the plugin declares
    /// (`PARLEY_FLAG_NO_TRACKER_EVENTS` = none), else the dispatcher's limit (50). 0 sends an empty list.
    public var trackerEvents: Int?

    public init(name: String, pluginPath: String, deadline: Double? = nil, threadSafe: Bool? = nil, config: JSONValue = .object([:]), route: AgentRoute? = nil) {
        self.name = name
        self.pluginPath = pluginPath
        self.deadline = deadline
        self.threadSafe = threadSafe
        self.config = config
        self.route = route
    }
}

/// `agents[i].route:`: every given condition must hold.
public struct AgentRoute: Sendable, Hashable {
    /// The message text starts with this (`prefix`).
    public var prefix: String?
    /// Every key of this object is present in the message metadata with an equal value (`metadata`).
    public var metadata: JSONObject
    /// The message came in on one of these channels (`channels`: `socketio`, `rest`); nil = any.
    public var channels: [String]?

    public init(prefix: String? = nil, metadata: JSONObject = [:], channels: [String]? = nil) {
        self.prefix = prefix
        self.metadata = metadata
        self.channels = channels
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

    public init(name: String, pluginPath: String, channels: [String]? = nil, config: JSONValue = .object([:]), deadline: Double? = nil) {
        self.name = name
        self.pluginPath = pluginPath
        self.channels = channels
        self.config = config
        self.deadline = deadline
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
    }
    /// `type`: `sqlite` (default) or `memory`.
    public var kind: Kind
    /// The SQLite file (`path`, default `parley.db` in the working directory).
    public var path: String

    public init(kind: Kind = .sqlite, path: String = "parley.db") {
        self.kind = kind
        self.path = path
    }
}

/// `session:`: Rasa's session settings (`domain.yml` `session_config`).
public struct SessionConfiguration: Sendable, Hashable {
    /// Minutes of inactivity after which a new session starts (`session_expiration_time`, default 60; 0 = never).
    public var expirationMinutes: Double
    /// Whether slots carry over into the new session (`carry_over_slots_to_new_session`, default true).
    public var carryOverSlots: Bool

    public init(expirationMinutes: Double = 60, carryOverSlots: Bool = true) {
        self.expirationMinutes = expirationMinutes
        self.carryOverSlots = carryOverSlots
    }
}

/// `dispatcher:`: per-conversation mailboxes and turn limits.
public struct DispatcherConfiguration: Sendable, Hashable {
    /// Messages that may wait per conversation before new ones are refused (`mailbox_size`, default 64).
    public var mailboxSize: Int
    /// Deadline of one turn in seconds (`turn_deadline`, default 10).
    public var turnDeadline: Double
    /// The text sent when the agent fails or misses its deadline (`fallback_text`).
    public var fallbackText: String
    /// Seconds after which an idle conversation is evicted from memory (`idle_eviction`, default 300).
    public var idleEviction: Double
    /// Worker threads for plugin and action calls (`workers`, default 4).
    public var workers: Int
    /// Largest accepted message text in UTF-8 bytes (`max_message_bytes`, default 65536).
    public var maxMessageBytes: Int
    /// Deepest accepted message metadata (`max_metadata_depth`, default 32).
    public var maxMetadataDepth: Int
    /// Largest accepted message metadata as JSON, in bytes (`max_metadata_bytes`, default 16384).
    public var maxMetadataBytes: Int
    /// Most conversations held in memory (`max_resident_conversations`, default 20000).
    public var maxResidentConversations: Int = 20_000

    public init(
        mailboxSize: Int = 64,
        turnDeadline: Double = 10,
        fallbackText: String = "Sorry, something went wrong. Please try again.",
        idleEviction: Double = 300,
        workers: Int = 4,
        maxMessageBytes: Int = 65_536,
        maxMetadataDepth: Int = 32,
        maxMetadataBytes: Int = 16_384
    ) {
        self.mailboxSize = mailboxSize
        self.turnDeadline = turnDeadline
        self.fallbackText = fallbackText
        self.idleEviction = idleEviction
        self.workers = workers
        self.maxMessageBytes = maxMessageBytes
        self.maxMetadataDepth = maxMetadataDepth
        self.maxMetadataBytes = maxMetadataBytes
    }
}

/// `metrics:`: `GET /metrics` in Prometheus' text format (docs/operations.md lists every metric). Metrics hold
/// counts and durations only: no conversation id, sender or text.
public struct MetricsConfiguration: Sendable, Hashable {
    /// Whether `/metrics` is served (`enabled`, default true).
    public var enabled: Bool = true
    /// When set (`token`), scrapes must send `Authorization: Bearer <token>`.
    public var token: String?

    public init(enabled: Bool = true, token: String? = nil) {
        self.enabled = enabled
        self.token = token
    }
}

/// `logging:`.
public struct LoggingConfiguration: Sendable, Hashable {
    /// Log levels, as swift-log names them.
    public enum Level: String, Sendable, Hashable, CaseIterable {
        case trace, debug, info, notice, warning, error, critical
    }
    /// Output format.
    public enum Format: String, Sendable, Hashable, CaseIterable {
        /// `2026-01-01T10:00:00.000Z info parley.socketio: message key=value` lines.
        case text
        /// One JSON object per line.
        case json
    }
    /// `level`, default `info`.
    public var level: Level
    /// `format`, default `text`.
    public var format: Format

    public init(level: Level = .info, format: Format = .text) {
        self.level = level
        self.format = format
    }
}
