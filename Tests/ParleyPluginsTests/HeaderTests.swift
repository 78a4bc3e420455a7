import Foundation
import ParleyDispatch
import ParleyJSON
import ParleyPlugins
import Testing

/// include/parley.h compiles as C99, C11 and C++17 with -Wall -Wextra -Werror -pedantic, and the smallest
/// plugin written against it loads and answers.
@Suite struct HeaderTests {
    static let compilers: [[String]] = [
        ["cc", "-std=c99", "-x", "c"], ["cc", "-std=c11", "-x", "c"], ["c++", "-std=c++17", "-x", "c++"],
    ]

    @Test(arguments: 0..<compilers.count)
    func headerCompilesPedantically(_ index: Int) throws {
        try Build.run(
            Self.compilers[index] + [
                "-Wall", "-Wextra", "-Werror", "-pedantic", "-I", Build.root + "/include", "-fsyntax-only",
                Build.root + "/Tests/ParleyPluginsTests/Fixtures/header_check.c",
            ])
    }

    @Test func smallestPluginLoadsAndAnswers() async throws {
        let out = Build.dir + "/libheader-check.so"
        try Build.run(
            [
                "cc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-fPIC", "-fvisibility=hidden", "-shared", "-Wl,-z,defs",
                "-I", Build.root + "/include", "-o", out, Build.root + "/Tests/ParleyPluginsTests/Fixtures/header_check.c",
            ])
        let exports = try Build.run(["nm", "-D", "--defined-only", out])
        #expect(exports.contains("parley_plugin_init_v1"))
        try await withHost { host in
            let agent = try await host.loadAgent(PluginConfiguration(path: out, kind: .agent))
            #expect(agent.plugin.version == "1.2")  // PARLEY_ABI_VERSION
            #expect(try await agent.respond(to: request("x")).responses == [["text": "hi"]])
        }
    }
}
