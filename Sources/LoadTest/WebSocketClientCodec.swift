import ExtrasBase64
import NIOCore

/// A WebSocket protocol violation seen by the load generator (RFC 6455 framing or handshake).
public struct WebSocketClientError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What was wrong, e.g. `frame payload of 20000000 bytes exceeds the 16777216-byte limit`.
    public var reason: String
    /// Creates an error with a human-readable reason.
    public init(_ reason: String) { self.reason = reason }
    /// `websocket: <reason>`.
    public var description: String { "websocket: \(reason)" }
}

/// One WebSocket frame read from the server (payload already unmasked).
public struct WebSocketInboundFrame: Sendable, Equatable {
    /// FIN bit: the last frame of a message.
    public var fin: Bool
    /// Opcode (0 continuation, 1 text, 2 binary, 8 close, 9 ping, 10 pong).
    public var opcode: UInt8
    /// The frame payload (a slice of the read buffer when possible, no copy).
    public var payload: ByteBuffer
}

/// Client-side RFC 6455 framing: parses server frames and writes masked client frames.
///
/// Pure functions over `ByteBuffer`; no channel, no allocation on the common path except the
/// output buffer a caller provides.
public enum WebSocketClientCodec {
    /// Opcode: continuation frame.
    public static let opContinuation: UInt8 = 0x0
    /// Opcode: text frame.
    public static let opText: UInt8 = 0x1
    /// Opcode: binary frame.
    public static let opBinary: UInt8 = 0x2
    /// Opcode: close.
    public static let opClose: UInt8 = 0x8
    /// Opcode: ping.
    public static let opPing: UInt8 = 0x9
    /// Opcode: pong.
    public static let opPong: UInt8 = 0xA

    /// Largest frame payload accepted from a server (16 MiB).
    public static let maxPayload = 16 << 20

    /// Bytes reserved in front of a payload for the longest client header (2 + 8 + 4 mask).
    public static let reservedHeader = 14

    /// Reads one complete frame from the front of `buffer`.
    ///
    /// Returns `nil` and leaves `buffer` untouched when the frame is not complete yet. Throws on a
    /// frame no server may send (reserved bits, oversized or fragmented control frames, > `maxPayload`).
    public static func nextFrame(from buffer: inout ByteBuffer) throws(WebSocketClientError) -> WebSocketInboundFrame? {
        let start = buffer.readerIndex
        guard let b0 = buffer.getInteger(at: start, as: UInt8.self),
            let b1 = buffer.getInteger(at: start + 1, as: UInt8.self)
        else { return nil }
        if b0 & 0x70 != 0 { throw WebSocketClientError("frame with reserved bits 0x\(String(b0 & 0x70, radix: 16)) set (no extension was negotiated)") }
        let opcode = b0 & 0x0F
        let fin = b0 & 0x80 != 0
        let masked = b1 & 0x80 != 0
        var length = Int(b1 & 0x7F)
        var offset = start + 2
        if length == 126 {
            guard let l = buffer.getInteger(at: offset, as: UInt16.self) else { return nil }
            length = Int(l); offset += 2
        } else if length == 127 {
            guard let l = buffer.getInteger(at: offset, as: UInt64.self) else { return nil }
            guard l <= UInt64(maxPayload) else { throw WebSocketClientError("frame payload of \(l) bytes exceeds the \(maxPayload)-byte limit") }
            length = Int(l); offset += 8
        }
        if opcode >= 0x8 {
            if !fin { throw WebSocketClientError("fragmented control frame (opcode \(opcode))") }
            if length > 125 { throw WebSocketClientError("control frame with \(length)-byte payload (limit 125)") }
        }
        if length > maxPayload { throw WebSocketClientError("frame payload of \(length) bytes exceeds the \(maxPayload)-byte limit") }
        var mask: UInt32 = 0
        if masked {
            guard let m = buffer.getInteger(at: offset, as: UInt32.self) else { return nil }
            mask = m; offset += 4
        }
        guard buffer.writerIndex - offset >= length else { return nil }
        buffer.moveReaderIndex(to: offset)
        guard var payload = buffer.readSlice(length: length) else { return nil }
        if masked {
            // Servers must not mask, but unmask rather than fail: copy, since the slice shares storage.
            var copy = ByteBuffer()
            copy.writeImmutableBuffer(payload)
            applyMask(mask, to: &copy)
            payload = copy
        }
        return WebSocketInboundFrame(fin: fin, opcode: opcode, payload: payload)
    }

