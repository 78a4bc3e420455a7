import ArgumentParser
import Foundation
import ParleyConfig
import ParleyServer
import ParleyStore

/// `parley backup FILE`: a consistent copy of the SQLite conversation store, taken while the server runs.
struct BackupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Copy the SQLite conversation store to a new file while the server keeps running.",
        discussion: """
            Uses SQLite's online backup API: the copy holds every turn committed when the backup started, in one \
            self-contained file. The store is the configuration's store.path (--config), or --store. Restore by \
            stopping the server and putting the copy in place of store.path (remove the old -wal and -shm files).
            """)

    @Argument(help: ArgumentHelp("The new file to write (never overwritten).", valueName: "FILE"))
    var destination: String

    @Option(name: .long, help: ArgumentHelp("The Parley configuration file whose store.path to copy.", valueName: "parley.yml"))
    var config: String?

    @Option(name: .long, help: ArgumentHelp("The SQLite store file to copy (instead of --config).", valueName: "parley.db"))
    var store: String?

    func run() throws {
        let source: String
        if let store {
            source = store
        } else {
            let configuration: ParleyConfiguration
            do {
                configuration = try ConfigurationLoader().load(configPath: config, credentialsPath: nil)
            } catch {
                FileHandle.standardError.write(Data("parley: \(error)\n".utf8))
                throw ExitCode(78)
            }
            guard configuration.store.kind == .sqlite else {
                FileHandle.standardError.write(
                    Data(
                        "parley: \(config ?? "parley.yml"): store.type is \(configuration.store.kind.rawValue); only the sqlite store has a file to back up\n"
                            .utf8))
                throw ExitCode(64)
            }
            source = configuration.store.path
        }
        do {
            let summary = try SQLiteConversationStore.backup(from: source, to: destination)
            print("backup \(destination): \(summary.events) events of \(summary.conversations) conversations, \(summary.bytes) bytes (from \(source))")
        } catch {
            FileHandle.standardError.write(Data("parley: \(error)\n".utf8))
            throw ExitCode(70)
        }
    }
}
