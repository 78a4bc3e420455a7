public import Logging
public import ParleyCore
public import ParleyJSON
public import ServiceLifecycle
import Synchronization

/// The dialogue dispatcher: runs turns for channels, one at a time per conversation, many conversations at once.
///
/// Each conversation has a bounded mailbox (a queue behind a `Mutex`) and at most one drain task that runs its
/// items in arrival order; different conversations drain concurrently in child tasks of ``run()``. The locks
/// only guard O(1) queue bookkeeping; no lock is held while a turn runs. A turn: start a session when needed,
/// record the user message, route to an agent, run requested actions, apply the channel's formatter chain,
/// record the bot messages, append every event to the store (durably), then complete the caller. A turn that
/// throws or misses ``DispatcherConfiguration/turnDeadline`` yields the fallback response instead; a missed
/// deadline hands the conversation to a fresh drain task so later messages are not held up by a hung agent.
///
/// ``run()`` must be running (add the dispatcher to a `ServiceGroup`, or run it in a task group) for turns to
/// proceed; without it requests fail with ``DispatchError/Code/notRunning``.
public final class Dispatcher: TurnHandler, Service {
    /// Receives the outcome of a submitted turn or emit; called exactly once, on any thread.
    public typealias Completion = @Sendable (Result<TurnResult, any Error>) -> Void

    /// The agents, routes and formatters; replaced whole by ``replacePlugins(_:)`` (a reload). A turn reads them
    /// once when it starts, so it finishes on the instances it started with.
    private let pluginSet: Mutex<DispatcherPlugins>
    /// The conversation store.
    public let store: any ConversationStore
    let actionRunner: (any ActionRunner)?
    /// The settings.
    public let configuration: DispatcherConfiguration
    /// The dispatcher's logger.
    public let logger: Logger
    let executor: (any TaskExecutor)?
    /// Where emits are delivered once recorded: the channels registered there by name.
    public let outputs: ProactiveOutputs

    let conversations = Mutex<[String: Conversation]>([:])
    let scheduler = Mutex(SchedulerState())
    let watchdog = Mutex(WatchdogState())

    /// Creates a dispatcher.
    /// - Parameters:
    ///   - agent: the default agent.
    ///   - routes: rules sending some messages to other agents, tried in order.
    ///   - formatters: the formatter chain for every channel without its own chain, applied in order.
    ///   - channelFormatters: formatter chains per input channel name, replacing `formatters` for that channel.
    ///   - store: where events are recorded; defaults to memory.
    ///   - actionRunner: runs actions agents request with `{"event":"action","name":N}`.
    ///   - outputs: where ``emit(_:to:channel:createConversation:)`` delivers; channels that can push register there by name.
    ///   - configuration: limits, deadline, fallback, sessions.
    ///   - executor: where turns run (pass the plugins' ``WorkerPool`` so a turn calls its plugin on the thread it
    ///     is already on); nil = the global concurrent executor.
    ///   - logger: where refusals, agent failures and store errors are logged.
    public init(
        agent: any Agent,
        routes: [AgentRoute] = [],
        formatters: [any MessageFormatter] = [],
        channelFormatters: [String: [any MessageFormatter]] = [:],
        store: any ConversationStore = InMemoryConversationStore(),
        actionRunner: (any ActionRunner)? = nil,
        outputs: ProactiveOutputs = ProactiveOutputs(),
        configuration: DispatcherConfiguration = .init(),
        executor: (any TaskExecutor)? = nil,
        logger: Logger = Logger(label: "parley.dispatch")
    ) {
        self.executor = executor
        self.pluginSet = Mutex(DispatcherPlugins(agent: agent, routes: routes, formatters: formatters, channelFormatters: channelFormatters))
        self.store = store
        self.actionRunner = actionRunner
        self.configuration = configuration
        self.logger = logger
        self.outputs = outputs
    }

    // MARK: - TurnHandler

    /// Runs one turn and returns its result once its events are stored (see ``TurnHandler/handle(_:)``).
    /// - Throws: ``InputError`` (oversized text, metadata too deep or too large, bad conversation id) or
    ///   ``DispatchError`` (`.mailboxFull`,
    ///   `.shuttingDown`, `.notRunning`, `.storeFailed`). Agent failures give the fallback, not an error.
    public func handle(_ message: UserMessage) async throws -> TurnResult {
        try await withCheckedThrowingContinuation { continuation in
            submit(message) { continuation.resume(with: $0) }
        }
    }

    /// Queues one turn behind the conversation's earlier messages and returns at once; `completion` gets the
    /// result or the refusal (see ``handle(_:)``). Calls from one caller are processed in call order.
    public func submit(_ message: UserMessage, completion: @escaping Completion) {
        do {
            try InputValidation.checkSenderID(message.senderID)
            try InputValidation.checkSize(of: message.text, maxBytes: configuration.maxMessageBytes)
            try InputValidation.checkMetadata(message.metadata, maxDepth: configuration.maxMetadataDepth, maxBytes: configuration.maxMetadataBytes)
        } catch {
            completion(.failure(error))
            return
        }
        enqueue(.turn(message, completion), senderID: message.senderID)
    }

    // MARK: - Proactive output

    /// Sends responses to a conversation outside a turn (a plugin `emit`, a reminder, `POST
    /// /conversations/{id}/messages`): in order with the conversation's turns, through the formatter chain of
    /// `channel` (default: the conversation's latest input channel), recorded as bot events, then delivered through
    /// ``outputs``.
    /// - Parameter createConversation: start the conversation (a new session: `action_session_start`,
    ///   `session_started`, `action_listen`) when the store has none; otherwise such an emit is refused.
    /// - Returns: the formatted responses and the recorded events (session start events first when created).
    /// - Throws: ``DispatchError`` with `.unknownConversation` when the store has no such conversation and
    ///   `createConversation` is false, `.mailboxFull`, `.storeFailed`.
    @discardableResult
    public func emit(_ responses: [JSONValue], to senderID: String, channel: String? = nil, createConversation: Bool = false) async throws -> TurnResult {
        try await withCheckedThrowingContinuation { continuation in
            submitEmit(responses, to: senderID, channel: channel, createConversation: createConversation) { continuation.resume(with: $0) }
        }
    }

