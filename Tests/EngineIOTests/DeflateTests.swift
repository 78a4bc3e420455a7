@testable import EngineIO
import NIOCore
import Testing

private let offer = "permessage-deflate; client_max_window_bits"
private let deflateConfig = EngineIOConfiguration(path: "/engine.io/", perMessageDeflate: .init())

private func text(_ frame: DeflateFrame?, inflater: TestInflater) -> String? {
    guard let frame else { return nil }
    let bytes = frame.rsv1 ? inflater.decompress(frame.payload) : frame.payload
    return bytes.map { String(decoding: $0, as: UTF8.self) }
}

@Suite("permessage-deflate negotiation (no sockets)")
struct DeflateNegotiationTests {
    private func negotiate(_ offers: [String], _ settings: PerMessageDeflate = .init()) -> NegotiatedDeflate? {
        NegotiatedDeflate.negotiate(offers: offers, settings: settings)
    }

    @Test func plainOfferIsAcceptedWithDefaults() throws {
        let result = try #require(negotiate(["permessage-deflate"]))
        #expect(result.responseHeader == "permessage-deflate")
        #expect(!result.serverNoContextTakeover && !result.clientNoContextTakeover)
        #expect(result.serverWindowBits == 15 && result.clientWindowBits == 15 && result.threshold == 1024)
    }

    @Test func browserOfferWithClientMaxWindowBits() throws {
        // Chrome/Firefox: `permessage-deflate; client_max_window_bits`; with the default 15 nothing to limit.
        #expect(negotiate([offer])?.responseHeader == "permessage-deflate")
        let limited = try #require(negotiate([offer], .init(maxWindowBits: 12)))
        #expect(limited.responseHeader == "permessage-deflate; client_max_window_bits=12")
        #expect(limited.serverWindowBits == 12 && limited.clientWindowBits == 12)
        // A value offered by the client bounds the answer.
        let bounded = try #require(negotiate(["permessage-deflate; client_max_window_bits=10"]))
        #expect(bounded.clientWindowBits == 10 && bounded.serverWindowBits == 15)
        #expect(bounded.responseHeader == "permessage-deflate; client_max_window_bits=10")
        #expect(
            negotiate(["permessage-deflate; client_max_window_bits=10"], .init(maxWindowBits: 11))?.responseHeader
                == "permessage-deflate; client_max_window_bits=10")
    }

    @Test func contextTakeoverParameters() throws {
        let asked = try #require(negotiate(["permessage-deflate; server_no_context_takeover; client_no_context_takeover"]))
        #expect(asked.responseHeader == "permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        #expect(asked.serverNoContextTakeover && asked.clientNoContextTakeover)
        let configured = try #require(negotiate(["permessage-deflate"], .init(serverNoContextTakeover: true, clientNoContextTakeover: true)))
        #expect(configured.responseHeader == "permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    }

    @Test func serverMaxWindowBits() throws {
        let result = try #require(negotiate(["permessage-deflate; server_max_window_bits=10"]))
        #expect(result.responseHeader == "permessage-deflate; server_max_window_bits=10")
        #expect(result.serverWindowBits == 10)
        #expect(negotiate(["permessage-deflate; server_max_window_bits=\"11\""])?.serverWindowBits == 11)
        // 8 cannot be honoured with zlib's raw deflate: declined; the next offer is taken instead.
        #expect(negotiate(["permessage-deflate; server_max_window_bits=8"]) == nil)
        #expect(negotiate(["permessage-deflate; server_max_window_bits=8, permessage-deflate"])?.responseHeader == "permessage-deflate")
    }

    @Test func invalidOffersAreDeclined() {
        for bad in [
            "permessage-deflate; unknown_param",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; server_no_context_takeover=1",
            "x-webkit-deflate-frame",
            "",
        ] {
            #expect(negotiate([bad]) == nil, "\(bad)")
        }
        // Several header lines and other extensions around it.
        #expect(negotiate(["x-webkit-deflate-frame", "Permessage-Deflate ;  Client_Max_Window_Bits"])?.responseHeader == "permessage-deflate")
    }

    @Test func codecRoundTripAndBound() throws {
        let deflater = RawDeflater(windowBits: 15, level: 6, resetAfterMessage: false)
        let inflater = RawInflater(windowBits: 15, resetAfterMessage: false)
        let message = Array(String(repeating: "hello parley ", count: 500).utf8)
        let allocator = ByteBufferAllocator()
        var sizes: [Int] = []
        for _ in 0..<3 {
            let compressed = try deflater.compress(ByteBuffer(bytes: message), allocator: allocator, headerRoom: 14)
            sizes.append(compressed.readableBytes)
            var output = allocator.buffer(capacity: 0)
            try inflater.decompress(compressed, final: true, limit: 1_000_000, into: &output)
            #expect(Array(output.readableBytesView) == message)
        }
        // Context takeover: a repeated message refers back to the previous one.
        #expect(sizes[1] < sizes[0])
        // The bound: decompression stops past the limit.
        let bomb = try RawDeflater(windowBits: 15, level: 9, resetAfterMessage: true)
            .compress(ByteBuffer(bytes: [UInt8](repeating: 0, count: 5_000_000)), allocator: allocator, headerRoom: 0)
        var output = allocator.buffer(capacity: 0)
        #expect(throws: DeflateError.tooLarge(limit: 100_000)) {
            try RawInflater(windowBits: 15, resetAfterMessage: true).decompress(bomb, final: true, limit: 100_000, into: &output)
        }
        #expect(output.readableBytes <= 100_001)
        // Corrupt input.
        var garbage = allocator.buffer(capacity: 0)
        #expect(throws: DeflateError.self) {
            try RawInflater(windowBits: 15, resetAfterMessage: false).decompress(
                ByteBuffer(bytes: [0xFF, 0xFF, 0xFF, 0x00, 0x12]), final: true, limit: 1000, into: &garbage)
        }
    }
}

