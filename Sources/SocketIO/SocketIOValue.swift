public import ParleyJSON

/// One Socket.IO event or acknowledgement argument: JSON, binary data, or a container mixing both.
///
/// Socket.IO arguments are JSON values in which any node may be a binary buffer. JSON without binary
/// (by far the common case) stays a ``ParleyJSON/JSONValue`` inside ``json(_:)``, so handlers read it
/// without conversion and emitting it costs one JSON serialisation. Only the containers on the path to a
/// binary buffer use ``array(_:)`` / ``object(_:)``.
///
/// The decoder produces the canonical form: every subtree without binary is a single ``json(_:)``.
/// Equality is structural, so compare decoded values with canonical literals
/// (`.json(["a": 1])`, not `.object([("a", .json(1))])`).
public enum SocketIOValue: Sendable, Hashable {
    /// A JSON value that contains no binary data.
    case json(JSONValue)
    /// A binary buffer: sent as an attachment, referenced by a `{"_placeholder":true,"num":i}` object.
    case binary([UInt8])
    /// An array with at least one binary buffer somewhere inside.
    case array([SocketIOValue])
    /// An object with at least one binary buffer somewhere inside; keys keep their order.
    case object([SocketIOObjectMember])

    /// The value as JSON, or nil when it contains binary data.
    public var jsonValue: JSONValue? {
        switch self {
        case .json(let v): return v
        case .binary: return nil
        case .array(let items):
            var out: [JSONValue] = []
            out.reserveCapacity(items.count)
            for item in items {
                guard let j = item.jsonValue else { return nil }
                out.append(j)
            }
            return .array(out)
        case .object(let members):
            var out = JSONObject()
            for m in members {
                guard let j = m.value.jsonValue else { return nil }
                out[m.key] = j
            }
            return .object(out)
        }
    }

    /// The buffer of a ``binary(_:)`` value, else nil.
    public var binaryValue: [UInt8]? {
        if case .binary(let b) = self { b } else { nil }
    }

    /// Whether a binary buffer occurs anywhere in the value.
    public var containsBinary: Bool {
        switch self {
        case .json: false
        case .binary: true
        case .array(let items): items.contains { $0.containsBinary }
        case .object(let members): members.contains { $0.value.containsBinary }
        }
    }
}

/// One key and value of a ``SocketIOValue/object(_:)``.
public struct SocketIOObjectMember: Sendable, Hashable {
    /// The member's key.
    public var key: String
    /// The member's value.
    public var value: SocketIOValue

    /// Creates a member.
    public init(_ key: String, _ value: SocketIOValue) {
        self.key = key
        self.value = value
    }
}

extension SocketIOValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByNilLiteral
{
    /// A JSON string.
    public init(stringLiteral value: String) { self = .json(.string(value)) }
    /// A JSON integer.
    public init(integerLiteral value: Int64) { self = .json(.int(value)) }
    /// A JSON number.
    public init(floatLiteral value: Double) { self = .json(.double(value)) }
    /// A JSON boolean.
    public init(booleanLiteral value: Bool) { self = .json(.bool(value)) }
    /// JSON `null`.
    public init(nilLiteral: ()) { self = .json(.null) }
}

extension SocketIOValue: CustomStringConvertible {
    /// JSON text with binary buffers shown as `<Buffer n bytes>` (for logs and test failures).
    public var description: String {
        switch self {
        case .json(let v): return v.serialized
        case .binary(let b): return "<Buffer \(b.count) bytes>"
        case .array(let items): return "[" + items.map(\.description).joined(separator: ",") + "]"
        case .object(let members):
            return "{" + members.map { JSONValue.string($0.key).serialized + ":" + $0.value.description }.joined(separator: ",") + "}"
        }
    }
}
