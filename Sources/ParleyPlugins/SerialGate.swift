import ParleyDispatch
import ParleyWorkers
import Synchronization

/// FIFO mutual exclusion per key without blocking threads: `enqueue` runs `start` at once when the key is
/// free, otherwise when the holder calls `release`. Waiters are resumed on the worker pool, so a chain of
/// releases never recurses.
final class SerialGate: Sendable {
    private struct Slot {
        var waiters: [@Sendable () -> Void] = []
        var head = 0
    }

    private let slots = Mutex<[String: Slot]>([:])
    private let pool: WorkerPool

    init(pool: WorkerPool) {
        self.pool = pool
    }

    /// Runs `start` (inline, on the caller's thread) when `key` is free; otherwise queues it.
    func enqueue(_ key: String, _ start: @escaping @Sendable () -> Void) {
        let runNow: Bool = slots.withLock { slots in
            if slots[key] != nil {
                slots[key]!.waiters.append(start)
                return false
            }
            slots[key] = Slot()
            return true
        }
        if runNow { start() }
    }

    /// Releases `key`; the next waiter (if any) starts on a worker thread and then holds the key.
    func release(_ key: String) {
        let next: (@Sendable () -> Void)? = slots.withLock { slots in
            guard var slot = slots[key] else { return nil }
            guard slot.head < slot.waiters.count else {
                slots[key] = nil
                return nil
            }
            let waiter = slot.waiters[slot.head]
            slot.head += 1
            if slot.head > 64 && slot.head * 2 > slot.waiters.count {
                slot.waiters.removeFirst(slot.head)
                slot.head = 0
            }
            slots[key] = slot
            return waiter
        }
        if let next { pool.submit(next) }
    }
}
