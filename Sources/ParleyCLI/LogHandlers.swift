import Foundation
import Logging
import ParleyJSON
import Synchronization

/// Where log lines go: one `write` per line, serialised so lines from concurrent tasks never interleave.
final class LogSink: Sendable {
    static let standardError = LogSink(fd: 2)
    private let fd: Int32
    private let lock = Mutex(())

    init(fd: Int32) { self.fd = fd }

    func write(_ line: [UInt8]) {
        lock.withLock { _ in
            line.withUnsafeBytes { raw in
                var offset = 0
                while offset < raw.count {
                    let n = Foundation.write(fd, raw.baseAddress! + offset, raw.count - offset)
                    if n <= 0 { if errno == EINTR { continue } else { return } }
                    offset += n
                }
            }
        }
    }
}

/// Timestamps in RFC 3339 with milliseconds, UTC.
enum LogTime {
    static func now() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = time_t(ts.tv_sec)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        let ms = Int(ts.tv_nsec / 1_000_000)
        func pad(_ v: Int32, _ w: Int) -> String { let s = String(v); return String(repeating: "0", count: max(0, w - s.count)) + s }
        return
            "\(pad(tmv.tm_year + 1900, 4))-\(pad(tmv.tm_mon + 1, 2))-\(pad(tmv.tm_mday, 2))T\(pad(tmv.tm_hour, 2)):\(pad(tmv.tm_min, 2)):\(pad(tmv.tm_sec, 2)).\(pad(Int32(ms), 3))Z"
    }
}

extension Logger.MetadataValue {
    /// The metadata value as JSON (strings stay strings; nested dictionaries and arrays keep their shape).
    var json: JSONValue {
        switch self {
        case .string(let s): return .string(s)
        case .stringConvertible(let c): return .string(c.description)
        case .array(let a): return .array(a.map(\.json))
        case .dictionary(let d):
            var o = JSONObject()
            for k in d.keys.sorted() { o[k] = d[k]?.json }
            return .object(o)
        }
    }
}

/// Parley's log handler: one line per event on a ``LogSink``, as text or as JSON.
///
/// - Text: `2026-11-29T08:00:00.000Z info parley.socketio: session confirmed session_id=abc sid=xyz`.
/// - JSON lines: `{"ts":"…","level":"info","logger":"parley.socketio","message":"…","metadata":{…}}`.
struct ParleyLogHandler: LogHandler {
    /// How each event is written.
    enum Format: Sendable { case text, json }

    let label: String
    let format: Format
    let sink: LogSink
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    init(
        label: String, format: Format, level: Logger.Level, sink: LogSink = .standardError,
        metadataProvider: Logger.MetadataProvider? = nil
    ) {
        self.label = label
        self.format = format
        self.logLevel = level
        self.sink = sink
        self.metadataProvider = metadataProvider
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// The handler's metadata, then the provider's, then the event's (later ones win).
    private func merged(_ explicit: Logger.Metadata?) -> Logger.Metadata {
        var all = metadata
        if let provided = metadataProvider?.get() { all.merge(provided) { _, new in new } }
        if let explicit { all.merge(explicit) { _, new in new } }
        return all
    }

    func log(event: LogEvent) {
        let all = merged(event.metadata)
        switch format {
        case .text:
            var line = "\(LogTime.now()) \(event.level) \(label): \(event.message)"
            for key in all.keys.sorted() {
                guard let value = all[key] else { continue }
                line += " \(key)=\(Self.render(value))"
            }
            line += "\n"
            sink.write(Array(line.utf8))
        case .json:
            var o: JSONObject = [
                "ts": .string(LogTime.now()),
                "level": .string(event.level.rawValue),
                "logger": .string(label),
                "message": .string(event.message.description),
            ]
            if !all.isEmpty {
                var m = JSONObject()
                for key in all.keys.sorted() { m[key] = all[key]?.json }
                o["metadata"] = .object(m)
            }
            var bytes: [UInt8] = []
            JSONValue.object(o).serialize(into: &bytes)
            bytes.append(UInt8(ascii: "\n"))
            sink.write(bytes)
        }
    }

    /// Quotes text values with spaces or quotes so a line stays parseable as `key=value` pairs.
    static func render(_ value: Logger.MetadataValue) -> String {
        let s: String
        switch value {
        case .string(let v): s = v
        case .stringConvertible(let v): s = v.description
        case .array, .dictionary: return value.json.serialized
        }
        if s.isEmpty || s.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" || $0 == "\n" }) {
            return JSONValue.string(s).serialized
        }
        return s
    }
}
