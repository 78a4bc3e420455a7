import CZlib
import NIOCore

/// Why a compressed message could not be accepted.
enum DeflateError: Error, Equatable, CustomStringConvertible {
    /// The decompressed message would exceed the limit (the decompressor stopped at limit + 1 bytes).
    case tooLarge(limit: Int)
    /// The compressed data is not valid raw deflate (zlib's message attached).
    case invalidData(String)
    /// zlib could not be set up (out of memory, bad parameters).
    case zlib(String)

    var description: String {
        switch self {
        case .tooLarge(let limit): "payload too large (decompressed message over \(limit) bytes)"
        case .invalidData(let message): "invalid compressed data (\(message))"
        case .zlib(let message): "zlib failure (\(message))"
        }
    }
}

/// The trailer a sync flush ends with; RFC 7692 §7.2.1 removes it from, and §7.2.2 appends it to, each message.
private let syncFlushTail: [UInt8] = [0x00, 0x00, 0xFF, 0xFF]

private func zlibMessage(_ stream: UnsafeMutablePointer<z_stream>, _ code: Int32) -> String {
    if let message = stream.pointee.msg { return String(cString: message) }
    return "code \(code)"
}

/// Raw-deflate compressor for one connection's outbound messages (RFC 7692 §7.2.1). Not thread-safe: owned by
/// one channel handler and used on its event loop. The zlib stream is allocated on first use.
final class RawDeflater {
    private let windowBits: Int32
    private let level: Int32
    private let resetAfterMessage: Bool
    private var stream: UnsafeMutablePointer<z_stream>?

    /// - Parameters:
    ///   - windowBits: 9...15.
    ///   - level: 1...9.
    ///   - resetAfterMessage: no context takeover (each message compressed on its own).
    init(windowBits: Int, level: Int32, resetAfterMessage: Bool) {
        self.windowBits = Int32(windowBits)
        self.level = level
        self.resetAfterMessage = resetAfterMessage
    }

    deinit {
        if let stream {
            deflateEnd(stream)
            stream.deallocate()
        }
    }

    private func ready() throws(DeflateError) -> UnsafeMutablePointer<z_stream> {
        if let stream { return stream }
        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        let code = czlib_deflate_init_raw(stream, level, windowBits, 8)
        guard code == Z_OK else {
            stream.deallocate()
            throw .zlib("deflateInit2 returned \(code)")
        }
        self.stream = stream
        return stream
    }

    /// Forgets the compression history: the next message references nothing sent before. Always safe for the
    /// peer (its decompressor only ever sees back-references into data it has).
    func reset() {
        if let stream { deflateReset(stream) }
    }

    /// Compresses one whole message into a new buffer (with `headerRoom` free bytes in front of it for the
    /// frame header), without the trailing `00 00 ff ff`.
    func compress(_ input: ByteBuffer, allocator: ByteBufferAllocator, headerRoom: Int) throws(DeflateError) -> ByteBuffer {
        let stream = try ready()
        var output = allocator.buffer(capacity: headerRoom + input.readableBytes / 2 + 64)
        output.moveWriterIndex(forwardBy: headerRoom)
        output.moveReaderIndex(forwardBy: headerRoom)
        let result: Int32 = input.withUnsafeReadableBytes { inputBytes in
            stream.pointee.next_in = inputBytes.baseAddress.map { UnsafeMutablePointer(mutating: $0.assumingMemoryBound(to: Bytef.self)) }
            stream.pointee.avail_in = uInt(inputBytes.count)
            defer {
                stream.pointee.next_in = nil
                stream.pointee.avail_in = 0
            }
            while true {
                output.reserveCapacity(minimumWritableBytes: 4096)
                var exhausted = false
                let code: Int32 = output.withUnsafeMutableWritableBytes { outputBytes in
                    stream.pointee.next_out = outputBytes.baseAddress?.assumingMemoryBound(to: Bytef.self)
                    stream.pointee.avail_out = uInt(outputBytes.count)
                    let code = deflate(stream, Z_SYNC_FLUSH)
                    exhausted = stream.pointee.avail_out == 0
                    return code
                }
                let written = output.writableBytes - Int(stream.pointee.avail_out)
                stream.pointee.next_out = nil
                stream.pointee.avail_out = 0
                output.moveWriterIndex(forwardBy: written)
                if code == Z_BUF_ERROR { return Z_OK }  // nothing left to do
                guard code == Z_OK else { return code }
                if !exhausted && stream.pointee.avail_in == 0 { return Z_OK }
            }
        }
        guard result == Z_OK else {
            deflateReset(stream)
            throw .zlib("deflate returned \(result)")
        }
        // Z_SYNC_FLUSH always ends with an empty stored block: 00 00 ff ff.
        if output.readableBytes >= 4, output.readableBytesView.suffix(4).elementsEqual(syncFlushTail) {
            output.moveWriterIndex(to: output.writerIndex - 4)
        }
        if resetAfterMessage { deflateReset(stream) }
        return output
    }
}

