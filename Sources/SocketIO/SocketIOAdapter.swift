import EngineIO
import Synchronization

/// Which sockets of a namespace a broadcast reaches.
public struct SocketIOBroadcastTarget: Sendable, Hashable {
    /// Sockets in any of these rooms; empty means every socket of the namespace.
    public var rooms: Set<String>
    /// Sockets in any of these rooms are left out (every socket is in the room named after its id,
    /// so a socket id excludes that socket).
    public var exceptRooms: Set<String>

    /// Creates a target.
    public init(rooms: Set<String> = [], exceptRooms: Set<String> = []) {
        self.rooms = rooms
        self.exceptRooms = exceptRooms
    }
}

/// Rooms and broadcast for one namespace.
///
/// Everything above the adapter (sockets, namespaces, broadcast operators) goes through this protocol,
/// so an adapter that spans processes (Redis pub/sub, for example) can replace the in-memory one
/// without changes above it: such an adapter delivers to its local sockets as the in-memory one does
/// and forwards the packet to the other nodes.
///
/// Thread-safety: every method may be called from any thread, concurrently.
public protocol SocketIOAdapter: AnyObject, Sendable {
    /// Adds a socket to rooms (a socket joins the room named after its own id when it connects).
    func addSocket(_ socket: SocketIOSocket, toRooms rooms: [String])
    /// Removes a socket from one room; no effect if it is not in it.
    func removeSocket(_ socket: SocketIOSocket, fromRoom room: String)
    /// Removes a socket from every room (when it disconnects).
    func removeSocketFromAllRooms(_ socket: SocketIOSocket)
    /// The rooms a local socket is in.
    func rooms(of socket: SocketIOSocket) -> Set<String>
    /// The number of sockets in a room.
    func socketCount(inRoom room: String) -> Int
    /// The ids of the sockets a target reaches.
    func socketIDs(for target: SocketIOBroadcastTarget) -> Set<String>
    /// The local sockets a target reaches.
    func sockets(for target: SocketIOBroadcastTarget) -> [SocketIOSocket]
    /// Sends a packet to every socket the target reaches. The packet is encoded once and the same
    /// messages are handed to every recipient (see ``SocketIOSocket/deliver(_:)``).
    func broadcast(_ packet: SocketIOPacket, to target: SocketIOBroadcastTarget)

    // MARK: Every server

    /// The ids of the sockets a target reaches on every server that shares these rooms (Node's
    /// `io.in(room).allSockets()`). An adapter that spans processes asks the other servers and waits for their
    /// answers; the in-memory adapter answers with ``socketIDs(for:)``.
    /// - Throws: when another server does not answer in time (the error names how many did).
    func fetchSocketIDs(for target: SocketIOBroadcastTarget) async throws -> Set<String>
    /// Every room that has at least one socket, on every server (Node's `adapter.allRooms()`); a socket's own
    /// room (named after its id) is included.
    func fetchRooms() async throws -> Set<String>
    /// Makes the sockets a target reaches on every server join or leave rooms, or disconnect (Node's
    /// `io.in(room).socketsJoin(…)`, `socketsLeave(…)`, `disconnectSockets(…)`). Returns once this server's
    /// sockets are done; the other servers apply it when their copy of the request arrives.
    func apply(_ operation: SocketIORoomOperation, to target: SocketIOBroadcastTarget)
}

/// What ``SocketIOAdapter/apply(_:to:)`` does to each socket a target reaches.
public enum SocketIORoomOperation: Sendable, Hashable {
    /// Join these rooms.
    case join([String])
    /// Leave these rooms.
    case leave([String])
    /// Disconnect from the namespace (`close`: also close the Engine.IO session).
    case disconnect(close: Bool)
}

/// The default adapter: rooms of this process, in memory.
public final class SocketIOInMemoryAdapter: SocketIOAdapter {
    private struct State {
        /// room → sockets in it, by id
        var rooms: [String: [String: SocketIOSocket]] = [:]
        /// socket id → its rooms
        var socketRooms: [String: Set<String>] = [:]
        /// every socket with at least one room, by id
        var sockets: [String: SocketIOSocket] = [:]
    }

