public import Hummingbird
public import ParleyDispatch
import ParleyJSON

/// `GET /health` for load balancers and orchestrators: `200 {"status":"ok","store":"ok"}` while the
/// conversation store answers, `503 {"status":"unavailable","store":"<what is wrong>"}` when it does not (for
/// SQLite: the file cannot be read, or the latest commit failed — a full disk), so the node is taken out of
/// rotation instead of answering every message with a refusal. Separate from the Rasa channels' own health
/// routes (`GET /webhooks/socketio/`, `GET /webhooks/rest/`), which only say the channel is mounted.
///
/// With a cluster adapter, `"adapter"` says whether it is connected (`"ok"` or what is wrong). It does not make
/// the answer 503: a node that lost Redis still serves its own sockets and keeps every turn in the store.
///
/// With plugins, `"plugins"` is `"ok"` or an object naming each plugin that is degraded and why (every slot held
/// by a hung `handle()`, a circuit breaker open); the status is then `"degraded"` with `200`: the node still
/// answers, its other agents normally and the degraded one with the fallback.
public enum HealthRoute {
    /// Adds `GET /health` to `router`, reporting `store` and, when given, the adapter (nil: healthy) and the
    /// plugins' problems by plugin name (empty: healthy).
    public static func add<Context: RequestContext>(
        to router: Router<Context>, store: any ConversationStore, adapter: (@Sendable () -> String?)? = nil,
        plugins: (@Sendable () -> [String: String])? = nil
    ) {
        router.get("/health") { _, _ in
            var body: JSONObject = ["status": "ok", "store": "ok"]
            if let adapter { body["adapter"] = .string(adapter() ?? "ok") }
            if let plugins {
                let problems = plugins()
                if problems.isEmpty {
                    body["plugins"] = "ok"
                } else {
                    body["plugins"] = .object(JSONObject(problems.sorted { $0.key < $1.key }.map { ($0.key, JSONValue.string($0.value)) }))
                    body["status"] = "degraded"
                }
            }
            do {
                try await store.checkHealth()
                return HTTPJSON.response(.object(body))
            } catch {
                body["status"] = "unavailable"
                body["store"] = .string("\(error)")
                return HTTPJSON.response(.object(body), status: .serviceUnavailable)
            }
        }
    }
}
