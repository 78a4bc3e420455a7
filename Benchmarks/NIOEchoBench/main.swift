// NIOEchoBench: a raw SwiftNIO WebSocket echo server, the transport limit in `make bench`.
//
//   NIOEchoBench [port=17902] [host=127.0.0.1] [threads=1]
//
// HTTP/1.1 upgrade (NIOHTTP1 + NIOWebSocketServerUpgrader) on any path, then every text or binary
// message is sent back unchanged; pings are answered, a close is answered and the channel closed.
// No Engine.IO, no Socket.IO, no JSON: what one event loop thread can do with WebSocket alone.
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Echoes WebSocket messages (reassembling fragmented ones) and handles control frames.
final class EchoHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private var fragments: ByteBuffer?
    private var fragmentOpcode: WebSocketOpcode = .text
    private var closing = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text, .binary:
            if frame.fin {
                echo(frame.opcode, frame.unmaskedData, context: context)
            } else {
                fragments = frame.unmaskedData
                fragmentOpcode = frame.opcode
            }
        case .continuation:
            guard var f = fragments else { return close(context, code: .protocolError) }
            var piece = frame.unmaskedData
            f.writeBuffer(&piece)
            if frame.fin {
                fragments = nil
                echo(fragmentOpcode, f, context: context)
            } else {
                fragments = f
            }
        case .ping:
            let pong = WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
        case .connectionClose:
            close(context, code: .normalClosure)
        case .pong:
            break
        default:
            close(context, code: .protocolError)
        }
    }

    private func echo(_ opcode: WebSocketOpcode, _ data: ByteBuffer, context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: opcode, data: data)), promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    private func close(_ context: ChannelHandlerContext, code: WebSocketErrorCode) {
        guard !closing else { return }
        closing = true
        var body = context.channel.allocator.buffer(capacity: 2)
        body.write(webSocketErrorCode: code)
        let frame = WebSocketFrame(fin: true, opcode: .connectionClose, data: body)
        context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
        context.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// Answers plain HTTP requests (no upgrade) with 426 and closes.
final class NotWebSocketHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .end = unwrapInboundIn(data) else { return }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Length", value: "0")
        headers.add(name: "Connection", value: "close")
        let head = HTTPResponseHead(version: .http1_1, status: .upgradeRequired, headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        context.close(promise: nil)
    }
}

/// Writes one line to stderr (unbuffered).
func printError(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}

let arguments = CommandLine.arguments
let port = arguments.count > 1 ? Int(arguments[1]) ?? -1 : 17902
let host = arguments.count > 2 ? arguments[2] : "127.0.0.1"
let threads = arguments.count > 3 ? Int(arguments[3]) ?? -1 : 1
guard (1...65535).contains(port), (1...256).contains(threads) else {
    printError("usage: NIOEchoBench [port 1-65535] [host] [threads 1-256] (got \(arguments.dropFirst().joined(separator: " ")))")
    exit(2)
}

let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
let upgrader = NIOWebSocketServerUpgrader(
    maxFrameSize: 1 << 24,
    automaticErrorHandling: true,
    shouldUpgrade: { channel, _ in channel.eventLoop.makeSucceededFuture(HTTPHeaders()) },
    upgradePipelineHandler: { channel, _ in
        channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(EchoHandler()) }
    })

let bootstrap = ServerBootstrap(group: group)
    .serverChannelOption(.backlog, value: 4096)
    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
    .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                withServerUpgrade: (
                    upgraders: [upgrader],
                    completionHandler: { context in
                        context.pipeline.removeHandler(name: "not-websocket", promise: nil)
                    }
                ))
            try channel.pipeline.syncOperations.addHandler(NotWebSocketHandler(), name: "not-websocket")
        }
    }

do {
    let channel = try await bootstrap.bind(host: host, port: port).get()
    printError("NIOEchoBench listening on \(host):\(port) with \(threads) event loop thread(s)")
    try await channel.closeFuture.get()
} catch {
    printError("NIOEchoBench: cannot listen on \(host):\(port): \(error)")
    exit(1)
}
