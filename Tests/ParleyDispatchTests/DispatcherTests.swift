import Dispatch
import ParleyCore
import ParleyDispatch
import ParleyWorkers
import ParleyJSON
import Synchronization
import Testing

@Suite struct DispatcherOrderingTests {
    @Test func turnsOfOneConversationWaitAndOtherConversationsOverlap() async throws {
        let signals = Signals(), gate = Signals(), results = Results()
        let store = InMemoryConversationStore()
        let dispatcher = Dispatcher(agent: GatedAgent(signals: signals, gate: gate), store: store)
        try await withRunning(dispatcher) { () async throws -> Void in
            dispatcher.submit(message("a1", to: "A"), completion: results.completion("a1"))
            dispatcher.submit(message("a2", to: "A"), completion: results.completion("a2"))
            dispatcher.submit(message("b1", to: "B"), completion: results.completion("b1"))
            // b1 runs while a1 is still blocked in the agent: conversations overlap.
            await signals.wait("start:a1")
            await signals.wait("start:b1")
            // a2 has not reached the agent: it waits for a1.
            #expect(!signals.fired.contains("start:a2"))
            gate.fire("b1")
            #expect(try await results.texts("b1") == ["b1"])
            #expect(!signals.fired.contains("start:a2"))
            gate.fire("a1")
            #expect(try await results.texts("a1") == ["a1"])
            await signals.wait("start:a2")
            gate.fire("a2")
            #expect(try await results.texts("a2") == ["a2"])
        }
        let events = try #require(try await store.events(of: "A", types: ["user", "bot"]))
        #expect(events.map { $0["text"]?.stringValue ?? "" } == ["a1", "a1", "a2", "a2"])
    }

    @Test func manyMessagesKeepArrivalOrder() async throws {
        let store = InMemoryConversationStore()
        let dispatcher = Dispatcher(agent: EchoAgent(), store: store, configuration: .init(mailboxCapacity: 1000))
        let results = Results()
        try await withRunning(dispatcher) { () async throws -> Void in
            for i in 0..<200 {
                for c in ["A", "B", "C"] { dispatcher.submit(message("\(i)", to: c), completion: results.completion("\(c)\(i)")) }
            }
            for c in ["A", "B", "C"] { _ = try await results.result("\(c)199").get() }
        }
        for c in ["A", "B", "C"] {
            let users = try #require(try await store.events(of: c, types: ["user"]))
            #expect(users.map { $0["text"]?.stringValue ?? "" } == (0..<200).map { "\($0)" })
        }
    }

    @Test func fullMailboxRefusesWithClearError() async throws {
        let signals = Signals(), gate = Signals(), results = Results()
        let dispatcher = Dispatcher(agent: GatedAgent(signals: signals, gate: gate), configuration: .init(mailboxCapacity: 2))
        try await withRunning(dispatcher) { () async throws -> Void in
            dispatcher.submit(message("m1"), completion: results.completion("m1"))
            await signals.wait("start:m1")
            dispatcher.submit(message("m2"), completion: results.completion("m2"))
            dispatcher.submit(message("m3"), completion: results.completion("m3"))
            dispatcher.submit(message("m4"), completion: results.completion("m4"))
            let refused = await results.result("m4")
            let error = try #require(refused.failure as? DispatchError)
            #expect(error.code == .mailboxFull)
            #expect(error.description.contains("alice"))
            #expect(error.description.contains("mailboxCapacity"))
            // Another conversation is not affected.
            dispatcher.submit(message("x1", to: "bob"), completion: results.completion("x1"))
            await signals.wait("start:x1")
            for m in ["m1", "m2", "m3", "x1"] { gate.fire(m) }
            for m in ["m1", "m2", "m3", "x1"] { #expect(try await results.texts(m) == [m]) }
        }
    }
}

@Suite struct DispatcherFallbackTests {
    static let config = DispatcherConfiguration(
        turnDeadline: .milliseconds(100), fallbackText: "fallback!", deadlineCheckInterval: .milliseconds(10))

