/// Python's text helpers as Rasa applies them to message text: `str.strip()` and
/// `text.strip().split("\n\n")`. One implementation for the channels (incoming text) and the output mapping
/// (outgoing paragraphs), so both strip exactly what Rasa strips.
public enum Paragraphs {
    /// The non-empty paragraphs of `text.strip().split("\n\n")` (Rasa Pro skips the empty ones). Splits left to
    /// right without overlap, as Python's `str.split` does.
    public static func split(_ text: String) -> [String] {
        let stripped = pythonStrip(text)
        guard !stripped.isEmpty else { return [] }
        let bytes = Array(stripped.utf8)
        var parts: [String] = []
        var start = 0
        var i = 0
        while i + 1 < bytes.count {
            if bytes[i] == 0x0A && bytes[i + 1] == 0x0A {
                parts.append(String(decoding: bytes[start..<i], as: UTF8.self))
                i += 2
                start = i
            } else {
                i += 1
            }
        }
        parts.append(String(decoding: bytes[start...], as: UTF8.self))
        return parts.filter { !$0.isEmpty }
    }

    /// Python's `str.strip()`: removes the characters `str.isspace()` accepts from both ends — Unicode
    /// White_Space plus the information separators U+001C–U+001F (Python counts them as whitespace, Unicode
    /// does not).
    public static func pythonStrip(_ text: String) -> String {
        let scalars = text.unicodeScalars
        guard let first = scalars.firstIndex(where: { !isPythonSpace($0) }),
            let last = scalars.lastIndex(where: { !isPythonSpace($0) })
        else { return "" }
        return String(scalars[first...last])
    }

    /// Python's `str.isspace()` for one scalar.
    public static func isPythonSpace(_ scalar: Unicode.Scalar) -> Bool {
        scalar.properties.isWhitespace || (0x1C...0x1F).contains(scalar.value)
    }
}
