public import EngineIO
import Foundation
import NIOCore
public import ParleyChannels
import ParleyDispatch
import ParleyJSON
public import ParleyYAML
import ParleyPostgres
import SocketIO
import SocketIORedis
public import ParleyServer

/// Loads ``ParleyConfiguration`` from `parley.yml` and/or a Rasa `credentials.yml`.
///
/// - Unknown keys and wrong types throw ``ConfigError`` naming the file, the key path and what was expected.
/// - `${NAME}` and `${NAME:-default}` in values are replaced from ``environment`` (`$${` keeps a literal `${`).
/// - Relative paths written in a file are resolved against that file's folder.
public struct ConfigurationLoader: Sendable {
    /// The environment used for `${…}` substitution and `jwt_key_env`.
    public var environment: [String: String]

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.environment = environment
    }

    /// The top-level sections of `parley.yml`.
    public static let sections = [
        "server", "channels", "agents", "formatters", "actions", "store", "session", "dispatcher", "api", "metrics", "logging", "adapter",
    ]

    /// Rasa's built-in channel names other than the two Parley serves; they are reported as ignored.
    static let rasaChannels = [
        "rasa", "callback", "facebook", "slack", "telegram", "twilio", "twilio_voice", "mattermost", "rocketchat",
        "botframework", "microsoftbotframework", "webexteams", "hangouts", "cisco", "console", "audiocodes", "genesys",
        "vier_cvg", "twilio_media_streams", "browser_audio", "studio_chat", "development_inspector",
    ]

    /// Loads the configuration `parley serve` runs with.
    ///
    /// - Parameters:
    ///   - configPath: the `--config` file; when nil, `parley.yml` in the working directory is used if it exists.
    ///   - credentialsPath: a Rasa `credentials.yml` (`--credentials`); its `socketio:` and `rest:` sections become
    ///     the served channels, replacing any `channels:` section of the configuration file.
    /// - Throws: ``ConfigError`` for a missing or unreadable file, invalid YAML, unknown keys or wrong types.
    public func load(configPath: String?, credentialsPath: String?) throws(ConfigError) -> ParleyConfiguration {
        var config: ParleyConfiguration
        var hadChannels = false
        if let configPath {
            let text = try read(configPath, what: "configuration file", hint: "pass --config with an existing file")
            (config, hadChannels) = try parseConfig(yaml: text, file: configPath, baseDirectory: Self.directory(of: configPath))
        } else if FileManager.default.fileExists(atPath: "parley.yml") {
            let text = try read("parley.yml", what: "configuration file", hint: "")
            (config, hadChannels) = try parseConfig(yaml: text, file: "parley.yml", baseDirectory: ".")
        } else {
            config = ParleyConfiguration()
        }
        if let credentialsPath {
            let text = try read(credentialsPath, what: "credentials file", hint: "pass --credentials with an existing Rasa credentials.yml")
            let (channels, warnings) = try parseCredentials(yaml: text, file: credentialsPath, baseDirectory: Self.directory(of: credentialsPath))
            if hadChannels {
                config.warnings.append("\(credentialsPath): its channels replace the channels section of \(configPath ?? "parley.yml")")
            }
            config.channels = channels
            config.warnings += warnings
        }
        return config
    }

    /// Parses the text of a `parley.yml`.
    /// - Parameters:
    ///   - file: the name used in error messages.
    ///   - baseDirectory: the folder relative paths are resolved against.
    public func parse(yaml: String, file: String = "parley.yml", baseDirectory: String = ".") throws(ConfigError) -> ParleyConfiguration {
        try parseConfig(yaml: yaml, file: file, baseDirectory: baseDirectory).0
    }

    /// Parses a Rasa `credentials.yml`: returns the channels it enables and warnings for the sections ignored.
    public func parseCredentials(
        yaml: String, file: String = "credentials.yml", baseDirectory: String = "."
    ) throws(ConfigError) -> (ChannelsConfiguration, [String]) {
        let document = try ConfigParser(file: file, environment: environment).parseDocument(yaml)
        do {
            return try readCredentials(document.root, file: file, baseDirectory: baseDirectory)
        } catch {
            throw document.locate(error)
        }
    }

    private func readCredentials(_ root: ConfigNode?, file: String, baseDirectory: String) throws(ConfigError) -> (ChannelsConfiguration, [String]) {
        var reader = try MapReader(root, file: file, path: "", what: "a mapping of channel names (socketio:, rest:, …)")
        var ctx = Context(file: file, base: baseDirectory, environment: environment)
        var channels = ChannelsConfiguration(socketIO: nil, rest: nil)
        if reader.has("socketio") {
            channels.socketIO = try ctx.socketIO(reader.node("socketio"), path: "socketio")
        }
        if reader.has("rest") {
            channels.rest = try ctx.rest(reader.node("rest"), path: "rest")
        }
        for key in reader.keys where key != "socketio" && key != "rest" {
            let kind = Self.rasaChannels.contains(key) ? "Rasa channel" : "channel"
            ctx.warnings.append("\(file): \(key): \(kind) \"\(key)\" is not supported by Parley and is ignored (Parley serves socketio and rest)")
        }
        if channels.socketIO == nil && channels.rest == nil {
            ctx.warnings.append("\(file): no socketio: or rest: section, so no channel is served")
        }
        return (channels, ctx.warnings)
    }

    private func parseConfig(yaml: String, file: String, baseDirectory: String) throws(ConfigError) -> (ParleyConfiguration, Bool) {
        let document = try ConfigParser(file: file, environment: environment).parseDocument(yaml)
        do {
            return try readConfig(document.root, file: file, baseDirectory: baseDirectory)
        } catch {
            throw document.locate(error)
        }
    }

    private func readConfig(_ root: ConfigNode?, file: String, baseDirectory: String) throws(ConfigError) -> (ParleyConfiguration, Bool) {
        var top = try MapReader(root, file: file, path: "", what: "a mapping with sections such as server:, channels:, agents:")
        var ctx = Context(file: file, base: baseDirectory, environment: environment)
        var config = ParleyConfiguration()
        let hadChannels = top.has("channels")
        config.server = try ctx.server(top.node("server"))
        let channelsNode = top.node("channels")
        if hadChannels { config.channels = try ctx.channels(channelsNode) }
        config.agents = try ctx.agents(top.node("agents"))
        config.formatters = try ctx.formatters(top.node("formatters"))
        config.actions = try ctx.actions(top.node("actions"))
        config.store = try ctx.store(top.node("store"))
        try ctx.dispatcher(top.node("dispatcher"), into: &config.application)
        try ctx.session(top.node("session"), into: &config.dispatcher)
        config.api = try ctx.api(top.node("api"))
        config.metrics = try ctx.metrics(top.node("metrics"))
        config.redisAdapter = try ctx.adapter(top.node("adapter"))
        config.logging = try ctx.logging(top.node("logging"))
        try top.finish()
        config.warnings = ctx.warnings
        return (config, hadChannels)
    }

    private func read(_ path: String, what: String, hint: String) throws(ConfigError) -> String {
        guard FileManager.default.fileExists(atPath: path) else {
            throw ConfigError(file: path, keyPath: "", message: "\(what) not found" + (hint.isEmpty ? "" : "; \(hint)"))
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(file: path, keyPath: "", message: "cannot read the \(what) (check its permissions)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(file: path, keyPath: "", message: "the \(what) is not UTF-8 text")
        }
        return text
    }

    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let dir = String(path[..<slash])
        return dir.isEmpty ? "/" : dir
    }
}