    /// ``emit(_:to:channel:createConversation:)`` without waiting (for callbacks from plugin threads);
    /// `completion` is called once.
    public func submitEmit(_ responses: [JSONValue], to senderID: String, channel: String?, createConversation: Bool = false, completion: @escaping Completion)
    {
        enqueue(.emit(responses, channel: channel, create: createConversation, completion), senderID: senderID)
    }

    // MARK: - Replay

    /// Reads the bot messages of a conversation numbered after `sequence` from the store (so any node can answer,
    /// also after the node that sent them died), in order with the conversation's turns on this node:
    /// `completion` gets them as a ``TurnResult`` whose ``TurnResult/responses`` are the Rasa response dicts and
    /// ``TurnResult/sequences`` their numbers. At most ``DispatcherConfiguration/replayLimit`` messages (the
    /// latest ones; a client sees the gap in the numbers) and none older than
    /// ``DispatcherConfiguration/replayMaxAge``. An unknown conversation has none.
    public func submitReplay(of senderID: String, after sequence: Int64, completion: @escaping Completion) {
        enqueue(.replay(after: sequence, completion), senderID: senderID)
    }

    /// ``submitReplay(of:after:completion:)``, waiting for the messages.
    public func replay(of senderID: String, after sequence: Int64) async throws -> TurnResult {
        try await withCheckedThrowingContinuation { continuation in
            submitReplay(of: senderID, after: sequence) { continuation.resume(with: $0) }
        }
    }

    private func readReplay(of senderID: String, after sequence: Int64) async -> Result<TurnResult, any Error> {
        let events: [JSONValue]
        do {
            events = try await store.events(of: senderID, types: [TrackerEvent.Kind.bot]) ?? []
        } catch {
            logger.error("store read for a replay failed", metadata: ["parley.sender_id": "\(senderID)", "error": "\(error)"])
            return .failure(DispatchError(.storeFailed, senderID: senderID, "could not read conversation \(senderID) from the store: \(error)"))
        }
        let oldest = configuration.replayMaxAge.map { configuration.clock() - $0 }
        var result = TurnResult()
        for event in events {
            guard let seq = TrackerEvent.sequence(of: event), seq > sequence else { continue }
            if let oldest, let time = event["timestamp"]?.doubleValue, time < oldest { continue }
            guard let response = TrackerEvent.response(fromBotEvent: event) else { continue }
            result.responses.append(response)
            result.sequences.append(seq)
        }
        if result.responses.count > configuration.replayLimit {
            result.responses.removeFirst(result.responses.count - configuration.replayLimit)
            result.sequences.removeFirst(result.sequences.count - configuration.replayLimit)
        }
        DispatchMetrics.replayed(result.responses.count)
        return .success(result)
    }

    // MARK: - Mailboxes

    private func enqueue(_ item: WorkItem, senderID: String) {
        let refusal: DispatchError? = scheduler.withLock { s in
            if s.finished {
                return DispatchError(
                    .notRunning, senderID: senderID, "dispatcher has stopped (its run() returned); message for conversation \(senderID) refused")
            }
            if s.stopping {
                return DispatchError(.shuttingDown, senderID: senderID, "dispatcher is shutting down; message for conversation \(senderID) refused")
            }
            return nil
        }
        if let refusal {
            item.complete(.failure(refusal))
            return
        }
        while true {
            var overCapacity = false
            let conversation = conversations.withLock { map in
                if let c = map[senderID] { return c }
                let c = Conversation(id: senderID)
                map[senderID] = c
                overCapacity = map.count > configuration.maxResidentConversations
                return c
            }
            // Many new conversations (a flood of fresh session ids) must not grow memory until the idle eviction:
            // past the cap, the least recently active idle ones leave memory now (they reload from the store).
            if overCapacity { evictLeastRecentlyActive(keeping: configuration.maxResidentConversations * 9 / 10) }
            let outcome: EnqueueOutcome = conversation.state.withLock { s in
                if s.evicted { return .retry }
                if s.queue.count >= configuration.mailboxCapacity { return .full }
                s.queue.append(item)
                s.lastActive = configuration.clock()
                if s.running { return .queued }
                s.running = true
                return .activate
            }
            switch outcome {
            case .retry: continue
            case .full:
                // The channel tells the client and logs at most once per client per interval; a line per refused
                // message here would let a flood fill the disk.
                logger.debug("mailbox full", metadata: ["parley.sender_id": "\(senderID)"])
                DispatchMetrics.mailboxRejected()
                item.complete(
                    .failure(
                        DispatchError(
                            .mailboxFull, senderID: senderID,
                            "conversation \(senderID) has \(configuration.mailboxCapacity) messages waiting (dispatch.mailboxCapacity); wait for replies before sending more"
                        )))
            case .queued: break
            case .activate: schedule(conversation)
            }
            return
        }
    }

    /// Hands a conversation whose mailbox has work to the run loop, which starts its drain task.
    private func schedule(_ conversation: Conversation) {
        let waiter = scheduler.withLock { s in
            s.ready.append(conversation)
            return s.waiter.take()
        }
        waiter?.resume()
    }

    // MARK: - Run loop

