/// Why a native action could not be loaded or run.
///
/// The ``description`` names the action when known and says what to fix, for example
/// `action action_tip: argument 2 (slot:percent, int32): slot 'percent' is not set`.
public struct ActionError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of failure. New codes may be added.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum _Code: String, Hashable, Sendable {
            case manifest, signature, library, symbol, argument, result, deadline, unknownAction, callback
        }
        private let code: _Code
        private init(_ code: _Code) { self.code = code }

        /// The manifest file is unreadable, not YAML, or has unknown keys / wrong types.
        public static let manifest = Code(.manifest)
        /// The signature string does not parse or does not fit the argument list.
        public static let signature = Code(.signature)
        /// The library cannot be opened.
        public static let library = Code(.library)
        /// The symbol (or the free function) is not exported by the library.
        public static let symbol = Code(.symbol)
        /// An argument value is missing, of the wrong JSON type, or out of range.
        public static let argument = Code(.argument)
        /// The returned value cannot be converted (for example a string that is not UTF-8).
        public static let result = Code(.result)
        /// The call did not return before its deadline.
        public static let deadline = Code(.deadline)
        /// No action with that name is loaded.
        public static let unknownAction = Code(.unknownAction)
        /// The `say` callback could not be created or received invalid text.
        public static let callback = Code(.callback)

        public var description: String { code.rawValue }
    }

    /// The kind of failure.
    public var code: Code
    /// The action's name, when the failure belongs to one.
    public var action: String?
    /// What is wrong and how to fix it.
    public var message: String

    /// Creates an error.
    public init(_ code: Code, action: String? = nil, _ message: String) {
        self.code = code
        self.action = action
        self.message = message
    }

    /// The same error attributed to `action` (kept when one is already set).
    func named(_ action: String) -> ActionError {
        var copy = self
        if copy.action == nil { copy.action = action }
        return copy
    }

    public var description: String {
        if let action { return "action \(action): \(message)" }
        return message
    }
}
