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

    @OptionGroup var server: AdminServerOptions

    func run() async throws {
        let (status, body) = try await server.request("/admin/reload", method: .POST, command: "parley reload")
        let message = (try? JSONValue.parse(body))?["message"]?.stringValue ?? String(decoding: body, as: UTF8.self)
        if status == 200 {
            print(message)
        } else {
            FileHandle.standardError.write(Data("parley reload: \(status): \(message)\n".utf8))
            throw ExitCode(1)
        }
    }
}

/// `--url` and `--token` of the commands that talk to a running server's `/admin/` routes.
struct AdminServerOptions: ParsableArguments {
    @Option(name: .long, help: "The server's URL.")
    var url = "http://127.0.0.1:5005"

    @Option(name: .long, help: "The API token (default: $PARLEY_API_TOKEN).")
    var token: String?

    /// Sends the request; prints why and exits (2: a bad --url, 1: the server cannot be reached) when it fails.
    func request(_ path: String, method: HTTPMethod = .GET, command: String) async throws -> (Int, [UInt8]) {
        guard let parsed = URL(string: url), let host = parsed.host else {
            FileHandle.standardError.write(Data("\(command): --url must be like http://127.0.0.1:5005\n".utf8))
            throw ExitCode(2)
        }
        let bearer = token ?? ProcessInfo.processInfo.environment["PARLEY_API_TOKEN"]
        do {
            return try await ShellCommand.httpGet(host: host, port: parsed.port ?? 80, path: path, bearer: bearer, method: method)
        } catch {
            FileHandle.standardError.write(Data("\(command): cannot reach \(url): \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
