import EngineIO
import ParleyJSON
import SocketIO
import Testing

/// The conformance server's handlers: `auth` on connect, `message` echoed as `message-back`,
/// `message-with-ack` acknowledged with its arguments.
private func installEcho(on namespace: SocketIONamespace) {
    namespace.onConnection { socket in
        socket.emit("auth", .json(socket.auth ?? .object([:])))
        socket.on("message") { socket, event in socket.emit("message-back", arguments: event.arguments) }
        socket.on("message-with-ack") { _, event in event.ack?.send(arguments: event.arguments) }
    }
}

@Suite struct NamespaceConnectionTests {
    @Test func connectsToMainNamespaceAndEmitsAfterTheReply() throws {
        let (io, _) = makeServer()
        installEcho(on: io.mainNamespace)
        let c = TestConnection.open(on: io)
        c.receive("0")
        let out = c.take()
        #expect(out.count == 2)
        let reply = try JSONValue.parse(String(out[0].dropFirst()))
        #expect(out[0].hasPrefix("0{"))
        #expect(reply.objectValue?.keys == ["sid"])
        #expect(reply["sid"]?.stringValue != c.id)
        #expect(reply["sid"]?.stringValue?.count == 20)
        #expect(out[1] == #"2["auth",{}]"#)
    }

