import ParleyDispatch
import Synchronization
import Testing

@Suite struct WorkerPoolTests {
    @Test func returnsResult() async throws {
        let pool = WorkerPool(threads: 2)
        let value = try await pool.run(deadline: .seconds(5)) { 6 * 7 }
        #expect(value == 42)
        try await pool.shutdown()
    }

    @Test func deadlineAbandonsBlockedCall() async throws {
        let pool = WorkerPool(threads: 1)
        let gate = Mutex(false)
        await #expect(throws: WorkerPoolError.deadlineExceeded) {
            try await pool.run(deadline: .milliseconds(50)) { () -> Int in
                // Blocks until released below, like a hung plugin.
                while !gate.withLock({ $0 }) { usleepShort() }
                return 1
            }
        }
        gate.withLock { $0 = true }
        try await pool.shutdown()
    }
}

#if canImport(Glibc)
import Glibc
#endif
private func usleepShort() { usleep(1000) }
