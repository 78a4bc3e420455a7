import ArgumentParser
import Foundation
import NIOHTTP1
import ParleyJSON

/// `parley reload`: asks a running server to re-read its configuration and swap its agents and formatters
/// (`POST /admin/reload` with the API token). Connections, sessions and the store are untouched; if the new
/// configuration or a plugin fails to load, nothing changes and the reason is printed (exit status 1).
struct ReloadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reload",
        abstract: "Reload agents and formatters of a running server without dropping a connection.",
        discussion: "The same as sending the server SIGHUP, with the outcome printed. Needs api.token on the server.")

    @Option(name: .long, help: "The server's URL.")
    var url = "http://127.0.0.1:5005"

    @Option(name: .long, help: "The API token (default: $PARLEY_API_TOKEN).")
    var token: String?

    func run() async throws {
        guard let parsed = URL(string: url), let host = parsed.host else {
            FileHandle.standardError.write(Data("parley reload: --url must be like http://127.0.0.1:5005\n".utf8))
            throw ExitCode(2)
        }
        let bearer = token ?? ProcessInfo.processInfo.environment["PARLEY_API_TOKEN"]
        let (status, body): (Int, [UInt8])
        do {
            (status, body) = try await ShellCommand.httpGet(host: host, port: parsed.port ?? 80, path: "/admin/reload", bearer: bearer, method: .POST)
        } catch {
            FileHandle.standardError.write(Data("parley reload: cannot reach \(url): \(error)\n".utf8))
            throw ExitCode(1)
        }
        let message = (try? JSONValue.parse(body))?["message"]?.stringValue ?? String(decoding: body, as: UTF8.self)
        if status == 200 {
            print(message)
        } else {
            FileHandle.standardError.write(Data("parley reload: \(status): \(message)\n".utf8))
            throw ExitCode(1)
        }
    }
}
