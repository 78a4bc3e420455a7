import Foundation

/// Rasa's paragraph split: `text.strip().split("\n\n")`, with empty paragraphs dropped (Rasa Pro).
public enum Paragraphs {
    /// The non-empty paragraphs of `text`.
    public static func split(_ text: String) -> [String] {
        let stripped = pythonStrip(text)
        var parts: [String] = []
        var current = Substring(stripped)
        while let r = current.range(of: "\n\n") {
            parts.append(String(current[current.startIndex..<r.lowerBound]))
            current = current[r.upperBound...]
        }
        parts.append(String(current))
        return parts.filter { !$0.isEmpty }
    }

    /// Python's `str.strip()` (Unicode whitespace).
    public static func pythonStrip(_ s: String) -> String {
        var sub = Substring(s)
        while let f = sub.first, f.isWhitespace { sub.removeFirst() }
        while let l = sub.last, l.isWhitespace { sub.removeLast() }
        return String(sub)
    }
}
