public import EngineIO
import Foundation
import Hummingbird
public import Logging
import NIOCore
import NIOPosix
import ParleyActions
import ParleyChannels
import ParleyCore
import ParleyDispatch
import ParleyJSON
import ParleyPlugins
import ParleyPostgres
import ParleyStore
import ParleyWorkers
import SocketIORedis
public import Prometheus
public import ServiceLifecycle
public import SocketIO
public import UnixSignals
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Builds the bot described by `configuration`: loads the plugins (every mistake in one refused start-up, with
/// the key and the fix), opens the store, and assembles the dispatcher, the channels and one Hummingbird server
/// for HTTP and Engine.IO. Nothing listens until the returned application runs.
///
/// - Parameters:
///   - configuration: the settings (`parley serve` maps `parley.yml` onto them).
///   - logger: the application's own lines (`starting`, `serving`, shutdown).
///   - metrics: the registry `GET /metrics` serves when `metrics.enabled`; the caller bootstraps swift-metrics
///     with it before building (metrics bind to the backend present when they are created).
/// - Throws: ``StartupError`` naming the key and the fix.
/// - Parameter reloadSource: re-reads the settings for a reload of agents and formatters (`SIGHUP`,
///   `POST /admin/reload`); nil: reloading is refused.
public func buildApplication(
    _ configuration: ParleyServerConfiguration, logger: Logger = Logger(label: "parley"), metrics: PrometheusCollectorRegistry? = nil,
    reloadSource: ConfigurationSource? = nil
) async throws -> ParleyApplication {
    try await ParleyApplication.build(configuration, logger: logger, metrics: metrics, reloadSource: reloadSource)
}

/// The running bot: store, plugins, dispatcher and channels on one Hummingbird server, in one `ServiceGroup`.
///
/// On graceful shutdown (SIGTERM/SIGINT by default, or the group around it): the dispatcher refuses new
/// messages and finishes the running and queued turns, whose replies still reach the open sockets; the
/// Engine.IO server closes every session with a close packet; the HTTP server stops; the plugin host drains and
/// calls the plugins' shutdown hooks; last, the SQLite store checkpoints its WAL into the database file
/// (`parley.db` alone is then complete). The whole shutdown is bounded by `server.shutdown_timeout` (then the
/// group is cancelled). Every event is durable in the store when its turn completes; the checkpoint only makes
/// the database file self-contained.
public struct ParleyApplication: Service {
    /// The settings it was built with.
    public let configuration: ParleyServerConfiguration
    /// The services, in start order (they stop in reverse): store, plugin host, HTTP server, Engine.IO
    /// servers, dispatcher, shutdown announcer.
    public let services: [any Service]
    /// The signals that start a graceful shutdown when ``run()`` runs the services (default SIGTERM, SIGINT).
    public var gracefulShutdownSignals: [UnixSignal] = [.sigterm, .sigint]
    /// The dispatcher (for tests and embedders: `handle`, `emit`).
    public let dispatcher: Dispatcher
    /// The conversation store.
    public let store: any ConversationStore
    /// The Socket.IO server behind `channels.socketio` (nil when that channel is off): tests attach
    /// `ParleyTesting.RasaTestClient` to it to talk to the bot in process, without a socket.
    public let socketIOServer: SocketIOServer?
    let logger: Logger

    /// Runs every service in a `ServiceGroup` until a graceful shutdown (a signal, or cancellation of the
    /// calling task) has completed.
    /// - Throws: ``StartupError`` when the port cannot be opened.
    public func run() async throws {
        var groupConfiguration = ServiceGroupConfiguration(services: services, gracefulShutdownSignals: gracefulShutdownSignals, logger: logger)
        // Past this, running turns are abandoned (cancelled) so the process still exits.
        groupConfiguration.maximumGracefulShutdownDuration = .milliseconds(Int64(configuration.server.shutdownTimeout * 1000))
        let group = ServiceGroup(configuration: groupConfiguration)
        let host = configuration.server.host, port = configuration.server.port
        logger.info(
            "starting", metadata: ["agents": "\(configuration.agents.map(\.name).joined(separator: ","))", "store": "\(configuration.store.kind.rawValue)"])
        do {
            // SIGHUP reloads agents and formatters, for as long as the services run.
            let shutdownTimeout = configuration.server.shutdownTimeout
            try await withThrowingTaskGroup(of: Bool.self) { tasks in
                tasks.addTask {
                    try await group.run()
                    return true
                }
                tasks.addTask { [reloader, logger] in
                    for await _ in await UnixSignalsSequence(trapping: .sighup) {
                        let outcome = await reloader.reload()
                        if !outcome.succeeded { logger.error("SIGHUP: reload failed: \(outcome.message)") }
                    }
                    return false
                }
                tasks.addTask { [logger] in
                    // The last resort of a graceful shutdown: a plugin thread stuck inside handle() holds the turn
                    // that called it (a call runs on the turn's own worker thread), so the services cannot all
                    // return. Past shutdown_timeout + 2 s the process exits; every committed turn is in the store.
                    for await _ in await UnixSignalsSequence(trapping: .sigterm, .sigint) {
                        Self.exitAfter(seconds: shutdownTimeout + 2, logger: logger)
                        break
                    }
                    return false
                }
                while let finished = try await tasks.next() {
                    if finished { break }
                }
                tasks.cancelAll()
            }
        } catch let error as IOError where error.errnoCode == EADDRINUSE {
            throw StartupError(
                key: "server.port", "\(host):\(port): the address is already in use; stop the other process or choose another port (--port or server.port)")
        } catch let error as IOError where error.errnoCode == EACCES {
            throw StartupError(
                key: "server.port", "\(host):\(port): permission denied; ports below 1024 need privileges, choose another (--port or server.port)")
        } catch let error as IOError {
            throw StartupError(key: "server", "\(host):\(port): \(error)")
        }
        logger.info("stopped")
    }

    /// Exits the process `seconds` from now unless it ended before (a thread of its own: the cooperative pool may
    /// be what is stuck).
    static func exitAfter(seconds: Double, logger: Logger) {
        Thread.detachNewThread {
            Thread.sleep(forTimeInterval: seconds)
            logger.critical(
                "shutdown did not finish within server.shutdown_timeout + 2 s: a plugin call is stuck inside handle() (see the lines above); exiting now (every committed turn is in the store)"
            )
            exit(70)
        }
    }

    /// The `parley-plugin-host` executable beside the running one (what `isolation: process` starts unless
    /// ``ParleyServerConfiguration/pluginHostExecutable`` says otherwise).
    public static var pluginHostExecutable: String { Runtime.siblingExecutable("parley-plugin-host") }

    /// Called with the bound port once the server listens (useful with `server.port: 0`).
    public var onServerRunning: (@Sendable (Int) async -> Void)? {
        get { serverRunning.callback }
        nonmutating set { serverRunning.callback = newValue }
    }
    let serverRunning: ServerRunningCallback
    /// Swaps agents and formatters while the server runs (also on `SIGHUP` while ``run()`` runs).
    public let reloader: PluginReloader
    static func build(
        _ configuration: ParleyServerConfiguration, logger: Logger, metrics: PrometheusCollectorRegistry?, reloadSource: ConfigurationSource? = nil
    ) async throws -> ParleyApplication {
        try configuration.validate()
        // The certificate and key are checked before anything else is set up.
        let tls = try configuration.server.tls.map { try ServerTLS($0) }
        let runtime = try await Runtime.make(configuration, logger: logger)
        let reloader = PluginReloader(
            host: runtime.plugins, dispatcher: runtime.dispatcher, configuration: configuration, isolated: runtime.isolated, source: reloadSource,
            logger: logger)
        let router = Router()
        if let socketConfig = configuration.channels.socketIO, !socketConfig.corsOrigins.isEmpty {
            router.add(middleware: CORSRouteMiddleware(cors: socketConfig.cors))
        }
        router.get("/") { _, _ in "Hello from Parley: \(parleyVersion)" }
        let cluster = configuration.redisAdapter.map {
            SocketIORedisCluster(configuration: $0, nodeID: configuration.server.nodeID, logger: Logger(label: "parley.redis"))
        }
        if cluster != nil, configuration.channels.socketIO?.connectionStateRecovery != nil {
            throw StartupError(
                key: "channels.socketio.connection_state_recovery",
                "needs the in-memory adapter (one node): the events kept for a dropped client are this node's. With adapter.type redis, clients resume with session_request's parley.resume_from (docs/connecting.md)"
            )
        }
        if let cluster {
            do {
                try await cluster.checkReachable()
            } catch {
                throw StartupError(key: "adapter.url", "\(error)")
            }
        }
        var adapterHealth: (@Sendable () -> String?)?
        if let cluster { adapterHealth = { cluster.problem } }
        HealthRoute.add(
            to: router, store: runtime.store, adapter: adapterHealth,
            plugins: {
                var problems: [String: String] = [:]
                for plugin in reloader.plugins {
                    let status = plugin.status
                    if let problem = status.problem { problems[status.name] = problem }
                }
                return problems
            })
        if configuration.server.chatPage {
            ChatPage.add(
                to: router, socketIOPath: configuration.channels.socketIO?.socketIOPath ?? "/socket.io",
                numbered: configuration.channels.socketIO?.sessionPersistence ?? false)
        }
        if configuration.metrics.enabled {
            router.add(middleware: MetricsMiddleware())
            MetricsRoute.add(to: router, registry: metrics ?? PrometheusCollectorRegistry(), token: configuration.metrics.token)
        }

        var engines: [EngineIOServer] = []
        var socketIOServer: SocketIOServer?
        var socketChannel: SocketIOChannel?
        if let socketConfig = configuration.channels.socketIO {
            let jwt = try await Self.verifier(socketConfig.jwt, section: "channels.socketio")
            var socketIOConfiguration = socketConfig.socketIO
            if let cluster { socketIOConfiguration.adapter = cluster.adapterFactory }
            let io = SocketIOServer(
                configuration: socketIOConfiguration, scheduler: EventLoopScheduler(group: eventLoops), logger: Logger(label: "parley.socketio"))
            socketChannel = SocketIOChannel(
                server: io, configuration: socketConfig, turns: runtime.dispatcher, jwt: jwt, outputs: runtime.dispatcher.outputs,
                logger: Logger(label: "parley.socketio"))
            var engineConfiguration = socketConfig.engineIO
            if let node = configuration.server.nodeID { engineConfiguration.sessionIDPrefix = node + "." }
            engines.append(EngineIOServer(configuration: engineConfiguration, delegate: io, logger: Logger(label: "parley.engineio")))
            socketIOServer = io
            router.get("/webhooks/socketio") { _, _ in HTTPJSON.ok }
        }
        // Sessions bound to tokens on the socket channel stay bound over REST: without its own JWT keys the REST
        // channel uses the socket channel's.
        let socketJWT = configuration.channels.socketIO?.jwt
        if let rest = configuration.channels.rest {
            let restJWT = try await Self.verifier(rest.jwt ?? socketJWT, section: rest.jwt == nil ? "channels.socketio" : "channels.rest")
            RESTChannel(turns: runtime.dispatcher, maxBodySize: rest.maxBodySize, jwt: restJWT).addRoutes(to: router)
        }
        let apiConfig = configuration.api
        if apiConfig.isServed(host: configuration.server.host) {
            let api = ConversationAPI(store: runtime.store, token: apiConfig.token)
            let sessionTokens = apiConfig.sessionToken ? try await Self.verifier(socketJWT, section: "channels.socketio") : nil
            var connections: (@Sendable (String) async throws -> [String])?
            if let socketChannel { connections = { try await socketChannel.connections(of: $0) } }
            ConversationRoutes.add(to: router, api: api, sessionTokens: sessionTokens, connections: connections)
            ProactiveRoute.add(to: router, api: api, dispatcher: runtime.dispatcher)
            ReloadRoute.add(to: router, reloader: reloader, api: api)
            PluginStatusRoute.add(to: router, reloader: reloader, api: api)
            if apiConfig.token == nil && !apiConfig.sessionToken {
                logger.info(
                    "conversation API on without a token: the server listens on a loopback address only (set api.token before listening on a public address)")
            }
        } else if apiConfig.enabled {
            logger.warning(
                "conversation API off: the server listens on \(configuration.server.host), not loopback only, and api.token is not set; set api.token (or api.session_token) to serve history"
            )
        }

        let host = configuration.server.host
        // HTTP/1.1 + Engine.IO, wrapped in TLS (HTTPS and WSS on the same port) when `server.tls` is given.
        let limits = configuration.server.limits
        let server = try tls.map { try $0.wrap(.engineIO(engines, limits: limits)) } ?? .engineIO(engines, limits: limits)
        let scheme = tls == nil ? "http" : "https"
        let serverRunning = ServerRunningCallback()
        let app = Application(
            router: router,
            server: server,
            configuration: .init(address: .hostname(host, port: configuration.server.port), serverName: "parley"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? 0
                logger.info("serving", metadata: ["url": "\(scheme)://\(host):\(port)", "host": "\(host)", "port": "\(port)"])
                await serverRunning.callback?(port)
            },
            eventLoopGroupProvider: .shared(eventLoops),
            logger: Logger(label: "parley.http")
        )
        // Stopped in reverse order: log, drain the dispatcher (replies still reach the open sockets; new
        // messages are refused), close the Engine.IO sessions with close packets, stop the HTTP server, then
        // shut the plugins down.
        // The store comes first so that it stops last: after the last turn it checkpoints its WAL into the file.
        let storeService: [any Service] = (runtime.store as? any Service).map { [$0] } ?? []
        let services: [any Service] =
            storeService + (cluster.map { [$0] } ?? []) + [
                PluginHostService(host: runtime.plugins, isolated: runtime.isolated, dispatcher: runtime.dispatcher), app,
            ] + engines
            + [runtime.dispatcher, ShutdownAnnouncer(timeout: configuration.server.shutdownTimeout, logger: logger)]
        return ParleyApplication(
            configuration: configuration, services: services, dispatcher: runtime.dispatcher, store: runtime.store,
            socketIOServer: socketIOServer, logger: logger, serverRunning: serverRunning, reloader: reloader)
    }
}
extension ParleyApplication {
    /// The verifier for a channel's JWT settings, or nil without them.
    static func verifier(_ settings: JWTConfiguration?, section: String) async throws -> JWTVerifier? {
        guard let j = settings else { return nil }
        do {
            return try await JWTVerifier(method: j.method, key: j.key, sessionClaim: j.sessionClaim)
        } catch {
            throw StartupError("\(section): the JWT key from \(j.keySource) does not fit jwt_method \(j.method): \(error.description)")
        }
    }
}

/// `GET /metrics`: every metric in Prometheus' text format (exposition format 0.0.4).
enum MetricsRoute {
    static func add<Context: RequestContext>(to router: Router<Context>, registry: PrometheusCollectorRegistry, token: String?) {
        let expected = token.map { "Bearer " + $0 }
        router.get("/metrics") { request, _ in
            if let expected, !ConversationAPI.constantTimeEqual(request.headers[.authorization] ?? "", expected) {
                return Response(status: .unauthorized, headers: [.wwwAuthenticate: "Bearer"])
            }
            var buffer: [UInt8] = []
            registry.emit(into: &buffer)
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: buffer)))
        }
    }
}

