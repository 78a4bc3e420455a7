import ArgumentParser
import Foundation
import Logging
import ParleyJSON
import ParleyPlugins
import ParleyServer

/// `parley plugins …`: tools for plugin authors.
struct PluginsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plugins",
        abstract: "Inspect Parley plugins.",
        subcommands: [Check.self, Status.self]
    )

    /// `parley plugins check PATH...`: loads each plugin like the server would and reports one line per file.
    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Load and validate plugin files without starting a server.",
            discussion: """
                Each file is loaded (dlopen), its entry point parley_plugin_init_v1 is called with {} as its \
                configuration, and its definition is checked: ABI version, kind, name, handle. Duplicate names \
                among the files are reported. Exits with status 1 if any file fails.

                With --isolated each file is loaded in a child process (parley-plugin-host --check), so a plugin \
                whose entry point crashes, aborts or hangs is reported with the signal and its last stderr lines \
                instead of ending the check.
                """
        )

        @Argument(help: "Plugin shared objects (.so).")
        var paths: [String]

        @Flag(name: .shortAndLong, help: "Show the plugins' own log lines.")
        var verbose = false

        @Flag(help: "Load each plugin in a child process first, so that one crashing in its init is reported, not fatal.")
        var isolated = false

        func run() async throws {
            var logger = Logger(label: "parley.plugins")
            logger.logLevel = verbose ? .debug : .critical
            let reports =
                isolated
                ? await checkPluginsIsolated(paths: paths, hostExecutable: ParleyApplication.pluginHostExecutable)
                : await checkPlugins(paths: paths, logger: logger)
            for report in reports { print(report) }
            if reports.contains(where: { !$0.passed }) { throw ExitCode(1) }
        }
    }
}

extension PluginsCommand {
    /// `parley plugins status`: what every plugin of a running server is doing (`GET /admin/plugins`).
    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show calls, errors, fallbacks, hung slots, crashes, breaker state and latency of a running server's plugins.",
            discussion: "Reads GET /admin/plugins; needs api.token on the server. Exits with status 1 when a plugin is degraded.")

        @OptionGroup var server: AdminServerOptions

        @Flag(help: "Print the server's JSON instead of a table.")
        var json = false

        func run() async throws {
            let (status, body) = try await server.request("/admin/plugins", command: "parley plugins status")
            guard status == 200, let value = try? JSONValue.parse(body), let plugins = value["plugins"]?.arrayValue else {
                let message = (try? JSONValue.parse(body))?["message"]?.stringValue ?? String(decoding: body, as: UTF8.self)
                FileHandle.standardError.write(Data("parley plugins status: \(status): \(message)\n".utf8))
                throw ExitCode(1)
            }
            if json {
                print(value.serialized)
            } else {
                print(Self.table(plugins))
            }
            if plugins.contains(where: { $0["status"]?.stringValue != "ok" }) { throw ExitCode(1) }
        }

        /// One row per plugin, then the problems.
        static func table(_ plugins: [JSONValue]) -> String {
            let header = [
                "PLUGIN", "KIND", "ISOLATION", "STATUS", "CALLS", "ERRORS", "EXPIRED", "REFUSED", "FALLBACKS", "HUNG", "CRASHES", "RESTARTS", "BREAKER", "P50",
                "P99",
            ]
            var rows = [header]
            var notes: [String] = []
            func int(_ p: JSONValue, _ key: String) -> String { p[key]?.doubleValue.map { String(Int($0)) } ?? "-" }
            func micros(_ p: JSONValue, _ key: String) -> String {
                guard let us = p["latency_us"]?[key]?.doubleValue.map({ Int($0) }) else { return "-" }
                return us >= 10_000 ? "\(us / 1000) ms" : "\(us) µs"
            }
            for p in plugins {
                let name = p["name"]?.stringValue ?? "?"
                rows.append([
                    name, p["kind"]?.stringValue ?? "?", p["isolation"]?.stringValue ?? "?", p["status"]?.stringValue ?? "?",
                    int(p, "calls"), int(p, "errors"), int(p, "deadline_expiries"), int(p, "refused"), int(p, "fallbacks"),
                    "\(int(p, "hung"))/\(int(p, "slots"))", int(p, "crashes"), int(p, "restarts"), p["breaker"]?.stringValue ?? "-",
                    micros(p, "p50"), micros(p, "p99"),
                ])
                if let problem = p["problem"]?.stringValue { notes.append("\(name): \(problem)") }
            }
            let widths = header.indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
            var lines = rows.map { row in
                row.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }.joined(separator: "  ")
                    .trimmingCharacters(in: .whitespaces)
            }
            lines += notes
            return lines.joined(separator: "\n")
        }
    }
}
