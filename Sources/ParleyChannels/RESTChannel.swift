public import Hummingbird
import HTTPTypes
public import Logging
import NIOCore
public import ParleyCore
public import ParleyDispatch
import ParleyJSON

/// Rasa's REST channel: `POST /webhooks/rest/webhook` with `{"sender", "message", "metadata"?}` answers with
/// a JSON array of Rasa's collecting output messages (``OutputMapping/restMessages(for:recipientID:)-(JSONValue,_)``); `GET /webhooks/rest/` is its
/// health route (`{"status":"ok"}`).
///
/// Bad requests get a Rasa-shaped failure body: 400 for invalid JSON, a missing or mistyped `sender` /
/// `message`, `metadata` that is not an object or is nested too deep; 413 for a body above ``maxBodySize``, text or
/// metadata above the dispatcher's limits; 429 when the conversation's mailbox is full; 503 when the dispatcher
/// cannot take the message (the store fails, the server is stopping).
///
/// With a ``jwt`` verifier every request must carry `Authorization: Bearer <JWT>` (401 otherwise); when the
/// verifier has a session claim, `sender` must be that claim's value (403 otherwise), so a client can only
/// write into its own conversation — the same binding the Socket.IO channel applies with `jwt_session_claim`.
public struct RESTChannel: Sendable {
    /// The channel name recorded as `input_channel`.
    public static let name = "rest"
    /// Largest accepted body in bytes.
    public var maxBodySize: Int
    /// Verifies the `Authorization: Bearer` token of each request; nil accepts requests without one (Rasa).
    public var jwt: JWTVerifier?
    let turns: any TurnHandler

    public init(turns: any TurnHandler, maxBodySize: Int = 1_000_000, jwt: JWTVerifier? = nil) {
        self.turns = turns
        self.maxBodySize = maxBodySize
        self.jwt = jwt
    }

    /// Adds the channel's routes to `router`.
    public func addRoutes<Context: RequestContext>(to router: Router<Context>) {
        router.get("/webhooks/rest") { _, _ in HTTPJSON.ok }
        router.post("/webhooks/rest/webhook") { request, context in
            await self.webhook(request, logger: context.logger)
        }
    }

