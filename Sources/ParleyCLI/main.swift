// Placeholder: the `parley` command line is built by the `parley serve` issue.
// (Minimal root command so that `parley plugins check` can be tried; the lead resolves this file at merge.)
import ArgumentParser

struct Parley: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "parley", subcommands: [PluginsCommand.self])
}

/// Runs an async root command (a bare `Parley.main()` in top-level code resolves to the synchronous entry).
func runAsyncRoot<Command: AsyncParsableCommand>(_: Command.Type) async {
    await Command.main()
}

await runAsyncRoot(Parley.self)
