import ParleyCore
import ParleyDispatch
import ParleyJSON
import ServiceLifecycleTestKit
import Synchronization
import Testing

@Suite struct DispatcherShutdownTests {
    @Test func gracefulShutdownFinishesQueuedTurnsAndRefusesNewOnes() async throws {
        let signals = Signals(), gate = Signals(), results = Results()
        let dispatcher = Dispatcher(agent: GatedAgent(signals: signals, gate: gate))
        try await testGracefulShutdown { trigger in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await dispatcher.run() }
                dispatcher.submit(message("first"), completion: results.completion("first"))
                dispatcher.submit(message("queued"), completion: results.completion("queued"))
                await signals.wait("start:first")
                trigger.triggerGracefulShutdown()
                // New work is refused at once; what was accepted still completes.
                let late = try await waitForRefusal(dispatcher)
                #expect(late.code == .shuttingDown)
                gate.fire("first")
                gate.fire("queued")
                #expect(try await results.texts("first") == ["first"])
                #expect(try await results.texts("queued") == ["queued"])
                try await group.waitForAll()
            }
        }
    }

    @Test func cancellationFailsQueuedTurns() async throws {
        let signals = Signals(), gate = Signals(), results = Results()
        let dispatcher = Dispatcher(agent: GatedAgent(signals: signals, gate: gate))
        await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await dispatcher.run() }
            dispatcher.submit(message("stuck"), completion: results.completion("stuck"))
            dispatcher.submit(message("waiting"), completion: results.completion("waiting"))
            await signals.wait("start:stuck")
            group.cancelAll()
            let waiting = await results.result("waiting")
            #expect((waiting.failure as? DispatchError)?.code == .shuttingDown)
            // The agent in this test ignores cancellation; let it return so the group can end.
            gate.fire("stuck")
        }
    }

    /// Submits one message and returns its refusal, which `submit` reports synchronously.
    func waitForRefusal(_ dispatcher: Dispatcher) async throws -> DispatchError {
        let refusal = Mutex<DispatchError?>(nil)
        dispatcher.submit(message("late", to: "late")) { result in
            if case .failure(let error as DispatchError) = result { refusal.withLock { $0 = error } }
        }
        return try #require(refusal.withLock { $0 })
    }
}
