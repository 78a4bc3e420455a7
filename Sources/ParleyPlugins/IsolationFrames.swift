#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// The frames between Parley and a plugin's host process (`parley-plugin-host`, `isolation: process`), over the
/// child's stdin (to it) and stdout (from it). Written by hand because it is the whole protocol: a 13-byte header
/// and the bytes the in-process path already has (the request and reply JSON texts are passed through, never
/// re-encoded).
///
/// `u32 length` (big-endian, of what follows) · `u8 type` · `u64 id` (big-endian; the call, or 0) · body.
public enum IsolationFrame {
    /// Parent → child: a call. Body: `u16 sender length`, the sender id (UTF-8), the request JSON.
    public static let call: UInt8 = 1
    /// Parent → child: finish the calls in flight, run the shutdown hook, exit.
    public static let shutdown: UInt8 = 2
    /// Child → parent: the plugin is loaded. Body: JSON `{"name","kind","version","abi","thread_safe","tracker_events"}`.
    public static let ready: UInt8 = 10
    /// Child → parent: a call's reply (body: the reply JSON, already checked by the child's host).
    public static let reply: UInt8 = 11
    /// Child → parent: a call failed (body: the error's text).
    public static let failed: UInt8 = 12
    /// Child → parent: the plugin emitted (body: JSON `{"sender","responses","channel"?}`).
    public static let emit: UInt8 = 13
    /// Child → parent: a stream chunk of a call (body: the text, UTF-8).
    public static let stream: UInt8 = 14
    /// Child → parent: the plugin could not be loaded (body: the loader's message); the child exits.
    public static let loadFailed: UInt8 = 15
    /// Child → parent: the host reached its memory limit (body: a sentence saying how much it uses); Parley routes
    /// new calls to a new host and sends this one `shutdown`, so it is replaced between calls, losing none.
    public static let recycle: UInt8 = 16

    /// The largest frame accepted (a reply or request larger than this is a protocol error).
    public static let maxLength = 64 << 20

    /// One frame's bytes.
    public static func encode(type: UInt8, id: UInt64, body: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(13 + body.count)
        let length = UInt32(9 + body.count)
        for shift in stride(from: 24, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: length >> UInt32(shift))) }
        out.append(type)
        for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: id >> UInt64(shift))) }
        out.append(contentsOf: body)
        return out
    }

    /// A call frame's body.
    public static func callBody(sender: String, request: [UInt8]) -> [UInt8] {
        let s = Array(sender.utf8.prefix(65_535))
        return [UInt8(s.count >> 8), UInt8(s.count & 0xFF)] + s + request
    }

    /// The sender and request of a call frame's body; nil when it is too short.
    public static func splitCall(_ body: ArraySlice<UInt8>) -> (sender: String, request: [UInt8])? {
        guard body.count >= 2 else { return nil }
        let n = Int(body[body.startIndex]) << 8 | Int(body[body.startIndex + 1])
        guard body.count >= 2 + n else { return nil }
        let start = body.startIndex + 2
        return (String(decoding: body[start..<start + n], as: UTF8.self), Array(body[(start + n)...]))
    }
}

/// Reads frames from a file descriptor with blocking `read`s (on a thread of its own). One buffer, reused: bytes
/// are read after the unread ones and the consumed prefix is dropped only when it is most of the buffer.
public struct IsolationFrameReader {
    private let fd: Int32
    private var buffer: [UInt8] = []
    /// Where the unread bytes start in `buffer`.
    private var start = 0
    /// What one `read` fills (allocated once).
    private var chunk = [UInt8](repeating: 0, count: 65_536)

    public init(fd: Int32) { self.fd = fd }

