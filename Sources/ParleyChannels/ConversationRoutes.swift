public import Hummingbird
import HTTPTypes
import ParleyDispatch
import ParleyJSON

/// Mounts the conversation HTTP API (`ParleyDispatch.ConversationAPI`) on a router:
/// `GET /conversations/{id}/tracker[?include_events=ALL|AFTER_RESTART|APPLIED|NONE]` and
/// `GET /conversations/{id}/messages[?limit=N]` and (with a Socket.IO channel) `GET /conversations/{id}/connections`,
/// all checking `?token=` or `Authorization: Bearer` when a token is configured. With `sessionTokens`, a JWT whose session claim names `{id}` also reads that one
/// conversation (a widget restoring its own history). Errors get the API's status and Rasa-shaped body.
public enum ConversationRoutes {
    /// Adds the routes.
    /// - Parameters:
    ///   - sessionTokens: verifies conversation-scoped JWTs (the Socket.IO channel's key and session claim); nil
    ///     accepts only the API token.
    ///   - connections: the ids of the sockets connected to a conversation on every node
    ///     (``SocketIOChannel/connections(of:)``), served as `{"conversation_id", "connected": N, "sockets": [...]}`
    ///     (`503` when another node does not answer in time); nil: no such route.
    public static func add<Context: RequestContext>(
        to router: Router<Context>, api: ConversationAPI, sessionTokens: JWTVerifier? = nil,
        connections: (@Sendable (String) async throws -> [String])? = nil
    ) {
        if let connections {
            router.get("/conversations/:id/connections") { request, context in
                await respond {
                    let id = try context.parameters.require("id")
                    try authorize(request, conversationID: id, api: api, sessionTokens: sessionTokens)
                    let sockets: [String]
                    do {
                        sockets = try await connections(id)
                    } catch {
                        throw ConversationAPIError(status: 503, reason: "Unavailable", message: "\(error)")
                    }
                    return [
                        "conversation_id": .string(id), "connected": .int(Int64(sockets.count)), "sockets": .array(sockets.map { .string($0) }),
                    ]
                }
            }
        }
        router.get("/conversations/:id/tracker") { request, context in
            await respond {
                let id = try context.parameters.require("id")
                try authorize(request, conversationID: id, api: api, sessionTokens: sessionTokens)
                return try await api.tracker(conversationID: id, include: request.uri.queryParameters.get("include_events"))
            }
        }
        router.get("/conversations/:id/messages") { request, context in
            await respond {
                let id = try context.parameters.require("id")
                try authorize(request, conversationID: id, api: api, sessionTokens: sessionTokens)
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

    /// The API token, or (with `sessionTokens`) a JWT whose session is `id`.
    static func authorize(_ request: Request, conversationID id: String, api: ConversationAPI, sessionTokens: JWTVerifier?) throws(ConversationAPIError) {
        let query = request.uri.queryParameters.get("token")
        let header = request.headers[.authorization]
        guard let sessionTokens else {
            try api.authorize(token: query, authorization: header)
            return
        }
        if api.token != nil, (try? api.authorize(token: query, authorization: header)) != nil { return }
        guard let token = RESTChannel.bearerToken(header) ?? query.map({ String($0) }) else {
            throw ConversationAPIError(
                status: 401, reason: "NotAuthenticated", message: "this endpoint needs a token: Authorization: Bearer <the API token or the session's JWT>")
        }
        switch sessionTokens.verify(token: token) {
        case .success(let identity) where identity.sessionID == id:
            return
        case .success:
            throw ConversationAPIError(status: 403, reason: "NotAuthorized", message: "the token is for another conversation")
        case .failure:
            throw ConversationAPIError(status: 403, reason: "NotAuthorized", message: "the token is not valid for this server")
        }
    }

    /// Runs `body` and answers with its JSON (or the error's status and Rasa-shaped body).
    public static func respond(status: HTTPResponse.Status = .ok, _ body: () async throws -> JSONValue) async -> Response {
        do {
            return HTTPJSON.response(try await body(), status: status)
        } catch let error as ConversationAPIError {
            return HTTPJSON.response(error.body, status: HTTPResponse.Status(code: error.status))
        } catch {
            return HTTPJSON.error(.badRequest, reason: "BadRequest", message: "\(error)")
        }
    }
}
