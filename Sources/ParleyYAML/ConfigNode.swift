import Foundation
public import ParleyJSON
import Yams

/// A YAML document reduced to what the configuration reader needs: mappings keep their key order, scalars
/// keep their text and whether they were quoted (a quoted `"5005"` is a string, a plain `5005` a number).
public indirect enum ConfigNode: Sendable {
    case scalar(ConfigScalar)
    case mapping([(key: String, value: ConfigNode)])
    case sequence([ConfigNode])
}

/// One YAML scalar after `${ENV}` substitution.
public struct ConfigScalar: Sendable {
    /// The text after substitution.
    public var text: String
    /// Whether the scalar was written without quotes (so `true`, `12`, `~` have their YAML meaning).
    public var plain: Bool
    /// Whether any `${…}` was substituted; such values may be given as strings where numbers are expected.
    public var substituted: Bool

    /// `null`, `~`, or an empty plain scalar.
    public var isNull: Bool { plain && (text.isEmpty || text == "~" || text == "null" || text == "Null" || text == "NULL") }

    /// YAML 1.2 core-schema booleans for plain scalars (and `yes`/`no` as YAML 1.1 writers produce them).
    public var bool: Bool? {
        guard plain || substituted else { return nil }
        switch text {
        case "true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON": return true
        case "false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF": return false
        default: return nil
        }
    }

    /// An integer (decimal, `0x`, `0o`, `_` separators allowed) for plain scalars.
    public var int: Int64? {
        guard plain || substituted else { return nil }
        var t = String(text.filter { $0 != "_" })
        var negative = false
        if t.hasPrefix("-") { negative = true; t.removeFirst() } else if t.hasPrefix("+") { t.removeFirst() }
        guard !t.isEmpty else { return nil }
        let value: Int64?
        if t.hasPrefix("0x") {
            value = Int64(t.dropFirst(2), radix: 16)
        } else if t.hasPrefix("0o") {
            value = Int64(t.dropFirst(2), radix: 8)
        } else if t.allSatisfy({ $0.isASCII && $0.isNumber }) {
            value = Int64(t)
        } else {
            value = nil
        }
        guard let value else { return nil }
        return negative ? -value : value
    }

    /// A floating-point number for plain scalars (integers included).
    public var double: Double? {
        guard plain || substituted else { return nil }
        if let i = int { return Double(i) }
        let t = String(text.filter { $0 != "_" })
        switch t {
        case ".inf", ".Inf", ".INF", "+.inf": return .infinity
        case "-.inf", "-.Inf", "-.INF": return -.infinity
        case ".nan", ".NaN", ".NAN": return .nan
        default: break
        }
        guard t.contains(where: { $0.isNumber }), t.allSatisfy({ "0123456789+-.eE".contains($0) }) else { return nil }
        return Double(t)
    }

    /// The scalar as JSON, by the YAML core schema.
    public var json: JSONValue {
        if isNull { return .null }
        if let b = bool, plain { return .bool(b) }
        if let i = int, plain { return .int(i) }
        if let d = double, plain, d.isFinite { return .double(d) }
        return .string(text)
    }
}

extension ConfigNode {
    /// The node as JSON (plugin `config:` objects, route metadata).
    public var json: JSONValue {
        switch self {
        case .scalar(let s): return s.json
        case .sequence(let items): return .array(items.map(\.json))
        case .mapping(let pairs):
            var o = JSONObject()
            for (k, v) in pairs { o[k] = v.json }
            return .object(o)
        }
    }

    /// How the value is described in "got …" messages.
    public var shortDescription: String {
        switch self {
        case .scalar(let s):
            if s.isNull { return "nothing (null)" }
            if s.plain, s.bool != nil || s.double != nil { return s.text }
            return JSONValue.string(s.text).serialized
        case .sequence: return "a list"
        case .mapping: return "a mapping"
        }
    }

