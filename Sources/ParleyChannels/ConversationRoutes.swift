public import Hummingbird
import HTTPTypes
import ParleyDispatch
import ParleyJSON

/// Mounts the conversation HTTP API (`ParleyDispatch.ConversationAPI`) on a router:
/// `GET /conversations/{id}/tracker[?include_events=ALL|AFTER_RESTART|APPLIED|NONE]` and
/// `GET /conversations/{id}/messages[?limit=N]`, both checking `?token=` or `Authorization: Bearer` when a
/// token is configured. Errors get the API's status and Rasa-shaped body.
public enum ConversationRoutes {
    /// Adds the two routes.
    public static func add<Context: RequestContext>(to router: Router<Context>, api: ConversationAPI) {
        router.get("/conversations/:id/tracker") { request, context in
            await respond {
                try api.authorize(token: request.uri.queryParameters.get("token"), authorization: request.headers[.authorization])
                let id = try context.parameters.require("id")
                return try await api.tracker(conversationID: id, include: request.uri.queryParameters.get("include_events"))
            }
        }
        router.get("/conversations/:id/messages") { request, context in
            await respond {
                try api.authorize(token: request.uri.queryParameters.get("token"), authorization: request.headers[.authorization])
                let id = try context.parameters.require("id")
                var limit: Int?
                if let l = request.uri.queryParameters.get("limit") {
                    guard let n = Int(l) else {
                        throw ConversationAPIError(status: 400, reason: "BadRequest", message: "limit must be a whole number, got \(l)")
                    }
                    limit = n
                }
                return try await api.messages(conversationID: id, limit: limit)
            }
        }
    }

    static func respond(status: HTTPResponse.Status = .ok, _ body: () async throws -> JSONValue) async -> Response {
        do {
            return HTTPJSON.response(try await body(), status: status)
        } catch let error as ConversationAPIError {
            return HTTPJSON.response(error.body, status: HTTPResponse.Status(code: error.status))
        } catch {
            return HTTPJSON.error(.badRequest, reason: "BadRequest", message: "\(error)")
        }
    }
}