/// The event loops of the server: one per CPU the process may use (its affinity mask or cpuset), not one per
/// CPU of the machine as NIO's shared group has. A server pinned to one CPU with two loops woke both for the
/// same work (S3 of `make bench`: 2.2–2.3k → 2.5k sessions/s with one loop). `NIO_SINGLETON_GROUP_LOOP_COUNT`,
/// when set, still decides (NIO's shared group is used then).
let eventLoops: any EventLoopGroup = {
    if getenv("NIO_SINGLETON_GROUP_LOOP_COUNT") != nil { return MultiThreadedEventLoopGroup.singleton }
    return MultiThreadedEventLoopGroup(numberOfThreads: WorkerPool.usableCPUCount())
}()

/// Logs when a graceful shutdown starts; a no-op service otherwise.
struct ShutdownAnnouncer: Service {
    let timeout: Double
    let logger: Logger

    func run() async throws {
        try? await gracefulShutdown()
        logger.info("shutting down", metadata: ["timeout_seconds": "\(timeout)"])
    }
}

/// Hands plugin `emit`s to the dispatcher (recorded, formatted and ordered with the conversation's turns, then
/// delivered by the channel) and shuts the plugins down after the dispatcher has drained.
struct PluginHostService: Service {
    let host: PluginHost
    let isolated: [IsolatedPlugin]
    let dispatcher: Dispatcher

