import ArgumentParser
import ParleyChannels

/// Version strings shared by `parley version` and `parley --version`.
enum ParleyVersion {
    static var string: String { parleyVersion }
}

/// `parley version`: prints the runtime version and the plugin ABI it hosts.
struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "version", abstract: "Print the Parley version.")

    func run() throws {
        print("parley \(ParleyVersion.string)")
    }
}