    func webhook(_ request: Request, logger: Logger) async -> Response {
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: maxBodySize)
        } catch is NIOTooManyBytesError {
            logger.info("rest: body too large", metadata: ["limit": "\(maxBodySize)"])
            return HTTPJSON.error(
                .contentTooLarge, reason: "PayloadTooLarge", message: "the request body is larger than \(maxBodySize) bytes (channels.rest.max_body_size)")
        } catch {
            return HTTPJSON.error(.badRequest, reason: "BadRequest", message: "could not read the request body: \(error)")
        }
        var identity: JWTIdentity?
        if let jwt {
            guard let token = Self.bearerToken(request.headers[.authorization]) else {
                return HTTPJSON.error(
                    .unauthorized, reason: "NotAuthenticated", message: "this channel needs a JWT: send the header Authorization: Bearer <token>")
            }
            switch jwt.verify(token: token) {
            case .success(let verified): identity = verified
            case .failure(let rejection):
                logger.info("rest: token refused", metadata: ["reason": "\(rejection)"])
                return HTTPJSON.error(.unauthorized, reason: "NotAuthenticated", message: "the token was refused: \(rejection.reason)")
            }
        }
        let reply = await reply(toBody: Array(body.readableBytesView), sessionOf: identity, logger: logger)
        return HTTPJSON.response(reply.body, status: reply.status)
    }

    /// The token of an `Authorization: Bearer <token>` header.
    static func bearerToken(_ header: String?) -> String? {
        guard let header else { return nil }
        for prefix in ["Bearer ", "bearer "] where header.hasPrefix(prefix) {
            let token = header.dropFirst(prefix.count).drop(while: { $0 == " " })
            return token.isEmpty ? nil : String(token)
        }
        return nil
    }

    /// A webhook answer: the HTTP status and the JSON body.
    public struct Reply: Sendable, Hashable {
        public var status: HTTPResponse.Status
        public var body: JSONValue
    }

    /// Answers a webhook body (everything the route does after reading the body; testable without a server).
    /// - Returns: 200 with the JSON array of messages; 400 for a bad body; 503 when the message was refused.
    /// - Parameter identity: the verified token of the request; with a session, `sender` must match it (403).
    public func reply(toBody bytes: [UInt8], sessionOf identity: JWTIdentity? = nil, logger: Logger) async -> Reply {
        let message: UserMessage
        switch Self.parse(bytes) {
        case .success(let m): message = m
        case .failure(let problem):
            logger.info("rest: bad request", metadata: ["reason": "\(problem.message)"])
            return Reply(status: .badRequest, body: HTTPJSON.errorBody(.badRequest, reason: "BadRequest", message: problem.message))
        }
        if let session = identity?.sessionID, session != message.senderID {
            logger.info("rest: sender is not the token's session; refused", metadata: ["sender_id": "\(message.senderID)", "token_session": "\(session)"])
            return Reply(
                status: .forbidden,
                body: HTTPJSON.errorBody(
                    .forbidden, reason: "NotAuthorized", message: "this token may only write as sender \(JSONValue.string(session).serialized)"))
        }
        logger.debug("rest: message", metadata: ["sender_id": "\(message.senderID)", "message_id": "\(message.messageID)"])
        do {
            let result = try await turns.handle(message)
            return Reply(status: .ok, body: .array(OutputMapping.restMessages(for: result.responses, recipientID: message.senderID)))
        } catch let error as InputError {
            ChannelMetrics.refused(code: Refusal.from(error).code)
            logger.info("rest: message refused", metadata: ["sender_id": "\(message.senderID)", "error": "\(error)"])
            let status: HTTPResponse.Status = error.code == .messageTooLarge || error.code == .metadataTooLarge ? .contentTooLarge : .badRequest
            return Reply(status: status, body: HTTPJSON.errorBody(status, reason: "InvalidInput", message: error.description))
        } catch let error as DispatchError where error.code == .mailboxFull {
            ChannelMetrics.refused(code: "mailbox_full")
            logger.info("rest: message refused", metadata: ["sender_id": "\(message.senderID)", "error": "\(error)"])
            return Reply(
                status: .tooManyRequests,
                body: HTTPJSON.errorBody(.tooManyRequests, reason: "MailboxFull", message: "\(error); wait for the answers to the earlier messages"))
        } catch {
            logger.warning("rest: message refused", metadata: ["sender_id": "\(message.senderID)", "error": "\(error)"])
            return Reply(
                status: .serviceUnavailable,
                body: HTTPJSON.errorBody(.serviceUnavailable, reason: "MessageRefused", message: "the message was not handled: \(error)"))
        }
    }

    /// A problem with a webhook body.
    public struct BadRequest: Error, Hashable, Sendable {
        public var message: String
    }

    /// Parses a webhook body into a user message (text stripped like Rasa's `UserMessage`).
    public static func parse(_ bytes: [UInt8]) -> Result<UserMessage, BadRequest> {
        let json: JSONValue
        do {
            json = try JSONValue.parse(bytes, maxDepth: JSONValue.inputParseDepth)
        } catch let error as JSONParseError where error.reason.hasPrefix("nesting deeper") {
            return .failure(BadRequest(message: "the body is nested deeper than \(JSONValue.inputParseDepth) levels; send flatter metadata"))
        } catch {
            return .failure(BadRequest(message: "the body is not valid JSON (\(error)); send {\"sender\": \"<id>\", \"message\": \"<text>\"}"))
        }
        guard case .object(let o) = json else {
            return .failure(BadRequest(message: "the body must be a JSON object {\"sender\": \"<id>\", \"message\": \"<text>\"}"))
        }
        let sender: String
        switch o["sender"] {
        case .string(let s)? where !s.isEmpty: sender = s
        case .int(let i)?: sender = String(i)
        case nil, .null?: return .failure(BadRequest(message: "missing \"sender\": the conversation id (a non-empty string)"))
        default: return .failure(BadRequest(message: "\"sender\" must be a non-empty string (the conversation id)"))
        }
        let text: String
        switch o["message"] {
        case .string(let s)?: text = Paragraphs.pythonStrip(s)
        case nil, .null?: return .failure(BadRequest(message: "missing \"message\": the user's text"))
        default: return .failure(BadRequest(message: "\"message\" must be a string"))
        }
        var metadata = JSONObject()
        switch o["metadata"] {
        case nil, .null?: break
        case .object(let m)?: metadata = m
        default: return .failure(BadRequest(message: "\"metadata\" must be a JSON object"))
        }
        var messageID: String?
        switch o["message_id"] {
        case nil, .null?: break
        case .string(let id)? where InputValidation.isValidMessageID(id): messageID = id
        default:
            return .failure(
                BadRequest(message: "\"message_id\" must be a string of 1 to 256 bytes without control characters (a repeated one is answered once)"))
        }
        return .success(UserMessage(text: text, senderID: sender, inputChannel: name, metadata: metadata, messageID: messageID))
    }
}
