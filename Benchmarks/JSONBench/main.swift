// JSONBench: ParleyJSON against the JSON libraries a Swift server could use instead, on the payloads of one turn.
//
//   swift run -c release JSONBench [iterations]
//
// Each payload is parsed from bytes and serialised back to bytes, `iterations` times, per library:
//   ParleyJSON          JSONValue.parse / serialize(into:) (the runtime's own, no Foundation on the hot path)
//   JSONSerialization   Foundation's untyped parser and writer (Any trees)
//   JSONDecoder/Encoder Foundation's Codable path into an equivalent recursive enum
// Prints one line per payload and library: nanoseconds per parse, per serialise, and per round trip.
import Foundation
import ParleyJSON

/// The JSON shapes of one Rasa turn: the Socket.IO `user_uttered` event arguments, a tracker event as the store
/// keeps it, and an agent request with 20 events of history.
let userUttered =
    #"["user_uttered",{"message":"hello there, how are you?","session_id":"b3c1f2a0e9d84c7fa1b2c3d4e5f60718","#
    + #""metadata":{"lang":"en","page":"/pricing"}}]"#
let trackerEvent =
    #"{"event":"user","timestamp":1733392000.123456,"text":"hello there, how are you?","parse_data":{"intent":"#
    + #"{"name":null,"confidence":0.0},"entities":[],"text":"hello there, how are you?","#
    + #""message_id":"6f1d7c2e9a3b4c5d8e7f6a5b4c3d2e1f","metadata":{"lang":"en"}},"input_channel":"socketio","#
    + #""message_id":"6f1d7c2e9a3b4c5d8e7f6a5b4c3d2e1f","metadata":{"lang":"en"}}"#
let agentRequest: String = {
    let events = (0..<20).map { _ in trackerEvent }.joined(separator: ",")
    return #"{"sender_id":"b3c1f2a0e9d84c7fa1b2c3d4e5f60718","message":{"text":"hi","message_id":"x","metadata":{},"#
        + #""input_channel":"socketio"},"tracker":{"sender_id":"b3c1","slots":{"name":"Ada","count":3},"#
        + #""latest_message":{"text":"hi"},"paused":false,"events":["# + events + "]}}"
}()

/// A JSON value for the Codable path (what a server without its own JSON type would decode into).
indirect enum CodableJSON: Codable {
    case null, bool(Bool), number(Double), string(String), array([CodableJSON]), object([String: CodableJSON])

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let n = try? c.decode(Double.self) {
            self = .number(n)
        } else if let s = try? c.decode(String.self) {
            self = .string(s)
        } else if let a = try? c.decode([CodableJSON].self) {
            self = .array(a)
        } else {
            self = .object(try c.decode([String: CodableJSON].self))
        }
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .number(let n): try c.encode(n)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }
}

@inline(never) func blackHole<T>(_ value: T) { withExtendedLifetime(value) {} }

/// Nanoseconds per call of `body`, best of 5 rounds of `iterations` calls.
func measure(_ iterations: Int, _ body: () throws -> Void) rethrows -> Double {
    var best = Double.infinity
    for _ in 0..<5 {
        let start = ContinuousClock.now
        for _ in 0..<iterations { try body() }
        let elapsed = ContinuousClock.now - start
        let ns = Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9
        best = min(best, ns / Double(iterations))
    }
    return best
}

let iterations = CommandLine.arguments.dropFirst().first.flatMap { Int($0) } ?? 20_000
print("payload            library               parse ns   serialise ns   round trip ns")
for (name, text) in [("user_uttered", userUttered), ("tracker event", trackerEvent), ("agent request", agentRequest)] {
    let bytes = Array(text.utf8)
    let data = Data(bytes)
    let parley = try JSONValue.parse(bytes)
    let foundation = try JSONSerialization.jsonObject(with: data)
    let codable = try JSONDecoder().decode(CodableJSON.self, from: data)
    let n = max(100, iterations * 300 / max(300, bytes.count))
    let rows: [(String, Double, Double)] = [
        (
            "ParleyJSON", try measure(n) { blackHole(try JSONValue.parse(bytes)) },
            measure(n) {
                var out: [UInt8] = []
                out.reserveCapacity(bytes.count)
                parley.serialize(into: &out)
                blackHole(out)
            }
        ),
        (
            "JSONSerialization", try measure(n) { blackHole(try JSONSerialization.jsonObject(with: data)) },
            try measure(n) { blackHole(try JSONSerialization.data(withJSONObject: foundation)) }
        ),
        (
            "JSONDecoder/Encoder", try measure(n) { blackHole(try JSONDecoder().decode(CodableJSON.self, from: data)) },
            try measure(n) { blackHole(try JSONEncoder().encode(codable)) }
        ),
    ]
    for (library, parse, serialise) in rows {
        print(
            name.padding(toLength: 19, withPad: " ", startingAt: 0) + library.padding(toLength: 20, withPad: " ", startingAt: 0)
                + String(format: "%9.0f %14.0f %15.0f", parse, serialise, parse + serialise))
    }
}
