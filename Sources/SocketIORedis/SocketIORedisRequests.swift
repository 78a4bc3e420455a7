import Logging
import NIOCore
import NIOPosix
import ParleyJSON
import SocketIO
import Synchronization

/// The request types of socket.io-redis-adapter's `KEY-request#NSP#` channel (its `RequestType` enum).
enum RedisRequestType: Int64 {
    case sockets = 0
    case allRooms = 1
    case remoteJoin = 2
    case remoteLeave = 3
    case remoteDisconnect = 4
    case remoteFetch = 5
    case serverSideEmit = 6
}

/// The JSON requests and answers of socket.io-redis-adapter between nodes.
enum RedisRequests {
    /// `{"rooms": [...], "except": [...]}`: a target as the adapter's `opts`.
    static func options(_ target: SocketIOBroadcastTarget) -> JSONValue {
        .object([
            "rooms": .array(target.rooms.sorted().map { .string($0) }),
            "except": .array(target.exceptRooms.sorted().map { .string($0) }),
        ])
    }

    /// The target an `opts` object names.
    static func target(_ options: JSONValue?) -> SocketIOBroadcastTarget {
        func names(_ value: JSONValue?) -> Set<String> { Set((value?.arrayValue ?? []).compactMap(roomName)) }
        return SocketIOBroadcastTarget(rooms: names(options?["rooms"]), exceptRooms: names(options?["except"]))
    }

    /// Rooms are strings; Node also allows numbers.
    static func roomName(_ value: JSONValue) -> String? {
        switch value {
        case .string(let s): s
        case .int(let i): String(i)
        default: nil
        }
    }

    /// The request that makes the other nodes apply `operation` (no answer expected).
    static func request(_ operation: SocketIORoomOperation, target: SocketIOBroadcastTarget, uid: String) -> JSONValue {
        var fields: JSONObject = ["uid": .string(uid), "opts": options(target)]
        switch operation {
        case .join(let rooms):
            fields["type"] = .int(RedisRequestType.remoteJoin.rawValue)
            fields["rooms"] = .array(rooms.map { .string($0) })
        case .leave(let rooms):
            fields["type"] = .int(RedisRequestType.remoteLeave.rawValue)
            fields["rooms"] = .array(rooms.map { .string($0) })
        case .disconnect(let close):
            fields["type"] = .int(RedisRequestType.remoteDisconnect.rawValue)
            fields["close"] = .bool(close)
        }
        return .object(fields)
    }

    /// A request or answer as the adapter sends it: JSON when it starts with `{`, MessagePack otherwise.
    static func decode(_ payload: [UInt8]) -> JSONValue? {
        if payload.first == UInt8(ascii: "{") { return try? JSONValue.parse(payload, maxDepth: JSONValue.inputParseDepth) }
        guard let value = try? MessagePackValue.decode(payload), let socketIO = try? RedisWireFormat.socketIOValue(value, depth: 0) else {
            return nil
        }
        return socketIO.jsonValue
    }
}

/// One query of this node waiting for the answers of the other nodes.
final class PendingQuery: Sendable {
    private struct State {
        var answers: [JSONValue] = []
        var done = false
    }
    private let state = Mutex(State())
    private let expected: Int
    let promise: EventLoopPromise<[JSONValue]>

    init(expected: Int, promise: EventLoopPromise<[JSONValue]>) {
        self.expected = expected
        self.promise = promise
    }

    /// Adds one node's answer; completes the query with the last expected one.
    func add(_ answer: JSONValue) {
        let complete: [JSONValue]? = state.withLock { s in
            guard !s.done else { return nil }
            s.answers.append(answer)
            guard s.answers.count >= expected else { return nil }
            s.done = true
            return s.answers
        }
        if let complete { promise.succeed(complete) }
    }

    /// Fails the query unless it completed; the error says how many nodes answered.
    func expire(_ makeError: (Int, Int) -> any Error) {
        let received: Int? = state.withLock { s in
            guard !s.done else { return nil }
            s.done = true
            return s.answers.count
        }
        if let received { promise.fail(makeError(received, expected)) }
    }
}

/// A query across nodes that did not complete.
public struct SocketIORedisQueryError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// Why a one-off command to Redis failed.
enum RoundTripError: Error {
    case unreachable(String)
    case refused(String)
    case noAnswer
}

extension SocketIORedisCluster {
    /// `KEY-request#NSP#`: requests to every node serving the namespace (its subscriber count is the node count).
    func requestChannel(_ namespace: String) -> String { "\(configuration.key)-request#\(namespace)#" }
    /// `KEY-response#NSP#`: answers (a node answers on `KEY-response#NSP#UID#`, the asking node's own channel).
    func responseChannel(_ namespace: String) -> String { "\(configuration.key)-response#\(namespace)#" }