    @Test func missedDeadlineSendsFallbackAndLaterMessagesProceed() async throws {
        let store = InMemoryConversationStore(), results = Results()
        let dispatcher = Dispatcher(
            agent: EchoAgent(), routes: [AgentRoute(.prefix("/hang"), to: HangingAgent())], store: store,
            configuration: Self.config)
        try await withRunning(dispatcher) { () async throws -> Void in
            dispatcher.submit(message("/hang"), completion: results.completion("hang"))
            dispatcher.submit(message("after"), completion: results.completion("after"))
            #expect(try await results.texts("hang") == ["fallback!"])
            #expect(try await results.texts("after") == ["echo: after"])
            // The hung agent is still blocked; the conversation keeps working.
            #expect(try await dispatcher.handle(message("again")).responses == [["text": "echo: again"]])
        }
        let events = try #require(try await store.events(of: "alice", types: ["user", "bot"]))
        #expect(events.map { $0["text"]?.stringValue ?? "" } == ["/hang", "fallback!", "after", "echo: after", "again", "echo: again"])
    }

    /// One deadline per turn, the dispatcher's: an agent that blocks its thread past its own (shorter) deadline
    /// gets the fallback at that deadline, while the thread is still blocked (not when it comes back, and not at
    /// the 30 s turn deadline).
    @Test func agentDeadlineBoundsTheTurnEvenWhenTheAgentBlocksItsThread() async throws {
        let results = Results()
        let pool = WorkerPool(threads: 1)
        let release = DispatchSemaphore(value: 0)
        let dispatcher = Dispatcher(
            agent: EchoAgent(),
            routes: [AgentRoute(.prefix("/block"), to: ThreadBlockingAgent(pool: pool, release: release, deadline: .milliseconds(100)))],
            configuration: DispatcherConfiguration(turnDeadline: .seconds(30), fallbackText: "fallback!", deadlineCheckInterval: .milliseconds(10)),
            executor: pool)
        try await withRunning(dispatcher) { () async throws -> Void in
            dispatcher.submit(message("/block"), completion: results.completion("block"))
            // The agent's thread stays blocked until the fallback has arrived.
            #expect(try await results.texts("block") == ["fallback!"])
            release.signal()
        }
        try await pool.shutdown()
    }

    @Test func throwingAgentSendsFallback() async throws {
        let dispatcher = Dispatcher(agent: FailingAgent(), configuration: Self.config)
        try await withRunning(dispatcher) { () async throws -> Void in
            let result = try await dispatcher.handle(message("hi"))
            #expect(result.responses == [["text": "fallback!"]])
            #expect(kinds(result.events).suffix(3) == ["user", "bot", "action"])
        }
    }
}

@Suite struct DispatcherRoutingTests {
    @Test func routesByPrefixMetadataAndChannel() async throws {
        let dispatcher = Dispatcher(
            agent: EchoAgent(name: "default"),
            routes: [
                AgentRoute(.prefix("/faq"), to: EchoAgent(name: "faq")),
                AgentRoute(.metadata(key: "lang", value: "de"), to: EchoAgent(name: "de")),
                AgentRoute(.metadataKey("vip"), to: EchoAgent(name: "vip")),
                AgentRoute(.channel("rest"), to: EchoAgent(name: "rest")),
            ])
        try await withRunning(dispatcher) { () async throws -> Void in
            func reply(_ m: UserMessage) async throws -> String { try await dispatcher.handle(m).responses.first?["text"]?.stringValue ?? "" }
            #expect(try await reply(message("/faq hours")) == "faq: /faq hours")
            #expect(try await reply(message("hallo", metadata: ["lang": "de"])) == "de: hallo")
            #expect(try await reply(message("hello", metadata: ["lang": "en"])) == "default: hello")
            #expect(try await reply(message("hi", metadata: ["vip": true])) == "vip: hi")
            #expect(try await reply(message("hi", channel: "rest")) == "rest: hi")
        }
    }