/// Per-file state while reading sections.
private struct Context {
    let file: String
    let base: String
    let environment: [String: String]
    var warnings: [String] = []

    init(file: String, base: String, environment: [String: String]) {
        self.file = file
        self.base = base
        self.environment = environment
    }

    func resolve(_ path: String) -> String {
        if path.hasPrefix("/") || base == "." || base.isEmpty { return path }
        return base.hasSuffix("/") ? base + path : base + "/" + path
    }

    func reader(_ node: ConfigNode?, _ path: String) throws(ConfigError) -> MapReader {
        try MapReader(node, file: file, path: path)
    }

    mutating func server(_ node: ConfigNode?) throws(ConfigError) -> ServerConfiguration {
        var r = try reader(node, "server")
        var s = ServerConfiguration()
        if let host = try r.nonEmptyString("host", expected: "a host name or IP address") { s.host = host }
        if let port = try r.int("port", expected: "a TCP port number", range: 0...65535) { s.port = port }
        if let t = r.value("tls") {
            var tr = try MapReader(t, file: file, path: "server.tls", what: "a mapping with cert: and key:")
            guard let cert = try tr.nonEmptyString("cert", expected: "the path of a PEM certificate") else {
                throw ConfigError(file: file, keyPath: "server.tls.cert", message: "missing; give the path of the PEM certificate chain")
            }
            guard let key = try tr.nonEmptyString("key", expected: "the path of a PEM private key") else {
                throw ConfigError(file: file, keyPath: "server.tls.key", message: "missing; give the path of the PEM private key")
            }
            try tr.finish()
            s.tls = TLSConfiguration(certificatePath: resolve(cert), keyPath: resolve(key))
        }
        if let t = try r.seconds("shutdown_timeout", allowZero: true) { s.shutdownTimeout = t }
        if let v = try r.bool("chat_page") { s.chatPage = v }
        if let id = try r.nonEmptyString("node_id", expected: "a node name such as n1") {
            guard ServerConfiguration.isValidNodeID(id) else {
                throw r.error("node_id", "`\(id)` may hold only letters, digits, _ and - (at most 32): it starts every Engine.IO session id")
            }
            s.nodeID = id
        }
        if r.has("limits") {
            var l = try reader(r.node("limits"), "server.limits")
            if let v = try l.seconds("header_timeout") { s.limits.headerTimeout = .nanoseconds(Int64(v * 1e9)) }
            if let v = try l.seconds("idle_timeout") { s.limits.idleTimeout = .nanoseconds(Int64(v * 1e9)) }
            if let v = try l.int("max_header_bytes", expected: "a number of bytes", range: 1024...1_048_576) { s.limits.maxHeaderBytes = v }
            if let v = try l.int("max_header_count", expected: "a number of header fields", range: 8...10_000) { s.limits.maxHeaderCount = v }
            if let v = try l.int("max_connections_per_address", expected: "a number of connections (0 = no limit)", range: 0...10_000_000) {
                s.limits.maxConnectionsPerAddress = v
            }
            if let v = try l.number("connections_per_second_per_address", expected: "connections per second (0 = no limit)", range: 0...10_000_000) {
                s.limits.connectionsPerSecondPerAddress = v
            }
            if let v = try l.int("connection_burst_per_address", expected: "a number of connections", range: 1...10_000_000) {
                s.limits.connectionBurstPerAddress = v
            }
            if let v = try l.stringList("exempt_addresses", expected: "a list of addresses or IPv4 CIDR blocks such as 10.0.0.0/8") {
                s.limits.exemptAddresses = v
            }
            try l.finish()
        }
        try r.finish()
        return s
    }

