public import NIOCore
import NIOPosix

/// Settings of a ``SocketIOServer``. Every field has a default.
public struct SocketIOConfiguration: Sendable {
    /// How long an Engine.IO session may stay open without connecting to any namespace before it is
    /// closed (the spec's "close on a missing CONNECT"). Default 45 s, as the JavaScript server.
    public var connectTimeout: Duration
    /// How long ``SocketIOSocket/emit(_:arguments:timeout:ack:)`` waits for the client's acknowledgement
    /// when no timeout is given. Default 30 s; `nil` waits until the socket disconnects.
    public var ackTimeout: Duration?
    /// The most acknowledgements one socket may wait for at once. An emit with ack beyond that fails at
    /// once with ``SocketIOAckError/tooManyPendingAcks`` (so a client that never answers cannot grow memory).
    /// Default 1024.
    public var maxPendingAcks: Int
    /// The most binary attachments one packet may announce; more is a protocol violation. Default 16.
    public var maxAttachments: Int
    /// The most bytes of binary attachments one packet may carry, all attachments together; more is a protocol
    /// violation that closes the session. Default 4 MiB.
    public var maxAttachmentBytes: Int
    /// The most bytes of binary attachments held by all sessions together while their packets are incomplete
    /// (announced attachments not all received yet). A session whose attachment would go over it is closed
    /// with a logged reason, before the process is at risk; the bytes of a closed session are released. Default
    /// 64 MiB.
    public var pendingAttachmentBudget: Int
    /// The JSON nesting limit of packet payloads; deeper is a protocol violation. Default 128.
    public var maxPayloadDepth: Int
    /// Whether a namespace created by a ``SocketIODynamicNamespace`` is dropped when its last socket leaves
    /// (the JavaScript server's `cleanupEmptyChildNamespaces`). Default false.
    public var removeEmptyDynamicNamespaces: Bool
    /// Creates the room adapter of each namespace. Default: ``SocketIOInMemoryAdapter``.
    public var adapter: SocketIOAdapterFactory
    /// When set, what is sent to a client right after a CONNECT reply (the connection handler's emits and
    /// anything else sent to that client meanwhile) is held this long and then sent in order, so the reply
    /// arrives in its own network read. Default nil (no delay): real clients parse several frames per read.
    /// The official Socket.IO test suite's raw client (`ws` >= 8.17, one `await` per frame) drops a frame
    /// that arrives in the same read as the previous one, so the conformance server sets a few milliseconds.
    public var connectReplyDelay: Duration?
    /// Connection state recovery (socket.io ≥ 4.6): off by default. Needs an adapter of this process only (the
    /// in-memory one): the events kept for a dropped client are the ones this process broadcast.
    public var connectionStateRecovery: SocketIOConnectionStateRecovery?

    /// Creates a configuration; every parameter has a default (see the properties).
    public init(
        connectTimeout: Duration = .seconds(45),
        ackTimeout: Duration? = .seconds(30),
        maxPendingAcks: Int = 1024,
        maxAttachments: Int = 16,
        maxAttachmentBytes: Int = 4 << 20,
        pendingAttachmentBudget: Int = 64 << 20,
        maxPayloadDepth: Int = 128,
        removeEmptyDynamicNamespaces: Bool = false,
        adapter: SocketIOAdapterFactory = .inMemory,
        connectReplyDelay: Duration? = nil,
        connectionStateRecovery: SocketIOConnectionStateRecovery? = nil
    ) {
        self.connectTimeout = connectTimeout
        self.ackTimeout = ackTimeout
        self.maxPendingAcks = maxPendingAcks
        self.maxAttachments = maxAttachments
        self.maxAttachmentBytes = maxAttachmentBytes
        self.pendingAttachmentBudget = pendingAttachmentBudget
        self.maxPayloadDepth = maxPayloadDepth
        self.removeEmptyDynamicNamespaces = removeEmptyDynamicNamespaces
        self.adapter = adapter
        self.connectReplyDelay = connectReplyDelay
        self.connectionStateRecovery = connectionStateRecovery
    }
}

/// Builds the adapter of a namespace when the namespace is created.
public struct SocketIOAdapterFactory: Sendable {
    let make: @Sendable (_ namespace: String) -> any SocketIOAdapter

    /// A factory from a closure that receives the name of the namespace the adapter serves.
    public init(_ make: @escaping @Sendable (_ namespace: String) -> any SocketIOAdapter) {
        self.make = make
    }

    /// One ``SocketIOInMemoryAdapter`` per namespace: rooms of this process only.
    public static var inMemory: SocketIOAdapterFactory {
        SocketIOAdapterFactory { _ in SocketIOInMemoryAdapter() }
    }
}

// MARK: - Timers

/// A cancellable timer returned by a ``SocketIOScheduler``.
public struct SocketIOTimer: Sendable {
    private let cancelBody: @Sendable () -> Void

    /// Wraps the closure that cancels the timer.
    public init(cancel: @escaping @Sendable () -> Void) { self.cancelBody = cancel }

    /// Cancels the timer; its work will not run if it has not started. Safe to call more than once.
    public func cancel() { cancelBody() }
}

/// Runs the server's timeouts (connect timeout, ack timeouts). Injected so tests can fire timeouts
/// without sleeping.
public protocol SocketIOScheduler: Sendable {
    /// Runs `work` once after `delay` unless the returned timer is cancelled first. `work` must not block.
    func schedule(after delay: Duration, _ work: @escaping @Sendable () -> Void) -> SocketIOTimer
}

/// The default scheduler: timers on a SwiftNIO event loop (no thread or task per timer).
public struct EventLoopScheduler: SocketIOScheduler {
    /// The loops that run the timers.
    public let group: any EventLoopGroup

    /// Creates a scheduler on `group` (default: NIO's shared singleton group).
    public init(group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.group = group
    }

    public func schedule(after delay: Duration, _ work: @escaping @Sendable () -> Void) -> SocketIOTimer {
        let (seconds, attoseconds) = delay.components
        let nanos = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        let total = nanos.overflow ? Int64.max : nanos.partialValue.addingReportingOverflow(attoseconds / 1_000_000_000).partialValue
        let scheduled = group.any().scheduleTask(in: .nanoseconds(max(0, total))) { work() }
        return SocketIOTimer { scheduled.cancel() }
    }
}
