import Logging
import ParleyActions
import ParleyDispatch
import ParleyJSON
import Testing

/// The dispatcher-facing runner: argument sources, conversions, say, deadlines and the reply shape.
@Suite struct RunnerTests {
    func runner(_ actions: String, timeout: Duration = .seconds(10)) throws -> NativeActionRunner {
        let manifest = try Fixture.loadManifest("library: \(try Fixture.libraryPath())\nactions:\n\(actions)")
        return NativeActionRunner(manifest: manifest, pool: testPool, configuration: .init(callTimeout: timeout), logger: testLogger)
    }

    @Test func tipFromSlotsSetsSlotAndReplies() async throws {
        let runner = try runner(
            """
              action_tip:
                symbol: fx_add_double_int32
                signature: double(double,int32)
                args: [slot:amount, slot:percent]
                slot: total
                reply: "Total: {result:.2f}"
            """)
        #expect(runner.hasAction(named: "action_tip"))
        #expect(!runner.hasAction(named: "action_other"))
        let reply = try await runner.runAction(named: "action_tip", invocation: invocation(slots: ["amount": 42.5, "percent": 15]))
        #expect(reply.events == [["event": "slot", "name": "total", "value": 57.5]])
        #expect(reply.responses == [["text": "Total: 57.50"]])
    }

    @Test func sourcesFromEntitiesMetadataTextAndLiterals() async throws {
        let runner = try runner(
            """
              concat_text_meta:
                symbol: fx_concat
                signature: cstring(cstring,cstring)
                args: [text, metadata:suffix]
                free: fx_free
                reply: "{result}"
              concat_entity_literal:
                symbol: fx_concat
                signature: cstring(cstring,cstring)
                args: [entity:city, "literal:!"]
                free: fx_free
                slot: shout
            """)
        let inv = invocation(text: "hello ", entities: [["entity": "city", "value": "Oslo"]], metadata: ["suffix": "world"])
        let a = try await runner.runAction(named: "concat_text_meta", invocation: inv)
        #expect(a.responses == [["text": "hello world"]])
        let b = try await runner.runAction(named: "concat_entity_literal", invocation: inv)
        #expect(b.events.last == ["event": "slot", "name": "shout", "value": "Oslo!"])
        #expect(b.responses.isEmpty)
    }

    @Test func nullStringSetsNullSlotAndSkipsReply() async throws {
        let runner = try runner("  n:\n    symbol: fx_null_string\n    signature: cstring()\n    slot: s\n    reply: \"got {result}\"\n")
        let reply = try await runner.runAction(named: "n", invocation: invocation())
        #expect(reply.events.last == ["event": "slot", "name": "s", "value": nil])
        #expect(reply.responses.isEmpty)
    }

    @Test func sayMessagesComeBeforeTheReply() async throws {
        let runner = try runner(
            """
              two:
                symbol: fx_two_says
                signature: int32(say,int32,say)
                args: [slot:n]
                reply: "n*2 = {result}"
            """)
        let reply = try await runner.runAction(named: "two", invocation: invocation(slots: ["n": 4]))
        #expect(reply.responses == [["text": "one"], ["text": "two"], ["text": "three"], ["text": "n*2 = 8"]])
    }

    @Test func sayReachesTheRightConversationWhenTwoCallConcurrently() async throws {
        let runner = try runner(
            """
              rendezvous:
                symbol: fx_rendezvous
                signature: int32(cstring,say)
                args: [slot:name]
                slot: met
            """)
        // fx_rendezvous holds each caller until both are inside the function, so the two closures are live
        // at the same time on two worker threads.
        async let adaReply = runner.runAction(named: "rendezvous", invocation: invocation(sender: "conv-ada", slots: ["name": "Ada"]))
        async let bobReply = runner.runAction(named: "rendezvous", invocation: invocation(sender: "conv-bob", slots: ["name": "Bob"]))
        let (ada, bob) = try await (adaReply, bobReply)
        #expect(ada.responses == [["text": "hello from Ada"], ["text": "goodbye from Ada"]])
        #expect(bob.responses == [["text": "hello from Bob"], ["text": "goodbye from Bob"]])
        #expect(ada.events.last == ["event": "slot", "name": "met", "value": 1])
        #expect(bob.events.last == ["event": "slot", "name": "met", "value": 1])
    }

