import CoreMetrics
public import Logging
import Metrics
import NIOCore
import NIOPosix
public import ParleyJSON
public import ServiceLifecycle
public import SocketIO
import Synchronization

/// Where the Redis adapter connects and which channels it uses.
public struct SocketIORedisConfiguration: Sendable, Hashable {
    /// Redis host.
    public var host: String
    /// Redis port (default 6379).
    public var port: Int
    /// `AUTH` password (nil: none).
    public var password: String?
    /// The channel prefix (`key` of socket.io's Redis adapter, default `socket.io`): broadcasts of namespace `/`
    /// travel on `socket.io#/#` (and `socket.io#/#ROOM#` for a single room), as Node's adapter and emitter use.
    public var key: String
    /// How long a query across nodes (``SocketIOAdapter/fetchSocketIDs(for:)``, ``SocketIOAdapter/fetchRooms()``)
    /// waits for every other node's answer (default 5 s, as Node's `requestsTimeout`).
    public var requestTimeout: Duration

    public init(
        host: String = "127.0.0.1", port: Int = 6379, password: String? = nil, key: String = "socket.io", requestTimeout: Duration = .seconds(5)
    ) {
        self.host = host
        self.port = port
        self.password = password
        self.key = key
        self.requestTimeout = requestTimeout
    }

    /// Reads `redis://[:PASSWORD@]HOST[:PORT]`.
    public init(url: String, key: String = "socket.io") throws(SocketIORedisConfigurationError) {
        guard url.hasPrefix("redis://") else { throw SocketIORedisConfigurationError("the URL must start with redis:// (redis://HOST:PORT)") }
        var rest = Substring(url.dropFirst("redis://".count))
        if let slash = rest.firstIndex(of: "/") { rest = rest[..<slash] }
        var password: String?
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            password = String(credentials.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).last ?? "")
            if password == "" { password = nil }
            rest = rest[rest.index(after: at)...]
        }
        var port = 6379
        if let colon = rest.lastIndex(of: ":") {
            guard let p = Int(rest[rest.index(after: colon)...]), (1...65535).contains(p) else {
                throw SocketIORedisConfigurationError("bad port in `\(url)`")
            }
            port = p
            rest = rest[..<colon]
        }
        guard !rest.isEmpty else { throw SocketIORedisConfigurationError("no host in `\(url)`") }
        self.init(host: String(rest), port: port, password: password, key: key)
    }
}

