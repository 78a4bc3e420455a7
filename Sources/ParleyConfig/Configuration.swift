public import ParleyServer
public import ParleyYAML

/// What `parley.yml` (and optionally a Rasa `credentials.yml`) says: the application's settings, as the
/// libraries' own configuration structs (``ParleyServer/ParleyServerConfiguration``), plus what only the
/// executable uses (logging) and the loader's warnings.
///
/// The settings are reached directly (`config.server.port`, `config.channels.socketIO`, `config.dispatcher`):
/// every default comes from the library that owns the struct; this module only maps YAML onto them. An empty
/// file (or no file) is a valid configuration except that serving needs at least one agent (see
/// ``validateForServing(file:)``). Paths are absolute or relative to the working directory once loaded: the
/// loader resolves paths written in a file against that file's folder.
@dynamicMemberLookup
public struct ParleyConfiguration: Sendable {
    /// The application's settings (what `buildApplication` takes).
    public var application: ParleyServerConfiguration
    /// Log level and format.
    public var logging: LoggingConfiguration
    /// Things the loader accepted but wants the user to know (ignored Rasa channels, Pro-only keys…),
    /// one line each, already prefixed with the file name. Log them at startup.
    public var warnings: [String]

    public init(application: ParleyServerConfiguration = .init(), logging: LoggingConfiguration = .init(), warnings: [String] = []) {
        self.application = application
        self.logging = logging
        self.warnings = warnings
    }

    /// A setting of ``application``.
    public subscript<Value>(dynamicMember keyPath: WritableKeyPath<ParleyServerConfiguration, Value>) -> Value {
        get { application[keyPath: keyPath] }
        set { application[keyPath: keyPath] = newValue }
    }
}

/// `logging:`.
public struct LoggingConfiguration: Sendable, Hashable {
    /// Log levels, as swift-log names them.
    public enum Level: String, Sendable, Hashable, CaseIterable {
        case trace, debug, info, notice, warning, error, critical
    }
    /// Output format.
    public enum Format: String, Sendable, Hashable, CaseIterable {
        /// `2026-01-01T10:00:00.000Z info parley.socketio: message key=value` lines.
        case text
        /// One JSON object per line.
        case json
    }
    /// `level`, default `info`.
    public var level: Level
    /// `format`, default `text`.
    public var format: Format

    public init(level: Level = .info, format: Format = .text) {
        self.level = level
        self.format = format
    }
}