    @Test func formatterChainRunsInOrderPerChannel() async throws {
        let dispatcher = Dispatcher(
            agent: EchoAgent(),
            formatters: [SuffixFormatter(name: "a", suffix: "+A"), SuffixFormatter(name: "b", suffix: "+B")],
            channelFormatters: ["rest": [SuffixFormatter(name: "r", suffix: "+R")]])
        try await withRunning(dispatcher) { () async throws -> Void in
            let socket = try await dispatcher.handle(message("x"))
            #expect(socket.responses == [["text": "echo: x+A+B"]])
            // The recorded bot event holds what was sent.
            #expect(socket.events.first { $0["event"] == "bot" }?["text"] == "echo: x+A+B")
            let rest = try await dispatcher.handle(message("y", to: "bob", channel: "rest"))
            #expect(rest.responses == [["text": "echo: y+R"]])
        }
    }
}

/// Runs `action_greet` (sets a slot, replies) and `action_fail` (throws).
struct TestActions: ActionRunner {
    struct Failure: Error {}
    func hasAction(named name: String) -> Bool { name == "action_greet" || name == "action_fail" }
    func runAction(named name: String, invocation: ActionInvocation) async throws -> AgentReply {
        guard name == "action_greet" else { throw Failure() }
        let who = invocation.slots["name"]?.stringValue ?? "?"
        return AgentReply(events: [["event": "slot", "name": "greeted", "value": true]], responses: [["text": .string("hello \(who)")]])
    }
}

/// Requests the actions named in the text (`run action_greet`).
struct ActionRequestingAgent: Agent {
    let name = "actions"
    func respond(to request: AgentRequest) async throws -> AgentReply {
        let action = String(request.message.text.dropFirst("run ".count))
        return AgentReply(
            events: [["event": "slot", "name": "name", "value": "Ada"], ["event": "action", "name": .string(action)]],
            responses: [["text": "agent"]])
    }
}

@Suite struct DispatcherActionTests {
    @Test func requestedActionRunsAfterTheAgent() async throws {
        let dispatcher = Dispatcher(agent: ActionRequestingAgent(), actionRunner: TestActions())
        try await withRunning(dispatcher) { () async throws -> Void in
            let result = try await dispatcher.handle(message("run action_greet"))
            #expect(result.responses == [["text": "agent"], ["text": "hello Ada"]])
            let tail = result.events.drop { $0["event"] != "user" }
            #expect(kinds(Array(tail)) == ["user", "slot", "action", "slot", "bot", "bot", "action"])
            #expect(tail.first { $0["name"] == "greeted" }?["value"] == true)
        }
    }

    @Test func failingActionIsRejectedWithFallback() async throws {
        let dispatcher = Dispatcher(agent: ActionRequestingAgent(), actionRunner: TestActions(), configuration: .init(fallbackText: "oops"))
        try await withRunning(dispatcher) { () async throws -> Void in
            let result = try await dispatcher.handle(message("run action_fail"))
            #expect(result.responses == [["text": "agent"], ["text": "oops"]])
            #expect(kinds(result.events).contains("action_execution_rejected"))
        }
    }

    @Test func unknownActionIsOnlyRecorded() async throws {
        let dispatcher = Dispatcher(agent: ActionRequestingAgent(), actionRunner: TestActions())
        try await withRunning(dispatcher) { () async throws -> Void in
            let result = try await dispatcher.handle(message("run action_other"))
            #expect(result.responses == [["text": "agent"]])
            #expect(result.events.contains { $0["name"] == "action_other" })
        }
    }
}

/// Collects proactive deliveries.
final class CollectingOutput: ProactiveOutput {
    let delivered = Mutex<[(String, [JSONValue], String?)]>([])
    func deliver(_ messages: TurnResult, to senderID: String, channel: String?) async {
        let responses = messages.responses
        delivered.withLock { $0.append((senderID, responses, channel)) }
    }
}

@Suite struct DispatcherProactiveTests {
    @Test func emitIsFormattedRecordedAndDelivered() async throws {
        let output = CollectingOutput(), store = InMemoryConversationStore(), outputs = ProactiveOutputs()
        let dispatcher = Dispatcher(agent: EchoAgent(), formatters: [SuffixFormatter(name: "s", suffix: "!")], store: store, outputs: outputs)
        outputs.register(output, for: "socketio")
        try await withRunning(dispatcher) { () async throws -> Void in
            _ = try await dispatcher.handle(message("hi"))
            let result = try await dispatcher.emit([["text": "reminder"]], to: "alice")
            #expect(result.responses == [["text": "reminder!"]])
            await #expect(throws: DispatchError.self) { try await dispatcher.emit([["text": "x"]], to: "nobody") }
        }
        let delivered = output.delivered.withLock { $0 }
        #expect(delivered.count == 1)
        #expect(delivered.first?.0 == "alice")
        #expect(delivered.first?.1 == [["text": "reminder!"]])
        #expect(delivered.first?.2 == "socketio")
        let bots = try #require(try await store.events(of: "alice", types: ["bot"]))
        #expect(bots.last?["text"] == "reminder!")
    }