    func run() async throws {
        // A plugin flooding emits that cannot be delivered must not flood the log too: one line a second, counting
        // the others.
        let undelivered = LogThrottle()
        await withDiscardingTaskGroup { group in
            group.addTask { [dispatcher] in
                await host.run { emitted in
                    do {
                        _ = try await dispatcher.emit(emitted.responses, to: emitted.senderID, channel: emitted.channel)
                    } catch {
                        if let suppressed = undelivered.admit() {
                            dispatcher.logger.warning(
                                "plugin \(emitted.plugin): emit to \(emitted.senderID) not delivered: \(error)\(suppressed > 0 ? " (and \(suppressed) more emits not delivered in the second before)" : "")"
                            )
                        }
                    }
                }
            }
            try? await gracefulShutdown()
            for plugin in isolated { await plugin.shutdown() }
            await host.shutdown()
        }
    }
}

/// At most one log line a second: ``admit()`` says whether to write one now, and how many were held back since.
final class LogThrottle: Sendable {
    private let state = Mutex<(lastLine: ContinuousClock.Instant?, suppressed: Int)>((nil, 0))

    /// nil: skip this line; else write it, mentioning the returned number of lines skipped before it.
    func admit() -> Int? {
        let now = ContinuousClock.now
        return state.withLock { s in
            if let last = s.lastLine, now - last < .seconds(1) {
                s.suppressed += 1
                return nil
            }
            defer { s = (now, 0) }
            return s.suppressed
        }
    }
}

