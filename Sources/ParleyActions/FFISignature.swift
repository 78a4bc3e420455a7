/// One type of the closed set that native actions may use in a signature.
///
/// | name      | C type                          | where                |
/// |-----------|---------------------------------|----------------------|
/// | `void`    | `void`                          | return only          |
/// | `bool`    | `bool` (`_Bool`)                | parameter, return    |
/// | `int32`   | `int32_t`                       | parameter, return    |
/// | `int64`   | `int64_t`                       | parameter, return    |
/// | `double`  | `double`                        | parameter, return    |
/// | `cstring` | `const char *` (UTF-8, NUL-terminated) | parameter, return |
/// | `say`     | `void (*)(const char *text)`    | parameter only       |
public enum FFIType: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case void
    case bool
    case int32
    case int64
    case double
    case cstring
    /// A callback `void (*)(const char *text)` that sends a message to the current conversation.
    case say

    public var description: String { rawValue }

    /// The names accepted for parameters, for error messages.
    static let parameterNames = "bool, int32, int64, double, cstring, say"
    /// The names accepted for the return type, for error messages.
    static let returnNames = "void, bool, int32, int64, double, cstring"
}

/// A parsed signature string such as `double(double,int32)`, `cstring(cstring)` or `void(cstring,say)`.
///
/// Grammar: `RETURN '(' [PARAM (',' PARAM)*] ')'`, whitespace allowed around every token; `()` and
/// `(void)` both mean no parameters. Every name must be one of ``FFIType``'s; `void` is only valid as the
/// return type and `say` only as a parameter.
public struct FFISignature: Sendable, Hashable, CustomStringConvertible {
    /// The return type (never ``FFIType/say``).
    public var returnType: FFIType
    /// The parameter types in order (never ``FFIType/void``).
    public var parameters: [FFIType]

    /// Creates a signature from already-checked types.
    /// - Throws: ``FFISignatureError`` when `void` appears as a parameter or `say` as the return type.
    public init(returns returnType: FFIType, parameters: [FFIType]) throws(FFISignatureError) {
        let text = "\(returnType.rawValue)(\(parameters.map(\.rawValue).joined(separator: ",")))"
        if returnType == .say {
            throw FFISignatureError(text: text, message: "return type: 'say' is only valid as a parameter")
        }
        if let i = parameters.firstIndex(of: .void) {
            throw FFISignatureError(text: text, message: "parameter \(i + 1): 'void' is only valid as the return type")
        }
        self.returnType = returnType
        self.parameters = parameters
    }

    /// Parses a signature string.
    /// - Throws: ``FFISignatureError`` naming the position (return type or parameter N) and the offending text.
    public init(parsing text: String) throws(FFISignatureError) {
        func fail(_ message: String) -> FFISignatureError { FFISignatureError(text: text, message: message) }
        guard let open = text.firstIndex(of: "("), let close = text.lastIndex(of: ")"), open < close else {
            throw fail("expected RETURN(PARAM,...), for example double(double,int32)")
        }
        if !text[text.index(after: close)...].allSatisfy(\.isWhitespace) {
            throw fail("unexpected text after ')'")
        }
        let returnName = text[..<open].trimmingWhitespace()
        if returnName.isEmpty { throw fail("missing return type before '('") }
        guard let returnType = FFIType(rawValue: returnName) else {
            throw fail("return type: unknown type '\(returnName)' (supported: \(FFIType.returnNames))")
        }
        if returnType == .say {
            throw fail("return type: 'say' is only valid as a parameter")
        }
        let inner = text[text.index(after: open)..<close]
        if inner.contains("(") || inner.contains(")") {
            throw fail("nested parentheses are not supported (function pointer parameters are written 'say')")
        }
        var parameters: [FFIType] = []
        let trimmedInner = inner.trimmingWhitespace()
        if !trimmedInner.isEmpty && trimmedInner != "void" {
            let parts = inner.split(separator: ",", omittingEmptySubsequences: false)
            for (i, part) in parts.enumerated() {
                let name = part.trimmingWhitespace()
                if name.isEmpty { throw fail("parameter \(i + 1): missing type name") }
                guard let type = FFIType(rawValue: name) else {
                    throw fail("parameter \(i + 1): unknown type '\(name)' (supported: \(FFIType.parameterNames))")
                }
                if type == .void { throw fail("parameter \(i + 1): 'void' is only valid as the return type") }
                parameters.append(type)
            }
        }
        self.returnType = returnType
        self.parameters = parameters
    }

    /// The number of parameters that take a value (every parameter except `say`).
    public var valueParameterCount: Int { parameters.count { $0 != .say } }

    /// The canonical text, e.g. `double(double,int32)`.
    public var description: String {
        "\(returnType.rawValue)(\(parameters.map(\.rawValue).joined(separator: ",")))"
    }
}

/// A signature string that does not parse, with the position of the problem.
public struct FFISignatureError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The signature text as written.
    public var text: String
    /// What is wrong and where ("parameter 2: unknown type 'float' ...").
    public var message: String

    public var description: String { "signature '\(text)': \(message)" }
}

extension StringProtocol {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s.removeFirst() }
        while let l = s.last, l.isWhitespace { s.removeLast() }
        return String(s)
    }
}