    @Test func manySayCallsInParallelStaySeparate() async throws {
        let runner = try runner("  greet:\n    symbol: fx_greet\n    signature: void(cstring,say)\n    args: [slot:name]\n")
        try await withThrowingTaskGroup(of: (Int, AgentReply).self) { group in
            for i in 0..<32 {
                group.addTask {
                    (i, try await runner.runAction(named: "greet", invocation: invocation(sender: "c\(i)", slots: ["name": .string("n\(i)")])))
                }
            }
            for try await (i, reply) in group {
                #expect(reply.responses == [["text": .string("hello, n\(i)")], ["text": "bye"]])
            }
        }
    }

    @Test(
        arguments: [
            (JSONObject(), "argument 1 (slot:amount, double): slot 'amount' is not set"),
            (["amount": nil], "slot 'amount' is not set"),
            (["amount": "42", "percent": 15], "argument 1 (slot:amount, double): expected a number, got the string \"42\""),
            (["amount": 42, "percent": 15.5], "argument 2 (slot:percent, int32): 15.5 is not an integer"),
            (["amount": 42, "percent": 3_000_000_000], "argument 2 (slot:percent, int32): 3000000000 is out of range for int32"),
            (["amount": 42, "percent": true], "expected an integer, got the bool true"),
        ] as [(JSONObject, String)])
    func callTimeErrorsNameTheAction(slots: JSONObject, expected: String) async throws {
        let runner = try runner("  action_tip:\n    symbol: fx_add_double_int32\n    signature: double(double,int32)\n    args: [slot:amount, slot:percent]\n")
        await #expect {
            try await runner.runAction(named: "action_tip", invocation: invocation(slots: slots))
        } throws: { error in
            let error = error as? ActionError
            return error?.code == .argument && error?.action == "action_tip"
                && error?.description.hasPrefix("action action_tip: ") == true && error?.message.contains(expected) == true
        }
    }

    @Test func invalidUTF8ResultIsAnErrorNamingTheAction() async throws {
        let runner = try runner("  bad:\n    symbol: fx_invalid_utf8\n    signature: cstring()\n    reply: \"{result}\"\n")
        await #expect {
            try await runner.runAction(named: "bad", invocation: invocation())
        } throws: { error in
            "\(error)".hasPrefix("action bad: fx_invalid_utf8 returned a string that is not valid UTF-8")
        }
    }

    @Test func deadlineExpiryIsAnErrorAndTheRunnerKeepsWorking() async throws {
        let runner = try runner(
            """
              slow:
                symbol: fx_sleep_ms
                signature: int32(int32)
                args: [slot:ms]
                timeout: 0.05
              fast:
                symbol: fx_neg_int32
                signature: int32(int32)
                args: [1]
                slot: r
            """)
        await #expect {
            try await runner.runAction(named: "slow", invocation: invocation(slots: ["ms": 3000]))
        } throws: { error in
            (error as? ActionError)?.code == .deadline && "\(error)".hasPrefix("action slow: fx_sleep_ms did not return within")
        }
        let reply = try await runner.runAction(named: "fast", invocation: invocation())
        #expect(reply.events.last == ["event": "slot", "name": "r", "value": -1])
    }

    @Test func unknownActionIsAnError() async throws {
        let runner = try runner("  fast:\n    symbol: fx_neg_int32\n    signature: int32(int32)\n    args: [1]\n")
        #expect(runner.actionNames == ["fast"])
        await #expect {
            try await runner.runAction(named: "nope", invocation: invocation())
        } throws: { error in
            (error as? ActionError)?.code == .unknownAction
        }
    }
}
