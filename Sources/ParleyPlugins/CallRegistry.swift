import CParley
import Logging
import ParleyCore
import ParleyJSON
import Synchronization

/// The life of every plugin call in the process, keyed by the id behind `parley_call *`.
///
/// A call is *finished* when its outcome is known (completed, failed, expired or cancelled) and *synced*
/// when the plugin's `handle` has returned (or will never run). It is *settled* when both hold; then its
/// serialization slot is released. The awaiting task is resumed exactly once, at finish. A call that
/// expired after `handle` returned `PARLEY_PENDING` keeps a record until the plugin's late `complete`
/// (which gets `PARLEY_E_EXPIRED`); every other record is removed when settled. Recently removed ids are
/// remembered (bounded) so that a duplicate completion can be blamed on its plugin.
final class CallRegistry: Sendable {
    private struct Record {
        let owner: LoadedPlugin
        var completion: Completion?
        var outcome: Result<JSONValue, PluginCallError>?
        var expired = false
        var started = false
        var synced = false
        var handleStatus: Int32?
        var lateCompleted = false
        /// `handle` was still running when the call expired at its deadline.
        var hung = false
        var onSettled: (@Sendable () -> Void)?
        /// Where `parley_stream` chunks of this call go (an agent turn's stream); nil: the call cannot stream.
        var stream: (@Sendable (String) -> Bool)?

        var finished: Bool { outcome != nil }
    }

    private struct State {
        var next: UInt = 1
        var records: [UInt: Record] = [:]
        var recent: [UInt: LoadedPlugin] = [:]
        var recentOrder: [UInt] = []
        var recentHead = 0
    }

    private static let recentCapacity = 4096
    private let state = Mutex(State())

    /// Things to do after the lock is released.
    private struct Effects {
        var resume: (Completion, Result<JSONValue, PluginCallError>)?
        var settled: (@Sendable () -> Void)?
        var cancelHook: LoadedPlugin?
        var hung: LoadedPlugin?
        var unhung: LoadedPlugin?
        var log: (() -> Void)?

        func run(callID: UInt) {
            if let (completion, outcome) = resume { completion(outcome) }
            if let hung { hung.handleHung(callID: callID) }
            if let unhung { unhung.hungHandleReturned(callID: callID) }
            if let cancelHook { cancelHook.runCancelHook(callID: callID) }
            if let log { log() }
            if let settled { settled() }
        }
    }

    /// Registers a new call of `owner`; `onSettled` runs once when the call is finished and synced.
    /// - Parameter stream: receives the call's `parley_stream` text, returning false once the turn is over.
    func register(owner: LoadedPlugin, stream: (@Sendable (String) -> Bool)? = nil, onSettled: @escaping @Sendable () -> Void) -> UInt {
        state.withLock { s in
            let id = s.next
            s.next += 1
            s.records[id] = Record(owner: owner, onSettled: onSettled, stream: stream)
            return id
        }
    }

