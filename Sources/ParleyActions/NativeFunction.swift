internal import CFFI
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A shared library opened for native actions.
///
/// Libraries are opened with `RTLD_NOW | RTLD_LOCAL` (every symbol resolved up front, none leaking into
/// other libraries) and never closed: a function pointer or a `say` closure may still be in use on a worker
/// thread that outlived its deadline.
public struct NativeLibrary: @unchecked Sendable {
    // A dlopen handle is an immutable token that dlsym may use from any thread.
    let handle: UnsafeMutableRawPointer
    /// The path or soname as passed to `dlopen`.
    public let path: String

    /// Opens `path`: a file path, or a bare soname such as `libm.so.6` that the dynamic linker searches for.
    /// - Throws: ``ActionError/Code/library`` with the linker's message.
    public static func open(_ path: String) throws(ActionError) -> NativeLibrary {
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            throw ActionError(.library, "cannot open library \(path): \(lastDLError() ?? "unknown error")")
        }
        return NativeLibrary(handle: handle, path: path)
    }

    /// The address of an exported symbol.
    /// - Throws: ``ActionError/Code/symbol`` naming the symbol and the library.
    public func symbol(_ name: String) throws(ActionError) -> UnsafeMutableRawPointer {
        _ = dlerror()
        guard let address = dlsym(handle, name) else {
            throw ActionError(.symbol, "symbol '\(name)' not found in \(path)\(lastDLError().map { " (\($0))" } ?? "")")
        }
        return address
    }
}

private func lastDLError() -> String? {
    guard let message = dlerror() else { return nil }
    return String(cString: message)
}

/// Reads an `ffi_arg`-widened return slot.
private typealias ReturnSlot = UInt64

/// A C function bound to a parsed ``FFISignature``, with its `ffi_cif` prepared once and reused by every call.
///
/// ``call(_:conversation:)`` blocks in foreign code: run it on a ``ParleyWorkers/WorkerPool``, never on an
/// event loop. Calls may run concurrently (the cif is read-only after preparation); whether the C function
/// itself is thread-safe is the library's business.
///
/// - Important: libffi trusts the signature. A signature that does not match the C declaration is undefined
///   behaviour (a wrong result or a crash); only load manifests you trust.
public final class NativeFunction: @unchecked Sendable {
    // @unchecked: every stored property is immutable after init; the cif and the type arrays are written
    // by ffi_prep_cif in init and only read afterwards (libffi does not mutate a prepared cif in ffi_call).

    /// The library the symbol came from.
    public let library: NativeLibrary
    /// The symbol name.
    public let symbol: String
    /// The declared signature.
    public let signature: FFISignature
    /// The name of the function that frees returned strings, if any.
    public let freeFunctionName: String?

    private let function: @convention(c) () -> Void
    private let freeFunction: (@convention(c) (UnsafeMutableRawPointer?) -> Void)?
    private let cif: UnsafeMutablePointer<ffi_cif>
    private let argumentTypes: UnsafeMutablePointer<UnsafeMutablePointer<ffi_type>?>
    /// The cif of `void (*)(const char *)`, for `say` closures; nil when the signature has no `say`.
    private let sayCif: UnsafeMutablePointer<ffi_cif>?
    private let sayArgumentTypes: UnsafeMutablePointer<UnsafeMutablePointer<ffi_type>?>?

    /// Resolves `symbol` (and `freeFunction`) in `library` and prepares the call interface.
    /// - Parameters:
    ///   - library: An opened library.
    ///   - symbol: The exported function.
    ///   - signature: Its C signature in Parley's closed type set.
    ///   - freeFunction: A function `void f(void *)` in the same library (or its dependencies, e.g. `free`) that
    ///     releases strings the function returns; `nil` when returned strings are static or owned by the library.
    /// - Throws: ``ActionError`` (`symbol`, `signature`) naming what is missing.
    public init(library: NativeLibrary, symbol: String, signature: FFISignature, freeFunction: String? = nil) throws(ActionError) {
        self.library = library
        self.symbol = symbol
        self.signature = signature
        self.freeFunctionName = freeFunction
        let address = try library.symbol(symbol)
        self.function = unsafeBitCast(address, to: (@convention(c) () -> Void).self)
        if let freeFunction {
            if signature.returnType != .cstring {
                throw ActionError(.signature, "free function '\(freeFunction)' given but the function returns \(signature.returnType), not cstring")
            }
            let freeAddress = try library.symbol(freeFunction)
            self.freeFunction = unsafeBitCast(freeAddress, to: (@convention(c) (UnsafeMutableRawPointer?) -> Void).self)
        } else {
            self.freeFunction = nil
        }

        let count = signature.parameters.count
        let types = UnsafeMutablePointer<UnsafeMutablePointer<ffi_type>?>.allocate(capacity: max(1, count))
        for (i, parameter) in signature.parameters.enumerated() { types[i] = parameter.ffiType }
        let cif = UnsafeMutablePointer<ffi_cif>.allocate(capacity: 1)
        let status = ffi_prep_cif(cif, cffi_default_abi(), UInt32(count), signature.returnType.ffiType, types)
        guard status == FFI_OK else {
            types.deallocate()
            cif.deallocate()
            throw ActionError(.signature, "libffi refused signature \(signature) (ffi_prep_cif status \(status.rawValue))")
        }
        self.cif = cif
        self.argumentTypes = types

        if signature.parameters.contains(.say) {
            let sayTypes = UnsafeMutablePointer<UnsafeMutablePointer<ffi_type>?>.allocate(capacity: 1)
            sayTypes[0] = cffi_type_pointer()
            let sayCif = UnsafeMutablePointer<ffi_cif>.allocate(capacity: 1)
            guard ffi_prep_cif(sayCif, cffi_default_abi(), 1, cffi_type_void(), sayTypes) == FFI_OK else {
                sayTypes.deallocate()
                sayCif.deallocate()
                throw ActionError(.callback, "libffi could not prepare the say callback interface")
            }
            self.sayCif = sayCif
            self.sayArgumentTypes = sayTypes
        } else {
            self.sayCif = nil
            self.sayArgumentTypes = nil
        }
    }

