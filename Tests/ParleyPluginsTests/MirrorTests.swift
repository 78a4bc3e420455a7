import ParleyDispatch
import ParleyJSON
import ParleyPlugins
import Testing

/// The conformance agent's behaviour table, loaded in-process.
@Suite struct MirrorTests {
    static let table: [(String, [JSONValue])] = [
        ("hello there", [["text": "hello there"]]),
        (#"quote " and \ back"#, [["text": #"quote " and \ back"#]]),
        ("héllo ✓", [["text": "héllo ✓"]]),
        ("/buttons", [["text": "pick one", "buttons": [["title": "Yes", "payload": "/yes"], ["title": "No", "payload": "/no"]]]]),
        ("/quick", [["text": "quick", "quick_replies": [["title": "A", "payload": "/a"]]]]),
        ("/image", [["image": "https://example.com/cat.png"]]),
        ("/attachment", [["attachment": ["type": "video", "payload": ["src": "https://example.com/v.mp4"]]]]),
        ("/elements", [["elements": [["title": "Card", "subtitle": "sub", "buttons": [["title": "Go", "payload": "/go"]]]]]]),
        ("/custom", [["custom": ["foo": "bar", "n": 1]]]),
        ("/custom_data", [["custom": ["data": ["foo": "bar", "n": 1]]]]),
        ("/many", [["text": "1"], ["text": "2"], ["text": "3"], ["text": "4"], ["text": "5"]]),
        ("/unknown", []),
        ("/", []),
    ]

    @Test(arguments: 0..<table.count)
    func behaviourTable(_ index: Int) async throws {
        let (text, expected) = Self.table[index]
        let path = try Build.mirror()
        try await withHost { host in
            let agent = try await host.loadAgent(PluginConfiguration(path: path, kind: .agent))
            let reply = try await agent.respond(to: request(text))
            #expect(reply.responses == expected, "\(text)")
            #expect(reply.events == [])
        }
    }

    @Test func metadataAndSender() async throws {
        let path = try Build.mirror()
        try await withHost { host in
            let agent = try await host.loadAgent(PluginConfiguration(path: path, kind: .agent))
            let metadata: JSONObject = ["lang": "en", "n": 2, "nested": ["a": [1, 2]]]
            let r1 = try await agent.respond(to: request("/metadata", metadata: metadata))
            #expect(r1.responses == [["custom": ["metadata": .object(metadata)]]])
            let r2 = try await agent.respond(to: request("/metadata_data", metadata: metadata))
            #expect(r2.responses == [["custom": ["data": ["metadata": .object(metadata)]]]])
            let r3 = try await agent.respond(to: request("/sender", sender: "user-\u{1F600}-42"))
            #expect(r3.responses == [["text": "user-\u{1F600}-42"]])
        }
    }

    /// `/slow` returns PARLEY_PENDING and completes from its own thread after 1 s.
    @Test func slowCompletesFromAnotherThread() async throws {
        let path = try Build.mirror()
        try await withHost { host in
            let agent = try await host.loadAgent(PluginConfiguration(path: path, kind: .agent))
            async let slow = agent.respond(to: request("/slow", sender: "a"))
            // Other conversations are not held up by a pending call (mirror is thread-safe).
            let quick = try await agent.respond(to: request("meanwhile", sender: "b"))
            #expect(quick.responses == [["text": "meanwhile"]])
            #expect(try await slow.responses == [["text": "slow done"]])
        }
    }

    /// A call that misses its deadline: clear error, cancel hook, late completion dropped; the plugin and the
    /// conversation keep working.
    @Test func slowPastItsDeadlineIsDroppedAndCancelled() async throws {
        let path = try Build.mirror()
        try await withHost { host in
            let agent = try await host.loadAgent(PluginConfiguration(path: path, kind: .agent, deadline: .milliseconds(300)))
            let error = await #expect(throws: PluginCallError.self) { _ = try await agent.respond(to: request("/slow")) }
            #expect(error?.code == .deadlineExceeded)
            #expect(
                error?.description
                    == "plugin mirror: no reply within 300 ms; sent the fallback, a late reply will be dropped (raise the plugin's deadline or make it faster)")
            #expect(await eventually { agent.plugin.statistics.lateCompletions == 1 })
            let stats = agent.plugin.statistics
            #expect(stats.cancelHookCalls == 1 && stats.expired == 1)
            #expect(try await agent.respond(to: request("again")).responses == [["text": "again"]])
        }
    }
}