    /// `parley_host_api.stream` (ABI 1.2): hands `{"text": …}` to the call's stream.
    func stream(_ call: OpaquePointer?, json: parley_str) -> parley_status {
        guard let call else { return PARLEY_E_INVALID }
        let id = UInt(bitPattern: call)
        let found: (LoadedPlugin, (@Sendable (String) -> Bool)?)? = state.withLock { s in
            guard let r = s.records[id], !r.finished, !r.expired else { return nil }
            return (r.owner, r.stream)
        }
        guard let (owner, sink) = found else {
            return state.withLock { s in id > 0 && id < s.next } ? PARLEY_E_EXPIRED : PARLEY_E_INVALID
        }
        guard let bytes = copyBytes(json) else {
            owner.logger.error("plugin \(owner.name): stream with a NULL json pointer and non-zero length was refused (PARLEY_E_INVALID)")
            return PARLEY_E_INVALID
        }
        guard let value = try? bytes.withUnsafeBufferPointer({ try JSONValue.parse($0, maxDepth: JSONValue.inputParseDepth) }),
            let text = value["text"]?.stringValue
        else {
            owner.logger.error(#"plugin \#(owner.name): stream refused, the chunk must be {"text": "..."} (PARLEY_E_BAD_JSON)"#)
            return PARLEY_E_BAD_JSON
        }
        guard let sink else { return PARLEY_E_UNSUPPORTED }
        return sink(text) ? PARLEY_OK : PARLEY_E_EXPIRED
    }

    /// Who waits for a call's outcome (a continuation's resume, or a callback); called exactly once.
    typealias Completion = @Sendable (Result<JSONValue, PluginCallError>) -> Void

    /// Attaches who waits for the outcome; called at once if the call already finished.
    func attach(_ id: UInt, _ completion: @escaping Completion) {
        let outcome: Result<JSONValue, PluginCallError>? = state.withLock { s in
            guard var r = s.records[id] else { return .failure(PluginCallError(code: .closed, plugin: "?", reason: "call record vanished")) }
            if let outcome = r.outcome { return outcome }
            r.completion = completion
            s.records[id] = r
            return nil
        }
        if let outcome { completion(outcome) }
    }

    func isFinished(_ id: UInt) -> Bool {
        state.withLock { $0.records[id]?.finished ?? true }
    }

    /// Called when it is the call's turn to run `handle`. Returns false (and marks the call synced) when
    /// the call already finished, e.g. expired while it waited for its turn.
    func begin(_ id: UInt) -> Bool {
        var effects = Effects()
        let go: Bool = state.withLock { s in
            guard var r = s.records[id] else { return false }
            if r.finished {
                r.synced = true
                settle(&r, id: id, in: &s, effects: &effects)
                return false
            }
            r.started = true
            s.records[id] = r
            return true
        }
        effects.run(callID: id)
        return go
    }

    /// Called when `handle` returned `status`.
    func handleReturned(_ id: UInt, status: Int32) {
        var effects = Effects()
        state.withLock { s in
            guard var r = s.records[id] else { return }
            r.synced = true
            r.handleStatus = status
            if r.hung { effects.unhung = r.owner }
            if !r.finished {
                let name = r.owner.name
                let error: PluginCallError? =
                    switch status {
                    case PARLEY_PENDING.rawValue: nil
                    case PARLEY_OK.rawValue:
                        PluginCallError(
                            code: .protocolViolation, plugin: name,
                            reason: "handle returned PARLEY_OK without calling complete (complete the call first, or return PARLEY_PENDING)")
                    case ..<0:
                        PluginCallError(code: .pluginFailed, plugin: name, reason: "handle failed with \(parleyStatusName(status))", status: status)
                    default:
                        PluginCallError(code: .protocolViolation, plugin: name, reason: "handle returned unknown status \(status)")
                    }
                if let error { finish(&r, .failure(error), effects: &effects) }
            }
            settle(&r, id: id, in: &s, effects: &effects)
        }
        effects.run(callID: id)
    }

    /// Ends a call that has no completion yet: deadline passed (`cancelled == false`) or the waiting task
    /// was cancelled. Runs the plugin's cancel hook if `handle` had started.
    func expire(_ id: UInt, deadline: Duration, cancelled: Bool) {
        var effects = Effects()
        state.withLock { s in
            guard var r = s.records[id], !r.finished else { return }
            let name = r.owner.name
            let error =
                cancelled
                ? PluginCallError(code: .cancelled, plugin: name, reason: "call cancelled by the host; the late reply will be dropped")
                : PluginCallError(
                    code: .deadlineExceeded, plugin: name,
                    reason:
                        "no reply within \(formatDuration(deadline)); sent the fallback, a late reply will be dropped (raise the plugin's deadline or make it faster)"
                )
            r.expired = true
            r.owner.updateStatistics { $0.expired += 1 }
            finish(&r, .failure(error), effects: &effects)
            if r.started { effects.cancelHook = r.owner }
            if r.started && !r.synced && !cancelled {
                r.hung = true
                effects.hung = r.owner
            }
            settle(&r, id: id, in: &s, effects: &effects)
        }
        effects.run(callID: id)
    }

    /// `parley_host_api.complete`.
    func complete(_ call: OpaquePointer?, status: Int32, json: parley_str) -> parley_status {
        guard let call else { return PARLEY_E_INVALID }
        let id = UInt(bitPattern: call)
        let bytes = copyBytes(json)
        var effects = Effects()
        let result: parley_status = state.withLock { s in
            guard var r = s.records[id] else {
                if let owner = s.recent[id] {
                    owner.updateStatistics { $0.duplicateCompletions += 1 }
                    effects.log = {
                        owner.logger.error(
                            "plugin \(owner.name): call \(id) completed twice; the second completion was dropped (PARLEY_E_ALREADY_COMPLETED; complete each call exactly once)"
                        )
                    }
                    return PARLEY_E_ALREADY_COMPLETED
                }
                return id > 0 && id < s.next ? PARLEY_E_ALREADY_COMPLETED : PARLEY_E_INVALID
            }
            let owner = r.owner
            if r.expired {
                if r.lateCompleted {
                    owner.updateStatistics { $0.duplicateCompletions += 1 }
                    return PARLEY_E_ALREADY_COMPLETED
                }
                r.lateCompleted = true
                owner.updateStatistics { $0.lateCompletions += 1 }
                effects.log = {
                    owner.logger.notice("plugin \(owner.name): late completion of expired call \(id) dropped (PARLEY_E_EXPIRED)")
                }
                settle(&r, id: id, in: &s, effects: &effects)
                return PARLEY_E_EXPIRED
            }
            if r.finished {
                owner.updateStatistics { $0.duplicateCompletions += 1 }
                effects.log = {
                    owner.logger.error(
                        "plugin \(owner.name): call \(id) completed twice; the second completion was dropped (PARLEY_E_ALREADY_COMPLETED; complete each call exactly once)"
                    )
                }
                return PARLEY_E_ALREADY_COMPLETED
            }
            let name = owner.name
            let outcome: Result<JSONValue, PluginCallError>
            let returned: parley_status
            if let bytes {
                switch status {
                case PARLEY_OK.rawValue:
                    if bytes.isEmpty {
                        outcome = .success(.object([:]))
                        returned = PARLEY_OK
                    } else {
                        do {
                            let reply = try bytes.withUnsafeBufferPointer { try JSONValue.parse($0, maxDepth: JSONValue.inputParseDepth) }
                            // A reply the host would drop is refused here, so the plugin learns it (PARLEY_E_BAD_JSON).
                            if let problem = Self.shapeProblem(reply, kind: owner.kind) {
                                outcome = .failure(PluginCallError(code: .invalidShape, plugin: name, reason: problem))
                                returned = PARLEY_E_BAD_JSON
                            } else {
                                outcome = .success(reply)
                                returned = PARLEY_OK
                            }
                        } catch {
                            outcome = .failure(PluginCallError(code: .invalidJSON, plugin: name, reason: "reply is not valid JSON (\(error))"))
                            returned = PARLEY_E_BAD_JSON
                        }
                    }
                case ..<0:
                    let detail = errorDetail(bytes)
                    outcome = .failure(
                        PluginCallError(
                            code: .pluginFailed, plugin: name,
                            reason: "call failed with \(parleyStatusName(status))\(detail.isEmpty ? "" : ": \(detail)")", status: status))
                    returned = PARLEY_OK
                default:
                    outcome = .failure(
                        PluginCallError(
                            code: .protocolViolation, plugin: name,
                            reason: "complete called with \(parleyStatusName(status)); use PARLEY_OK or a negative status"))
                    returned = PARLEY_E_INVALID
                }
            } else {
                outcome = .failure(
                    PluginCallError(
                        code: .protocolViolation, plugin: name,
                        reason: "complete called with a NULL json pointer and length \(json.len); pass {NULL, 0} or a valid string"))
                returned = PARLEY_E_INVALID
            }
            finish(&r, outcome, effects: &effects)
            settle(&r, id: id, in: &s, effects: &effects)
            return returned
        }
        effects.run(callID: id)
        return result
    }

    /// Why a `PARLEY_OK` reply does not have the documented shape, or nil when it does: an agent's is an object
    /// whose `"events"` and `"responses"` (each optional) are arrays of objects (an `{"error": …}` object without
    /// responses is a failure the agent reports); a formatter's has `"responses"`, an array of objects.
    static func shapeProblem(_ reply: JSONValue, kind: PluginKind) -> String? {
        guard let object = reply.objectValue else { return #"reply must be a JSON object such as {"responses": [...]}"# }
        func arrayOfObjects(_ key: String, required: Bool) -> String? {
            guard let value = object[key] else { return required ? #"reply has no "\#(key)": send {"\#(key)": [ {...}, ... ]}"# : nil }
            guard let items = value.arrayValue else { return #"reply "\#(key)" must be an array of objects, got \#(InputValidation.typeName(value))"# }
            for (i, item) in items.enumerated() where item.objectValue == nil {
                return #"reply "\#(key)"[\#(i)] must be an object, got \#(InputValidation.typeName(item))"#
            }
            return nil
        }
        switch kind {
        case .formatter:
            return arrayOfObjects("responses", required: true)
        default:
            if object["error"] != nil && object["responses"] == nil { return nil }
            return arrayOfObjects("events", required: false) ?? arrayOfObjects("responses", required: false)
        }
    }

    // MARK: - Private (under the lock)

    private func finish(_ r: inout Record, _ outcome: Result<JSONValue, PluginCallError>, effects: inout Effects) {
        r.outcome = outcome
        switch outcome {
        case .success: r.owner.updateStatistics { $0.completed += 1 }
        case .failure(let e) where e.code != .deadlineExceeded && e.code != .cancelled: r.owner.updateStatistics { $0.failed += 1 }
        case .failure: break
        }
        if let completion = r.completion {
            r.completion = nil
            effects.resume = (completion, outcome)
        }
    }

    /// Stores `r` back, or removes it once nothing more can happen to it; collects the settle callback.
    private func settle(_ r: inout Record, id: UInt, in s: inout State, effects: inout Effects) {
        if r.finished && r.synced, let onSettled = r.onSettled {
            r.onSettled = nil
            effects.settled = onSettled
        }
        let owesLateCompletion = r.expired && r.started && r.handleStatus == PARLEY_PENDING.rawValue && !r.lateCompleted
        let done = r.finished && r.synced && r.completion == nil && !owesLateCompletion
        if done {
            s.records[id] = nil
            remember(id, r.owner, in: &s)
        } else {
            s.records[id] = r
        }
    }

    private func remember(_ id: UInt, _ owner: LoadedPlugin, in s: inout State) {
        if s.recentOrder.count < Self.recentCapacity {
            s.recentOrder.append(id)
        } else {
            s.recent[s.recentOrder[s.recentHead]] = nil
            s.recentOrder[s.recentHead] = id
            s.recentHead = (s.recentHead + 1) % Self.recentCapacity
        }
        s.recent[id] = owner
    }
}

/// The message of `{"error": {"message": ...}}`, or the raw text, for an error completion.
private func errorDetail(_ bytes: [UInt8]) -> String {
    guard !bytes.isEmpty else { return "" }
    if let value = try? bytes.withUnsafeBufferPointer({ try JSONValue.parse($0, maxDepth: JSONValue.inputParseDepth) }) {
        if let error = value["error"] {
            let message = error["message"]?.stringValue ?? error.stringValue
            let code = error["code"]?.stringValue
            switch (code, message) {
            case let (c?, m?): return "\(c): \(m)"
            case let (nil, m?): return m
            case let (c?, nil): return c
            default: break
            }
        }
        return value.serialized
    }
    return String(decoding: bytes.prefix(200), as: UTF8.self)
}

/// "10 s", "250 ms".
func formatDuration(_ d: Duration) -> String {
    let (seconds, atto) = d.components
    if atto == 0 { return "\(seconds) s" }
    let ms = seconds * 1000 + atto / 1_000_000_000_000_000
    return "\(ms) ms"
}

let callRegistry = CallRegistry()
