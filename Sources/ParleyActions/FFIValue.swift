public import ParleyJSON

/// A value passed to or returned from a native function, already converted to its declared ``FFIType``.
public enum FFIValue: Sendable, Hashable {
    /// The result of a `void` function.
    case void
    case bool(Bool)
    case int32(Int32)
    case int64(Int64)
    case double(Double)
    /// A UTF-8 string; `nil` is a returned `NULL` (never passed as an argument).
    case cstring(String?)

    /// The value's type.
    public var type: FFIType {
        switch self {
        case .void: .void
        case .bool: .bool
        case .int32: .int32
        case .int64: .int64
        case .double: .double
        case .cstring: .cstring
        }
    }

    /// The value as JSON: numbers, bools and strings map to themselves; `void` and a `NULL` string to `null`.
    public var json: JSONValue {
        switch self {
        case .void: .null
        case .bool(let b): .bool(b)
        case .int32(let i): .int(Int64(i))
        case .int64(let i): .int(i)
        case .double(let d): .double(d)
        case .cstring(let s): s.map(JSONValue.string) ?? .null
        }
    }

    /// The value as text for replies and the command line: integral doubles without a fraction (`1024`),
    /// others in Swift's shortest round-trip form (`6.3`), bools as `true`/`false`, `NULL` and `void` as "".
    public var text: String {
        switch self {
        case .void: ""
        case .bool(let b): b ? "true" : "false"
        case .int32(let i): String(i)
        case .int64(let i): String(i)
        case .double(let d): FFIValue.format(d)
        case .cstring(let s): s ?? ""
        }
    }

    static func format(_ d: Double) -> String {
        if d.isFinite, d == d.rounded(), abs(d) < 1e15 { return String(Int64(d)) }
        return String(d)
    }

    /// Converts a JSON value to the declared parameter type.
    ///
    /// Rules: `bool` takes a JSON bool; `int32`/`int64` take a JSON number that is integral and inside the
    /// type's range (`15` and `15.0` are fine, `15.5` and `3000000000` for int32 are not); `double` takes any
    /// JSON number; `cstring` takes a JSON string without NUL characters. Anything else (including `null`)
    /// is an error. The same converter serves manifests and `parley ffi-call`.
    /// - Throws: ``FFIConversionError`` saying what was expected and what was found.
    public static func convert(_ value: JSONValue, to type: FFIType) throws(FFIConversionError) -> FFIValue {
        switch type {
        case .void, .say:
            throw FFIConversionError("type '\(type)' takes no value")
        case .bool:
            guard case .bool(let b) = value else { throw .wrongType(expected: "a bool", found: value) }
            return .bool(b)
        case .int32:
            let i = try integer(value, typeName: "int32")
            guard let narrow = Int32(exactly: i) else {
                throw FFIConversionError("\(i) is out of range for int32 (\(Int32.min)...\(Int32.max))")
            }
            return .int32(narrow)
        case .int64:
            return .int64(try integer(value, typeName: "int64"))
        case .double:
            switch value {
            case .int(let i): return .double(Double(i))
            case .double(let d): return .double(d)
            default: throw .wrongType(expected: "a number", found: value)
            }
        case .cstring:
            guard case .string(let s) = value else { throw .wrongType(expected: "a string", found: value) }
            if s.utf8.contains(0) { throw FFIConversionError("string contains a NUL character; cstring cannot carry it") }
            return .cstring(s)
        }
    }

    private static func integer(_ value: JSONValue, typeName: String) throws(FFIConversionError) -> Int64 {
        switch value {
        case .int(let i):
            return i
        case .double(let d):
            guard d.isFinite, d == d.rounded() else {
                throw FFIConversionError("\(FFIValue.format(d)) is not an integer (\(typeName) expected)")
            }
            guard let i = Int64(exactly: d) else {
                throw FFIConversionError("\(FFIValue.format(d)) is out of range for \(typeName)")
            }
            return i
        default:
            throw .wrongType(expected: "an integer", found: value)
        }
    }

    /// Converts a command-line word to the declared type, through the same JSON converter as manifests:
    /// numbers are read as JSON numbers (`-3`, `2.5`, `1e3`), bools as `true`/`false`, strings verbatim.
    /// - Throws: ``FFIConversionError`` when the word is not a value of that type or is out of range.
    public static func convert(argument word: String, to type: FFIType) throws(FFIConversionError) -> FFIValue {
        switch type {
        case .cstring:
            return try convert(.string(word), to: type)
        case .bool:
            switch word {
            case "true", "1": return .bool(true)
            case "false", "0": return .bool(false)
            default: throw FFIConversionError("'\(word)' is not a bool (use true or false)")
            }
        case .int32, .int64, .double:
            guard let json = try? JSONValue.parse(word), json.doubleValue != nil else {
                if Int64(word) == nil, word.allSatisfy({ $0.isNumber || $0 == "-" || $0 == "+" }), !word.isEmpty {
                    throw FFIConversionError("\(word) is out of range for \(type)")
                }
                throw FFIConversionError("'\(word)' is not a number (\(type) expected)")
            }
            return try convert(json, to: type)
        case .void, .say:
            throw FFIConversionError("type '\(type)' takes no value")
        }
    }
}

/// A value that cannot be converted to the declared type (wrong JSON type, out of range, not integral).
public struct FFIConversionError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong, without the action or argument position (callers add those).
    public var message: String

    public init(_ message: String) { self.message = message }

    static func wrongType(expected: String, found: JSONValue) -> FFIConversionError {
        FFIConversionError("expected \(expected), got \(found.typeDescription)")
    }

    public var description: String { message }
}

extension JSONValue {
    /// "a string \"abc\"", "null", "an array" … for error messages.
    var typeDescription: String {
        switch self {
        case .null: "null"
        case .bool(let b): "the bool \(b)"
        case .int(let i): "the number \(i)"
        case .double(let d): "the number \(FFIValue.format(d))"
        case .string(let s): "the string \"\(s.count > 40 ? String(s.prefix(40)) + "…" : s)\""
        case .array: "an array"
        case .object: "an object"
        }
    }
}
