import ArgumentParser

/// The `parley` command line.
///
/// Subcommands are listed in ``Parley/configuration``; helpers of other parts add theirs to the marked list.
struct Parley: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parley",
        abstract: "A Rasa-compatible Socket.IO bot runtime with C-ABI plugins.",
        version: ParleyVersion.string,
        subcommands: [
            ServeCommand.self,
            VersionCommand.self,
            // ── Subcommands from other parts (added at merge, keep one per line) ──
            PluginsCommand.self,  // `parley plugins check`  (Sources/ParleyCLI/PluginsCommand.swift, branch plugins)
            FFICallCommand.self,  // `parley ffi-call`       (Sources/ParleyCLI/FFICallCommand.swift, branch actions)
            LoadTestCommand.self,  // `parley loadtest`       (Sources/ParleyCLI/LoadTestCommand.swift, branch bench)
            BackupCommand.self,  // `parley backup`         (Sources/ParleyCLI/BackupCommand.swift)
            ShellCommand.self,  // `parley shell`          (Sources/ParleyCLI/ShellCommand.swift)
            ReloadCommand.self,  // `parley reload`         (Sources/ParleyCLI/ReloadCommand.swift)
                // ── end of subcommands from other parts ──
        ],
        defaultSubcommand: nil
    )
}

/// Runs an async command through its `async` requirement (called with the existential opened, so the
/// synchronous `ParsableCommand.run()` default is not picked instead).
func runAsync<Command: AsyncParsableCommand>(_ command: Command) async throws {
    var command = command
    try await command.run()
}

// Top-level code: parse, then run (ArgumentParser's static `main()` would pick the synchronous entry point).
do {
    var command = try Parley.parseAsRoot()
    if let asyncCommand = command as? any AsyncParsableCommand {
        try await runAsync(asyncCommand)
    } else {
        try command.run()
    }
} catch {
    Parley.exit(withError: error)
}