    /// The next frame, or nil at end of file, on a read error or on a malformed length.
    public mutating func next() -> (type: UInt8, id: UInt64, body: ArraySlice<UInt8>)? {
        while true {
            let available = buffer.count - start
            if available >= 4 {
                let s = start
                let length = Int(buffer[s]) << 24 | Int(buffer[s + 1]) << 16 | Int(buffer[s + 2]) << 8 | Int(buffer[s + 3])
                guard length >= 9, length <= IsolationFrame.maxLength else { return nil }
                if available >= 4 + length {
                    var id: UInt64 = 0
                    for i in (s + 5)..<(s + 13) { id = id << 8 | UInt64(buffer[i]) }
                    let frame = (buffer[s + 4], id, ArraySlice(buffer[(s + 13)..<(s + 4 + length)]))
                    start += 4 + length
                    return frame
                }
            }
            if start > 0 && start * 2 >= buffer.count {
                buffer.removeFirst(start)
                start = 0
            }
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return nil }
            buffer.append(contentsOf: chunk[0..<n])
        }
    }
}

/// Writes whole buffers to a file descriptor (`write` until done); false when the other side is gone.
@discardableResult
public func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, bytes.count - offset) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { return false }
        offset += n
    }
    return true
}

/// Writes frames to a pipe from any thread without holding a lock across `write(2)`: a thread that finds another
/// one writing appends its frame to the next batch that thread writes, and returns. Under load this makes fewer,
/// larger writes and no thread waits for another's system call (measured: with one lock held across each write,
/// the lock's slow path was 11 % of `parley-plugin-host`'s CPU and 5 % of the server's in S2).
///
/// The descriptor is closed once, by ``close()`` or — when a write is under way then — by the writer when it is
/// done, so it is never used after it is closed (by then the number could be another file's).
public final class FrameWriter: Sendable {
    private struct State {
        var pending: [UInt8] = []
        var spare: [UInt8] = []
        /// New frames are taken (false after ``close()`` or a failed write).
        var accepting = true
        var writing = false
        var descriptorOpen = true
        var closeRequested = false
    }

    private let state = Mutex(State())
    private let fd: Int32

    /// A writer of `fd`, which ``close()`` closes.
    public init(fd: Int32) {
        self.fd = fd
    }

    /// Queues `frame` and writes it (with whatever others queue meanwhile) unless another thread is writing, which
    /// then writes it. False when the writer is closed or the pipe is broken (the reader is gone).
    @discardableResult
    public func write(_ frame: [UInt8]) -> Bool {
        let writeNow: Bool? = state.withLock { s in
            guard s.accepting else { return nil }
            s.pending.append(contentsOf: frame)
            if s.writing { return false }
            s.writing = true
            return true
        }
        guard let writeNow else { return false }
        guard writeNow else { return true }
        var ok = true
        var batch: [UInt8] = []
        while true {
            let (next, closeNow): ([UInt8]?, Bool) = state.withLock { s in
                if batch.capacity > s.spare.capacity {
                    batch.removeAll(keepingCapacity: true)
                    swap(&batch, &s.spare)
                }
                guard s.accepting, !s.pending.isEmpty else {
                    s.writing = false
                    s.pending.removeAll(keepingCapacity: true)
                    let closeNow = s.closeRequested && s.descriptorOpen
                    if closeNow { s.descriptorOpen = false }
                    return (nil, closeNow)
                }
                var next = s.spare
                swap(&next, &s.pending)
                s.spare = []
                return (next, false)
            }
            guard let next else {
                if closeNow { closeDescriptor() }
                break
            }
            batch = next
            if !writeAll(fd, batch) {
                ok = false
                state.withLock { $0.accepting = false }
            }
        }
        return ok
    }

    /// Whether every queued frame has been written (or dropped): nothing is pending and no thread is writing.
    public var isIdle: Bool { state.withLock { !$0.writing && $0.pending.isEmpty } }

    /// Stops writing (frames queued and not written are dropped) and closes the descriptor, now or when the write
    /// under way ends. Idempotent.
    public func close() {
        let closeNow: Bool = state.withLock { s in
            s.accepting = false
            guard s.descriptorOpen else { return false }
            if s.writing {
                s.closeRequested = true
                return false
            }
            s.descriptorOpen = false
            return true
        }
        if closeNow { closeDescriptor() }
    }

    private func closeDescriptor() {
        #if canImport(Glibc)
        _ = Glibc.close(fd)
        #elseif canImport(Darwin)
        _ = Darwin.close(fd)
        #endif
    }
}
