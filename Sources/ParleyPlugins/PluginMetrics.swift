import CoreMetrics
import Metrics

/// One plugin's metrics (swift-metrics), labelled with the plugin's configured name; made once per plugin when it
/// is loaded (after the backend is bootstrapped).
struct PluginMetrics: Sendable {
    private let calls: Counter
    private let errors: Counter
    private let deadlineExpiries: Counter
    private let duration: Timer

    init(plugin: String) {
        calls = Counter(label: "parley_plugin_calls_total", dimensions: [("plugin", plugin)])
        errors = Counter(label: "parley_plugin_errors_total", dimensions: [("plugin", plugin)])
        deadlineExpiries = Counter(label: "parley_plugin_deadline_expiries_total", dimensions: [("plugin", plugin)])
        duration = Timer(label: "parley_plugin_call_duration_seconds", dimensions: [("plugin", plugin)], preferredDisplayUnit: .seconds)
    }

    /// Records one finished call: its duration and, when it failed, why.
    func finished(after elapsed: Duration, error: (any Error)?) {
        calls.increment()
        duration.record(duration: elapsed)
        guard let error else { return }
        if let e = error as? PluginCallError, e.code == .deadlineExceeded {
            deadlineExpiries.increment()
        } else {
            errors.increment()
        }
    }
}
