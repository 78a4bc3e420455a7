import ArgumentParser
import Logging
import ParleyActions
import ParleyDispatch
import ParleyWorkers
import ParleyJSON

/// `parley ffi-call LIB SYMBOL SIGNATURE ARGS...`: calls any exported C function with a signature string, using
/// the same parser and converter as action manifests. For plugin authors bringing up a new library.
///
/// `--repeat N` also measures the cost of one call: libffi alone, the worker-pool hop alone, the two together,
/// and a whole manifest action (argument conversion, pool, call, reply) built from the same arguments.
struct FFICallCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ffi-call",
        abstract: "Call an exported C function through libffi, e.g. ffi-call libm.so.6 pow 'double(double,double)' 2 10",
        discussion: """
            Types: void (return only), bool, int32, int64, double, cstring, and say (a parameter of type
            void (*)(const char *) that prints "say: TEXT"; give no argument for it). Numbers are read as JSON
            numbers and range-checked; strings are passed verbatim.
            A wrong signature is undefined behaviour: only call functions whose C declaration you know.
            """
    )

    @Option(name: .customLong("free"), help: "Function in the library that frees a returned string (e.g. free).")
    var freeFunction: String?

    @Option(name: .customLong("repeat"), help: "Also time N calls (and the worker-pool hop) and print ns/call.")
    var repetitions: Int?

    @Argument(help: "Library path (./libx.so) or soname (libm.so.6).")
    var library: String

    @Argument(help: "Exported function name.")
    var symbol: String

    @Argument(help: "Signature, e.g. 'double(double,int32)'.")
    var signature: String

    @Argument(parsing: .captureForPassthrough, help: "One value per non-say parameter.")
    var arguments: [String] = []

    func run() async throws {
        try await execute()
    }

    /// The command's work, callable directly (plain `ParsableCommand.run()` would shadow the async `run` when a
    /// parsed value is run by hand, as the placeholder main does).
    func execute() async throws {
        // ActionError descriptions name the problem; ArgumentParser prints them as "Error: …" and exits 1.
        let prepared = try FFICall.prepare(
            library: library, symbol: symbol, signature: signature, arguments: arguments, freeFunction: freeFunction)
        let outcome = try prepared.function.call(prepared.arguments, conversation: "ffi-call")
        for line in outcome.said { print("say: \(line)") }
        switch outcome.value {
        case .void: break
        case .cstring(nil): print("NULL")
        default: print(outcome.value.text)
        }
        if let repetitions, repetitions > 0 {
            try await Self.measure(prepared, repetitions: repetitions)
        }
    }

    /// Bounded timing loops; prints one line per measured path.
    static func measure(_ prepared: FFICall.Prepared, repetitions n: Int) async throws {
        let clock = ContinuousClock()
        func report(_ label: String, _ elapsed: Duration, _ count: Int) {
            let nanos = Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9
            print("\(label): \(count) calls, \(FFIValue.double((nanos / Double(count) * 10).rounded() / 10).text) ns/call")
        }
        let function = prepared.function
        let arguments = prepared.arguments

        // 1. libffi alone (argument marshalling, ffi_call, result conversion), on this thread.
        for _ in 0..<min(n, 1000) { _ = try function.call(arguments) }
        let direct = try clock.measure { for _ in 0..<n { _ = try function.call(arguments) } }
        report("ffi_call (NativeFunction.call)", direct, n)

        // 2. and 3. the worker-pool hop, empty and with the call; fewer rounds, each awaits a thread switch.
        let pool = WorkerPool(threads: 2)
        let hops = max(1, min(n, 100_000))
        for _ in 0..<min(hops, 1000) { _ = try await pool.run(deadline: .seconds(10)) { 0 } }
        let empty = try await clock.measure { for _ in 0..<hops { _ = try await pool.run(deadline: .seconds(10)) { 0 } } }
        report("worker pool hop (empty body)", empty, hops)
        let pooled = try await clock.measure {
            for _ in 0..<hops { _ = try await pool.run(deadline: .seconds(10)) { try function.call(arguments) } }
        }
        report("worker pool hop + ffi_call", pooled, hops)

        // 4. a whole action: literal sources converted from JSON, pool hop, call, reply with slot event + template.
        let action = try NativeAction(
            name: "bench", function: function, arguments: arguments.map { .literal($0.json) },
            slot: function.signature.returnType == .void ? nil : "result",
            reply: try ResponseTemplate(function.signature.returnType == .void ? "done" : "{result}"))
        let runner = NativeActionRunner(
            manifest: ActionManifest(actions: [action]), pool: pool,
            logger: Logger(label: "parley.ffi-call", factory: { _ in SwiftLogNoOpLogHandler() }))
        let invocation = ActionInvocation(senderID: "bench", slots: [:], latestMessage: ["text": "", "entities": [], "metadata": [:]])
        let whole = try await clock.measure {
            for _ in 0..<hops { _ = try await runner.runAction(named: "bench", invocation: invocation) }
        }
        report("NativeActionRunner.runAction", whole, hops)
        try await pool.shutdown()
    }
}