@Suite("permessage-deflate over real sockets")
struct DeflateSocketTests {
    @Test func flagOffNeverNegotiates() async throws {
        try await TestServer.with { server in
            let client = try await DeflateWSClient.connect(port: server.port, offer: offer)
            #expect(client.status == 101)
            #expect(client.extensions == nil)
            _ = try await client.readOpen()
            let big = "4" + String(repeating: "uncompressed ", count: 200)
            try await client.send(opcode: WSFrame.text, payload: Array(big.utf8))
            let echo = try #require(try await client.nextMessage())
            #expect(!echo.rsv1)
            #expect(String(decoding: echo.payload, as: UTF8.self) == big)
            client.close()
            await server.expectNoSessions()
        }
    }

    @Test func clientWithoutOfferWorksUnchanged() async throws {
        try await TestServer.with(deflateConfig) { server in
            let client = try await DeflateWSClient.connect(port: server.port, offer: nil)
            #expect(client.status == 101)
            #expect(client.extensions == nil)
            _ = try await client.readOpen()
            let big = "4" + String(repeating: "plain ", count: 500)
            try await client.send(opcode: WSFrame.text, payload: Array(big.utf8))
            let echo = try #require(try await client.nextMessage())
            #expect(!echo.rsv1)
            #expect(String(decoding: echo.payload, as: UTF8.self) == big)
            // The existing raw client (no extensions) too.
            let (plain, _) = try await WSTestClient.open(port: server.port)
            try await plain.send("4hello")
            #expect(try await plain.nextMessage()?.text == "4hello")
            plain.close()
            client.close()
            await server.expectNoSessions()
        }
    }

