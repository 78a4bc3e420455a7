// Commands that request the example native actions of Plugins/actions-c (bound by actions.yml).
//
// The convention (docs/actions.md): the agent's reply sets the slots the action reads with `slot` events and
// then adds `{"event":"action","name":"action_x"}`. The dispatcher applies the events in order and runs the
// action after the agent in the same turn, so the action's `slot:...` arguments see the new values, and the
// action's own reply (`reply:` in the manifest, or its `say` calls) follows the agent's responses.
//
//   tip 42.50 at 15%  /  tip 40 15  /  tip 40        -> amount, percent (default 15)  + action_tip
//   convert 5 km to mi  /  10 miles in km            -> distance, from_unit, to_unit  + action_convert
//   2^10  /  2 ** 10  /  2 to the power of 10        -> base, exponent                + action_power (libm pow)
//   is 2024 a leap year?  /  leap year 1900          -> year                          + action_leap_year
//   greet me                                         -> user_name (learned earlier)   + action_greet
//
// Input the assistant cannot turn into valid arguments gets a usage answer and no action request, so an
// action is never called with a value it would reject.
import ParleyJSON

/// What the assistant does with a command: request an action, or explain how to ask.
enum Command: Equatable {
    /// Set these slots (in order), then request the action.
    case action(String, slots: [Slot])
    /// Answer with this text (and buttons) instead: the input could not become valid arguments.
    case usage(String, buttons: [Button] = [])

    /// One slot value the action reads.
    struct Slot: Equatable {
        var name: String
        var value: JSONValue
    }

    /// A quick-reply button (title, payload).
    struct Button: Equatable {
        var title: String
        var payload: String
    }

    /// The agent events for an action command: the slot events, then the action request. Empty for usage.
    var events: [JSONValue] {
        guard case .action(let name, let slots) = self else { return [] }
        return slots.map { ["event": "slot", "name": .string($0.name), "value": $0.value] } + [["event": "action", "name": .string(name)]]
    }

    /// Recognizes a command in `text`; nil when the text is not one. `name` is the user's name if known.
    static func parse(_ text: String, name: String?) -> Command? {
        let words = Self.words(text)
        guard let first = words.first else { return nil }
        if first == "tip" { return tip(Array(words.dropFirst())) }
        if first == "convert" { return convert(Array(words.dropFirst()), explicit: true) }
        if words.contains("leap") { return leapYear(words) }
        if first == "greet" || text.lowercased().trimmingCharacters(in: " .!?") == "say hello to me" { return greet(name: name) }
        if let power = power(words) { return power }
        if Self.number(first) != nil, let convert = convert(words, explicit: false) { return convert }
        return nil
    }

    // MARK: - The commands

    static let tipExample = Button(title: "Tip 42.50 at 15%", payload: "tip 42.50 at 15%")
    static let convertExample = Button(title: "Convert 5 km to mi", payload: "convert 5 km to mi")
    static let powerExample = Button(title: "2^10", payload: "2^10")
    static let leapExample = Button(title: "Is 2024 a leap year?", payload: "is 2024 a leap year?")
    static let greetExample = Button(title: "Greet me", payload: "greet me")

    /// `tip AMOUNT [at] [PERCENT[%]]`: percent is a whole number from 0 to 100 (default 15).
    static func tip(_ words: [String]) -> Command {
        let usage = Command.usage(
            "Tell me the bill and a whole percent, for example: tip 42.50 at 15%",
            buttons: [tipExample, Button(title: "Tip 40 at 20%", payload: "tip 40 at 20%")])
        let values = words.filter { !["at", "of", "on", "for", "with", "percent", "%"].contains($0) }
        guard (1...2).contains(values.count), let amount = number(values[0]), amount >= 0, amount <= 1e12 else { return usage }
        var percent = 15.0
        if values.count == 2 {
            guard let p = number(values[1]), p == p.rounded(), p >= 0, p <= 100 else { return usage }
            percent = p
        }
        return .action("action_tip", slots: [Slot(name: "amount", value: .double(amount)), Slot(name: "percent", value: .int(Int64(percent)))])
    }

    /// Units the example converter knows, by the names a user may type.
    static let units: [String: String] = [
        "km": "km", "kilometer": "km", "kilometers": "km", "kilometre": "km", "kilometres": "km",
        "m": "m", "meter": "m", "meters": "m", "metre": "m", "metres": "m",
        "mi": "mi", "mile": "mi", "miles": "mi",
        "ft": "ft", "foot": "ft", "feet": "ft",
    ]

