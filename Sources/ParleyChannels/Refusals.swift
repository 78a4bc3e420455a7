import ParleyCore
import ParleyDispatch
public import ParleyJSON
import Synchronization

/// Why a client's message was not handled, as the client sees it: a stable `code` and a `message` that says what
/// to do. The Socket.IO channel sends it as the payload of its error event (`parley_error` by default)
/// `{"code": "...", "message": "...", "event": "<the refused event>"}`; the REST channel answers with the
/// matching HTTP status. Codes:
///
/// | code | when | REST |
/// |---|---|---|
/// | `invalid_input` | the event's data is not the documented shape (not an object, no `session_id`, metadata not an object) | 400 |
/// | `too_large` | text, metadata or nesting above the configured limits | 413 / 400 |
/// | `rate_limited` | the socket sent more messages than `rate_limit` allows | — |
/// | `mailbox_full` | too many of the conversation's messages are waiting for their turn | 429 |
/// | `store_unavailable` | the conversation store cannot record the turn (a full disk) | 503 |
/// | `shutting_down` | the server is stopping | 503 |
/// | `forbidden` | the message names a session other than the socket's token's | 403 |
public struct Refusal: Sendable, Hashable, CustomStringConvertible {
    /// The stable code (see the table above).
    public var code: String
    /// What was wrong and what to do, for people.
    public var message: String

    public init(_ code: String, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }

    /// The refusal for an error thrown by the dispatcher (``InputError`` or ``DispatchError``). A new error case
    /// needs one line here; anything unknown is `store_unavailable`'s generic sibling `unavailable`.
    public static func from(_ error: any Error) -> Refusal {
        if let e = error as? InputError {
            switch e.code {
            case .messageTooLarge, .metadataTooLarge, .metadataTooDeep: return Refusal("too_large", e.description)
            default: return Refusal("invalid_input", e.description)
            }
        }
        if let e = error as? DispatchError {
            switch e.code {
            case .mailboxFull: return Refusal("mailbox_full", "too many messages are waiting in this conversation; wait for the answers and send again")
            case .storeFailed: return Refusal("store_unavailable", "the message could not be recorded; try again later")
            case .shuttingDown, .notRunning: return Refusal("shutting_down", "the server is stopping; reconnect and send again")
            case .unknownConversation: return Refusal("invalid_input", e.description)
            default: return Refusal("unavailable", "the message was not handled; try again later")
            }
        }
        return Refusal("unavailable", "the message was not handled; try again later")
    }

    /// The error event's payload.
    func payload(event: String) -> JSONValue {
        ["code": .string(code), "message": .string(message), "event": .string(event)]
    }
}

/// A token bucket: `rate` messages per second on average, `burst` at once.
struct TokenBucket: Sendable {
    private let rate: Double
    private let burst: Double
    private var tokens: Double
    private var last: ContinuousClock.Instant

    init(rate: Double, burst: Int) {
        self.rate = rate
        self.burst = Double(max(1, burst))
        self.tokens = Double(max(1, burst))
        self.last = ContinuousClock.now
    }

    /// Takes one token; false when none is left (the message is over the limit).
    mutating func take(now: ContinuousClock.Instant = .now) -> Bool {
        let elapsed = now - last
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        tokens = min(burst, tokens + seconds * rate)
        last = now
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}

/// At most one log line per client per interval for refusals, so that a flood does not fill the disk: the first
/// refusal of an interval is logged with the number suppressed since the previous line.
struct RefusalLog: Sendable {
    private let interval: Duration
    private var last: ContinuousClock.Instant?
    private var suppressed = 0

    init(interval: Duration = .seconds(10)) {
        self.interval = interval
    }

    /// Whether to log this refusal now, and how many were suppressed before it.
    mutating func shouldLog(now: ContinuousClock.Instant = .now) -> (log: Bool, suppressed: Int) {
        if let last, now - last < interval {
            suppressed += 1
            return (false, 0)
        }
        defer {
            last = now
            suppressed = 0
        }
        return (true, suppressed)
    }
}

/// What the channel keeps per socket: its rate limit and its refusal log, in one object (an idle session costs
/// one small allocation here). Its handlers run on the socket's event loop, so the `Mutex` is never contended;
/// it only makes the type `Sendable`.
final class SocketGuard: Sendable {
    private let state: Mutex<(bucket: TokenBucket?, log: RefusalLog)>

    /// `messagesPerSecond` 0 = no rate limit.
    init(messagesPerSecond: Double, burst: Int) {
        state = Mutex((messagesPerSecond > 0 ? TokenBucket(rate: messagesPerSecond, burst: burst) : nil, RefusalLog()))
    }

    /// Takes a token of the rate limit; false when the message is over it.
    func admit() -> Bool {
        state.withLock { $0.bucket?.take() ?? true }
    }

    /// Whether to log a refusal now, and how many were suppressed before it.
    func shouldLog() -> (log: Bool, suppressed: Int) {
        state.withLock { $0.log.shouldLog() }
    }
}