    @Test func compressedTextAndBinaryBothWays() async throws {
        try await TestServer.with(deflateConfig) { server in
            let client = try await DeflateWSClient.connect(port: server.port, offer: offer)
            #expect(client.status == 101)
            #expect(client.extensions == "permessage-deflate")
            _ = try await client.readOpen()  // small: never compressed
            let deflater = TestDeflater()
            let inflater = TestInflater()
            let big = "4" + String(repeating: "{\"text\":\"hello from the bot\"} ", count: 100)
            var echoSizes: [Int] = []
            for _ in 0..<3 {
                // Context takeover on both sides: the second and third messages refer to the first.
                try await client.send(opcode: WSFrame.text, payload: deflater.compress(Array(big.utf8)), rsv1: true)
                let echo = try #require(try await client.nextMessage())
                #expect(echo.opcode == WSFrame.text && echo.rsv1 && echo.fin)
                #expect(echo.payload.count < big.utf8.count / 4)
                #expect(text(echo, inflater: inflater) == big)
                echoSizes.append(echo.payload.count)
            }
            #expect(echoSizes[1] < echoSizes[0])
            // Binary, compressed in and out.
            let binary = (0..<4000).map { UInt8($0 % 7) }
            try await client.send(opcode: WSFrame.binary, payload: deflater.compress(binary), rsv1: true)
            let binaryEcho = try #require(try await client.nextMessage())
            #expect(binaryEcho.opcode == WSFrame.binary && binaryEcho.rsv1)
            #expect(inflater.decompress(binaryEcho.payload) == binary)
            // Below the threshold: the client may still compress; the server answers uncompressed.
            try await client.send(opcode: WSFrame.text, payload: deflater.compress(Array("4small".utf8)), rsv1: true)
            let small = try #require(try await client.nextMessage())
            #expect(!small.rsv1 && String(decoding: small.payload, as: UTF8.self) == "4small")
            // Uncompressed messages from the client are fine on a deflate connection.
            try await client.send(opcode: WSFrame.text, payload: Array(big.utf8))
            #expect(text(try await client.nextMessage(), inflater: inflater) == big)
            #expect(server.engine.sessionCount == 1)
            client.close()
            await server.expectNoSessions()
        }
    }

    @Test func fragmentedCompressedMessage() async throws {
        try await TestServer.with(deflateConfig) { server in
            let client = try await DeflateWSClient.connect(port: server.port, offer: offer)
            _ = try await client.readOpen()
            let big = "4" + (0..<600).map { "item \($0);" }.joined()
            let compressed = TestDeflater().compress(Array(big.utf8))
            let third = compressed.count / 3
            // RSV1 only on the first frame (RFC 7692 §6.1); a ping in between is answered.
            try await client.send(opcode: WSFrame.text, payload: Array(compressed[..<third]), fin: false, rsv1: true)
            try await client.send(opcode: 0, payload: Array(compressed[third..<2 * third]), fin: false)
            try await client.send(opcode: WSFrame.ping, payload: [7])
            try await client.send(opcode: 0, payload: Array(compressed[(2 * third)...]), fin: true)
            let pong = try #require(try await client.nextMessage())
            #expect(pong.opcode == WSFrame.pong && !pong.rsv1 && pong.payload == [7])
            #expect(text(try await client.nextMessage(), inflater: TestInflater()) == big)
            // An uncompressed fragmented message still works.
            try await client.send(opcode: WSFrame.text, payload: Array("4frag".utf8), fin: false)
            try await client.send(opcode: 0, payload: Array("ment".utf8), fin: true)
            #expect(text(try await client.nextMessage(), inflater: TestInflater()) == "4fragment")
            client.close()
            await server.expectNoSessions()
        }
    }

    @Test func oversizedDecompressedPayloadCloses1009() async throws {
        let config = EngineIOConfiguration(path: "/engine.io/", maxPayload: 10_000, perMessageDeflate: .init())
        try await TestServer.with(config) { server in
            let client = try await DeflateWSClient.connect(port: server.port, offer: offer)
            _ = try await client.readOpen()
            // 9 999 bytes decompressed: accepted.
            let fits = "4" + String(repeating: "a", count: 9_998)
            try await client.send(opcode: WSFrame.text, payload: TestDeflater().compress(Array(fits.utf8)), rsv1: true)
            #expect(text(try await client.nextMessage(), inflater: TestInflater())?.utf8.count == 9_999)
            // 2 MB of zeros compress to about 2 KB: a small frame that must not be inflated in full.
            let bomb = TestDeflater(resetEachMessage: true).compress([UInt8](repeating: 0x30, count: 2_000_000))
            #expect(bomb.count < 10_000)
            try await client.send(opcode: WSFrame.text, payload: bomb, rsv1: true)
            #expect(try await client.waitForCloseCode() == 1009)
            await server.expectNoSessions()
            #expect(server.delegate.closeReasons.count == 1)
            if case .protocolViolation(let reason) = server.delegate.closeReasons.first {
                #expect(reason.contains("payload too large"))
            } else {
                Issue.record("expected a protocol violation, got \(server.delegate.closeReasons)")
            }
        }
    }

