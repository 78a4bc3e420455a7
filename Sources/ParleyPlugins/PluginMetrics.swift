import CoreMetrics
import Histogram
import Metrics
import Synchronization

/// One plugin's metrics, labelled with the plugin's configured name: swift-metrics for `/metrics`, and the same
/// counts plus a latency histogram kept here for ``PluginStatus`` (`parley plugins status`). Made once per plugin
/// instance when it is loaded (after the metrics backend is bootstrapped).
final class PluginMetrics: Sendable {
    private struct Tally {
        var calls = 0
        var errors = 0
        var expiries = 0
        var refused = 0
        var crashes = 0
        var restarts = 0
        var recycles = 0
        /// Call durations in microseconds (HdrHistogram: two significant digits up to one hour).
        var latency = Histogram<UInt64>(highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .two)
    }

    private let calls: Counter
    private let errors: Counter
    private let deadlineExpiries: Counter
    private let refusals: Counter
    private let crashes: Counter
    private let restarts: Counter
    private let recycles: Counter
    private let duration: Timer
    private let tally = Mutex(Tally())

    init(plugin: String) {
        calls = Counter(label: "parley_plugin_calls_total", dimensions: [("plugin", plugin)])
        errors = Counter(label: "parley_plugin_errors_total", dimensions: [("plugin", plugin)])
        deadlineExpiries = Counter(label: "parley_plugin_deadline_expiries_total", dimensions: [("plugin", plugin)])
        refusals = Counter(label: "parley_plugin_refused_total", dimensions: [("plugin", plugin)])
        crashes = Counter(label: "parley_plugin_crashes_total", dimensions: [("plugin", plugin)])
        restarts = Counter(label: "parley_plugin_restarts_total", dimensions: [("plugin", plugin)])
        recycles = Counter(label: "parley_plugin_memory_recycles_total", dimensions: [("plugin", plugin)])
        duration = Timer(label: "parley_plugin_call_duration_seconds", dimensions: [("plugin", plugin)], preferredDisplayUnit: .seconds)
    }

    /// Records one finished call: its duration and, when it failed, why. A call refused at once (every slot hung,
    /// breaker open, host restarting) counts as refused, not in the latency.
    func finished(after elapsed: Duration, error: (any Error)?) {
        calls.increment()
        let code = (error as? PluginCallError)?.code
        if code == .unavailable {
            refusals.increment()
            tally.withLock {
                $0.calls += 1
                $0.refused += 1
            }
            return
        }
        duration.record(duration: elapsed)
        let micros = UInt64(max(0, elapsed / .microseconds(1)))
        tally.withLock { t in
            t.calls += 1
            t.latency.record(min(micros, 3_600_000_000))
            if error != nil {
                if code == .deadlineExceeded { t.expiries += 1 } else { t.errors += 1 }
            }
        }
        guard error != nil else { return }
        if code == .deadlineExceeded { deadlineExpiries.increment() } else { errors.increment() }
    }

    /// A host process of the plugin died.
    func crashed() {
        crashes.increment()
        tally.withLock { $0.crashes += 1 }
    }

    /// A host process of the plugin was started again after a crash.
    func restarted() {
        restarts.increment()
        tally.withLock { $0.restarts += 1 }
    }

    /// A host process of the plugin reached its memory limit and is replaced between calls.
    func recycled() {
        recycles.increment()
        tally.withLock { $0.recycles += 1 }
    }

    /// The counts so far, into `status`.
    func fill(_ status: inout PluginStatus) {
        tally.withLock { t in
            status.calls = t.calls
            status.errors = t.errors
            status.deadlineExpiries = t.expiries
            status.refused = t.refused
            status.crashes = t.crashes
            status.restarts = t.restarts
            status.memoryRecycles = t.recycles
            if t.latency.totalCount > 0 {
                status.latencyMicroseconds = [
                    "p50": Int(t.latency.valueAtPercentile(50)), "p99": Int(t.latency.valueAtPercentile(99)), "max": Int(t.latency.max),
                ]
            }
        }
    }
}
