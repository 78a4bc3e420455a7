import EngineIO
import Testing

/// WebSocket upgrades on a keep-alive HTTP/1.1 connection that already carried other requests (aiohttp, the
/// transport of python-socketio's `AsyncClient`, upgrades on its polling connection).
@Suite("Engine.IO WebSocket upgrade on a reused keep-alive connection")
struct KeepAliveUpgradeTests {
    /// One masked text frame of `text`.
    static func maskedText(_ text: String) -> [UInt8] {
        WebSocketWire().encode(opcode: WSFrame.text, payload: Array(text.utf8))
    }

    @Test func upgradeFromPollingOnTheSameConnection() async throws {
        try await TestServer.with { server in
            let connection = try await RawConnection.connect(port: server.port)
            // Handshake, a POST and a GET over polling, all on this one connection.
            try await connection.send(HTTPTestClient.requestBytes("GET", "/engine.io/?EIO=4&transport=polling"))
            let open = try #require(await connection.next(HTTPTestClient.parse))
            let sid = try #require(TestServer.sid(fromOpenPacket: open.text))
            let pollTarget = "/engine.io/?EIO=4&transport=polling&sid=\(sid)"
            try await connection.send(HTTPTestClient.requestBytes("POST", pollTarget, body: Array("4polled".utf8)))
            #expect(try #require(await connection.next(HTTPTestClient.parse)).text == "ok")
            try await connection.send(HTTPTestClient.requestBytes("GET", pollTarget))
            #expect(try #require(await connection.next(HTTPTestClient.parse)).text == "4polled")

            // Then the upgrade, still on the same connection.
            let ws = try await WSTestClient.upgrade(connection: connection, target: "/engine.io/?EIO=4&transport=websocket&sid=\(sid)")
            #expect(ws.upgradeStatus == 101)
            try await ws.send("2probe")
            #expect(try await ws.nextMessage()?.text == "3probe")
            try await ws.send("5")
            try await ws.send("4hello")
            #expect(try await ws.nextMessage()?.text == "4hello")
            // Polling is over for this session.
            #expect(try await HTTPTestClient.request("GET", pollTarget, port: server.port).status == 400)
            #expect(server.engine.sessionCount == 1)
            try await ws.send("1")
            #expect(try await ws.waitForCloseFrame() != nil)
            await server.expectNoSessions()
            #expect(server.delegate.closeReasons == [.clientClose])
        }
    }

    @Test func webSocketAfterPlainHTTPWithFramesInTheSameWrite() async throws {
        try await TestServer.with { server in
            let connection = try await RawConnection.connect(port: server.port)
            for _ in 0..<2 {
                try await connection.send(HTTPTestClient.requestBytes("GET", "/hello"))
                #expect(try #require(await connection.next(HTTPTestClient.parse)).text == "hello")
            }
            // A frame sent right behind the upgrade request reaches the WebSocket.
            let ws = try await WSTestClient.upgrade(
                connection: connection,
                target: "/engine.io/?EIO=4&transport=websocket",
                trailing: Self.maskedText("4early")
            )
            #expect(ws.upgradeStatus == 101)
            let open = try #require(await ws.nextFrame())
            #expect(TestServer.sid(fromOpenPacket: open.text) != nil)
            #expect(try await ws.nextMessage()?.text == "4early")
            ws.close()
            await server.expectNoSessions()
        }
    }

    @Test(
        "refused upgrades on a reused connection get 400 and a close",
        arguments: [
            "/engine.io/?EIO=4&transport=websocket&sid=unknown", "/engine.io/?EIO=3&transport=websocket", "/hello",
        ])
    func refusedUpgrade(target: String) async throws {
        try await TestServer.with { server in
            let connection = try await RawConnection.connect(port: server.port)
            try await connection.send(HTTPTestClient.requestBytes("GET", "/hello"))
            #expect(try #require(await connection.next(HTTPTestClient.parse)).text == "hello")
            let ws = try await WSTestClient.upgrade(connection: connection, target: target)
            #expect(ws.upgradeStatus == 400)
            #expect(await connection.waitForClose())
            // The server goes on serving.
            #expect(try await HTTPTestClient.request("GET", "/hello", port: server.port).text == "hello")
            await server.expectNoSessions()
        }
    }
}
