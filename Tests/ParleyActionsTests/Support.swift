import Foundation
import Logging
import ParleyActions
import ParleyDispatch
import ParleyWorkers
import ParleyJSON
import Testing

/// Builds C sources with `cc` into a fresh temporary directory, once per test process.
enum Fixture {
    struct BuildError: Error, CustomStringConvertible {
        var description: String
    }

    /// A temporary directory for this test process.
    static let directory: String = {
        let path = NSTemporaryDirectory() + "parley-actions-tests-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }()

    static let fixturesDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures").path
    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    /// `libfixture.so` built from Fixtures/fixture.c.
    static let library: Result<String, BuildError> = compile(source: "\(fixturesDirectory)/fixture.c", output: "\(directory)/libfixture.so")

    /// Plugins/actions-c built with its own Makefile into a subdirectory (library + manifest).
    static let exampleDirectory: Result<String, BuildError> = {
        let out = "\(directory)/example"
        return run("/usr/bin/env", ["make", "--no-print-directory", "-C", "\(repositoryRoot)/Plugins/actions-c", "OUT=\(out)"]).map { out }
    }()

    static func compile(source: String, output: String) -> Result<String, BuildError> {
        run("/usr/bin/env", ["cc", "-shared", "-fPIC", "-O1", "-o", output, source]).map { output }
    }

    static func run(_ executable: String, _ arguments: [String]) -> Result<Void, BuildError> {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        do {
            try process.run()
        } catch {
            return .failure(BuildError(description: "\(arguments.joined(separator: " ")): \(error)"))
        }
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            return .failure(BuildError(description: "\(arguments.joined(separator: " ")) failed: \(String(decoding: output, as: UTF8.self))"))
        }
        return .success(())
    }

    static func libraryPath() throws -> String { try library.get() }

    /// Binds a fixture function.
    static func function(_ symbol: String, _ signature: String, free: String? = nil) throws -> NativeFunction {
        try NativeFunction(library: libraryPath(), symbol: symbol, signature: FFISignature(parsing: signature), freeFunction: free)
    }

    /// Writes `yaml` to a file in a fresh subdirectory and loads it.
    static func loadManifest(_ yaml: String, name: String = "actions.yml") throws -> ActionManifest {
        let dir = "\(directory)/m-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = "\(dir)/\(name)"
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        return try ActionManifest.load(path: path)
    }

    /// The message of the error thrown by `body` (fails the test when nothing is thrown).
    static func manifestError(_ yaml: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> ActionError {
        do {
            _ = try loadManifest(yaml)
        } catch let error as ActionError {
            return error
        }
        Issue.record("manifest loaded although it should fail", sourceLocation: sourceLocation)
        return ActionError(.manifest, "no error")
    }
}

/// A worker pool shared by the suites (threads are cheap but not free).
let testPool = WorkerPool(threads: 4)

let testLogger = Logger(label: "parley.actions.tests", factory: { _ in SwiftLogNoOpLogHandler() })

func invocation(
    sender: String = "conv-1", slots: JSONObject = [:], text: String = "hi", entities: [JSONValue] = [], metadata: JSONObject = [:]
) -> ActionInvocation {
    ActionInvocation(
        senderID: sender, slots: slots,
        latestMessage: ["text": .string(text), "entities": .array(entities), "metadata": .object(metadata)])
}
