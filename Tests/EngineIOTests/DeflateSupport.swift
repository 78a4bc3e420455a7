import CZlib
import Foundation
import Testing

// MARK: - Client-side raw deflate (independent of the server's codec; same zlib)

/// A client-side raw-deflate compressor; `reset` drops the history after each message (no context takeover).
final class TestDeflater {
    private let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
    private let resetEachMessage: Bool

    init(windowBits: Int32 = 15, resetEachMessage: Bool = false) {
        self.resetEachMessage = resetEachMessage
        stream.initialize(to: z_stream())
        let code = czlib_deflate_init_raw(stream, 6, windowBits, 8)
        precondition(code == Z_OK, "test deflater init failed: \(code)")
    }

    deinit {
        deflateEnd(stream)
        stream.deallocate()
    }

    /// One message's compressed bytes, without the `00 00 ff ff` tail (RFC 7692 §7.2.1).
    func compress(_ input: [UInt8]) -> [UInt8] {
        var input = input
        var output = [UInt8](repeating: 0, count: input.count + 1024)
        let produced = input.withUnsafeMutableBufferPointer { inBuffer in
            output.withUnsafeMutableBufferPointer { outBuffer in
                stream.pointee.next_in = inBuffer.baseAddress
                stream.pointee.avail_in = uInt(inBuffer.count)
                stream.pointee.next_out = outBuffer.baseAddress
                stream.pointee.avail_out = uInt(outBuffer.count)
                let code = deflate(stream, Z_SYNC_FLUSH)
                precondition(code == Z_OK && stream.pointee.avail_in == 0, "test deflate failed: \(code)")
                return outBuffer.count - Int(stream.pointee.avail_out)
            }
        }
        if resetEachMessage { deflateReset(stream) }
        let bytes = Array(output[..<produced])
        precondition(bytes.suffix(4) == [0, 0, 0xFF, 0xFF])
        return Array(bytes.dropLast(4))
    }
}

/// A client-side raw-deflate decompressor (keeps the server's history unless `resetEachMessage`).
final class TestInflater {
    private let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
    private let resetEachMessage: Bool

    init(resetEachMessage: Bool = false) {
        self.resetEachMessage = resetEachMessage
        stream.initialize(to: z_stream())
        let code = czlib_inflate_init_raw(stream, 15)
        precondition(code == Z_OK, "test inflater init failed: \(code)")
    }

    deinit {
        inflateEnd(stream)
        stream.deallocate()
    }

    /// Decompresses one whole message (the tail is appended here); nil on corrupt data.
    func decompress(_ payload: [UInt8], maxOutput: Int = 10_000_000) -> [UInt8]? {
        var input = payload + [0, 0, 0xFF, 0xFF]
        var output = [UInt8](repeating: 0, count: maxOutput)
        let produced: Int? = input.withUnsafeMutableBufferPointer { inBuffer in
            output.withUnsafeMutableBufferPointer { outBuffer in
                stream.pointee.next_in = inBuffer.baseAddress
                stream.pointee.avail_in = uInt(inBuffer.count)
                stream.pointee.next_out = outBuffer.baseAddress
                stream.pointee.avail_out = uInt(outBuffer.count)
                let code = inflate(stream, Z_SYNC_FLUSH)
                guard code == Z_OK || code == Z_BUF_ERROR, stream.pointee.avail_in == 0 else { return nil }
                return outBuffer.count - Int(stream.pointee.avail_out)
            }
        }
        if resetEachMessage { inflateReset(stream) }
        return produced.map { Array(output[..<$0]) }
    }
}

// MARK: - WebSocket client that sees RSV1 and the 101 headers

/// A frame with its FIN and RSV1 bits.
typealias DeflateFrame = WSFrame

/// A minimal masked-frame WebSocket client that can offer permessage-deflate and send RSV1 frames.
struct DeflateWSClient {
    let connection: RawConnection
    let status: Int
    /// The `Sec-WebSocket-Extensions` header of the 101 response (nil when absent).
    let extensions: String?
    let wire = WebSocketWire()

    /// Upgrades `target` offering `offer` (nil: no `Sec-WebSocket-Extensions` header at all).
    static func connect(port: Int, offer: String?, target: String = "/engine.io/?EIO=4&transport=websocket") async throws -> DeflateWSClient {
        let connection = try await RawConnection.connect(port: port)
        var headers = [
            ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13"),
        ]
        if let offer { headers.append(("Sec-WebSocket-Extensions", offer)) }
        try await connection.send(HTTPTestClient.requestBytes("GET", target, headers: headers))
        let head = await connection.next { bytes -> (String, consumed: Int)? in
            guard let end = HTTPTestClient.find([13, 10, 13, 10], in: bytes) else { return nil }
            return (String(decoding: bytes[..<end], as: UTF8.self), end + 4)
        }
        guard let head else { throw TestClientError(description: "no upgrade response") }
        let lines = head.components(separatedBy: "\r\n")
        let status = lines.first.flatMap { line in line.split(separator: " ").dropFirst().first.flatMap { Int($0) } } ?? 0
        let extensions = lines.dropFirst().first { $0.lowercased().hasPrefix("sec-websocket-extensions:") }
            .map { String($0.dropFirst("sec-websocket-extensions:".count)).trimmingCharacters(in: .whitespaces) }
        return DeflateWSClient(connection: connection, status: status, extensions: extensions)
    }

    /// Sends one frame (masked), with the given bits.
    func send(opcode: UInt8, payload: [UInt8], fin: Bool = true, rsv1: Bool = false) async throws {
        try await connection.send(wire.encode(opcode: opcode, payload: payload, fin: fin, rsv1: rsv1))
    }

    /// The next frame from the server (nil when the connection closed or nothing came in `timeout`).
    func nextFrame(timeout: Duration = .seconds(5)) async -> DeflateFrame? {
        await connection.nextFrame(wire, timeout: timeout)
    }

    /// The next frame that is not an Engine.IO ping `2` (pings are answered with `3`).
    func nextMessage(timeout: Duration = .seconds(5)) async throws -> DeflateFrame? {
        while let frame = await nextFrame(timeout: timeout) {
            if frame.opcode == WSFrame.text, !frame.rsv1, frame.payload == [UInt8(ascii: "2")] {
                try await send(opcode: WSFrame.text, payload: [UInt8(ascii: "3")])
                continue
            }
            return frame
        }
        return nil
    }

    /// Reads the open packet and returns the sid.
    func readOpen() async throws -> String {
        let open = try #require(await nextFrame())
        return try #require(TestServer.sid(fromOpenPacket: String(decoding: open.payload, as: UTF8.self)))
    }

    /// Reads until the server's close frame; its status code, or nil if the connection ended without one.
    func waitForCloseCode() async throws -> UInt16? {
        while let frame = try await nextMessage() {
            if frame.opcode == WSFrame.close {
                return frame.payload.count >= 2 ? UInt16(frame.payload[0]) << 8 | UInt16(frame.payload[1]) : 0
            }
        }
        return nil
    }

    func close() { connection.close() }
}
