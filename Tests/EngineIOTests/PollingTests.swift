import EngineIO
import Testing

@Suite("Engine.IO long-polling over real sockets")
struct PollingTests {
    @Test func sessionIDsStartWithTheConfiguredPrefix() async throws {
        var configuration = EngineIOConfiguration(path: "/engine.io/")
        configuration.sessionIDPrefix = "n2."
        try await TestServer.with(configuration) { server in
            let polling = try await server.openPollingSession()
            #expect(polling.hasPrefix("n2.") && polling.count == 23)
            let (client, webSocket) = try await WSTestClient.open(port: server.port)
            #expect(webSocket.hasPrefix("n2."))
            client.close()
            // The prefixed id works for the session's next requests.
            let poll = try await HTTPTestClient.request("POST", "/engine.io/?EIO=4&transport=polling&sid=\(polling)", body: "4hello", port: server.port)
            #expect(poll.status == 200)
        }
    }

    @Test func handshakeHasTheExactOpenPacket() async throws {
        try await TestServer.with(.init(path: "/engine.io/", pingInterval: .milliseconds(300), pingTimeout: .milliseconds(200))) { server in
            let response = try await HTTPTestClient.request("GET", "/engine.io/?EIO=4&transport=polling", port: server.port)
            #expect(response.status == 200)
            let sid = try #require(TestServer.sid(fromOpenPacket: response.text))
            #expect(sid.count == 20)
            #expect(
                response.text == "0{\"sid\":\"\(sid)\",\"upgrades\":[\"websocket\"],\"pingInterval\":300,\"pingTimeout\":200,\"maxPayload\":1000000}"
            )
            #expect(server.engine.sessionCount == 1)
            // Other routes of the application still work on the same port.
            let hello = try await HTTPTestClient.request("GET", "/hello", port: server.port)
            #expect(hello.text == "hello")
        }
    }

    @Test func noUpgradesAdvertisedWhenDisabled() async throws {
        try await TestServer.with(.init(path: "/engine.io/", allowUpgrades: false)) { server in
            let response = try await HTTPTestClient.request("GET", "/engine.io?EIO=4&transport=polling", port: server.port)
            #expect(response.text.contains("\"upgrades\":[]"))
        }
    }

    @Test func badRequestsGet400() async throws {
        try await TestServer.with { server in
            let cases: [(String, String)] = [
                ("GET", "/engine.io/?transport=polling"),
                ("GET", "/engine.io/?EIO=abc&transport=polling"),
                ("GET", "/engine.io/?EIO=3&transport=polling"),
                ("GET", "/engine.io/?EIO=4"),
                ("GET", "/engine.io/?EIO=4&transport=abc"),
                ("GET", "/engine.io/?EIO=4&transport=polling&sid=unknown"),
                ("POST", "/engine.io/?EIO=4&transport=polling"),
                ("PUT", "/engine.io/?EIO=4&transport=polling"),
                ("POST", "/engine.io/?EIO=4&transport=polling&sid=unknown"),
            ]
            for (method, target) in cases {
                let response = try await HTTPTestClient.request(method, target, port: server.port)
                #expect(response.status == 400, "\(method) \(target)")
            }
            let v3 = try await HTTPTestClient.request("GET", "/engine.io/?EIO=3&transport=polling", port: server.port)
            #expect(v3.text == "The client is using an unsupported version of the Socket.IO or Engine.IO protocols")
            await server.expectNoSessions()
        }
    }

    @Test func postIsAnsweredOkAndEchoedInOneFramedPayload() async throws {
        try await TestServer.with { server in
            let sid = try await server.openPollingSession()
            let target = "/engine.io/?EIO=4&transport=polling&sid=\(sid)"
            let post = try await HTTPTestClient.request("POST", target, body: "4test1\u{1e}4test2\u{1e}bAQIDBA==", port: server.port)
            #expect(post.status == 200)
            #expect(post.text == "ok")
            let poll = try await HTTPTestClient.request("GET", target, port: server.port)
            #expect(poll.status == 200)
            #expect(poll.text == "4test1\u{1e}4test2\u{1e}bAQIDBA==")
        }
    }

    @Test func pollWaitsForData() async throws {
        try await TestServer.with { server in
            let sid = try await server.openPollingSession()
            let target = "/engine.io/?EIO=4&transport=polling&sid=\(sid)"
            let pending = try await RawConnection.connect(port: server.port)
            try await pending.send(HTTPTestClient.requestBytes("GET", target))
            // Nothing to send yet: the GET stays open.
            #expect(await pending.next(timeout: .milliseconds(200), HTTPTestClient.parse) == nil)
            _ = try await HTTPTestClient.request("POST", target, body: "4late", port: server.port)
            let response = try #require(await pending.next(HTTPTestClient.parse))
            #expect(response.text == "4late")
        }
    }

    @Test func concurrentGetClosesTheSession() async throws {
        try await TestServer.with { server in
            let sid = try await server.openPollingSession()
            let target = "/engine.io/?EIO=4&transport=polling&sid=\(sid)"
            let first = try await RawConnection.connect(port: server.port)
            try await first.send(HTTPTestClient.requestBytes("GET", target))
            // Make sure the first GET is pending before the second one arrives.
            #expect(await first.next(timeout: .milliseconds(100), HTTPTestClient.parse) == nil)
            let second = try await HTTPTestClient.request("GET", target, port: server.port)
            #expect(second.status == 400)
            let firstResponse = try #require(await first.next(HTTPTestClient.parse))
            #expect(firstResponse.status == 200)
            #expect(firstResponse.text == "1")
            let after = try await HTTPTestClient.request("GET", target, port: server.port)
            #expect(after.status == 400)
            await server.expectNoSessions()
            #expect(server.delegate.closeReasons == [.protocolViolation("overlapping GET requests")])
        }
    }

    @Test func invalidPacketInPostClosesTheSession() async throws {
        try await TestServer.with { server in
            for body in ["abc", "4ok\u{1e}zzz", "5", "bnot-base64!"] {
                let sid = try await server.openPollingSession()
                let target = "/engine.io/?EIO=4&transport=polling&sid=\(sid)"
                let post = try await HTTPTestClient.request("POST", target, body: body, port: server.port)
                #expect(post.status == 400, "body \(body)")
                let poll = try await HTTPTestClient.request("GET", target, port: server.port)
                #expect(poll.status == 400)
            }
            await server.expectNoSessions()
        }
    }

    @Test func oversizedPostClosesTheSession() async throws {
        try await TestServer.with(.init(path: "/engine.io/", maxPayload: 1000)) { server in
            let sid = try await server.openPollingSession()
            let target = "/engine.io/?EIO=4&transport=polling&sid=\(sid)"
            let ok = try await HTTPTestClient.request("POST", target, body: "4" + String(repeating: "a", count: 999), port: server.port)
            #expect(ok.status == 200)
            let tooBig = try await HTTPTestClient.request("POST", target, body: "4" + String(repeating: "a", count: 1000), port: server.port)
            #expect(tooBig.status == 413)
            await server.expectNoSessions()
        }
    }

    @Test func clientCloseEndsThePendingPollWithNoop() async throws {
        try await TestServer.with { server in
            let sid = try await server.openPollingSession()
            let target = "/engine.io/?EIO=4&transport=polling&sid=\(sid)"
            let pending = try await RawConnection.connect(port: server.port)
            try await pending.send(HTTPTestClient.requestBytes("GET", target))
            #expect(await pending.next(timeout: .milliseconds(100), HTTPTestClient.parse) == nil)
            let post = try await HTTPTestClient.request("POST", target, body: "1", port: server.port)
            #expect(post.text == "ok")
            let response = try #require(await pending.next(HTTPTestClient.parse))
            #expect(response.text == "6")
            #expect(try await HTTPTestClient.request("GET", target, port: server.port).status == 400)
            await server.expectNoSessions()
            #expect(server.delegate.closeReasons == [.clientClose])
        }
    }

    @Test func serverCloseDeliversQueuedPacketsThenClose() async throws {
        try await TestServer.with { server in
            let sid = try await server.openPollingSession()
            let target = "/engine.io/?EIO=4&transport=polling&sid=\(sid)"
            _ = try await HTTPTestClient.request("POST", target, body: "4close-me", port: server.port)
            let poll = try await HTTPTestClient.request("GET", target, port: server.port)
            #expect(poll.text == "4bye\u{1e}1")
            await server.expectNoSessions()
            #expect(server.delegate.closeReasons == [.serverClose])
        }
    }

    @Test func heartbeatPingsAndClosesWithoutPong() async throws {
        let configuration = EngineIOConfiguration(path: "/engine.io/", pingInterval: .milliseconds(100), pingTimeout: .seconds(1))
        try await TestServer.with(configuration) { server in
            let sid = try await server.openPollingSession()
            let target = "/engine.io/?EIO=4&transport=polling&sid=\(sid)"
            for _ in 0..<3 {
                let ping = try await HTTPTestClient.request("GET", target, port: server.port)
                #expect(ping.text == "2")
                #expect(try await HTTPTestClient.request("POST", target, body: "3", port: server.port).text == "ok")
            }
            // Stop answering: the session must go.
            await server.expectNoSessions()
            #expect(server.delegate.closeReasons == [.pingTimeout])
            #expect(try await HTTPTestClient.request("GET", target, port: server.port).status == 400)
        }
    }

    @Test func slowPollingConsumerIsDisconnected() async throws {
        try await TestServer.with(.init(path: "/engine.io/", maxOutboundQueueBytes: 10_000)) { server in
            let sid = try await server.openPollingSession()
            let target = "/engine.io/?EIO=4&transport=polling&sid=\(sid)"
            _ = try await HTTPTestClient.request("POST", target, body: "4flood:20:1000", port: server.port)
            await server.expectNoSessions()
            #expect(server.delegate.closeReasons == [.slowConsumer])
        }
    }

    @Test func corsPreflightAndHeaders() async throws {
        let cors = EngineIOConfiguration.CORS(allowedOrigins: ["https://app.example"], allowCredentials: true)
        try await TestServer.with(.init(path: "/engine.io/", cors: cors)) { server in
            let preflight = try await HTTPTestClient.request(
                "OPTIONS",
                "/engine.io/?EIO=4&transport=polling",
                headers: [("Origin", "https://app.example"), ("Access-Control-Request-Headers", "content-type")],
                port: server.port
            )
            #expect(preflight.status == 204)
            #expect(preflight.headers["access-control-allow-origin"] == "https://app.example")
            #expect(preflight.headers["access-control-allow-credentials"] == "true")
            #expect(preflight.headers["access-control-allow-headers"] == "content-type")
            #expect(preflight.headers["access-control-allow-methods"]?.contains("POST") == true)

            let handshake = try await HTTPTestClient.request(
                "GET",
                "/engine.io/?EIO=4&transport=polling",
                headers: [("Origin", "https://app.example")],
                port: server.port
            )
            #expect(handshake.status == 200)
            #expect(handshake.headers["access-control-allow-origin"] == "https://app.example")

            let foreign = try await HTTPTestClient.request(
                "GET",
                "/engine.io/?EIO=4&transport=polling",
                headers: [("Origin", "https://evil.example")],
                port: server.port
            )
            #expect(foreign.status == 400)
        }
        try await TestServer.with(.init(path: "/engine.io/", cors: .anyOrigin)) { server in
            let response = try await HTTPTestClient.request(
                "GET",
                "/engine.io/?EIO=4&transport=polling",
                headers: [("Origin", "https://any.example")],
                port: server.port
            )
            #expect(response.headers["access-control-allow-origin"] == "*")
        }
        try await TestServer.with(.init(path: "/engine.io/", cors: .disabled)) { server in
            let response = try await HTTPTestClient.request(
                "GET",
                "/engine.io/?EIO=4&transport=polling",
                headers: [("Origin", "https://any.example")],
                port: server.port
            )
            #expect(response.status == 200)
            #expect(response.headers["access-control-allow-origin"] == nil)
        }
    }
}
