import ArgumentParser
import Metrics
import Prometheus
import Foundation
import Logging
import ParleyConfig
import ParleyYAML
import ParleyServer

/// `parley serve`: loads the configuration, then serves the channels until SIGTERM/SIGINT.
///
/// Exit codes: 0 after a graceful shutdown; 64 for command-line mistakes (ArgumentParser); 78 (`EX_CONFIG`)
/// for configuration errors, with one line on stderr naming the file, the key path and what was expected;
/// 70 when a plugin, the store or the listening socket cannot be set up.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve the configured bot over the Rasa-compatible Socket.IO and REST channels.",
        discussion: """
            Reads --config (default: parley.yml in the working directory, if present). With --credentials, the
            socketio: and rest: sections of a Rasa credentials.yml become the served channels.
            """
    )

    @Option(name: .long, help: ArgumentHelp("The Parley configuration file.", valueName: "parley.yml"))
    var config: String?

    @Option(name: .long, help: ArgumentHelp("A Rasa credentials.yml whose socketio:/rest: sections are served.", valueName: "credentials.yml"))
    var credentials: String?

    @Option(name: .long, help: "Bind address (overrides server.host).")
    var host: String?

    @Option(name: .long, help: "TCP port (overrides server.port).")
    var port: Int?

    @Option(name: .long, help: ArgumentHelp("Log level (overrides logging.level).", valueName: "trace|debug|info|notice|warning|error|critical"))
    var logLevel: String?

    @Option(name: .long, help: ArgumentHelp("Log format (overrides logging.format).", valueName: "text|json"))
    var logFormat: String?

    /// The configuration with the command-line overrides applied.
    func loadConfiguration() throws(ConfigError) -> ParleyConfiguration {
        var c = try ConfigurationLoader().load(configPath: config, credentialsPath: credentials)
        let cli = "command line"
        if let host {
            guard !host.isEmpty else { throw ConfigError(file: cli, keyPath: "--host", message: "expected a host name or IP address, got \"\"") }
            c.server.host = host
        }
        if let port {
            guard (0...65535).contains(port) else {
                throw ConfigError(file: cli, keyPath: "--port", message: "expected a TCP port number between 0 and 65535, got \(port)")
            }
            c.server.port = port
        }
        if let logLevel {
            guard let l = LoggingConfiguration.Level(rawValue: logLevel.lowercased()) else {
                throw ConfigError(
                    file: cli, keyPath: "--log-level",
                    message: "expected one of \(LoggingConfiguration.Level.allCases.map(\.rawValue).joined(separator: ", ")), got \"\(logLevel)\"")
            }
            c.logging.level = l
        }
        if let logFormat {
            guard let f = LoggingConfiguration.Format(rawValue: logFormat.lowercased()) else {
                throw ConfigError(file: cli, keyPath: "--log-format", message: "expected text or json, got \"\(logFormat)\"")
            }
            c.logging.format = f
        }
        try c.validateForServing(file: config ?? "parley.yml")
        return c
    }

    func run() async throws {
        let configuration: ParleyConfiguration
        do {
            configuration = try loadConfiguration()
        } catch {
            FileHandle.standardError.write(Data("parley: \(error)\n".utf8))
            throw ExitCode(78)
        }
        LoggingBootstrap.bootstrap(configuration.logging)
        // Before anything creates a metric: swift-metrics objects bind to the backend bootstrapped when they are made.
        // With metrics off nothing is bootstrapped and every metric is swift-metrics' no-op.
        let metrics = configuration.metrics.enabled ? PrometheusCollectorRegistry() : nil
        if let metrics { MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: metrics)) }
        let logger = Logger(label: "parley")
        for warning in configuration.warnings { logger.warning("\(warning)") }
        do {
            let command = self
            let reloadSource: ConfigurationSource = { try command.loadConfiguration().application }
            try await buildApplication(configuration.application, logger: logger, metrics: metrics, reloadSource: reloadSource).run()
        } catch let error as StartupError {
            logger.critical("\(error.description)")
            FileHandle.standardError.write(Data("parley: \(error.description)\n".utf8))
            throw ExitCode(70)
        }
    }
}

/// Installs the process-wide log handler once, at startup.
enum LoggingBootstrap {
    static func bootstrap(_ config: LoggingConfiguration) {
        let level = Logger.Level(rawValue: config.level.rawValue) ?? .info
        switch config.format {
        case .text: LoggingSystem.bootstrap { label in ParleyLogHandler(label: label, format: .text, level: level) }
        case .json: LoggingSystem.bootstrap { label in ParleyLogHandler(label: label, format: .json, level: level) }
        }
    }
}
