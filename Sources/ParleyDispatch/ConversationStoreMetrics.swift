import CoreMetrics
import Metrics

/// The metrics every conversation store records (swift-metrics), under one set of names so that one dashboard
/// reads the SQLite and the PostgreSQL store alike (docs/operations.md). Created on first use.
public enum ConversationStoreMetrics {
    private static let commits = Counter(label: "parley_store_commits_total")
    private static let failures = Counter(label: "parley_store_commit_failures_total")
    private static let duration = Timer(label: "parley_store_commit_duration_seconds", preferredDisplayUnit: .seconds)
    private static let batch = Recorder(label: "parley_store_commit_batch_appends", aggregate: true)
    private static let bytes = Counter(label: "parley_store_written_bytes_total")
    private static let quarantined = Counter(label: "parley_store_quarantined_events_total")
    private static let conflicts = Counter(label: "parley_store_append_conflicts_total")

    /// One committed transaction of `appends` appends holding `bytes` bytes of event JSON.
    public static func committed(appends: Int, bytes count: Int, after elapsed: Duration) {
        commits.increment()
        batch.record(appends)
        bytes.increment(by: Int64(count))
        duration.record(duration: elapsed)
    }
    /// A commit that stored nothing.
    public static func commitFailed() { failures.increment() }
    /// A stored event that could not be read back (skipped or quarantined).
    public static func eventQuarantined() { quarantined.increment() }
    /// A commit refused because another writer (node) stored events of one of its conversations first.
    public static func appendConflict() { conflicts.increment() }
}