/// Everything behind the channels.
struct Runtime {
    let dispatcher: Dispatcher
    let store: any ConversationStore
    let plugins: PluginHost
    /// Agents in host processes of their own (`isolation: process`).
    var isolated: [IsolatedPlugin] = []

    static func make(_ c: ParleyServerConfiguration, logger: Logger) async throws -> Runtime {
        let pool = WorkerPool(threads: c.workers, maximumThreads: c.maxThreads)
        // The store.
        let store: any ConversationStore
        switch c.store.kind {
        case .memory:
            store = InMemoryConversationStore()
        case .sqlite:
            do {
                store = try SQLiteConversationStore(configuration: .init(path: c.store.path), workers: pool)
            } catch {
                throw StartupError(key: "store", "\(c.store.path): \(error)")
            }
        case .postgres:
            guard let postgres = c.store.postgres else { throw StartupError(key: "store.url", "store.type is postgres but no url is set") }
            do {
                store = try await PostgresConversationStore.open(postgres, logger: Logger(label: "parley.store"))
            } catch {
                throw StartupError(key: "store", "\(error)")
            }
        }
        // Plugins.
        let host = PluginHost(pool: pool, configuration: .init(defaultDeadline: c.dispatcher.turnDeadline), logger: Logger(label: "parley.plugins"))
        let (plugins, isolated) = try await makePlugins(c, host: host, reload: false)
        // Plugins hung in every slot must leave `workers` threads for everything else.
        let slots = host.plugins.filter(\.isThreadSafe).reduce(0) { $0 + $1.slots } + host.plugins.filter { !$0.isThreadSafe }.count
        if c.workers + slots > pool.maximumThreadCount {
            logger.warning(
                "dispatcher.max_threads is \(pool.maximumThreadCount), less than dispatcher.workers (\(c.workers)) plus the slots of the in-process plugins (\(slots)): plugins hung in every slot could leave no thread for the others; raise max_threads or lower max_concurrent_calls"
            )
        }
        // Actions.
        var runner: (any ActionRunner)?
        if let manifestPath = c.actions.manifestPath {
            do {
                let manifest = try ActionManifest.load(path: manifestPath)
                runner = NativeActionRunner(manifest: manifest, pool: pool, logger: Logger(label: "parley.actions"))
            } catch {
                throw StartupError(key: "actions.manifest", "\(manifestPath): \(error)")
            }
        }
        let dispatcher = Dispatcher(
            agent: plugins.agent, routes: plugins.routes, formatters: plugins.formatters, channelFormatters: plugins.channelFormatters,
            store: store, actionRunner: runner, configuration: c.dispatcher, executor: pool, logger: Logger(label: "parley.dispatch"))
        return Runtime(dispatcher: dispatcher, store: store, plugins: host, isolated: isolated)
    }

