// ParleyAssistant -- a Parley agent plugin in Swift (a SwiftPM `.dynamic` product, loaded with dlopen).
//
// A small assistant that remembers what the user told it in earlier turns. It keeps no state of its own:
// every turn it rebuilds what it knows from the conversation history the host sends
// (`tracker.events`, Rasa `user` events), so it survives restarts and runs on any thread
// (PARLEY_FLAG_THREAD_SAFE). It also records what it learned as Rasa `slot` events.
//
//   "my name is Ada" / "call me Ada" / "I'm Ada"   -> remembers the name
//   "I live in Paris" / "I'm from Paris"          -> remembers the city
//   "I like tea" / "my favourite X is Y"          -> remembers likes
//   "what is my name?", "where do I live?", "what do I like?", "what do you know about me?"
//   "how many messages have I sent?", "forget me", "hi"
//   "help" / "what can you do?"                   -> what it can do, with buttons
//
// It also requests the example native actions of Plugins/actions-c (Commands.swift): "tip 42.50 at 15%",
// "convert 5 km to mi", "2^10", "is 2024 a leap year?", "greet me". Its reply sets the action's slots with
// `slot` events and then adds {"event":"action","name":"action_x"}; the dispatcher runs the action after it.
//
// Only the entry symbol is exported: `@c(parley_plugin_init_v1)` plus the linker version script
// exports.map (see Package.swift). Nothing Swift-typed crosses the boundary: C scalars, byte views,
// opaque pointers and C function pointers only.
import CParley
import ParleyJSON

/// What the assistant knows about the user at some point of the conversation.
struct Memory: Equatable {
    var name: String?
    var city: String?
    var likes: [String] = []
    var messages = 0

    /// A memory holding exactly these facts.
    init(name: String? = nil, city: String? = nil, likes: [String] = [], messages: Int = 0) {
        self.name = name
        self.city = city
        self.likes = likes
        self.messages = messages
    }

    /// The memory stored in the tracker's slots `user_name`, `user_city`, `user_likes` (missing or
    /// non-string values are ignored).
    init(slots: JSONValue?) {
        self.init(
            name: slots?["user_name"]?.stringValue, city: slots?["user_city"]?.stringValue,
            likes: slots?["user_likes"]?.arrayValue?.compactMap(\.stringValue) ?? [])
    }

    /// Learns from one user utterance; returns the slot events for what was new.
    mutating func learn(from text: String) -> [JSONValue] {
        messages += 1
        let lower = text.lowercased()
        if lower.hasPrefix("forget me") || lower == "forget everything" {
            self = Memory(messages: messages)
            return [
                ["event": "slot", "name": "user_name", "value": nil], ["event": "slot", "name": "user_city", "value": nil],
                ["event": "slot", "name": "user_likes", "value": nil],
            ]
        }
        if let value = Self.after(["my name is ", "call me ", "i am called ", "i'm ", "i am "], in: text), !Self.isQuestion(text),
            let word = value.split(separator: " ").first, word.first?.isLetter == true, !Self.notNames.contains(word.lowercased())
        {
            name = Self.capitalized(String(word))
            return [["event": "slot", "name": "user_name", "value": .string(name ?? "")]]
        }
        if let value = Self.after(["i live in ", "i'm from ", "i am from ", "i come from "], in: text), !Self.isQuestion(text) {
            city = Self.capitalized(value)
            return [["event": "slot", "name": "user_city", "value": .string(city ?? "")]]
        }
        if let value = Self.after(["i like ", "i love ", "my favourite ", "my favorite "], in: text), !Self.isQuestion(text) {
            let like = value.replacingIs()
            if !likes.contains(like) { likes.append(like) }
            return [["event": "slot", "name": "user_likes", "value": .array(likes.map { .string($0) })]]
        }
        return []
    }

    static let notNames: Set<String> = ["not", "fine", "good", "ok", "okay", "here", "from", "a", "an", "the", "so", "very", "called"]

    static func isQuestion(_ text: String) -> Bool { text.hasSuffix("?") }

    /// The rest of `text` after the first matching prefix (case-insensitive), trimmed of punctuation.
    static func after(_ prefixes: [String], in text: String) -> String? {
        let lower = text.lowercased()
        for prefix in prefixes {
            if let range = lower.firstRange(of: prefix), range.lowerBound == lower.startIndex || lower[lower.index(before: range.lowerBound)] == " " {
                let offset = lower.distance(from: lower.startIndex, to: range.upperBound)
                let rest = text.dropFirst(offset).trimmingCharacters(in: " .!?,")
                return rest.isEmpty ? nil : rest
            }
        }
        return nil
    }

    static func capitalized(_ s: String) -> String {
        s.split(separator: " ").map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined(separator: " ")
    }
}

