public import Hummingbird
import HTTPTypes
import NIOCore
import ParleyCore
public import ParleyDispatch
import ParleyJSON

/// `POST /conversations/{id}/messages`: another system sends bot messages to a user (a reminder, an order
/// update, a human agent's answer), like Rasa's `trigger_intent` but with the messages themselves.
///
/// Body: a JSON array of Rasa response dicts (`[{"text": "Your order shipped"}]`), or an object
/// `{"responses": [...], "channel": "socketio"?, "create": false?}`. The messages go through the dispatcher as
/// a plugin `emit` does: in order with the conversation's turns, through the formatter chain of `channel`
/// (default: the conversation's latest input channel), recorded in the history as `bot` events, then delivered
/// to every connected socket of the conversation (its session room) as `bot_uttered`. The answer comes once the
/// events are committed: `202 {"conversation_id", "events": [the recorded events]}`.
///
/// Always needs the API token (`api.token`; `?token=` or `Authorization: Bearer`): `403` when the server has none
/// configured, `401`/`403` for a missing or wrong one. `404` for a conversation that has never had a message,
/// unless `"create": true` (then it starts with a new session); `400` for a body that is not that shape; `429` when
/// the conversation's mailbox is full; `503` when the store fails or the server is stopping.
public enum ProactiveRoute {
    /// Adds the route, authorising with `api` and sending through `dispatcher`.
    /// - Parameter maxBodySize: the largest accepted body in bytes (`413` above).
    public static func add<Context: RequestContext>(to router: Router<Context>, api: ConversationAPI, dispatcher: Dispatcher, maxBodySize: Int = 1_000_000) {
        router.post("/conversations/:id/messages") { request, context in
            await ConversationRoutes.respond(status: .accepted) {
                guard api.token != nil else {
                    throw ConversationAPIError(
                        status: 403, reason: "NotAuthorized", message: "sending messages over HTTP needs a token: set api.token in the configuration")
                }
                try api.authorize(token: request.uri.queryParameters.get("token"), authorization: request.headers[.authorization])
                let id = try context.parameters.require("id")
                do {
                    try InputValidation.checkSenderID(id)
                } catch {
                    throw ConversationAPIError(status: 400, reason: "BadRequest", message: "\(error)")
                }
                let body: ByteBuffer
                do {
                    body = try await request.body.collect(upTo: maxBodySize)
                } catch {
                    throw ConversationAPIError(status: 413, reason: "TooLarge", message: "the body is larger than \(maxBodySize) bytes")
                }
                let (responses, channel, create) = try parse(Array(buffer: body))
                do {
                    let result = try await dispatcher.emit(responses, to: id, channel: channel, createConversation: create)
                    return ["conversation_id": .string(id), "events": .array(result.events)]
                } catch let error as DispatchError {
                    throw apiError(error)
                }
            }
        }
    }

    /// The responses, channel and create flag of a body; 400 with what to send otherwise.
    static func parse(_ bytes: [UInt8]) throws(ConversationAPIError) -> ([JSONValue], String?, Bool) {
        let shape = "send a JSON array of Rasa response dicts, or {\"responses\": [...], \"channel\"?: \"socketio\", \"create\"?: false}"
        guard let value = try? JSONValue.parse(bytes, maxDepth: JSONValue.inputParseDepth) else {
            throw ConversationAPIError(status: 400, reason: "BadRequest", message: "the body is not JSON; \(shape)")
        }
        var channel: String?
        var create = false
        let list: JSONValue?
        switch value {
        case .array: list = value
        case .object(let object):
            list = object["responses"]
            switch object["channel"] {
            case nil, .null?: break
            case .string(let c)?: channel = c
            default: throw ConversationAPIError(status: 400, reason: "BadRequest", message: "channel must be a string; \(shape)")
            }
            switch object["create"] {
            case nil, .null?: break
            case .bool(let b)?: create = b
            default: throw ConversationAPIError(status: 400, reason: "BadRequest", message: "create must be true or false; \(shape)")
            }
        default: list = nil
        }
        guard case .array(let items)? = list, !items.isEmpty else {
            throw ConversationAPIError(status: 400, reason: "BadRequest", message: "no responses; \(shape)")
        }
        for (i, item) in items.enumerated() {
            guard case .object = item else {
                throw ConversationAPIError(status: 400, reason: "BadRequest", message: "responses[\(i)] is not an object; \(shape)")
            }
        }
        return (items, channel, create)
    }

    static func apiError(_ error: DispatchError) -> ConversationAPIError {
        switch error.code {
        case .unknownConversation:
            ConversationAPIError(status: 404, reason: "NotFound", message: "no conversation \(error.senderID); send \"create\": true to start it")
        case .mailboxFull:
            ConversationAPIError(status: 429, reason: "MailboxFull", message: "\(error)")
        default:
            ConversationAPIError(status: 503, reason: "Unavailable", message: "\(error)")
        }
    }
}
