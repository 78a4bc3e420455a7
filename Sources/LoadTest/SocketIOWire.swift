/// What one Engine.IO text packet received by the generator is, as far as the generator cares.
public enum InboundPacket: Equatable, Sendable {
    /// Engine.IO `0{...}`: the open packet.
    case engineOpen
    /// Engine.IO `1`: the server closes the session.
    case engineClose
    /// Engine.IO `2[probe]`: a ping, to be answered with `3` + the same payload; `payloadStart` is the
    /// offset of the optional payload (1).
    case enginePing
    /// Engine.IO `3`, `5`, `6`: pong, upgrade, noop (ignored).
    case engineOther
    /// Socket.IO `40...`: namespace connected.
    case socketConnect
    /// Socket.IO `41`: namespace disconnected by the server.
    case socketDisconnect
    /// Socket.IO `44{...}`: connection refused by the namespace.
    case socketConnectError
    /// Socket.IO `42[...]` / `43[...]`: an event or an ack; `arrayStart` is the offset of `[`.
    case socketEvent(arrayStart: Int)
    /// Socket.IO binary packets `45`/`46` or unknown types.
    case socketOther
    /// Not an Engine.IO packet at all.
    case invalid
}

/// Classification and minimal parsing of the Engine.IO v4 / Socket.IO v5 packets the generator handles.
///
/// Works on the raw payload bytes, without building a JSON tree: the hot path (one reply per message)
/// does no allocation.
public enum SocketIOWire {
    /// Classifies an Engine.IO packet (the text payload of one WebSocket message).
    public static func classify(_ p: UnsafeRawBufferPointer) -> InboundPacket {
        guard let first = p.first else { return .invalid }
        switch first {
        case UInt8(ascii: "0"): return .engineOpen
        case UInt8(ascii: "1"): return .engineClose
        case UInt8(ascii: "2"): return .enginePing
        case UInt8(ascii: "3"), UInt8(ascii: "5"), UInt8(ascii: "6"): return .engineOther
        case UInt8(ascii: "4"): break
        default: return .invalid
        }
        guard p.count >= 2 else { return .invalid }
        switch p[1] {
        case UInt8(ascii: "0"): return .socketConnect
        case UInt8(ascii: "1"): return .socketDisconnect
        case UInt8(ascii: "4"): return .socketConnectError
        case UInt8(ascii: "2"), UInt8(ascii: "3"):
            // Optional `/namespace,` then optional ack id digits, then the JSON array.
            var i = 2
            if i < p.count, p[i] == UInt8(ascii: "/") {
                while i < p.count, p[i] != UInt8(ascii: ",") { i += 1 }
                i += 1
            }
            while i < p.count, p[i] >= UInt8(ascii: "0"), p[i] <= UInt8(ascii: "9") { i += 1 }
            guard i < p.count, p[i] == UInt8(ascii: "[") else { return .invalid }
            return .socketEvent(arrayStart: i)
        default: return .socketOther
        }
    }

    /// The parts of an event array `["name", arg, ...]`: the raw name token and the first argument.
    public struct Event: Equatable, Sendable {
        /// Byte range of the event name's JSON string token (quotes included).
        public var name: Range<Int>
        /// Byte range of the first argument's JSON token, if there is one.
        public var firstArgument: Range<Int>?
    }

    /// Splits the event array starting at `arrayStart` into name and first argument.
    public static func event(_ p: UnsafeRawBufferPointer, arrayStart: Int) -> Event? {
        var s = JSONScanner(p, at: arrayStart)
        guard s.consume(UInt8(ascii: "[")), let name = s.skipString() else { return nil }
        s.skipWhitespace()
        if s.consume(UInt8(ascii: "]")) { return Event(name: name, firstArgument: nil) }
        guard s.consume(UInt8(ascii: ",")), let arg = s.skipValue() else { return nil }
        return Event(name: name, firstArgument: arg)
    }

    /// The session id in a `session_confirm` argument: the raw JSON string token (quotes included),
    /// either the argument itself or its `session_id` member.
    public static func sessionIDToken(_ p: UnsafeRawBufferPointer, argument: Range<Int>) -> Range<Int>? {
        guard let first = argument.first else { return nil }
        if p[first] == UInt8(ascii: "\"") { return argument }
        if p[first] == UInt8(ascii: "{"), let v = JSONScanner.member(p, object: argument, key: Array("session_id".utf8)),
            p[v.lowerBound] == UInt8(ascii: "\"")
        {
            return v
        }
        return nil
    }