    /// Loads the configured agents and formatters (`reload`: replacing the loaded ones, see
    /// `PluginHost.reload`) and builds routes and formatter chains from them. Isolated plugins' host processes are
    /// started and must load their plugin here too, so a plugin that cannot load stops the start (or the reload).
    static func makePlugins(_ c: ParleyServerConfiguration, host: PluginHost, reload: Bool) async throws -> (DispatcherPlugins, [IsolatedPlugin]) {
        func deadline(_ seconds: Double?) -> Duration? { seconds.map { .milliseconds(Int64($0 * 1000)) } }
        let agentConfigurations = c.agents.filter { !$0.isolated }.map {
            PluginConfiguration(
                path: $0.pluginPath, kind: .agent, name: $0.name, deadline: deadline($0.deadline), config: $0.config, threadSafe: $0.threadSafe,
                maxConcurrentCalls: $0.maxConcurrentCalls)
        }
        let formatterConfigurations = c.formatters.filter { !$0.isolated }.map {
            PluginConfiguration(
                path: $0.pluginPath, kind: .formatter, name: $0.name, deadline: deadline($0.deadline), config: $0.config,
                maxConcurrentCalls: $0.maxConcurrentCalls)
        }
        // Isolated plugins first: their host processes load them (in parallel with nothing else to wait for).
        var isolated: [IsolatedPlugin] = []
        func isolatedPlugin(
            name: String, path: String, kind: PluginKind, deadline seconds: Double?, config: JSONValue, threadSafe: Bool?, trackerEvents: Int?,
            _ settings: ProcessIsolation
        ) -> IsolatedPlugin {
            let plugin = IsolatedPlugin(
                name: name, path: path, kind: kind, deadline: deadline(seconds), callDeadline: deadline(seconds) ?? c.dispatcher.turnDeadline,
                config: config, threadSafe: threadSafe, trackerEvents: trackerEvents,
                settings: PluginIsolationSettings(
                    hostExecutable: c.pluginHostExecutable ?? Self.siblingExecutable("parley-plugin-host"), memoryLimit: settings.memoryLimit,
                    addressSpaceLimit: settings.addressSpaceLimit, cpuSeconds: settings.cpuSeconds, openFiles: settings.openFiles, processes: settings.processes
                ),
                logger: Logger(label: "parley.plugins"), emit: { host.enqueue($0) })
            isolated.append(plugin)
            return plugin
        }
        let isolatedAgents: [String: IsolatedPlugin] = Dictionary(
            uniqueKeysWithValues: c.agents.compactMap { a in
                a.isolation.map {
                    (
                        a.name,
                        isolatedPlugin(
                            name: a.name, path: a.pluginPath, kind: .agent, deadline: a.deadline, config: a.config, threadSafe: a.threadSafe,
                            trackerEvents: a.trackerEvents, $0)
                    )
                }
            })
        let isolatedFormatters: [String: IsolatedPlugin] = Dictionary(
            uniqueKeysWithValues: c.formatters.compactMap { f in
                f.isolation.map {
                    (
                        f.name,
                        isolatedPlugin(
                            name: f.name, path: f.pluginPath, kind: .formatter, deadline: f.deadline, config: f.config, threadSafe: nil, trackerEvents: nil, $0)
                    )
                }
            })
        do {
            for plugin in isolated { try await plugin.prepare(timeout: .seconds(10)) }
        } catch {
            for plugin in isolated { await plugin.shutdown(grace: .milliseconds(500)) }
            throw StartupError("\(error)")
        }
        let loaded: (agents: [PluginAgent], formatters: [PluginFormatter])
        do {
            loaded =
                reload
                ? try await host.reload(agents: agentConfigurations, formatters: formatterConfigurations)
                : try await host.loadAll(agents: agentConfigurations, formatters: formatterConfigurations)
        } catch {
            for plugin in isolated { await plugin.shutdown(grace: .milliseconds(500)) }
            throw StartupError("\(error)")
        }
        var inProcess = loaded.agents.makeIterator()
        let agents: [any Agent] = c.agents.map { configured in
            if let plugin = isolatedAgents[configured.name] { return plugin }
            let agent = inProcess.next()!
            return configured.trackerEvents.map { PluginAgent(plugin: agent.plugin, trackerEvents: $0) } ?? agent
        }
        var inProcessFormatters = loaded.formatters.makeIterator()
        let formatters: [any MessageFormatter] = c.formatters.map { configured in
            if let plugin = isolatedFormatters[configured.name] { return plugin.formatter }
            return inProcessFormatters.next()!
        }
        // Routing: the first agent without a route is the default.
        var routes: [AgentRoute] = []
        var defaultAgent: (any Agent)?
        for (i, (configured, agent)) in zip(c.agents, agents).enumerated() {
            guard let conditions = configured.route else {
                if defaultAgent == nil { defaultAgent = agent }
                continue
            }
            do {
                routes.append(AgentRoute(try conditions.rule(), to: agent))
            } catch {
                throw StartupError(key: "agents[\(i)].route", error.description)
            }
        }
        let chains = FormatterChains(c.formatters, loaded: formatters, channels: [SocketIOChannel.name, RESTChannel.name])
        return (
            DispatcherPlugins(agent: defaultAgent ?? agents[0], routes: routes, formatters: chains.everywhere, channelFormatters: chains.perChannel), isolated
        )
    }

