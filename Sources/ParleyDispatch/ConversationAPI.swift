import ParleyCore
public import ParleyJSON

/// The conversation HTTP API, without an HTTP framework: the channel layer mounts these functions on its
/// router (`GET /conversations/{id}/tracker`, `GET /conversations/{id}/messages`) and turns a thrown
/// ``ConversationAPIError`` into its ``ConversationAPIError/status`` and ``ConversationAPIError/body``.
///
/// Reads go to the store, which holds every completed turn (a turn's events are stored before its reply
/// goes out), so the API never shows half a turn.
public struct ConversationAPI: Sendable {
    /// Which events `GET /tracker` lists (Rasa's `include_events`).
    public enum EventSelection: String, Sendable, CaseIterable {
        /// Every event.
        case all = "ALL"
        /// Events from the latest `restart` on (Rasa's default).
        case afterRestart = "AFTER_RESTART"
        /// Events of the current session.
        case applied = "APPLIED"
        /// No events.
        case none = "NONE"
    }

    /// Where conversations are read from.
    public let store: any ConversationStore
    /// The token required by ``authorize(token:authorization:)``; nil = no check.
    public let token: String?

    /// Serves conversations of `store`, requiring `token` when given.
    public init(store: any ConversationStore, token: String? = nil) {
        self.store = store
        self.token = token
    }

    /// Checks the request's credentials: the `token` query parameter, or an `Authorization: Bearer <token>` (or
    /// `Token <token>`) header. Passes when no token is configured.
    /// - Throws: ``ConversationAPIError`` 401 when no token was sent, 403 when it is wrong.
    public func authorize(token query: String?, authorization header: String?) throws(ConversationAPIError) {
        guard let expected = token else { return }
        var offered = query
        if offered == nil, let header {
            for prefix in ["Bearer ", "bearer ", "Token ", "token "] where header.hasPrefix(prefix) {
                offered = String(header.dropFirst(prefix.count))
            }
        }
        guard let offered, !offered.isEmpty else {
            throw ConversationAPIError(
                status: 401, reason: "NotAuthenticated", message: "this endpoint needs a token: add ?token=<token> or the header Authorization: Bearer <token>")
        }
        guard Self.constantTimeEqual(offered, expected) else {
            throw ConversationAPIError(status: 403, reason: "NotAuthorized", message: "the token is not valid for this server")
        }
    }

    /// `GET /conversations/{id}/tracker`: the Rasa-shaped tracker (`sender_id`, `slots`, `latest_message`,
    /// `latest_event_time`, `paused`, `events`, `latest_input_channel`, `active_loop`, `latest_action_name`).
    /// - Parameter include: the `include_events` query parameter (default `AFTER_RESTART`).
    /// - Throws: ``ConversationAPIError`` 404 for an unknown conversation, 400 for a bad `include_events`, 500
    ///   when the store fails.
    public func tracker(conversationID id: String, include: String? = nil) async throws(ConversationAPIError) -> JSONValue {
        let selection: EventSelection
        if let include {
            guard let s = EventSelection(rawValue: include.uppercased()) else {
                throw ConversationAPIError(
                    status: 400, reason: "BadRequest",
                    message: "include_events must be one of \(EventSelection.allCases.map(\.rawValue).joined(separator: ", ")), got \(include)")
            }
            selection = s
        } else {
            selection = .afterRestart
        }
        let events = try await allEvents(id)
        var tracker = Tracker(senderID: id, retainedEventLimit: max(1, events.count))
        tracker.apply(contentsOf: events)
        let listed: [JSONValue]
        switch selection {
        case .all: listed = events
        case .none: listed = []
        case .applied: listed = Array(tracker.recentEvents)
        case .afterRestart:
            let start = events.lastIndex { TrackerEvent.kind(of: $0) == TrackerEvent.Kind.restart } ?? 0
            listed = Array(events[start...])
        }
        return tracker.json(events: listed)
    }

