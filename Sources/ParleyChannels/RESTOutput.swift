import Foundation
public import ParleyJSON

/// Rasa's `CollectingOutputChannel` shapes, as the REST channel returns them.
///
/// Each Rasa response dict becomes zero or more messages, by `OutputChannel.send_response` precedence:
/// `quick_replies` → `{recipient_id, text, buttons}`; else `buttons` → the same; else `text` → one
/// `{recipient_id, text}` per paragraph (`text.strip().split("\n\n")`, empty paragraphs skipped as Rasa Pro
/// does); then `custom` → `{recipient_id, custom}`; `image` → `{recipient_id, image}`; `attachment` →
/// `{recipient_id, attachment}`; `elements` → one `{recipient_id, text: "title : subtitle", buttons}` per
/// element. Falsy values are skipped; a buttons response without text keeps only `buttons`.
public enum RESTOutput {
    /// The messages for one response dict; non-object responses produce nothing.
    public static func messages(for response: JSONValue, recipientID: String) -> [JSONValue] {
        guard case .object(let r) = response else { return [] }
        let recipient = JSONValue.string(recipientID)
        func message(_ pairs: [(String, JSONValue)]) -> JSONValue {
            var o: JSONObject = ["recipient_id": recipient]
            for (k, v) in pairs { o[k] = v }
            return .object(o)
        }
        var out: [JSONValue] = []
        let text = r["text"].flatMap { $0.isFalsy ? nil : $0 }
        if let replies = r["quick_replies"], !replies.isFalsy {
            out.append(message((text.map { [("text", $0)] } ?? []) + [("buttons", replies)]))
        } else if let buttons = r["buttons"], !buttons.isFalsy {
            out.append(message((text.map { [("text", $0)] } ?? []) + [("buttons", buttons)]))
        } else if case .string(let t)? = text {
            for paragraph in Paragraphs.split(t) {
                out.append(message([("text", .string(paragraph))]))
            }
        } else if let text {
            out.append(message([("text", text)]))
        }
        if let custom = r["custom"], !custom.isFalsy { out.append(message([("custom", custom)])) }
        if let image = r["image"], !image.isFalsy { out.append(message([("image", image)])) }
        if let attachment = r["attachment"], !attachment.isFalsy { out.append(message([("attachment", attachment)])) }
        if let elements = r["elements"], !elements.isFalsy {
            let list: [JSONValue] = elements.arrayValue ?? [elements]
            for element in list {
                let title = element["title"].map(Self.pythonString) ?? ""
                let subtitle = element["subtitle"].map(Self.pythonString) ?? ""
                out.append(message([("text", .string("\(title) : \(subtitle)")), ("buttons", element["buttons"] ?? .array([]))]))
            }
        }
        return out
    }

    /// The messages for a turn's responses, in order.
    public static func messages(for responses: [JSONValue], recipientID: String) -> [JSONValue] {
        responses.flatMap { messages(for: $0, recipientID: recipientID) }
    }

    static func pythonString(_ v: JSONValue) -> String {
        if case .string(let s) = v { return s }
        return v.serialized
    }
}

/// Rasa's paragraph split: `text.strip().split("\n\n")`, with empty paragraphs dropped (Rasa Pro).
public enum Paragraphs {
    /// The non-empty paragraphs of `text`.
    public static func split(_ text: String) -> [String] {
        let stripped = pythonStrip(text)
        var parts: [String] = []
        var current = Substring(stripped)
        while let r = current.range(of: "\n\n") {
            parts.append(String(current[current.startIndex..<r.lowerBound]))
            current = current[r.upperBound...]
        }
        parts.append(String(current))
        return parts.filter { !$0.isEmpty }
    }

    /// Python's `str.strip()` (Unicode whitespace).
    public static func pythonStrip(_ s: String) -> String {
        var sub = Substring(s)
        while let f = sub.first, f.isWhitespace { sub.removeFirst() }
        while let l = sub.last, l.isWhitespace { sub.removeLast() }
        return String(sub)
    }
}