    /// Runs the dispatcher until graceful shutdown or cancellation: starts drain tasks for conversations with
    /// work, checks turn deadlines and evicts idle conversations. On graceful shutdown it refuses new messages,
    /// finishes the queued ones, then returns. On cancellation queued messages fail with `.shuttingDown`.
    public func run() async throws {
        await withGracefulShutdownHandler {
            await withTaskCancellationHandler {
                // Drain tasks (children of this group) inherit the executor preference.
                await withTaskExecutorPreference(executor) {
                    await withDiscardingTaskGroup { group in
                        group.addTask { await self.watchdogLoop() }
                        group.addTask { await self.evictionLoop() }
                        while let batch = await self.nextReady() {
                            for conversation in batch {
                                group.addTask { await self.drain(conversation) }
                            }
                        }
                        group.cancelAll()
                    }
                }
            } onCancel: {
                self.shutdown(cancel: true)
            }
        } onGracefulShutdown: {
            self.shutdown(cancel: false)
        }
        scheduler.withLock {
            $0.finished = true
            $0.stopping = true
        }
    }

    /// Stops accepting messages; ``run()`` returns once the queued ones are done. Safe to call more than once.
    public func shutdown() { shutdown(cancel: false) }

    private func shutdown(cancel: Bool) {
        let waiter = scheduler.withLock { s in
            s.stopping = true
            if cancel { s.cancelled = true }
            return s.waiter.take()
        }
        waiter?.resume()
        if cancel {
            // Fail everything still queued: nothing will drain it.
            let all = conversations.withLock { Array($0.values) }
            for c in all {
                let items = c.state.withLock { s in
                    defer { s.queue.removeAll() }
                    return s.queue
                }
                for item in items {
                    item.complete(.failure(DispatchError(.shuttingDown, senderID: c.id, "dispatcher stopped before conversation \(c.id) was processed")))
                }
            }
        }
    }

