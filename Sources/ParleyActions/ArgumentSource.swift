public import ParleyDispatch
public import ParleyJSON

/// Where a native action's argument comes from when the dispatcher runs it.
///
/// Written in a manifest as `slot:NAME`, `entity:NAME`, `metadata:KEY`, `text`, `literal:TEXT`, or a YAML
/// number / bool (a literal of that value). Any other string is rejected at load, so a typo such as
/// `slots:amount` never silently becomes a literal.
public enum ArgumentSource: Sendable, Hashable, CustomStringConvertible {
    /// The conversation's slot `NAME` (must be set and not `null`).
    case slot(String)
    /// The value of the first entity `NAME` in the latest user message.
    case entity(String)
    /// `metadata[KEY]` of the latest user message.
    case metadata(String)
    /// The text of the latest user message.
    case text
    /// A fixed value, checked against the parameter type at load.
    case literal(JSONValue)

    /// Parses the string form (`slot:amount`, `entity:city`, `metadata:locale`, `text`, `literal:km`).
    /// - Throws: ``ActionError/Code/manifest`` listing the accepted forms.
    public init(parsing text: String) throws(ActionError) {
        func name(after prefix: String) throws(ActionError) -> String? {
            guard text.hasPrefix(prefix) else { return nil }
            let rest = String(text.dropFirst(prefix.count))
            if rest.isEmpty { throw ActionError(.manifest, "'\(text)' needs a name after '\(prefix)'") }
            return rest
        }
        if text == "text" {
            self = .text
        } else if let n = try name(after: "slot:") {
            self = .slot(n)
        } else if let n = try name(after: "entity:") {
            self = .entity(n)
        } else if let n = try name(after: "metadata:") {
            self = .metadata(n)
        } else if text.hasPrefix("literal:") {
            self = .literal(.string(String(text.dropFirst("literal:".count))))
        } else {
            throw ActionError(
                .manifest,
                "unknown argument source '\(text)' (use slot:NAME, entity:NAME, metadata:KEY, text, literal:TEXT, or a number or bool)")
        }
    }

    public var description: String {
        switch self {
        case .slot(let n): "slot:\(n)"
        case .entity(let n): "entity:\(n)"
        case .metadata(let k): "metadata:\(k)"
        case .text: "text"
        case .literal(let v): "literal:\(v.serialized)"
        }
    }

    /// The JSON value this source has in `invocation`.
    /// - Throws: ``ActionError/Code/argument`` when the slot is unset, the entity absent, and so on.
    public func value(in invocation: ActionInvocation) throws(ActionError) -> JSONValue {
        switch self {
        case .slot(let name):
            guard let value = invocation.slots[name], !value.isNull else {
                throw ActionError(.argument, "slot '\(name)' is not set")
            }
            return value
        case .entity(let name):
            let entities = invocation.latestMessage["entities"]?.arrayValue ?? []
            guard let entity = entities.first(where: { $0["entity"]?.stringValue == name }) else {
                throw ActionError(.argument, "the latest message has no entity '\(name)'")
            }
            guard let value = entity["value"], !value.isNull else {
                throw ActionError(.argument, "entity '\(name)' has no value")
            }
            return value
        case .metadata(let key):
            guard let value = invocation.latestMessage["metadata"]?[key], !value.isNull else {
                throw ActionError(.argument, "the latest message's metadata has no key '\(key)'")
            }
            return value
        case .text:
            guard let value = invocation.latestMessage["text"], !value.isNull else {
                throw ActionError(.argument, "the latest message has no text")
            }
            return value
        case .literal(let value):
            return value
        }
    }
}

/// A reply template such as `"Tip: {result}"` or `"{result:.2f} km"`.
///
/// Placeholders: `{result}` (the result as text: `1024`, `6.3`, `true`, the string) and `{result:.Nf}`
/// (a number with N decimals, 0...17). `{{` and `}}` write literal braces. Other placeholders are rejected at
/// load.
public struct ResponseTemplate: Sendable, Hashable, CustomStringConvertible {
    private enum Part: Sendable, Hashable {
        case text(String)
        case result
        case fixed(Int)
    }
    private let parts: [Part]
    /// The template as written.
    public let source: String

    /// Parses a template.
    /// - Throws: ``ActionError/Code/manifest`` for an unknown placeholder or an unbalanced brace.
    public init(_ source: String) throws(ActionError) {
        self.source = source
        var parts: [Part] = []
        var literal = ""
        var i = source.startIndex
        while i < source.endIndex {
            let c = source[i]
            let next = source.index(after: i)
            if c == "{" {
                if next < source.endIndex, source[next] == "{" {
                    literal.append("{")
                    i = source.index(after: next)
                    continue
                }
                guard let close = source[next...].firstIndex(of: "}") else {
                    throw ActionError(.manifest, "unclosed '{' in reply template '\(source)' (write {{ for a literal brace)")
                }
                let name = String(source[next..<close])
                if !literal.isEmpty { parts.append(.text(literal)); literal = "" }
                if name == "result" {
                    parts.append(.result)
                } else if name.hasPrefix("result:."), name.hasSuffix("f"),
                    let digits = Int(name.dropFirst("result:.".count).dropLast()), (0...17).contains(digits)
                {
                    parts.append(.fixed(digits))
                } else {
                    throw ActionError(.manifest, "unknown placeholder '{\(name)}' in reply template '\(source)' (use {result} or {result:.2f})")
                }
                i = source.index(after: close)
            } else if c == "}" {
                guard next < source.endIndex, source[next] == "}" else {
                    throw ActionError(.manifest, "unmatched '}' in reply template '\(source)' (write }} for a literal brace)")
                }
                literal.append("}")
                i = source.index(after: next)
            } else {
                literal.append(c)
                i = next
            }
        }
        if !literal.isEmpty { parts.append(.text(literal)) }
        self.parts = parts
    }

    /// Whether the template uses the result at all.
    public var usesResult: Bool { parts.contains { if case .text = $0 { false } else { true } } }

    /// Whether the template formats the result as a fixed-point number (needs a numeric result).
    public var usesNumberFormat: Bool { parts.contains { if case .fixed = $0 { true } else { false } } }

    /// The text for `result`.
    public func render(_ result: FFIValue) -> String {
        var out = ""
        for part in parts {
            switch part {
            case .text(let t): out += t
            case .result: out += result.text
            case .fixed(let digits):
                switch result {
                case .double(let d): out += formatFixed(d, digits: digits)
                case .int32(let v): out += formatFixed(Double(v), digits: digits)
                case .int64(let v): out += formatFixed(Double(v), digits: digits)
                default: out += result.text
                }
            }
        }
        return out
    }

    public var description: String { source }
}

/// `d` rounded half away from zero to `digits` decimals, without Foundation's locale-dependent formatting.
func formatFixed(_ d: Double, digits: Int) -> String {
    guard d.isFinite else { return String(d) }
    var scale: Double = 1
    for _ in 0..<digits { scale *= 10 }
    let scaled = (abs(d) * scale).rounded(.toNearestOrAwayFromZero)
    guard scaled < 9.0e18 else { return String(d) }
    let n = UInt64(scaled)
    let p = UInt64(scale)
    let whole = n / p
    var text = (d < 0 && n != 0 ? "-" : "") + String(whole)
    if digits > 0 {
        let fraction = String(n % p)
        text += "." + String(repeating: "0", count: digits - fraction.count) + fraction
    }
    return text
}
