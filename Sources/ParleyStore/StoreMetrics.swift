import CoreMetrics
import Metrics

/// The SQLite store's metrics (swift-metrics), created on first use.
enum StoreMetrics {
    private static let commits = Counter(label: "parley_store_commits_total")
    private static let failures = Counter(label: "parley_store_commit_failures_total")
    private static let duration = Timer(label: "parley_store_commit_duration_seconds", preferredDisplayUnit: .seconds)
    private static let batch = Recorder(label: "parley_store_commit_batch_appends", aggregate: true)
    private static let bytes = Counter(label: "parley_store_written_bytes_total")
    private static let quarantined = Counter(label: "parley_store_quarantined_events_total")

    /// One committed transaction of `appends` appends holding `bytes` bytes of event JSON.
    static func committed(appends: Int, bytes count: Int, after elapsed: Duration) {
        commits.increment()
        batch.record(appends)
        bytes.increment(by: Int64(count))
        duration.record(duration: elapsed)
    }
    static func commitFailed() { failures.increment() }
    static func eventQuarantined() { quarantined.increment() }
}
