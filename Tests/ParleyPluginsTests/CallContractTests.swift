import CParley
import ParleyDispatch
import ParleyWorkers
import ParleyJSON
@testable import ParleyPlugins
import Synchronization
import Testing

/// Garbage from a plugin is refused with an error naming it; the host and the plugin keep serving.
@Suite struct CallContractTests {
    static let garbage: [(String, PluginCallError.Code, String)] = [
        ("invalid_json", .invalidJSON, "plugin fixture: reply is not valid JSON"),
        ("wrong_shape", .invalidShape, #"plugin fixture: reply "responses" must be an array of objects"#),
        ("not_objects", .invalidShape, #"plugin fixture: reply "responses"[0] must be an object"#),
        ("array_reply", .invalidShape, "plugin fixture: reply must be a JSON object"),
        ("null_json", .protocolViolation, "plugin fixture: complete called with a NULL json pointer and length 5"),
        ("ok_without_complete", .protocolViolation, "plugin fixture: handle returned PARLEY_OK without calling complete"),
        ("fail", .pluginFailed, "plugin fixture: handle failed with PARLEY_E_INTERNAL"),
        ("error_complete", .pluginFailed, "plugin fixture: call failed with PARLEY_E_INTERNAL: boom: exploded"),
        ("pending_complete", .protocolViolation, "plugin fixture: complete called with PARLEY_PENDING"),
    ]

    @Test(arguments: 0..<garbage.count)
    func garbageIsRefused(_ index: Int) async throws {
        let (text, code, message) = Self.garbage[index]
        let path = try Build.fixture()
        try await withHost { host in
            let agent = try await host.loadAgent(PluginConfiguration(path: path, kind: .agent))
            let error = await #expect(throws: PluginCallError.self) { _ = try await agent.respond(to: request(text)) }
            #expect(error?.code == code, "\(text)")
            #expect(error?.description.hasPrefix(message) == true, "\(String(describing: error))")
            // Still serving, same conversation.
            let reply = try await agent.respond(to: request("hello"))
            #expect(reply.responses == [["text": "ok"]])
            #expect(reply.events == [["event": "slot", "name": "seen", "value": true]])
        }
    }

    @Test func secondCompletionIsRefusedWithAlreadyCompleted() async throws {
        let path = try Build.fixture()
        try await withHost { host in
            let agent = try await host.loadAgent(PluginConfiguration(path: path, kind: .agent))
            let reply = try await agent.respond(to: request("double"))
            #expect(reply.responses == [["text": "first"]])
            #expect(await eventually { fixtureStat(path, FixtureStat.double) == PARLEY_E_ALREADY_COMPLETED.rawValue })
            #expect(agent.plugin.statistics.duplicateCompletions == 1)
        }
        #expect(LogCapture.shared.contains("completed twice; the second completion was dropped"))
    }

    /// The plugin completes from another thread only after its deadline (after the cancel hook ran): the
    /// caller already got the deadline error, and the late `complete` returns PARLEY_E_EXPIRED.
    @Test func completionFromAnotherThreadAfterTheDeadline() async throws {
        let path = try Build.fixture()
        try await withHost { host in
            let agent = try await host.loadAgent(PluginConfiguration(path: path, kind: .agent, deadline: .milliseconds(300)))
            let error = await #expect(throws: PluginCallError.self) { _ = try await agent.respond(to: request("late")) }
            #expect(error?.code == .deadlineExceeded)
            #expect(await eventually { fixtureStat(path, FixtureStat.late) == PARLEY_E_EXPIRED.rawValue })
            #expect(fixtureStat(path, FixtureStat.cancels) == 1)
            let stats = agent.plugin.statistics
            #expect(stats.lateCompletions == 1 && stats.expired == 1 && stats.duplicateCompletions == 0)
            #expect(try await agent.respond(to: request("hello")).responses == [["text": "ok"]])
        }
    }

    @Test func cancellingTheCallerCancelsThePluginCall() async throws {
        let path = try Build.fixture()
        try await withHost { host in
            let agent = try await host.loadAgent(PluginConfiguration(path: path, kind: .agent))
            let outcome: Result<AgentReply, any Error> = await withTaskGroup(of: Result<AgentReply, any Error>.self) { group in
                group.addTask {
                    do { return .success(try await agent.respond(to: request("late"))) } catch { return .failure(error) }
                }
                // Cancel once the plugin has the call (handle ran and returned PARLEY_PENDING).
                #expect(await eventually { fixtureStat(path, FixtureStat.handled) == 1 && agent.plugin.statistics.running == 0 })
                group.cancelAll()
                return await group.next() ?? .failure(CancellationError())
            }
            #expect(throws: PluginCallError.self) { try outcome.get() }
            #expect(await eventually { fixtureStat(path, FixtureStat.late) == PARLEY_E_EXPIRED.rawValue })
        }
    }

    /// Without PARLEY_FLAG_THREAD_SAFE the host never runs two `handle`s of the plugin at once.
    @Test func pluginWithoutThreadSafeFlagIsSerialized() async throws {
        let path = try Build.fixture()
        try await withHost { host in
            let agent = try await host.loadAgent(PluginConfiguration(path: path, kind: .agent))
            #expect(!agent.plugin.isThreadSafe)
            try await withThrowingTaskGroup(of: AgentReply.self) { group in
                for i in 0..<8 { group.addTask { try await agent.respond(to: request("nap", sender: "s\(i)")) } }
                for try await reply in group { #expect(reply.responses == [["text": "rested"]]) }
            }
            #expect(fixtureStat(path, FixtureStat.maxConcurrent) == 1)
        }
    }

    /// With the flag, calls of one conversation are still serialized.
    @Test func threadSafePluginIsSerializedPerConversation() async throws {
        let path = try Build.fixture(["-DFIX_THREAD_SAFE"])
        try await withHost { host in
            let agent = try await host.loadAgent(PluginConfiguration(path: path, kind: .agent))
            #expect(agent.plugin.isThreadSafe)
            try await withThrowingTaskGroup(of: AgentReply.self) { group in
                for _ in 0..<6 { group.addTask { try await agent.respond(to: request("nap", sender: "same")) } }
                for try await reply in group { #expect(reply.responses == [["text": "rested"]]) }
            }
            #expect(fixtureStat(path, FixtureStat.maxConcurrent) == 1)
        }
    }

    @Test func emitGoesToTheProactiveOutput() async throws {
        let path = try Build.fixture()
        let output = OutputCollector()
        try await withHost(output: output) { host in
            let agent = try await host.loadAgent(PluginConfiguration(path: path, kind: .agent))
            let reply = try await agent.respond(to: request("emit", sender: "room-7"))
            #expect(reply.responses == [["text": "emitted"]])
            #expect(await eventually { output.delivered.count == 1 })
        }
        #expect(output.delivered.first?.0 == "room-7")
        #expect(output.delivered.first?.1 == [["text": "pushed"]])
        #expect(fixtureStat(path, FixtureStat.emit) == PARLEY_OK.rawValue)
        #expect(fixtureStat(path, FixtureStat.emitBad) == PARLEY_E_BAD_JSON.rawValue)
    }

    /// ABI 1.2 `parley_stream`: chunks reach the request's stream in order; bad chunks are refused with a status;
    /// after `complete` the call can no longer stream; a request that cannot stream gets `PARLEY_E_UNSUPPORTED`.
    @Test func streamedChunksReachTheTurnUntilTheCallCompletes() async throws {
        let path = try Build.fixture()
        try await withHost(output: OutputCollector()) { host in
            let agent = try await host.loadAgent(PluginConfiguration(path: path, kind: .agent))
            let chunks = Mutex<[String]>([])
            var streaming = request("stream")
            streaming.stream = { text in
                chunks.withLock { $0.append(text) }
                return true
            }
            #expect(try await agent.respond(to: streaming).responses == [["text": "one two"]])
            #expect(chunks.withLock { $0 } == ["one", " two"])
            #expect(fixtureStat(path, FixtureStat.streamAfter) == PARLEY_E_EXPIRED.rawValue)
            // Without a stream (a formatter's call, an embedding that does not show partial text).
            #expect(try await agent.respond(to: request("stream")).responses == [["text": "stream bad"]])
        }
    }

    /// A reply of the wrong shape is refused by `complete` itself (`PARLEY_E_BAD_JSON`), not dropped later.
    @Test func completeRefusesAReplyOfTheWrongShape() async throws {
        let path = try Build.fixture()
        try await withHost(output: OutputCollector()) { host in
            let agent = try await host.loadAgent(PluginConfiguration(path: path, kind: .agent))
            await #expect {
                try await agent.respond(to: request("bad_shape"))
            } throws: { error in
                "\(error)".contains(#""responses"[0] must be an object, got number"#)
            }
            #expect(fixtureStat(path, FixtureStat.shape) == PARLEY_E_BAD_JSON.rawValue)
        }
        for (reply, kind) in [(#"{"responses":"x"}"#, PluginKind.agent), ("[1]", .agent), (#"{"events":[2]}"#, .agent), ("{}", .formatter)] {
            #expect(CallRegistry.shapeProblem(try JSONValue.parse(reply), kind: kind) != nil, "\(reply)")
        }
        for (reply, kind) in [("{}", PluginKind.agent), (#"{"error":{"code":"x"}}"#, .agent), (#"{"responses":[]}"#, .formatter)] {
            #expect(CallRegistry.shapeProblem(try JSONValue.parse(reply), kind: kind) == nil, "\(reply)")
        }
    }

    /// `get_api` finds every 1.0 host function by name and nothing else; the table carries the run-time version.
    @Test func hostFunctionsByNameAndGarbageArguments() async throws {
        let path = try Build.fixture()
        try await withHost(output: OutputCollector()) { host in
            let agent = try await host.loadAgent(PluginConfiguration(path: path, kind: .agent))
            #expect(try await agent.respond(to: request("get_api")).responses == [["text": "get_api ok"]])
            #expect(try await agent.respond(to: request("emit_invalid")).responses == [["text": "refused"]])
        }
    }

    /// Emits made before the host delivers wait in its queue (the dispatcher formats and records them later).
    @Test func emitsWaitUntilTheHostDelivers() async throws {
        let path = try Build.fixture()
        let output = OutputCollector()
        let pool = WorkerPool(threads: 2)
        let host = PluginHost(pool: pool, logger: testLogger)
        let agent = try await host.loadAgent(PluginConfiguration(path: path, kind: .agent))
        _ = try await agent.respond(to: request("emit", sender: "early"))
        #expect(fixtureStat(path, FixtureStat.emit) == PARLEY_OK.rawValue)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await host.run { await output.deliver(TurnResult(responses: $0.responses), to: $0.senderID, channel: $0.channel) } }
            #expect(await eventually { output.delivered.count == 1 })
            await host.shutdown()
            try await group.waitForAll()
        }
        #expect(output.delivered.first?.0 == "early")
        try await pool.shutdown()
    }

    @Test func callsAfterShutdownAreRefused() async throws {
        let path = try Build.mirror()
        let pool = WorkerPool(threads: 2)
        let host = PluginHost(pool: pool, logger: testLogger)
        let agent = try await host.loadAgent(PluginConfiguration(path: path, kind: .agent))
        await host.shutdown()
        let error = await #expect(throws: PluginCallError.self) { _ = try await agent.respond(to: request("x")) }
        #expect(error?.code == .closed)
        try await pool.shutdown()
    }
}
