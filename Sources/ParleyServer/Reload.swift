public import Hummingbird
import Logging
import ParleyChannels
import ParleyDispatch
import ParleyJSON
import ParleyPlugins
import Synchronization

/// Where a reload reads the new settings from: the executable re-reads its configuration file (only it reads
/// YAML). Throws a message naming what is wrong.
public typealias ConfigurationSource = @Sendable () throws -> ParleyServerConfiguration

/// Swaps agents and formatters while the server runs (`parley reload`, `SIGHUP`, `POST /admin/reload`): the new
/// set is loaded first; if any of it fails, nothing changes and the reason comes back. Otherwise turns that start
/// afterwards use it, turns running now finish on the old instances, isolated agents' old host processes finish
/// their calls and exit. Connections, sessions and the store are untouched. Only `agents` and `formatters` are
/// reloaded; other changed settings are reported as needing a restart.
public final class PluginReloader: Sendable {
    let host: PluginHost
    let dispatcher: Dispatcher
    let source: ConfigurationSource?
    let logger: Logger
    private let state: Mutex<(configuration: ParleyServerConfiguration, isolated: [IsolatedPlugin])>
    /// One reload at a time.
    private let busy = Mutex(false)

    init(
        host: PluginHost, dispatcher: Dispatcher, configuration: ParleyServerConfiguration, isolated: [IsolatedPlugin], source: ConfigurationSource?,
        logger: Logger
    ) {
        self.host = host
        self.dispatcher = dispatcher
        self.source = source
        self.logger = logger
        self.state = Mutex((configuration, isolated))
    }

    /// The plugins in use now (in process and isolated), for the health route and `GET /admin/plugins`.
    public var plugins: [any PluginStatusReporting] {
        let isolated = state.withLock { $0.isolated }
        return host.plugins.map { $0 as any PluginStatusReporting } + isolated.map { $0 as any PluginStatusReporting }
    }

    /// The outcome of a reload, one line for a person.
    public struct Outcome: Sendable {
        public var succeeded: Bool
        public var message: String
    }

    /// Re-reads the configuration and swaps the plugins.
    public func reload() async -> Outcome {
        guard let source else { return Outcome(succeeded: false, message: "this server has no configuration file to reload from") }
        let next: ParleyServerConfiguration
        do {
            next = try source()
        } catch {
            logger.error("reload refused: \(error)")
            return Outcome(succeeded: false, message: "\(error)")
        }
        return await reload(next)
    }

    /// Swaps the plugins for those of `next`.
    public func reload(_ next: ParleyServerConfiguration) async -> Outcome {
        guard
            busy.withLock({ b in
                defer { b = true }; return !b
            })
        else {
            return Outcome(succeeded: false, message: "a reload is already running; try again when it is done")
        }
        defer { busy.withLock { $0 = false } }
        let (plugins, isolated): (DispatcherPlugins, [IsolatedPlugin])
        do {
            (plugins, isolated) = try await Runtime.makePlugins(next, host: host, reload: true)
        } catch {
            logger.error("reload failed, nothing changed: \(error)")
            return Outcome(succeeded: false, message: "nothing changed: \(error)")
        }
        dispatcher.replacePlugins(plugins)
        let (previous, oldIsolated) = state.withLock { s in
            defer { s = (next, isolated) }
            return (s.configuration, s.isolated)
        }
        let restartNeeded = Self.changesNeedingRestart(previous, next)
        let message =
            "reloaded: agents \(next.agents.map(\.name).joined(separator: ", ")); formatters \(next.formatters.map(\.name).joined(separator: ", "))"
            + (restartNeeded.isEmpty ? "" : "; changed settings that need a restart (not applied): \(restartNeeded.joined(separator: ", "))")
        logger.notice("\(message)")
        // Old isolated hosts finish the calls they have and exit.
        for plugin in oldIsolated { await plugin.shutdown(grace: next.dispatcher.turnDeadline) }
        return Outcome(succeeded: true, message: message)
    }

    static func changesNeedingRestart(_ a: ParleyServerConfiguration, _ b: ParleyServerConfiguration) -> [String] {
        var out: [String] = []
        if a.server.host != b.server.host || a.server.port != b.server.port { out.append("server") }
        if a.store.kind != b.store.kind || a.store.path != b.store.path { out.append("store") }
        if (a.channels.socketIO == nil) != (b.channels.socketIO == nil) || (a.channels.rest == nil) != (b.channels.rest == nil) { out.append("channels") }
        if (a.redisAdapter == nil) != (b.redisAdapter == nil) { out.append("adapter") }
        return out
    }
}

/// An `/admin/` request needs the API token; without one configured the route is closed (`403`).
private func authorizeAdmin(_ request: Request, api: ConversationAPI, what: String) throws {
    guard api.token != nil else {
        throw ConversationAPIError(status: 403, reason: "NotAuthorized", message: "\(what) over HTTP needs a token: set api.token")
    }
    try api.authorize(token: request.uri.queryParameters.get("token"), authorization: request.headers[.authorization])
}

/// `POST /admin/reload`: reloads agents and formatters (the API token is required, `403` without one configured).
/// `200 {"reloaded": true, "message"}` or `422 {"reloaded": false, "message"}` (nothing changed).
enum ReloadRoute {
    static func add<Context: RequestContext>(to router: Router<Context>, reloader: PluginReloader, api: ConversationAPI) {
        router.post("/admin/reload") { request, _ in
            await ConversationRoutes.respond {
                try authorizeAdmin(request, api: api, what: "reloading")
                let outcome = await reloader.reload()
                guard outcome.succeeded else { throw ConversationAPIError(status: 422, reason: "ReloadFailed", message: outcome.message) }
                return ["reloaded": true, "message": .string(outcome.message)]
            }
        }
    }
}

/// `GET /admin/plugins` (API token, `403` without one configured): `{"plugins": [PluginStatus.json, ...]}` — calls,
/// errors, deadline expiries, refusals, fallbacks, hung slots, host crashes and restarts, breaker state and latency
/// of every plugin in use. `parley plugins status` prints it.
enum PluginStatusRoute {
    static func add<Context: RequestContext>(to router: Router<Context>, reloader: PluginReloader, api: ConversationAPI) {
        router.get("/admin/plugins") { request, _ in
            await ConversationRoutes.respond {
                try authorizeAdmin(request, api: api, what: "plugin status")
                return ["plugins": .array(reloader.plugins.map(\.status.json))]
            }
        }
    }
}
