/// A configuration mistake, reported before the server starts.
///
/// The description names the file, the key path and what was expected, for example
/// `parley.yml: channels.socketio.ping_interval: expected a number of seconds, got "fast"`.
public struct ConfigError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The file as the user named it (`parley.yml`, `examples/mirror.yml`), or `<command line>`.
    public var file: String
    /// The dotted key path (`channels.socketio.ping_interval`, `agents[0].plugin`); empty for the whole file.
    public var keyPath: String
    /// What is wrong and, where possible, what to write instead.
    public var message: String
    /// Where in the file (1-based), when known: the key's line and column, or its mapping's for a missing key.
    public var line: Int?
    /// See ``line``.
    public var column: Int?

    public init(file: String, keyPath: String, message: String, line: Int? = nil, column: Int? = nil) {
        self.file = file
        self.keyPath = keyPath
        self.message = message
        self.line = line
        self.column = column
    }

    /// `FILE:LINE:COL: key.path: message` (without `:LINE:COL` when the position is unknown, e.g. a command-line
    /// option; without the key path for the whole file).
    public var description: String {
        var location = file
        if let line { location += ":\(line):\(column ?? 1)" }
        return keyPath.isEmpty ? "\(location): \(message)" : "\(location): \(keyPath): \(message)"
    }
}