    @Test func connectsWithAuthPayload() throws {
        let (io, _) = makeServer()
        installEcho(on: io.mainNamespace)
        let c = TestConnection.open(on: io)
        try c.connect(auth: #"{"token":"123"}"#)
        #expect(c.take() == [#"2["auth",{"token":"123"}]"#])
    }

    @Test(arguments: ["0/custom", "0/custom,"])
    func connectsToCustomNamespaceWithOrWithoutComma(_ packet: String) throws {
        let (io, _) = makeServer()
        installEcho(on: io.of("/custom"))
        let c = TestConnection.open(on: io)
        c.receive(packet)
        let out = c.take()
        #expect(out.first?.hasPrefix("0/custom,{\"sid\":") == true)
        #expect(out.dropFirst().first == #"2/custom,["auth",{}]"#)
    }

    @Test func customNamespaceWithPayload() throws {
        let (io, _) = makeServer()
        installEcho(on: io.of("/custom"))
        let c = TestConnection.open(on: io)
        try c.connect("/custom", auth: #"{"token":"abc"}"#)
        #expect(c.take() == [#"2/custom,["auth",{"token":"abc"}]"#])
    }

    @Test func unknownNamespaceIsRefusedExactly() {
        let (io, _) = makeServer()
        let c = TestConnection.open(on: io)
        c.receive("0/random")
        #expect(c.take() == [#"4/random,{"message":"Invalid namespace"}"#])
        #expect(!c.isClosed)
    }

    @Test func middlewareRefusesWithMessageAndData() {
        let (io, _) = makeServer()
        io.mainNamespace.use { socket in
            socket.auth?["token"] == "good" ? .accept : .refuse(message: "Not authorized", data: ["code": 401])
        }
        let connected = Recorder<String>()
        io.mainNamespace.onConnection { connected.append($0.id) }
        let c = TestConnection.open(on: io)
        c.receive(#"0{"token":"bad"}"#)
        #expect(c.take() == [#"4{"message":"Not authorized","data":{"code":401}}"#])
        c.receive("0")
        #expect(c.take() == [#"4{"message":"Not authorized","data":{"code":401}}"#])
        #expect(connected.values.isEmpty)
        #expect(io.mainNamespace.socketCount == 0)
        c.receive(#"0{"token":"good"}"#)
        #expect(c.take().first?.hasPrefix(#"0{"sid":"#) == true)
        #expect(connected.values.count == 1)
    }

    @Test func middlewareSeesHandshakeAndCanSetData() throws {
        let (io, _) = makeServer()
        let ns = io.of("/chat")
        ns.use { socket in
            #expect(socket.handshake.engine.query["user"] == "ann")
            #expect(socket.handshake.namespace == "/chat")
            socket.data["user"] = .string(socket.handshake.engine.query["user"] ?? "?")
            return .accept
        }
        ns.use { _ in .refuse(message: "second") }  // never reached when the first refuses; here it refuses
        let c = TestConnection.open(on: io, handshake: EngineHandshake(query: ["user": "ann"]))
        c.receive("0/chat,")
        #expect(c.take() == [#"4/chat,{"message":"second"}"#])
    }

    @Test func refusalByMessageOnlyOmitsData() {
        let (io, _) = makeServer()
        io.mainNamespace.use { _ in .refuse(message: "Connection rejected by server") }
        let c = TestConnection.open(on: io)
        c.receive("0")
        #expect(c.take() == [#"4{"message":"Connection rejected by server"}"#])
    }

    @Test func dynamicNamespacesMatchByPredicate() throws {
        let (io, _) = makeServer()
        let family = io.dynamicNamespace { name, _ in name.hasPrefix("/room-") }
        family.use { socket in socket.handshake.namespace == "/room-banned" ? .refuse(message: "banned") : .accept }
        family.onConnection { socket in socket.emit("hello", .json(.string(socket.namespace.name))) }
        let c = TestConnection.open(on: io)
        try c.connect("/room-1")
        #expect(c.take() == [#"2/room-1,["hello","/room-1"]"#])
        c.receive("0/room-banned,")
        #expect(c.take() == [#"4/room-banned,{"message":"banned"}"#])
        c.receive("0/other")
        #expect(c.take() == [#"4/other,{"message":"Invalid namespace"}"#])
        #expect(family.namespaces.map(\.name).sorted() == ["/room-1", "/room-banned"])
        #expect(io.existingNamespace("/room-1")?.socketCount == 1)
        // Broadcast to the whole family.
        family.emit("all", arguments: [1])
        #expect(c.take() == [#"2/room-1,["all",1]"#])
    }

    @Test func emptyDynamicNamespacesCanBeDropped() throws {
        let (io, _) = makeServer { $0.removeEmptyDynamicNamespaces = true }
        let family = io.dynamicNamespace { name, _ in name.hasPrefix("/d") }
        let c = TestConnection.open(on: io)
        try c.connect("/d1")
        #expect(io.existingNamespace("/d1") != nil)
        c.receive("1/d1,")
        #expect(io.existingNamespace("/d1") == nil)
        #expect(family.namespaces.isEmpty)
        try c.connect("/d1")
        #expect(io.existingNamespace("/d1")?.socketCount == 1)
    }

    @Test func connectReplyDelayHoldsWhatFollowsTheReplyInOrder() throws {
        let (io, clock) = makeServer { $0.connectReplyDelay = .milliseconds(5) }
        installEcho(on: io.mainNamespace)
        let c = TestConnection.open(on: io)
        c.receive("0")
        #expect(c.sent.count == 1 && c.sent[0].hasPrefix(#"0{"sid":"#))
        c.receive(#"2["message",1]"#)
        c.receive(#"2["message",2]"#)
        #expect(c.sent.count == 1)
        clock.advance(by: .milliseconds(5))
        #expect(Array(c.sent.dropFirst()) == [#"2["auth",{}]"#, #"2["message-back",1]"#, #"2["message-back",2]"#])
        c.receive(#"2["message",3]"#)
        #expect(c.sent.last == #"2["message-back",3]"#)
    }

    @Test func secondConnectToSameNamespaceIsIgnored() throws {
        let (io, _) = makeServer()
        let c = TestConnection.open(on: io)
        try c.connect()
        c.receive("0")
        #expect(c.take().isEmpty)
        #expect(io.mainNamespace.socketCount == 1)
    }
}

@Suite struct EventTests {
    @Test func echoesPlainEvents() throws {
        let (io, _) = makeServer()
        installEcho(on: io.mainNamespace)
        let c = TestConnection.open(on: io)
        try c.connect()
        _ = c.take()
        c.receive(#"2["message",1,"2",{"3":[true]}]"#)
        #expect(c.take() == [#"2["message-back",1,"2",{"3":[true]}]"#])
    }

    @Test func handlersRunInArrivalOrder() throws {
        let (io, _) = makeServer()
        let seen = Recorder<Int64>()
        io.mainNamespace.onConnection { socket in
            socket.on("n") { _, event in seen.append(event.arguments.first?.jsonValue?.int64Value ?? -1) }
        }
        let c = TestConnection.open(on: io)
        try c.connect()
        for i in 0..<100 { c.receive(#"2["n",\#(i)]"#) }
        #expect(seen.values == Array(0..<100))
    }

    @Test func onAnyAndMultipleHandlers() throws {
        let (io, _) = makeServer()
        let seen = Recorder<String>()
        io.mainNamespace.onConnection { socket in
            socket.onAny { _, e in seen.append("any:\(e.name)") }
            socket.on("a") { _, _ in seen.append("a1") }
            socket.on("a") { _, _ in seen.append("a2") }
        }
        let c = TestConnection.open(on: io)
        try c.connect()
        c.receive(#"2["a"]"#)
        c.receive(#"2["b"]"#)
        #expect(seen.values == ["any:a", "a1", "a2", "any:b"])
    }

    @Test func clientAckIsAnsweredOnce() async throws {
        let (io, _) = makeServer()
        let acks = Recorder<SocketIOAck>()
        io.mainNamespace.onConnection { socket in
            socket.on("message-with-ack") { _, event in
                if let ack = event.ack { acks.append(ack) }
            }
        }
        let c = TestConnection.open(on: io)
        try c.connect()
        c.receive(#"2456["message-with-ack",1,"2",{"3":[false]}]"#)
        #expect(c.take().isEmpty)
        let ack = try #require(acks.values.first)
        // Answer later, from another thread.
        await withTaskGroup(of: Void.self) { group in
            group.addTask { ack.send(1, "2", .json(["3": [false]])) }
        }
        ack.send("again")
        #expect(ack.isSent)
        #expect(c.take() == [#"3456[1,"2",{"3":[false]}]"#])
    }

    @Test func binaryEventAndBinaryAck() throws {
        let (io, _) = makeServer()
        installEcho(on: io.mainNamespace)
        let c = TestConnection.open(on: io)
        try c.connect()
        _ = c.take()
        c.receive(#"52-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#)
        c.receive(binary: [1, 2, 3])
        #expect(c.take().isEmpty)
        c.receive(binary: [4, 5, 6])
        #expect(c.take() == [#"52-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#, "<bin:1,2,3>", "<bin:4,5,6>"])
        c.receive(#"52-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#)
        c.receive(binary: [1, 2, 3])
        c.receive(binary: [4, 5, 6])
        #expect(c.take() == [#"62-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#, "<bin:1,2,3>", "<bin:4,5,6>"])
    }

    @Test func eventsForUnconnectedNamespaceAreIgnored() throws {
        let (io, _) = makeServer()
        installEcho(on: io.of("/custom"))
        let c = TestConnection.open(on: io)
        try c.connect()
        c.receive(#"2/custom,["message",1]"#)
        #expect(c.take().isEmpty)
        #expect(!c.isClosed)
    }
}

@Suite struct ServerAckTests {
    @Test func serverToClientAckResolves() throws {
        let (io, _) = makeServer()
        let c = TestConnection.open(on: io)
        let sid = try c.connect()
        let socket = try #require(io.mainNamespace.socket(id: sid))
        let results = Recorder<Result<[SocketIOValue], SocketIOAckError>>()
        socket.emit("question", arguments: ["q"]) { results.append($0) }
        socket.emit("bin", arguments: [.binary([1])]) { results.append($0) }
        #expect(c.take() == [#"20["question","q"]"#, #"51-1["bin",{"_placeholder":true,"num":0}]"#, "<bin:1>"])
        c.receive(#"30["answer",2]"#)
        c.receive(#"61-1[{"_placeholder":true,"num":0}]"#)
        c.receive(binary: [9, 9])
        c.receive(#"30["duplicate"]"#)  // unknown id now: ignored
        #expect(results.values.count == 2)
        #expect(try results.values[0].get() == ["answer", 2])
        #expect(try results.values[1].get() == [.binary([9, 9])])
        #expect(!c.isClosed)
    }

    @Test func serverToClientAckTimesOut() throws {
        let (io, clock) = makeServer { $0.ackTimeout = .seconds(5) }
        let c = TestConnection.open(on: io)
        let sid = try c.connect()
        let socket = try #require(io.mainNamespace.socket(id: sid))
        let results = Recorder<Result<[SocketIOValue], SocketIOAckError>>()
        socket.emit("a", arguments: []) { results.append($0) }
        socket.emit("b", arguments: [], timeout: .seconds(60)) { results.append($0) }
        clock.advance(by: .seconds(6))
        #expect(results.values.count == 1)
        #expect(throws: SocketIOAckError.timeout) { try results.values[0].get() }
        c.receive(#"30[]"#)  // too late: ignored
        #expect(results.values.count == 1)
        c.receive(#"31["ok"]"#)
        #expect(try results.values[1].get() == ["ok"])
        clock.advance(by: .seconds(100))
        #expect(results.values.count == 2)
    }

    @Test func pendingAcksFailOnDisconnectAndAreBounded() throws {
        let (io, _) = makeServer { $0.maxPendingAcks = 2 }
        let c = TestConnection.open(on: io)
        let sid = try c.connect()
        let socket = try #require(io.mainNamespace.socket(id: sid))
        let results = Recorder<Result<[SocketIOValue], SocketIOAckError>>()
        for _ in 0..<3 { socket.emit("x", arguments: []) { results.append($0) } }
        #expect(results.values.count == 1)
        #expect(throws: SocketIOAckError.tooManyPendingAcks) { try results.values[0].get() }
        c.closeFromEngine(.pingTimeout)
        #expect(results.values.count == 3)
        #expect(throws: SocketIOAckError.disconnected) { try results.values[2].get() }
        socket.emit("y", arguments: []) { results.append($0) }
        #expect(throws: SocketIOAckError.disconnected) { try results.values[3].get() }
    }

    @Test func emitWithAckOnRealTimers() async throws {
        let io = SocketIOServer(configuration: SocketIOConfiguration(ackTimeout: .milliseconds(20)))
        let c = TestConnection.open(on: io)
        let sid = try c.connect()
        let socket = try #require(io.mainNamespace.socket(id: sid))
        await #expect(throws: SocketIOAckError.timeout) {
            _ = try await socket.emitWithAck("ping", arguments: [])
        }
        async let answer = socket.emitWithAck("ping", arguments: [1], timeout: .seconds(30))
        // Answer as soon as the event is out.
        while !c.sent.contains(#"21["ping",1]"#) { await Task.yield() }
        c.receive(#"31["pong"]"#)
        #expect(try await answer == ["pong"])
    }
}

@Suite struct DisconnectTests {
    @Test func clientDisconnectLeavesOnlyThatNamespace() throws {
        let (io, _) = makeServer()
        installEcho(on: io.mainNamespace)
        installEcho(on: io.of("/custom"))
        let reasons = Recorder<String>()
        io.of("/custom").onConnection { socket in socket.onDisconnect { _, r in reasons.append(r.description) } }
        let c = TestConnection.open(on: io)
        try c.connect()
        try c.connect("/custom")
        _ = c.take()
        c.receive("1/custom,")
        c.receive(#"2["message","message to main namespace"]"#)
        #expect(c.take() == [#"2["message-back","message to main namespace"]"#])
        #expect(reasons.values == ["client namespace disconnect"])
        #expect(io.of("/custom").socketCount == 0)
        #expect(!c.isClosed)
        c.receive("1")
        #expect(!c.isClosed)
        #expect(io.mainNamespace.socketCount == 0)
    }

    @Test func serverDisconnectSendsDisconnectPacket() throws {
        let (io, _) = makeServer()
        let reasons = Recorder<String>()
        io.of("/a").onConnection { socket in socket.onDisconnect { _, r in reasons.append(r.description) } }
        let c = TestConnection.open(on: io)
        let sid = try c.connect("/a")
        try c.connect()
        io.of("/a").socket(id: sid)?.disconnect()
        #expect(c.take() == ["1/a,"])
        #expect(reasons.values == ["server namespace disconnect"])
        #expect(!c.isClosed)
        io.mainNamespace.sockets.first?.disconnect(close: true)
        #expect(c.isClosed)
        #expect(io.mainNamespace.socketCount == 0)
    }

    @Test func engineCloseDisconnectsEverySocketAndCleansUp() throws {
        let (io, clock) = makeServer()
        let reasons = Recorder<String>()
        for name in ["/", "/b"] {
            io.of(name).onConnection { socket in
                socket.join("shared")
                socket.onDisconnect { _, r in reasons.append(r.description) }
            }
        }
        let c = TestConnection.open(on: io)
        try c.connect()
        try c.connect("/b")
        #expect(io.mainNamespace.socketCount(inRoom: "shared") == 1)
        c.closeFromEngine(.clientClose)
        #expect(reasons.values == ["client close", "client close"])
        #expect(io.mainNamespace.socketCount == 0 && io.of("/b").socketCount == 0)
        #expect(io.mainNamespace.socketCount(inRoom: "shared") == 0)
        #expect(clock.pendingCount == 0)
    }
}

@Suite struct StrictnessTests {
    @Test func connectTimeoutClosesASessionThatNeverConnects() {
        let (io, clock) = makeServer { $0.connectTimeout = .milliseconds(1000) }
        let c = TestConnection.open(on: io)
        clock.advance(by: .milliseconds(999))
        #expect(!c.isClosed)
        clock.advance(by: .milliseconds(1))
        #expect(c.isClosed)
    }

    @Test func refusedConnectDoesNotStopTheConnectTimeout() {
        let (io, clock) = makeServer { $0.connectTimeout = .seconds(1) }
        let c = TestConnection.open(on: io)
        c.receive("0/nope,")
        clock.advance(by: .seconds(2))
        #expect(c.isClosed)
    }

    @Test func connectedSessionIsNotClosedByTheTimeout() throws {
        let (io, clock) = makeServer { $0.connectTimeout = .seconds(1) }
        let c = TestConnection.open(on: io)
        try c.connect()
        #expect(clock.pendingCount == 0)
        clock.advance(by: .seconds(10))
        #expect(!c.isClosed)
    }

    @Test(arguments: [
        "abc", "2{}", #"2abc["message-with-ack",1,"2",{"3":[false]}]"#, "2", #"2["disconnect"]"#, "4{\"message\":\"x\"}", "9",
    ])
    func invalidPacketClosesTheSession(_ packet: String) throws {
        let (io, _) = makeServer()
        let reasons = Recorder<SocketIODisconnectReason>()
        io.mainNamespace.onConnection { socket in socket.onDisconnect { _, r in reasons.append(r) } }
        let c = TestConnection.open(on: io)
        try c.connect()
        c.receive(packet)
        #expect(c.isClosed)
        #expect(reasons.values.count == 1)
        if case .protocolViolation = reasons.values.first {} else { Issue.record("reason \(reasons.values)") }
        #expect(io.mainNamespace.socketCount == 0)
    }

    @Test func invalidFirstPacketClosesTheSession() {
        let (io, clock) = makeServer()
        let c = TestConnection.open(on: io)
        c.receive("abc")
        #expect(c.isClosed)
        #expect(clock.pendingCount == 0)
    }

    @Test func unannouncedAttachmentClosesTheSession() throws {
        let (io, _) = makeServer()
        let c = TestConnection.open(on: io)
        try c.connect()
        c.receive(binary: [1, 2])
        #expect(c.isClosed)
    }

    @Test func otherSessionsKeepWorking() throws {
        let (io, _) = makeServer()
        installEcho(on: io.mainNamespace)
        let bad = TestConnection.open(on: io)
        let good = TestConnection.open(on: io)
        try bad.connect()
        try good.connect()
        _ = good.take()
        bad.receive("2{}")
        good.receive(#"2["message","still here"]"#)
        #expect(bad.isClosed)
        #expect(good.take() == [#"2["message-back","still here"]"#])
    }
}

@Suite struct RoomTests {
    /// Three clients on `/`; returns their connections and socket ids.
    private func threeClients(_ io: SocketIOServer) throws -> [(TestConnection, String)] {
        try (0..<3).map { _ in
            let c = TestConnection.open(on: io)
            return (c, try c.connect())
        }
    }

    @Test func joinLeaveToExcept() throws {
        let (io, _) = makeServer()
        let clients = try threeClients(io)
        let ns = io.mainNamespace
        let sockets = clients.map { ns.socket(id: $0.1)! }
        sockets[0].join("a")
        sockets[1].join(["a", "b"])
        sockets[2].join("b")
        #expect(ns.socketCount(inRoom: "a") == 2)
        #expect(sockets[1].rooms == [sockets[1].id, "a", "b"])

        ns.to("a").emit("hi", 1)
        #expect(clients.map { $0.0.take() } == [[#"2["hi",1]"#], [#"2["hi",1]"#], []])

        ns.to("a").except("b").emit("only0")
        #expect(clients.map { $0.0.take().count } == [1, 0, 0])

        ns.to(["a", "b"]).emit("union")  // sent once to the socket in both rooms
        #expect(clients.map { $0.0.take().count } == [1, 1, 1])

        ns.except("a").emit("not-a")
        #expect(clients.map { $0.0.take().count } == [0, 0, 1])

        io.to(sockets[2].id).emit("direct", .binary([7]))
        #expect(clients[2].0.take() == [#"51-["direct",{"_placeholder":true,"num":0}]"#, "<bin:7>"])

        sockets[0].to("a").emit("from0")  // leaves the sender out
        #expect(clients.map { $0.0.take().count } == [0, 1, 0])
        sockets[0].broadcast.emit("all-but-0")
        #expect(clients.map { $0.0.take().count } == [0, 1, 1])

        sockets[1].leave("a")
        #expect(ns.to("a").socketIDs() == [sockets[0].id])
        ns.emit("everyone")
        #expect(clients.map { $0.0.take().count } == [1, 1, 1])
    }

    @Test func broadcastEncodesOnceAndSharesTheBytes() throws {
        let (io, _) = makeServer()
        let clients = try threeClients(io)
        io.emit("news", .json(["big": .string(String(repeating: "x", count: 1000))]))
        let texts = clients.map { $0.0.sentMessages }
        #expect(texts.allSatisfy { $0 == texts[0] && $0.count == 1 })
    }

    @Test func disconnectLeavesRooms() throws {
        let (io, _) = makeServer()
        let clients = try threeClients(io)
        io.mainNamespace.to(clients.map(\.1)).socketsJoin("room")
        #expect(io.mainNamespace.socketCount(inRoom: "room") == 3)
        clients[0].0.receive("1")
        clients[1].0.closeFromEngine(.transportError("reset"))
        #expect(io.mainNamespace.socketCount(inRoom: "room") == 1)
        #expect(io.mainNamespace.socketCount(inRoom: clients[0].1) == 0)
        io.mainNamespace.to("room").disconnectSockets()
        #expect(clients[2].0.take() == ["1"])
        #expect(io.mainNamespace.socketCount == 0)
        #expect(io.mainNamespace.socketCount(inRoom: "room") == 0)
    }

    @Test func roomsArePerNamespace() throws {
        let (io, _) = makeServer()
        _ = io.of("/other")
        let c = TestConnection.open(on: io)
        let main = try c.connect()
        let other = try c.connect("/other")
        io.mainNamespace.socket(id: main)?.join("r")
        io.of("/other").to("r").emit("x")
        #expect(c.take().isEmpty)
        io.of("/other").to(other).emit("y")
        #expect(c.take() == [#"2/other,["y"]"#])
    }

    @Test func customAdapterIsUsed() throws {
        final class CountingAdapter: SocketIOAdapter {
            let inner = SocketIOInMemoryAdapter()
            let broadcasts = Recorder<String>()
            func addSocket(_ socket: SocketIOSocket, toRooms rooms: [String]) { inner.addSocket(socket, toRooms: rooms) }
            func removeSocket(_ socket: SocketIOSocket, fromRoom room: String) { inner.removeSocket(socket, fromRoom: room) }
            func removeSocketFromAllRooms(_ socket: SocketIOSocket) { inner.removeSocketFromAllRooms(socket) }
            func rooms(of socket: SocketIOSocket) -> Set<String> { inner.rooms(of: socket) }
            func socketCount(inRoom room: String) -> Int { inner.socketCount(inRoom: room) }
            func socketIDs(for target: SocketIOBroadcastTarget) -> Set<String> { inner.socketIDs(for: target) }
            func sockets(for target: SocketIOBroadcastTarget) -> [SocketIOSocket] { inner.sockets(for: target) }
            func fetchSocketIDs(for target: SocketIOBroadcastTarget) async throws -> Set<String> { try await inner.fetchSocketIDs(for: target) }
            func fetchRooms() async throws -> Set<String> { try await inner.fetchRooms() }
            func apply(_ operation: SocketIORoomOperation, to target: SocketIOBroadcastTarget) { inner.apply(operation, to: target) }
            func broadcast(_ packet: SocketIOPacket, to target: SocketIOBroadcastTarget) {
                broadcasts.append(packet.eventName ?? "?")
                inner.broadcast(packet, to: target)
            }
        }
        let adapter = CountingAdapter()
        let (io, _) = makeServer { $0.adapter = SocketIOAdapterFactory { _ in adapter } }
        let c = TestConnection.open(on: io)
        try c.connect()
        io.emit("via-adapter")
        #expect(adapter.broadcasts.values == ["via-adapter"])
        #expect(c.take() == [#"2["via-adapter"]"#])
    }
}

@Suite struct ConcurrencyTests {
    /// Joins, leaves, broadcasts, emits with acks and disconnects from several tasks at once (bounded loops);
    /// afterwards every room and pending ack is gone.
    @Test func concurrentRoomsBroadcastsAndDisconnects() async throws {
        let (io, _) = makeServer()
        let ns = io.mainNamespace
        let connections = try (0..<8).map { _ in
            let c = TestConnection.open(on: io)
            try c.connect()
            return c
        }
        let sockets = ns.sockets
        let acks = Recorder<Bool>()
        await withTaskGroup(of: Void.self) { group in
            for (i, socket) in sockets.enumerated() {
                group.addTask {
                    for n in 0..<200 {
                        socket.join("r\(n % 4)")
                        ns.to("r\(n % 4)").except("r\((n + 1) % 4)").emit("tick", .json(.int(Int64(n))))
                        if n % 50 == 0 { socket.emit("q", arguments: [], timeout: .seconds(60)) { acks.append((try? $0.get()) != nil) } }
                        socket.leave("r\((n + i) % 4)")
                    }
                }
            }
        }
        for c in connections { c.closeFromEngine(.clientClose) }
        #expect(ns.socketCount == 0)
        for r in 0..<4 { #expect(ns.socketCount(inRoom: "r\(r)") == 0) }
        #expect(acks.values.count == sockets.count * 4)
        #expect(acks.values.allSatisfy { !$0 })
    }
}

@Suite struct ConnectionStateRecoveryTests {
    /// The CONNECT reply's payload and what followed it.
    func connect(_ c: TestConnection, auth: String = "") throws -> (JSONValue, [String]) {
        c.receive("0" + auth)
        let out = c.take()
        guard let first = out.first, first.hasPrefix("0{") else { throw TestFailure("no CONNECT reply: \(out)") }
        return (try JSONValue.parse(String(first.dropFirst())), Array(out.dropFirst()))
    }

    func connectReply(_ c: TestConnection, auth: String = "") throws -> JSONValue { try connect(c, auth: auth).0 }

    @Test func aDroppedSocketComesBackWithItsIDRoomsDataAndMissedEvents() throws {
        let (io, _) = makeServer { $0.connectionStateRecovery = SocketIOConnectionStateRecovery() }
        let ns = io.mainNamespace
        ns.onConnection { socket in
            if !socket.recovered {
                socket.join("news")
                socket.data = ["user": "ada"]
            }
        }
        let c = TestConnection.open(on: io)
        let reply = try connectReply(c)
        let sid = try #require(reply["sid"]?.stringValue), pid = try #require(reply["pid"]?.stringValue)
        ns.to("news").emit("headline", .json("one"))
        let got = c.take()
        #expect(got == [#"2["headline","one","1"]"#])  // the offset is the last argument
        c.closeFromEngine(.transportError("cable pulled"))
        // Said while it was away: to its room, to everyone, to another room (not for it), volatile (not kept).
        ns.to("news").emit("headline", .json("two"))
        ns.emit("all", .json(1))
        ns.to("sports").emit("score", .json(3))
        ns.to("news").volatile.emit("ephemeral")
        let back = TestConnection.open(on: io)
        let (again, rest) = try connect(back, auth: #"{"pid":"\#(pid)","offset":"1"}"#)
        #expect(again["sid"]?.stringValue == sid && again["pid"]?.stringValue == pid)
        #expect(rest == [#"2["headline","two","2"]"#, #"2["all",1,"3"]"#])
        let socket = try #require(ns.socket(id: sid))
        #expect(socket.recovered && socket.rooms == [sid, "news"] && socket.data == ["user": "ada"])
        // A pid is good once; an unknown one, or a clean disconnect, gives a new socket.
        let third = TestConnection.open(on: io)
        let fresh = try connectReply(third, auth: #"{"pid":"\#(pid)","offset":"1"}"#)
        #expect(fresh["sid"]?.stringValue != sid && fresh["pid"]?.stringValue != pid)
        let freshPID = try #require(fresh["pid"]?.stringValue)
        third.receive("1")  // the client leaves on purpose
        let fourth = TestConnection.open(on: io)
        #expect(try connectReply(fourth, auth: #"{"pid":"\#(freshPID)","offset":"3"}"#)["pid"]?.stringValue != freshPID)
    }

    @Test func withoutRecoveryNothingIsNumbered() throws {
        let (io, _) = makeServer()
        let c = TestConnection.open(on: io)
        let reply = try connectReply(c)
        #expect(reply["pid"] == nil)
        io.emit("x")
        #expect(c.take() == [#"2["x"]"#])
    }
}