    /// `[convert] NUMBER UNIT (to|in|into) UNIT` with units km, m, mi, ft. Without "convert" a text that does
    /// not have this shape is not a command (nil); with it, the usage answer.
    static func convert(_ words: [String], explicit: Bool) -> Command? {
        var words = words
        // "5km" -> "5", "km"
        if let first = words.first, let split = splitNumberAndUnit(first) { words.replaceSubrange(0...0, with: [split.0, split.1]) }
        let usage = Command.usage("I convert distances between km, m, mi and ft, for example: convert 5 km to mi", buttons: [convertExample])
        guard words.count == 4, let value = number(words[0]), abs(value) <= 1e12, ["to", "in", "into"].contains(words[2]),
            let from = units[words[1]], let to = units[words[3]]
        else { return explicit ? usage : nil }
        return .action(
            "action_convert",
            slots: [Slot(name: "distance", value: .double(value)), Slot(name: "from_unit", value: .string(from)), Slot(name: "to_unit", value: .string(to))])
    }

    /// `A^B`, `A ^ B`, `A ** B`, `A to the power of B`, `A raised to B`, `power A B`; nil if none of these.
    static func power(_ words: [String]) -> Command? {
        var operands: [String]?
        if words.count == 1, words[0].contains(where: { $0.isNumber }), let range = words[0].firstRange(of: "^") ?? words[0].firstRange(of: "**") {
            operands = [String(words[0][..<range.lowerBound]), String(words[0][range.upperBound...])]
        } else if words.count == 3, ["^", "**"].contains(words[1]) {
            operands = [words[0], words[2]]
        } else if words.count == 3, words[0] == "power" {
            operands = [words[1], words[2]]
        } else if let to = words.firstIndex(of: "to"), to == 1 {
            let rest = words[(to + 1)...].filter { !["the", "power", "of"].contains($0) }
            if words.count > 3, words[2] == "the", words[3] == "power", rest.count == 1 { operands = [words[0], rest[0]] }
        } else if words.count == 4, words[1] == "raised", words[2] == "to" {
            operands = [words[0], words[3]]
        }
        guard let operands else { return nil }
        guard let base = number(operands[0]), let exponent = number(operands[1]) else {
            return .usage("Give me two numbers, for example: 2^10 or 2 to the power of 10", buttons: [powerExample])
        }
        return .action("action_power", slots: [Slot(name: "base", value: .double(base)), Slot(name: "exponent", value: .double(exponent))])
    }

    /// A text mentioning "leap" with one whole year in it (1 to 9999999).
    static func leapYear(_ words: [String]) -> Command {
        let years = words.compactMap { number($0) }
        guard years.count == 1, let year = years.first, year == year.rounded(), year >= 1, year <= 9_999_999 else {
            return .usage("Which year? For example: is 2024 a leap year?", buttons: [leapExample])
        }
        return .action("action_leap_year", slots: [Slot(name: "year", value: .int(Int64(year)))])
    }

    /// Greets by the learned name (`say` sends two messages); without a name, asks for it first.
    static func greet(name: String?) -> Command {
        guard let name else {
            return .usage(
                "I'd love to greet you, but I don't know your name yet. Tell me: my name is Ada",
                buttons: [Button(title: "My name is Ada", payload: "my name is Ada")])
        }
        return .action("action_greet", slots: [Slot(name: "user_name", value: .string(name))])
    }

    // MARK: - Tokens

    /// Lower-cased words without surrounding "?", "!", ",", ";", ":" and trailing "."; "15%" becomes "15".
    static func words(_ text: String) -> [String] {
        text.lowercased().split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).compactMap { raw -> String? in
            var word = String(raw).trimmingCharacters(in: "?!,;:")
            while word.hasSuffix(".") { word.removeLast() }
            if word.hasSuffix("%"), word.count > 1 { word.removeLast() }
            return word.isEmpty ? nil : word
        }
    }

    /// A plain decimal number (optionally signed, with a currency sign in front), finite; nil otherwise.
    /// Rejects "inf", "nan", hex and exponents, which `Double(_:)` would accept.
    static func number(_ word: String) -> Double? {
        var s = Substring(word)
        if let c = s.first, "$€£".contains(c) { s.removeFirst() }
        if s.hasSuffix(".") { s.removeLast() }
        var digits = 0
        var dots = 0
        for (i, c) in s.enumerated() {
            if c.isASCII, c.isNumber {
                digits += 1
            } else if c == "." {
                dots += 1
            } else if !(c == "-" && i == 0) {
                return nil
            }
        }
        guard digits > 0, dots <= 1, digits <= 30, let value = Double(String(s)), value.isFinite else { return nil }
        return value
    }

    /// "5km" -> ("5", "km") when the tail is a known unit.
    static func splitNumberAndUnit(_ word: String) -> (String, String)? {
        guard let index = word.firstIndex(where: { $0.isLetter }), index != word.startIndex else { return nil }
        let head = String(word[..<index])
        let tail = String(word[index...])
        guard number(head) != nil, units[tail] != nil else { return nil }
        return (head, tail)
    }
}
