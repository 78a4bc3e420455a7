@testable import EngineIO
import NIOCore
import Testing

@Suite("Engine.IO WebSocket and upgrade over real sockets")
struct WebSocketTests {
    @Test func webSocketOnlySessionEchoesTextAndBinary() async throws {
        try await TestServer.with(.init(path: "/engine.io/", pingInterval: .milliseconds(300), pingTimeout: .milliseconds(200))) { server in
            let client = try await WSTestClient.connect(port: server.port, target: "/engine.io/?EIO=4&transport=websocket")
            #expect(client.upgradeStatus == 101)
            let open = try #require(await client.nextFrame())
            let sid = try #require(TestServer.sid(fromOpenPacket: open.text))
            #expect(open.text == "0{\"sid\":\"\(sid)\",\"upgrades\":[],\"pingInterval\":300,\"pingTimeout\":200,\"maxPayload\":1000000}")
            try await client.send("4hello")
            #expect(try await client.nextMessage() == WSFrame(opcode: WSFrame.text, payload: Array("4hello".utf8)))
            try await client.sendBinary([1, 2, 3, 4])
            // Binary travels without a type prefix.
            #expect(try await client.nextMessage() == WSFrame(opcode: WSFrame.binary, payload: [1, 2, 3, 4]))
            // Fragmented text message is reassembled.
            try await client.send(opcode: WSFrame.text, payload: Array("4frag".utf8), fin: false)
            try await client.send(opcode: 0, payload: Array("ment".utf8), fin: true)
            #expect(try await client.nextMessage()?.text == "4fragment")
            try await client.send("1")
            #expect(try await client.waitForCloseFrame() != nil)
            await server.expectNoSessions()
            #expect(server.delegate.closeReasons == [.clientClose])
        }
    }

    @Test func refusedWebSocketRequests() async throws {
        try await TestServer.with { server in
            for target in [
                "/engine.io/?transport=websocket", "/engine.io/?EIO=3&transport=websocket", "/engine.io/?EIO=4",
                "/engine.io/?EIO=4&transport=websocket&sid=unknown",
            ] {
                let client = try await WSTestClient.connect(port: server.port, target: target)
                #expect(client.upgradeStatus == 400, "\(target)")
                client.close()
            }
            await server.expectNoSessions()
        }
    }

    @Test func heartbeatTimeoutClosesTheWebSocket() async throws {
        let configuration = EngineIOConfiguration(path: "/engine.io/", pingInterval: .milliseconds(100), pingTimeout: .seconds(1))
        try await TestServer.with(configuration) { server in
            let (client, _) = try await WSTestClient.open(port: server.port)
            // Answer two pings, then go silent.
            for _ in 0..<2 {
                let ping = try #require(await client.nextFrame())
                #expect(ping.text == "2")
                try await client.send("3")
            }
            #expect(try await client.waitForCloseFrame(answerPings: false) != nil)
            await server.expectNoSessions()
            #expect(server.delegate.closeReasons == [.pingTimeout])
        }
    }

    @Test("invalid packets close the WebSocket while the client answers pings", arguments: ["abc", "0{}", "", "7"])
    func invalidPacketCloses(packet: String) async throws {
        let configuration = EngineIOConfiguration(path: "/engine.io/", pingInterval: .milliseconds(100), pingTimeout: .seconds(5))
        try await TestServer.with(configuration) { server in
            let (client, _) = try await WSTestClient.open(port: server.port)
            try await client.send(packet)
            #expect(try await client.waitForCloseFrame(answerPings: true) == 1002)
            await server.expectNoSessions()
            #expect(server.delegate.closeReasons.count == 1)
            if case .protocolViolation = server.delegate.closeReasons.first {
            } else {
                Issue.record("expected a protocol violation, got \(server.delegate.closeReasons)")
            }
        }
    }

    @Test func oversizedFrameClosesTheWebSocket() async throws {
        try await TestServer.with(.init(path: "/engine.io/", maxPayload: 1000)) { server in
            let (client, _) = try await WSTestClient.open(port: server.port)
            try await client.send("4" + String(repeating: "a", count: 999))
            #expect(try await client.nextMessage()?.payload.count == 1000)
            try await client.send("4" + String(repeating: "a", count: 1000))
            #expect(try await client.waitForCloseFrame() == 1009)
            await server.expectNoSessions()
        }
    }

    @Test func slowWebSocketConsumerIsDisconnected() async throws {
        try await TestServer.with(.init(path: "/engine.io/", maxOutboundQueueBytes: 64 * 1024)) { server in
            let (client, _) = try await WSTestClient.open(port: server.port)
            try await client.connection.stopReading()
            // 64 MB in total: far beyond what the kernel buffers of a loopback socket can absorb.
            for _ in 0..<16 {
                // The server may already have dropped the connection.
                try? await client.send("4flood:64:65536")
            }
            await server.expectNoSessions()
            #expect(server.delegate.closeReasons == [.slowConsumer])
            client.close()
        }
    }

