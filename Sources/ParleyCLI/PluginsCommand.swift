import ArgumentParser
import Logging
import ParleyPlugins

/// `parley plugins …`: tools for plugin authors.
struct PluginsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plugins",
        abstract: "Inspect Parley plugins.",
        subcommands: [Check.self]
    )

    /// `parley plugins check PATH...`: loads each plugin like the server would and reports one line per file.
    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Load and validate plugin files without starting a server.",
            discussion: """
                Each file is loaded (dlopen), its entry point parley_plugin_init_v1 is called with {} as its \
                configuration, and its definition is checked: ABI version, kind, name, handle. Duplicate names \
                among the files are reported. Exits with status 1 if any file fails.
                """
        )

        @Argument(help: "Plugin shared objects (.so).")
        var paths: [String]

        @Flag(name: .shortAndLong, help: "Show the plugins' own log lines.")
        var verbose = false

        func run() async throws {
            var logger = Logger(label: "parley.plugins")
            logger.logLevel = verbose ? .debug : .critical
            let reports = await checkPlugins(paths: paths, logger: logger)
            for report in reports { print(report) }
            if reports.contains(where: { !$0.passed }) { throw ExitCode(1) }
        }
    }
}