    /// `SUBSCRIBE` of the request and both response channels of each namespace, as Node's adapter subscribes.
    func subscribeRequests(of namespaces: [String]) -> ByteBuffer {
        var channels = ["SUBSCRIBE"]
        for namespace in namespaces {
            channels += [requestChannel(namespace), responseChannel(namespace), responseChannel(namespace) + uid + "#"]
        }
        return redisCommand(channels.map { Array($0.utf8) })
    }

    /// Publishes a request on the namespace's request channel (dropped and counted while Redis is unreachable).
    func publishRequest(_ request: JSONValue, namespace: String) {
        publish(Array(request.serialized.utf8), on: requestChannel(namespace))
    }

    /// Publishes bytes on a channel through the publishing connection; false while it is down.
    @discardableResult
    func publish(_ payload: [UInt8], on name: String) -> Bool {
        guard let channel = publisher.withLock({ $0 }) else { return false }
        channel.writeAndFlush(redisCommand([Array("PUBLISH".utf8), Array(name.utf8), payload], allocator: channel.allocator), promise: nil)
        return true
    }

    /// Asks every other node serving `namespace` and returns their answers: the node count comes from
    /// `PUBSUB NUMSUB` on the request channel (Node's `serverCount()`), and the query waits for one answer from
    /// each other node, at most ``SocketIORedisConfiguration/requestTimeout``.
    /// - Throws: ``SocketIORedisQueryError`` when Redis is unreachable or a node does not answer in time.
    func query(namespace: String, type: RedisRequestType, fields: JSONObject) async throws -> [JSONValue] {
        let timeout = configuration.requestTimeout
        let channel = requestChannel(namespace)
        let servers: Int64
        do {
            let replies = try await roundTrip(redisCommand("PUBSUB", "NUMSUB", channel), timeout: timeout)
            guard case .array(let items?)? = replies.first, items.count == 2, case .integer(let n) = items[1] else {
                throw SocketIORedisQueryError("Redis answered PUBSUB NUMSUB with \(replies)")
            }
            servers = n
        } catch let error as SocketIORedisQueryError {
            throw error
        } catch {
            throw SocketIORedisQueryError(
                "Redis at \(configuration.host):\(configuration.port) is unreachable (\(error)); the other nodes cannot be asked")
        }
        // This node is one of the subscribers (it subscribed the channel when the namespace was made).
        let expected = Int(servers) - 1
        guard expected > 0 else { return [] }
        let id = Self.requestID()
        var request = fields
        request["uid"] = .string(uid)
        request["requestId"] = .string(id)
        request["type"] = .int(type.rawValue)
        let pending = PendingQuery(expected: expected, promise: MultiThreadedEventLoopGroup.singleton.any().makePromise())
        queries.withLock { $0[id] = pending }
        defer { queries.withLock { $0[id] = nil } }
        guard publish(Array(JSONValue.object(request).serialized.utf8), on: channel) else {
            pending.expire { _, _ in SocketIORedisQueryError("Redis at \(configuration.host):\(configuration.port) is unreachable") }
            return try await pending.promise.futureResult.get()
        }
        return try await withThrowingTaskGroup(of: [JSONValue]?.self) { group in
            group.addTask { try await pending.promise.futureResult.get() }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = try await group.next() ?? nil
            group.cancelAll()
            if let first { return first }
            pending.expire { received, expected in
                SocketIORedisQueryError("only \(received) of \(expected) other nodes answered within \(timeout) (adapter.request_timeout)")
            }
            return try await pending.promise.futureResult.get()
        }
    }