    /// The next conversations to drain, or nil when the run loop should end.
    private func nextReady() async -> [Conversation]? {
        while true {
            enum Step { case batch([Conversation]), stop, wait }
            let step: Step = scheduler.withLock { s in
                if s.cancelled { return .stop }
                if !s.ready.isEmpty {
                    let batch = s.ready
                    s.ready.removeAll(keepingCapacity: true)
                    s.activeDrains += batch.count
                    return .batch(batch)
                }
                if s.stopping && s.activeDrains == 0 { return .stop }
                return .wait
            }
            switch step {
            case .batch(let b): return b
            case .stop: return nil
            case .wait:
                await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                    let resumeNow = scheduler.withLock { s in
                        if !s.ready.isEmpty || s.cancelled || (s.stopping && s.activeDrains == 0) { return true }
                        s.waiter = c
                        return false
                    }
                    if resumeNow { c.resume() }
                }
            }
        }
    }

    private func drainFinished() {
        let waiter = scheduler.withLock { s in
            s.activeDrains -= 1
            return s.stopping ? s.waiter.take() : nil
        }
        waiter?.resume()
    }

    // MARK: - Draining one conversation

    private func drain(_ conversation: Conversation) async {
        var abandoned = false
        // An abandoned drain (its turn was taken over at the deadline) was already uncounted by the watchdog.
        defer { if !abandoned { drainFinished() } }
        // A previous turn's events may still be committing (detached append): its outcome decides the tracker.
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let resumeNow = conversation.state.withLock { s in
                if s.appendsInFlight == 0 { return true }
                s.appendWaiter = c
                return false
            }
            if resumeNow { c.resume() }
        }
        var tracker: Tracker? = conversation.state.withLock { s in
            if s.invalidated {
                s.invalidated = false
                s.tracker = nil
            }
            return s.tracker.take()
        }
        while true {
            let now = configuration.clock()
            let next: (WorkItem, UInt64)? = conversation.state.withLock { s in
                guard !s.queue.isEmpty else {
                    s.running = false
                    // A detached append that already failed invalidated the tracker it extended.
                    s.tracker = s.invalidated ? nil : tracker
                    s.invalidated = false
                    s.lastActive = now
                    return nil
                }
                let item = s.queue.removeFirst()
                if item.needsDeadline { s.inFlight = item }
                // A new generation per item: the watchdog and the commit check compare it, so a deadline entry
                // can only ever take over the item it was registered for.
                s.generation &+= 1
                return (item, s.generation)
            }
            guard let (item, generation) = next else { return }
            if item.needsDeadline { registerDeadline(conversation, generation: generation, after: deadline(of: item), typingChannel: item.typingChannel) }
            let outcome = await process(item, in: conversation, generation: generation, tracker: &tracker)
            if case .abandoned = outcome {
                abandoned = true
                return
            }
        }
    }

    enum Outcome { case done, abandoned }

    /// How often one item is run again after ``ConversationChangedError`` before it fails as `storeFailed`.
    /// Each retry first waits a random 0…5×attempt ms, so two nodes that keep writing one conversation (two tabs
    /// typing at once) stop colliding instead of retrying in lockstep.
    static let maxConflictRetries = 20

    private func process(
        _ item: WorkItem, in conversation: Conversation, generation: UInt64, tracker: inout Tracker?, attempt: Int = 0
    ) async -> Outcome {
        if case .replay(let sequence, let completion) = item {
            _ = claim(conversation, generation: generation)
            completion(await readReplay(of: conversation.id, after: sequence))
            return .done
        }
        // Load the conversation on first use (after start, eviction, a deadline takeover or a store failure).
        if tracker == nil {
            do {
                tracker = try await loadTracker(conversation.id)
            } catch {
                logger.error("store load failed", metadata: ["parley.sender_id": "\(conversation.id)", "error": "\(error)"])
                guard claim(conversation, generation: generation) else { return .abandoned }
                item.complete(
                    .failure(DispatchError(.storeFailed, senderID: conversation.id, "could not load conversation \(conversation.id) from the store: \(error)")))
                return .done
            }
        }
        guard var current = tracker.take() else { return .done }
        let storedBefore = current.storedSequence
        var result: Result<ComputedTurn?, any Error>
        switch item {
        case .turn(let message, _):
            let stream = streamSink(conversation, generation: generation, channel: message.inputChannel, seq: current.lastMessageSequence + 1)
            result = .success(await runTurn(message, tracker: &current, fallbackOnly: false, stream: stream))
        case .replay:
            return .done
        case .expired(let inner):
            guard case .turn(let message, _) = inner else {
                result = .failure(
                    DispatchError(
                        .deadlineExceeded, senderID: conversation.id,
                        "emit to \(conversation.id) missed the turn deadline (dispatch.turnDeadline); nothing was recorded"))
                break
            }
            result = .success(await runTurn(message, tracker: &current, fallbackOnly: true))
        case .emit(let responses, let channel, let create, _):
            if current.isEmpty && !create {
                result = .failure(
                    DispatchError(
                        .unknownConversation, senderID: conversation.id, "no conversation \(conversation.id): emit needs a conversation that has had a message")
                )
            } else {
                result = .success(await runEmit(responses, channel: channel, tracker: &current))
            }
        }
        // Stores that number events (PostgreSQL, shared by nodes): the record says which state it was computed on.
        if let before = storedBefore, case .success(.some(var computed)) = result {
            computed.record.expectedLastSequence = before
            current.storedSequence = before + Int64(computed.record.events.count)
            result = .success(computed)
        }
        // Commit point: from here on the watchdog can no longer take this item over.
        guard claim(conversation, generation: generation) else { return .abandoned }
        switch result {
        case .failure(let error):
            tracker = current
            item.complete(.failure(error))
        case .success(nil):
            tracker = current
            item.complete(.success(TurnResult()))
        case .success(.some(let computed)):
            let turn = computed.result
            // Counted only by the turn that answers (a turn taken over at its deadline counts nothing).
            for cause in computed.fallbacks { DispatchMetrics.fallback(cause) }
            // A numbered record may be refused as stale and run again: it is committed here, not detached.
            if !item.isEmit, computed.record.expectedLastSequence == nil, conversation.state.withLock({ $0.queue.isEmpty }) {
                tracker = current
                detachAppend(computed.record, turn: turn, of: item, in: conversation)
                return .done
            }
            do {
                try await store.append(computed.record)
                tracker = current
            } catch is ConversationChangedError where attempt < Self.maxConflictRetries {
                // Another node stored a turn of this conversation first: reload it and run this item again, on
                // the state that includes the other turn (with a deadline of its own; at most maxConflictRetries).
                logger.notice("conversation changed on another node; running the turn again", metadata: ["parley.sender_id": "\(conversation.id)"])
                DispatchMetrics.turnRetried()
                tracker = nil
                try? await Task.sleep(for: .microseconds(Int64.random(in: 0...Int64(5_000 * (attempt + 1)))))
                return await retry(item, in: conversation, tracker: &tracker, attempt: attempt + 1)
            } catch {
                // Nothing of the turn is stored; drop the in-memory state so the next item reloads it.
                tracker = nil
                logger.error("store append failed", metadata: ["parley.sender_id": "\(conversation.id)", "error": "\(error)"])
                item.complete(
                    .failure(DispatchError(.storeFailed, senderID: conversation.id, "could not record the turn of conversation \(conversation.id): \(error)")))
                return .done
            }
            if case .emit(_, let channel, _, _) = item {
                await outputs.deliver(turn, to: conversation.id, channel: channel ?? current.latestInputChannel)
            }
            item.complete(.success(turn))
        }
        return .done
    }

    /// A fresh tracker for `senderID` from the store (its current session, and its last sequence number when the
    /// store numbers events).
    private func loadTracker(_ senderID: String) async throws -> Tracker {
        var loaded = Tracker(senderID: senderID, retainedEventLimit: max(configuration.agentTrackerEventLimit, 1))
        if let stored = try await store.load(senderID) {
            loaded.apply(contentsOf: stored.currentSession)
            loaded.storedSequence = stored.lastSequence
        }
        return loaded
    }

    /// Runs `item` again after a ``ConversationChangedError``: the deadline watch stays with the same item, so a
    /// new generation is registered for the retry.
    private func retry(_ item: WorkItem, in conversation: Conversation, tracker: inout Tracker?, attempt: Int) async -> Outcome {
        let next = conversation.state.withLock { s in
            s.generation &+= 1
            if item.needsDeadline { s.inFlight = item }
            return s.generation
        }
        if item.needsDeadline { registerDeadline(conversation, generation: next, after: deadline(of: item)) }
        return await process(item, in: conversation, generation: next, tracker: &tracker, attempt: attempt)
    }

    /// Hands the turn's events to the store and lets the drain task go on: `completion` answers the caller after
    /// the commit (or with `.storeFailed`, invalidating the tracker). Used only when nothing else waits in the
    /// mailbox, so no later turn of the conversation is computed before the outcome is known (the next drain
    /// waits for it). Counted as a running drain, so a graceful shutdown waits for the commit.
    private func detachAppend(_ record: TurnRecord, turn: TurnResult, of item: WorkItem, in conversation: Conversation) {
        conversation.state.withLock { $0.appendsInFlight += 1 }
        scheduler.withLock { $0.activeDrains += 1 }
        store.append(record) { [self] result in
            switch result {
            case .success:
                item.complete(.success(turn))
            case .failure(let error):
                logger.error("store append failed", metadata: ["parley.sender_id": "\(conversation.id)", "error": "\(error)"])
                item.complete(
                    .failure(DispatchError(.storeFailed, senderID: conversation.id, "could not record the turn of conversation \(conversation.id): \(error)")))
            }
            let waiter = conversation.state.withLock { s in
                if case .failure = result {
                    // Nothing of the turn is stored: the next turn reloads the conversation.
                    s.invalidated = true
                    s.tracker = nil
                }
                s.appendsInFlight -= 1
                return s.appendsInFlight == 0 ? s.appendWaiter.take() : nil
            }
            waiter?.resume()
            drainFinished()
        }
    }

    /// The ``AgentRequest/stream`` of a running turn: each chunk goes to the outputs under the conversation's lock
    /// while the turn is still this generation's and unanswered (so no chunk follows the end or the reply, which
    /// ``claim(_:generation:)`` sends under the same lock); false afterwards.
    private func streamSink(_ conversation: Conversation, generation: UInt64, channel: String, seq: Int64) -> @Sendable (String) -> Bool {
        { [outputs] text in
            conversation.state.withLock { s in
                guard s.generation == generation, s.inFlight != nil else { return false }
                if s.openStream == nil {
                    s.openStream = OpenStream(seq: seq, channel: channel)
                    outputs.stream(.start(seq: seq), to: conversation.id, channel: channel)
                }
                let index = s.openStream!.nextChunk
                s.openStream!.nextChunk += 1
                outputs.stream(.chunk(seq: seq, index: index, text: text), to: conversation.id, channel: channel)
                return true
            }
        }
    }

    /// Tells the conversation's clients the bot is typing, if its turn is still running. Said under the
    /// conversation's lock, as ``claim(_:generation:)`` says "stopped typing" under it before the turn is answered,
    /// so a client never gets "typing" after the reply (the outputs only queue the event on the sockets' loops).
    private func indicateTyping(_ entry: WatchdogEntry) {
        entry.conversation.state.withLock { s in
            guard s.generation == entry.generation, s.inFlight != nil else { return }
            s.typingShown = true
            s.typingChannel = entry.typingChannel
            outputs.indicateTyping(true, to: entry.conversation.id, channel: entry.typingChannel)
        }
    }

    /// Ends the deadline watch of the running item (and its typing indicator). False when the watchdog already took
    /// it over (the caller then drops everything it computed).
    private func claim(_ conversation: Conversation, generation: UInt64) -> Bool {
        let won = conversation.state.withLock { s in
            guard s.generation == generation else { return false }
            s.inFlight = nil
            if s.typingShown {
                s.typingShown = false
                outputs.indicateTyping(false, to: conversation.id, channel: s.typingChannel)
            }
            if let stream = s.openStream.take() {
                outputs.stream(.end(seq: stream.seq), to: conversation.id, channel: stream.channel)
            }
            return true
        }
        if won { watchdog.withLock { _ = $0.entries.removeValue(forKey: ObjectIdentifier(conversation)) } }
        return won
    }

    // MARK: - A turn

    /// Runs one user turn on `tracker`; returns the result and the events to store.
    private func runTurn(_ message: UserMessage, tracker: inout Tracker, fallbackOnly: Bool, stream: (@Sendable (String) -> Bool)? = nil) async -> ComputedTurn?
    {
        let started = ContinuousClock.now
        defer { DispatchMetrics.turnFinished(after: ContinuousClock.now - started) }
        let now = configuration.clock()
        var events: [JSONValue] = []
        events.reserveCapacity(8)
        // Each event is serialised once: the tracker keeps the text for the agent payloads, the store writes it.
        var encoded: [[UInt8]] = []
        encoded.reserveCapacity(8)
        func record(_ event: JSONValue) {
            var text: [UInt8] = []
            text.reserveCapacity(256)
            event.serialize(into: &text)
            events.append(event)
            encoded.append(text)
            tracker.apply(event, encoded: text)
        }
        // The same message again (a client retrying after a reconnect): answered with what it got the first time,
        // nothing recorded, no agent called.
        if let first = tracker.answer(toMessageID: message.messageID) {
            DispatchMetrics.repeatedMessage()
            return ComputedTurn(
                result: TurnResult(responses: first.responses, sequences: first.sequences, isRepeat: true),
                record: TurnRecord(senderID: message.senderID, events: []), fallbacks: [])
        }
        if tracker.isEmpty || tracker.sessionExpired(now: now, expirationMinutes: configuration.sessionExpirationMinutes) {
            let carried = configuration.carryOverSlotsToNewSession ? tracker.slots : [:]
            record(TrackerEvent.action(TrackerEvent.sessionStartActionName, timestamp: now))
            // A new session carries the message count on (Tracker.lastMessageSequence).
            record(TrackerEvent.numbered(TrackerEvent.sessionStarted(timestamp: now), tracker.lastMessageSequence))
            for (name, value) in carried { record(TrackerEvent.slot(name, value, timestamp: now)) }
            record(TrackerEvent.action(TrackerEvent.listenActionName, timestamp: now))
        }
        record(TrackerEvent.user(message, timestamp: now))
        var responses: [JSONValue] = []
        var fallbacks: [DispatchMetrics.FallbackCause] = []
        if fallbackOnly {
            fallbacks.append(.deadline)
            responses = [fallbackResponse]
        } else if !tracker.paused {
            let plugins = self.plugins
            let agent = plugins.route(message)
            do {
                // The request (which shares the tracker's event buffer) is gone before new events are applied.
                let limit = min(configuration.agentTrackerEventLimit, agent.trackerEventLimit ?? .max)
                // A temporary request: it (and the snapshot it shares with the tracker) is released as soon as the
                // agent returns, so recording the reply below does not copy the tracker's buffers.
                let snapshot = tracker
                let reply = try await agent.respond(
                    to: AgentRequest(
                        message: message, payload: { self.payload(for: message, tracker: snapshot, eventLimit: limit) },
                        encodedPayload: encodedPayload(for: message, tracker: snapshot, eventLimit: limit), stream: stream))
                var actionResponses: [JSONValue] = []
                for raw in reply.events {
                    guard let event = TrackerEvent.normalized(raw, timestamp: now) else {
                        logger.warning("agent returned an event without a string \"event\" key; ignored", metadata: ["parley.agent": "\(agent.name)"])
                        continue
                    }
                    // An agent's `restart` or `session_started` carries the message count on, too.
                    record(TrackerEvent.startsSession(event) ? TrackerEvent.numbered(event, tracker.lastMessageSequence) : event)
                    if TrackerEvent.kind(of: event) == TrackerEvent.Kind.action, let name = event["name"]?.stringValue,
                        let runner = actionRunner, runner.hasAction(named: name)
                    {
                        let invocation = ActionInvocation(senderID: message.senderID, slots: tracker.slots, latestMessage: tracker.latestMessage)
                        actionResponses += await runAction(
                            name, runner: runner, invocation: invocation, message: message,
                            record: { record(TrackerEvent.startsSession($0) ? TrackerEvent.numbered($0, tracker.lastMessageSequence) : $0) }, now: now,
                            fallbacks: &fallbacks)
                    }
                }
                responses = try await format(
                    reply.responses + actionResponses, channel: message.inputChannel, senderID: message.senderID, plugins: plugins)
            } catch {
                logger.error(
                    "agent failed; sending the fallback",
                    metadata: ["parley.agent": "\(agent.name)", "parley.sender_id": "\(message.senderID)", "error": "\(error)"])
                fallbacks.append(.agentError)
                responses = [fallbackResponse]
            }
        }
        var sequences: [Int64] = []
        sequences.reserveCapacity(responses.count)
        for response in responses {
            let sequence = tracker.lastMessageSequence + 1
            sequences.append(sequence)
            record(TrackerEvent.bot(response: response, timestamp: now, sequence: sequence))
        }
        if !tracker.paused { record(TrackerEvent.action(TrackerEvent.listenActionName, timestamp: now)) }
        return ComputedTurn(
            result: TurnResult(responses: responses, events: events, sequences: sequences),
            record: TurnRecord(senderID: message.senderID, events: events, encoded: encoded), fallbacks: fallbacks)
    }

    private func runAction(
        _ name: String, runner: any ActionRunner, invocation: ActionInvocation, message: UserMessage, record: (JSONValue) -> Void, now: Double,
        fallbacks: inout [DispatchMetrics.FallbackCause]
    ) async -> [JSONValue] {
        do {
            let reply = try await runner.runAction(named: name, invocation: invocation)
            for raw in reply.events {
                guard let event = TrackerEvent.normalized(raw, timestamp: now) else { continue }
                record(event)
            }
            return reply.responses
        } catch {
            logger.error(
                "action failed; sending the fallback", metadata: ["parley.action": "\(name)", "parley.sender_id": "\(message.senderID)", "error": "\(error)"])
            record(TrackerEvent.actionExecutionRejected(name, timestamp: now))
            fallbacks.append(.actionError)
            return [fallbackResponse]
        }
    }

    private func runEmit(_ responses: [JSONValue], channel: String?, tracker: inout Tracker) async -> ComputedTurn? {
        let now = configuration.clock()
        let channelName = channel ?? tracker.latestInputChannel ?? ""
        let formatted = (try? await format(responses, channel: channelName, senderID: tracker.senderID)) ?? responses
        var events: [JSONValue] = []
        if tracker.isEmpty {
            // A conversation created by this emit starts with a session, as a first user message would.
            for event in [
                TrackerEvent.action(TrackerEvent.sessionStartActionName, timestamp: now),
                TrackerEvent.numbered(TrackerEvent.sessionStarted(timestamp: now), tracker.lastMessageSequence),
                TrackerEvent.action(TrackerEvent.listenActionName, timestamp: now),
            ] {
                events.append(event)
                tracker.apply(event)
            }
        }
        var sequences: [Int64] = []
        for response in formatted {
            let sequence = tracker.lastMessageSequence + 1
            sequences.append(sequence)
            let event = TrackerEvent.bot(response: response, timestamp: now, sequence: sequence)
            events.append(event)
            tracker.apply(event)
        }
        return ComputedTurn(
            result: TurnResult(responses: formatted, events: events, sequences: sequences),
            record: TurnRecord(senderID: tracker.senderID, events: events), fallbacks: [])
    }

    /// The agents, routes and formatters turns use now.
    public var plugins: DispatcherPlugins { pluginSet.withLock { $0 } }

    /// Replaces the agents, routes and formatters (a configuration reload): turns that start afterwards use the
    /// new ones; turns running now finish on the ones they started with.
    public func replacePlugins(_ plugins: DispatcherPlugins) {
        pluginSet.withLock { $0 = plugins }
    }

    /// The agent for `message`: the first matching route's, else the default.
    func route(_ message: UserMessage) -> any Agent {
        plugins.route(message)
    }

    /// Applies the formatter chain of `channel`. A formatter that throws is skipped (its input passes on).
    func format(_ responses: [JSONValue], channel: String, senderID: String, plugins: DispatcherPlugins? = nil) async throws -> [JSONValue] {
        let set = plugins ?? self.plugins
        let chain = set.channelFormatters[channel] ?? set.formatters
        var current = responses
        for formatter in chain {
            do {
                current = try await formatter.format(current, channel: channel, senderID: senderID)
            } catch {
                logger.error("formatter failed; its input is sent unformatted", metadata: ["parley.formatter": "\(formatter.name)", "error": "\(error)"])
            }
        }
        return current
    }

    /// The request payload, shaped like Rasa's action-server request.
    func payload(for message: UserMessage, tracker: Tracker, eventLimit: Int? = nil) -> JSONValue {
        var m = Self.messageTemplate
        m["text"] = .string(message.text)
        m["message_id"] = .string(message.messageID)
        m["metadata"] = .object(message.metadata)
        m["input_channel"] = .string(message.inputChannel)
        var p = Self.payloadTemplate
        p["sender_id"] = .string(message.senderID)
        p["message"] = .object(m)
        p["tracker"] = tracker.json(eventLimit: eventLimit ?? configuration.agentTrackerEventLimit)
        return .object(p)
    }

    /// Writes exactly `payload(for: message, tracker: tracker).serialized`, copying the events' text the tracker
    /// cached when they were applied instead of serialising the history again.
    func encodedPayload(for message: UserMessage, tracker: Tracker, eventLimit: Int? = nil) -> @Sendable (inout [UInt8]) -> Void {
        let limit = eventLimit ?? configuration.agentTrackerEventLimit
        return { out in
            out.append(contentsOf: #"{"sender_id":"#.utf8)
            JSONValue.serializeString(message.senderID, into: &out)
            out.append(contentsOf: #","message":{"text":"#.utf8)
            JSONValue.serializeString(message.text, into: &out)
            out.append(contentsOf: #","message_id":"#.utf8)
            JSONValue.serializeString(message.messageID, into: &out)
            out.append(contentsOf: #","metadata":"#.utf8)
            JSONValue.object(message.metadata).serialize(into: &out)
            out.append(contentsOf: #","input_channel":"#.utf8)
            JSONValue.serializeString(message.inputChannel, into: &out)
            out.append(contentsOf: #"},"tracker":"#.utf8)
            tracker.serializeJSON(eventLimit: limit, into: &out)
            out.append(UInt8(ascii: "}"))
        }
    }

    static let messageTemplate: JSONObject = ["text": nil, "message_id": nil, "metadata": nil, "input_channel": nil]
    static let payloadTemplate: JSONObject = ["sender_id": nil, "message": nil, "tracker": nil]

    var fallbackResponse: JSONValue { ["text": .string(configuration.fallbackText)] }

    // MARK: - Deadlines

    /// The one deadline of `item`: the turn deadline, or the routed agent's deadline when that is earlier.
    private func deadline(of item: WorkItem) -> Duration {
        guard case .turn(let message, _) = item, let agentDeadline = route(message).deadline else { return configuration.turnDeadline }
        return min(agentDeadline, configuration.turnDeadline)
    }

    /// - Parameter typingChannel: for a user turn, its input channel: the typing indicator is due after
    ///   ``DispatcherConfiguration/typingDelay`` (when set).
    private func registerDeadline(_ conversation: Conversation, generation: UInt64, after duration: Duration, typingChannel: String? = nil) {
        let now = ContinuousClock.now
        let deadline = now.advanced(by: duration)
        let typingAt = typingChannel == nil ? nil : configuration.typingDelay.map { now.advanced(by: $0) }
        let parked = watchdog.withLock { w in
            w.entries[ObjectIdentifier(conversation)] = WatchdogEntry(
                conversation: conversation, generation: generation, deadline: deadline, typingAt: typingAt, typingChannel: typingChannel)
            return w.waiter.take()
        }
        parked?.resume()
    }

    /// Checks deadlines every `deadlineCheckInterval` while items run; parks once none has run for about a
    /// second (parking after every turn would cost a wake-up per turn when turns come one at a time).
    private func watchdogLoop() async {
        let parkAfter = max(1, Int(Duration.seconds(1) / configuration.deadlineCheckInterval))
        var idleChecks = 0
        while !Task.isCancelled {
            if idleChecks >= parkAfter {
                idleChecks = 0
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                        let resumeNow = watchdog.withLock { w in
                            if !w.entries.isEmpty || w.stopped { return true }
                            w.waiter = c
                            return false
                        }
                        if resumeNow { c.resume() }
                    }
                } onCancel: {
                    self.watchdog.withLock { w in
                        w.stopped = true
                        return w.waiter.take()
                    }?.resume()
                }
            }
            if Task.isCancelled { return }
            try? await Task.sleep(for: configuration.deadlineCheckInterval)
            expireOverdue(now: .now)
            idleChecks = watchdog.withLock { $0.entries.isEmpty } ? idleChecks + 1 : 0
        }
    }

    /// Takes over every running item past its deadline: its caller gets the fallback from a fresh drain task.
    func expireOverdue(now: ContinuousClock.Instant) {
        let (overdue, typing) = watchdog.withLock { w -> ([WatchdogEntry], [WatchdogEntry]) in
            let due = w.entries.values.filter { $0.deadline <= now }
            for e in due { w.entries.removeValue(forKey: ObjectIdentifier(e.conversation)) }
            var typing: [WatchdogEntry] = []
            for (key, entry) in w.entries {
                guard let at = entry.typingAt, at <= now else { continue }
                typing.append(entry)
                w.entries[key]?.typingAt = now.advanced(by: configuration.typingRepeat)
            }
            return (due, typing)
        }
        for entry in typing { indicateTyping(entry) }
        for entry in overdue {
            let conversation = entry.conversation
            let tookOver = conversation.state.withLock { s -> Bool in
                guard s.generation == entry.generation, let item = s.inFlight.take() else { return false }
                s.generation &+= 1
                s.tracker = nil
                s.queue.insert(.expired(item), at: 0)
                return true
            }
            guard tookOver else { continue }
            logger.error(
                "turn missed its deadline (the routed agent's deadline or dispatcher.turn_deadline, the earlier); sending the fallback",
                metadata: ["parley.sender_id": "\(conversation.id)"])
            let waiter = scheduler.withLock { s in
                s.ready.append(conversation)
                // The abandoned drain task no longer counts: shutdown must not wait for a hung agent.
                s.activeDrains -= 1
                return s.waiter.take()
            }
            waiter?.resume()
        }
    }

    // MARK: - Eviction

    private func evictionLoop() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: configuration.evictionInterval)
            if Task.isCancelled { return }
            evictIdleConversations()
        }
    }

    /// Drops conversations idle for ``DispatcherConfiguration/idleEvictionSeconds`` (by the configured clock)
    /// from memory; they reload from the store on their next message. Returns how many were evicted.
    @discardableResult
    public func evictIdleConversations() -> Int {
        let cutoff = configuration.clock() - configuration.idleEvictionSeconds
        return conversations.withLock { map in
            var evicted: [String] = []
            for (id, c) in map {
                let idle = c.state.withLock { s in
                    guard !s.running, s.queue.isEmpty, s.appendsInFlight == 0, s.lastActive <= cutoff else { return false }
                    s.evicted = true
                    return true
                }
                if idle { evicted.append(id) }
            }
            for id in evicted { map.removeValue(forKey: id) }
            DispatchMetrics.resident(map.count)
            return evicted.count
        }
    }

    /// Drops the least recently active idle conversations until at most `keeping` are held in memory.
    /// Conversations with work queued, running or committing stay. Returns how many were evicted.
    @discardableResult
    func evictLeastRecentlyActive(keeping: Int) -> Int {
        conversations.withLock { map in
            guard map.count > keeping else { return 0 }
            let byActivity = map.map { ($0.key, $0.value, $0.value.state.withLock { $0.lastActive }) }.sorted { $0.2 < $1.2 }
            var evicted = 0
            for (id, c, _) in byActivity {
                guard map.count > keeping else { break }
                let idle = c.state.withLock { s in
                    guard !s.running, s.queue.isEmpty, s.appendsInFlight == 0, s.inFlight == nil else { return false }
                    s.evicted = true
                    return true
                }
                if idle {
                    map.removeValue(forKey: id)
                    evicted += 1
                }
            }
            if evicted > 0 {
                logger.info(
                    "conversations evicted from memory: over dispatcher.max_resident_conversations",
                    metadata: ["evicted": "\(evicted)", "resident": "\(map.count)"])
            }
            return evicted
        }
    }

    /// Number of conversations held in memory.
    public var residentConversationCount: Int { conversations.withLock { $0.count } }
}