    /// An emit goes to the output registered under its channel's name; a channel without an output (REST cannot
    /// push) reaches every output; with none the emit is only recorded.
    @Test func emitsAreRoutedByChannelName() async throws {
        let socket = CollectingOutput(), other = CollectingOutput(), outputs = ProactiveOutputs()
        outputs.register(socket, for: "socketio")
        outputs.register(other, for: "other")
        let dispatcher = Dispatcher(agent: EchoAgent(), outputs: outputs)
        try await withRunning(dispatcher) { () async throws -> Void in
            _ = try await dispatcher.handle(message("hi"))
            _ = try await dispatcher.emit([["text": "to socket"]], to: "alice", channel: "socketio")
            _ = try await dispatcher.emit([["text": "to rest"]], to: "alice", channel: "rest")
        }
        #expect(socket.delivered.withLock { $0.map { $0.1 } } == [[["text": "to socket"]], [["text": "to rest"]]])
        #expect(other.delivered.withLock { $0.map { $0.1 } } == [[["text": "to rest"]]])
        #expect(outputs.channelNames == ["other", "socketio"])
    }
}

@Suite struct DispatcherSessionTests {
    func run(_ dispatcher: Dispatcher, _ text: String) async throws -> TurnResult { try await dispatcher.handle(message(text)) }

    @Test func sessionExpiresAfterInactivityAndCarriesSlots() async throws {
        let clock = TestClock()
        let dispatcher = Dispatcher(
            agent: CountingAgent(), configuration: .init(sessionExpirationMinutes: 60, clock: { clock.read() }))
        try await withRunning(dispatcher) { () async throws -> Void in
            let first = try await run(dispatcher, "one")
            #expect(kinds(first.events).prefix(4) == ["action", "session_started", "action", "user"])
            clock.advance(seconds: 30 * 60)
            let second = try await run(dispatcher, "two")
            #expect(!kinds(second.events).contains("session_started"))
            #expect(second.responses == [["text": "turn 2"]])
            clock.advance(seconds: 61 * 60)
            let third = try await run(dispatcher, "three")
            #expect(kinds(third.events).prefix(5) == ["action", "session_started", "slot", "action", "user"])
            #expect(third.events[0]["name"] == "action_session_start")
            #expect(third.responses == [["text": "turn 3"]])
        }
    }

    @Test func slotsAreDroppedWithoutCarryOver() async throws {
        let clock = TestClock()
        let dispatcher = Dispatcher(
            agent: CountingAgent(),
            configuration: .init(sessionExpirationMinutes: 1, carryOverSlotsToNewSession: false, clock: { clock.read() }))
        try await withRunning(dispatcher) { () async throws -> Void in
            _ = try await run(dispatcher, "one")
            clock.advance(seconds: 120)
            let second = try await run(dispatcher, "two")
            #expect(kinds(second.events).prefix(3) == ["action", "session_started", "action"])
            #expect(second.responses == [["text": "turn 1"]])
        }
    }

    @Test func zeroExpirationNeverStartsANewSession() async throws {
        let clock = TestClock()
        let dispatcher = Dispatcher(agent: CountingAgent(), configuration: .init(sessionExpirationMinutes: 0, clock: { clock.read() }))
        try await withRunning(dispatcher) { () async throws -> Void in
            _ = try await run(dispatcher, "one")
            clock.advance(seconds: 30 * 24 * 3600)
            let second = try await run(dispatcher, "two")
            #expect(!kinds(second.events).contains("session_started"))
            #expect(second.responses == [["text": "turn 2"]])
        }
    }

    @Test func idleConversationIsEvictedAndReloadedFromTheStore() async throws {
        let clock = TestClock(), store = InMemoryConversationStore()
        let dispatcher = Dispatcher(
            agent: CountingAgent(), store: store,
            configuration: .init(sessionExpirationMinutes: 0, idleEvictionSeconds: 600, clock: { clock.read() }))
        try await withRunning(dispatcher) { () async throws -> Void in
            _ = try await run(dispatcher, "one")
            _ = try await run(dispatcher, "two")
            #expect(dispatcher.evictIdleConversations() == 0)
            clock.advance(seconds: 601)
            #expect(dispatcher.evictIdleConversations() == 1)
            #expect(dispatcher.residentConversationCount == 0)
            #expect(try await run(dispatcher, "three").responses == [["text": "turn 3"]])
            #expect(dispatcher.residentConversationCount == 1)
        }
    }

