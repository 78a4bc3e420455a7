import ParleyDispatch
import ParleyJSON
import ParleyPlugins
import Testing

@Suite struct LoaderTests {
    @Test func mirrorLoadsWithItsIdentity() async throws {
        let path = try Build.mirror()
        try await withHost { host in
            let agent = try await host.loadAgent(PluginConfiguration(path: path, kind: .agent))
            #expect(agent.name == "mirror")
            #expect(agent.plugin.kind == .agent)
            #expect(agent.plugin.version == "1.0.0")
            #expect(agent.plugin.abiMajor == 1)
            #expect(agent.plugin.isThreadSafe)
            #expect(agent.plugin.deadline == .seconds(10))
            #expect(host.plugins.count == 1)
        }
    }

    /// Each broken plugin: its documented error code and a one-line message naming the file and the fix.
    /// After every refusal the same host still loads and serves a good plugin.
    @Test(arguments: BrokenPlugin.allCases)
    func brokenPluginIsRefusedAndHostKeepsWorking(_ broken: BrokenPlugin) async throws {
        let mirror = try Build.mirror()
        try await withHost { host in
            let (config, expected, phrase) = try broken.make(mirror: mirror)
            if broken == .duplicateName {
                _ = try await host.load(PluginConfiguration(path: mirror, kind: .agent))
            }
            let error = await #expect(throws: PluginLoadError.self) { _ = try await host.load(config) }
            #expect(error?.code == expected, "\(String(describing: error))")
            let text = error?.description ?? ""
            #expect(text.hasPrefix("plugin \(config.path): "), "\(text)")
            #expect(text.contains(phrase), "\(text)")
            #expect(!text.contains("\n"))
            // The host keeps working.
            let agent = try await host.loadAgent(PluginConfiguration(path: mirror, kind: .agent, name: "mirror-after"))
            let reply = try await agent.respond(to: request("still here"))
            #expect(reply.responses == [["text": "still here"]])
        }
    }

    @Test func initReturnedNullShowsThePluginsLogLine() async throws {
        let path = try Build.fixture(["-DFIX_INIT_NULL"])
        try await withHost { host in
            await #expect(throws: PluginLoadError.self) { _ = try await host.load(PluginConfiguration(path: path, kind: .agent)) }
        }
        #expect(LogCapture.shared.contains("fixture refuses to load: missing api_key in config"))
    }

    @Test func configuredNameAllowsTwoInstancesOfOneLibrary() async throws {
        let path = try Build.mirror()
        try await withHost { host in
            let a = try await host.loadAgent(PluginConfiguration(path: path, kind: .agent, name: "one"))
            let b = try await host.loadAgent(PluginConfiguration(path: path, kind: .agent, name: "two", deadline: .seconds(3)))
            #expect(a.name == "one" && b.name == "two")
            #expect(b.plugin.pluginName == "mirror")
            #expect(b.plugin.deadline == .seconds(3))
            #expect(try await b.respond(to: request("x")).responses == [["text": "x"]])
        }
    }

    @Test func loadAllStopsAtTheFirstBrokenPlugin() async throws {
        let mirror = try Build.mirror()
        try await withHost { host in
            let error = await #expect(throws: PluginLoadError.self) {
                _ = try await host.loadAll(
                    agents: [PluginConfiguration(path: mirror, kind: .agent)],
                    formatters: [PluginConfiguration(path: "/nonexistent/libx.so", kind: .formatter)])
            }
            #expect(error?.code == .fileNotFound)
        }
    }

    @Test func checkReportsOneLinePerFile() async throws {
        let mirror = try Build.mirror()
        let missing = Build.dir + "/missing.so"
        let v2 = try Build.fixture(["-DFIX_V2_SYMBOL"])
        let reports = await checkPlugins(paths: [mirror, missing, v2, mirror], logger: testLogger)
        #expect(reports.map(\.passed) == [true, false, false, false])
        #expect(reports[0].description == "ok   \(mirror): agent \"mirror\" 1.0.0, ABI 1.2, thread-safe")
        #expect(reports[1].description.hasPrefix("FAIL plugin \(missing): file not found"))
        #expect(reports[2].error?.code == .abiMajorMismatch)
        #expect(reports[2].description.contains("ABI major 2"))
        #expect(reports[3].error?.code == .duplicateName)
    }
}

/// The load failures the issue lists, plus unusable definitions.
enum BrokenPlugin: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case fileMissing, notSharedObject, entrySymbolMissing, entrySymbolV2, abiMajorInDef, minorTooNew, initReturnedNull
    case structTooSmall, nullName, nullHandle, unknownKind, duplicateName, wrongKind

    var testDescription: String { rawValue }

    func make(mirror: String) throws -> (PluginConfiguration, PluginLoadError.Code, String) {
        func agent(_ p: String) -> PluginConfiguration { PluginConfiguration(path: p, kind: .agent) }
        switch self {
        case .fileMissing: return (agent(Build.dir + "/nope.so"), .fileNotFound, "file not found; check the path")
        case .notSharedObject: return (agent(try Build.textFile()), .notSharedObject, "not a shared object")
        case .entrySymbolMissing:
            return (agent(try Build.fixture(["-DFIX_NO_ENTRY"])), .entrySymbolMissing, "entry symbol parley_plugin_init_v1 not found; export it")
        case .entrySymbolV2:
            return (agent(try Build.fixture(["-DFIX_V2_SYMBOL"])), .abiMajorMismatch, "ABI major 2 (exports parley_plugin_init_v2), host supports 1")
        case .abiMajorInDef: return (agent(try Build.fixture(["-DFIX_MAJOR=2"])), .abiMajorMismatch, "ABI major 2, host supports 1; rebuild")
        case .minorTooNew: return (agent(try Build.fixture(["-DFIX_MINOR=99"])), .abiMinorTooNew, "ABI 1.99 is newer than the host's 1.2")
        case .initReturnedNull: return (agent(try Build.fixture(["-DFIX_INIT_NULL"])), .initReturnedNull, "returned NULL")
        case .structTooSmall: return (agent(try Build.fixture(["-DFIX_SMALL"])), .invalidDefinition, "struct_size is 8")
        case .nullName: return (agent(try Build.fixture(["-DFIX_NULL_NAME"])), .invalidDefinition, "name is NULL or empty")
        case .nullHandle: return (agent(try Build.fixture(["-DFIX_NULL_HANDLE"])), .invalidDefinition, "handle is NULL")
        case .unknownKind: return (agent(try Build.fixture(["-DFIX_KIND=7"])), .invalidDefinition, "kind is 7")
        case .duplicateName: return (agent(mirror), .duplicateName, "plugin name \"mirror\" is already used by")
        case .wrongKind:
            return (
                PluginConfiguration(path: mirror, kind: .formatter), .wrongKind, "\"mirror\" is an agent but is configured as a formatter; list it under agents"
            )
        }
    }
}