    /// XORs the readable bytes of `buffer` with the 4-byte big-endian `mask` (RFC 6455 5.3).
    public static func applyMask(_ mask: UInt32, to buffer: inout ByteBuffer) {
        let key: (UInt8, UInt8, UInt8, UInt8) = (UInt8(mask >> 24), UInt8((mask >> 16) & 0xFF), UInt8((mask >> 8) & 0xFF), UInt8(mask & 0xFF))
        buffer.withUnsafeMutableReadableBytes { raw in
            var i = 0
            let n = raw.count
            while i < n {
                switch i & 3 {
                case 0: raw[i] ^= key.0
                case 1: raw[i] ^= key.1
                case 2: raw[i] ^= key.2
                default: raw[i] ^= key.3
                }
                i += 1
            }
        }
    }

    /// Builds one masked client frame in a fresh buffer.
    ///
    /// `writePayload` appends the payload; the header is then written in front of it (space is
    /// reserved first, so the payload is written once and masked in place).
    public static func clientFrame(
        opcode: UInt8, mask: UInt32, allocator: ByteBufferAllocator, capacity: Int = 128,
        _ writePayload: (inout ByteBuffer) -> Void
    ) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: capacity + reservedHeader)
        buffer.moveWriterIndex(forwardBy: reservedHeader)
        buffer.moveReaderIndex(forwardBy: reservedHeader)
        writePayload(&buffer)
        let length = buffer.readableBytes
        applyMask(mask, to: &buffer)
        let headerLength = 2 + (length < 126 ? 0 : (length <= 0xFFFF ? 2 : 8)) + 4
        let headerStart = reservedHeader - headerLength
        var at = headerStart
        buffer.setInteger(0x80 | opcode, at: at); at += 1
        if length < 126 {
            buffer.setInteger(0x80 | UInt8(length), at: at); at += 1
        } else if length <= 0xFFFF {
            buffer.setInteger(UInt8(0x80 | 126), at: at); at += 1
            buffer.setInteger(UInt16(length), at: at); at += 2
        } else {
            buffer.setInteger(UInt8(0x80 | 127), at: at); at += 1
            buffer.setInteger(UInt64(length), at: at); at += 8
        }
        buffer.setInteger(mask, at: at)
        buffer.moveReaderIndex(to: headerStart)
        return buffer
    }

    /// Builds one masked client frame carrying `payload`.
    public static func clientFrame(opcode: UInt8, payload: some Collection<UInt8>, mask: UInt32, allocator: ByteBufferAllocator) -> ByteBuffer {
        clientFrame(opcode: opcode, mask: mask, allocator: allocator, capacity: payload.count) { $0.writeBytes(payload) }
    }
}

/// The HTTP/1.1 upgrade request and the check of the server's `101` answer (RFC 6455 4.1/4.2.2).
public enum WebSocketHandshake {
    /// The GUID appended to the key before hashing.
    static let guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    /// The request bytes for `GET path` with the given base64 `key`.
    public static func request(host: String, port: Int, path: String, key: String) -> String {
        "GET \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: \(key)\r\nSec-WebSocket-Version: 13\r\nUser-Agent: parley-loadtest\r\n\r\n"
    }

