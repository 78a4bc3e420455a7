public import EngineIO
import ParleyJSON

/// The seven Socket.IO v5 packet types (the first character of an encoded packet).
public enum SocketIOPacketType: UInt8, Sendable, Hashable, CaseIterable {
    /// `0`: connect to a namespace (client), or accept the connection with `{"sid": …}` (server).
    case connect = 0
    /// `1`: leave a namespace; the Engine.IO session stays open.
    case disconnect = 1
    /// `2`: an event; the payload is a non-empty array whose first element is the event name.
    case event = 2
    /// `3`: the answer to an event sent with an acknowledgement id; the payload is an array.
    case ack = 3
    /// `4`: the server refuses a namespace connection; the payload is `{"message": …, "data"?: …}`.
    case connectError = 4
    /// `5`: an event whose arguments contain binary buffers sent as attachments.
    case binaryEvent = 5
    /// `6`: an acknowledgement whose arguments contain binary buffers sent as attachments.
    case binaryAck = 6
}

/// One decoded (or to-be-encoded) Socket.IO packet.
///
/// Binary buffers live inside ``data`` as ``SocketIOValue/binary(_:)``: the encoder replaces them with
/// placeholders and sends them as attachments, the decoder puts them back once every attachment arrived.
public struct SocketIOPacket: Sendable, Hashable {
    /// The packet type. When encoding, ``SocketIOPacketType/event`` / ``SocketIOPacketType/ack`` packets
    /// whose data contains binary are written as their binary variants.
    public var type: SocketIOPacketType
    /// The namespace, `/` for the main one.
    public var namespace: String
    /// The acknowledgement id of an event that wants an answer, or of an ack.
    public var ackID: Int?
    /// The payload: an object for CONNECT / CONNECT_ERROR, an array for events and acks, nil when absent.
    public var data: SocketIOValue?

    /// Creates a packet.
    public init(type: SocketIOPacketType, namespace: String = "/", ackID: Int? = nil, data: SocketIOValue? = nil) {
        self.type = type
        self.namespace = namespace
        self.ackID = ackID
        self.data = data
    }

    /// The elements of an array payload (an event's name first), or `[]` when the payload is not an array.
    public var items: [SocketIOValue] {
        switch data {
        case .json(.array(let a))?: return a.map { .json($0) }
        case .array(let a)?: return a
        default: return []
        }
    }

    /// The event name of an EVENT / BINARY_EVENT packet (numbers are given as their decimal text, as the
    /// JavaScript server does), else nil.
    public var eventName: String? {
        let first: SocketIOValue?
        switch data {
        case .json(.array(let a))?: first = a.first.map { .json($0) }
        case .array(let a)?: first = a.first
        default: first = nil
        }
        switch first {
        case .json(.string(let s))?: return s
        case .json(.int(let i))?: return String(i)
        case .json(.double(let d))?: return JSONValue.double(d).serialized
        default: return nil
        }
    }

    /// The arguments of an event (the items after the name) or of an ack (all items).
    public var arguments: [SocketIOValue] {
        let skip = (type == .event || type == .binaryEvent) ? 1 : 0
        switch data {
        case .json(.array(let a))?: return a.dropFirst(skip).map { .json($0) }
        case .array(let a)?: return Array(a.dropFirst(skip))
        default: return []
        }
    }
}

/// A packet the peer sent that the protocol forbids; the connection it came from must be closed.
public struct SocketIOProtocolError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What was wrong, e.g. `unknown packet type "a"`.
    public var reason: String

    /// Creates an error with a reason.
    public init(_ reason: String) { self.reason = reason }

    public var description: String { "invalid Socket.IO packet: \(reason)" }
}

// MARK: - Encoding

/// Encodes packets into Engine.IO messages: one text message (header + JSON) followed by one binary
/// message per attachment. Output is built in one byte buffer, with no intermediate strings.
public enum SocketIOPacketEncoder {
    /// Encodes any packet. EVENT / ACK packets with binary data become BINARY_EVENT / BINARY_ACK.
    public static func encode(_ packet: SocketIOPacket) -> [EngineMessage] {
        var attachments: [[UInt8]] = []
        let hasBinary = packet.data?.containsBinary ?? false
        var type = packet.type
        if hasBinary {
            if type == .event { type = .binaryEvent } else if type == .ack { type = .binaryAck }
        } else {
            // Without buffers there are no attachments to announce: write the plain variants.
            if type == .binaryEvent { type = .event } else if type == .binaryAck { type = .ack }
        }
        var out: [UInt8] = []
        out.reserveCapacity(96 + packet.namespace.utf8.count)
        if !hasBinary {
            // One buffer: the header, then the JSON.
            writeHeader(type: type, attachments: nil, namespace: packet.namespace, ackID: packet.ackID, into: &out)
            if let data = packet.data { writeValue(data, into: &out, attachments: &attachments) }
            return [.text(String(decoding: out, as: UTF8.self))]
        }
        var body: [UInt8] = []
        if let data = packet.data {
            body.reserveCapacity(64)
            writeValue(data, into: &body, attachments: &attachments)
        }
        writeHeader(type: type, attachments: hasBinary ? attachments.count : nil, namespace: packet.namespace, ackID: packet.ackID, into: &out)
        out.append(contentsOf: body)
        return messages(out, attachments)
    }

