import Foundation
import ParleyDispatch
import ParleyJSON
import ParleyPlugins
import Testing

/// The minimal plugins printed in docs/plugins.md build with the commands given there and load: a plugin
/// author can start from the docs alone.
@Suite struct DocsExampleTests {
    /// The first fenced block of `language` in docs/plugins.md that defines the entry point.
    static func example(_ language: String) throws -> String {
        let doc = try String(contentsOfFile: Build.root + "/docs/plugins.md", encoding: .utf8)
        var rest = Substring(doc)
        while let start = rest.range(of: "```\(language)\n") {
            rest = rest[start.upperBound...]
            guard let end = rest.range(of: "```") else { break }
            let block = String(rest[..<end.lowerBound])
            if block.contains("parley_plugin_init_v1") && !block.contains(".library(") { return block }
            rest = rest[end.upperBound...]
        }
        throw Build.Failure(description: "no \(language) example in docs/plugins.md")
    }

    static func loadAndCall(_ path: String, expecting text: String) async throws {
        try await withHost { host in
            let agent = try await host.loadAgent(PluginConfiguration(path: path, kind: .agent))
            let reply = try await agent.respond(to: request("hi"))
            #expect(reply.responses.first?["text"]?.stringValue?.hasPrefix(text) == true, "\(reply)")
        }
    }

    @Test func cExample() async throws {
        let source = Build.dir + "/docs-echo.c", out = Build.dir + "/libdocs-echo.so"
        try Self.example("c").write(toFile: source, atomically: true, encoding: .utf8)
        try Build.run([
            "cc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-fPIC", "-fvisibility=hidden", "-shared", "-Wl,-z,defs",
            "-I", Build.root + "/include", "-o", out, source,
        ])
        try await Self.loadAndCall(out, expecting: "got ")
    }

    @Test func rustExample() async throws {
        let source = Build.dir + "/docs-echo.rs", out = Build.dir + "/libdocs-echo-rs.so"
        try Self.example("rust").write(toFile: source, atomically: true, encoding: .utf8)
        try Build.run(["rustc", "--edition", "2021", "--crate-type", "cdylib", "-O", "-o", out, source])
        try await Self.loadAndCall(out, expecting: "hello from Rust")
    }

    @Test func swiftExample() async throws {
        let dir = Build.dir + "/docs-swift", out = Build.dir + "/libdocs-echo-swift.so"
        try FileManager.default.createDirectory(atPath: dir + "/CParley", withIntermediateDirectories: true)
        try? FileManager.default.removeItem(atPath: dir + "/CParley/parley.h")
        try FileManager.default.copyItem(atPath: Build.root + "/include/parley.h", toPath: dir + "/CParley/parley.h")
        try "module CParley {\n  header \"parley.h\"\n  export *\n}\n".write(toFile: dir + "/CParley/module.modulemap", atomically: true, encoding: .utf8)
        try Self.example("swift").write(toFile: dir + "/echo.swift", atomically: true, encoding: .utf8)
        try Build.run(["swiftc", "-parse-as-library", "-emit-library", "-module-name", "DocsEcho", "-I", dir + "/CParley", "-o", out, dir + "/echo.swift"])
        try await Self.loadAndCall(out, expecting: "hello from Swift")
    }
}