    @Test func uncompressedOversizedFragmentsClose1009() async throws {
        // With deflate negotiated, the deflate handler replaces NIO's aggregator: the limit still holds.
        let config = EngineIOConfiguration(path: "/engine.io/", maxPayload: 1000, perMessageDeflate: .init())
        try await TestServer.with(config) { server in
            let client = try await DeflateWSClient.connect(port: server.port, offer: offer)
            _ = try await client.readOpen()
            try await client.send(opcode: WSFrame.text, payload: Array(("4" + String(repeating: "a", count: 600)).utf8), fin: false)
            try await client.send(opcode: 0, payload: Array(String(repeating: "b", count: 600).utf8), fin: true)
            #expect(try await client.waitForCloseCode() == 1009)
            await server.expectNoSessions()
        }
    }

    @Test func upgradeFromPollingWithCompression() async throws {
        try await TestServer.with(deflateConfig) { server in
            let sid = try await server.openPollingSession()
            // A large message queued over polling is flushed over the compressed WebSocket after `5`.
            let big = "4" + String(repeating: "queued before the upgrade ", count: 100)
            let post = try await HTTPTestClient.request("POST", "/engine.io/?EIO=4&transport=polling&sid=\(sid)", body: big, port: server.port)
            #expect(post.status == 200)
            let client = try await DeflateWSClient.connect(port: server.port, offer: offer, target: "/engine.io/?EIO=4&transport=websocket&sid=\(sid)")
            #expect(client.status == 101 && client.extensions == "permessage-deflate")
            try await client.send(opcode: WSFrame.text, payload: Array("2probe".utf8))
            #expect(text(try await client.nextMessage(), inflater: TestInflater()) == "3probe")
            try await client.send(opcode: WSFrame.text, payload: Array("5".utf8))
            let inflater = TestInflater()
            let flushed = try #require(try await client.nextMessage())
            #expect(flushed.rsv1)
            #expect(text(flushed, inflater: inflater) == big)
            try await client.send(opcode: WSFrame.text, payload: TestDeflater().compress(Array(big.utf8)), rsv1: true)
            #expect(text(try await client.nextMessage(), inflater: inflater) == big)
            #expect(server.engine.sessionCount == 1)
            client.close()
            await server.expectNoSessions()
        }
    }

    @Test func noContextTakeoverIsHonoured() async throws {
        try await TestServer.with(deflateConfig) { server in
            let client = try await DeflateWSClient.connect(
                port: server.port, offer: "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
            )
            #expect(client.extensions == "permessage-deflate; server_no_context_takeover; client_no_context_takeover")
            _ = try await client.readOpen()
            let big = "4" + String(repeating: "no context takeover ", count: 100)
            let deflater = TestDeflater(resetEachMessage: true)
            for _ in 0..<2 {
                try await client.send(opcode: WSFrame.text, payload: deflater.compress(Array(big.utf8)), rsv1: true)
                // Each server message decompresses on its own, with a fresh inflater.
                #expect(text(try await client.nextMessage(), inflater: TestInflater()) == big)
            }
            client.close()
            await server.expectNoSessions()
        }
    }

    @Test func badCompressedInputCloses() async throws {
        try await TestServer.with(deflateConfig) { server in
            // Corrupt deflate data: 1007.
            let corrupt = try await DeflateWSClient.connect(port: server.port, offer: offer)
            _ = try await corrupt.readOpen()
            try await corrupt.send(opcode: WSFrame.text, payload: [0xFF, 0xFF, 0xFF, 0x00, 0x12], rsv1: true)
            #expect(try await corrupt.waitForCloseCode() == 1007)
            // RSV1 on a control frame: 1002.
            let control = try await DeflateWSClient.connect(port: server.port, offer: offer)
            _ = try await control.readOpen()
            try await control.send(opcode: WSFrame.ping, payload: [1], rsv1: true)
            #expect(try await control.waitForCloseCode() == 1002)
            await server.expectNoSessions()
            #expect(server.delegate.closeReasons.count == 2)
        }
    }
}
