/// A JSON document as a value.
///
/// Parley passes JSON between every layer (Socket.IO event arguments, Rasa payloads, plugin
/// requests and replies), so it keeps one small value type with its own parser and serializer.
/// Written here rather than taken from Foundation because `JSONSerialization` goes through
/// `NSNumber` (losing the difference between `true` and `1`) and is slow on the per-message path.
///
/// Objects keep their keys in insertion order, so serialising a parsed document reproduces the
/// key order the sender used (clients such as rasa-webchat compare exact key sets, not order, but
/// stable output makes tests and logs readable).
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    /// A number without fraction or exponent that fits in 64 bits.
    case int(Int64)
    /// Any other number.
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)
}

/// An ordered JSON object: keys keep insertion order; setting an existing key replaces its value in place.
///
/// Layout: one array of key/value pairs in insertion order (one allocation per object, no hashing for the
/// small objects that make up almost all traffic: lookups are a linear scan). Objects with more than
/// ``indexThreshold`` keys also keep a key → position index, so large or hostile objects stay O(1) per lookup.
public struct JSONObject: Sendable, Hashable, Sequence, ExpressibleByDictionaryLiteral {
    /// One member.
    public typealias Element = (key: String, value: JSONValue)

    @usableFromInline var entries: [Element]
    /// Key → position in `entries`; only for objects with more than `indexThreshold` keys.
    @usableFromInline var index: [String: Int]?

    /// Above this many keys an object keeps a hash index; below it lookups scan the keys.
    @usableFromInline static var indexThreshold: Int { 12 }

    public init() {
        entries = []
        index = nil
    }

    /// An empty object with room for `capacity` keys.
    public init(minimumCapacity capacity: Int) {
        entries = []
        entries.reserveCapacity(capacity)
        index = nil
    }

    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self.init(minimumCapacity: elements.count)
        for (k, v) in elements { self[k] = v }
    }

    public init(_ pairs: [(String, JSONValue)]) {
        self.init(minimumCapacity: pairs.count)
        for (k, v) in pairs { self[k] = v }
    }

    /// The keys in insertion order.
    public var keys: [String] { entries.map(\.key) }
    /// The values in insertion order.
    public var values: [JSONValue] { entries.map(\.value) }
    public var count: Int { entries.count }
    public var isEmpty: Bool { entries.isEmpty }

    /// Reserves room for `capacity` keys.
    public mutating func reserveCapacity(_ capacity: Int) { entries.reserveCapacity(capacity) }

    @inlinable
    func position(of key: String) -> Int? {
        if let index { return index[key] }
        for i in entries.indices where entries[i].key == key { return i }
        return nil
    }

    public subscript(key: String) -> JSONValue? {
        get {
            guard let i = position(of: key) else { return nil }
            return entries[i].value
        }
        set {
            if let newValue {
                if let i = position(of: key) {
                    entries[i].value = newValue
                } else {
                    entries.append((key, newValue))
                    if index != nil {
                        index![key] = entries.count - 1
                    } else if entries.count > Self.indexThreshold {
                        buildIndex()
                    }
                }
            } else if let i = position(of: key) {
                entries.remove(at: i)
                if index != nil {
                    if entries.count > Self.indexThreshold { buildIndex() } else { index = nil }
                }
            }
        }
    }

    private mutating func buildIndex() {
        var map: [String: Int] = [:]
        map.reserveCapacity(entries.count)
        for (i, e) in entries.enumerated() { map[e.key] = i }
        index = map
    }

    public func makeIterator() -> IndexingIterator<[Element]> { entries.makeIterator() }

    /// Key-order-insensitive equality, as JSON defines it.
    public static func == (lhs: JSONObject, rhs: JSONObject) -> Bool {
        guard lhs.entries.count == rhs.entries.count else { return false }
        for e in lhs.entries {
            guard let other = rhs[e.key], other == e.value else { return false }
        }
        return true
    }

    /// Key-order-insensitive, consistent with `==`.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(entries.count)
        var sum: UInt = 0
        for e in entries {
            var h = Hasher()
            h.combine(e.key)
            h.combine(e.value)
            sum &+= UInt(bitPattern: h.finalize())
        }
        hasher.combine(sum)
    }
}

// MARK: - Literals and accessors

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) { self = .object(JSONObject(elements)) }
    public init(nilLiteral: ()) { self = .null }
}

extension JSONValue {
    public var stringValue: String? { if case .string(let s) = self { s } else { nil } }
    public var boolValue: Bool? { if case .bool(let b) = self { b } else { nil } }
    public var arrayValue: [JSONValue]? { if case .array(let a) = self { a } else { nil } }
    public var objectValue: JSONObject? { if case .object(let o) = self { o } else { nil } }
    public var isNull: Bool { if case .null = self { true } else { false } }
    /// The number as a `Double`, for `.int` and `.double`.
    public var doubleValue: Double? {
        switch self {
        case .int(let i): Double(i)
        case .double(let d): d
        default: nil
        }
    }
    /// The number as an `Int64` when it is integral and in range.
    public var int64Value: Int64? {
        switch self {
        case .int(let i): return i
        case .double(let d):
            guard d.rounded() == d, d >= -9.223372036854775808e18, d < 9.223372036854775808e18 else { return nil }
            return Int64(d)
        default: return nil
        }
    }

    /// Member of an object, or nil for other values and missing keys.
    public subscript(key: String) -> JSONValue? {
        get { objectValue?[key] }
        set {
            guard case .object(var o) = self else { return }
            o[key] = newValue
            self = .object(o)
        }
    }

    /// Whether Python would consider the value false (`null`, `false`, `0`, `""`, `[]`, `{}`).
    /// Rasa's output channel skips such values.
    public var isFalsy: Bool {
        switch self {
        case .null: true
        case .bool(let b): !b
        case .int(let i): i == 0
        case .double(let d): d == 0
        case .string(let s): s.isEmpty
        case .array(let a): a.isEmpty
        case .object(let o): o.isEmpty
        }
    }
}

extension JSONValue {
    /// Nesting depth: 0 for a scalar, 1 for an object or array of scalars, and so on.
    public var nestingDepth: Int {
        switch self {
        case .object(let o): 1 + o.reduce(0) { max($0, $1.value.nestingDepth) }
        case .array(let a): 1 + a.reduce(0) { max($0, $1.nestingDepth) }
        default: 0
        }
    }

    /// The nesting limit for JSON that comes from outside the process (request bodies, JSON held in strings,
    /// plugin replies): deep enough for any real payload, far below the 512 levels the store reads back, so
    /// everything accepted can be stored inside event wrappers and read again.
    public static let inputParseDepth = 128
}