/// A wrong Redis adapter setting.
public struct SocketIORedisConfigurationError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// Socket.IO rooms across processes through Redis pub/sub, in the message format of socket.io's own Redis adapter
/// and Redis emitter, so Node servers' emitters can publish to Parley rooms.
///
/// Every broadcast is delivered to this node's sockets and published once, as MessagePack
/// `[uid, {type, data, nsp}, {rooms, except, flags}]` on `KEY#NSP#` (or `KEY#NSP#ROOM#` when it targets one room).
/// Every node subscribes to `KEY#*`, ignores its own messages (its `uid`), and delivers the others to its local
/// sockets — so a reply reaches the sockets of a session on every node exactly once. A message in another format
/// is dropped and counted (`parley_redis_messages_dropped_total`), never a crash.
///
/// Connections run on SwiftNIO's event loops (hiredis parses RESP); ``run()`` keeps one publishing and one
/// subscribed connection, reconnecting with backoff (0.1 s doubling to 5 s). While Redis is unreachable, local
/// delivery goes on and publishes are dropped and counted (`parley_redis_publishes_dropped_total`): sockets on
/// other nodes miss what was said during the outage (the history in the store keeps it). One log line when Redis
/// becomes unreachable, one when it is back.
///
/// Membership across nodes follows the adapter's request/response protocol: every node subscribes to
/// `KEY-request#NSP#`, `KEY-response#NSP#` and `KEY-response#NSP#UID#`; a query (``SocketIOAdapter/fetchSocketIDs(for:)``,
/// ``SocketIOAdapter/fetchRooms()``) counts the nodes with `PUBSUB NUMSUB` on the request channel, publishes a JSON
/// request there and waits (``SocketIORedisConfiguration/requestTimeout``) for an answer from each other node;
/// joins, leaves and disconnects (``SocketIOAdapter/apply(_:to:)``) are published without waiting. Node servers on
/// socket.io-redis-adapter answer Parley's queries and Parley answers theirs (`allSockets`, `allRooms`,
/// `fetchSockets`, `socketsJoin`, `socketsLeave`, `disconnectSockets`). The synchronous queries
/// (``SocketIOAdapter/socketCount(inRoom:)``, ``SocketIOAdapter/socketIDs(for:)``) answer for this node only.
public final class SocketIORedisCluster: Service, Sendable {
    /// This node's id in published messages (6 characters, as Node's adapter uses).
    public let uid: String
    /// The first bytes of every message this node publishes: MessagePack `[` (3 elements) and the uid string.
    private let ownPrefix: [UInt8]
    /// The node's name in the membership key (`server.node_id`, else ``uid``).
    public let nodeID: String
    /// How often the node renews its membership key, which expires after three periods.
    static let announcePeriod = Duration.seconds(5)
    /// The settings.
    public let configuration: SocketIORedisConfiguration
    let logger: Logger
    let adapters = Mutex<[String: SocketIORedisAdapter]>([:])
    let publisher = Mutex<(any Channel)?>(nil)
    /// The subscribed connection while it is up (to subscribe the request channels of a namespace made later).
    let subscriber = Mutex<(any Channel)?>(nil)
    /// Queries of this node waiting for other nodes' answers, by request id.
    let queries = Mutex<[String: PendingQuery]>([:])
    private let outage = Mutex<Bool>(false)

    private static let published = Counter(label: "parley_redis_messages_published_total")
    private static let received = Counter(label: "parley_redis_messages_received_total")
    private static let dropped = Counter(label: "parley_redis_messages_dropped_total")
    private static let publishDropped = Counter(label: "parley_redis_publishes_dropped_total")
    private static let connected = Gauge(label: "parley_redis_connected")

    public init(configuration: SocketIORedisConfiguration, nodeID: String? = nil, logger: Logger = Logger(label: "parley.redis")) {
        self.configuration = configuration
        self.logger = logger
        let alphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        let uid = String((0..<6).map { _ in alphabet.randomElement()! })
        self.uid = uid
        self.nodeID = nodeID ?? uid
        self.ownPrefix = [0x93] + MessagePackValue.string(uid).encoded()
    }

    /// The Redis key this node keeps alive while it runs: `KEY-node#NODE_ID` (e.g. `socket.io-node#n1`), holding
    /// `{"node":…,"uid":…}` and expiring 15 s after the node stops renewing it. List the live nodes with
    /// `redis-cli --scan --pattern 'socket.io-node#*'`.
    public var membershipKey: String { "\(configuration.key)-node#\(nodeID)" }

    /// The factory to give `SocketIOConfiguration.adapter`: one adapter per namespace, all on this cluster.
    public var adapterFactory: SocketIOAdapterFactory {
        SocketIOAdapterFactory { namespace in
            let adapter = SocketIORedisAdapter(namespace: namespace, cluster: self)
            self.adapters.withLock { $0[namespace] = adapter }
            // Inserted before the subscriber is read, so either this or a connection being set up subscribes it.
            if let channel = self.subscriber.withLock({ $0 }) { channel.writeAndFlush(self.subscribeRequests(of: [namespace]), promise: nil) }
            return adapter
        }
    }

    /// Whether both connections are up.
    public var isConnected: Bool { !outage.withLock { $0 } && publisher.withLock { $0 != nil } }

    /// Nil while connected; otherwise what is wrong, naming the server (for `GET /health`).
    public var problem: String? {
        isConnected ? nil : "Redis at \(configuration.host):\(configuration.port) unreachable; replies reach only this node's sockets"
    }