    mutating func channels(_ node: ConfigNode?) throws(ConfigError) -> ChannelsConfiguration {
        var r = try reader(node, "channels")
        var c = ChannelsConfiguration(socketIO: nil, rest: nil)
        if r.has("socketio") { c.socketIO = try socketIO(r.node("socketio"), path: "channels.socketio") }
        if r.has("rest") { c.rest = try rest(r.node("rest"), path: "channels.rest") }
        try r.finish()
        if c.socketIO == nil && c.rest == nil {
            warnings.append("\(file): channels: no channel is configured (add socketio: or rest:)")
        }
        return c
    }

    mutating func socketIO(_ node: ConfigNode?, path: String) throws(ConfigError) -> SocketIOChannelConfiguration {
        var r = try reader(node, path)
        var c = SocketIOChannelConfiguration()
        if let v = try r.nonEmptyString("user_message_evt", expected: "an event name") { c.userMessageEvent = v }
        if let v = try r.nonEmptyString("bot_message_evt", expected: "an event name") { c.botMessageEvent = v }
        if let ns = try r.string("namespace", expected: "a namespace such as /chat"), !ns.isEmpty {
            guard ns.hasPrefix("/") else {
                throw r.error("namespace", "expected a namespace starting with /, got \(JSONValue.string(ns).serialized); write \"/\(ns)\"")
            }
            c.namespace = ns
        }
        if let v = try r.bool("session_persistence") { c.sessionPersistence = v }
        if let p = try r.string("socketio_path", expected: "a URL path such as /socket.io") {
            let trimmed = p.split(separator: "/", omittingEmptySubsequences: true).joined(separator: "/")
            guard !trimmed.isEmpty else { throw r.error("socketio_path", "expected a URL path such as /socket.io, got \(JSONValue.string(p).serialized)") }
            guard trimmed.allSatisfy({ $0.isASCII && !$0.isWhitespace && $0 != "?" && $0 != "#" }) else {
                throw r.error("socketio_path", "expected a URL path such as /socket.io, got \(JSONValue.string(p).serialized)")
            }
            c.socketIOPath = "/" + trimmed
        }
        if let v = try r.nonEmptyString("metadata_key", expected: "a key name") { c.metadataKey = v }

        c.jwt = try jwt(&r, connections: "connections")
        if let v = try r.string("error_event", expected: "an event name, or \"\" for none") { c.errorEvent = v }
        if let v = try r.int("max_attachments", expected: "a number of binary attachments", range: 0...10_000) { c.maxAttachments = v }
        if let v = try r.int("max_attachment_bytes", expected: "a number of bytes", range: 0...1_073_741_824) { c.maxAttachmentBytes = v }
        if let v = try r.int("pending_attachment_budget", expected: "a number of bytes", range: 0...68_719_476_736) { c.pendingAttachmentBudget = v }
        if r.has("rate_limit") {
            var limit = try reader(r.node("rate_limit"), r.childPath("rate_limit"))
            if let v = try limit.number("messages_per_second", expected: "messages per second (0 = no limit)", range: 0...1_000_000) { c.messagesPerSecond = v }
            if let v = try limit.int("burst", expected: "a number of messages", range: 1...1_000_000) { c.messageBurst = v }
            try limit.finish()
        }

        if let origins = try r.stringList("cors_origins", expected: "\"*\" or a list of origins such as https://example.com") {
            for (i, o) in origins.enumerated() where o != "*" && !(o.hasPrefix("http://") || o.hasPrefix("https://")) {
                throw ConfigError(
                    file: file, keyPath: "\(r.childPath("cors_origins"))[\(i)]",
                    message: "expected \"*\" or an origin such as https://example.com, got \(JSONValue.string(o).serialized)")
            }
            c.corsOrigins = origins
        }
        if let v = try r.seconds("ping_interval") { c.pingInterval = v }
        if let v = try r.seconds("ping_timeout") { c.pingTimeout = v }
        if let v = try r.int("max_payload", expected: "a number of bytes", range: 1...1_073_741_824) { c.maxPayload = v }
        if r.has("per_message_deflate") {
            c.perMessageDeflate = try perMessageDeflate(r.node("per_message_deflate"), path: r.childPath("per_message_deflate"))
        }
        if r.has("connection_state_recovery") {
            let path = r.childPath("connection_state_recovery")
            switch r.node("connection_state_recovery") {
            case nil: break
            case .scalar(let sc)? where sc.bool != nil:
                c.connectionStateRecovery = sc.bool == true ? SocketIOConnectionStateRecovery() : nil
            case let node? where node.isNull: break
            case let node?:
                var recovery = try reader(node, path)
                var settings = SocketIOConnectionStateRecovery()
                if let v = try recovery.seconds("max_disconnection_duration") { settings.maxDisconnectionDuration = .milliseconds(Int64(v * 1000)) }
                if let v = try recovery.bool("skip_middlewares") { settings.skipMiddlewares = v }
                if let v = try recovery.int("max_packets", expected: "a number of events", range: 1...10_000_000) { settings.maxPackets = v }
                try recovery.finish()
                c.connectionStateRecovery = settings
            }
        }
        if r.has("typing") {
            var typing = try reader(r.node("typing"), r.childPath("typing"))
            func event(_ key: String, _ defaultName: String) throws(ConfigError) -> SocketIOChannelConfiguration.TypingEvent {
                guard typing.has(key) else { return .init(event: defaultName, payload: .object([:])) }
                var e = try reader(typing.node(key), typing.childPath(key))
                let name = try e.nonEmptyString("event", expected: "an event name") ?? defaultName
                let payload = e.has("payload") ? (e.json("payload") ?? .null) : .object([:])
                try e.finish()
                return .init(event: name, payload: payload)
            }
            c.typing = .init(on: try event("on", "typing_on"), off: try event("off", "typing_off"))
            try typing.finish()
        }
        if r.has("enable_silence_timeout") {
            _ = try r.bool("enable_silence_timeout")
            warnings.append("\(file): \(r.childPath("enable_silence_timeout")): Rasa Pro's silence timeout is not supported and is ignored")
        }
        try r.finish()
        return c
    }

