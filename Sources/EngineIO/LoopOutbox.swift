import NIOCore
import Synchronization

/// Messages for sessions of one event loop, and work to run on it, handed over from other threads (the
/// dispatcher's workers) with at most one event-loop task and one wake-up per batch instead of one per item.
///
/// `EventLoop.execute` from another thread allocates a task and wakes the loop (a write to its eventfd) for
/// every call; when many conversations complete turns at once that costs a system call and usually a context
/// switch per reply. The outbox takes the lock, appends, and schedules a flush only when it was empty: the
/// loop then sends everything that accumulated, in submission order (per session order is kept because one
/// session is always served by one loop).
final class LoopOutbox: Sendable {
    private enum Item {
        case send(EngineSession, [EngineMessage])
        case run(@Sendable () -> Void)
    }

    private struct State {
        var items: [Item] = []
        var scheduled = false
    }

    let eventLoop: any EventLoop
    private let state = Mutex(State())

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    /// Queues `messages` for `session` (whose event loop is this outbox's) from any thread.
    func submit(_ messages: [EngineMessage], to session: EngineSession) {
        add(.send(session, messages))
    }

    /// Runs `work` on this outbox's loop, in order with the messages submitted around it, from any thread.
    func execute(_ work: @escaping @Sendable () -> Void) {
        add(.run(work))
    }

    private func add(_ item: Item) {
        let schedule = state.withLock { s in
            s.items.append(item)
            if s.scheduled { return false }
            s.scheduled = true
            return true
        }
        if schedule { eventLoop.execute { self.flush() } }
    }

    /// Sends every queued message; runs on the event loop.
    private func flush() {
        let items = state.withLock { s in
            s.scheduled = false
            defer { s.items.removeAll(keepingCapacity: true) }
            return s.items
        }
        for item in items {
            switch item {
            case .send(let session, let messages): session.sendOnLoop(messages)
            case .run(let work): work()
            }
        }
    }
}

/// The outboxes of the event loops an ``EngineIOServer``'s sessions live on, created on first use.
final class LoopOutboxes: Sendable {
    private let outboxes = Mutex<[ObjectIdentifier: LoopOutbox]>([:])

    func outbox(for eventLoop: any EventLoop) -> LoopOutbox {
        let key = ObjectIdentifier(eventLoop as AnyObject)
        return outboxes.withLock { map in
            if let box = map[key] { return box }
            let box = LoopOutbox(eventLoop: eventLoop)
            map[key] = box
            return box
        }
    }
}