    /// Keeps the publishing and the subscribed connection up until a graceful shutdown or cancellation.
    public func run() async throws {
        try await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.keepConnected(role: "publish") }
                group.addTask { await self.keepConnected(role: "subscribe") }
                group.addTask { await self.announce() }
            }
        }
    }

    /// Sets the membership key (`{"node":…,"uid":…}`, expiring after three periods) on the publishing connection.
    private func announce(on channel: any Channel) {
        let value = "{\"node\":\"\(nodeID)\",\"uid\":\"\(uid)\"}"
        let ttl = String((Self.announcePeriod * 3).components.seconds * 1000)
        channel.writeAndFlush(redisCommand("SET", membershipKey, value, "PX", ttl), promise: nil)
    }

    /// Renews the membership key every ``announcePeriod`` while the publishing connection is up; deletes it on the
    /// way out (a node that dies lets it expire).
    private func announce() async {
        while !Task.isCancelled {
            if let channel = publisher.withLock({ $0 }) { announce(on: channel) }
            try? await Task.sleep(for: Self.announcePeriod)
        }
        if let channel = publisher.withLock({ $0 }) {
            try? await channel.writeAndFlush(redisCommand("DEL", membershipKey)).get()
        }
    }

    /// Connects once and sends `PING` (with `AUTH` first when a password is set): the startup check, so that a
    /// node whose Redis is unreachable or refuses it stops with one line instead of serving alone.
    /// - Throws: a message naming the server and what went wrong.
    public func checkReachable(timeout: Duration = .seconds(3)) async throws {
        let place = "Redis at \(configuration.host):\(configuration.port)"
        do {
            _ = try await roundTrip(redisCommand("PING"), timeout: timeout)
        } catch let error as RoundTripError {
            switch error {
            case .unreachable(let why):
                throw SocketIORedisConfigurationError("\(place) is unreachable: \(why); check adapter.url and that redis-server runs")
            case .refused(let text): throw SocketIORedisConfigurationError("\(place) refused the connection: \(text)")
            case .noAnswer: throw SocketIORedisConfigurationError("\(place) did not answer PING within \(timeout)")
            }
        }
    }

    // MARK: Connections

    private func keepConnected(role: String) async {
        var delay = Duration.milliseconds(100)
        while !Task.isCancelled {
            do {
                let channel = try await connect(subscriber: role == "subscribe")
                if role == "subscribe" {
                    subscriber.withLock { $0 = channel }
                    channel.write(redisCommand("PSUBSCRIBE", "\(configuration.key)#*"), promise: nil)
                    let namespaces = adapters.withLock { Array($0.keys) }
                    channel.writeAndFlush(subscribeRequests(of: namespaces), promise: nil)
                } else {
                    publisher.withLock { $0 = channel }
                    announce(on: channel)
                }
                delay = .milliseconds(100)
                markUp(role)
                await withTaskCancellationHandler {
                    try? await channel.closeFuture.get()
                } onCancel: {
                    channel.close(promise: nil)
                }
                if role == "publish" { publisher.withLock { $0 = nil } } else { subscriber.withLock { $0 = nil } }
                if Task.isCancelled { return }
                markDown(role, "the connection closed")
            } catch {
                markDown(role, "\(error)")
            }
            try? await Task.sleep(for: delay)
            delay = min(delay * 2, .seconds(5))
        }
    }

    private func connect(subscriber: Bool) async throws -> any Channel {
        let password = configuration.password
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(2))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(RESPDecoder()))
                    try channel.pipeline.syncOperations.addHandler(
                        RedisReplyHandler(cluster: self, subscriber: subscriber))
                }
            }
            .connect(host: configuration.host, port: configuration.port)
            .get()
        if let password { try await channel.writeAndFlush(redisCommand("AUTH", password)).get() }
        return channel
    }

    private func markUp(_ role: String) {
        let recovered = outage.withLock { down in
            defer { down = false }
            return down
        }
        Self.connected.record(isConnected ? 1 : 0)
        if recovered {
            logger.notice("Redis adapter: connected again to \(configuration.host):\(configuration.port) (\(role))")
        } else {
            logger.info("Redis adapter: connected to \(configuration.host):\(configuration.port) (\(role))", metadata: ["parley.node": "\(uid)"])
        }
    }

    private func markDown(_ role: String, _ why: String) {
        let first = outage.withLock { down in
            defer { down = true }
            return !down
        }
        Self.connected.record(0)
        if first {
            logger.error(
                "Redis adapter: Redis at \(configuration.host):\(configuration.port) is unreachable (\(role): \(why)); replies reach only this node's sockets until it is back; retrying with backoff up to 5 s"
            )
        }
    }

    // MARK: Messages

    /// Publishes a broadcast made on this node.
    func publish(_ packet: SocketIOPacket, to target: SocketIOBroadcastTarget, namespace: String) {
        var name = "\(configuration.key)#\(namespace)#"
        if target.rooms.count == 1, let room = target.rooms.first { name += room + "#" }
        let message = RedisWireFormat.encode(uid: uid, packet: packet, target: target, namespace: namespace)
        if publish(message, on: name) { Self.published.increment() } else { Self.publishDropped.increment() }
    }

    /// A `pmessage` from the subscribed connection.
    fileprivate func received(channel name: [UInt8], payload: [UInt8]) {
        let channel = String(decoding: name, as: UTF8.self)
        let prefix = "\(configuration.key)#"
        guard channel.hasPrefix(prefix) else { return }
        // As Node's adapter: a message for one room (`KEY#NSP#ROOM#`) that has no socket here is not decoded.
        let rest = channel.dropFirst(prefix.count)
        let local = adapters.withLock { all in all.first { rest.hasPrefix($0.key + "#") } }
        if let (namespace, adapter) = local {
            let room = rest.dropFirst(namespace.count + 1).dropLast()
            if !room.isEmpty && adapter.socketCount(inRoom: String(room)) == 0 { return }
        }
        // Our own broadcast coming back: recognised from its first bytes (`[uid, …]` with our uid) without decoding.
        if payload.starts(with: ownPrefix) { return }
        let message: RedisWireFormat.Message
        do {
            message = try RedisWireFormat.decode(payload)
        } catch {
            Self.dropped.increment()
            logger.warning("Redis adapter: a message on \(channel) is not in socket.io's adapter format; dropped", metadata: ["error": "\(error)"])
            return
        }
        guard message.uid != uid else { return }
        guard let adapter = adapters.withLock({ $0[message.packet.namespace] }) else { return }
        Self.received.increment()
        adapter.deliverLocally(message.packet, to: message.target)
    }

    fileprivate func replyError(_ text: String) {
        logger.warning("Redis adapter: Redis answered with an error", metadata: ["error": "\(text)"])
    }
}