    /// Encodes an event `[name, args…]`: the per-message hot path (no intermediate packet or array).
    public static func encodeEvent(namespace: String, event: String, arguments: [SocketIOValue], ackID: Int? = nil) -> [EngineMessage] {
        encodeArray(type: .event, namespace: namespace, ackID: ackID, eventName: event, arguments)
    }

    /// Encodes an acknowledgement `[args…]` for event id `ackID`.
    public static func encodeAck(namespace: String, ackID: Int, arguments: [SocketIOValue]) -> [EngineMessage] {
        encodeArray(type: .ack, namespace: namespace, ackID: ackID, eventName: nil, arguments)
    }

    private static func encodeArray(
        type: SocketIOPacketType, namespace: String, ackID: Int?, eventName: String?, _ arguments: [SocketIOValue]
    ) -> [EngineMessage] {
        if !arguments.contains(where: { $0.containsBinary }) {
            // The common case: header and JSON written into one buffer, one copy into the String.
            var out: [UInt8] = []
            out.reserveCapacity(96 + namespace.utf8.count + (eventName?.utf8.count ?? 0))
            writeHeader(type: type, attachments: nil, namespace: namespace, ackID: ackID, into: &out)
            out.append(UInt8(ascii: "["))
            var first = true
            if let eventName {
                JSONValue.serializeString(eventName, into: &out)
                first = false
            }
            var none: [[UInt8]] = []
            for a in arguments {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                writeValue(a, into: &out, attachments: &none)
            }
            out.append(UInt8(ascii: "]"))
            return [.text(String(decoding: out, as: UTF8.self))]
        }
        var attachments: [[UInt8]] = []
        var body: [UInt8] = []
        body.reserveCapacity(64 + (eventName?.utf8.count ?? 0))
        body.append(UInt8(ascii: "["))
        var first = true
        if let eventName {
            JSONValue.serializeString(eventName, into: &body)
            first = false
        }
        for a in arguments {
            if !first { body.append(UInt8(ascii: ",")) }
            first = false
            writeValue(a, into: &body, attachments: &attachments)
        }
        body.append(UInt8(ascii: "]"))
        let binary = !attachments.isEmpty
        let wireType: SocketIOPacketType = binary ? (type == .event ? .binaryEvent : .binaryAck) : type
        var out: [UInt8] = []
        out.reserveCapacity(16 + namespace.utf8.count + body.count)
        writeHeader(type: wireType, attachments: binary ? attachments.count : nil, namespace: namespace, ackID: ackID, into: &out)
        out.append(contentsOf: body)
        return messages(out, attachments)
    }

    private static func messages(_ text: [UInt8], _ attachments: [[UInt8]]) -> [EngineMessage] {
        var result: [EngineMessage] = [.text(String(decoding: text, as: UTF8.self))]
        if !attachments.isEmpty {
            result.reserveCapacity(1 + attachments.count)
            for a in attachments { result.append(.binary(a)) }
        }
        return result
    }

    private static func writeHeader(type: SocketIOPacketType, attachments: Int?, namespace: String, ackID: Int?, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "0") + type.rawValue)
        if let attachments {
            out.append(contentsOf: String(attachments).utf8)
            out.append(UInt8(ascii: "-"))
        }
        if namespace != "/" {
            out.append(contentsOf: namespace.utf8)
            out.append(UInt8(ascii: ","))
        }
        if let ackID { out.append(contentsOf: String(ackID).utf8) }
    }

    private static func writeValue(_ value: SocketIOValue, into out: inout [UInt8], attachments: inout [[UInt8]]) {
        switch value {
        case .json(let j): j.serialize(into: &out)
        case .binary(let b):
            out.append(contentsOf: #"{"_placeholder":true,"num":"#.utf8)
            out.append(contentsOf: String(attachments.count).utf8)
            out.append(UInt8(ascii: "}"))
            attachments.append(b)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (i, v) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                writeValue(v, into: &out, attachments: &attachments)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            for (i, m) in members.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                JSONValue.serializeString(m.key, into: &out)
                out.append(UInt8(ascii: ":"))
                writeValue(m.value, into: &out, attachments: &attachments)
            }
            out.append(UInt8(ascii: "}"))
        }
    }
}

