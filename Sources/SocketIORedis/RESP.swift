import CHiredis
import NIOCore

/// One reply from Redis.
public enum RedisReply: Sendable, Hashable {
    case status(String)
    case error(String)
    case integer(Int64)
    /// A bulk string (nil: Redis' null bulk).
    case bulk([UInt8]?)
    /// An array (nil: Redis' null array).
    case array([RedisReply]?)
}

/// Why the bytes from Redis are not RESP.
struct RESPError: Error, CustomStringConvertible {
    let description: String
}

/// Reads RESP replies with hiredis' reader (`redisReaderFeed` / `redisReaderGetReply`). The socket is SwiftNIO's;
/// hiredis only parses, so no thread and no hiredis event loop are involved.
final class RESPDecoder: ByteToMessageDecoder {
    typealias InboundOut = RedisReply

    private let reader: UnsafeMutablePointer<redisReader>

    init() {
        guard let reader = redisReaderCreate() else { fatalError("hiredis: redisReaderCreate failed (out of memory)") }
        self.reader = reader
    }

    deinit { redisReaderFree(reader) }

    func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let fed = buffer.withUnsafeReadableBytes { bytes in
            redisReaderFeed(reader, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), bytes.count)
        }
        buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
        guard fed == REDIS_OK else { throw RESPError(description: "Redis sent bytes hiredis cannot read") }
        // hiredis buffers what it was fed: take every complete reply now.
        while true {
            var raw: UnsafeMutableRawPointer?
            guard redisReaderGetReply(reader, &raw) == REDIS_OK else { throw RESPError(description: "malformed reply from Redis") }
            guard let raw else { return .needMoreData }
            let reply = Self.convert(raw.assumingMemoryBound(to: redisReply.self))
            freeReplyObject(raw)
            context.fireChannelRead(wrapInboundOut(reply))
        }
    }

    func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        _ = try decode(context: context, buffer: &buffer)
        return .needMoreData
    }

    private static func convert(_ r: UnsafeMutablePointer<redisReply>) -> RedisReply {
        let reply = r.pointee
        func bytes() -> [UInt8] {
            guard let str = reply.str, reply.len > 0 else { return [] }
            return Array(UnsafeRawBufferPointer(start: str, count: Int(reply.len)))
        }
        switch reply.type {
        case REDIS_REPLY_STATUS: return .status(String(decoding: bytes(), as: UTF8.self))
        case REDIS_REPLY_ERROR: return .error(String(decoding: bytes(), as: UTF8.self))
        case REDIS_REPLY_INTEGER: return .integer(reply.integer)
        case REDIS_REPLY_STRING: return .bulk(bytes())
        case REDIS_REPLY_ARRAY:
            guard let elements = reply.element else { return .array([]) }
            return .array((0..<Int(reply.elements)).compactMap { i in elements[i].map(convert) })
        default: return .bulk(nil)
        }
    }
}

/// A Redis command as RESP bytes, formatted by hiredis (`redisFormatCommandArgv`); arguments are binary-safe.
func redisCommand(_ arguments: [[UInt8]], allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
    let copies: [UnsafeMutablePointer<CChar>] = arguments.map { argument in
        let copy = UnsafeMutablePointer<CChar>.allocate(capacity: max(argument.count, 1))
        argument.withUnsafeBytes { bytes in
            if let base = bytes.baseAddress { UnsafeMutableRawPointer(copy).copyMemory(from: base, byteCount: bytes.count) }
        }
        return copy
    }
    defer { for copy in copies { copy.deallocate() } }
    var pointers: [UnsafePointer<CChar>?] = copies.map { UnsafePointer($0) }
    let lengths = arguments.map(\.count)
    var target: UnsafeMutablePointer<CChar>?
    let length = redisFormatCommandArgv(&target, Int32(arguments.count), &pointers, lengths)
    var buffer = allocator.buffer(capacity: max(Int(length), 0))
    if let target, length > 0 {
        buffer.writeBytes(UnsafeRawBufferPointer(start: target, count: Int(length)))
    }
    redisFreeCommand(target)
    return buffer
}

/// A command from text arguments.
func redisCommand(_ arguments: String...) -> ByteBuffer {
    redisCommand(arguments.map { Array($0.utf8) })
}
