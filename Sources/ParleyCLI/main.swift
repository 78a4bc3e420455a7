// Placeholder: the `parley` command line is built by the `parley serve` issue.
// Minimal hook so `parley ffi-call` can be tried before the command tree exists (the lead resolves this file).
if CommandLine.arguments.dropFirst().first == "ffi-call" {
    await FFICallCommand.main(Array(CommandLine.arguments.dropFirst(2)))
} else {
    print("parley: not yet implemented")
}
