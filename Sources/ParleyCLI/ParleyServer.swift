import EngineIO
import Hummingbird
import Prometheus
import Logging
import NIOCore
import NIOPosix
import ParleyActions
import ParleyChannels
import ParleyConfig
import ParleyCore
import ParleyDispatch
import ParleyWorkers
import ParleyJSON
import ParleyPlugins
import ParleyStore
import ServiceLifecycle
import SocketIO
import UnixSignals

#if canImport(Glibc)
import Glibc
#endif

/// The running bot: store, plugins, dispatcher and channels on one Hummingbird server, in one `ServiceGroup`.
///
/// On SIGTERM/SIGINT: the dispatcher refuses new messages and finishes the running and queued turns, whose
/// replies still reach the open sockets; the Engine.IO server closes every session with a close packet; the
/// HTTP server stops; the plugin host drains and calls the plugins' shutdown hooks; last, the SQLite store
/// checkpoints its WAL into the database file (`parley.db` alone is then complete). The whole shutdown is
/// bounded by `server.shutdown_timeout` (then the group is cancelled). Every event is durable in the store
/// when its turn completes; the checkpoint only makes the database file self-contained.
struct ParleyServer {
    let configuration: ParleyConfiguration
    let logger: Logger

    func run() async throws {
        // The certificate and key are checked before anything else is set up.
        let tls = try configuration.server.tls.map { try ServerTLS($0) }
        let runtime = try await Runtime.make(configuration, logger: logger)
        let router = Router()
        if let socketConfig = configuration.channels.socketIO, !socketConfig.corsOrigins.isEmpty {
            router.add(middleware: CORSRouteMiddleware(cors: socketConfig.cors))
        }
        router.get("/") { _, _ in "Hello from Parley: \(parleyVersion)" }
        HealthRoute.add(to: router, store: runtime.store)
        if configuration.server.chatPage {
            ChatPage.add(to: router, socketIOPath: configuration.channels.socketIO?.socketIOPath ?? "/socket.io")
        }
        if configuration.metrics.enabled {
            router.add(middleware: MetricsMiddleware())
            MetricsRoute.add(to: router, registry: metricsRegistry, token: configuration.metrics.token)
        }

        var engines: [EngineIOServer] = []
        if let socketConfig = configuration.channels.socketIO {
            let jwt = try await Self.verifier(socketConfig.jwt, section: "channels.socketio")
            let io = SocketIOServer(configuration: socketConfig.socketIO, scheduler: EventLoopScheduler(group: eventLoops), logger: Logger(label: "parley.socketio"))
            _ = SocketIOChannel(
                server: io, configuration: socketConfig, turns: runtime.dispatcher, jwt: jwt, outputs: runtime.dispatcher.outputs,
                logger: Logger(label: "parley.socketio"))
            engines.append(EngineIOServer(configuration: socketConfig.engineIO, delegate: io, logger: Logger(label: "parley.engineio")))
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
            ConversationRoutes.add(to: router, api: api, sessionTokens: sessionTokens)
            ProactiveRoute.add(to: router, api: api, dispatcher: runtime.dispatcher)
            if apiConfig.token == nil && !apiConfig.sessionToken {
                logger.info("conversation API on without a token: the server listens on a loopback address only (set api.token before listening on a public address)")
            }
        } else if apiConfig.enabled {
            logger.warning("conversation API off: the server listens on \(configuration.server.host), not loopback only, and api.token is not set; set api.token (or api.session_token) to serve history")
        }

        let host = configuration.server.host
        let logger = self.logger
        // HTTP/1.1 + Engine.IO, wrapped in TLS (HTTPS and WSS on the same port) when `server.tls` is given.
        let l = configuration.server.limits
        let limits = HTTPConnectionLimits(
            headerTimeout: .milliseconds(Int64(l.headerTimeout * 1000)), idleTimeout: .milliseconds(Int64(l.idleTimeout * 1000)),
            maxHeaderBytes: l.maxHeaderBytes, maxHeaderCount: l.maxHeaderCount, maxConnectionsPerAddress: l.maxConnectionsPerAddress,
            connectionsPerSecondPerAddress: l.connectionsPerSecondPerAddress, connectionBurstPerAddress: l.connectionBurstPerAddress,
            exemptAddresses: l.exemptAddresses)
        let server = try tls.map { try $0.wrap(.engineIO(engines, limits: limits)) } ?? .engineIO(engines, limits: limits)
        let scheme = tls == nil ? "http" : "https"
        let app = Application(
            router: router,
            server: server,
            configuration: .init(address: .hostname(host, port: configuration.server.port), serverName: "parley"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? 0
                logger.info("serving", metadata: ["url": "\(scheme)://\(host):\(port)", "host": "\(host)", "port": "\(port)"])
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
            storeService + [PluginHostService(host: runtime.plugins, dispatcher: runtime.dispatcher), app] + engines
            + [runtime.dispatcher, ShutdownAnnouncer(timeout: configuration.server.shutdownTimeout, logger: logger)]
        var groupConfiguration = ServiceGroupConfiguration(
            services: services,
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        )
        // Past this, running turns are abandoned (cancelled) so the process still exits.
        groupConfiguration.maximumGracefulShutdownDuration = .milliseconds(Int64(configuration.server.shutdownTimeout * 1000))
        let group = ServiceGroup(configuration: groupConfiguration)
        logger.info("starting", metadata: ["agents": "\(configuration.agents.map(\.name).joined(separator: ","))", "store": "\(configuration.store.kind.rawValue)"])
        do {
            try await group.run()
        } catch let error as IOError where error.errnoCode == EADDRINUSE {
            throw StartupError("server \(host):\(configuration.server.port): the address is already in use; stop the other process or choose another port (--port or server.port)")
        } catch let error as IOError where error.errnoCode == EACCES {
            throw StartupError("server \(host):\(configuration.server.port): permission denied; ports below 1024 need privileges, choose another (--port or server.port)")
        } catch let error as IOError {
            throw StartupError("server \(host):\(configuration.server.port): \(error)")
        }
        logger.info("stopped")
    }
}

extension ParleyServer {
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

/// The Prometheus registry behind `GET /metrics` (the swift-metrics backend bootstrapped by `parley serve`).
let metricsRegistry = PrometheusCollectorRegistry()

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
    let dispatcher: Dispatcher

    func run() async throws {
        await withDiscardingTaskGroup { group in
            group.addTask { [dispatcher] in
                await host.run { emitted in
                    do {
                        _ = try await dispatcher.emit(emitted.responses, to: emitted.senderID, channel: emitted.channel)
                    } catch {
                        dispatcher.logger.warning("plugin \(emitted.plugin): emit to \(emitted.senderID) not delivered: \(error)")
                    }
                }
            }
            try? await gracefulShutdown()
            await host.shutdown()
        }
    }
}

/// Everything behind the channels.
struct Runtime {
    let dispatcher: Dispatcher
    let store: any ConversationStore
    let plugins: PluginHost

    static func make(_ c: ParleyConfiguration, logger: Logger) async throws -> Runtime {
        let pool = WorkerPool(threads: c.dispatcher.workers)
        // The store.
        let store: any ConversationStore
        switch c.store.kind {
        case .memory:
            store = InMemoryConversationStore()
        case .sqlite:
            do {
                store = try SQLiteConversationStore(configuration: .init(path: c.store.path), workers: pool)
            } catch {
                throw StartupError("store \(c.store.path): \(error)")
            }
        }
        // Plugins.
        let host = PluginHost(
            pool: pool, configuration: .init(defaultDeadline: .milliseconds(Int64(c.dispatcher.turnDeadline * 1000))),
            logger: Logger(label: "parley.plugins"))
        func deadline(_ seconds: Double?) -> Duration? { seconds.map { .milliseconds(Int64($0 * 1000)) } }
        let loaded: (agents: [PluginAgent], formatters: [PluginFormatter])
        do {
            loaded = try await host.loadAll(
                agents: c.agents.map { PluginConfiguration(path: $0.pluginPath, kind: .agent, name: $0.name, deadline: deadline($0.deadline), config: $0.config) },
                formatters: c.formatters.map { PluginConfiguration(path: $0.pluginPath, kind: .formatter, name: $0.name, deadline: deadline($0.deadline), config: $0.config) })
        } catch {
            throw StartupError("\(error)")
        }
        // `thread_safe: false` serialises every call of an agent that declares itself thread-safe; `true` cannot
        // make a plugin that declared otherwise parallel (its calls stay serialised per conversation by the host).
        var agents: [any Agent] = loaded.agents
        for (i, a) in c.agents.enumerated() {
            if let limit = a.trackerEvents { agents[i] = PluginAgent(plugin: loaded.agents[i].plugin, trackerEvents: limit) }
            switch (a.threadSafe, loaded.agents[i].plugin.isThreadSafe) {
            case (false?, true): agents[i] = SerializedAgent(agents[i])
            case (true?, false):
                logger.warning("agents[\(i)] \(a.name): thread_safe: true is ignored; the plugin does not declare itself thread-safe")
            default: break
            }
        }
        // Routing: the first agent without a route is the default.
        var routes: [ParleyDispatch.AgentRoute] = []
        var defaultAgent: (any Agent)?
        for (i, a) in c.agents.enumerated() {
            let agent = agents[i]
            guard let route = a.route else {
                if defaultAgent == nil { defaultAgent = agent }
                continue
            }
            var rules: [ParleyDispatch.AgentRoute.Rule] = []
            if let p = route.prefix { rules.append(.prefix(p)) }
            for (k, v) in route.metadata { rules.append(.metadata(key: k, value: v)) }
            for ch in route.channels ?? [] { rules.append(.channel(ch)) }
            guard rules.count == 1, let rule = rules.first else {
                throw StartupError("agents[\(i)].route: give exactly one condition (prefix, one metadata key, or one channel); got \(rules.count)")
            }
            routes.append(ParleyDispatch.AgentRoute(rule, to: agent))
        }
        let fallbackAgent: any Agent = defaultAgent ?? agents[0]
        // Formatter chains: those without `channels` apply everywhere.
        let everywhere = zip(c.formatters, loaded.formatters).filter { $0.0.channels == nil }.map { $0.1 as any MessageFormatter }
        var perChannel: [String: [any MessageFormatter]] = [:]
        if c.formatters.contains(where: { $0.channels != nil }) {
            for channel in [SocketIOChannel.name, RESTChannel.name] {
                perChannel[channel] = zip(c.formatters, loaded.formatters)
                    .filter { $0.0.channels?.contains(channel) ?? true }
                    .map { $0.1 as any MessageFormatter }
            }
        }
        // Actions.
        var runner: (any ActionRunner)?
        if let manifestPath = c.actions.manifestPath {
            do {
                let manifest = try ActionManifest.load(path: manifestPath)
                runner = NativeActionRunner(manifest: manifest, pool: pool, logger: Logger(label: "parley.actions"))
            } catch {
                throw StartupError("actions.manifest \(manifestPath): \(error)")
            }
        }
        let dispatcher = Dispatcher(
            agent: fallbackAgent,
            routes: routes,
            formatters: everywhere,
            channelFormatters: perChannel,
            store: store,
            actionRunner: runner,
            configuration: ParleyDispatch.DispatcherConfiguration(
                mailboxCapacity: c.dispatcher.mailboxSize,
                turnDeadline: .milliseconds(Int64(c.dispatcher.turnDeadline * 1000)),
                fallbackText: c.dispatcher.fallbackText,
                maxMessageBytes: c.dispatcher.maxMessageBytes,
                maxMetadataDepth: c.dispatcher.maxMetadataDepth,
                maxMetadataBytes: c.dispatcher.maxMetadataBytes,
                sessionExpirationMinutes: c.session.expirationMinutes,
                carryOverSlotsToNewSession: c.session.carryOverSlots,
                idleEvictionSeconds: c.dispatcher.idleEviction,
                maxResidentConversations: c.dispatcher.maxResidentConversations
            ),
            executor: pool,
            logger: Logger(label: "parley.dispatch")
        )
        return Runtime(dispatcher: dispatcher, store: store, plugins: host)
    }
}

/// An agent whose calls run one at a time across all conversations (`thread_safe: false`).
struct SerializedAgent: Agent {
    let inner: any Agent
    let gate = AsyncGate()

    init(_ inner: any Agent) { self.inner = inner }

    var name: String { inner.name }
    var trackerEventLimit: Int? { inner.trackerEventLimit }

    func respond(to request: AgentRequest) async throws -> AgentReply {
        await gate.enter()
        do {
            let reply = try await inner.respond(to: request)
            await gate.leave()
            return reply
        } catch {
            await gate.leave()
            throw error
        }
    }
}

/// A FIFO async mutex: `enter()` waits until every earlier holder has called `leave()`.
actor AsyncGate {
    private var held = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func enter() async {
        if !held {
            held = true
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    func leave() {
        if waiters.isEmpty {
            held = false
        } else {
            waiters.removeFirst().resume()
        }
    }
}
