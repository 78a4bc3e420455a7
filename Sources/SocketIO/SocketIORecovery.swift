import ParleyJSON
import Synchronization

/// Settings of Socket.IO's connection state recovery (socket.io ≥ 4.6 `connectionStateRecovery`): a client that
/// lost its connection for a short while comes back with the same socket id, rooms and data, and gets the events it
/// missed; the official clients then report `recovered == true`.
///
/// The server numbers every event it broadcasts (an offset string appended as the last argument, which the
/// official clients strip and remember) and keeps the recent ones; a socket that drops without saying goodbye is
/// kept for ``maxDisconnectionDuration``. The client's next CONNECT carries `{pid, offset}`; if both are still
/// known, the events after `offset` that reached the socket's rooms are sent again.
public struct SocketIOConnectionStateRecovery: Sendable, Hashable {
    /// How long a dropped socket (and the events it could miss) is kept. Default 2 minutes, as Node's.
    public var maxDisconnectionDuration: Duration
    /// Whether a recovered socket skips the namespace middleware (it passed them when it first connected).
    /// Default true, as Node's.
    public var skipMiddlewares: Bool
    /// The most events kept per namespace (the oldest go first). Default 10,000.
    public var maxPackets: Int

    public init(maxDisconnectionDuration: Duration = .seconds(120), skipMiddlewares: Bool = true, maxPackets: Int = 10_000) {
        self.maxDisconnectionDuration = maxDisconnectionDuration
        self.skipMiddlewares = skipMiddlewares
        self.maxPackets = max(1, maxPackets)
    }
}

/// What a namespace keeps for connection state recovery: recent broadcast events with their offsets, and the
/// sockets that dropped recently. In memory, for this process (a client must come back to the same node, as with
/// Node's in-memory adapter).
///
/// Thread-safety: one `Mutex`; broadcasts from any thread append, connects and disconnects look up.
final class SocketIORecoveryLog: Sendable {
    struct Session: Sendable {
        var socketID: String
        var rooms: Set<String>
        var data: JSONValue
        var disconnectedAt: ContinuousClock.Instant
    }

    private struct Entry {
        var offset: UInt64
        var target: SocketIOBroadcastTarget
        var data: SocketIOValue
        var at: ContinuousClock.Instant
    }

    private struct State {
        var next: UInt64 = 1
        var entries: [Entry] = []
        /// `entries[head...]` are live (dropping from the front is an index move; compacted now and then).
        var head = 0
        var sessions: [String: Session] = [:]
    }

    let settings: SocketIOConnectionStateRecovery
    private let state = Mutex(State())

    init(settings: SocketIOConnectionStateRecovery) {
        self.settings = settings
    }

    /// Numbers an event broadcast to `target`: returns its data with the offset appended (what every recipient
    /// gets) and keeps it.
    func record(_ data: SocketIOValue, to target: SocketIOBroadcastTarget) -> SocketIOValue {
        guard case .array(var items) = data else { return data }
        let now = ContinuousClock.now
        return state.withLock { s in
            let offset = s.next
            s.next += 1
            items.append(.json(.string(Self.text(offset))))
            let numbered = SocketIOValue.array(items)
            s.entries.append(Entry(offset: offset, target: target, data: numbered, at: now))
            prune(&s, now: now)
            return numbered
        }
    }

    /// Keeps a socket that dropped, for ``SocketIOConnectionStateRecovery/maxDisconnectionDuration``.
    func persist(privateID: String, session: Session) {
        state.withLock { s in
            s.sessions[privateID] = session
            prune(&s, now: session.disconnectedAt)
        }
    }

    /// The dropped socket `privateID` and the events it missed after `offset`, once (it is forgotten); nil when
    /// either is no longer known (the client then gets a new socket).
    func restore(privateID: String, offset: String) -> (session: Session, missed: [SocketIOValue])? {
        let now = ContinuousClock.now
        return state.withLock { s in
            prune(&s, now: now)
            guard let session = s.sessions[privateID], let after = Self.offset(offset) else { return nil }
            // The offset must still be kept (or be the newest event): otherwise events may be missing.
            guard let first = s.entries[s.head...].first, after + 1 >= first.offset, after < s.next else { return nil }
            s.sessions[privateID] = nil
            var missed: [SocketIOValue] = []
            for entry in s.entries[s.head...] where entry.offset > after && Self.reaches(entry.target, session.rooms) {
                missed.append(entry.data)
            }
            return (session, missed)
        }
    }

    private func prune(_ s: inout State, now: ContinuousClock.Instant) {
        let oldest = now - settings.maxDisconnectionDuration
        while s.head < s.entries.count && (s.entries[s.head].at < oldest || s.entries.count - s.head > settings.maxPackets) {
            s.head += 1
        }
        if s.head > 1024 && s.head * 2 > s.entries.count {
            s.entries.removeFirst(s.head)
            s.head = 0
        }
        if !s.sessions.isEmpty {
            s.sessions = s.sessions.filter { $0.value.disconnectedAt >= oldest }
        }
    }

    /// Whether a broadcast to `target` reached a socket in `rooms` (Node's `shouldIncludePacket`).
    private static func reaches(_ target: SocketIOBroadcastTarget, _ rooms: Set<String>) -> Bool {
        (target.rooms.isEmpty || !target.rooms.isDisjoint(with: rooms)) && target.exceptRooms.isDisjoint(with: rooms)
    }

    private static func text(_ offset: UInt64) -> String { String(offset, radix: 36) }
    private static func offset(_ text: String) -> UInt64? { UInt64(text, radix: 36) }
}