    /// A key: base64 of 16 bytes from `random`.
    public static func makeKey(_ random: inout SplitMix64) -> String {
        var bytes = [UInt8]()
        bytes.reserveCapacity(16)
        for _ in 0..<2 {
            let r = random.next()
            for s in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8((r >> UInt64(s)) & 0xFF)) }
        }
        return Base64.encodeToString(bytes: bytes)
    }

    /// The `Sec-WebSocket-Accept` value a server must answer for `key`.
    public static func acceptValue(forKey key: String) -> String {
        Base64.encodeToString(bytes: SHA1.hash(Array((key + guid).utf8)))
    }

    /// Outcome of looking at the bytes received so far.
    public enum ResponseCheck: Equatable, Sendable {
        /// The header block is not complete yet.
        case incomplete
        /// A valid `101` upgrade; the header block (`headerLength` bytes) may be followed by frames.
        case upgraded(headerLength: Int)
        /// Not an upgrade, or a wrong accept value.
        case rejected(String)
    }

    /// Checks the response header block at the front of `bytes` against `key`.
    public static func checkResponse(_ bytes: UnsafeRawBufferPointer, key: String) -> ResponseCheck {
        // Find the end of the header block.
        var end = -1
        if bytes.count >= 4 {
            for i in 0...(bytes.count - 4) where bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 {
                end = i
                break
            }
        }
        if end < 0 {
            return bytes.count > 16384 ? .rejected("response header larger than 16 KiB") : .incomplete
        }
        let head = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[0..<end]), as: UTF8.self)
        let lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
        guard let status = lines.first else { return .rejected("empty response") }
        let parts = status.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), parts[1] == "101" else {
            return .rejected("expected HTTP 101 Switching Protocols, got `\(status)`")
        }
        var accept: Substring?
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            if line[..<colon].lowercased() == "sec-websocket-accept" {
                accept = line[line.index(after: colon)...].drop(while: { $0 == " " || $0 == "\t" })
                while let last = accept?.last, last == " " || last == "\t" { accept = accept?.dropLast() }
            }
        }
        let expected = acceptValue(forKey: key)
        guard let accept else { return .rejected("101 response without Sec-WebSocket-Accept") }
        guard accept == expected else { return .rejected("Sec-WebSocket-Accept `\(accept)`, expected `\(expected)`") }
        return .upgraded(headerLength: end + 4)
    }
}

/// A small, fast, non-cryptographic PRNG (SplitMix64) for frame masks and keys.
///
/// Masks only have to be unpredictable to intermediaries; a load generator on loopback needs speed.
public struct SplitMix64: Sendable {
    private var state: UInt64
    /// Seeds the generator.
    public init(seed: UInt64) { state = seed }
    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// SHA-1 (FIPS 180-4), only for the WebSocket accept value.
public enum SHA1 {
    /// The 20-byte digest of `message`.
    public static func hash(_ message: [UInt8]) -> [UInt8] {
        var h: (UInt32, UInt32, UInt32, UInt32, UInt32) = (0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0)
        var data = message
        let bitLength = UInt64(message.count) &* 8
        data.append(0x80)
        while data.count % 64 != 56 { data.append(0) }
        for s in stride(from: 56, through: 0, by: -8) { data.append(UInt8((bitLength >> UInt64(s)) & 0xFF)) }
        var w = [UInt32](repeating: 0, count: 80)
        for chunk in stride(from: 0, to: data.count, by: 64) {
            for t in 0..<16 {
                let b = chunk + t * 4
                w[t] = UInt32(data[b]) << 24 | UInt32(data[b + 1]) << 16 | UInt32(data[b + 2]) << 8 | UInt32(data[b + 3])
            }
            for t in 16..<80 {
                let x = w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16]
                w[t] = (x << 1) | (x >> 31)
            }
            var (a, b, c, d, e) = h
            for t in 0..<80 {
                let f: UInt32, k: UInt32
                switch t {
                case 0..<20: f = (b & c) | (~b & d); k = 0x5A82_7999
                case 20..<40: f = b ^ c ^ d; k = 0x6ED9_EBA1
                case 40..<60: f = (b & c) | (b & d) | (c & d); k = 0x8F1B_BCDC
                default: f = b ^ c ^ d; k = 0xCA62_C1D6
                }
                let temp = ((a << 5) | (a >> 27)) &+ f &+ e &+ k &+ w[t]
                e = d; d = c; c = (b << 30) | (b >> 2); b = a; a = temp
            }
            h = (h.0 &+ a, h.1 &+ b, h.2 &+ c, h.3 &+ d, h.4 &+ e)
        }
        var out = [UInt8]()
        out.reserveCapacity(20)
        for v in [h.0, h.1, h.2, h.3, h.4] {
            out.append(UInt8(v >> 24)); out.append(UInt8((v >> 16) & 0xFF)); out.append(UInt8((v >> 8) & 0xFF)); out.append(UInt8(v & 0xFF))
        }
        return out
    }
}
