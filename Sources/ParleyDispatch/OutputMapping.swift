public import ParleyJSON
import ParleyCore

/// Channel-neutral mapping of Rasa response dicts to channel messages, shared by the Socket.IO and REST
/// channels.
///
/// Follows Rasa's `OutputChannel.send_response` precedence: exactly one of `quick_replies` → `buttons` →
/// `text`, then `custom`, `image`, `attachment`, `elements`, each only when truthy (Python truthiness: `""`,
/// `[]`, `{}`, `null`, `0` and `false` are skipped). One response can yield several messages. Where Rasa
/// 3.6 is broken, the Rasa Pro behaviour is used: custom payloads are delivered, a button without `payload`
/// uses its `title`, empty paragraphs are skipped. See docs/dispatch.md for the full table.
public enum OutputMapping {
    /// The `bot_uttered` payloads for one response, in emit order (Rasa `SocketIOOutput`, Pro behaviour).
    ///
    /// - `text`: one `{"text": p}` per non-empty paragraph of `text.strip().split("\n\n")`.
    /// - `buttons` / `quick_replies` with text: the paragraphs as `{"text": p, "quick_replies": []}`, the last one
    ///   carrying `[{"content_type":"text","title","payload"}…]`; with blank or missing text, one
    ///   `{"quick_replies": […]}`.
    /// - `custom` C: `C["data"]` when C is an object with a `data` key, else C itself.
    /// - `image` U: `{"attachment":{"type":"image","payload":{"src":U}}}`.
    /// - `attachment` A: `{"attachment": A}`.
    /// - `elements` [e…]: one `{"attachment":{"type":"template","payload":{"template_type":"generic","elements":e}}}`
    ///   per element.
    /// Responses that are not objects yield nothing.
    public static func socketIOMessages(for response: JSONValue) -> [JSONValue] {
        guard case .object(let r) = response else { return [] }
        var out: [JSONValue] = []
        if let replies = truthy(r["quick_replies"]) ?? truthy(r["buttons"]) {
            let quickReplies = JSONValue.array(elementsOf(replies).compactMap(quickReply))
            let parts = Paragraphs.split(r["text"]?.stringValue ?? "")
            if parts.isEmpty {
                out.append(["quick_replies": quickReplies])
            } else {
                for (i, p) in parts.enumerated() {
                    out.append(["text": .string(p), "quick_replies": i == parts.count - 1 ? quickReplies : []])
                }
            }
        } else if let text = truthy(r["text"]) {
            for p in Paragraphs.split(textOf(text)) { out.append(["text": .string(p)]) }
        }
        if let custom = truthy(r["custom"]) {
            if case .object(let c) = custom, let data = c["data"] {
                out.append(data)
            } else {
                out.append(custom)
            }
        }
        if let image = truthy(r["image"]) {
            out.append(["attachment": ["type": "image", "payload": ["src": image]]])
        }
        if let attachment = truthy(r["attachment"]) {
            out.append(["attachment": attachment])
        }
        if let elements = truthy(r["elements"]) {
            for e in elementsOf(elements) {
                out.append(["attachment": ["type": "template", "payload": ["template_type": "generic", "elements": e]]])
            }
        }
        return out
    }

    /// The messages Rasa's REST channel (`CollectingOutputChannel`) collects for one response, each
    /// `{"recipient_id", "text"?, "image"?, "buttons"?, "attachment"?, "custom"?}` with absent keys omitted.
    ///
    /// - `text`: one `{"recipient_id","text": p}` per paragraph of `text.strip().split("\n\n")` (empty ones skipped).
    /// - `buttons` / `quick_replies`: one `{"recipient_id","text","buttons"}` with the whole text and the buttons as
    ///   given (`text` omitted when missing).
    /// - `custom` C: `{"recipient_id","custom": C}`; `image` U: `{"recipient_id","image": U}`;
    ///   `attachment` A: `{"recipient_id","attachment": A}`.
    /// - `elements`: per element `{"recipient_id","text": "<title> : <subtitle>","buttons": element.buttons or []}`
    ///   (Rasa's default `send_elements`).
    public static func restMessages(for response: JSONValue, recipientID: String) -> [JSONValue] {
        guard case .object(let r) = response else { return [] }
        let recipient = JSONValue.string(recipientID)
        func message(_ pairs: (String, JSONValue?)...) -> JSONValue {
            var o: JSONObject = ["recipient_id": recipient]
            for (k, v) in pairs { if let v, !v.isNull { o[k] = v } }
            return .object(o)
        }
        var out: [JSONValue] = []
        if let buttons = truthy(r["quick_replies"]) ?? truthy(r["buttons"]) {
            out.append(message(("text", r["text"]), ("buttons", buttons)))
        } else if let text = truthy(r["text"]) {
            for p in Paragraphs.split(textOf(text)) { out.append(message(("text", .string(p)))) }
        }
        if let custom = truthy(r["custom"]) { out.append(message(("custom", custom))) }
        if let image = truthy(r["image"]) { out.append(message(("image", image))) }
        if let attachment = truthy(r["attachment"]) { out.append(message(("attachment", attachment))) }
        if let elements = truthy(r["elements"]) {
            for e in elementsOf(elements) {
                let title = e["title"].map(textOf) ?? ""
                let subtitle = e["subtitle"].map(textOf) ?? ""
                out.append(message(("text", .string("\(title) : \(subtitle)")), ("buttons", e["buttons"] ?? [])))
            }
        }
        return out
    }

    /// All `bot_uttered` payloads for a list of responses, in order.
    public static func socketIOMessages(for responses: [JSONValue]) -> [JSONValue] {
        responses.flatMap { socketIOMessages(for: $0) }
    }

    /// All REST messages for a list of responses, in order.
    public static func restMessages(for responses: [JSONValue], recipientID: String) -> [JSONValue] {
        responses.flatMap { restMessages(for: $0, recipientID: recipientID) }
    }

    // MARK: - Helpers

    /// A button as a Socket.IO quick reply: `{"content_type":"text","title","payload"}`; the payload defaults to
    /// the title (Rasa Pro). Buttons that are not objects are dropped.
    static func quickReply(_ button: JSONValue) -> JSONValue? {
        guard case .object(let b) = button else { return nil }
        let title = b["title"] ?? ""
        let payload = b["payload"] ?? title
        return ["content_type": "text", "title": title, "payload": payload]
    }

    static func truthy(_ value: JSONValue?) -> JSONValue? {
        guard let value, !value.isFalsy else { return nil }
        return value
    }

    /// The items of an array; any other value stands for one item.
    static func elementsOf(_ value: JSONValue) -> [JSONValue] {
        if case .array(let a) = value { return a }
        return [value]
    }

    /// A string's text, other values as their JSON text (Python would `str()` them).
    static func textOf(_ value: JSONValue) -> String {
        if case .string(let s) = value { return s }
        return value.serialized
    }
}
