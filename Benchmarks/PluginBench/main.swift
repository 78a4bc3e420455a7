// Cost of one plugin round trip: host -> worker pool -> C handle -> complete -> JSON parse -> caller.
//
//   make plugins && swift run -c release PluginBench build/plugins/libmirror.so [calls]
//
// Not a test: prints numbers, asserts nothing.
import Dispatch
import ParleyCore
import ParleyDispatch
import ParleyWorkers
import ParleyJSON
import ParleyPlugins

#if canImport(Glibc)
import Glibc
#endif

/// CPU seconds used by the whole process so far (all threads): less sensitive to a busy machine than wall time.
func processCPUSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

let arguments = CommandLine.arguments
let path = arguments.count > 1 ? arguments[1] : "build/plugins/libmirror.so"
let calls = arguments.count > 2 ? Int(arguments[2]) ?? 20_000 : 20_000

func measure(_ label: String, calls: Int, concurrency: Int, _ body: @escaping @Sendable (Int) async throws -> Void) async throws {
    let clock = ContinuousClock()
    let cpuStart = processCPUSeconds()
    let start = clock.now
    try await withThrowingTaskGroup(of: Void.self) { group in
        for worker in 0..<concurrency {
            group.addTask {
                for i in stride(from: worker, to: calls, by: concurrency) { try await body(i) }
            }
        }
        try await group.waitForAll()
    }
    let elapsed = clock.now - start
    let cpuPerCall = (processCPUSeconds() - cpuStart) / Double(calls) * 1e6
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    let perCall = seconds / Double(calls) * 1e6
    let padded = label + String(repeating: " ", count: max(0, 48 - label.count))
    print(
        "\(padded) \((perCall * 100).rounded() / 100) us/call wall  \((cpuPerCall * 100).rounded() / 100) us/call CPU  \(Int(Double(calls) / seconds)) calls/s")
}

let pool = WorkerPool(threads: 4)
let host = PluginHost(pool: pool)
let agent = try await host.loadAgent(PluginConfiguration(path: path, kind: .agent))
let message = UserMessage(text: "hello, this is a benchmark message", senderID: "bench", inputChannel: "socketio")
let request = AgentRequest(message: message, payload: PluginAgent.minimalPayload(for: message))
print("plugin \(agent.plugin), \(calls) calls, pool of \(pool.threadCount) threads")

// Warm-up.
for _ in 0..<1000 { _ = try await agent.respond(to: request) }

try await measure("worker pool hop only (baseline)", calls: calls, concurrency: 1) { _ in
    _ = try await pool.run(deadline: .seconds(10)) { 1 }
}
try await measure("agent round trip, 1 conversation", calls: calls, concurrency: 1) { _ in
    _ = try await agent.respond(to: request)
}
let requests = (0..<8).map { i -> AgentRequest in
    let m = UserMessage(text: "hello, this is a benchmark message", senderID: "bench-\(i)", inputChannel: "socketio")
    return AgentRequest(message: m, payload: PluginAgent.minimalPayload(for: m))
}
try await measure("agent round trip, 8 conversations in parallel", calls: calls, concurrency: 8) { i in
    _ = try await agent.respond(to: requests[i % 8])
}
await host.shutdown()
try await pool.shutdown()
