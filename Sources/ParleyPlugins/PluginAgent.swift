public import ParleyCore
public import ParleyDispatch
public import ParleyJSON

/// An ``Agent`` backed by a C-ABI agent plugin.
///
/// Sends ``AgentRequest/payload`` (Rasa's action-server request shape; a minimal one is built from the
/// message when the payload is not an object) and validates the reply
/// `{"events": [{…}], "responses": [{…}]}` (both optional; every element an object).
public struct PluginAgent: Agent {
    /// The loaded plugin.
    public let plugin: LoadedPlugin

    /// Most tracker events sent to the plugin: the configured `tracker_events`, else 0 when the plugin sets
    /// `PARLEY_FLAG_NO_TRACKER_EVENTS`, else nil (the dispatcher's limit).
    public let trackerEventLimit: Int?

    /// Wraps a loaded agent plugin; `trackerEvents` overrides what the plugin declares.
    public init(plugin: LoadedPlugin, trackerEvents: Int? = nil) {
        self.plugin = plugin
        self.trackerEventLimit = trackerEvents ?? (plugin.wantsTrackerEvents ? nil : 0)
    }

    /// The plugin's configured name.
    public var name: String { plugin.name }

    /// The plugin's configured deadline: the dispatcher sends the fallback when a turn takes longer.
    public var deadline: Duration? { plugin.deadline }

    /// Runs one turn on the plugin. Throws ``PluginCallError`` (deadline, invalid reply, plugin failure).
    public func respond(to request: AgentRequest) async throws -> AgentReply {
        let reply: JSONValue
        if request.hasObjectPayload {
            reply = try await plugin.call(senderID: request.message.senderID, stream: request.stream) { request.serializePayload(into: &$0) }
        } else {
            let payload = Self.minimalPayload(for: request.message)
            reply = try await plugin.call(senderID: request.message.senderID, stream: request.stream) { payload.serialize(into: &$0) }
        }
        return try Self.parseReply(reply, plugin: plugin.name)
    }

    /// Rasa's action-server request for `message` with an empty tracker history.
    public static func minimalPayload(for message: UserMessage) -> JSONValue {
        let latest: JSONValue = [
            "text": .string(message.text), "message_id": .string(message.messageID),
            "metadata": .object(message.metadata), "input_channel": .string(message.inputChannel),
        ]
        return [
            "sender_id": .string(message.senderID),
            "message": latest,
            "tracker": [
                "sender_id": .string(message.senderID), "slots": [:], "latest_message": latest, "events": [],
            ],
        ]
    }

    /// Validates an agent reply.
    static func parseReply(_ reply: JSONValue, plugin: String) throws(PluginCallError) -> AgentReply {
        guard let object = reply.objectValue else {
            throw PluginCallError(code: .invalidShape, plugin: plugin, reason: #"reply must be a JSON object {"events": [...], "responses": [...]}"#)
        }
        if let error = object["error"], object["responses"] == nil {
            throw PluginCallError(code: .pluginFailed, plugin: plugin, reason: "reply is an error: \(error.serialized)")
        }
        return AgentReply(
            events: try objects(object["events"], key: "events", plugin: plugin),
            responses: try objects(object["responses"], key: "responses", plugin: plugin))
    }
}

/// A ``MessageFormatter`` backed by a C-ABI formatter plugin: sends
/// `{"channel", "sender_id", "responses"}` and expects `{"responses": [{…}]}`.
public struct PluginFormatter: MessageFormatter {
    /// The loaded plugin.
    public let plugin: LoadedPlugin

    /// Wraps a loaded formatter plugin.
    public init(plugin: LoadedPlugin) {
        self.plugin = plugin
    }

    /// The plugin's configured name.
    public var name: String { plugin.name }

    /// Formats `responses` for `channel`. Throws ``PluginCallError`` (deadline, invalid reply, failure).
    public func format(_ responses: [JSONValue], channel: String, senderID: String) async throws -> [JSONValue] {
        let request: JSONValue = ["channel": .string(channel), "sender_id": .string(senderID), "responses": .array(responses)]
        return try Self.parseReply(try await plugin.call(request, senderID: senderID), plugin: plugin.name)
    }

    /// Validates a formatter reply: `{"responses": [{…}]}`.
    static func parseReply(_ reply: JSONValue, plugin: String) throws(PluginCallError) -> [JSONValue] {
        guard let object = reply.objectValue, object["responses"] != nil else {
            throw PluginCallError(code: .invalidShape, plugin: plugin, reason: #"reply must be {"responses": [...]}"#)
        }
        return try objects(object["responses"], key: "responses", plugin: plugin)
    }
}

/// Applies formatters in order, each to the previous one's output (the `plugins.formatters` list).
public struct FormatterChain: MessageFormatter {
    /// The formatters, first applied first.
    public var formatters: [any MessageFormatter]

    /// A chain applying `formatters` in order.
    public init(_ formatters: [any MessageFormatter]) {
        self.formatters = formatters
    }

    /// The formatters' names joined with ` -> `.
    public var name: String { formatters.map(\.name).joined(separator: " -> ") }

    /// Runs every formatter in order; the first failure is thrown (the caller decides whether to send the
    /// unformatted responses or the fallback).
    public func format(_ responses: [JSONValue], channel: String, senderID: String) async throws -> [JSONValue] {
        var current = responses
        for formatter in formatters {
            current = try await formatter.format(current, channel: channel, senderID: senderID)
        }
        return current
    }
}

/// `value` as an array of objects (nil = empty).
private func objects(_ value: JSONValue?, key: String, plugin: String) throws(PluginCallError) -> [JSONValue] {
    guard let value, !value.isNull else { return [] }
    guard let array = value.arrayValue else {
        throw PluginCallError(code: .invalidShape, plugin: plugin, reason: "reply \"\(key)\" must be an array of objects, got \(value.serialized.prefix(80))")
    }
    for (i, element) in array.enumerated() where element.objectValue == nil {
        throw PluginCallError(code: .invalidShape, plugin: plugin, reason: "reply \"\(key)\"[\(i)] must be an object, got \(element.serialized.prefix(80))")
    }
    return array
}