// MARK: - Internal state

enum WorkItem: Sendable {
    case turn(UserMessage, Dispatcher.Completion)
    case emit([JSONValue], channel: String?, create: Bool, Dispatcher.Completion)
    /// A turn whose deadline passed: answered with the fallback.
    indirect case expired(WorkItem)
    /// Bot messages numbered after a sequence number, read from the store.
    case replay(after: Int64, Dispatcher.Completion)

    var needsDeadline: Bool {
        switch self {
        case .expired, .replay: false
        default: true
        }
    }

    /// The input channel of a user turn (the typing indicator goes there); nil for other items.
    var typingChannel: String? {
        if case .turn(let message, _) = self { return message.inputChannel }
        return nil
    }

    /// Proactive output (delivered after the store confirms, so never detached).
    var isEmit: Bool {
        if case .emit = self { return true }
        return false
    }

    func complete(_ result: Result<TurnResult, any Error>) {
        switch self {
        case .turn(_, let c), .emit(_, _, _, let c), .replay(_, let c): c(result)
        case .expired(let inner): inner.complete(result)
        }
    }
}

enum EnqueueOutcome { case retry, full, queued, activate }

struct ConversationState: Sendable {
    var queue: [WorkItem] = []
    var running = false
    /// Turns whose events are being committed by the store after their drain task went on (see
    /// ``Dispatcher`` `detachAppend`); the next drain waits for them before it takes the tracker.
    var appendsInFlight = 0
    var appendWaiter: CheckedContinuation<Void, Never>?
    /// A detached append failed: the tracker (which holds its events) must be reloaded from the store.
    var invalidated = false
    var evicted = false
    var tracker: Tracker?
    var generation: UInt64 = 0
    var inFlight: WorkItem?
    var lastActive: Double = 0
    /// The clients were told the bot is typing (on this channel) for the running turn.
    var typingShown = false
    var typingChannel: String?
    /// The running turn's agent is streaming its reply.
    var openStream: OpenStream?
}

