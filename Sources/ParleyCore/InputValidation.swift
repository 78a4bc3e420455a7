public import ParleyJSON

/// Why a channel's input cannot become a ``UserMessage``.
///
/// The message of each case names the offending input and what a client should send instead; channels send
/// it back to the client (or log it) and keep serving.
public struct InputError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What was wrong, for tests and metrics; compare with the static members (new kinds may be added).
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable {
            case invalidUTF8, messageTooLarge, metadataNotObject, invalidSenderID, metadataTooDeep, metadataTooLarge
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }
        public var description: String { base.rawValue }

        /// The text bytes are not valid UTF-8.
        public static let invalidUTF8 = Code(.invalidUTF8)
        /// The text is longer than the configured maximum.
        public static let messageTooLarge = Code(.messageTooLarge)
        /// The metadata is not a JSON object (or a string holding one).
        public static let metadataNotObject = Code(.metadataNotObject)
        /// The conversation id is empty, too long or has control characters.
        public static let invalidSenderID = Code(.invalidSenderID)
        /// The metadata is nested deeper than the configured maximum.
        public static let metadataTooDeep = Code(.metadataTooDeep)
        /// The metadata's JSON is larger than the configured maximum.
        public static let metadataTooLarge = Code(.metadataTooLarge)
    }

    /// The kind of problem.
    public var code: Code
    /// What was wrong and what to send instead.
    public var description: String

    /// Creates an error.
    public init(_ code: Code, _ description: String) {
        self.code = code
        self.description = description
    }
}

/// Turning raw channel input into message parts, with the checks every channel needs.
public enum InputValidation {
    /// Decodes UTF-8 `bytes` as message text, refusing invalid UTF-8 instead of replacing it (a replaced
    /// character would silently change what the user said).
    public static func text(fromUTF8 bytes: some Collection<UInt8>) throws(InputError) -> String {
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw InputError(.invalidUTF8, "message text is not valid UTF-8; send the text UTF-8 encoded")
        }
        return text
    }

    /// Checks the size of a message's text: at most `maxBytes` bytes of UTF-8.
    public static func checkSize(of text: String, maxBytes: Int) throws(InputError) {
        let size = text.utf8.count
        guard size <= maxBytes else {
            throw InputError(
                .messageTooLarge,
                "message text is \(size) bytes, the limit is \(maxBytes) (dispatcher.max_message_bytes); send a shorter message"
            )
        }
    }

    /// Metadata as Rasa's socketio channel reads it: absent or null → `{}`, an object as is, a string parsed as
    /// JSON (it must hold an object). Anything else is refused.
    public static func metadata(from value: JSONValue?) throws(InputError) -> JSONObject {
        switch value {
        case .none, .some(.null): return [:]
        case .some(.object(let object)): return object
        case .some(.string(let text)):
            guard let parsed = try? JSONValue.parse(text, maxDepth: JSONValue.inputParseDepth), case .object(let object) = parsed else {
                throw InputError(.metadataNotObject, "metadata is a string that is not a JSON object; send metadata as an object")
            }
            return object
        case .some(let other):
            throw InputError(.metadataNotObject, "metadata must be a JSON object, got \(typeName(other)); send an object such as {\"language\":\"en\"}")
        }
    }

    /// Checks message metadata: nested at most `maxDepth` levels (`{"a": 1}` is 1) and at most `maxBytes` bytes
    /// as compact JSON. Both bounds keep every accepted message storable and readable back: the stored `user`
    /// event holds the metadata twice (`metadata`, `parse_data.metadata`), two levels deeper.
    public static func checkMetadata(_ metadata: JSONObject, maxDepth: Int, maxBytes: Int) throws(InputError) {
        guard !metadata.isEmpty else { return }
        let depth = JSONValue.object(metadata).nestingDepth
        guard depth <= maxDepth else {
            throw InputError(
                .metadataTooDeep, "metadata is nested \(depth) levels deep, the limit is \(maxDepth) (dispatcher.max_metadata_depth); send flatter metadata")
        }
        var bytes: [UInt8] = []
        JSONValue.object(metadata).serialize(into: &bytes)
        guard bytes.count <= maxBytes else {
            throw InputError(
                .metadataTooLarge, "metadata is \(bytes.count) bytes of JSON, the limit is \(maxBytes) (dispatcher.max_metadata_bytes); send less metadata")
        }
    }

    /// Checks a conversation id: 1 to `maxBytes` bytes, no control characters.
    public static func checkSenderID(_ id: String, maxBytes: Int = 256) throws(InputError) {
        guard !id.isEmpty, id.utf8.count <= maxBytes, !id.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw InputError(.invalidSenderID, "conversation id must be 1 to \(maxBytes) bytes without control characters")
        }
    }

    /// Whether a client's `message_id` is usable as the key that makes a repeated message a repeat: 1 to 256 bytes
    /// without control characters.
    public static func isValidMessageID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 256 && !id.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F })
    }

    /// The JSON type name of `value` (`object`, `array`, `string`, `number`, `boolean`, `null`).
    public static func typeName(_ value: JSONValue) -> String {
        switch value {
        case .null: "null"
        case .bool: "boolean"
        case .int, .double: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }
}
