import Dispatch
import ParleyCore
import ParleyDispatch
import ParleyWorkers
import ParleyJSON
import Synchronization

/// Runs `dispatcher` while `body` runs, then shuts it down and waits for it to finish.
func withRunning<T: Sendable>(_ dispatcher: Dispatcher, _ body: @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await dispatcher.run() }
        do {
            let result = try await body()
            dispatcher.shutdown()
            try await group.waitForAll()
            return result
        } catch {
            dispatcher.shutdown()
            try await group.waitForAll()
            throw error
        }
    }
}

/// Named one-shot signals: tests wait for a name instead of sleeping.
final class Signals: Sendable {
    private struct State {
        var fired: [String] = []
        var waiters: [String: [CheckedContinuation<Void, Never>]] = [:]
    }
    private let state = Mutex(State())

    func fire(_ name: String) {
        let waiters = state.withLock { s in
            s.fired.append(name)
            return s.waiters.removeValue(forKey: name) ?? []
        }
        for w in waiters { w.resume() }
    }

    func wait(_ name: String) async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s in
                if s.fired.contains(name) { return true }
                s.waiters[name, default: []].append(c)
                return false
            }
            if now { c.resume() }
        }
    }

    var fired: [String] { state.withLock { $0.fired } }
}

/// Collects the results of `submit` completions by name.
final class Results: Sendable {
    let signals = Signals()
    private let results = Mutex<[String: Result<TurnResult, any Error>]>([:])

    func completion(_ name: String) -> @Sendable (Result<TurnResult, any Error>) -> Void {
        { result in
            self.results.withLock { $0[name] = result }
            self.signals.fire("done:" + name)
        }
    }

    func result(_ name: String) async -> Result<TurnResult, any Error> {
        await signals.wait("done:" + name)
        return results.withLock { $0[name]! }
    }

    func texts(_ name: String) async throws -> [String] {
        try await result(name).get().responses.compactMap { $0["text"]?.stringValue }
    }
}

/// Echoes the text (`"echo: <text>"`).
struct EchoAgent: Agent {
    var name = "echo"
    func respond(to request: AgentRequest) async throws -> AgentReply {
        AgentReply(responses: [["text": .string("\(name): \(request.message.text)")]])
    }
}

/// Counts turns in the slot "turns" and replies with the count.
struct CountingAgent: Agent {
    let name = "counting"
    func respond(to request: AgentRequest) async throws -> AgentReply {
        let previous = request.payload["tracker"]?["slots"]?["turns"]?.int64Value ?? 0
        return AgentReply(
            events: [["event": "slot", "name": "turns", "value": .int(previous + 1)]],
            responses: [["text": .string("turn \(previous + 1)")]])
    }
}

/// Signals `start:<text>`, then waits until the test opens the gate named after the text.
struct GatedAgent: Agent {
    let name = "gated"
    let signals: Signals
    let gate: Signals
    func respond(to request: AgentRequest) async throws -> AgentReply {
        signals.fire("start:" + request.message.text)
        await gate.wait(request.message.text)
        return AgentReply(responses: [["text": .string(request.message.text)]])
    }
}

/// Never answers (until cancelled at shutdown), like a hung agent.
struct HangingAgent: Agent {
    let name = "hanging"
    func respond(to request: AgentRequest) async throws -> AgentReply {
        try await Task.sleep(for: .seconds(3600))
        return AgentReply()
    }
}

/// Blocks its worker thread (not the task: a C plugin stuck in `handle`) until `release` is signalled (10 s at
/// most), marked as a foreign call as the plugin host marks it; declares `deadline`. Run the dispatcher on `pool`.
struct ThreadBlockingAgent: Agent {
    let name = "blocking"
    let pool: WorkerPool
    let release: DispatchSemaphore
    let deadline: Duration?
    func respond(to request: AgentRequest) async throws -> AgentReply {
        let block = { _ = release.wait(timeout: .now() + .seconds(10)) }
        if pool.isCurrentThreadWorker { pool.runBlocking(long: true, block) } else { block() }
        return AgentReply(responses: [["text": "woke up"]])
    }
}

struct FailingAgent: Agent {
    struct Failure: Error {}
    let name = "failing"
    func respond(to request: AgentRequest) async throws -> AgentReply { throw Failure() }
}

/// Appends `suffix` to every text.
struct SuffixFormatter: MessageFormatter {
    let name: String
    let suffix: String
    func format(_ responses: [JSONValue], channel: String, senderID: String) async throws -> [JSONValue] {
        responses.map { r in
            var r = r
            if let t = r["text"]?.stringValue { r["text"] = .string(t + suffix) }
            return r
        }
    }
}

/// A settable clock (seconds since 1970).
final class TestClock: Sendable {
    private let now = Mutex<Double>(1_700_000_000)
    func read() -> Double { now.withLock { $0 } }
    func advance(seconds: Double) { now.withLock { $0 += seconds } }
}

func message(_ text: String, to sender: String = "alice", channel: String = "socketio", metadata: JSONObject = [:]) -> UserMessage {
    UserMessage(text: text, senderID: sender, inputChannel: channel, metadata: metadata)
}

func kinds(_ events: [JSONValue]) -> [String] { events.compactMap { $0["event"]?.stringValue } }
