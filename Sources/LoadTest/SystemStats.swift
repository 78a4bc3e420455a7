#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// CPU and memory readings from `/proc` and `getrusage` (Linux; elsewhere the values read as nil).
enum SystemStats {
    /// CPU seconds (user + system) used by this process so far.
    static func ownCPUSeconds() -> Double {
        var usage = rusage()
        #if canImport(Glibc)
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        #else
        getrusage(RUSAGE_SELF, &usage)
        #endif
        return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
            + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
    }

    static func readFile(_ path: String) -> String? {
        guard let f = fopen(path, "r") else { return nil }
        defer { fclose(f) }
        var out = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, 4096, f) }
            if n <= 0 { break }
            out.append(contentsOf: chunk[0..<n])
            if out.count > 1 << 20 { break }
        }
        return String(decoding: out, as: UTF8.self)
    }

    static var ticksPerSecond: Double {
        let t = sysconf(Int32(_SC_CLK_TCK))
        return t > 0 ? Double(t) : 100
    }

    /// CPU seconds (user + system, all threads) of process `pid`.
    static func processCPUSeconds(_ pid: Int32) -> Double? {
        guard let text = readFile("/proc/\(pid)/stat"), let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // After the command: state(0) ppid(1) ... utime is field 14 overall = index 11 here, stime 12.
        guard fields.count > 12, let u = Double(fields[11]), let s = Double(fields[12]) else { return nil }
        return (u + s) / ticksPerSecond
    }

    /// A `/proc/<pid>/status` field in kB, e.g. `VmRSS`.
    static func statusKB(_ pid: Int32, _ field: String) -> Int? {
        guard let text = readFile("/proc/\(pid)/status") else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if parts.count >= 2 { return Int(parts[1].trimmingCharacters(in: "\t")) ?? Int(parts[1]) }
        }
        return nil
    }

    /// Machine-wide CPU seconds: (busy, steal) summed over all CPUs, from `/proc/stat`.
    static func machineCPUSeconds() -> (busy: Double, steal: Double)? {
        guard let text = readFile("/proc/stat"), let line = text.split(separator: "\n").first, line.hasPrefix("cpu ") else { return nil }
        let v = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        guard v.count >= 8 else { return nil }
        // user nice system idle iowait irq softirq steal
        let busy = v[0] + v[1] + v[2] + v[5] + v[6]
        return (busy / ticksPerSecond, v[7] / ticksPerSecond)
    }

    /// A point-in-time CPU reading for a measuring window.
    struct CPUSnapshot {
        var time: UInt64
        var own: Double
        var server: Double?
        var machine: (busy: Double, steal: Double)?

        static func take(server pid: Int32?) -> CPUSnapshot {
            CPUSnapshot(time: monotonicNanos(), own: ownCPUSeconds(), server: pid.flatMap(processCPUSeconds), machine: machineCPUSeconds())
        }
    }
}

extension Substring {
    fileprivate func trimmingCharacters(in set: Character) -> Substring {
        var s = self
        while s.first == set { s = s.dropFirst() }
        while s.last == set { s = s.dropLast() }
        return s
    }
}
