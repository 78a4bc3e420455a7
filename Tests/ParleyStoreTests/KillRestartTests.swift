import Foundation
import ParleyJSON
import Testing

/// A `parley-turns serve` child process driven line by line over pipes.
final class TurnsProcess {
    let process = Process()
    private let input = Pipe()
    private let output = Pipe()
    private var buffer = Data()

    init(binary: String, database: String) throws {
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["serve", "--db", database]
        process.standardInput = input
        process.standardOutput = output
        try process.run()
    }

    /// The next line the child prints, nil at end of output.
    func readLine() -> String? {
        while true {
            if let newline = buffer.firstIndex(of: 0x0A) {
                let line = String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self)
                buffer = Data(buffer[buffer.index(after: newline)...])
                return line
            }
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { return nil }
            buffer.append(chunk)
        }
    }

    /// Sends a command and returns the answer line.
    func send(_ command: String) -> String? {
        input.fileHandleForWriting.write(Data((command + "\n").utf8))
        return readLine()
    }

    func killHard() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}

/// `.build/debug/parley-turns` next to the test bundle (built by `swift build --build-tests` / `swift test`).
func turnsBinary() -> String? {
    var candidates: [String] = []
    if let first = CommandLine.arguments.first { candidates.append(URL(fileURLWithPath: first).deletingLastPathComponent().path + "/parley-turns") }
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    candidates.append(root.path + "/.build/debug/parley-turns")
    candidates.append(Bundle.main.bundleURL.deletingLastPathComponent().path + "/parley-turns")
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
}

@Suite struct KillRestartTests {
    @Test func sigkillBetweenTurnsLosesNoCompletedTurn() async throws {
        guard let binary = turnsBinary() else {
            Issue.record("parley-turns not built: run `swift build --product parley-turns` (swift test builds it)")
            return
        }
        try await withTemporaryDirectory { dir in
            let db = dir + "/parley.db"
            let first = try TurnsProcess(binary: binary, database: db)
            #expect(first.readLine() == "ready")
            #expect(first.send("say alice hello")?.hasPrefix("ok alice [{\"text\":\"echo: hello (turn 1)\"}]") == true)
            #expect(first.send("say bob hi")?.hasPrefix("ok bob") == true)
            #expect(first.send("say alice again")?.hasPrefix("ok alice [{\"text\":\"echo: again (turn 2)\"}]") == true)
            // The replies above were printed after their events were durable: kill without any shutdown.
            first.killHard()
            #expect(first.process.terminationReason == .uncaughtSignal)

            let second = try TurnsProcess(binary: binary, database: db)
            #expect(second.readLine() == "ready")
            // The conversation continues where it stopped: the slot counting turns survived.
            #expect(second.send("say alice third")?.hasPrefix("ok alice [{\"text\":\"echo: third (turn 3)\"}]") == true)
            let history = try #require(second.send("history alice"))
            #expect(history.hasPrefix("history "))
            let body = try JSONValue.parse(String(history.dropFirst("history ".count)))
            let texts = body["messages"]?.arrayValue?.map { $0["text"]?.stringValue ?? "" }
            #expect(texts == ["hello", "echo: hello (turn 1)", "again", "echo: again (turn 2)", "third", "echo: third (turn 3)"])
            let tracker = try #require(second.send("tracker bob"))
            #expect(tracker.contains("\"slots\":{\"turns\":1}"))
            #expect(second.send("history nobody")?.hasPrefix("error nobody 404") == true)
            second.killHard()
        }
    }
}
