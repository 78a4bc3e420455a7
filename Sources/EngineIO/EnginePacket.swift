import ParleyJSON
import ExtrasBase64
// Engine.IO v4 packet codec: pure functions over bytes, no I/O (tested without sockets).

/// An Engine.IO v4 packet as it travels on the wire.
public enum EnginePacket: Sendable, Hashable {
    /// `0` + JSON handshake data (server to client only).
    case open(String)
    /// `1`: the transport (and the session) is closing.
    case close
    /// `2` + optional data (`2probe` during an upgrade).
    case ping(String)
    /// `3` + optional data (`3probe` during an upgrade).
    case pong(String)
    /// `4` + text, or a binary payload (`b` + base64 over polling, a binary frame over WebSocket).
    case message(EngineMessage)
    /// `5`: completes an upgrade.
    case upgrade
    /// `6`: does nothing; ends a pending poll during an upgrade.
    case noop
}

/// A malformed Engine.IO packet or payload; ``reason`` says what was wrong.
public struct EngineDecodingError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What was wrong with the input, e.g. `unknown packet type "a"`.
    public var reason: String

    /// Creates an error with the given reason.
    public init(_ reason: String) { self.reason = reason }

    public var description: String { "invalid Engine.IO packet: \(reason)" }
}

/// Encodes and decodes Engine.IO v4 packets and HTTP long-polling payloads.
public enum EngineCodec {
    /// The record separator between packets of one long-polling payload.
    public static let recordSeparator: UInt8 = 0x1E

    /// Decodes one text packet (a WebSocket text frame, or one record of a polling payload that does not
    /// start with `b`).
    /// - Throws: ``EngineDecodingError`` for an empty packet or an unknown packet type.
    public static func decodeText<Bytes: Collection<UInt8>>(_ bytes: Bytes) throws(EngineDecodingError) -> EnginePacket {
        guard let first = bytes.first else { throw EngineDecodingError("empty packet") }
        let rest = bytes.dropFirst()
        switch first {
        case UInt8(ascii: "4"):
            // Engine.IO text is UTF-8; a replacement character would silently change what the client sent.
            guard let text = String(validating: rest, as: UTF8.self) else { throw EngineDecodingError("text packet is not valid UTF-8") }
            return .message(.text(text))
        case UInt8(ascii: "3"): return .pong(String(decoding: rest, as: UTF8.self))
        case UInt8(ascii: "2"): return .ping(String(decoding: rest, as: UTF8.self))
        case UInt8(ascii: "1"):
            guard rest.isEmpty else { throw EngineDecodingError("close packet with data") }
            return .close
        case UInt8(ascii: "5"):
            guard rest.isEmpty else { throw EngineDecodingError("upgrade packet with data") }
            return .upgrade
        case UInt8(ascii: "6"):
            guard rest.isEmpty else { throw EngineDecodingError("noop packet with data") }
            return .noop
        case UInt8(ascii: "0"): return .open(String(decoding: rest, as: UTF8.self))
        default:
            throw EngineDecodingError("unknown packet type \(Self.describe(first))")
        }
    }

    /// Decodes an HTTP long-polling payload: packets separated by `\x1e`, binary ones as `b` + base64.
    /// - Throws: ``EngineDecodingError`` when any record is empty, has an unknown type or bad base64.
    public static func decodePayload<Bytes: Collection<UInt8>>(_ body: Bytes) throws(EngineDecodingError) -> [EnginePacket]
    where Bytes.SubSequence: Collection<UInt8> {
        guard !body.isEmpty else { throw EngineDecodingError("empty payload") }
        var packets: [EnginePacket] = []
        var start = body.startIndex
        while true {
            let end = body[start...].firstIndex(of: recordSeparator) ?? body.endIndex
            let record = body[start..<end]
            if record.first == UInt8(ascii: "b") {
                guard let bytes = EngineBase64.decode(record.dropFirst()) else {
                    throw EngineDecodingError("invalid base64 in binary packet")
                }
                packets.append(.message(.binary(bytes)))
            } else {
                packets.append(try decodeText(record))
            }
            if end == body.endIndex { break }
            start = body.index(after: end)
        }
        return packets
    }

    /// Appends the text form of `packet` (`<type><data>`) to `buffer`. Binary messages are appended as `b` +
    /// base64 (the long-polling form).
    public static func appendPollingForm(of packet: EnginePacket, to buffer: inout [UInt8]) {
        switch packet {
        case .open(let json):
            buffer.append(UInt8(ascii: "0"))
            buffer.append(contentsOf: json.utf8)
        case .close: buffer.append(UInt8(ascii: "1"))
        case .ping(let data):
            buffer.append(UInt8(ascii: "2"))
            buffer.append(contentsOf: data.utf8)
        case .pong(let data):
            buffer.append(UInt8(ascii: "3"))
            buffer.append(contentsOf: data.utf8)
        case .message(.text(let text)):
            buffer.append(UInt8(ascii: "4"))
            buffer.append(contentsOf: text.utf8)
        case .message(.binary(let bytes)):
            buffer.append(UInt8(ascii: "b"))
            EngineBase64.encode(bytes, into: &buffer)
        case .upgrade: buffer.append(UInt8(ascii: "5"))
        case .noop: buffer.append(UInt8(ascii: "6"))
        }
    }

    /// Encodes packets as one HTTP long-polling payload (joined with `\x1e`).
    public static func encodePayload(_ packets: [EnginePacket]) -> [UInt8] {
        var out: [UInt8] = []
        for (index, packet) in packets.enumerated() {
            if index > 0 { out.append(recordSeparator) }
            appendPollingForm(of: packet, to: &out)
        }
        return out
    }

    /// The text of the open packet: exactly the keys `sid`, `upgrades`, `pingInterval`, `pingTimeout`,
    /// `maxPayload`, with millisecond values.
    public static func openPacketJSON(
        sid: String,
        upgrades: [String],
        pingIntervalMilliseconds: Int64,
        pingTimeoutMilliseconds: Int64,
        maxPayload: Int
    ) -> String {
        let open: JSONValue = [
            "sid": .string(sid), "upgrades": .array(upgrades.map { .string($0) }), "pingInterval": .int(pingIntervalMilliseconds),
            "pingTimeout": .int(pingTimeoutMilliseconds), "maxPayload": .int(Int64(maxPayload)),
        ]
        return open.serialized
    }

    static func describe(_ byte: UInt8) -> String {
        if byte >= 0x20 && byte < 0x7F { return "\"\(Character(Unicode.Scalar(byte)))\"" }
        return "0x" + String(byte, radix: 16)
    }
}

/// Base64 as Engine.IO uses it for binary packets over long-polling (RFC 4648 with padding; missing padding is
/// accepted on input, as the reference servers accept it), through swift-extras-base64.
enum EngineBase64 {
    static func encode(_ bytes: [UInt8], into out: inout [UInt8]) {
        out.append(contentsOf: Base64.encodeToBytes(bytes: bytes))
    }

    /// The decoded bytes, or nil for text that is not base64.
    static func decode<Bytes: Collection<UInt8>>(_ text: Bytes) -> [UInt8]? {
        var body = Array(text)
        var padding = 0
        while body.last == UInt8(ascii: "=") {
            body.removeLast()
            padding += 1
        }
        // At most two "=", and only where they complete the last group.
        guard padding <= 2, padding == 0 || (body.count + padding) % 4 == 0, !body.contains(UInt8(ascii: "=")) else { return nil }
        return try? Base64.decode(bytes: body, options: .omitPaddingCharacter)
    }
}