    private static func requestID() -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        return String((0..<12).map { _ in alphabet.randomElement()! })
    }

    /// A `message` on a request or response channel.
    func receivedRequestOrResponse(channel: String, payload: [UInt8]) {
        let responsePrefix = "\(configuration.key)-response#"
        if channel.hasPrefix(responsePrefix) {
            guard let answer = RedisRequests.decode(payload), let id = answer["requestId"]?.stringValue else { return }
            queries.withLock { $0[id] }?.add(answer)
            return
        }
        let requestPrefix = "\(configuration.key)-request#"
        guard channel.hasPrefix(requestPrefix), channel.hasSuffix("#") else { return }
        let namespace = String(channel.dropFirst(requestPrefix.count).dropLast())
        guard let adapter = adapters.withLock({ $0[namespace] }) else { return }
        guard let request = RedisRequests.decode(payload), case .object = request else {
            logger.warning("Redis adapter: a request on \(channel) is neither JSON nor MessagePack; ignored")
            return
        }
        // This node's own requests come back too; it answers for itself without Redis.
        guard request["uid"]?.stringValue != uid else { return }
        guard let answer = answer(request, local: adapter.localPart, namespace: namespace) else { return }
        let asker = request["uid"]?.stringValue ?? ""
        publish(Array(answer.serialized.utf8), on: responseChannel(namespace) + (asker.isEmpty ? "" : asker + "#"))
    }

    /// What this node does for a request from another node, and its answer (nil: none expected).
    private func answer(_ request: JSONValue, local: SocketIOInMemoryAdapter, namespace: String) -> JSONValue? {
        guard let rawType = request["type"]?.int64Value, let type = RedisRequestType(rawValue: rawType) else {
            logger.debug("Redis adapter: request type \(request["type"]?.serialized ?? "none") is not one Parley answers; ignored")
            return nil
        }
        let id = request["requestId"] ?? .null
        switch type {
        case .sockets:
            let target = SocketIOBroadcastTarget(rooms: Set((request["rooms"]?.arrayValue ?? []).compactMap(RedisRequests.roomName)))
            return .object(["requestId": id, "sockets": .array(local.socketIDs(for: target).sorted().map { .string($0) })])
        case .allRooms:
            return .object(["requestId": id, "rooms": .array(local.roomNames.sorted().map { .string($0) })])
        case .remoteFetch:
            let sockets = local.sockets(for: RedisRequests.target(request["opts"])).map { socket -> JSONValue in
                .object([
                    "id": .string(socket.id), "handshake": .object([:]), "rooms": .array(socket.rooms.sorted().map { .string($0) }),
                    "data": socket.data,
                ])
            }
            return .object(["requestId": id, "sockets": .array(sockets)])
        case .remoteJoin, .remoteLeave, .remoteDisconnect:
            let operation: SocketIORoomOperation
            let rooms = (request["rooms"]?.arrayValue ?? (request["room"].map { [$0] } ?? [])).compactMap(RedisRequests.roomName)
            switch type {
            case .remoteJoin: operation = .join(rooms)
            case .remoteLeave: operation = .leave(rooms)
            default: operation = .disconnect(close: request["close"]?.boolValue ?? false)
            }
            if request["opts"] != nil {
                local.apply(operation, to: RedisRequests.target(request["opts"]))
                return nil
            }
            // The form for one socket (`sid`): only the node holding it answers.
            guard let sid = request["sid"]?.stringValue, local.socketCount(inRoom: sid) > 0 else { return nil }
            local.apply(operation, to: SocketIOBroadcastTarget(rooms: [sid]))
            return .object(["requestId": id])
        case .serverSideEmit:
            logger.debug("Redis adapter: serverSideEmit from another node ignored (Parley has no server-side event handlers)")
            return nil
        }
    }

    /// Sends commands on a connection of its own and returns their replies (after `AUTH` when a password is set),
    /// then closes it. For the startup check and `PUBSUB NUMSUB`, which need a reply the publishing connection
    /// does not wait for.
    func roundTrip(_ commands: ByteBuffer..., timeout: Duration) async throws -> [RedisReply] {
        let password = configuration.password
        let expected = commands.count + (password == nil ? 0 : 1)
        let promise = MultiThreadedEventLoopGroup.singleton.any().makePromise(of: [RedisReply].self)
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(TimeAmount(timeout))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(RESPDecoder()))
                        try channel.pipeline.syncOperations.addHandler(ReplyCollector(expected: expected, promise: promise))
                    }
                }
                .connect(host: configuration.host, port: configuration.port)
                .get()
        } catch {
            promise.fail(RoundTripError.unreachable("\(error)"))
            throw RoundTripError.unreachable("\(error)")
        }
        defer { channel.close(promise: nil) }
        if let password { channel.write(redisCommand("AUTH", password), promise: nil) }
        for command in commands { channel.write(command, promise: nil) }
        channel.flush()
        let replies = try await withThrowingTaskGroup(of: [RedisReply]?.self) { group in
            group.addTask { try await promise.futureResult.get() }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = try await group.next() ?? nil
            group.cancelAll()
            // Closing fails the collector's promise, so the other child ends too.
            if first == nil { channel.close(promise: nil) }
            return first
        }
        guard var replies else { throw RoundTripError.noAnswer }
        if password != nil {
            if case .error(let text) = replies.removeFirst() { throw RoundTripError.refused(text) }
        }
        for reply in replies { if case .error(let text) = reply { throw RoundTripError.refused(text) } }
        return replies
    }
}

/// Collects the replies of a ``SocketIORedisCluster/roundTrip(_:timeout:)`` on its connection's loop.
private final class ReplyCollector: ChannelInboundHandler {
    typealias InboundIn = RedisReply
    private let expected: Int
    private let promise: EventLoopPromise<[RedisReply]>
    private var replies: [RedisReply] = []
    private var done = false

    init(expected: Int, promise: EventLoopPromise<[RedisReply]>) {
        self.expected = expected
        self.promise = promise
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !done else { return }
        replies.append(unwrapInboundIn(data))
        if replies.count >= expected {
            done = true
            promise.succeed(replies)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !done {
            done = true
            promise.fail(RoundTripError.noAnswer)
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
