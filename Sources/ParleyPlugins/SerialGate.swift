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

/// At most `limit` holders at a time, FIFO, without blocking threads: the slots of one plugin (its threads inside
/// `handle()`). `acquire` runs `start` inline when a slot is free, otherwise when a holder calls `release` (then on
/// the worker pool, so a chain of releases never recurses).
final class SlotGate: Sendable {
    private struct State {
        var holders = 0
        var waiters: [@Sendable () -> Void] = []
        var head = 0
    }

    /// Most concurrent holders.
    let limit: Int
    private let state = Mutex(State())
    private let pool: WorkerPool

    init(limit: Int, pool: WorkerPool) {
        self.limit = max(1, limit)
        self.pool = pool
    }

    /// Runs `start` (inline, on the caller's thread) when a slot is free; otherwise queues it.
    func acquire(_ start: @escaping @Sendable () -> Void) {
        let runNow: Bool = state.withLock { s in
            if s.holders < limit {
                s.holders += 1
                return true
            }
            s.waiters.append(start)
            return false
        }
        if runNow { start() }
    }

    /// Frees a slot; the next waiter (if any) takes it and starts on a worker thread.
    func release() {
        let next: (@Sendable () -> Void)? = state.withLock { s in
            guard s.head < s.waiters.count else {
                s.holders -= 1
                return nil
            }
            let waiter = s.waiters[s.head]
            s.head += 1
            if s.head == s.waiters.count {
                s.waiters.removeAll(keepingCapacity: true)
                s.head = 0
            } else if s.head > 64 && s.head * 2 > s.waiters.count {
                s.waiters.removeFirst(s.head)
                s.head = 0
            }
            return waiter
        }
        if let next { pool.submit(next) }
    }
}
