// Interim root command (the `parley serve` issue replaces this file with the full command tree).
import ArgumentParser

struct Parley: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parley",
        subcommands: [PluginsCommand.self, FFICallCommand.self, LoadTestCommand.self]
    )
}

/// Runs an async root command (a bare `Parley.main()` in top-level code resolves to the synchronous entry).
func runAsyncRoot<Command: AsyncParsableCommand>(_: Command.Type) async {
    await Command.main()
}

await runAsyncRoot(Parley.self)