    @Test func upgradeFromPolling() async throws {
        try await TestServer.with { server in
            let sid = try await server.openPollingSession()
            let pollTarget = "/engine.io/?EIO=4&transport=polling&sid=\(sid)"
            // A GET pending when the probe arrives ends with a noop.
            let pending = try await RawConnection.connect(port: server.port)
            try await pending.send(HTTPTestClient.requestBytes("GET", pollTarget))
            #expect(await pending.next(timeout: .milliseconds(100), HTTPTestClient.parse) == nil)

            let ws = try await WSTestClient.connect(port: server.port, target: "/engine.io/?EIO=4&transport=websocket&sid=\(sid)")
            #expect(ws.upgradeStatus == 101)
            try await ws.send("2probe")
            #expect(try await ws.nextMessage()?.text == "3probe")
            #expect(try #require(await pending.next(HTTPTestClient.parse)).text == "6")

            // Messages sent while the upgrade is in flight are held and then go over the WebSocket.
            _ = try await HTTPTestClient.request("POST", pollTarget, body: "4buffered", port: server.port)
            try await ws.send("5")
            #expect(try await ws.nextMessage()?.text == "4buffered")
            try await ws.send("4hello")
            #expect(try await ws.nextMessage()?.text == "4hello")

            // After the upgrade: polling gets 400, a second WebSocket is closed, the session lives on.
            #expect(try await HTTPTestClient.request("GET", pollTarget, port: server.port).status == 400)
            let second = try await WSTestClient.connect(port: server.port, target: "/engine.io/?EIO=4&transport=websocket&sid=\(sid)")
            #expect(try await second.waitForCloseFrame() != nil)
            try await ws.send("4still-here")
            #expect(try await ws.nextMessage()?.text == "4still-here")
            #expect(server.engine.sessionCount == 1)
            ws.close()
            await server.expectNoSessions()
        }
    }

    @Test func pollDuringUpgradeGetsNoop() async throws {
        try await TestServer.with { server in
            let sid = try await server.openPollingSession()
            let ws = try await WSTestClient.connect(port: server.port, target: "/engine.io/?EIO=4&transport=websocket&sid=\(sid)")
            try await ws.send("2probe")
            #expect(try await ws.nextMessage()?.text == "3probe")
            let poll = try await HTTPTestClient.request("GET", "/engine.io/?EIO=4&transport=polling&sid=\(sid)", port: server.port)
            #expect(poll.text == "6")
            try await ws.send("5")
            try await ws.send("4hello")
            #expect(try await ws.nextMessage()?.text == "4hello")
        }
    }

    /// socket.io-client 3.x (rasa-webchat) opens the probe WebSocket and sends its next polling GET at once, before
    /// `2probe`. That GET is held while the upgrade is in flight; the probe must answer it with a noop right away,
    /// not at the end of the upgrade grace. The order shows it without timing: the client sends `5` as soon as
    /// `3probe` arrives, well inside the grace; a GET still held then would get 400 (upgraded) instead of `6`.
    @Test func pollHeldBeforeTheProbeGetsNoopWhenTheProbeArrives() async throws {
        try await TestServer.with { server in
            let sid = try await server.openPollingSession()
            let pollTarget = "/engine.io/?EIO=4&transport=polling&sid=\(sid)"
            let ws = try await WSTestClient.connect(port: server.port, target: "/engine.io/?EIO=4&transport=websocket&sid=\(sid)")
            #expect(ws.upgradeStatus == 101)
            let held = try await RawConnection.connect(port: server.port)
            try await held.send(HTTPTestClient.requestBytes("GET", pollTarget))
            // The GET and the WebSocket are two connections: wait until the session holds the GET.
            let session = try #require(server.engine.lookupSession(sid))
            for _ in 0..<500 {
                if try await session.eventLoop.submit({ session.hasPendingPoll }).get() { break }
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(try await session.eventLoop.submit({ session.hasPendingPoll }).get())
            try await ws.send("2probe")
            #expect(try await ws.nextMessage()?.text == "3probe")
            try await ws.send("5")
            let answer = try #require(await held.next(HTTPTestClient.parse))
            #expect(answer.status == 200)
            #expect(answer.text == "6")
            try await ws.send("4hello")
            #expect(try await ws.nextMessage()?.text == "4hello")
        }
    }

    @Test func abortedProbeKeepsThePollingSession() async throws {
        try await TestServer.with { server in
            let sid = try await server.openPollingSession()
            let pollTarget = "/engine.io/?EIO=4&transport=polling&sid=\(sid)"
            let ws = try await WSTestClient.connect(port: server.port, target: "/engine.io/?EIO=4&transport=websocket&sid=\(sid)")
            try await ws.send("2probe")
            #expect(try await ws.nextMessage()?.text == "3probe")
            ws.close()
            // The session goes on over polling.
            try await Task.sleep(for: .milliseconds(100))
            _ = try await HTTPTestClient.request("POST", pollTarget, body: "4again", port: server.port)
            #expect(try await HTTPTestClient.request("GET", pollTarget, port: server.port).text == "4again")
        }
    }

    @Test func gracefulShutdownClosesEverySession() async throws {
        try await TestServer.with { server in
            let (ws, _) = try await WSTestClient.open(port: server.port)
            let sid = try await server.openPollingSession()
            let pending = try await RawConnection.connect(port: server.port)
            try await pending.send(HTTPTestClient.requestBytes("GET", "/engine.io/?EIO=4&transport=polling&sid=\(sid)"))
            #expect(await pending.next(timeout: .milliseconds(100), HTTPTestClient.parse) == nil)
            #expect(server.engine.sessionCount == 2)

            await server.engine.shutdown()
            #expect(try await ws.nextMessage()?.text == "1")
            #expect(try await ws.waitForCloseFrame() != nil)
            #expect(try #require(await pending.next(HTTPTestClient.parse)).text == "1")
            #expect(server.engine.sessionCount == 0)
            #expect(server.delegate.closeReasons == [.shutdown, .shutdown])
        }
    }
}