    /// Opens `library` and binds `symbol`: the one-line form used by `parley ffi-call`.
    public convenience init(library path: String, symbol: String, signature: FFISignature, freeFunction: String? = nil) throws(ActionError) {
        try self.init(library: NativeLibrary.open(path), symbol: symbol, signature: signature, freeFunction: freeFunction)
    }

    deinit {
        cif.deallocate()
        argumentTypes.deallocate()
        sayCif?.deallocate()
        sayArgumentTypes?.deallocate()
    }

    /// What one call produced.
    public struct Outcome: Sendable, Hashable {
        /// The converted return value (``FFIValue/void`` for `void`).
        public var value: FFIValue
        /// The texts passed to `say`, in call order.
        public var said: [String]
    }

    /// Calls the function.
    ///
    /// - Parameters:
    ///   - arguments: One value per non-`say` parameter, in order, each already of the parameter's type.
    ///     `cstring` arguments are copied into a buffer that lives exactly as long as the call.
    ///   - conversation: The conversation the call serves; every `say` parameter receives a fresh libffi
    ///     closure whose user data is this call's context, so concurrent calls never mix their messages.
    ///     The closure is freed when the call returns: a library must not keep `say` for later.
    /// - Returns: The result and the `say` messages.
    /// - Throws: ``ActionError`` (`argument` for a count or type mismatch, `result` for a returned string that is
    ///   not UTF-8, `callback` for a `say` text that is not UTF-8 or a closure that cannot be allocated).
    public func call(_ arguments: [FFIValue], conversation: String = "") throws(ActionError) -> Outcome {
        let parameters = signature.parameters
        let valueCount = signature.valueParameterCount
        guard arguments.count == valueCount else {
            throw ActionError(.argument, "\(symbol) takes \(valueCount) argument\(valueCount == 1 ? "" : "s") (\(signature)), got \(arguments.count)")
        }
        var stringBytes: [UInt8] = []
        var stringOffsets: [Int] = []
        var valueIndex = 0
        for parameter in parameters where parameter != .say {
            let argument = arguments[valueIndex]
            valueIndex += 1
            guard argument.type == parameter else {
                throw ActionError(.argument, "argument \(valueIndex) of \(symbol) must be \(parameter), got \(argument.type)")
            }
            if case .cstring(let s) = argument {
                guard let s else { throw ActionError(.argument, "argument \(valueIndex) of \(symbol): NULL strings cannot be passed") }
                stringOffsets.append(stringBytes.count)
                stringBytes.append(contentsOf: s.utf8)
                stringBytes.append(0)
            }
        }

        // Only calls with a say parameter need a context (and its allocation).
        let context = sayCif == nil ? nil : SayContext(conversation: conversation)
        var closures: [UnsafeMutableRawPointer] = []
        defer { for closure in closures { ffi_closure_free(closure) } }
        var codes: [UnsafeMutableRawPointer] = []
        if let sayCif, let context {
            for _ in 0..<(parameters.count - valueCount) {
                var code: UnsafeMutableRawPointer?
                guard let raw = ffi_closure_alloc(cffi_closure_size(), &code), let code else {
                    throw ActionError(.callback, "libffi could not allocate a say closure")
                }
                closures.append(raw)
                let status = ffi_prep_closure_loc(
                    raw.assumingMemoryBound(to: ffi_closure.self), sayCif, sayTrampoline,
                    Unmanaged.passUnretained(context).toOpaque(), code)
                guard status == FFI_OK else { throw ActionError(.callback, "libffi could not prepare a say closure") }
                codes.append(code)
            }
        }

        let returnSlot: (ReturnSlot, ReturnSlot) = withExtendedLifetime(context) {
            stringBytes.withUnsafeBufferPointer { strings in
                withUnsafeTemporaryAllocation(byteCount: max(8, parameters.count * 8), alignment: 8) { storage in
                    withUnsafeTemporaryAllocation(of: UnsafeMutableRawPointer?.self, capacity: max(1, parameters.count)) { values in
                        var valueIndex = 0
                        var stringIndex = 0
                        var codeIndex = 0
                        let base = storage.baseAddress!
                        for (i, parameter) in parameters.enumerated() {
                            let slot = base + i * 8
                            if parameter == .say {
                                slot.storeBytes(of: codes[codeIndex], as: UnsafeMutableRawPointer.self)
                                codeIndex += 1
                            } else {
                                switch arguments[valueIndex] {
                                case .bool(let b): slot.storeBytes(of: b ? 1 : 0, as: UInt8.self)
                                case .int32(let v): slot.storeBytes(of: v, as: Int32.self)
                                case .int64(let v): slot.storeBytes(of: v, as: Int64.self)
                                case .double(let v): slot.storeBytes(of: v, as: Double.self)
                                case .cstring:
                                    let pointer = strings.baseAddress! + stringOffsets[stringIndex]
                                    slot.storeBytes(of: UnsafeRawPointer(pointer), as: UnsafeRawPointer.self)
                                    stringIndex += 1
                                case .void: break
                                }
                                valueIndex += 1
                            }
                            values[i] = slot
                        }
                        var result: (ReturnSlot, ReturnSlot) = (0, 0)
                        withUnsafeMutableBytes(of: &result) { r in
                            ffi_call(cif, function, r.baseAddress, values.baseAddress)
                        }
                        return result
                    }
                }
            }
        }

        let value = try convertResult(returnSlot.0)
        let said = try context?.finish() ?? []
        return Outcome(value: value, said: said)
    }