/// Raw-deflate decompressor for one connection's inbound messages (RFC 7692 §7.2.2), bounded: it never
/// produces more than `limit + 1` bytes of a message, so a small "zip bomb" cannot make it allocate more.
/// Not thread-safe (owned by one channel handler).
final class RawInflater {
    private let windowBits: Int32
    private let resetAfterMessage: Bool
    private var stream: UnsafeMutablePointer<z_stream>?
    /// The peer ended the deflate stream (a block with BFINAL) inside the current message.
    private var streamEnded = false

    /// - Parameters:
    ///   - windowBits: 9...15, at least the peer's window.
    ///   - resetAfterMessage: the peer does not use context takeover.
    init(windowBits: Int, resetAfterMessage: Bool) {
        self.windowBits = Int32(windowBits)
        self.resetAfterMessage = resetAfterMessage
    }

    deinit {
        if let stream {
            inflateEnd(stream)
            stream.deallocate()
        }
    }

    private func ready() throws(DeflateError) -> UnsafeMutablePointer<z_stream> {
        if let stream { return stream }
        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        let code = czlib_inflate_init_raw(stream, windowBits)
        guard code == Z_OK else {
            stream.deallocate()
            throw .zlib("inflateInit2 returned \(code)")
        }
        self.stream = stream
        return stream
    }

    /// Decompresses one fragment of a message, appending to `output` (which holds only this message's bytes).
    /// With `final`, the `00 00 ff ff` tail is appended first and the message ends (the history is dropped
    /// when the peer does not use context takeover).
    /// - Throws: ``DeflateError/tooLarge(limit:)`` as soon as the message exceeds `limit` bytes (the stream is
    ///   then unusable: the connection must close), ``DeflateError/invalidData(_:)`` on corrupt input.
    func decompress(_ fragment: ByteBuffer, final: Bool, limit: Int, into output: inout ByteBuffer) throws(DeflateError) {
        let stream = try ready()
        try feed(fragment.readableBytesView, stream: stream, limit: limit, into: &output)
        if final {
            try feed(syncFlushTail, stream: stream, limit: limit, into: &output)
            if resetAfterMessage || streamEnded {
                inflateReset(stream)
                streamEnded = false
            }
        }
    }

    private func feed<Bytes: Collection>(_ bytes: Bytes, stream: UnsafeMutablePointer<z_stream>, limit: Int, into output: inout ByteBuffer) throws(DeflateError)
    where Bytes.Element == UInt8 {
        guard !streamEnded, !bytes.isEmpty else { return }
        let result: DeflateError? =
            bytes.withContiguousStorageIfAvailable { inputBytes -> DeflateError? in
                stream.pointee.next_in = inputBytes.baseAddress.map { UnsafeMutablePointer(mutating: $0) }
                stream.pointee.avail_in = uInt(inputBytes.count)
                defer {
                    stream.pointee.next_in = nil
                    stream.pointee.avail_in = 0
                }
                while true {
                    let room = min(16384, limit + 1 - output.readableBytes)
                    guard room > 0 else { return .tooLarge(limit: limit) }
                    output.reserveCapacity(minimumWritableBytes: room)
                    let code: Int32 = output.withUnsafeMutableWritableBytes { outputBytes in
                        stream.pointee.next_out = outputBytes.baseAddress?.assumingMemoryBound(to: Bytef.self)
                        stream.pointee.avail_out = uInt(room)
                        return inflate(stream, Z_SYNC_FLUSH)
                    }
                    let written = room - Int(stream.pointee.avail_out)
                    let outputFull = stream.pointee.avail_out == 0
                    stream.pointee.next_out = nil
                    stream.pointee.avail_out = 0
                    output.moveWriterIndex(forwardBy: written)
                    if output.readableBytes > limit { return .tooLarge(limit: limit) }
                    switch code {
                    case Z_STREAM_END:
                        streamEnded = true
                        return nil
                    case Z_BUF_ERROR:
                        return nil  // no progress possible: all input consumed
                    case Z_OK:
                        if !outputFull && stream.pointee.avail_in == 0 { return nil }
                    default:
                        let message = zlibMessage(stream, code)
                        inflateReset(stream)
                        return .invalidData(message)
                    }
                }
            } ?? .zlib("non-contiguous input")
        if let result { throw result }
    }
}