extension String {
    func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let c = s.first, set.contains(c) { s.removeFirst() }
        while let c = s.last, set.contains(c) { s.removeLast() }
        return String(s)
    }

    /// "color is blue" -> "blue (color)"; other text unchanged.
    func replacingIs() -> String {
        if let r = firstRange(of: " is ") { return "\(self[r.upperBound...]) (\(self[..<r.lowerBound]))" }
        return self
    }
}

extension Substring {
    func trimmingCharacters(in set: String) -> String { String(self).trimmingCharacters(in: set) }
}

/// Whether the (lower-cased) text asks what the assistant can do.
func isHelp(_ lower: String) -> Bool {
    let text = lower.trimmingCharacters(in: " ?!.")
    return ["help", "commands", "menu", "what can you do", "what can i ask", "what can i ask you"].contains(text)
}

/// Computes the reply to one agent request (Rasa action-server shape) as Rasa `{events, responses}`.
func assistantReply(to request: JSONValue) -> JSONValue {
    let text = request["message"]?["text"]?.stringValue ?? ""
    let messageID = request["message"]?["message_id"]?.stringValue
    // Start from the slots it set earlier (they outlive the tracker's event window and carry over to new
    // sessions), then replay the user events of the window on top.
    var memory = Memory(slots: request["tracker"]?["slots"])
    // Earlier turns: the user events of the tracker, except the current message if it is already there.
    var history = request["tracker"]?["events"]?.arrayValue ?? []
    if let last = history.lastIndex(where: { $0["event"]?.stringValue == "user" }) {
        let event = history[last]
        let sameID = messageID != nil && event["message_id"]?.stringValue == messageID
        if sameID || (event["text"]?.stringValue == text && last == history.count - 1) { history.remove(at: last) }
    }
    for event in history where event["event"]?.stringValue == "user" {
        _ = memory.learn(from: event["text"]?.stringValue ?? "")
    }
    let before = memory
    let events = memory.learn(from: text)
    let lower = text.lowercased()

    func say(_ text: String, buttons: [(String, String)] = []) -> JSONValue {
        var response: JSONObject = ["text": .string(text)]
        if !buttons.isEmpty {
            response["buttons"] = .array(buttons.map { ["title": .string($0.0), "payload": .string($0.1)] })
        }
        return .object(response)
    }
    let knowButton = ("What do you know about me?", "what do you know about me?")
    let helpButton = ("Help", "help")
    let response: JSONValue
    if !lower.hasPrefix("forget"), let command = Command.parse(text, name: memory.name) {
        switch command {
        case .action:
            // No text of our own: the action's reply (or its `say` messages) is the answer.
            return ["events": .array(events + command.events), "responses": []]
        case .usage(let text, let buttons):
            response = say(text, buttons: buttons.map { ($0.title, $0.payload) })
        }
    } else if isHelp(lower) {
        let examples = [Command.tipExample, Command.convertExample, Command.powerExample, Command.leapExample, Command.greetExample]
        response = say(
            """
            I remember what you tell me: my name is Ada, I live in Paris, I like tea. Then ask me what I know about you.
            I can also run native actions (C functions called through libffi):
            tip 42.50 at 15%, convert 5 km to mi, 2^10, is 2024 a leap year?, greet me
            """,
            buttons: examples.map { ($0.title, $0.payload) } + [knowButton])
    } else if lower.hasPrefix("forget") {
        response = say("Done, I forgot everything you told me.", buttons: [("My name is Ada", "my name is Ada")])
    } else if memory.name != before.name, let name = memory.name {
        response = say("Nice to meet you, \(name)! I'll remember that.", buttons: [("What is my name?", "what is my name?"), knowButton])
    } else if memory.city != before.city, let city = memory.city {
        response = say("\(city), noted.", buttons: [("Where do I live?", "where do I live?"), knowButton])
    } else if memory.likes != before.likes, let like = memory.likes.last {
        response = say("Good to know you like \(like).", buttons: [knowButton])
    } else if lower.contains("my name") || lower.contains("who am i") {
        response =
            memory.name.map { say("Your name is \($0).") }
            ?? say("You haven't told me your name yet. What is it?", buttons: [("My name is Ada", "my name is Ada")])
    } else if lower.contains("where do i live") || lower.contains("where am i from") {
        response =
            memory.city.map { say("You live in \($0).") }
            ?? say("You haven't told me where you live.", buttons: [("I live in London", "I live in London")])
    } else if lower.contains("what do i like") {
        response = memory.likes.isEmpty ? say("You haven't told me what you like.") : say("You like \(memory.likes.joined(separator: ", ")).")
    } else if lower.contains("know about me") || lower.contains("remember") {
        var facts: [String] = []
        if let name = memory.name { facts.append("your name is \(name)") }
        if let city = memory.city { facts.append("you live in \(city)") }
        if !memory.likes.isEmpty { facts.append("you like \(memory.likes.joined(separator: ", "))") }
        response =
            facts.isEmpty
            ? say("Nothing yet. Tell me about yourself!", buttons: [("My name is Ada", "my name is Ada"), ("I live in London", "I live in London")])
            : say("I know that " + facts.joined(separator: ", ") + ".", buttons: [("Forget me", "forget me")])
    } else if lower.contains("how many messages") {
        response = say("This is message number \(memory.messages) you sent me.")
    } else if ["hi", "hello", "hey"].contains(lower.trimmingCharacters(in: " !.")) {
        response =
            memory.name.map { say("Hello again, \($0)!") }
            ?? say("Hello! What's your name?", buttons: [("My name is Ada", "my name is Ada")])
    } else {
        response = say(
            "I'm a small assistant with a good memory. Tell me your name, where you live or what you like, or say help.",
            buttons: [knowButton, helpButton])
    }
    return ["events": .array(events), "responses": [response]]
}