    private let state = Mutex(State())

    /// Creates an empty adapter.
    public init() {}

    public func addSocket(_ socket: SocketIOSocket, toRooms rooms: [String]) {
        state.withLock { s in
            s.sockets[socket.id] = socket
            for room in rooms {
                s.socketRooms[socket.id, default: []].insert(room)
                s.rooms[room, default: [:]][socket.id] = socket
            }
        }
    }

    public func removeSocket(_ socket: SocketIOSocket, fromRoom room: String) {
        state.withLock { s in
            guard s.socketRooms[socket.id]?.remove(room) != nil else { return }
            s.rooms[room]?[socket.id] = nil
            if s.rooms[room]?.isEmpty == true { s.rooms[room] = nil }
        }
    }

    public func removeSocketFromAllRooms(_ socket: SocketIOSocket) {
        state.withLock { s in
            guard let rooms = s.socketRooms.removeValue(forKey: socket.id) else {
                s.sockets[socket.id] = nil
                return
            }
            for room in rooms {
                s.rooms[room]?[socket.id] = nil
                if s.rooms[room]?.isEmpty == true { s.rooms[room] = nil }
            }
            s.sockets[socket.id] = nil
        }
    }

    public func rooms(of socket: SocketIOSocket) -> Set<String> {
        state.withLock { $0.socketRooms[socket.id] ?? [] }
    }

    public func socketCount(inRoom room: String) -> Int {
        state.withLock { $0.rooms[room]?.count ?? 0 }
    }

    public func socketIDs(for target: SocketIOBroadcastTarget) -> Set<String> {
        Set(sockets(for: target).map(\.id))
    }

    public func sockets(for target: SocketIOBroadcastTarget) -> [SocketIOSocket] {
        state.withLock { s in
            var result: [SocketIOSocket] = []
            func excluded(_ id: String) -> Bool {
                guard !target.exceptRooms.isEmpty, let rooms = s.socketRooms[id] else { return false }
                return !rooms.isDisjoint(with: target.exceptRooms)
            }
            if target.rooms.isEmpty {
                result.reserveCapacity(s.sockets.count)
                for (id, socket) in s.sockets where !excluded(id) { result.append(socket) }
            } else if target.rooms.count == 1, let room = target.rooms.first {
                // The common case (a session room or one socket): no de-duplication needed.
                guard let members = s.rooms[room] else { return [] }
                result.reserveCapacity(members.count)
                for (id, socket) in members where !excluded(id) { result.append(socket) }
            } else {
                var seen: Set<String> = []
                for room in target.rooms {
                    guard let members = s.rooms[room] else { continue }
                    for (id, socket) in members where !excluded(id) && seen.insert(id).inserted { result.append(socket) }
                }
            }
            return result
        }
    }

    public func broadcast(_ packet: SocketIOPacket, to target: SocketIOBroadcastTarget) {
        let recipients = sockets(for: target)
        guard !recipients.isEmpty else { return }
        let messages = SocketIOPacketEncoder.encode(packet)
        for socket in recipients { socket.deliver(packet, encoded: messages) }
    }

    /// This process is every server: the local sockets.
    public func fetchSocketIDs(for target: SocketIOBroadcastTarget) async throws -> Set<String> { socketIDs(for: target) }

    /// This process is every server: the local rooms.
    public func fetchRooms() async throws -> Set<String> { roomNames }

    /// The rooms with at least one socket of this process.
    public var roomNames: Set<String> { state.withLock { Set($0.rooms.keys) } }

    public func apply(_ operation: SocketIORoomOperation, to target: SocketIOBroadcastTarget) {
        let selected = sockets(for: target)
        switch operation {
        case .join(let rooms): for socket in selected { socket.join(rooms) }
        case .leave(let rooms): for socket in selected { for room in rooms { socket.leave(room) } }
        case .disconnect(let close): for socket in selected { socket.disconnect(close: close) }
        }
    }
}