    @Test func pausedConversationRecordsButDoesNotAnswer() async throws {
        struct PausingAgent: Agent {
            let name = "pausing"
            func respond(to request: AgentRequest) async throws -> AgentReply {
                AgentReply(events: [["event": "pause"]], responses: [["text": "bye"]])
            }
        }
        let dispatcher = Dispatcher(agent: PausingAgent())
        try await withRunning(dispatcher) { () async throws -> Void in
            _ = try await dispatcher.handle(message("one"))
            let second = try await dispatcher.handle(message("two"))
            #expect(second.responses.isEmpty)
            #expect(kinds(second.events) == ["user"])
        }
    }
}

@Suite struct DispatcherBadInputTests {
    @Test func oversizedMessageIsRefused() async throws {
        let dispatcher = Dispatcher(agent: EchoAgent(), configuration: .init(maxMessageBytes: 10))
        try await withRunning(dispatcher) { () async throws -> Void in
            let error = await #expect(throws: InputError.self) { try await dispatcher.handle(message(String(repeating: "x", count: 11))) }
            #expect(error?.code == .messageTooLarge)
            #expect(error?.description.contains("11 bytes") == true)
            #expect(try await dispatcher.handle(message("short")).responses == [["text": "echo: short"]])
        }
    }

    @Test func invalidSenderIsRefused() async throws {
        let dispatcher = Dispatcher(agent: EchoAgent())
        try await withRunning(dispatcher) { () async throws -> Void in
            let error = await #expect(throws: InputError.self) { try await dispatcher.handle(message("hi", to: "")) }
            #expect(error?.code == .invalidSenderID)
        }
    }

    @Test func malformedAgentEventsAreDropped() async throws {
        struct SloppyAgent: Agent {
            let name = "sloppy"
            func respond(to request: AgentRequest) async throws -> AgentReply {
                AgentReply(events: [5, ["no": "event"], ["event": "slot", "name": "x", "value": 1]], responses: [["text": "ok"]])
            }
        }
        let dispatcher = Dispatcher(agent: SloppyAgent())
        try await withRunning(dispatcher) { () async throws -> Void in
            let result = try await dispatcher.handle(message("hi"))
            let tail = Array(result.events.drop { $0["event"] != "user" })
            #expect(kinds(tail) == ["user", "slot", "bot", "action"])
            #expect(tail[1]["timestamp"]?.doubleValue != nil)
        }
    }

    @Test func messagesAfterShutdownAreRefused() async throws {
        let dispatcher = Dispatcher(agent: EchoAgent())
        try await withRunning(dispatcher) { _ = try await dispatcher.handle(message("hi")) }
        let error = await #expect(throws: DispatchError.self) { try await dispatcher.handle(message("late")) }
        #expect(error?.code == .notRunning)
    }

    @Test func inputValidation() throws {
        #expect(throws: InputError.self) { try InputValidation.text(fromUTF8: [0x68, 0xFF, 0x69]) }
        #expect(try InputValidation.text(fromUTF8: Array("héllo".utf8)) == "héllo")
        #expect(try InputValidation.metadata(from: nil) == [:])
        #expect(try InputValidation.metadata(from: .null) == [:])
        #expect(try InputValidation.metadata(from: ["a": 1]) == ["a": 1])
        #expect(try InputValidation.metadata(from: "{\"a\":1}") == ["a": 1])
        for bad: JSONValue in ["not json", "[1]", 5, [1, 2], true] {
            let error = #expect(throws: InputError.self) { try InputValidation.metadata(from: bad) }
            #expect(error?.code == .metadataNotObject)
        }
    }
}

extension Result {
    var failure: Failure? {
        if case .failure(let e) = self { return e }
        return nil
    }
}

@Suite struct DispatcherMemoryTests {
    /// A flood of new conversations does not grow memory until the idle eviction: past the cap the least recently
    /// active idle conversations leave memory at once, and come back from the store with their history.
    @Test func residentConversationsAreCapped() async throws {
        let store = InMemoryConversationStore()
        let dispatcher = Dispatcher(agent: EchoAgent(), store: store, configuration: DispatcherConfiguration(maxResidentConversations: 10))
        try await withRunning(dispatcher) { () async throws -> Void in
            for i in 0..<50 {
                _ = try await dispatcher.handle(message("hi \(i)", to: "user\(i)"))
                #expect(dispatcher.residentConversationCount <= 11)
            }
            // An evicted conversation reloads from the store and goes on.
            let again = try await dispatcher.handle(message("back", to: "user0"))
            #expect(again.responses == [["text": "echo: back"]])
            #expect(try await store.events(of: "user0", types: ["user"])?.count == 2)
        }
    }
}

@Suite struct DispatcherDeliveryTests {
    @Test func botMessagesAreNumberedAcrossSessionsAndReloads() async throws {
        let clock = TestClock(), store = InMemoryConversationStore()
        let dispatcher = Dispatcher(
            agent: CountingAgent(), store: store,
            configuration: .init(sessionExpirationMinutes: 1, idleEvictionSeconds: 600, clock: { clock.read() }))
        try await withRunning(dispatcher) { () async throws -> Void in
            #expect(try await dispatcher.handle(message("one")).sequences == [1])
            #expect(try await dispatcher.handle(message("two")).sequences == [2])
            clock.advance(seconds: 120)  // a new session: the count goes on
            let third = try await dispatcher.handle(message("three"))
            #expect(third.sequences == [3])
            #expect(third.events.first { $0["event"] == "session_started" }?["parley_seq"] == .int(2))
            clock.advance(seconds: 601)
            #expect(dispatcher.evictIdleConversations() == 1)  // reloaded from the current session only
            clock.advance(seconds: -600)
            #expect(try await dispatcher.handle(message("four")).sequences == [4])
            #expect(try await dispatcher.emit([["text": "reminder"]], to: "alice").sequences == [5])
            let replay = try await dispatcher.replay(of: "alice", after: 2)
            #expect(replay.sequences == [3, 4, 5])
            #expect(replay.responses.last == ["text": "reminder"])
            #expect(try await dispatcher.replay(of: "nobody", after: 0).responses.isEmpty)
        }
    }

