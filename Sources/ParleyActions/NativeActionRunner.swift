public import Logging
public import ParleyDispatch
public import ParleyWorkers
import ParleyJSON

/// Runs manifest-bound native actions for the dispatcher.
///
/// The request convention: an agent's reply that contains the event `{"event":"action","name":"action_tip"}`
/// asks for the action; the dispatcher calls ``runAction(named:invocation:)`` after the agent. The runner
/// reads the arguments from the invocation (slots, entities, metadata, text, literals), converts them to the
/// declared C types, calls the function through libffi on the ``WorkerPool`` with the action's deadline, and
/// returns:
/// - events: `{"event":"slot","name":S,"value":RESULT}` when the manifest names a slot (the agent's own
///   `action` event is already the record of the request; the runner does not repeat it);
/// - responses: one `{"text":…}` per `say(...)` the function made, in order, then the rendered reply template.
///
/// Errors (unset slot, wrong JSON type, out-of-range integer, non-UTF-8 string, deadline) are thrown as
/// ``ActionError`` naming the action; the dispatcher answers with its fallback and logs them. A call that
/// misses its deadline keeps its worker thread until the C function returns (nothing can stop it safely);
/// its late result is dropped.
public final class NativeActionRunner: ActionRunner {
    /// Runner settings; every field has a default.
    public struct Configuration: Sendable {
        /// The deadline for one call when the action sets no `timeout` (default 10 s, like plugin calls).
        public var callTimeout: Duration

        /// Creates a configuration.
        /// - Parameter callTimeout: The default per-call deadline.
        public init(callTimeout: Duration = .seconds(10)) {
            self.callTimeout = callTimeout
        }
    }

    /// The actions by name.
    private let actions: [String: NativeAction]
    private let pool: WorkerPool
    private let configuration: Configuration
    private let logger: Logger

    /// Creates a runner over the actions of one or more manifests.
    /// - Parameters:
    ///   - manifests: Loaded manifests; when two define the same action name, the later one wins (logged).
    ///   - pool: The worker pool every native call runs on (shared with the plugin host).
    ///   - configuration: Deadlines.
    ///   - logger: Where errors of failed calls are logged, with metadata `bot.action` and `bot.sender_id`.
    public init(manifests: [ActionManifest], pool: WorkerPool, configuration: Configuration = .init(), logger: Logger) {
        var actions: [String: NativeAction] = [:]
        for manifest in manifests {
            for action in manifest.actions {
                if actions[action.name] != nil {
                    logger.warning("action \(action.name) redefined by \(manifest.path); the later definition wins")
                }
                actions[action.name] = action
            }
        }
        self.actions = actions
        self.pool = pool
        self.configuration = configuration
        self.logger = logger
    }

    /// Creates a runner over one manifest.
    public convenience init(manifest: ActionManifest, pool: WorkerPool, configuration: Configuration = .init(), logger: Logger) {
        self.init(manifests: [manifest], pool: pool, configuration: configuration, logger: logger)
    }

    /// The names of the loaded actions, sorted.
    public var actionNames: [String] { actions.keys.sorted() }

    public func hasAction(named name: String) -> Bool { actions[name] != nil }

    public func runAction(named name: String, invocation: ActionInvocation) async throws -> AgentReply {
        do {
            return try await run(name: name, invocation: invocation)
        } catch {
            var logger = logger
            logger[metadataKey: "bot.action"] = "\(name)"
            logger[metadataKey: "bot.sender_id"] = "\(invocation.senderID)"
            logger.error("\(error)")
            throw error
        }
    }

    private func run(name: String, invocation: ActionInvocation) async throws(ActionError) -> AgentReply {
        guard let action = actions[name] else {
            throw ActionError(.unknownAction, action: name, "no such action (loaded: \(actionNames.joined(separator: ", ")))")
        }
        let values = try Self.arguments(for: action, invocation: invocation)
        let function = action.function
        let conversation = invocation.senderID
        let timeout = action.timeout ?? configuration.callTimeout
        let outcome: NativeFunction.Outcome
        do {
            outcome = try await pool.run(deadline: timeout) {
                try function.call(values, conversation: conversation)
            }
        } catch let error as ActionError {
            throw error.named(name)
        } catch let error as WorkerPoolError where error == .deadlineExceeded {
            throw ActionError(.deadline, action: name, "\(function.symbol) did not return within \(timeout); sent the fallback")
        } catch {
            throw ActionError(.deadline, action: name, "\(function.symbol) could not run: \(error)")
        }
        return Self.reply(for: action, outcome: outcome)
    }

    /// Converts the action's argument sources in `invocation` to C values.
    /// - Throws: ``ActionError/Code/argument`` naming the action, the position, the source and the type.
    public static func arguments(for action: NativeAction, invocation: ActionInvocation) throws(ActionError) -> [FFIValue] {
        let types = action.function.signature.parameters.filter { $0 != .say }
        var values: [FFIValue] = []
        values.reserveCapacity(types.count)
        for (i, (source, type)) in zip(action.arguments, types).enumerated() {
            let problem: String
            do {
                let json = try source.value(in: invocation)
                do {
                    values.append(try FFIValue.convert(json, to: type))
                    continue
                } catch {
                    problem = error.message
                }
            } catch {
                problem = error.message
            }
            throw ActionError(.argument, action: action.name, "argument \(i + 1) (\(source), \(type)): \(problem)")
        }
        return values
    }

    /// The reply for a finished call: the slot event, the `say` messages and the template.
    public static func reply(for action: NativeAction, outcome: NativeFunction.Outcome) -> AgentReply {
        var events: [JSONValue] = []
        if let slot = action.slot {
            events.append(["event": "slot", "name": .string(slot), "value": outcome.value.json])
        }
        var responses: [JSONValue] = outcome.said.map { ["text": .string($0)] }
        if let reply = action.reply, outcome.value != .cstring(nil) {
            responses.append(["text": .string(reply.render(outcome.value))])
        }
        return AgentReply(events: events, responses: responses)
    }
}
