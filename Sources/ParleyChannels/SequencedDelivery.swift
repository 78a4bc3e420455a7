import Logging
import ParleyDispatch
import ParleyJSON
import SocketIO
import Synchronization

/// The bot messages of one conversation for one socket that asked for numbered messages (`session_request`
/// with `"parley": {…}`): every message once, in the order of its number, with no gap — across a reconnect
/// (the replay from `resume_from`), other nodes and Redis outages.
///
/// Numbered messages reach the socket as broadcasts of ``SocketIOChannel/sequencedEvent`` `[seq, response]` to
/// the conversation's numbered room (from this node or, through the adapter, another); the socket intercepts
/// them (``SocketIOSocket/interceptBroadcasts(_:)``) and hands them here. A message whose number is the next one
/// is sent at once; an older one is dropped (the client has it); a newer one means messages are missing: it is
/// held, and the missing ones are read from the store (``TurnHandler/submitReplay(of:after:completion:)``, which
/// any node can answer), then the held ones follow. A replay and a live message racing each other therefore
/// cannot duplicate or reorder anything. What the store no longer replays (the replay limit or age) is skipped,
/// and the client sees the gap in the numbers.
///
/// Thread-safety: every method may be called from any thread; messages are queued on the socket under one lock,
/// which keeps their order.
final class SequencedDelivery: Sendable {
    private struct State {
        /// The number of the last message the client has (nil: none yet; the first one to arrive sets it).
        var mark: Int64?
        /// ``begin(stream:chunksHeld:)`` ran; before it, intercepted broadcasts wait in `early`.
        var started = false
        var early: [SocketIOPacket] = []
        /// The streamed reply being shown: the number of its final message and the next chunk's index.
        var streaming: (seq: Int64, next: Int)?
        /// A store read is under way: newer messages wait in `held`.
        var catchingUp = false
        /// Store reads in a row that did not close the gap.
        var rounds = 0
        var held: [Int64: JSONValue] = [:]
    }

    /// Most messages held while catching up; past it the oldest are sent as they are.
    static let maxHeld = 1_000
    /// Store reads that may fail to close a gap before the held messages are sent with the gap.
    static let maxRounds = 3

    private let state: Mutex<State>
    let socket: SocketIOSocket
    let conversationID: String
    let event: String
    let turns: any TurnHandler
    let logger: Logger

    /// - Parameter resumeFrom: the number of the last message the client has; nil: it has none it cares about
    ///   (only new messages are sent).
    init(socket: SocketIOSocket, conversationID: String, event: String, turns: any TurnHandler, resumeFrom: Int64?, logger: Logger) {
        self.state = Mutex(State(mark: resumeFrom))
        self.socket = socket
        self.conversationID = conversationID
        self.event = event
        self.turns = turns
        self.logger = logger
    }

    /// Starts delivery after `session_confirm`: when the conversation's next message is being streamed on this
    /// node right now (`stream`: its number and chunks so far), the client gets the chunks it lacks (it holds
    /// `chunksHeld` of them) and then the rest live; otherwise every stored message after the client's mark is
    /// replayed first. Broadcasts that arrived before this call follow, in order.
    func begin(stream: (seq: Int64, chunks: [String])?, chunksHeld: Int) {
        let start = state.withLock { s -> Bool in
            s.started = true
            var replay = s.mark != nil
            if let stream, let mark = s.mark, stream.seq == mark + 1 {
                // Nothing stored is missing: message mark+1 is the one being streamed.
                replay = false
                emitStream(["seq": .int(stream.seq)], event: "stream_start")
                for (i, text) in stream.chunks.enumerated() where i >= chunksHeld {
                    emitStream(["text": .string(text), "parley": ["seq": .int(stream.seq), "chunk": .int(Int64(i))]], event: "stream_chunk", wrapped: true)
                }
                s.streaming = (stream.seq, stream.chunks.count)
            }
            if replay { s.catchingUp = true }
            let early = s.early
            s.early = []
            for packet in early { process(packet, &s) }
            return replay
        }
        if start { catchUp() }
    }

    /// A broadcast to the socket: numbered messages and stream steps go through the sequence; anything else
    /// passes as it is.
    func intercept(_ packet: SocketIOPacket) {
        let start = state.withLock { s -> Bool in
            guard s.started else {
                s.early.append(packet)
                return false
            }
            return process(packet, &s)
        }
        if start { catchUp() }
    }

    /// Handles one intercepted packet; true when a store read must start.
    private func process(_ packet: SocketIOPacket, _ s: inout State) -> Bool {
        // A packet from another node comes decoded as one JSON array, a local one as an array of values.
        let items: [SocketIOValue]
        switch packet.data {
        case .array(let values)?: items = values
        case .json(.array(let values))?: items = values.map { .json($0) }
        default:
            socket.deliver(SocketIOPacketEncoder.encode(packet))
            return false
        }
        guard let name = items.first?.jsonValue?.stringValue else {
            socket.deliver(SocketIOPacketEncoder.encode(packet))
            return false
        }
        if name == SocketIOChannel.sequencedEvent, items.count == 3, let seq = items[1].jsonValue?.int64Value, let response = items[2].jsonValue {
            return receive(seq, response, &s)
        }
        if name == SocketIOChannel.streamEvent, items.count == 5, let kind = items[1].jsonValue?.stringValue, let seq = items[2].jsonValue?.int64Value,
            let index = items[3].jsonValue?.int64Value
        {
            streamStep(kind, seq: seq, index: Int(index), text: items[4].jsonValue?.stringValue ?? "", &s)
            return false
        }
        socket.deliver(SocketIOPacketEncoder.encode(packet))
        return false
    }