    /// `per_message_deflate`: false/null (off), true (defaults) or a mapping of settings.
    func perMessageDeflate(_ node: ConfigNode?, path: String) throws(ConfigError) -> PerMessageDeflate? {
        let expected = "true, false or a mapping (threshold, server_no_context_takeover, client_no_context_takeover, max_window_bits, compression_level)"
        guard let node, !node.isNull else { return nil }
        switch node {
        case .scalar(let s):
            guard let on = s.bool else { throw ConfigError(file: file, keyPath: path, message: "expected \(expected), got \(node.shortDescription)") }
            return on ? PerMessageDeflate() : nil
        case .sequence:
            throw ConfigError(file: file, keyPath: path, message: "expected \(expected), got \(node.shortDescription)")
        case .mapping:
            var r = try reader(node, path)
            var c = PerMessageDeflate()
            if let v = try r.int("threshold", expected: "a number of bytes", range: 0...1_073_741_824) { c.threshold = v }
            if let v = try r.bool("server_no_context_takeover") { c.serverNoContextTakeover = v }
            if let v = try r.bool("client_no_context_takeover") { c.clientNoContextTakeover = v }
            if let v = try r.int("max_window_bits", expected: "a window size in bits", range: 9...15) { c.maxWindowBits = v }
            if let v = try r.int("compression_level", expected: "a zlib level", range: 1...9) { c.compressionLevel = v }
            try r.finish()
            return c
        }
    }