    /// `GET /conversations/{id}/messages`: the user and bot messages, oldest first, newest last:
    /// `{"sender_id", "messages": [{"sender":"user","text","timestamp","message_id","metadata"} |
    /// {"sender":"bot","timestamp","text"?,"response"}]}` where `response` is the Rasa response dict (channels map
    /// it with ``OutputMapping``).
    /// - Parameter limit: only the last `limit` messages.
    /// - Throws: ``ConversationAPIError`` 404 for an unknown conversation, 400 for a bad limit.
    public func messages(conversationID id: String, limit: Int? = nil) async throws(ConversationAPIError) -> JSONValue {
        if let limit, limit < 0 {
            throw ConversationAPIError(status: 400, reason: "BadRequest", message: "limit must be 0 or more, got \(limit)")
        }
        let events: [JSONValue]
        do {
            guard let found = try await store.events(of: id, types: [TrackerEvent.Kind.user, TrackerEvent.Kind.bot]) else {
                throw Self.notFound(id)
            }
            events = found
        } catch let error as ConversationAPIError {
            throw error
        } catch {
            throw ConversationAPIError(status: 500, reason: "StoreError", message: "\(error)")
        }
        var messages: [JSONValue] = events.compactMap(Self.message)
        if let limit, messages.count > limit { messages = Array(messages.suffix(limit)) }
        return ["sender_id": .string(id), "messages": .array(messages)]
    }

    /// One history entry for a `user` or `bot` event.
    static func message(_ event: JSONValue) -> JSONValue? {
        let timestamp = event["timestamp"] ?? .null
        switch TrackerEvent.kind(of: event) {
        case TrackerEvent.Kind.user:
            return [
                "sender": "user", "text": event["text"] ?? .null, "timestamp": timestamp,
                "message_id": event["message_id"] ?? .null, "metadata": event["metadata"] ?? [:],
            ]
        case TrackerEvent.Kind.bot:
            guard let response = TrackerEvent.response(fromBotEvent: event) else { return nil }
            var m: JSONObject = ["sender": "bot", "timestamp": timestamp]
            if let text = response["text"], !text.isNull { m["text"] = text }
            m["response"] = response
            if let seq = TrackerEvent.sequence(of: event) { m["seq"] = .int(seq) }
            return .object(m)
        default:
            return nil
        }
    }

    private func allEvents(_ id: String) async throws(ConversationAPIError) -> [JSONValue] {
        do {
            guard let events = try await store.events(of: id, types: nil) else { throw Self.notFound(id) }
            return events
        } catch let error as ConversationAPIError {
            throw error
        } catch {
            throw ConversationAPIError(status: 500, reason: "StoreError", message: "\(error)")
        }
    }

    static func notFound(_ id: String) -> ConversationAPIError {
        ConversationAPIError(status: 404, reason: "NotFound", message: "no conversation with id \(id); ids are the sender_id / session_id the channel used")
    }

    public static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        var diff = UInt8(x.count == y.count ? 0 : 1)
        for i in 0..<max(x.count, y.count) {
            diff |= (i < x.count ? x[i] : 0) ^ (i < y.count ? y[i] : 0)
        }
        return diff == 0
    }
}

/// A conversation API failure with the HTTP status and Rasa-shaped body to answer with.
public struct ConversationAPIError: Error, Sendable, Hashable, CustomStringConvertible {
    /// HTTP status: 400, 401, 403, 404 or 500.
    public var status: Int
    /// Short reason (`NotFound`, `NotAuthenticated`, …).
    public var reason: String
    /// What went wrong and how to fix it.
    public var message: String

    /// Creates an error.
    public init(status: Int, reason: String, message: String) {
        self.status = status
        self.reason = reason
        self.message = message
    }

    /// The response body, as Rasa's server shapes errors: `{"status":"failure","message","reason","details":{},"help":null,"code"}`.
    public var body: JSONValue {
        [
            "status": "failure", "message": .string(message), "reason": .string(reason), "details": [:], "help": nil,
            "code": .int(Int64(status)),
        ]
    }

    /// `"<status> <reason>: <message>"`.
    public var description: String { "\(status) \(reason): \(message)" }
}