    private func convertResult(_ raw: ReturnSlot) throws(ActionError) -> FFIValue {
        switch signature.returnType {
        case .void, .say: return .void
        case .bool: return .bool(UInt8(truncatingIfNeeded: raw) != 0)
        case .int32: return .int32(Int32(truncatingIfNeeded: raw))
        case .int64: return .int64(Int64(bitPattern: raw))
        case .double: return .double(Double(bitPattern: raw))
        case .cstring:
            guard let pointer = UnsafeMutableRawPointer(bitPattern: UInt(raw)) else { return .cstring(nil) }
            let text = String(validatingCString: pointer.assumingMemoryBound(to: CChar.self))
            freeFunction?(pointer)
            guard let text else {
                throw ActionError(.result, "\(symbol) returned a string that is not valid UTF-8")
            }
            return .cstring(text)
        }
    }
}

/// The user data of one call's `say` closures: the conversation and the messages sent so far.
final class SayContext: Sendable {
    let conversation: String
    private let state = Mutex<(messages: [String], invalid: Int?)>(([], nil))

    init(conversation: String) { self.conversation = conversation }

    /// Records one `say(text)`; safe from any thread the library calls it on.
    func receive(_ text: UnsafePointer<CChar>?) {
        state.withLock { state in
            guard let text else { return }  // say(NULL) sends nothing
            if let message = String(validatingCString: text) {
                state.messages.append(message)
            } else if state.invalid == nil {
                state.invalid = state.messages.count + 1
            }
        }
    }

    func finish() throws(ActionError) -> [String] {
        let (messages, invalid) = state.withLock { ($0.messages, $0.invalid) }
        if let invalid { throw ActionError(.callback, "say message \(invalid) is not valid UTF-8") }
        return messages
    }
}

/// The handler behind every `say` closure: `args[0]` points at the `const char *` argument, `userData` is the
/// call's ``SayContext`` (kept alive by the call for as long as the closure exists).
private let sayTrampoline:
    @convention(c) (
        UnsafeMutablePointer<ffi_cif>?, UnsafeMutableRawPointer?, UnsafeMutablePointer<UnsafeMutableRawPointer?>?, UnsafeMutableRawPointer?
    ) -> Void = { _, _, args, userData in
        guard let userData, let args, let first = args[0] else { return }
        let text = first.load(as: UnsafePointer<CChar>?.self)
        Unmanaged<SayContext>.fromOpaque(userData).takeUnretainedValue().receive(text)
    }

extension FFIType {
    /// The libffi type descriptor (`bool` is passed as a byte, `cstring` and `say` as pointers).
    var ffiType: UnsafeMutablePointer<ffi_type> {
        switch self {
        case .void: cffi_type_void()
        case .bool: cffi_type_uint8()
        case .int32: cffi_type_sint32()
        case .int64: cffi_type_sint64()
        case .double: cffi_type_double()
        case .cstring, .say: cffi_type_pointer()
        }
    }
}
