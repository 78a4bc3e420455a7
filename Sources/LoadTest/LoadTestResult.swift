import ParleyJSON

/// Latency summary in microseconds.
public struct LatencySummary: Sendable, Equatable {
    /// Median.
    public var p50: Double = 0
    /// 90th percentile.
    public var p90: Double = 0
    /// 99th percentile.
    public var p99: Double = 0
    /// Largest sample.
    public var max: Double = 0
    /// Arithmetic mean.
    public var mean: Double = 0
}

/// The outcome of one run. `json` has the same keys as the neutral C generator `sioload`, so the same
/// scripts read both.
public struct LoadTestResult: Sendable, Equatable {
    /// The scenario that ran.
    public var scenario: LoadScenario
    /// Socket.IO or raw WebSocket.
    public var proto: LoadProtocol
    /// `rtt` clients.
    public var clients = 0
    /// `connect` / `idle` sessions.
    public var sessions = 0
    /// Sessions opened at once.
    public var inFlight = 0
    /// Minimum message text size.
    public var messageSize = 0
    /// The measured window in seconds (`rtt`: after warm-up; `connect`: first connect to last completion; `idle`: hold).
    public var windowSeconds = 0.0
    /// Sessions that were established.
    public var established = 0
    /// Round trips (`rtt`) or whole sessions (`connect`) completed in the window.
    public var completed = 0
    /// `completed / windowSeconds`.
    public var rate: Double { windowSeconds > 0 ? Double(completed) / windowSeconds : 0 }
    public var latency = LatencySummary()
    /// Errors by class: connect, handshake, protocol, mismatch, timeout, closed, unfinished.
    public var errorCounts: [(String, Int)] = []
    /// All errors.
    public var errors: Int { errorCounts.reduce(0) { $0 + $1.1 } }
    /// Events that were neither a confirm nor the awaited reply (not errors).
    public var otherEvents = 0
    /// Engine.IO pings answered.
    public var eioPings = 0
    /// WebSocket pings answered.
    public var wsPings = 0
    /// `idle`: sessions still open at the end of the hold.
    public var aliveAtEnd: Int?
    /// Server VmRSS before opening sessions (`idle`, with a PID).
    public var rssBeforeKB: Int?
    /// Server VmRSS after settling (`idle`).
    public var rssEstablishedKB: Int?
    /// Server VmRSS at the end of the hold (`idle`).
    public var rssEndKB: Int?
    /// Server VmHWM (peak RSS) at the end.
    public var serverHWMKB: Int?
    /// The measured server's PID.
    public var serverPID: Int32?
    /// The generator's own CPU in the window (100 = one core).
    public var genCPUPercent = 0.0
    /// The server's CPU in the window, all threads (100 = one core).
    public var serverCPUPercent: Double?
    /// CPU used on the whole machine in the window (100 = one core).
    public var machineBusyPercent: Double?
    /// Machine CPU used by anything but the generator and the server: well above 0 = disturbed run.
    public var otherCPUPercent: Double?
    /// Hypervisor steal time in the window.
    public var stealPercent: Double?
    /// Whole run, seconds.
    public var wallSeconds = 0.0

    /// `idle` with a server PID: (RSS at end − RSS before) / established sessions, in bytes.
    public var rssPerSessionBytes: Double? {
        guard let b = rssBeforeKB, let e = rssEndKB, established > 0 else { return nil }
        return Double(e - b) * 1024 / Double(established)
    }

    /// Equal when their JSON forms are equal.
    public static func == (a: LoadTestResult, b: LoadTestResult) -> Bool { a.json == b.json }

    static func round1(_ v: Double) -> JSONValue { .double((v * 10).rounded() / 10) }

    /// The result as one JSON object (keys as `sioload` writes them, plus `tool`).
    public var json: JSONValue {
        var o = JSONObject()
        o["tool"] = "parley-loadtest"
        o["mode"] = .string(proto == .raw && scenario == .rtt ? "raw" : scenario.rawValue)
        o["proto"] = .string(proto.rawValue)
        o["conns"] = .int(Int64(clients))
        o["n"] = .int(Int64(sessions))
        o["k"] = .int(Int64(inFlight))
        o["size"] = .int(Int64(messageSize))
        o["duration_s"] = .double((windowSeconds * 1000).rounded() / 1000)
        o["established"] = .int(Int64(established))
        o["completed"] = .int(Int64(completed))
        if scenario == .rtt { o["msgs_per_s"] = Self.round1(rate) }
        if scenario == .connect { o["sessions_per_s"] = Self.round1(rate) }
        o["lat_us"] = .object([
            "p50": Self.round1(latency.p50), "p90": Self.round1(latency.p90), "p99": Self.round1(latency.p99),
            "max": Self.round1(latency.max), "mean": Self.round1(latency.mean),
        ])
        o["errors"] = .int(Int64(errors))
        o["err"] = .object(JSONObject(errorCounts.map { ($0.0, JSONValue.int(Int64($0.1))) }))
        o["other_events"] = .int(Int64(otherEvents))
        o["eio_pings_answered"] = .int(Int64(eioPings))
        o["ws_pings_answered"] = .int(Int64(wsPings))
        if let aliveAtEnd { o["alive_at_end"] = .int(Int64(aliveAtEnd)) }
        if let rssBeforeKB { o["rss_before_kb"] = .int(Int64(rssBeforeKB)) }
        if let rssEstablishedKB { o["rss_established_kb"] = .int(Int64(rssEstablishedKB)) }
        if let rssEndKB { o["rss_end_kb"] = .int(Int64(rssEndKB)) }
        if let r = rssPerSessionBytes { o["rss_per_conn_bytes"] = .double(r.rounded()) }
        o["gen_cpu_pct"] = Self.round1(genCPUPercent)
        if let serverCPUPercent { o["server_cpu_pct"] = Self.round1(serverCPUPercent) }
        if let serverPID { o["server_pid"] = .int(Int64(serverPID)) }
        if let serverHWMKB { o["server_hwm_kb"] = .int(Int64(serverHWMKB)) }
        if let machineBusyPercent { o["machine_busy_pct"] = Self.round1(machineBusyPercent) }
        if let otherCPUPercent { o["other_cpu_pct"] = Self.round1(otherCPUPercent) }
        if let stealPercent { o["steal_pct"] = Self.round1(stealPercent) }
        o["wall_s"] = .double((wallSeconds * 1000).rounded() / 1000)
        return .object(o)
    }

    /// A short human summary, e.g. `rtt: 45,120.3 msgs/s, p50 1.9 ms, p99 4.1 ms, errors 0`.
    public var summary: String {
        func ms(_ us: Double) -> String { us >= 1000 ? "\(Double(Int(us / 10)) / 100) ms" : "\(Int(us)) us" }
        var s: String
        switch scenario {
        case .rtt: s = "rtt: \(Int(rate)) msgs/s over \(Double(Int(windowSeconds * 10)) / 10) s, \(established) clients"
        case .connect: s = "connect: \(Int(rate)) sessions/s, \(completed)/\(sessions) sessions"
        case .idle:
            s = "idle: \(aliveAtEnd ?? 0)/\(sessions) sessions alive"
            if let r = rssPerSessionBytes { s += ", server RSS \(Int(r)) bytes/session" }
        }
        if scenario != .idle { s += ", p50 \(ms(latency.p50)), p90 \(ms(latency.p90)), p99 \(ms(latency.p99)), max \(ms(latency.max))" }
        s += ", errors \(errors)"
        return s
    }
}