/// A streamed reply in progress: the number of its final message, its channel, the next chunk's index.
struct OpenStream: Sendable {
    let seq: Int64
    let channel: String
    var nextChunk = 0
}

final class Conversation: Sendable {
    let id: String
    let state = Mutex(ConversationState())
    init(id: String) { self.id = id }
}

struct SchedulerState: Sendable {
    var ready: [Conversation] = []
    var waiter: CheckedContinuation<Void, Never>?
    var activeDrains = 0
    var finished = false
    var stopping = false
    var cancelled = false
}

/// What computing one item produced, before it is stored: the turn (whose responses an emit delivers), the
/// record for the store and the fallbacks it sent (counted once it commits).
struct ComputedTurn {
    var result: TurnResult
    var record: TurnRecord
    var fallbacks: [DispatchMetrics.FallbackCause]
}

struct WatchdogEntry: Sendable {
    let conversation: Conversation
    let generation: UInt64
    let deadline: ContinuousClock.Instant
    /// When the typing indicator is due next (nil: none for this item).
    var typingAt: ContinuousClock.Instant?
    var typingChannel: String?
}

struct WatchdogState: Sendable {
    var entries: [ObjectIdentifier: WatchdogEntry] = [:]
    var waiter: CheckedContinuation<Void, Never>?
    var stopped = false
}

/// What a dispatcher routes turns to and formats their replies with (see ``Dispatcher/replacePlugins(_:)``).
public struct DispatcherPlugins: Sendable {
    /// The agent of messages no route matches.
    public var agent: any Agent
    /// Rules sending some messages to other agents, tried in order.
    public var routes: [AgentRoute]
    /// The formatter chain of channels without their own.
    public var formatters: [any MessageFormatter]
    /// Formatter chains per input channel name.
    public var channelFormatters: [String: [any MessageFormatter]]

    public init(
        agent: any Agent, routes: [AgentRoute] = [], formatters: [any MessageFormatter] = [], channelFormatters: [String: [any MessageFormatter]] = [:]
    ) {
        self.agent = agent
        self.routes = routes
        self.formatters = formatters
        self.channelFormatters = channelFormatters
    }

    /// The agent for `message`: the first matching route's, else the default.
    public func route(_ message: UserMessage) -> any Agent {
        for route in routes where route.rule.matches(message) { return route.agent }
        return agent
    }
}
