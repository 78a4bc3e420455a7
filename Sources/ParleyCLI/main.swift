// Placeholder: the `parley` command line is built by the `parley serve` issue.
// Minimal hook so `parley ffi-call` can be tried before the command tree exists (the lead resolves this file).
import ArgumentParser

if CommandLine.arguments.dropFirst().first == "ffi-call" {
    do {
        let command = try FFICallCommand.parse(Array(CommandLine.arguments.dropFirst(2)))
        try await command.execute()
    } catch {
        FFICallCommand.exit(withError: error)
    }
} else {
    print("parley: not yet implemented")
}
