/// `parley ffi-call LIB SYMBOL SIGNATURE ARGS...`: call any exported function from the command line, with the
/// same signature parser and value converter as manifests. For plugin authors bringing up a new library.
public enum FFICall {
    /// A prepared command-line call: the bound function and its converted arguments.
    public struct Prepared: Sendable {
        /// The bound function.
        public let function: NativeFunction
        /// The converted arguments (one per non-`say` parameter).
        public let arguments: [FFIValue]
    }

    /// Parses the signature, opens the library, resolves the symbol and converts the words.
    /// - Parameters:
    ///   - library: A path (`./libx.so`, `/abs/libx.so`) or a soname (`libm.so.6`).
    ///   - symbol: The exported function.
    ///   - signature: For example `double(double,double)`.
    ///   - arguments: One word per non-`say` parameter (`say` messages are printed instead).
    ///   - freeFunction: Optional function that frees a returned string.
    /// - Throws: ``ActionError`` naming the problem (signature, library, symbol, argument N).
    public static func prepare(
        library: String, symbol: String, signature: String, arguments: [String], freeFunction: String? = nil
    ) throws(ActionError) -> Prepared {
        let parsed: FFISignature
        do {
            parsed = try FFISignature(parsing: signature)
        } catch {
            throw ActionError(.signature, error.description)
        }
        let types = parsed.parameters.filter { $0 != .say }
        guard arguments.count == types.count else {
            throw ActionError(
                .signature,
                "signature \(parsed) takes \(types.count) argument\(types.count == 1 ? "" : "s")"
                    + (types.count != parsed.parameters.count ? " besides say" : "") + ", got \(arguments.count)")
        }
        var values: [FFIValue] = []
        for (i, (word, type)) in zip(arguments, types).enumerated() {
            do {
                values.append(try FFIValue.convert(argument: word, to: type))
            } catch {
                throw ActionError(.argument, "argument \(i + 1) (\(type)): \(error.message)")
            }
        }
        let function = try NativeFunction(library: library, symbol: symbol, signature: parsed, freeFunction: freeFunction)
        return Prepared(function: function, arguments: values)
    }

    /// Calls once and returns the lines to print: one `say: TEXT` line per `say` call, then the result as text
    /// (nothing for `void`, `NULL` for a null string).
    public static func run(
        library: String, symbol: String, signature: String, arguments: [String], freeFunction: String? = nil
    ) throws(ActionError) -> [String] {
        let prepared = try prepare(library: library, symbol: symbol, signature: signature, arguments: arguments, freeFunction: freeFunction)
        let outcome = try prepared.function.call(prepared.arguments, conversation: "ffi-call")
        var lines = outcome.said.map { "say: \($0)" }
        switch outcome.value {
        case .void: break
        case .cstring(nil): lines.append("NULL")
        default: lines.append(outcome.value.text)
        }
        return lines
    }
}