// MARK: - The C boundary

/// Per-instance state behind `parley_plugin_def.state`.
final class Instance {
    let api: UnsafePointer<parley_host_api>
    let host: OpaquePointer?
    let def: UnsafeMutablePointer<parley_plugin_def>

    init(api: UnsafePointer<parley_host_api>, host: OpaquePointer?, def: UnsafeMutablePointer<parley_plugin_def>) {
        self.api = api
        self.host = host
        self.def = def
    }

    func log(_ level: parley_log_level, _ text: String) {
        var text = text
        text.withUTF8 { bytes in
            bytes.withMemoryRebound(to: CChar.self) { api.pointee.log?(host, level, parley_str(ptr: $0.baseAddress, len: $0.count)) }
        }
    }
}

private func handle(_ state: UnsafeMutableRawPointer?, _ call: OpaquePointer?, _ request: parley_str) -> parley_status {
    guard let state else { return PARLEY_E_INVALID }
    let instance = Unmanaged<Instance>.fromOpaque(state).takeUnretainedValue()
    guard let base = request.ptr else { return PARLEY_E_BAD_JSON }
    // The request view is valid only during this call; parsing copies what we need.
    let parsed = base.withMemoryRebound(to: UInt8.self, capacity: request.len) {
        try? JSONValue.parse(UnsafeBufferPointer(start: $0, count: request.len))
    }
    guard let parsed else {
        instance.log(PARLEY_LOG_ERROR, "request is not valid JSON")
        return PARLEY_E_BAD_JSON
    }
    var bytes: [UInt8] = []
    assistantReply(to: parsed).serialize(into: &bytes)
    let status = bytes.withUnsafeBufferPointer { buffer in
        buffer.withMemoryRebound(to: CChar.self) { chars in
            instance.api.pointee.complete?(call, PARLEY_OK, parley_str(ptr: chars.baseAddress, len: chars.count))
        }
    }
    return status == nil ? PARLEY_E_INTERNAL : PARLEY_OK
}

private func shutdown(_ state: UnsafeMutableRawPointer?) {
    guard let state else { return }
    // Balance the passRetained of the entry point. The def stays allocated: the host may still read it.
    Unmanaged<Instance>.fromOpaque(state).release()
}

/// The entry point, the only exported symbol.
@c(parley_plugin_init_v1)
public func parleyPluginInitV1(
    _ api: UnsafePointer<parley_host_api>?, _ host: OpaquePointer?, _ config: parley_str
) -> UnsafePointer<parley_plugin_def>? {
    guard let api, api.pointee.abi_major == UInt32(PARLEY_ABI_MAJOR) else { return nil }
    let def = UnsafeMutablePointer<parley_plugin_def>.allocate(capacity: 1)
    let instance = Instance(api: api, host: host, def: def)
    def.initialize(
        to: parley_plugin_def(
            struct_size: UInt32(MemoryLayout<parley_plugin_def>.size),
            abi_major: UInt32(PARLEY_ABI_MAJOR),
            abi_minor: UInt32(PARLEY_ABI_MINOR),
            kind: UInt32(PARLEY_KIND_AGENT.rawValue),
            name: staticName,
            version: staticVersion,
            flags: PARLEY_FLAG_THREAD_SAFE,
            reserved: 0,
            state: Unmanaged.passRetained(instance).toOpaque(),
            handle: { state, call, request in handle(state, call, request) },
            cancel: nil,
            shutdown: { state in shutdown(state) }
        ))
    instance.log(PARLEY_LOG_DEBUG, "assistant loaded")
    return UnsafePointer(def)
}

// NUL-terminated identity strings that live as long as the library (it is never unloaded).
nonisolated(unsafe) private let staticName: UnsafePointer<CChar> = makeCString("assistant")
nonisolated(unsafe) private let staticVersion: UnsafePointer<CChar> = makeCString("1.0.0")

private func makeCString(_ s: String) -> UnsafePointer<CChar> {
    let utf8 = Array(s.utf8CString)
    let p = UnsafeMutablePointer<CChar>.allocate(capacity: utf8.count)
    p.initialize(from: utf8, count: utf8.count)
    return UnsafePointer(p)
}