    /// Whether the JSON string token at `token` decodes to exactly `expected`.
    public static func stringToken(_ p: UnsafeRawBufferPointer, _ token: Range<Int>, equals expected: UnsafeRawBufferPointer) -> Bool {
        JSONScanner.decodedString(p, token: token, equals: expected)
    }
}

/// A forward-only scanner over JSON bytes that finds token boundaries without building values.
public struct JSONScanner {
    let p: UnsafeRawBufferPointer
    /// Current offset.
    public private(set) var i: Int

    /// A scanner over `p` starting at `at`.
    public init(_ p: UnsafeRawBufferPointer, at: Int = 0) {
        self.p = p
        self.i = at
    }

    /// Skips JSON whitespace.
    public mutating func skipWhitespace() {
        while i < p.count {
            let c = p[i]
            if c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { i += 1 } else { return }
        }
    }

    /// Consumes `byte` (after whitespace) if it is next.
    public mutating func consume(_ byte: UInt8) -> Bool {
        skipWhitespace()
        if i < p.count, p[i] == byte { i += 1; return true }
        return false
    }

    /// Skips a string token; returns its range including quotes.
    public mutating func skipString() -> Range<Int>? {
        skipWhitespace()
        guard i < p.count, p[i] == UInt8(ascii: "\"") else { return nil }
        let start = i
        i += 1
        while i < p.count {
            let c = p[i]
            if c == UInt8(ascii: "\\") { i += 2; continue }
            i += 1
            if c == UInt8(ascii: "\"") { return start..<i }
        }
        return nil
    }

    /// Skips any JSON value; returns its range.
    public mutating func skipValue(depth: Int = 0) -> Range<Int>? {
        skipWhitespace()
        guard i < p.count, depth < 256 else { return nil }
        let start = i
        switch p[i] {
        case UInt8(ascii: "\""):
            return skipString()
        case UInt8(ascii: "{"):
            i += 1
            if consume(UInt8(ascii: "}")) { return start..<i }
            while true {
                guard skipString() != nil, consume(UInt8(ascii: ":")), skipValue(depth: depth + 1) != nil else { return nil }
                if consume(UInt8(ascii: ",")) { continue }
                if consume(UInt8(ascii: "}")) { return start..<i }
                return nil
            }
        case UInt8(ascii: "["):
            i += 1
            if consume(UInt8(ascii: "]")) { return start..<i }
            while true {
                guard skipValue(depth: depth + 1) != nil else { return nil }
                if consume(UInt8(ascii: ",")) { continue }
                if consume(UInt8(ascii: "]")) { return start..<i }
                return nil
            }
        default:
            // number, true, false, null: up to a delimiter
            while i < p.count {
                let c = p[i]
                if c == UInt8(ascii: ",") || c == UInt8(ascii: "]") || c == UInt8(ascii: "}") || c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { break }
                i += 1
            }
            return i > start ? start..<i : nil
        }
    }

    /// The value range of top-level member `key` in the object token at `object`.
    public static func member(_ p: UnsafeRawBufferPointer, object: Range<Int>, key: [UInt8]) -> Range<Int>? {
        var s = JSONScanner(p, at: object.lowerBound)
        guard s.consume(UInt8(ascii: "{")) else { return nil }
        if s.consume(UInt8(ascii: "}")) { return nil }
        while true {
            guard let k = s.skipString(), s.consume(UInt8(ascii: ":")), let v = s.skipValue() else { return nil }
            let matches = key.withUnsafeBytes { decodedString(p, token: k, equals: $0) }
            if matches { return v }
            if !s.consume(UInt8(ascii: ",")) { return nil }
        }
    }