    /// An executable beside the running one (`/proc/self/exe`'s folder).
    /// (`ParleyApplication.pluginHostExecutable` names the plugin host this way.)
    static func siblingExecutable(_ name: String) -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        let me = n > 0 ? String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : CommandLine.arguments[0]
        guard let slash = me.lastIndex(of: "/") else { return name }
        return String(me[...slash]) + name
    }
}

/// The formatter chain of each channel: formatters without `channels` apply on every channel; when some name
/// channels, each channel gets its own chain of the formatters that apply to it, in configured order.
struct FormatterChains {
    /// The chain of channels without a chain of their own.
    var everywhere: [any MessageFormatter]
    /// Chains by channel name (empty when no formatter names channels).
    var perChannel: [String: [any MessageFormatter]] = [:]

    init(_ configured: [FormatterConfiguration], loaded: [any MessageFormatter], channels: [String]) {
        let pairs = Array(zip(configured, loaded))
        everywhere = pairs.filter { $0.0.channels == nil }.map(\.1)
        guard configured.contains(where: { $0.channels != nil }) else { return }
        for channel in channels {
            perChannel[channel] = pairs.filter { $0.0.channels?.contains(channel) ?? true }.map(\.1)
        }
    }
}

/// Where the server's bound port is reported (set before ``ParleyApplication/run()``).
final class ServerRunningCallback: Sendable {
    private let value = Mutex<(@Sendable (Int) async -> Void)?>(nil)
    var callback: (@Sendable (Int) async -> Void)? {
        get { value.withLock { $0 } }
        set { value.withLock { $0 = newValue } }
    }
}
