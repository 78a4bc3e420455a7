public import ParleyJSON

/// A message from a user, as a channel hands it to the dispatcher.
///
/// Mirrors Rasa's `UserMessage`: the conversation is identified by ``senderID`` (Rasa's `sender_id`),
/// the channel it came in on by ``inputChannel`` (`socketio`, `rest`, …).
public struct UserMessage: Sendable, Hashable {
    /// The user's text, already stripped of surrounding whitespace by the channel.
    public var text: String
    /// The conversation id (Rasa `sender_id`).
    public var senderID: String
    /// The name of the input channel (`socketio`, `rest`, …).
    public var inputChannel: String
    /// Metadata sent with the message; always a JSON object (possibly empty).
    public var metadata: JSONObject
    /// A unique id for this message (32 lowercase hex characters unless the channel supplied one).
    public var messageID: String
    /// Seconds since 1970 when the message was received.
    public var timestamp: Double

    public init(
        text: String,
        senderID: String,
        inputChannel: String,
        metadata: JSONObject = [:],
        messageID: String? = nil,
        timestamp: Double? = nil
    ) {
        self.text = text
        self.senderID = senderID
        self.inputChannel = inputChannel
        self.metadata = metadata
        self.messageID = messageID ?? Identifier.random32Hex()
        self.timestamp = timestamp ?? Clock.unixNow()
    }
}

/// Random identifiers in the shapes Rasa uses.
public enum Identifier {
    /// 32 lowercase hex characters, like Python's `uuid4().hex`.
    public static func random32Hex() -> String {
        // Two 64-bit draws (each a getrandom call); the nibbles replaced by the version and variant supply the
        // variant's two random bits.
        var g = SystemRandomNumberGenerator()
        let random = (g.next() as UInt64, g.next() as UInt64)
        let hex: StaticString = "0123456789abcdef"
        return String(unsafeUninitializedCapacity: 32) { bytes in
            hex.withUTF8Buffer { digits in
                var r = random.0
                var r2 = random.1
                for i in 0..<16 {
                    bytes[i] = digits[Int(r & 0xF)]
                    r >>= 4
                    bytes[16 + i] = digits[Int(r2 & 0xF)]
                    r2 >>= 4
                }
                // Set the version and variant nibbles as uuid4 does, so ids look like uuid4().hex.
                bytes[12] = UInt8(ascii: "4")
                bytes[16] = digits[Int(8 + (random.1 & 0x3))]
            }
            return 32
        }
    }
}

/// Wall-clock helpers (kept out of Foundation so the core has no I/O dependency).
public enum Clock {
    /// Seconds since 1970 as a `Double`, microsecond resolution.
    public static func unixNow() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