    /// Whether the string token (quotes included) decodes (escapes, `\u` surrogates) to `expected` as UTF-8.
    public static func decodedString(_ p: UnsafeRawBufferPointer, token: Range<Int>, equals expected: UnsafeRawBufferPointer) -> Bool {
        guard token.count >= 2 else { return false }
        var i = token.lowerBound + 1
        let end = token.upperBound - 1
        var j = 0
        @inline(__always) func take(_ b: UInt8) -> Bool {
            guard j < expected.count, expected[j] == b else { return false }
            j += 1
            return true
        }
        while i < end {
            let c = p[i]
            if c != UInt8(ascii: "\\") {
                guard take(c) else { return false }
                i += 1
                continue
            }
            guard i + 1 < end else { return false }
            let e = p[i + 1]
            i += 2
            let decoded: UInt8
            switch e {
            case UInt8(ascii: "\""): decoded = 0x22
            case UInt8(ascii: "\\"): decoded = 0x5C
            case UInt8(ascii: "/"): decoded = 0x2F
            case UInt8(ascii: "b"): decoded = 0x08
            case UInt8(ascii: "f"): decoded = 0x0C
            case UInt8(ascii: "n"): decoded = 0x0A
            case UInt8(ascii: "r"): decoded = 0x0D
            case UInt8(ascii: "t"): decoded = 0x09
            case UInt8(ascii: "u"):
                guard var scalar = hex4(p, i, end) else { return false }
                i += 4
                if scalar >= 0xD800 && scalar < 0xDC00 {
                    guard i + 6 <= end, p[i] == UInt8(ascii: "\\"), p[i + 1] == UInt8(ascii: "u"),
                        let low = hex4(p, i + 2, end), low >= 0xDC00 && low < 0xE000
                    else { return false }
                    i += 6
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                }
                guard let us = Unicode.Scalar(scalar) else { return false }
                for b in UTF8.encode(us)! { guard take(b) else { return false } }
                continue
            default: return false
            }
            guard take(decoded) else { return false }
        }
        return j == expected.count
    }

    static func hex4(_ p: UnsafeRawBufferPointer, _ at: Int, _ end: Int) -> UInt32? {
        guard at + 4 <= end else { return nil }
        var v: UInt32 = 0
        for k in 0..<4 {
            let c = p[at + k]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: return nil
            }
            v = v << 4 | d
        }
        return v
    }
}

/// Outbound packets of the generator, written straight into a buffer.
public enum SocketIOOutbound {
    /// Appends `s` as a JSON string body (without quotes), escaping `"`, `\` and control bytes.
    public static func appendEscaped(_ s: some Sequence<UInt8>, to out: inout [UInt8]) {
        for c in s {
            switch c {
            case 0x22: out.append(0x5C); out.append(0x22)
            case 0x5C: out.append(0x5C); out.append(0x5C)
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: [0x5C, UInt8(ascii: "u"), 0x30, 0x30, hex[Int(c >> 4)], hex[Int(c & 15)]])
            default: out.append(c)
            }
        }
    }

    /// `42["<event>",{"session_id":null}]`.
    public static func sessionRequest(event: String) -> [UInt8] {
        var out = Array("42[\"".utf8)
        appendEscaped(event.utf8, to: &out)
        out += Array("\",{\"session_id\":null}]".utf8)
        return out
    }

    /// The fixed parts around a message text: `42["<event>",{"message":"` and `","session_id":<sid>}]`.
    public static func userMessageParts(event: String, sessionIDToken: some Collection<UInt8>) -> (prefix: [UInt8], suffix: [UInt8]) {
        var prefix = Array("42[\"".utf8)
        appendEscaped(event.utf8, to: &prefix)
        prefix += Array("\",{\"message\":\"".utf8)
        var suffix = Array("\",\"session_id\":".utf8)
        suffix += sessionIDToken
        suffix += Array("}]".utf8)
        return (prefix, suffix)
    }

    /// The message text `hello <conn>-<seq>`, padded with ` abc...` to at least `size` bytes.
    public static func messageText(connection: Int, sequence: Int, size: Int, into out: inout [UInt8]) {
        out.removeAll(keepingCapacity: true)
        out.append(contentsOf: hello)
        appendDecimal(connection, to: &out)
        out.append(UInt8(ascii: "-"))
        appendDecimal(sequence, to: &out)
        if out.count < size {
            out.append(0x20)
            var k = 0
            while out.count < size { out.append(UInt8(ascii: "a") + UInt8(k % 26)); k += 1 }
        }
    }

    static let hello: [UInt8] = Array("hello ".utf8)

    static func appendDecimal(_ v: Int, to out: inout [UInt8]) {
        if v == 0 { out.append(UInt8(ascii: "0")); return }
        var n = v < 0 ? -v : v
        if v < 0 { out.append(UInt8(ascii: "-")) }
        let start = out.count
        while n > 0 { out.append(UInt8(ascii: "0") + UInt8(n % 10)); n /= 10 }
        out[start...].reverse()
    }
}