/// Reads replies on a Redis connection: `pmessage`s go to the cluster; errors are logged.
private final class RedisReplyHandler: ChannelInboundHandler {
    typealias InboundIn = RedisReply
    let cluster: SocketIORedisCluster
    let subscriber: Bool

    init(cluster: SocketIORedisCluster, subscriber: Bool) {
        self.cluster = cluster
        self.subscriber = subscriber
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .array(let items?) where subscriber:
            if items.count == 4, case .bulk(let kind?) = items[0], kind == Array("pmessage".utf8), case .bulk(let channel?) = items[2],
                case .bulk(let payload?) = items[3]
            {
                cluster.received(channel: channel, payload: payload)
            } else if items.count == 3, case .bulk(let kind?) = items[0], kind == Array("message".utf8), case .bulk(let channel?) = items[1],
                case .bulk(let payload?) = items[2]
            {
                cluster.receivedRequestOrResponse(channel: String(decoding: channel, as: UTF8.self), payload: payload)
            }
        case .error(let text):
            cluster.replyError(text)
        default:
            break
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// A namespace's rooms on this node plus publishing through the cluster.
final class SocketIORedisAdapter: SocketIOAdapter {
    let namespace: String
    let cluster: SocketIORedisCluster
    private let local = SocketIOInMemoryAdapter()

    init(namespace: String, cluster: SocketIORedisCluster) {
        self.namespace = namespace
        self.cluster = cluster
    }

    func addSocket(_ socket: SocketIOSocket, toRooms rooms: [String]) { local.addSocket(socket, toRooms: rooms) }
    func removeSocket(_ socket: SocketIOSocket, fromRoom room: String) { local.removeSocket(socket, fromRoom: room) }
    func removeSocketFromAllRooms(_ socket: SocketIOSocket) { local.removeSocketFromAllRooms(socket) }
    func rooms(of socket: SocketIOSocket) -> Set<String> { local.rooms(of: socket) }
    func socketCount(inRoom room: String) -> Int { local.socketCount(inRoom: room) }
    func socketIDs(for target: SocketIOBroadcastTarget) -> Set<String> { local.socketIDs(for: target) }
    func sockets(for target: SocketIOBroadcastTarget) -> [SocketIOSocket] { local.sockets(for: target) }

    func broadcast(_ packet: SocketIOPacket, to target: SocketIOBroadcastTarget) {
        local.broadcast(packet, to: target)
        cluster.publish(packet, to: target, namespace: namespace)
    }

    func fetchSocketIDs(for target: SocketIOBroadcastTarget) async throws -> Set<String> {
        var ids = local.socketIDs(for: target)
        let answers = try await cluster.query(namespace: namespace, type: .remoteFetch, fields: ["opts": RedisRequests.options(target)])
        for answer in answers {
            for socket in answer["sockets"]?.arrayValue ?? [] {
                if let id = socket["id"]?.stringValue { ids.insert(id) }
            }
        }
        return ids
    }

    func fetchRooms() async throws -> Set<String> {
        var rooms = local.roomNames
        for answer in try await cluster.query(namespace: namespace, type: .allRooms, fields: [:]) {
            for room in answer["rooms"]?.arrayValue ?? [] { if let name = room.stringValue { rooms.insert(name) } }
        }
        return rooms
    }

    func apply(_ operation: SocketIORoomOperation, to target: SocketIOBroadcastTarget) {
        local.apply(operation, to: target)
        cluster.publishRequest(RedisRequests.request(operation, target: target, uid: cluster.uid), namespace: namespace)
    }

    /// This node's part of a request from another node.
    var localPart: SocketIOInMemoryAdapter { local }

    /// A broadcast from another node: this node's sockets only.
    func deliverLocally(_ packet: SocketIOPacket, to target: SocketIOBroadcastTarget) {
        local.broadcast(packet, to: target)
    }
}

/// socket.io-redis-adapter's message: MessagePack `[uid, packet, opts]`.
enum RedisWireFormat {
    struct Message {
        var uid: String
        var packet: SocketIOPacket
        var target: SocketIOBroadcastTarget
    }

    static func encode(uid: String, packet: SocketIOPacket, target: SocketIOBroadcastTarget, namespace: String) -> [UInt8] {
        var packetMap: [MessagePackPair] = [MessagePackPair(.string("type"), .uint(UInt64(packet.type.rawValue)))]
        if let data = packet.data { packetMap.append(MessagePackPair(.string("data"), messagePack(data))) }
        packetMap.append(MessagePackPair(.string("nsp"), .string(namespace)))
        if let ack = packet.ackID { packetMap.append(MessagePackPair(.string("id"), .int(Int64(ack)))) }
        let options: MessagePackValue = .map([
            MessagePackPair(.string("rooms"), .array(target.rooms.sorted().map { .string($0) })),
            MessagePackPair(.string("except"), .array(target.exceptRooms.sorted().map { .string($0) })),
            MessagePackPair(.string("flags"), .map([])),
        ])
        return MessagePackValue.array([.string(uid), .map(packetMap), options]).encoded()
    }

    static func decode(_ bytes: [UInt8]) throws(MessagePackError) -> Message {
        guard case .array(let parts) = try MessagePackValue.decode(bytes), parts.count >= 2 else {
            throw MessagePackError("expected [uid, packet, opts]")
        }
        guard let uid = parts[0].stringValue else { throw MessagePackError("the uid is not a string") }
        let packet = parts[1]
        guard case .map = packet else { throw MessagePackError("the packet is not a map") }
        let typeValue: UInt64
        switch packet["type"] {
        case .uint(let t)?: typeValue = t
        case .int(let t)? where t >= 0: typeValue = UInt64(t)
        default: throw MessagePackError("the packet has no numeric type")
        }
        guard typeValue <= UInt64(UInt8.max), let type = SocketIOPacketType(rawValue: UInt8(typeValue)), type == .event || type == .binaryEvent
        else {
            throw MessagePackError("packet type \(typeValue) is not an event")
        }
        guard case .array(let items)? = packet["data"], !items.isEmpty, items[0].stringValue != nil else {
            throw MessagePackError("the event's data is not [name, …]")
        }
        var namespace = "/"
        if let nsp = packet["nsp"] {
            guard let n = nsp.stringValue else { throw MessagePackError("nsp is not a string") }
            namespace = n
        }
        var target = SocketIOBroadcastTarget()
        if parts.count > 2, case .map = parts[2] {
            target.rooms = try rooms(parts[2]["rooms"])
            target.exceptRooms = try rooms(parts[2]["except"])
        }
        let data = try socketIOValue(.array(items), depth: 0)
        return Message(uid: uid, packet: SocketIOPacket(type: .event, namespace: namespace, data: data), target: target)
    }

    private static func rooms(_ value: MessagePackValue?) throws(MessagePackError) -> Set<String> {
        guard let value else { return [] }
        guard case .array(let items) = value else { throw MessagePackError("rooms are not a list") }
        var out: Set<String> = []
        for item in items {
            switch item {
            case .string(let s): out.insert(s)
            case .uint(let u): out.insert(String(u))
            case .int(let i): out.insert(String(i))
            default: throw MessagePackError("a room is neither a string nor a number")
            }
        }
        return out
    }

    static func messagePack(_ value: SocketIOValue) -> MessagePackValue {
        switch value {
        case .json(let json): return messagePack(json)
        case .binary(let bytes): return .binary(bytes)
        case .array(let items): return .array(items.map(messagePack))
        case .object(let members): return .map(members.map { MessagePackPair(.string($0.key), messagePack($0.value)) })
        }
    }

    static func messagePack(_ json: JSONValue) -> MessagePackValue {
        switch json {
        case .null: return .nil
        case .bool(let b): return .bool(b)
        case .int(let i): return .int(i)
        case .double(let d): return .double(d)
        case .string(let s): return .string(s)
        case .array(let items): return .array(items.map(messagePack))
        case .object(let object): return .map(object.map { MessagePackPair(.string($0.key), messagePack($0.value)) })
        }
    }

    static func socketIOValue(_ value: MessagePackValue, depth: Int) throws(MessagePackError) -> SocketIOValue {
        switch value {
        case .nil: return .json(.null)
        case .bool(let b): return .json(.bool(b))
        case .int(let i): return .json(.int(i))
        case .uint(let u): return .json(u <= UInt64(Int64.max) ? .int(Int64(u)) : .double(Double(u)))
        case .double(let d): return .json(d.isFinite ? .double(d) : .null)
        case .string(let s): return .json(.string(s))
        case .binary(let b): return .binary(b)
        case .array(let items):
            var out: [SocketIOValue] = []
            out.reserveCapacity(items.count)
            for item in items { out.append(try socketIOValue(item, depth: depth + 1)) }
            let value = SocketIOValue.array(out)
            return value.jsonValue.map { .json($0) } ?? value
        case .map(let pairs):
            var members: [SocketIOObjectMember] = []
            members.reserveCapacity(pairs.count)
            for pair in pairs {
                let key: String
                switch pair.key {
                case .string(let s): key = s
                case .int(let i): key = String(i)
                case .uint(let u): key = String(u)
                default: throw MessagePackError("a map key is neither a string nor a number")
                }
                members.append(SocketIOObjectMember(key, try socketIOValue(pair.value, depth: depth + 1)))
            }
            let value = SocketIOValue.object(members)
            return value.jsonValue.map { .json($0) } ?? value
        }
    }
}