    @Test func aRepeatedMessageIDIsAnsweredFromTheFirstTurnWithoutRecording() async throws {
        let store = InMemoryConversationStore()
        let dispatcher = Dispatcher(agent: CountingAgent(), store: store)
        try await withRunning(dispatcher) { () async throws -> Void in
            let first = try await dispatcher.handle(UserMessage(text: "hi", senderID: "alice", inputChannel: "socketio", messageID: "m1"))
            let again = try await dispatcher.handle(UserMessage(text: "hi", senderID: "alice", inputChannel: "socketio", messageID: "m1"))
            #expect(!first.isRepeat && again.isRepeat)
            #expect(again.responses == first.responses && again.sequences == first.sequences && again.events.isEmpty)
            _ = try await dispatcher.emit([["text": "later"]], to: "alice")  // an emit is not part of the answer
            #expect(
                try await dispatcher.handle(UserMessage(text: "hi", senderID: "alice", inputChannel: "socketio", messageID: "m1")).responses == first.responses)
            #expect(
                try await dispatcher.handle(UserMessage(text: "next", senderID: "alice", inputChannel: "socketio", messageID: "m2")).responses == [
                    ["text": "turn 2"]
                ])
        }
        #expect(try await store.events(of: "alice", types: ["user"])?.count == 2)
    }

    @Test func typingIsSaidForASlowTurnBeforeItsAnswerAndNotForAFastOne() async throws {
        final class TypingOutput: ProactiveOutput {
            let said = Mutex<[Bool]>([])
            func deliver(_ messages: TurnResult, to senderID: String, channel: String?) async {}
            func indicateTyping(_ typing: Bool, to senderID: String, channel: String?) { said.withLock { $0.append(typing) } }
        }
        let output = TypingOutput(), outputs = ProactiveOutputs()
        outputs.register(output, for: "socketio")
        let signals = Signals(), gate = Signals()
        let dispatcher = Dispatcher(
            agent: GatedAgent(signals: signals, gate: gate), outputs: outputs,
            configuration: .init(typingDelay: .milliseconds(50), typingRepeat: .milliseconds(100)))
        try await withRunning(dispatcher) { () async throws -> Void in
            gate.fire("fast")
            _ = try await dispatcher.handle(message("fast"))
            #expect(output.said.withLock { $0 }.isEmpty)
            let results = Results()
            dispatcher.submit(message("slow"), completion: results.completion("slow"))
            await signals.wait("start:slow")
            try await Task.sleep(for: .milliseconds(300))
            let during = output.said.withLock { $0 }
            #expect(during.count >= 2 && during.allSatisfy { $0 })
            gate.fire("slow")
            _ = try await results.result("slow").get()
            #expect(output.said.withLock { $0 }.last == false)
        }
    }
}
