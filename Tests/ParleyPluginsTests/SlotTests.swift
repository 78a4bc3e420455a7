import Foundation
import ParleyDispatch
import ParleyJSON
import ParleyWorkers
import Synchronization
import Testing

@testable import ParleyPlugins

/// Lets the fixture's "block" calls return.
private func releaseFixture(_ path: String) {
    guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD), let symbol = dlsym(handle, "fixture_release") else { return }
    unsafeBitCast(symbol, to: (@convention(c) () -> Void).self)()
}

/// In process, a plugin's slots bound how many of its `handle()`s run at once, and so how many threads it can hold
/// when it hangs; while every slot is hung its calls are refused at once.
@Suite struct SlotTests {
    @Test func maxConcurrentCallsBoundsParallelHandles() async throws {
        let path = try Build.fixture(["-DFIX_THREAD_SAFE"])
        try await withHost { host in
            let agent = try await host.loadAgent(PluginConfiguration(path: path, kind: .agent, maxConcurrentCalls: 2))
            #expect(agent.plugin.slots == 2)
            try await withThrowingTaskGroup(of: AgentReply.self) { group in
                for i in 0..<8 { group.addTask { try await agent.respond(to: request("nap", sender: "s\(i)")) } }
                for try await reply in group { #expect(reply.responses == [["text": "rested"]]) }
            }
            #expect(fixtureStat(path, FixtureStat.maxConcurrent) == 2)
        }
    }

    @Test func everySlotHungRefusesAtOnceUntilOneReturns() async throws {
        let path = try Build.fixture(["-DFIX_THREAD_SAFE"])
        try await withHost { host in
            let agent = try await host.loadAgent(
                PluginConfiguration(path: path, kind: .agent, deadline: .milliseconds(100), maxConcurrentCalls: 2))
            // Two calls that never return by their deadline: both slots hung.
            for sender in ["a", "b"] {
                await #expect(throws: PluginCallError.self) { try await agent.respond(to: request("block", sender: sender)) }
            }
            #expect(await eventually { agent.plugin.statistics.hung == 2 })
            #expect(agent.plugin.problem?.contains("all 2 slot(s)") == true)
            #expect(agent.plugin.status.problem != nil && agent.plugin.status.hung == 2)
            do {
                _ = try await agent.respond(to: request("nap", sender: "c"))
                Issue.record("a call with every slot hung was not refused")
            } catch let error as PluginCallError {
                #expect(error.code == .unavailable)
            }
            #expect(agent.plugin.status.refused == 1)
            // The hung calls return: the slots are free again.
            releaseFixture(path)
            #expect(await eventually { agent.plugin.statistics.hung == 0 })
            #expect(agent.plugin.problem == nil)
            #expect(try await agent.respond(to: request("nap", sender: "c")).responses == [["text": "rested"]])
        }
    }

    @Test func slotGateRunsAtMostItsLimitInOrder() async throws {
        let pool = WorkerPool(threads: 2)
        let gate = SlotGate(limit: 2, pool: pool)
        let log = Mutex<[Int]>([])
        gate.acquire { log.withLock { $0.append(1) } }
        gate.acquire { log.withLock { $0.append(2) } }
        gate.acquire { log.withLock { $0.append(3) } }  // waits: two holders
        gate.acquire { log.withLock { $0.append(4) } }
        #expect(log.withLock { $0 } == [1, 2])
        gate.release()
        #expect(await eventually { log.withLock { $0 } == [1, 2, 3] })
        gate.release()
        #expect(await eventually { log.withLock { $0 } == [1, 2, 3, 4] })
        gate.release()
        gate.release()
        gate.acquire { log.withLock { $0.append(5) } }  // free again: runs inline
        #expect(log.withLock { $0 } == [1, 2, 3, 4, 5])
        try await pool.shutdown()
    }
}
