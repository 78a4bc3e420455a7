/// A MessagePack value: the format socket.io's Redis adapter and Redis emitter publish (notepack.io).
///
/// Written here because none of the packages Parley builds on reads MessagePack, and only the subset those
/// publishers produce is needed (nil, booleans, integers, floats, strings, binary, arrays, maps; no extension
/// types). The decoder assumes hostile input: every length is checked against the bytes present and nesting is
/// bounded, so a wrong message is an error, never a crash.
public enum MessagePackValue: Sendable, Hashable {
    case `nil`
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case double(Double)
    case string(String)
    case binary([UInt8])
    case array([MessagePackValue])
    /// Keys in the order they were written.
    case map([MessagePackPair])

    /// The string, for `.string`.
    public var stringValue: String? { if case .string(let s) = self { s } else { nil } }

    /// The value of the first `key` member of a map with string keys.
    public subscript(key: String) -> MessagePackValue? {
        guard case .map(let pairs) = self else { return nil }
        return pairs.first { $0.key == .string(key) }?.value
    }
}

/// One key/value member of a MessagePack map.
public struct MessagePackPair: Sendable, Hashable {
    public var key: MessagePackValue
    public var value: MessagePackValue
    public init(_ key: MessagePackValue, _ value: MessagePackValue) {
        self.key = key
        self.value = value
    }
}

/// Why bytes are not a MessagePack value.
public struct MessagePackError: Error, Sendable, CustomStringConvertible {
    /// What was wrong and where.
    public let description: String
    init(_ description: String) { self.description = description }
}

extension MessagePackValue {
    /// Deepest nesting the decoder accepts.
    public static let maxDepth = 64

    /// The value encoded in `bytes`, which must hold exactly one value.
    public static func decode(_ bytes: [UInt8]) throws(MessagePackError) -> MessagePackValue {
        var reader = Reader(bytes: bytes)
        let value = try reader.value(depth: 0)
        guard reader.offset == bytes.count else { throw MessagePackError("\(bytes.count - reader.offset) bytes after the value") }
        return value
    }

