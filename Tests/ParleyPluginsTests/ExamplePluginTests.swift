import Foundation
import ParleyDispatch
import ParleyJSON
import ParleyPlugins
import Testing

/// The markdown formatter, the formatter chain, the Rust agent and the Swift agent, loaded in-process.
@Suite struct ExamplePluginTests {
    static let markdownCases: [(String, String)] = [
        ("**bold** and *it* and _it_", "<b>bold</b> and <i>it</i> and <i>it</i>"),
        ("__strong__ snake_case_name", "<b>strong</b> snake_case_name"),
        ("see [the docs](https://example.com/a?b=1&c=2)", #"see <a href="https://example.com/a?b=1&amp;c=2">the docs</a>"#),
        ("**[bold link](/help)**", #"<b><a href="/help">bold link</a></b>"#),
        ("[evil](javascript:alert(1))", "[evil](javascript:alert(1))"),
        ("<script>alert('x')</script> & \"q\"", "&lt;script&gt;alert('x')&lt;/script&gt; &amp; &quot;q&quot;"),
        ("line one\nline two", "line one<br>line two"),
        (#"not \*italic\*"#, "not *italic*"),
        ("2 * 3 * 4 and a * lone star", "2 * 3 * 4 and a * lone star"),
        ("unclosed **bold", "unclosed **bold"),
        ("plain text", "plain text"),
    ]

    @Test(arguments: 0..<markdownCases.count)
    func markdownTurnsTextIntoWidgetHTML(_ index: Int) async throws {
        let (markdown, html) = Self.markdownCases[index]
        let path = try Build.markdown()
        try await withHost { host in
            let formatter = try await host.loadFormatter(PluginConfiguration(path: path, kind: .formatter))
            let out = try await formatter.format([["text": .string(markdown)]], channel: "socketio", senderID: "s")
            #expect(out == [["text": .string(html)]])
        }
    }

    @Test func markdownLeavesOtherResponsesUntouched() async throws {
        let path = try Build.markdown()
        try await withHost { host in
            let formatter = try await host.loadFormatter(PluginConfiguration(path: path, kind: .formatter))
            let input: [JSONValue] = [
                ["image": "https://example.com/*a*.png"],
                ["custom": ["text": "**not touched**", "n": 1.5]],
                ["text": "**b**", "buttons": [["title": "*Yes*", "payload": "/yes"]]],
            ]
            let out = try await formatter.format(input, channel: "socketio", senderID: "s")
            #expect(out[0] == input[0] && out[1] == input[1])
            #expect(out[2] == ["text": "<b>b</b>", "buttons": [["title": "*Yes*", "payload": "/yes"]]])
            #expect(try await formatter.format([], channel: "socketio", senderID: "s") == [])
        }
    }

    @Test func markdownChannelsConfig() async throws {
        let path = try Build.markdown()
        try await withHost { host in
            let formatter = try await host.loadFormatter(PluginConfiguration(path: path, kind: .formatter, config: ["channels": ["socketio"]]))
            #expect(try await formatter.format([["text": "*a*"]], channel: "socketio", senderID: "s") == [["text": "<i>a</i>"]])
            #expect(try await formatter.format([["text": "*a*"]], channel: "rest", senderID: "s") == [["text": "*a*"]])
        }
    }

    /// Formatters apply in configured order, each to the previous one's output.
    @Test func formatterChainAppliesInOrder() async throws {
        let markdown = try Build.markdown()
        let suffix = try Build.fixture(["-DFIX_FORMATTER", "-DFIX_NAME=\"suffix\""])
        try await withHost { host in
            let md = try await host.loadFormatter(PluginConfiguration(path: markdown, kind: .formatter))
            let sfx = try await host.loadFormatter(PluginConfiguration(path: suffix, kind: .formatter, config: ["suffix": " **!**"]))
            let input: [JSONValue] = [["text": "*hi*"], ["image": "x.png"]]
            let markdownFirst = FormatterChain([md, sfx])
            let suffixFirst = FormatterChain([sfx, md])
            #expect(markdownFirst.name == "markdown -> suffix")
            #expect(try await markdownFirst.format(input, channel: "socketio", senderID: "s") == [["text": "<i>hi</i> **!**"], ["image": "x.png"]])
            #expect(try await suffixFirst.format(input, channel: "socketio", senderID: "s") == [["text": "<i>hi</i> <b>!</b>"], ["image": "x.png"]])
        }
    }

    @Test func rustAgentCalculatesAndRemembersInASlot() async throws {
        let path = try Build.rust()
        try await withHost { host in
            let agent = try await host.loadAgent(PluginConfiguration(path: path, kind: .agent))
            #expect(agent.name == "rustcalc" && agent.plugin.isThreadSafe)
            let r1 = try await agent.respond(to: request("12 * (3 + 4) - 2 ^ 3"))
            #expect(r1.responses == [["text": "= 76"]])
            #expect(r1.events == [["event": "slot", "name": "last_result", "value": 76]])
            // The next request carries the slot, as the dispatcher's tracker would.
            var next = request("ans / 4")
            if case .object(var root) = next.payload, case .object(var tracker)? = root["tracker"] {
                tracker["slots"] = ["last_result": 76]
                root["tracker"] = .object(tracker)
                next.payload = .object(root)
            }
            #expect(try await agent.respond(to: next).responses == [["text": "= 19"]])
            let help = try await agent.respond(to: request("what can you do?"))
            #expect(help.responses.first?["buttons"]?.arrayValue?.count == 2)
        }
    }

    /// A Rust panic is caught at the boundary and becomes an error completion; the host keeps going.
    @Test func rustPanicIsCaughtAtTheBoundary() async throws {
        let path = try Build.rust()
        try await withHost { host in
            let agent = try await host.loadAgent(PluginConfiguration(path: path, kind: .agent))
            let error = await #expect(throws: PluginCallError.self) { _ = try await agent.respond(to: request("/panic")) }
            #expect(error?.code == .pluginFailed)
            #expect(error?.description == "plugin rustcalc: call failed with PARLEY_E_INTERNAL: panic: the user asked for a panic")
            #expect(try await agent.respond(to: request("1 + 1")).responses == [["text": "= 2"]])
        }
    }

    /// The Swift assistant remembers earlier turns from the tracker events.
    @Test func swiftAssistantRemembersEarlierTurns() async throws {
        let path = try #require(Build.assistant(), "libParleyAssistant.so not built: run `swift build --product ParleyAssistant` or `make plugins`")
        let exports = try Build.run(["nm", "-D", "--defined-only", path])
        // Global exports only (upper-case type letters; `A` is the version tag itself), without the version suffix.
        let columns: [[Substring]] = exports.split(separator: "\n").map { $0.split(separator: " ") }
        let globals: [[Substring]] = columns.filter { $0.count == 3 && $0[1] != "A" && $0[1].uppercased() == $0[1] }
        let symbols: [String] = globals.map { String($0[2].split(separator: "@").first ?? "") }
        #expect(symbols == ["parley_plugin_init_v1"])
        try await withHost { host in
            let agent = try await host.loadAgent(PluginConfiguration(path: path, kind: .agent))
            #expect(agent.name == "assistant")
            var events: [JSONValue] = []
            func turn(_ text: String) async throws -> AgentReply {
                let reply = try await agent.respond(to: request(text, events: events))
                events.append(["event": "user", "text": .string(text)])
                events.append(contentsOf: reply.events)
                for r in reply.responses { events.append(["event": "bot", "text": r["text"] ?? .null]) }
                return reply
            }
            let unknown = try await turn("what is my name?")
            #expect(unknown.responses.first?["text"] == "You haven't told me your name yet. What is it?")
            #expect(unknown.responses.first?["buttons"]?.arrayValue?.isEmpty == false)
            let learned = try await turn("my name is Ada")
            #expect(learned.responses.first?["text"] == "Nice to meet you, Ada! I'll remember that.")
            #expect(learned.events == [["event": "slot", "name": "user_name", "value": "Ada"]])
            _ = try await turn("I live in paris")
            _ = try await turn("the weather is nice")
            #expect(try await turn("what is my name?").responses.first?["text"] == "Your name is Ada.")
            #expect(try await turn("where do I live?").responses.first?["text"] == "You live in Paris.")
            let all = try await turn("what do you know about me?")
            #expect(all.responses.first?["text"] == "I know that your name is Ada, you live in Paris.")
            _ = try await turn("forget me")
            #expect(try await turn("what is my name?").responses.first?["text"] == "You haven't told me your name yet. What is it?")
        }
    }

    /// The Swift assistant requests the example native actions: slot events first, then the action event,
    /// and no text of its own; input it cannot turn into arguments gets a usage answer and no request.
    @Test func swiftAssistantRequestsTheExampleActions() async throws {
        let path = try #require(Build.assistant(), "libParleyAssistant.so not built: run `swift build --product ParleyAssistant` or `make plugins`")
        try await withHost { host in
            let agent = try await host.loadAgent(PluginConfiguration(path: path, kind: .agent))
            func slot(_ name: String, _ value: JSONValue) -> JSONValue { ["event": "slot", "name": .string(name), "value": value] }
            func action(_ name: String) -> JSONValue { ["event": "action", "name": .string(name)] }
            let cases: [(String, [JSONValue])] = [
                ("tip 42.50 at 15%", [slot("amount", 42.5), slot("percent", 15), action("action_tip")]),
                ("Tip 40 15", [slot("amount", 40), slot("percent", 15), action("action_tip")]),
                ("convert 5 km to mi", [slot("distance", 5), slot("from_unit", "km"), slot("to_unit", "mi"), action("action_convert")]),
                ("10 miles in km", [slot("distance", 10), slot("from_unit", "mi"), slot("to_unit", "km"), action("action_convert")]),
                ("2^10", [slot("base", 2), slot("exponent", 10), action("action_power")]),
                ("2 to the power of 10", [slot("base", 2), slot("exponent", 10), action("action_power")]),
                ("is 2024 a leap year?", [slot("year", 2024), action("action_leap_year")]),
            ]
            for (text, events) in cases {
                let reply = try await agent.respond(to: request(text))
                #expect(reply.events == events, "\(text)")
                #expect(reply.responses.isEmpty, "\(text)")
            }
            for text in ["tip abc", "tip", "tip 40 at 15.5%", "convert 5 parsecs to mi", "is it a leap year?", "2^x", "greet me"] {
                let reply = try await agent.respond(to: request(text))
                #expect(reply.events.isEmpty, "\(text)")
                #expect(reply.responses.count == 1, "\(text)")
                #expect(reply.responses.first?["buttons"]?.arrayValue?.isEmpty == false, "\(text)")
            }
            // Greeting needs the name, learned from an earlier turn.
            let greet = try await agent.respond(to: request("greet me", events: [["event": "user", "text": "my name is Ada"]]))
            #expect(greet.events == [slot("user_name", "Ada"), action("action_greet")])
            let help = try await agent.respond(to: request("help"))
            #expect(help.responses.first?["buttons"]?.arrayValue?.count == 6)
        }
    }
}