// MARK: - Decoding

/// Decodes the Engine.IO messages of one connection into packets.
///
/// Stateful: a BINARY_EVENT / BINARY_ACK header is held until its attachments (the following binary
/// messages) have arrived. Strict: anything the protocol forbids throws ``SocketIOProtocolError``, after
/// which the connection must be closed (the decoder's state is then unspecified).
public struct SocketIOPacketDecoder: Sendable {
    /// The most attachments one packet may announce.
    public var maxAttachments: Int
    /// The nesting limit for payload JSON.
    public var maxDepth: Int

    /// The most bytes of attachments one packet may carry, all together.
    public var maxAttachmentBytes: Int

    private var pending: SocketIOPacket?
    private var pendingJSON: JSONValue = .null
    private var expected = 0
    private var attachments: [[UInt8]] = []
    /// Bytes of the attachments held for the incomplete packet.
    public private(set) var heldAttachmentBytes = 0

    /// Creates a decoder.
    /// - Parameters:
    ///   - maxAttachments: the most attachments one binary packet may announce (more is a protocol error).
    ///   - maxDepth: the JSON nesting limit.
    ///   - maxAttachmentBytes: the most bytes of attachments one packet may carry (more is a protocol error).
    public init(maxAttachments: Int = 16, maxDepth: Int = 128, maxAttachmentBytes: Int = 4 << 20) {
        self.maxAttachments = maxAttachments
        self.maxDepth = maxDepth
        self.maxAttachmentBytes = maxAttachmentBytes
    }

    /// Whether a binary packet is waiting for more attachments.
    public var isAwaitingAttachments: Bool { pending != nil }

    /// Feeds one Engine.IO message. Returns the packet it completes, or nil while a binary packet waits
    /// for more attachments.
    /// - Throws: ``SocketIOProtocolError`` for malformed input.
    public mutating func decode(_ message: EngineMessage) throws(SocketIOProtocolError) -> SocketIOPacket? {
        switch message {
        case .binary(let bytes):
            guard pending != nil else { throw SocketIOProtocolError("unexpected binary attachment (no binary packet announced one)") }
            guard heldAttachmentBytes + bytes.count <= maxAttachmentBytes else {
                throw SocketIOProtocolError("binary attachments over \(maxAttachmentBytes) bytes in one packet")
            }
            heldAttachmentBytes += bytes.count
            attachments.append(bytes)
            guard attachments.count == expected else { return nil }
            return try finishBinary()
        case .text(let text):
            guard pending == nil else {
                throw SocketIOProtocolError("text packet received while \(expected - attachments.count) binary attachment(s) were still expected")
            }
            var text = text
            let maxDepth = self.maxDepth
            let maxAttachments = self.maxAttachments
            let result: Result<(SocketIOPacket, JSONValue?, Int?), SocketIOProtocolError> = text.withUTF8 { buffer in
                do throws(SocketIOProtocolError) {
                    return .success(try Self.parseText(buffer, maxDepth: maxDepth, maxAttachments: maxAttachments))
                } catch {
                    return .failure(error)
                }
            }
            let (packet, json, attachmentCount) = try result.get()
            if let attachmentCount {
                pending = packet
                pendingJSON = json ?? .null
                expected = attachmentCount
                attachments = []
                if attachmentCount == 0 { return try finishBinary() }
                return nil
            }
            return packet
        }
    }

    private mutating func finishBinary() throws(SocketIOProtocolError) -> SocketIOPacket {
        guard var packet = pending else { throw SocketIOProtocolError("internal: no pending packet") }
        let buffers = attachments
        let json = pendingJSON
        pending = nil
        pendingJSON = .null
        attachments = []
        expected = 0
        heldAttachmentBytes = 0
        let value = try Self.reconstruct(json, buffers)
        packet.data = value
        return packet
    }

    /// Replaces placeholders by their attachments; subtrees without placeholders stay `.json`.
    static func reconstruct(_ value: JSONValue, _ buffers: [[UInt8]]) throws(SocketIOProtocolError) -> SocketIOValue {
        switch value {
        case .array(let items):
            var out: [SocketIOValue] = []
            out.reserveCapacity(items.count)
            var binary = false
            for item in items {
                let v = try reconstruct(item, buffers)
                if case .json = v {} else { binary = true }
                out.append(v)
            }
            return binary ? .array(out) : .json(value)
        case .object(let object):
            if object["_placeholder"] == .bool(true) {
                guard let num = object["num"]?.int64Value, num >= 0, num < Int64(buffers.count) else {
                    throw SocketIOProtocolError("bad binary placeholder \(value.serialized) (\(buffers.count) attachment(s))")
                }
                return .binary(buffers[Int(num)])
            }
            var out: [SocketIOObjectMember] = []
            out.reserveCapacity(object.count)
            var binary = false
            for (k, v) in object {
                let r = try reconstruct(v, buffers)
                if case .json = r {} else { binary = true }
                out.append(SocketIOObjectMember(k, r))
            }
            return binary ? .object(out) : .json(value)
        default:
            return .json(value)
        }
    }

