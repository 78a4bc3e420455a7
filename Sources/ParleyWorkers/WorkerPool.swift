import Dispatch
import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What a library that may block is given (the store's inline commit and reads, the plugin host): a
/// `TaskExecutor` whose threads may block in foreign calls, marked with ``runBlocking(long:_:)``.
/// ``WorkerPool`` is the implementation; the application creates one and passes it to each library.
public protocol BlockingExecutor: TaskExecutor {
    /// Whether the calling thread is one of this executor's threads (only then may it call ``runBlocking(long:_:)``).
    var isCurrentThreadWorker: Bool { get }
    /// Whether work waits for a thread (a hint of load: callers that could do blocking work inline do it only
    /// when nothing waits).
    var hasQueuedWork: Bool { get }
    /// Runs `body`, a call that may block, on the calling worker thread, letting other threads take the queue.
    func runBlocking<T>(long: Bool, _ body: () throws -> T) rethrows -> T
}

/// A pool of threads for foreign code that may block or hang (plugin calls, libffi actions), which is also a
/// `TaskExecutor`: the dispatcher runs its turns here so that a turn can call a plugin on the thread it is
/// already on, without a hand-off and a thread wake-up per call.
///
/// Event-loop threads never run plugin code: the dispatcher and the plugin host run every foreign call on this
/// pool, either inline (when the caller is already on one of its threads, see ``isCurrentThreadWorker``) or by
/// ``submit(_:)``. A foreign call runs inside ``runBlocking(_:)``: while it runs, its thread does not count as
/// available, and when no other thread is available the pool wakes or starts one (up to
/// ``maximumThreadCount``), so a hung plugin holds one thread but never the queue behind it.
///
/// Threads are woken only when queued work has no available thread to run it: under steady load the running
/// threads take work from the queue without sleeping and without being signalled, which keeps context switches
/// per message low.
///
/// A call that misses its deadline in ``run(deadline:_:)`` is abandoned: the caller gets
/// ``WorkerPoolError/deadlineExceeded`` at the deadline, while the body keeps its thread until it returns
/// (nothing can safely stop a native call in process); its late result is dropped.
///
/// Written by hand: NIOThreadPool wakes a thread per submitted item and is not a `TaskExecutor`.
public final class WorkerPool: BlockingExecutor, @unchecked Sendable {
    // @unchecked: every mutable field below is guarded by `mutex` (a pthread mutex, because the parked
    // threads wait on the condition variable `wake`, which Synchronization.Mutex cannot pair with).

    /// Number of threads started at once (the pool's usual width).
    public let threadCount: Int
    /// Most threads the pool starts when calls block (hung or slow plugins); beyond it queued work waits.
    public let maximumThreadCount: Int
    /// Most threads kept running turns at once: the CPUs this process may use (its affinity mask), so that
    /// threads do not wake only to wait for a CPU (a server pinned to one CPU runs turns on one thread).
    public let parallelism: Int

    private enum Job {
        case closure(@Sendable () -> Void)
        case task(UnownedJob)
    }

    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let wake: UnsafeMutablePointer<pthread_cond_t>
    private let stopped: UnsafeMutablePointer<pthread_cond_t>
    // Guarded by `mutex`.
    private var queue: [Job] = []
    private var head = 0
    private var started = 0
    private var sleeping = 0
    /// Threads awake and not inside ``runBlocking(_:)`` (including those signalled but not yet running).
    private var available = 0
    /// Signals sent and not yet taken by a waking thread (tells real wake-ups from spurious ones).
    private var pendingWakeups = 0
    private var shuttingDown = false
    private var exited = 0
    /// Whether a hand-off check is scheduled (see ``runBlocking(_:)``).
    private var monitorArmed = false

    /// Starts `threads` worker threads; up to `maximumThreads` (default `threads + 32`) when calls block.
    public init(threads: Int, maximumThreads: Int? = nil) {
        threadCount = max(1, threads)
        maximumThreadCount = max(threadCount, maximumThreads ?? threadCount + 32)
        parallelism = min(threadCount, Self.usableCPUCount())
        mutex = .allocate(capacity: 1)
        wake = .allocate(capacity: 1)
        stopped = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(wake, nil)
        pthread_cond_init(stopped, nil)
        queue.reserveCapacity(256)
        lock()
        for _ in 0..<threadCount { startThreadLocked() }
        unlock()
    }

    deinit {
        // Threads hold a strong reference, so the pool only goes away once all of them have exited.
        pthread_cond_destroy(stopped)
        pthread_cond_destroy(wake)
        pthread_mutex_destroy(mutex)
        stopped.deallocate()
        wake.deallocate()
        mutex.deallocate()
    }

    // MARK: - Running work

    /// Runs `body` on a worker thread and returns its result, or throws ``WorkerPoolError/deadlineExceeded``
    /// once `deadline` has passed without a result.
    public func run<T: Sendable>(deadline: Duration, _ body: @escaping @Sendable () throws -> T) async throws -> T {
        let once = Mutex<CheckedContinuation<T, any Error>?>(nil)
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            once.withLock { $0 = continuation }
            let accepted = push(
                .closure { [self] in
                    let result = runBlocking { Result { try body() } }
                    once.withLock { $0.take() }?.resume(with: result)
                })
            guard accepted else {
                once.withLock { $0.take() }?.resume(throwing: WorkerPoolError.shutDown)
                return
            }
            let nanos = deadline.components.seconds * 1_000_000_000 + deadline.components.attoseconds / 1_000_000_000
            DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(Int(max(0, nanos)))) {
                once.withLock { $0.take() }?.resume(throwing: WorkerPoolError.deadlineExceeded)
            }
        }
    }

    /// Runs `body` on a worker thread without waiting for it; dropped once the pool is shut down. `body` that
    /// calls foreign code wraps that call in ``runBlocking(_:)``.
    public func submit(_ body: @escaping @Sendable () -> Void) {
        _ = push(.closure(body))
    }

    /// Runs `body` (a foreign call that may block) on the current worker thread. While it runs, the thread does
    /// not count as available: work queued meanwhile wakes another thread, and work already queued is handed
    /// to another thread if the call is still running after ``handOffDelay`` (most plugin calls take a few
    /// microseconds, and waking a thread for each would cost more than the call). Call it only on one of this
    /// pool's threads (``isCurrentThreadWorker``). `long`: the call is known to take a while (a disk sync), so
    /// queued work is handed off at once.
    public func runBlocking<T>(long: Bool = false, _ body: () throws -> T) rethrows -> T {
        assert(isCurrentThreadWorker, "WorkerPool.runBlocking called off the pool's threads")
        lock()
        available -= 1
        var signal = false
        var arm = false
        if head < queue.count {
            if long {
                signal = available < min(queue.count - head, parallelism) && wakeOrStartLocked()
            } else if !monitorArmed {
                monitorArmed = true
                arm = true
            }
        }
        unlock()
        if signal { pthread_cond_signal(wake) }
        if arm { scheduleHandOffCheck() }
        defer {
            lock()
            available += 1
            unlock()
        }
        return try body()
    }

    /// How long a foreign call may hold its thread before queued work is handed to another thread.
    public static let handOffDelay: Duration = .microseconds(500)

    private static let handOffInterval = DispatchTimeInterval.microseconds(Int(handOffDelay / .microseconds(1)))

    private func scheduleHandOffCheck() {
        DispatchQueue.global().asyncAfter(deadline: .now() + Self.handOffInterval) { [self] in
            lock()
            let queued = queue.count - head
            let signal = queued > 0 && available < min(queued, parallelism) && wakeOrStartLocked()
            // Still threads in foreign calls with work waiting: look again later.
            let again = queue.count > head && blockedCountLocked() > 0
            if !again { monitorArmed = false }
            unlock()
            if signal { pthread_cond_signal(wake) }
            if again {
                DispatchQueue.global().asyncAfter(deadline: .now() + Self.handOffInterval) { [self] in recheck() }
            }
        }
    }

    private func recheck() {
        lock()
        monitorArmed = false
        let again = queue.count > head && blockedCountLocked() > 0
        if again { monitorArmed = true }
        unlock()
        if again { scheduleHandOffCheck() }
    }

    /// Whether work is waiting in the queue (a hint of load: callers that could do blocking work inline do it
    /// only when nothing waits).
    public var hasQueuedWork: Bool {
        lock()
        defer { unlock() }
        return head < queue.count
    }

    /// Whether the calling thread is one of this pool's threads.
    public var isCurrentThreadWorker: Bool {
        pthread_getspecific(Self.currentPoolKey) == Unmanaged.passUnretained(self).toOpaque()
    }

    // MARK: - TaskExecutor

    /// Runs a task's job on a worker thread (tasks with this pool as their executor preference).
    public func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        if !push(.task(unowned)) {
            // Shut down: a task must still run, so it continues on the global executor.
            globalConcurrentExecutor.enqueue(ExecutorJob(unowned))
        }
    }

    // MARK: - Shutdown

    /// Stops the threads after the queued work; closures submitted later are dropped (``run(deadline:_:)``
    /// fails with ``WorkerPoolError/shutDown``), tasks that still prefer this pool continue on the global
    /// executor. Returns once every thread not stuck in a foreign call has exited.
    public func shutdown() async throws {
        lock()
        shuttingDown = true
        pthread_cond_broadcast(wake)
        unlock()
        // Wait off the cooperative pool: threads finish their queued work first.
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async { [self] in
                lock()
                // A thread blocked in a hung plugin call never exits; do not wait for those.
                while exited < started - blockedCountLocked() { pthread_cond_wait(stopped, mutex) }
                unlock()
                done.resume()
            }
        }
    }

    // MARK: - Internals

    /// The CPUs this process can use: the fewer of NIO's `System.coreCount` (a cgroup CPU quota, rounded up, or the
    /// cgroup's cpuset — a container limited to 2 CPUs on a 32-core host counts 2) and the CPUs in the process's
    /// affinity mask (`Cpus_allowed` in `/proc/self/status`: `taskset`, which NIO does not read).
    public static func usableCPUCount() -> Int {
        min(System.coreCount, affinityCPUCount())
    }

    /// CPUs in this process's affinity mask, else the online CPUs.
    static func affinityCPUCount() -> Int {
        let online = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        guard let file = fopen("/proc/self/status", "r") else { return online }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 4096)
        while fgets(&line, Int32(line.count), file) != nil {
            let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            guard text.hasPrefix("Cpus_allowed:") else { continue }
            let count = text.dropFirst("Cpus_allowed:".count).reduce(0) { n, c in n + (c.hexDigitValue?.nonzeroBitCount ?? 0) }
            return count > 0 ? min(count, online) : online
        }
        return online
    }

    private static let currentPoolKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    private func lock() { pthread_mutex_lock(mutex) }
    private func unlock() { pthread_mutex_unlock(mutex) }

    /// Threads inside ``runBlocking(_:)`` (awake but not available); call with `mutex` held.
    private func blockedCountLocked() -> Int { started - exited - (sleeping - pendingWakeups) - available }

    /// Queues `job` and wakes a thread if no available thread will pick it up. False after shutdown.
    private func push(_ job: Job) -> Bool {
        lock()
        if shuttingDown {
            unlock()
            return false
        }
        queue.append(job)
        // Enough threads are awake when each queued job has one, up to the usable CPUs; otherwise wake (or
        // start) one more.
        let signal = available < min(queue.count - head, parallelism) && wakeOrStartLocked()
        unlock()
        if signal { pthread_cond_signal(wake) }
        return true
    }

    /// Claims a sleeping thread (returns true: the caller signals `wake` after unlocking, so the woken thread
    /// does not block on the mutex the caller still holds), or starts one when none sleeps and the maximum
    /// allows. Call with `mutex` held.
    private func wakeOrStartLocked() -> Bool {
        if sleeping > pendingWakeups {
            pendingWakeups += 1
            available += 1
            return true
        }
        if available == 0 && started - exited < maximumThreadCount { startThreadLocked() }
        return false
    }

    private func startThreadLocked() {
        started += 1
        available += 1
        let box = Unmanaged.passRetained(ThreadStart(pool: self)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(
            &thread, nil,
            { raw in
                let start = Unmanaged<ThreadStart>.fromOpaque(raw!).takeRetainedValue()
                start.pool.threadMain()
                return nil
            }, box)
        if rc != 0 {
            Unmanaged<ThreadStart>.fromOpaque(box).release()
            started -= 1
            available -= 1
        } else {
            pthread_detach(thread)
        }
    }

    private func threadMain() {
        pthread_setspecific(Self.currentPoolKey, Unmanaged.passUnretained(self).toOpaque())
        let executor = asUnownedTaskExecutor()
        lock()
        while true {
            if head < queue.count {
                let job = queue[head]
                head += 1
                if head == queue.count {
                    queue.removeAll(keepingCapacity: true)
                    head = 0
                } else if head >= 1024 && head * 2 >= queue.count {
                    queue.removeFirst(head)
                    head = 0
                }
                unlock()
                switch job {
                case .closure(let body): body()
                case .task(let job): job.runSynchronously(on: executor)
                }
                lock()
                continue
            }
            if shuttingDown { break }
            available -= 1
            sleeping += 1
            repeat {
                pthread_cond_wait(wake, mutex)
            } while pendingWakeups == 0 && !shuttingDown && head == queue.count
            sleeping -= 1
            if pendingWakeups > 0 {
                pendingWakeups -= 1  // `available` was raised by the thread that signalled
            } else {
                available += 1
            }
        }
        available -= 1
        exited += 1
        pthread_cond_broadcast(stopped)
        unlock()
    }
}

private final class ThreadStart {
    let pool: WorkerPool
    init(pool: WorkerPool) { self.pool = pool }
}

/// Why ``WorkerPool/run(deadline:_:)`` gave no result.
public struct WorkerPoolError: Error, Sendable, Hashable, CustomStringConvertible {
    private enum Base: Hashable, Sendable { case deadlineExceeded, shutDown }
    private let base: Base
    private init(_ base: Base) { self.base = base }

    /// The body did not return before the deadline.
    public static let deadlineExceeded = WorkerPoolError(.deadlineExceeded)
    /// The pool was shut down.
    public static let shutDown = WorkerPoolError(.shutDown)

    public var description: String {
        switch base {
        case .deadlineExceeded: "deadline exceeded"
        case .shutDown: "worker pool shut down"
        }
    }
}
