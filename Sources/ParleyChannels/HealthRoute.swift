public import Hummingbird
public import ParleyDispatch
import ParleyJSON

/// `GET /health` for load balancers and orchestrators: `200 {"status":"ok","store":"ok"}` while the
/// conversation store answers, `503 {"status":"unavailable","store":"<what is wrong>"}` when it does not (for
/// SQLite: the file cannot be read, or the latest commit failed — a full disk), so the node is taken out of
/// rotation instead of answering every message with a refusal. Separate from the Rasa channels' own health
/// routes (`GET /webhooks/socketio/`, `GET /webhooks/rest/`), which only say the channel is mounted.
public enum HealthRoute {
    /// Adds `GET /health` to `router`, reporting `store`.
    public static func add<Context: RequestContext>(to router: Router<Context>, store: any ConversationStore) {
        router.get("/health") { _, _ in
            do {
                try await store.checkHealth()
                return HTTPJSON.response(["status": "ok", "store": "ok"])
            } catch {
                return HTTPJSON.response(["status": "unavailable", "store": .string("\(error)")], status: .serviceUnavailable)
            }
        }
    }
}
