public import NIOPosix
import Dispatch
import Synchronization

/// A bounded pool of threads for foreign code that may block or hang (plugin calls, libffi actions).
///
/// Event-loop threads never run plugin code: the dispatcher and the plugin host hand every foreign call
/// to this pool. A call that misses its deadline is abandoned: the caller gets
/// ``WorkerPoolError/deadlineExceeded`` at the deadline, while the body keeps its thread until it returns
/// (nothing can safely stop a native call in process); its late result is dropped.
public final class WorkerPool: Sendable {
    private let pool: NIOThreadPool
    /// Number of threads.
    public let threadCount: Int

    /// Starts `threads` worker threads.
    public init(threads: Int) {
        threadCount = max(1, threads)
        pool = NIOThreadPool(numberOfThreads: threadCount)
        pool.start()
    }

    /// Runs `body` on a worker thread and returns its result, or throws ``WorkerPoolError/deadlineExceeded``
    /// once `deadline` has passed without a result.
    public func run<T: Sendable>(deadline: Duration, _ body: @escaping @Sendable () throws -> T) async throws -> T {
        let once = Mutex<CheckedContinuation<T, any Error>?>(nil)
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            once.withLock { $0 = continuation }
            pool.submit { state in
                let result: Result<T, any Error>
                if case .cancelled = state {
                    result = .failure(WorkerPoolError.shutDown)
                } else {
                    result = Result { try body() }
                }
                once.withLock { $0.take() }?.resume(with: result)
            }
            let nanos = deadline.components.seconds * 1_000_000_000 + deadline.components.attoseconds / 1_000_000_000
            DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(Int(max(0, nanos)))) {
                once.withLock { $0.take() }?.resume(throwing: WorkerPoolError.deadlineExceeded)
            }
        }
    }

    /// Runs `body` on a worker thread without waiting for it.
    public func submit(_ body: @escaping @Sendable () -> Void) {
        pool.submit { state in
            if case .active = state { body() }
        }
    }

    /// Stops the threads after the queued work; work submitted later fails with ``WorkerPoolError/shutDown``.
    public func shutdown() async throws {
        try await pool.shutdownGracefully()
    }
}

/// Why ``WorkerPool/run(deadline:_:)`` gave no result.
public enum WorkerPoolError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The body did not return before the deadline.
    case deadlineExceeded
    /// The pool was shut down.
    case shutDown

    public var description: String {
        switch self {
        case .deadlineExceeded: "deadline exceeded"
        case .shutDown: "worker pool shut down"
        }
    }
}
