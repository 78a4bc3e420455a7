import CoreMetrics
import Metrics

/// The dispatcher's metrics (swift-metrics), created on first use.
enum DispatchMetrics {
    private static let turns = Counter(label: "parley_turns_total")
    private static let turnDuration = Timer(label: "parley_turn_duration_seconds", preferredDisplayUnit: .seconds)
    private static let deadlineFallbacks = Counter(label: "parley_fallbacks_total", dimensions: [("cause", "deadline")])
    private static let agentFallbacks = Counter(label: "parley_fallbacks_total", dimensions: [("cause", "agent_error")])
    private static let actionFallbacks = Counter(label: "parley_fallbacks_total", dimensions: [("cause", "action_error")])
    private static let mailboxRejections = Counter(label: "parley_mailbox_rejections_total")
    private static let residentConversations = Gauge(label: "parley_resident_conversations")
    private static let conflictRetries = Counter(label: "parley_turn_conflict_retries_total")
    private static let repeatedMessages = Counter(label: "parley_repeated_messages_total")
    private static let replayedMessages = Counter(label: "parley_replayed_messages_total")

    enum FallbackCause { case deadline, agentError, actionError }

    static func turnFinished(after elapsed: Duration) {
        turns.increment()
        turnDuration.record(duration: elapsed)
    }
    static func fallback(_ cause: FallbackCause) {
        switch cause {
        case .deadline: deadlineFallbacks.increment()
        case .agentError: agentFallbacks.increment()
        case .actionError: actionFallbacks.increment()
        }
    }
    static func mailboxRejected() { mailboxRejections.increment() }
    static func turnRetried() { conflictRetries.increment() }
    static func repeatedMessage() { repeatedMessages.increment() }
    static func replayed(_ count: Int) { replayedMessages.increment(by: count) }
    static func resident(_ count: Int) { residentConversations.record(count) }
}