    /// A step of a streamed reply: shown when it belongs to the client's next message and nothing is being
    /// caught up (then the final message, which follows, carries the whole text anyway); each chunk once.
    private func streamStep(_ kind: String, seq: Int64, index: Int, text: String, _ s: inout State) {
        guard !s.catchingUp, s.mark.map({ seq == $0 + 1 }) ?? true else { return }
        if s.streaming?.seq != seq {
            guard kind != "end" else { return }
            s.streaming = (seq, 0)
            emitStream(["seq": .int(seq)], event: "stream_start")
        }
        switch kind {
        case "chunk" where index >= s.streaming!.next:
            emitStream(["text": .string(text), "parley": ["seq": .int(seq), "chunk": .int(Int64(index))]], event: "stream_chunk", wrapped: true)
            s.streaming!.next = index + 1
        case "end":
            emitStream(["seq": .int(seq)], event: "stream_end")
            s.streaming = nil
        default:
            break
        }
    }

    /// `stream_start {"parley": {...}}`, `stream_chunk {"text", "parley"}` (`wrapped`: `payload` is the whole object).
    private func emitStream(_ payload: JSONObject, event: String, wrapped: Bool = false) {
        let object: JSONObject = wrapped ? payload : ["parley": .object(payload)]
        socket.emit(event, arguments: [.json(.object(object))])
    }

    /// A numbered message sent again for a repeated `message_id`.
    func receive(_ seq: Int64, _ response: JSONValue) {
        let start = state.withLock { s -> Bool in
            guard s.started else { return false }
            return receive(seq, response, &s)
        }
        if start { catchUp() }
    }

    /// A numbered message; true when a store read must start.
    private func receive(_ seq: Int64, _ response: JSONValue, _ s: inout State) -> Bool {
        guard let mark = s.mark else {
            send(seq, response)
            s.mark = seq
            return false
        }
        if seq <= mark || s.held[seq] != nil { return false }
        if s.catchingUp {
            hold(seq, response, in: &s)
            return false
        }
        if seq == mark + 1 {
            send(seq, response)
            s.mark = seq
            return false
        }
        // Messages between the mark and this one are missing: read them from the store first.
        hold(seq, response, in: &s)
        s.catchingUp = true
        return true
    }

    private func hold(_ seq: Int64, _ response: JSONValue, in s: inout State) {
        s.held[seq] = response
        if s.held.count > Self.maxHeld, let oldest = s.held.keys.min() {
            send(oldest, s.held.removeValue(forKey: oldest)!)
            s.mark = oldest
        }
    }

    private func catchUp() {
        let after = state.withLock { $0.mark ?? 0 }
        turns.submitReplay(of: conversationID, after: after) { [self] result in caughtUp(result) }
    }

    private func caughtUp(_ result: Result<TurnResult, any Error>) {
        let again = state.withLock { s -> Bool in
            var failed = false
            switch result {
            case .success(let stored):
                // The store is the reference: what it has after the mark goes out in order, gaps it has included.
                for (seq, response) in zip(stored.sequences, stored.responses) where seq > (s.mark ?? 0) {
                    send(seq, response)
                    s.mark = seq
                }
            case .failure(let error):
                failed = true
                logger.warning(
                    "socketio: could not read missed messages; sending what is held",
                    metadata: ["sid": "\(socket.id)", "session_id": "\(conversationID)", "error": "\(error)"])
            }
            flushHeld(&s)
            if s.held.isEmpty {
                s.catchingUp = false
                s.rounds = 0
                return false
            }
            s.rounds += 1
            guard failed || s.rounds >= Self.maxRounds else { return true }
            logger.warning(
                "socketio: messages missing from the store; the client gets a gap in the numbers",
                metadata: ["sid": "\(socket.id)", "session_id": "\(conversationID)", "after": "\(s.mark ?? 0)"])
            for seq in s.held.keys.sorted() {
                send(seq, s.held[seq]!)
                s.mark = seq
            }
            s.held = [:]
            s.catchingUp = false
            s.rounds = 0
            return false
        }
        if again { catchUp() }
    }

    private func flushHeld(_ s: inout State) {
        guard let mark = s.mark else { return }
        s.held = s.held.filter { $0.key > mark }
        var next = mark + 1
        while let response = s.held.removeValue(forKey: next) {
            send(next, response)
            s.mark = next
            next += 1
        }
    }

    /// Queues the `bot_uttered` messages of one response, each with `"parley": {"seq", "part", "parts"}`.
    private func send(_ seq: Int64, _ response: JSONValue) {
        let messages = OutputMapping.socketIOMessages(for: response)
        for (i, message) in messages.enumerated() {
            socket.emit(event, arguments: [.json(SocketIOChannel.numbered(message, seq: seq, part: i, parts: messages.count))])
        }
    }
}
