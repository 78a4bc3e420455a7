@_spi(Fuzzing) import EngineIO
import ParleyConfig
import ParleyJSON
import SocketIO

/// The fuzz targets: what bytes go to which decoder. The libFuzzer executables in `Fuzz/` (`make fuzz`) call
/// ``run(_:)`` with the fuzzer's input; `make test` replays every committed corpus and regression input
/// (`Tests/fuzz/`) through the same function without the fuzzer, so a fixed crash stays fixed.
///
/// Every target accepts any bytes: errors are the expected outcome of bad input. A crash, a failed
/// precondition (the round-trip properties below), a hang or unbounded memory is a finding.
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// Engine.IO: a WebSocket text packet, and the same bytes as a long-polling payload; what decodes must
    /// encode and decode to the same packets.
    case engineio
    /// Socket.IO: the input split at 0x1E into Engine.IO messages (a leading 0x00 makes a message binary), fed
    /// to one packet decoder with binary attachments.
    case socketio
    /// ParleyJSON: parse; what parses must serialise and parse back to the same text.
    case json
    /// permessage-deflate: a negotiation offer (the first line) and a compressed message (the rest).
    case deflate
    /// The configuration loader: the input as `parley.yml`.
    case config

    /// Runs the target on one input.
    public func run(_ data: [UInt8]) {
        switch self {
        case .engineio: Self.engineIO(data)
        case .socketio: Self.socketIO(data)
        case .json: Self.json(data)
        case .deflate: Self.deflate(data)
        case .config: Self.config(data)
        }
    }

    static func engineIO(_ data: [UInt8]) {
        if let packet = try? EngineCodec.decodeText(data), case .message(.text(let text)) = packet, !text.utf8.contains(0x1E) {
            // A polling payload carries any text packet without a record separator in it.
            precondition((try? EngineCodec.decodePayload(EngineCodec.encodePayload([packet]))) == [packet], "text packet round trip")
        }
        if let packets = try? EngineCodec.decodePayload(data) {
            let again = try? EngineCodec.decodePayload(EngineCodec.encodePayload(packets))
            precondition(again == packets, "payload round trip")
        }
    }

    static func socketIO(_ data: [UInt8]) {
        var decoder = SocketIOPacketDecoder(maxAttachments: 16, maxDepth: 128, maxAttachmentBytes: 1 << 16)
        for chunk in data.split(separator: 0x1E, omittingEmptySubsequences: false) {
            let message: EngineMessage = chunk.first == 0 ? .binary(Array(chunk.dropFirst())) : .text(String(decoding: chunk, as: UTF8.self))
            do {
                _ = try decoder.decode(message)
            } catch {
                return  // the connection would be closed here
            }
        }
    }

    static func json(_ data: [UInt8]) {
        guard let value = try? JSONValue.parse(data, maxDepth: 128) else { return }
        let text = value.serialized
        guard let again = try? JSONValue.parse(text, maxDepth: 129) else {
            preconditionFailure("serialised JSON does not parse: \(text.prefix(200))")
        }
        precondition(again.serialized == text, "serialise/parse round trip")
    }

    static func deflate(_ data: [UInt8]) {
        let newline = data.firstIndex(of: 0x0A) ?? data.endIndex
        let offer = String(decoding: data[..<newline], as: UTF8.self)
        let rest = newline < data.endIndex ? Array(data[(newline + 1)...]) : []
        EngineIOFuzzing.permessageDeflate(offer: offer, compressed: rest, split: Int(data.first ?? 0))
    }

    static func config(_ data: [UInt8]) {
        _ = try? ConfigurationLoader(environment: ["PARLEY_FUZZ": "x"]).parse(
            yaml: String(decoding: data, as: UTF8.self), file: "fuzz.yml", baseDirectory: "/nonexistent")
    }
}
