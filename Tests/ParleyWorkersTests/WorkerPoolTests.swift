import NIOCore
import ParleyWorkers
import Synchronization
import Testing

@Suite struct WorkerPoolTests {
    /// The CPU count that sizes the event loops and the pool honours a cgroup CPU quota or cpuset (NIO's
    /// `System.coreCount`) as well as the affinity mask.
    @Test func usableCPUsNeverExceedTheCgroupLimit() {
        let usable = WorkerPool.usableCPUCount()
        #expect(usable >= 1)
        #expect(usable <= System.coreCount)
    }

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

@Suite struct WorkerPoolExecutorTests {
    @Test func tasksPreferringThePoolRunOnItsThreads() async throws {
        let pool = WorkerPool(threads: 2)
        let onPool = await withTaskExecutorPreference(pool) {
            await Task.yield()
            return pool.isCurrentThreadWorker
        }
        #expect(onPool)
        #expect(!pool.isCurrentThreadWorker)
        try await pool.shutdown()
    }

    @Test func childTasksInheritThePreference() async throws {
        let pool = WorkerPool(threads: 2)
        let all = await withTaskExecutorPreference(pool) {
            await withTaskGroup(of: Bool.self) { group in
                for _ in 0..<50 { group.addTask { pool.isCurrentThreadWorker } }
                var all = true
                for await onPool in group { all = all && onPool }
                return all
            }
        }
        #expect(all)
        try await pool.shutdown()
    }

    /// A call blocked in foreign code (a hung plugin) holds its thread but not the work queued behind it:
    /// another thread is woken or started.
    @Test func blockedCallDoesNotHoldQueuedWork() async throws {
        let pool = WorkerPool(threads: 1)
        let release = Mutex(false)
        let entered = Mutex(false)
        pool.submit {
            pool.runBlocking {
                entered.withLock { $0 = true }
                while !release.withLock({ $0 }) { usleepShort() }
            }
        }
        while !entered.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(1)) }
        // Queued while the only thread is blocked.
        let value = try await pool.run(deadline: .seconds(5)) { 7 }
        #expect(value == 7)
        release.withLock { $0 = true }
        try await pool.shutdown()
    }

    /// Work queued before a call blocks is handed to another thread after the hand-off delay.
    @Test func workQueuedBeforeABlockingCallIsHandedOff() async throws {
        let pool = WorkerPool(threads: 1)
        let release = Mutex(false)
        let ran = Mutex(false)
        // Both closures are queued before the single thread starts the blocking one.
        pool.submit {
            pool.runBlocking {
                while !release.withLock({ $0 }) { usleepShort() }
            }
        }
        pool.submit { ran.withLock { $0 = true } }
        for _ in 0..<2000 where !ran.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(1)) }
        #expect(ran.withLock { $0 })
        release.withLock { $0 = true }
        try await pool.shutdown()
    }

    @Test func shutDownPoolRefusesClosuresButStillRunsTasks() async throws {
        let pool = WorkerPool(threads: 1)
        try await pool.shutdown()
        await #expect(throws: WorkerPoolError.shutDown) { try await pool.run(deadline: .seconds(1)) { 1 } }
        let value = await withTaskExecutorPreference(pool) { 5 }
        #expect(value == 5)
    }

    @Test func parallelismFollowsTheAffinityMask() {
        let pool = WorkerPool(threads: 64)
        #expect(pool.parallelism >= 1 && pool.parallelism <= 64)
    }
}
