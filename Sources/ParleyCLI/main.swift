// Placeholder: the `parley` command line is built by the `parley serve` issue.
// Minimal root command so `parley loadtest` runs on the bench branch; the lead merges this file.
import ArgumentParser

struct Parley: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "parley", subcommands: [LoadTestCommand.self])
}

/// Runs an async subcommand (opened from the existential so the async `run()` is the one called).
func runAsync<C: AsyncParsableCommand>(_ command: C) async throws {
    var command = command
    try await command.run()
}

do {
    let command = try Parley.parseAsRoot()
    if let asyncCommand = command as? any AsyncParsableCommand {
        try await runAsync(asyncCommand)
    } else {
        var command = command
        try command.run()
    }
} catch {
    Parley.exit(withError: error)
}
