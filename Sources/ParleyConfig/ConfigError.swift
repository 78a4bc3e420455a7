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

    public init(file: String, keyPath: String, message: String) {
        self.file = file
        self.keyPath = keyPath
        self.message = message
    }

    public var description: String {
        keyPath.isEmpty ? "\(file): \(message)" : "\(file): \(keyPath): \(message)"
    }
}