    /// The `jwt_key` / `jwt_key_file` / `jwt_key_env`, `jwt_method` and `jwt_session_claim` keys of a channel
    /// section; nil when no key is set. `connections` names what goes unauthenticated in the empty-key warning.
    mutating func jwt(_ r: inout MapReader, connections: String) throws(ConfigError) -> JWTConfiguration? {
        // JWT: the key inline (Rasa's jwt_key), from a file, or from an environment variable.
        let inline = try r.string("jwt_key", expected: "the JWT secret or PEM public key")
        let keyFile = try r.nonEmptyString("jwt_key_file", expected: "the path of a file holding the JWT key")
        let keyEnv = try r.nonEmptyString("jwt_key_env", expected: "the name of an environment variable holding the JWT key")
        let given = [inline.map { _ in "jwt_key" }, keyFile.map { _ in "jwt_key_file" }, keyEnv.map { _ in "jwt_key_env" }].compactMap { $0 }
        if given.count > 1 {
            throw ConfigError(
                file: file, keyPath: r.childPath(given[1]),
                message: "give only one of jwt_key, jwt_key_file and jwt_key_env (found \(given.joined(separator: " and ")))")
        }
        var key: (String, String)?
        if let inline {
            if inline.isEmpty {
                warnings.append("\(file): \(r.childPath("jwt_key")): empty, so \(connections) are not authenticated (as in Rasa)")
            } else {
                key = (inline, r.childPath("jwt_key"))
            }
        } else if let keyFile {
            let path = resolve(keyFile)
            guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
                throw r.error("jwt_key_file", "cannot read \(JSONValue.string(path).serialized); check that the file exists and is readable")
            }
            let trimmed = text.trimmingSpaces
            guard !trimmed.isEmpty else { throw r.error("jwt_key_file", "the file \(JSONValue.string(path).serialized) is empty") }
            key = (trimmed, "file \(path)")
        } else if let keyEnv {
            guard let v = environment[keyEnv], !v.isEmpty else {
                throw r.error("jwt_key_env", "environment variable \(keyEnv) is not set or empty")
            }
            key = (v, "environment variable \(keyEnv)")
        }
        let methodWasGiven = r.has("jwt_method")
        var method = "HS256"
        if let m = try r.string("jwt_method", expected: "one of \(JWTConfiguration.supportedMethods.joined(separator: ", "))") {
            if m.lowercased() == "none" {
                throw r.error(
                    "jwt_method", "\"none\" is never accepted (unsigned tokens); use one of \(JWTConfiguration.supportedMethods.joined(separator: ", "))")
            }
            guard let canonical = JWTConfiguration.supportedMethods.first(where: { $0.lowercased() == m.lowercased() }) else {
                throw r.error(
                    "jwt_method", "expected one of \(JWTConfiguration.supportedMethods.joined(separator: ", ")), got \(JSONValue.string(m).serialized)")
            }
            method = canonical
        }
        let claim = try r.nonEmptyString("jwt_session_claim", expected: "a claim name such as sub")
        if let (k, source) = key {
            return JWTConfiguration(key: k, keySource: source, method: method, sessionClaim: claim)
        } else {
            if claim != nil {
                throw r.error("jwt_session_claim", "needs a JWT key; set jwt_key, jwt_key_file or jwt_key_env")
            }
            if methodWasGiven && inline == nil {
                warnings.append("\(file): \(r.childPath("jwt_method")): ignored because no jwt_key is set")
            }
        }
        return nil
    }

    mutating func rest(_ node: ConfigNode?, path: String) throws(ConfigError) -> RESTChannelConfiguration {
        var r = try reader(node, path)
        var c = RESTChannelConfiguration()
        if let v = try r.int("max_body_size", expected: "a number of bytes", range: 1...1_073_741_824) { c.maxBodySize = v }
        c.jwt = try jwt(&r, connections: "REST requests")
        try r.finish()
        return c
    }

    func list(_ node: ConfigNode?, _ path: String, what: String) throws(ConfigError) -> [ConfigNode] {
        switch node {
        case nil: return []
        case .sequence(let items)?: return items
        case .some(let n) where n.isNull: return []
        case .some(let n): throw ConfigError(file: file, keyPath: path, message: "expected a list of \(what), got \(n.shortDescription)")
        }
    }

    mutating func agents(_ node: ConfigNode?) throws(ConfigError) -> [AgentConfiguration] {
        var out: [AgentConfiguration] = []
        for (i, item) in try list(node, "agents", what: "agents (- name: …, plugin: …)").enumerated() {
            let path = "agents[\(i)]"
            var r = try MapReader(item, file: file, path: path, what: "a mapping with name: and plugin:")
            guard let name = try r.nonEmptyString("name", expected: "an agent name") else {
                throw ConfigError(file: file, keyPath: "\(path).name", message: "missing; every agent needs a name")
            }
            if out.contains(where: { $0.name == name }) {
                throw ConfigError(
                    file: file, keyPath: "\(path).name", message: "duplicate agent name \(JSONValue.string(name).serialized); names must be unique")
            }
            guard let plugin = try r.nonEmptyString("plugin", expected: "the path of the agent's shared object") else {
                throw ConfigError(
                    file: file, keyPath: "\(path).plugin", message: "missing; give the path of the agent's shared object (e.g. build/plugins/libmirror.so)")
            }
            var agent = AgentConfiguration(name: name, pluginPath: resolve(plugin))
            agent.deadline = try r.seconds("deadline")
            agent.threadSafe = try r.bool("thread_safe")
            agent.trackerEvents = try r.int("tracker_events", expected: "a number of events (0 = none)", range: 0...100_000)
            agent.config = try pluginConfig(&r)
            (agent.isolation, agent.maxConcurrentCalls) = try isolation(&r)
            if let routeNode = r.value("route") {
                var rr = try MapReader(routeNode, file: file, path: "\(path).route", what: "a mapping with prefix:, metadata: or channels:")
                var route = AgentRouteConditions()
                route.prefix = try rr.nonEmptyString("prefix", expected: "a text prefix such as /admin")
                if let m = rr.value("metadata") {
                    guard case .object(let o) = m.json else {
                        throw ConfigError(
                            file: file, keyPath: "\(path).route.metadata", message: "expected a mapping of metadata keys to values, got \(m.shortDescription)")
                    }
                    route.metadata = o
                }
                route.channels = try channelList(&rr, "channels")
                try rr.finish()
                agent.route = route
            }
            try r.finish()
            out.append(agent)
        }
        return out
    }

    /// `isolation`, its limits and `processes`, and `max_concurrent_calls` of an agent or formatter entry.
    func isolation(_ r: inout MapReader) throws(ConfigError) -> (ProcessIsolation?, Int?) {
        let isolated = try r.choice("isolation", ["in_process", "process"]) == "process"
        var settings = ProcessIsolation()
        func onlyIsolated(_ key: String) throws(ConfigError) {
            guard isolated else { throw r.error(key, "only with isolation: process (it applies to the plugin's host processes)") }
        }
        if let n = try r.int("processes", expected: "a number of host processes", range: 1...64) {
            try onlyIsolated("processes")
            settings.processes = n
        }
        if let mb = try r.int("memory_limit_mb", expected: "megabytes of resident memory for the host process", range: 16...1_048_576) {
            try onlyIsolated("memory_limit_mb")
            settings.memoryLimit = mb << 20
        }
        if let mb = try r.int("address_space_limit_mb", expected: "megabytes of address space for the host process", range: 64...16_777_216) {
            try onlyIsolated("address_space_limit_mb")
            settings.addressSpaceLimit = mb << 20
        }
        if let seconds = try r.int("cpu_limit_seconds", expected: "seconds of CPU time for the host process", range: 1...31_536_000) {
            try onlyIsolated("cpu_limit_seconds")
            settings.cpuSeconds = seconds
        }
        if let files = try r.int("open_files_limit", expected: "a number of open files for the host process", range: 16...1_048_576) {
            try onlyIsolated("open_files_limit")
            settings.openFiles = files
        }
        let slots = try r.int("max_concurrent_calls", expected: "a number of calls at once", range: 1...1024)
        if slots != nil && isolated {
            throw r.error("max_concurrent_calls", "only with isolation: in_process (an isolated plugin runs in processes: N host processes)")
        }
        return (isolated ? settings : nil, slots)
    }

    mutating func formatters(_ node: ConfigNode?) throws(ConfigError) -> [FormatterConfiguration] {
        var out: [FormatterConfiguration] = []
        for (i, item) in try list(node, "formatters", what: "formatters (- name: …, plugin: …)").enumerated() {
            let path = "formatters[\(i)]"
            var r = try MapReader(item, file: file, path: path, what: "a mapping with name: and plugin:")
            guard let name = try r.nonEmptyString("name", expected: "a formatter name") else {
                throw ConfigError(file: file, keyPath: "\(path).name", message: "missing; every formatter needs a name")
            }
            if out.contains(where: { $0.name == name }) {
                throw ConfigError(
                    file: file, keyPath: "\(path).name", message: "duplicate formatter name \(JSONValue.string(name).serialized); names must be unique")
            }
            guard let plugin = try r.nonEmptyString("plugin", expected: "the path of the formatter's shared object") else {
                throw ConfigError(file: file, keyPath: "\(path).plugin", message: "missing; give the path of the formatter's shared object")
            }
            var f = FormatterConfiguration(name: name, pluginPath: resolve(plugin))
            f.channels = try channelList(&r, "channels")
            f.config = try pluginConfig(&r)
            f.deadline = try r.seconds("deadline")
            (f.isolation, f.maxConcurrentCalls) = try isolation(&r)
            try r.finish()
            out.append(f)
        }
        return out
    }

    func pluginConfig(_ r: inout MapReader) throws(ConfigError) -> JSONValue {
        guard let c = r.value("config") else { return .object([:]) }
        guard case .mapping = c else { throw r.error("config", "expected a mapping (the object handed to the plugin), got \(c.shortDescription)") }
        return c.json
    }

    func channelList(_ r: inout MapReader, _ key: String) throws(ConfigError) -> [String]? {
        guard let list = try r.stringList(key, expected: "a list of channel names (socketio, rest)") else { return nil }
        for (i, name) in list.enumerated() where name != "socketio" && name != "rest" {
            throw ConfigError(
                file: file, keyPath: "\(r.childPath(key))[\(i)]", message: "expected \"socketio\" or \"rest\", got \(JSONValue.string(name).serialized)")
        }
        return list
    }

    mutating func actions(_ node: ConfigNode?) throws(ConfigError) -> ActionsConfiguration {
        var r = try reader(node, "actions")
        var a = ActionsConfiguration()
        if let m = try r.nonEmptyString("manifest", expected: "the path of an action manifest") { a.manifestPath = resolve(m) }
        try r.finish()
        return a
    }

    mutating func store(_ node: ConfigNode?) throws(ConfigError) -> StoreConfiguration {
        var r = try reader(node, "store")
        var s = StoreConfiguration()
        if let t = try r.choice("type", StoreConfiguration.Kind.allCases.map(\.rawValue)) { s.kind = StoreConfiguration.Kind(rawValue: t) ?? .sqlite }
        if let p = try r.nonEmptyString("path", expected: "the path of the SQLite file") {
            if s.kind != .sqlite { warnings.append("\(file): store.path: ignored because store.type is \(s.kind.rawValue)") }
            s.path = resolve(p)
        }
        let url = try r.nonEmptyString("url", expected: "a PostgreSQL URL such as postgres://parley:${PGPASSWORD}@127.0.0.1:5432/parley")
        let schema = try r.nonEmptyString("schema", expected: "a PostgreSQL schema name")
        let poolSize = try r.int("pool_size", expected: "a number of connections", range: 1...1000)
        if s.kind == .postgres {
            guard let url else { throw r.error("url", "store.type is postgres: set store.url (postgres://USER:PASSWORD@HOST:PORT/DATABASE)") }
            do {
                s.postgres = try PostgresStoreConfiguration(url: url, schema: schema ?? "parley", poolSize: poolSize ?? 10)
            } catch {
                throw r.error("url", error.description.replacingOccurrences(of: "store.url: ", with: ""))
            }
            if let schema, !PostgresStoreConfiguration.isValidSchemaName(schema) {
                throw r.error(
                    "schema", "`\(schema)` is not a plain PostgreSQL name (lower-case letters, digits and _, starting with a letter or _, at most 63)")
            }
        } else if url != nil || schema != nil || poolSize != nil {
            warnings.append("\(file): store.url, store.schema and store.pool_size are read only when store.type is postgres")
        }
        try r.finish()
        return s
    }

    /// `adapter:`: `type: memory` (default) or `type: redis` with `url`, `key` and `request_timeout`.
    mutating func adapter(_ node: ConfigNode?) throws(ConfigError) -> SocketIORedisConfiguration? {
        var r = try reader(node, "adapter")
        let type = try r.choice("type", ["memory", "redis"]) ?? "memory"
        let url = try r.nonEmptyString("url", expected: "a Redis URL such as redis://127.0.0.1:6379")
        let key = try r.nonEmptyString("key", expected: "the channel prefix (socket.io's adapter key)")
        let requestTimeout = try r.seconds("request_timeout")
        try r.finish()
        guard type == "redis" else {
            if url != nil || key != nil || requestTimeout != nil {
                warnings.append("\(file): adapter.url, adapter.key and adapter.request_timeout are read only when adapter.type is redis")
            }
            return nil
        }
        guard let url else { throw r.error("url", "adapter.type is redis: set adapter.url (redis://HOST:PORT)") }
        do {
            var configuration = try SocketIORedisConfiguration(url: url, key: key ?? "socket.io")
            if let requestTimeout { configuration.requestTimeout = .milliseconds(Int64(requestTimeout * 1000)) }
            return configuration
        } catch {
            throw r.error("url", error.description)
        }
    }

    /// `session:` onto the dispatcher's Rasa session settings.
    mutating func session(_ node: ConfigNode?, into d: inout DispatcherConfiguration) throws(ConfigError) {
        var r = try reader(node, "session")
        if let n = r.value("session_expiration_time") {
            guard case .scalar(let sc) = n, let m = sc.double, m.isFinite, m >= 0 else {
                throw r.error("session_expiration_time", "expected a number of minutes (0 = sessions never expire), got \(n.shortDescription)")
            }
            d.sessionExpirationMinutes = m
        }
        if let v = try r.bool("carry_over_slots_to_new_session") { d.carryOverSlotsToNewSession = v }
        try r.finish()
    }

    /// `dispatcher:` onto the dispatcher's settings (and the worker count of the application).
    mutating func dispatcher(_ node: ConfigNode?, into app: inout ParleyServerConfiguration) throws(ConfigError) {
        var r = try reader(node, "dispatcher")
        if let v = try r.int("mailbox_size", expected: "a number of messages", range: 1...1_000_000) { app.dispatcher.mailboxCapacity = v }
        if let v = try r.seconds("turn_deadline") { app.dispatcher.turnDeadline = .nanoseconds(Int64(v * 1e9)) }
        if let v = try r.string("fallback_text", expected: "the text sent when a turn fails") { app.dispatcher.fallbackText = v }
        if let v = try r.seconds("idle_eviction") { app.dispatcher.idleEvictionSeconds = v }
        if let v = try r.int("workers", expected: "a number of threads", range: 1...1024) { app.workers = v }
        if let v = try r.int("max_threads", expected: "a number of threads", range: 1...4096) {
            guard v >= app.workers else { throw r.error("max_threads", "must be at least dispatcher.workers (\(app.workers))") }
            app.maxThreads = v
        }
        var d = app.dispatcher
        if let v = try r.int("max_message_bytes", expected: "a number of bytes", range: 1...16_777_216) { d.maxMessageBytes = v }
        // The store reads back 512 levels; stored events wrap metadata two levels deeper, input is parsed to 128.
        if let v = try r.int("max_metadata_depth", expected: "a nesting depth", range: 1...100) { d.maxMetadataDepth = v }
        if let v = try r.int("max_metadata_bytes", expected: "a number of bytes", range: 2...16_777_216) { d.maxMetadataBytes = v }
        if let v = try r.int("max_resident_conversations", expected: "a number of conversations", range: 1...100_000_000) { d.maxResidentConversations = v }
        if let v = try r.int("replay_limit", expected: "a number of messages", range: 0...100_000) { d.replayLimit = v }
        if r.has("replay_max_age") {
            if r.value("replay_max_age")?.isNull == true {
                d.replayMaxAge = nil
            } else if let v = try r.seconds("replay_max_age") {
                d.replayMaxAge = v
            }
        }
        if let v = try r.seconds("typing_delay", allowZero: true) { d.typingDelay = .milliseconds(Int64(v * 1000)) }
        if let v = try r.seconds("typing_repeat") { d.typingRepeat = .milliseconds(Int64(v * 1000)) }
        try r.finish()
        app.dispatcher = d
    }

    mutating func api(_ node: ConfigNode?) throws(ConfigError) -> APIConfiguration {
        var r = try reader(node, "api")
        var a = APIConfiguration()
        if let v = try r.bool("enabled") { a.enabled = v }
        if let t = try r.string("token", expected: "the API token"), !t.isEmpty { a.token = t }
        if let v = try r.bool("session_token") { a.sessionToken = v }
        try r.finish()
        return a
    }

    mutating func metrics(_ node: ConfigNode?) throws(ConfigError) -> MetricsConfiguration {
        var r = try reader(node, "metrics")
        var m = MetricsConfiguration()
        if let v = try r.bool("enabled") { m.enabled = v }
        if let t = try r.string("token", expected: "the token Prometheus sends"), !t.isEmpty { m.token = t }
        try r.finish()
        return m
    }

    mutating func logging(_ node: ConfigNode?) throws(ConfigError) -> LoggingConfiguration {
        var r = try reader(node, "logging")
        var l = LoggingConfiguration()
        if let v = try r.choice("level", LoggingConfiguration.Level.allCases.map(\.rawValue), caseInsensitive: true) {
            l.level = LoggingConfiguration.Level(rawValue: v) ?? .info
        }
        if let v = try r.choice("format", LoggingConfiguration.Format.allCases.map(\.rawValue), caseInsensitive: true) {
            l.format = LoggingConfiguration.Format(rawValue: v) ?? .text
        }
        try r.finish()
        return l
    }
}

extension ParleyConfiguration {
    /// Checks what serving needs beyond a well-formed file: at least one agent, at least one channel.
    /// - Parameter file: the name used in messages (the `--config` file).
    public func validateForServing(file: String) throws(ConfigError) {
        do {
            try application.validate()
        } catch {
            throw ConfigError(file: file, keyPath: error.key ?? "", message: error.message)
        }
    }
}