    /// The value's encoding (the shortest form of every integer and length, floats as float 64).
    public func encoded() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(64)
        encode(into: &out)
        return out
    }

    /// Appends the value's encoding to `out`.
    public func encode(into out: inout [UInt8]) {
        switch self {
        case .nil: out.append(0xC0)
        case .bool(let b): out.append(b ? 0xC3 : 0xC2)
        case .int(let i):
            if i >= 0 {
                MessagePackValue.uint(UInt64(i)).encode(into: &out)
            } else if i >= -32 {
                out.append(UInt8(bitPattern: Int8(i)))
            } else if i >= Int64(Int8.min) {
                out.append(0xD0); out.append(UInt8(bitPattern: Int8(i)))
            } else if i >= Int64(Int16.min) {
                out.append(0xD1); Self.append(UInt16(bitPattern: Int16(i)), to: &out)
            } else if i >= Int64(Int32.min) {
                out.append(0xD2); Self.append(UInt32(bitPattern: Int32(i)), to: &out)
            } else {
                out.append(0xD3); Self.append(UInt64(bitPattern: i), to: &out)
            }
        case .uint(let u):
            if u < 0x80 {
                out.append(UInt8(u))
            } else if u <= UInt64(UInt8.max) {
                out.append(0xCC); out.append(UInt8(u))
            } else if u <= UInt64(UInt16.max) {
                out.append(0xCD); Self.append(UInt16(u), to: &out)
            } else if u <= UInt64(UInt32.max) {
                out.append(0xCE); Self.append(UInt32(u), to: &out)
            } else {
                out.append(0xCF); Self.append(u, to: &out)
            }
        case .double(let d):
            out.append(0xCB); Self.append(d.bitPattern, to: &out)
        case .string(let s):
            let n = s.utf8.count
            if n < 32 {
                out.append(0xA0 | UInt8(n))
            } else if n <= Int(UInt8.max) {
                out.append(0xD9); out.append(UInt8(n))
            } else if n <= Int(UInt16.max) {
                out.append(0xDA); Self.append(UInt16(n), to: &out)
            } else {
                out.append(0xDB); Self.append(UInt32(n), to: &out)
            }
            out.append(contentsOf: s.utf8)
        case .binary(let b):
            if b.count <= Int(UInt8.max) {
                out.append(0xC4); out.append(UInt8(b.count))
            } else if b.count <= Int(UInt16.max) {
                out.append(0xC5); Self.append(UInt16(b.count), to: &out)
            } else {
                out.append(0xC6); Self.append(UInt32(b.count), to: &out)
            }
            out.append(contentsOf: b)
        case .array(let items):
            Self.header(count: items.count, fix: 0x90, c16: 0xDC, c32: 0xDD, into: &out)
            for item in items { item.encode(into: &out) }
        case .map(let pairs):
            Self.header(count: pairs.count, fix: 0x80, c16: 0xDE, c32: 0xDF, into: &out)
            for pair in pairs {
                pair.key.encode(into: &out)
                pair.value.encode(into: &out)
            }
        }
    }

    private static func header(count: Int, fix: UInt8, c16: UInt8, c32: UInt8, into out: inout [UInt8]) {
        if count < 16 {
            out.append(fix | UInt8(count))
        } else if count <= Int(UInt16.max) {
            out.append(c16); append(UInt16(count), to: &out)
        } else {
            out.append(c32); append(UInt32(count), to: &out)
        }
    }

    private static func append<T: FixedWidthInteger>(_ value: T, to out: inout [UInt8]) {
        var big = value.bigEndian
        withUnsafeBytes(of: &big) { out.append(contentsOf: $0) }
    }

    private struct Reader {
        let bytes: [UInt8]
        var offset = 0

        mutating func byte() throws(MessagePackError) -> UInt8 {
            guard offset < bytes.count else { throw MessagePackError("truncated at byte \(offset)") }
            defer { offset += 1 }
            return bytes[offset]
        }

        mutating func integer<T: FixedWidthInteger>(_: T.Type) throws(MessagePackError) -> T {
            let size = MemoryLayout<T>.size
            guard bytes.count - offset >= size else { throw MessagePackError("truncated at byte \(offset)") }
            var v: T = 0
            for i in 0..<size { v = v << 8 | T(bytes[offset + i]) }
            offset += size
            return v
        }

        mutating func take(_ count: Int) throws(MessagePackError) -> ArraySlice<UInt8> {
            guard count >= 0, bytes.count - offset >= count else {
                throw MessagePackError("a length of \(count) at byte \(offset) runs past the end (\(bytes.count) bytes)")
            }
            defer { offset += count }
            return bytes[offset..<offset + count]
        }

        mutating func string(_ count: Int) throws(MessagePackError) -> MessagePackValue {
            let raw = try take(count)
            guard let s = String(validating: raw, as: UTF8.self) else { throw MessagePackError("a string at byte \(offset - count) is not UTF-8") }
            return .string(s)
        }

        mutating func array(_ count: Int, depth: Int) throws(MessagePackError) -> MessagePackValue {
            // Every element takes at least one byte: a count larger than what is left is a lie.
            guard count <= bytes.count - offset else { throw MessagePackError("an array of \(count) at byte \(offset) runs past the end") }
            var items: [MessagePackValue] = []
            items.reserveCapacity(count)
            for _ in 0..<count { items.append(try value(depth: depth + 1)) }
            return .array(items)
        }

        mutating func map(_ count: Int, depth: Int) throws(MessagePackError) -> MessagePackValue {
            guard count <= (bytes.count - offset) / 2 else { throw MessagePackError("a map of \(count) at byte \(offset) runs past the end") }
            var pairs: [MessagePackPair] = []
            pairs.reserveCapacity(count)
            for _ in 0..<count {
                let key = try value(depth: depth + 1)
                pairs.append(MessagePackPair(key, try value(depth: depth + 1)))
            }
            return .map(pairs)
        }

        mutating func value(depth: Int) throws(MessagePackError) -> MessagePackValue {
            guard depth < MessagePackValue.maxDepth else { throw MessagePackError("nested deeper than \(MessagePackValue.maxDepth)") }
            let b = try byte()
            switch b {
            case 0x00...0x7F: return .uint(UInt64(b))
            case 0x80...0x8F: return try map(Int(b & 0x0F), depth: depth)
            case 0x90...0x9F: return try array(Int(b & 0x0F), depth: depth)
            case 0xA0...0xBF: return try string(Int(b & 0x1F))
            case 0xC0: return .nil
            case 0xC2: return .bool(false)
            case 0xC3: return .bool(true)
            case 0xC4: return .binary(Array(try take(Int(try integer(UInt8.self)))))
            case 0xC5: return .binary(Array(try take(Int(try integer(UInt16.self)))))
            case 0xC6: return .binary(Array(try take(Int(try integer(UInt32.self)))))
            case 0xCA: return .double(Double(Float(bitPattern: try integer(UInt32.self))))
            case 0xCB: return .double(Double(bitPattern: try integer(UInt64.self)))
            case 0xCC: return .uint(UInt64(try integer(UInt8.self)))
            case 0xCD: return .uint(UInt64(try integer(UInt16.self)))
            case 0xCE: return .uint(UInt64(try integer(UInt32.self)))
            case 0xCF: return .uint(try integer(UInt64.self))
            case 0xD0: return .int(Int64(Int8(bitPattern: try integer(UInt8.self))))
            case 0xD1: return .int(Int64(Int16(bitPattern: try integer(UInt16.self))))
            case 0xD2: return .int(Int64(Int32(bitPattern: try integer(UInt32.self))))
            case 0xD3: return .int(Int64(bitPattern: try integer(UInt64.self)))
            case 0xD9: return try string(Int(try integer(UInt8.self)))
            case 0xDA: return try string(Int(try integer(UInt16.self)))
            case 0xDB: return try string(Int(try integer(UInt32.self)))
            case 0xDC: return try array(Int(try integer(UInt16.self)), depth: depth)
            case 0xDD: return try array(Int(try integer(UInt32.self)), depth: depth)
            case 0xDE: return try map(Int(try integer(UInt16.self)), depth: depth)
            case 0xDF: return try map(Int(try integer(UInt32.self)), depth: depth)
            case 0xE0...0xFF: return .int(Int64(Int8(bitPattern: b)))
            default: throw MessagePackError("type byte 0x\(String(b, radix: 16)) at byte \(offset - 1) is not supported (extension types are not read)")
            }
        }
    }
}
