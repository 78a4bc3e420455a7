public import ParleyJSON

/// Reads one mapping of the configuration, tracking the key path for errors and the keys it consumed, so
/// that ``finish()`` can refuse unknown keys.
public struct MapReader {
    public let file: String
    public let path: String
    private let pairs: [(key: String, value: ConfigNode)]
    private var used: Set<String> = []

    /// Reads `node` as a mapping; null counts as an empty mapping (`rest:` with nothing after it).
    public init(_ node: ConfigNode?, file: String, path: String, what: String = "a mapping") throws(ConfigError) {
        self.file = file
        self.path = path
        switch node {
        case nil: pairs = []
        case .mapping(let p)?: pairs = p
        case .some(let n) where n.isNull: pairs = []
        case .some(let n):
            throw ConfigError(file: file, keyPath: path, message: "expected \(what), got \(n.shortDescription)")
        }
    }

    public var keys: [String] { pairs.map(\.key) }
    public func has(_ key: String) -> Bool { pairs.contains { $0.key == key } }

    public func childPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    public func error(_ key: String, _ message: String) -> ConfigError {
        ConfigError(file: file, keyPath: childPath(key), message: message)
    }

    /// The raw node of `key` (nil when absent), marking it used.
    public mutating func node(_ key: String) -> ConfigNode? {
        used.insert(key)
        return pairs.first { $0.key == key }?.value
    }

    /// A node that is present and not null.
    public mutating func value(_ key: String) -> ConfigNode? {
        guard let n = node(key), !n.isNull else { return nil }
        return n
    }

    public mutating func string(_ key: String, expected: String = "a string") throws(ConfigError) -> String? {
        guard let n = value(key) else { return nil }
        guard case .scalar(let s) = n else { throw error(key, "expected \(expected), got \(n.shortDescription)") }
        return s.text
    }

    /// A string that must not be empty.
    public mutating func nonEmptyString(_ key: String, expected: String = "a non-empty string") throws(ConfigError) -> String? {
        guard let s = try string(key, expected: expected) else { return nil }
        guard !s.isEmpty else { throw error(key, "expected \(expected), got \"\"") }
        return s
    }

    public mutating func bool(_ key: String) throws(ConfigError) -> Bool? {
        guard let n = value(key) else { return nil }
        guard case .scalar(let s) = n, let b = s.bool else { throw error(key, "expected true or false, got \(n.shortDescription)") }
        return b
    }

    public mutating func int(_ key: String, expected: String, range: ClosedRange<Int64>) throws(ConfigError) -> Int? {
        guard let n = value(key) else { return nil }
        guard case .scalar(let s) = n, let i = s.int ?? s.double.flatMap({ $0.rounded() == $0 && abs($0) < 9e18 ? Int64($0) : nil }) else {
            throw error(key, "expected \(expected), got \(n.shortDescription)")
        }
        guard range.contains(i) else {
            throw error(key, "expected \(expected) between \(range.lowerBound) and \(range.upperBound), got \(i)")
        }
        return Int(i)
    }

    /// A number in `range`.
    public mutating func number(_ key: String, expected: String, range: ClosedRange<Double>) throws(ConfigError) -> Double? {
        guard let n = value(key) else { return nil }
        guard case .scalar(let s) = n, let d = s.double ?? s.int.map(Double.init), d.isFinite else {
            throw error(key, "expected \(expected), got \(n.shortDescription)")
        }
        guard range.contains(d) else {
            throw error(key, "expected \(expected) between \(range.lowerBound) and \(range.upperBound), got \(s.text)")
        }
        return d
    }

    /// A duration in seconds: a number (`25`, `2.5`) or a string with a unit (`"500ms"`, `"25s"`, `"2m"`).
    public mutating func seconds(_ key: String, allowZero: Bool = false) throws(ConfigError) -> Double? {
        guard let n = value(key) else { return nil }
        let expected = "a number of seconds"
        guard case .scalar(let s) = n else { throw error(key, "expected \(expected), got \(n.shortDescription)") }
        var seconds: Double? = s.double
        if seconds == nil {
            let t = s.text.trimmingSpaces
            for (suffix, factor) in [("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)] where t.hasSuffix(suffix) {
                if let d = Double(t.dropLast(suffix.count).trimmingSpaces) { seconds = d * factor }
                break
            }
        }
        guard let seconds, seconds.isFinite else { throw error(key, "expected \(expected), got \(n.shortDescription)") }
        guard seconds > 0 || (allowZero && seconds == 0) else {
            throw error(key, "expected \(allowZero ? "zero or a positive" : "a positive") number of seconds, got \(s.text)")
        }
        return seconds
    }

    /// One of `choices` (compared case-sensitively unless `caseInsensitive`).
    public mutating func choice(_ key: String, _ choices: [String], caseInsensitive: Bool = false) throws(ConfigError) -> String? {
        let expected = "one of " + choices.map { "\"\($0)\"" }.joined(separator: ", ")
        guard let s = try string(key, expected: expected) else { return nil }
        if let c = choices.first(where: { caseInsensitive ? $0.lowercased() == s.lowercased() : $0 == s }) { return c }
        throw error(key, "expected \(expected), got \(JSONValue.string(s).serialized)")
    }

    /// A list of strings; a single string counts as a one-element list.
    public mutating func stringList(_ key: String, expected: String = "a list of strings") throws(ConfigError) -> [String]? {
        guard let n = value(key) else { return nil }
        switch n {
        case .scalar(let s): return [s.text]
        case .sequence(let items):
            var out: [String] = []
            for (i, item) in items.enumerated() {
                guard case .scalar(let s) = item, !item.isNull else {
                    throw ConfigError(file: file, keyPath: "\(childPath(key))[\(i)]", message: "expected a string, got \(item.shortDescription)")
                }
                out.append(s.text)
            }
            return out
        case .mapping: throw error(key, "expected \(expected), got a mapping")
        }
    }

    /// Any YAML value as JSON (plugin configuration objects).
    public mutating func json(_ key: String) -> JSONValue? { node(key)?.json }

    /// Refuses keys that were never read.
    public func finish(known extra: [String] = []) throws(ConfigError) {
        for (key, _) in pairs where !used.contains(key) && !extra.contains(key) {
            let known = Array(used) + extra
            var message = "unknown key"
            if let guess = Self.closest(to: key, in: known) { message += "; did you mean \"\(guess)\"?" }
            message += " (known keys here: \(known.sorted().joined(separator: ", ")))"
            throw error(key, message)
        }
    }

    /// The known key closest to a misspelt one (edit distance ≤ 3, or same letters ignoring case and `_`).
    public static func closest(to key: String, in known: [String]) -> String? {
        func norm(_ s: String) -> String { s.lowercased().filter { $0 != "_" && $0 != "-" } }
        if let k = known.first(where: { norm($0) == norm(key) }) { return k }
        var best: (String, Int)?
        for k in known {
            let d = editDistance(Array(key.lowercased()), Array(k.lowercased()))
            if d <= 3, d < (best?.1 ?? Int.max) { best = (k, d) }
        }
        return best?.0
    }

    private static func editDistance(_ a: [Character], _ b: [Character]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var prev = Array(0...b.count)
        for i in 1...a.count {
            var cur = [i] + Array(repeating: 0, count: b.count)
            for j in 1...b.count {
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            prev = cur
        }
        return prev[b.count]
    }
}

extension StringProtocol {
    public var trimmingSpaces: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" || f == "\n" || f == "\r" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\n" || l == "\r" { s.removeLast() }
        return String(s)
    }
}