    public var isNull: Bool { if case .scalar(let s) = self { s.isNull } else { false } }
}

/// Parses YAML text into a ``ConfigNode`` tree, substituting `${NAME}` and `${NAME:-default}` in scalars.
public struct ConfigParser {
    public var file: String
    public var environment: [String: String]
    /// Whether `${NAME}` references are replaced (the configuration); off for files that take text verbatim.
    public var substitutesEnvironment: Bool

    public init(file: String, environment: [String: String] = [:], substitutesEnvironment: Bool = true) {
        self.file = file
        self.environment = environment
        self.substitutesEnvironment = substitutesEnvironment
    }

    /// The document's root (nil for an empty document).
    public func parse(_ text: String) throws(ConfigError) -> ConfigNode? {
        try parseDocument(text).root
    }

    /// The document's root and where each key path starts in the file. Errors carry the line and column.
    public func parseDocument(_ text: String) throws(ConfigError) -> YAMLDocument {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            var e = ConfigError(file: file, keyPath: "", message: "invalid YAML: \(Self.describe(error))")
            if let mark = Self.mark(of: error) { (e.line, e.column) = (mark.line, mark.column) }
            throw e
        } catch {
            throw ConfigError(file: file, keyPath: "", message: "invalid YAML: \(error)")
        }
        var document = YAMLDocument(file: file)
        guard let root else { return document }
        do {
            document.root = try convert(root, path: "", positions: &document.positions)
        } catch {
            throw document.locate(error)
        }
        return document
    }

    private static func mark(of error: YamlError) -> Mark? {
        switch error {
        case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _): return mark
        default: return nil
        }
    }

    private static func describe(_ error: YamlError) -> String {
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
            .composer(let context, let problem, let mark, _):
            let ctx = context.map { " \($0.text)" } ?? ""
            return "line \(mark.line), column \(mark.column): \(problem)\(ctx)"
        case .duplicatedKeysInMapping(let duplicates, _):
            return "a key is given twice (\(duplicates.joined(separator: ", "))); keep one"
        default:
            return "\(error)"
        }
    }

    private func convert(_ node: Node, path: String, positions: inout [String: YAMLDocument.Position]) throws(ConfigError) -> ConfigNode {
        if let mark = node.mark, positions[path] == nil { positions[path] = .init(line: mark.line, column: mark.column) }
        switch node {
        case .scalar(let scalar):
            let plain = scalar.style == .plain || scalar.style == .any
            let (text, substituted) = substitutesEnvironment ? try substitute(scalar.string, path: path) : (scalar.string, false)
            return .scalar(ConfigScalar(text: text, plain: plain, substituted: substituted))
        case .alias:
            throw ConfigError(file: file, keyPath: path, message: "YAML aliases are not supported here; write the value out")
        case .sequence(let seq):
            var items: [ConfigNode] = []
            for (i, item) in seq.enumerated() { items.append(try convert(item, path: "\(path)[\(i)]", positions: &positions)) }
            return .sequence(items)
        case .mapping(let mapping):
            var pairs: [(key: String, value: ConfigNode)] = []
            var seen = Set<String>()
            for (k, v) in mapping {
                guard case .scalar(let ks) = k else {
                    throw ConfigError(file: file, keyPath: path, message: "keys must be plain strings, got a \(k.isMapping ? "mapping" : "list") as a key")
                }
                let key = ks.string
                let child = path.isEmpty ? key : "\(path).\(key)"
                if let mark = k.mark { positions[child] = .init(line: mark.line, column: mark.column) }
                if key == "<<" {
                    throw ConfigError(file: file, keyPath: child, message: "YAML merge keys are not supported here; write the keys out")
                }
                guard seen.insert(key).inserted else {
                    throw ConfigError(file: file, keyPath: child, message: "key given twice; keep one")
                }
                pairs.append((key, try convert(v, path: child, positions: &positions)))
            }
            return .mapping(pairs)
        }
    }

    /// Replaces `${NAME}` and `${NAME:-default}`; `$${` stays a literal `${`.
    public func substitute(_ text: String, path: String) throws(ConfigError) -> (String, Bool) {
        guard text.contains("${") else { return (text, false) }
        var out = ""
        var substituted = false
        var i = text.startIndex
        while i < text.endIndex {
            if text[i] == "$", text.index(after: i) < text.endIndex, text[text.index(after: i)] == "$",
                text.index(i, offsetBy: 2, limitedBy: text.endIndex).map({ $0 < text.endIndex && text[$0] == "{" }) == true
            {
                out.append("$")
                i = text.index(i, offsetBy: 2)
                continue
            }
            if text[i] == "$", text.index(after: i) < text.endIndex, text[text.index(after: i)] == "{" {
                let start = text.index(i, offsetBy: 2)
                guard let close = text[start...].firstIndex(of: "}") else {
                    throw ConfigError(
                        file: file, keyPath: path, message: "unterminated ${ in \(JSONValue.string(text).serialized); write ${NAME} or ${NAME:-default}")
                }
                let inner = text[start..<close]
                let name: Substring
                let fallback: Substring?
                if let r = inner.range(of: ":-") {
                    name = inner[inner.startIndex..<r.lowerBound]
                    fallback = inner[r.upperBound...]
                } else {
                    name = inner
                    fallback = nil
                }
                guard !name.isEmpty, name.allSatisfy({ $0 == "_" || ($0.isASCII && ($0.isLetter || $0.isNumber)) }),
                    !(name.first?.isNumber ?? false)
                else {
                    throw ConfigError(file: file, keyPath: path, message: "invalid environment reference ${\(inner)}; write ${NAME} or ${NAME:-default}")
                }
                if let value = environment[String(name)], !(fallback != nil && value.isEmpty) {
                    out += value
                } else if let fallback {
                    out += fallback
                } else {
                    throw ConfigError(
                        file: file, keyPath: path,
                        message: "environment variable \(name) is not set (set it, or give a default with ${\(name):-default})")
                }
                substituted = true
                i = text.index(after: close)
                continue
            }
            out.append(text[i])
            i = text.index(after: i)
        }
        return (out, substituted)
    }
}