    static let reservedEvents: Set<String> = ["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"]

    /// Parses the header and JSON of a text packet. Returns the packet (data without reconstruction), the raw
    /// JSON and, for binary packets, the announced attachment count.
    static func parseText(
        _ b: UnsafeBufferPointer<UInt8>, maxDepth: Int, maxAttachments: Int
    ) throws(SocketIOProtocolError) -> (SocketIOPacket, JSONValue?, Int?) {
        guard let first = b.first else { throw SocketIOProtocolError("empty packet") }
        guard first >= UInt8(ascii: "0"), first <= UInt8(ascii: "6"), let type = SocketIOPacketType(rawValue: first - UInt8(ascii: "0")) else {
            throw SocketIOProtocolError("unknown packet type \(quoted(b, 0, 1))")
        }
        var i = 1
        var attachmentCount: Int?
        if type == .binaryEvent || type == .binaryAck {
            let start = i
            var n = 0
            while i < b.count, isDigit(b[i]) {
                n = n * 10 + Int(b[i] - UInt8(ascii: "0"))
                i += 1
                guard i - start <= 6 else { throw SocketIOProtocolError("attachment count too long") }
            }
            guard i > start, i < b.count, b[i] == UInt8(ascii: "-") else {
                throw SocketIOProtocolError("binary packet without a valid attachment count (\"<n>-\")")
            }
            guard n <= maxAttachments else { throw SocketIOProtocolError("\(n) attachments announced, at most \(maxAttachments) allowed") }
            attachmentCount = n
            i += 1
        }
        var namespace = "/"
        if i < b.count, b[i] == UInt8(ascii: "/") {
            let start = i
            while i < b.count, b[i] != UInt8(ascii: ",") { i += 1 }
            namespace = String(decoding: UnsafeBufferPointer(rebasing: b[start..<i]), as: UTF8.self)
            if i < b.count { i += 1 }  // the comma
        }
        var ackID: Int?
        if i < b.count, isDigit(b[i]) {
            var id = 0
            let start = i
            while i < b.count, isDigit(b[i]) {
                id = id * 10 + Int(b[i] - UInt8(ascii: "0"))
                i += 1
                guard i - start <= 15 else { throw SocketIOProtocolError("acknowledgement id too long") }
            }
            ackID = id
        }
        var json: JSONValue?
        if i < b.count {
            do {
                json = try JSONValue.parse(UnsafeBufferPointer(rebasing: b[i..<b.count]), maxDepth: maxDepth)
            } catch {
                throw SocketIOProtocolError("payload of a type-\(type.rawValue) packet is not JSON (\(error.reason) at byte \(i + error.offset))")
            }
        }
        // Payload rules of the v5 spec.
        switch type {
        case .connect:
            if let json, json.objectValue == nil { throw SocketIOProtocolError("CONNECT payload must be an object") }
        case .disconnect:
            if json != nil { throw SocketIOProtocolError("DISCONNECT packet must have no payload") }
        case .event, .binaryEvent:
            guard case .array(let a)? = json, let name = a.first else {
                throw SocketIOProtocolError("EVENT payload must be a non-empty array")
            }
            switch name {
            case .string(let s):
                if reservedEvents.contains(s) { throw SocketIOProtocolError("reserved event name \"\(s)\"") }
            case .int, .double: break
            default: throw SocketIOProtocolError("event name must be a string")
            }
        case .ack, .binaryAck:
            guard json?.arrayValue != nil else { throw SocketIOProtocolError("ACK payload must be an array") }
            guard ackID != nil else { throw SocketIOProtocolError("ACK packet without an id") }
        case .connectError:
            switch json {
            case .object?, .string?: break
            default: throw SocketIOProtocolError("CONNECT_ERROR payload must be an object")
            }
        }
        let packet = SocketIOPacket(type: type, namespace: namespace, ackID: ackID, data: attachmentCount == nil ? json.map { .json($0) } : nil)
        return (packet, json, attachmentCount)
    }

    private static func isDigit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }

    private static func quoted(_ b: UnsafeBufferPointer<UInt8>, _ from: Int, _ to: Int) -> String {
        "\"" + String(decoding: UnsafeBufferPointer(rebasing: b[from..<min(to, b.count)]), as: UTF8.self) + "\""
    }
}
