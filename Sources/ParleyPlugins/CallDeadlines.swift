import Dispatch
import Synchronization

/// Expires plugin calls at their deadlines with one armed GCD timer instead of one timer per call.
///
/// Calls wait in FIFO lanes, one per deadline length, so every lane is already in deadline order and
/// scheduling is an append. A single `asyncAfter` is armed for the earliest deadline; when it fires it expires
/// every due call (a call that already finished is a no-op in ``CallRegistry/expire(_:deadline:cancelled:)``)
/// and arms the next one. Timers are coalesced: a call expires at its deadline or up to ``slack`` later,
/// never earlier.
final class CallDeadlines: Sendable {
    private struct Entry {
        let at: UInt64
        let id: UInt
    }

    private struct Lane {
        /// How long after scheduling the calls of this lane expire.
        let after: Duration
        /// The deadline named in their error (an agent call expires after its deadline; see LoadedPlugin).
        let deadline: Duration
        var entries: [Entry] = []
        var head = 0
    }

    private struct State {
        var lanes: [Lane] = []
        /// When the armed timer fires (nil: none armed), and its generation (older timers do nothing).
        var armedAt: UInt64?
        var generation: UInt64 = 0
    }

    /// How late a call may expire so that nearby deadlines share one timer.
    static let slackNanos: UInt64 = 2_000_000

    private let state = Mutex(State())

    /// Expires call `id` once `after` has passed, with `deadline` (for the error text).
    func schedule(_ id: UInt, after: Duration, deadline: Duration) {
        let nanos = after.components.seconds * 1_000_000_000 + after.components.attoseconds / 1_000_000_000
        let at = DispatchTime.now().uptimeNanoseconds &+ UInt64(max(0, nanos))
        let arm: (UInt64, UInt64)? = state.withLock { s in
            if let i = s.lanes.firstIndex(where: { $0.after == after && $0.deadline == deadline }) {
                s.lanes[i].entries.append(Entry(at: at, id: id))
            } else {
                s.lanes.append(Lane(after: after, deadline: deadline, entries: [Entry(at: at, id: id)]))
            }
            if let armed = s.armedAt, armed <= at &+ Self.slackNanos { return nil }
            s.generation &+= 1
            s.armedAt = at
            return (at, s.generation)
        }
        if let (at, generation) = arm { self.arm(at: at, generation: generation) }
    }

    private func arm(at: UInt64, generation: UInt64) {
        DispatchQueue.global().asyncAfter(deadline: DispatchTime(uptimeNanoseconds: at)) { [self] in
            fire(generation: generation)
        }
    }

    private func fire(generation: UInt64) {
        let now = DispatchTime.now().uptimeNanoseconds
        var due: [(UInt, Duration)] = []
        let next: (UInt64, UInt64)? = state.withLock { s in
            guard s.generation == generation else { return nil }
            s.armedAt = nil
            var earliest: UInt64?
            for l in s.lanes.indices {
                let deadline = s.lanes[l].deadline
                while s.lanes[l].head < s.lanes[l].entries.count {
                    let e = s.lanes[l].entries[s.lanes[l].head]
                    if e.at > now &+ Self.slackNanos {
                        earliest = min(earliest ?? e.at, e.at)
                        break
                    }
                    due.append((e.id, deadline))
                    s.lanes[l].head += 1
                }
                let head = s.lanes[l].head
                if head == s.lanes[l].entries.count {
                    s.lanes[l].entries.removeAll(keepingCapacity: true)
                    s.lanes[l].head = 0
                } else if head > 1024 && head * 2 > s.lanes[l].entries.count {
                    s.lanes[l].entries.removeFirst(head)
                    s.lanes[l].head = 0
                }
            }
            guard let earliest else { return nil }
            s.generation &+= 1
            s.armedAt = earliest
            return (earliest, s.generation)
        }
        if let (at, generation) = next { arm(at: at, generation: generation) }
        for (id, deadline) in due { callRegistry.expire(id, deadline: deadline, cancelled: false) }
    }
}

let callDeadlines = CallDeadlines()