/// A parsed file: its root node and where each key path (`server.port`, `agents[0].route`) starts, so that an
/// error about a key path names its line and column.
public struct YAMLDocument: Sendable {
    /// A 1-based line and column.
    public struct Position: Sendable, Hashable {
        public var line: Int
        public var column: Int
    }

    /// The file's name in messages.
    public let file: String
    /// The root node (nil for an empty document).
    public var root: ConfigNode?
    /// Key path -> where its key (for a mapping entry) or its value (the root, list items) starts.
    public var positions: [String: Position] = [:]

    public init(file: String, root: ConfigNode? = nil) {
        self.file = file
        self.root = root
    }

    /// The position of `keyPath`, or of its nearest ancestor present in the file (a missing key is reported where
    /// its mapping is).
    public func position(of keyPath: String) -> Position? {
        var path = Substring(keyPath)
        while true {
            if let p = positions[String(path)] { return p }
            guard !path.isEmpty else { return nil }
            if path.hasSuffix("]"), let open = path.lastIndex(of: "[") {
                path = path[..<open]
            } else if let dot = path.lastIndex(of: ".") {
                path = path[..<dot]
            } else {
                path = ""
            }
        }
    }

    /// `error` with the line and column of its key path filled in (when it has none yet and is about this file).
    public func locate(_ error: ConfigError) -> ConfigError {
        guard error.line == nil, error.file == file, let p = position(of: error.keyPath) else { return error }
        var located = error
        (located.line, located.column) = (p.line, p.column)
        return located
    }
}

extension Node {
    fileprivate var isMapping: Bool { if case .mapping = self { true } else { false } }
}
