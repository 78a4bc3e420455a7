import Foundation
import ParleyJSON
import ParleyYAML

/// One native action bound by a manifest: a C function, how to fill its arguments and what to do with its
/// result. Everything is checked and the `ffi_cif` prepared when the manifest loads.
public struct NativeAction: Sendable {
    /// The action name agents request (`{"event":"action","name":…}`).
    public let name: String
    /// The bound function.
    public let function: NativeFunction
    /// One source per non-`say` parameter, in order.
    public let arguments: [ArgumentSource]
    /// The slot set to the result, if any.
    public let slot: String?
    /// The reply sent after the call, if any.
    public let reply: ResponseTemplate?
    /// This action's deadline; `nil` uses the runner's ``NativeActionRunner/Configuration/callTimeout``.
    public let timeout: Duration?

    /// Creates an action after checking that the sources fit the signature.
    /// - Throws: ``ActionError`` (`signature`, `argument`) naming the action and the position.
    public init(
        name: String, function: NativeFunction, arguments: [ArgumentSource], slot: String? = nil,
        reply: ResponseTemplate? = nil, timeout: Duration? = nil
    ) throws(ActionError) {
        let signature = function.signature
        let valueTypes = signature.parameters.filter { $0 != .say }
        guard arguments.count == valueTypes.count else {
            let says = signature.parameters.count - valueTypes.count
            throw ActionError(
                .signature, action: name,
                "signature \(signature) takes \(valueTypes.count) argument\(valueTypes.count == 1 ? "" : "s")"
                    + (says > 0 ? " (not counting say, which Parley fills in)" : "") + " but args lists \(arguments.count)")
        }
        for (i, (source, type)) in zip(arguments, valueTypes).enumerated() {
            if case .literal(let value) = source {
                do {
                    _ = try FFIValue.convert(value, to: type)
                } catch {
                    throw ActionError(.argument, action: name, "argument \(i + 1) (\(source), \(type)): \(error.message)")
                }
            }
        }
        if signature.returnType == .void, slot != nil {
            throw ActionError(.signature, action: name, "slot '\(slot ?? "")' cannot be set: the function returns void")
        }
        if let reply, signature.returnType == .void, reply.usesResult {
            throw ActionError(.signature, action: name, "reply '\(reply)' uses {result} but the function returns void")
        }
        if let reply, reply.usesNumberFormat, ![.double, .int32, .int64].contains(signature.returnType) {
            throw ActionError(.signature, action: name, "reply '\(reply)' formats {result} as a number but the function returns \(signature.returnType)")
        }
        self.name = name
        self.function = function
        self.arguments = arguments
        self.slot = slot
        self.reply = reply
        self.timeout = timeout
    }
}

/// A manifest of native actions, loaded from YAML.
///
/// ```yaml
/// library: libparley_actions.so        # default for every action (optional)
/// actions:
///   action_tip:
///     symbol: parley_tip                # default: the action name
///     signature: double(double,int32)
///     args: [slot:amount, slot:percent]
///     slot: tip                         # optional: set this slot to the result
///     reply: "Tip: {result:.2f}"        # optional: send this text
///   action_pow:
///     library: libm.so.6                # a bare soname is searched like dlopen does
///     symbol: pow
///     signature: double(double,double)
///     args: [slot:base, 2]
///     reply: "{result}"
/// ```
///
/// Action keys: `library`, `symbol`, `signature` (required), `args`, `slot`, `reply`, `free` (function that
/// frees returned strings), `timeout` (seconds). A `library` containing `/` is relative to the manifest's
/// folder; a bare name is taken from the manifest's folder when such a file exists there, otherwise from the
/// system search path (`libm.so.6`).
public struct ActionManifest: Sendable {
    /// The file the manifest came from (as given to ``load(path:)``).
    public let path: String
    /// The actions, in file order.
    public let actions: [NativeAction]

    /// Creates a manifest from already-bound actions (tests, embedding).
    public init(path: String = "<memory>", actions: [NativeAction]) {
        self.path = path
        self.actions = actions
    }

    /// The action with that name.
    public func action(named name: String) -> NativeAction? { actions.first { $0.name == name } }

    /// Reads, checks and binds the manifest at `path`: every library opened, every symbol resolved, every
    /// signature parsed and its `ffi_cif` prepared, every argument source and literal checked.
    /// - Throws: ``ActionError`` with code ``ActionError/Code/manifest`` (or `library`, `symbol`, …) whose
    ///   message lists every problem as `FILE:LINE:COLUMN: KEY.PATH: what is wrong`.
    public static func load(path: String) throws(ActionError) -> ActionManifest {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ActionError(.manifest, "cannot read action manifest \(path): \(error.localizedDescription)")
        }
        let directory = (path as NSString).deletingLastPathComponent
        return try parse(yaml: text, path: path, baseDirectory: directory.isEmpty ? "." : directory)
    }

    /// Checks and binds a manifest given as text. `path` is only used in messages; relative library paths are
    /// resolved against `baseDirectory`.
    public static func parse(yaml: String, path: String, baseDirectory: String) throws(ActionError) -> ActionManifest {
        var reader = ManifestReader(file: path, baseDirectory: baseDirectory)
        let actions = reader.read(yaml)
        if !reader.problems.isEmpty {
            var error = ActionError(reader.problems[0].code, reader.problems.map(\.text).joined(separator: "\n"))
            let actions = Set(reader.problems.map(\.action))
            if actions.count == 1 { error.action = actions.first ?? nil }
            throw error
        }
        return ActionManifest(path: path, actions: actions)
    }
}

/// Walks the YAML tree, collecting every problem with its key path instead of stopping at the first one.
private struct ManifestReader {
    struct Problem {
        var code: ActionError.Code
        var action: String?
        var text: String
    }

    let file: String
    let baseDirectory: String
    /// Where each key path starts (the shared YAML reader's positions).
    var document: YAMLDocument
    var problems: [Problem] = []
    var libraries: [String: NativeLibrary] = [:]
    var failedLibraries: Set<String> = []

    init(file: String, baseDirectory: String) {
        self.file = file
        self.baseDirectory = baseDirectory
        self.document = YAMLDocument(file: file)
    }

    /// A problem at `keyPath` (located by the YAML reader: the key's line and column, or its mapping's).
    mutating func report(_ keyPath: String, _ message: String, action: String? = nil) {
        report(.manifest, keyPath, message, action: action)
    }

    mutating func report(_ code: ActionError.Code, _ keyPath: String, _ message: String, action: String? = nil) {
        let error = document.locate(ConfigError(file: file, keyPath: keyPath == "(top level)" ? "" : keyPath, message: message))
        var location = file
        if let line = error.line { location += ":\(line):\(error.column ?? 1)" }
        problems.append(Problem(code: code, action: action, text: "\(location): \(keyPath): \(message)"))
    }

    mutating func read(_ yaml: String) -> [NativeAction] {
        do {
            // Action manifests take their text verbatim: no `${NAME}` substitution.
            document = try ConfigParser(file: file, substitutesEnvironment: false).parseDocument(yaml)
        } catch {
            problems.append(Problem(code: .manifest, text: "\(file): not valid YAML: \(error.message)"))
            return []
        }
        let root = document.root
        guard let root, case .mapping(let top) = root else {
            report("(top level)", "expected a mapping with an 'actions' key")
            return []
        }
        var defaultLibrary: String?
        var actionsNode: ConfigNode?
        for (key, value) in top {
            switch key {
            case "library":
                if let s = string(value, "library") { defaultLibrary = s }
            case "actions":
                actionsNode = value
            default:
                report(key, "unknown key (expected: library, actions)")
            }
        }
        guard let actionsNode else {
            report("actions", "missing (a mapping from action name to its binding)")
            return []
        }
        guard case .mapping(let actionMap) = actionsNode else {
            report("actions", "expected a mapping from action name to its binding, got \(kind(actionsNode))")
            return []
        }
        var actions: [NativeAction] = []
        for (name, body) in actionMap {
            if let action = readAction(name: name, body: body, defaultLibrary: defaultLibrary) {
                actions.append(action)
            }
        }
        return actions
    }

    mutating func readAction(name: String, body: ConfigNode, defaultLibrary: String?) -> NativeAction? {
        let base = "actions.\(name)"
        guard case .mapping(let fields) = body else {
            report(base, "expected a mapping (library, symbol, signature, args, slot, reply, free, timeout), got \(kind(body))", action: name)
            return nil
        }
        var library = defaultLibrary
        var symbol: String?
        var signatureText: String?
        var argumentNodes: [ConfigNode] = []
        var hasArgs = false
        var slot: String?
        var reply: ResponseTemplate?
        var free: String?
        var timeout: Duration?
        let before = problems.count
        for (key, value) in fields {
            let keyPath = "\(base).\(key)"
            switch key {
            case "library":
                if let s = string(value, keyPath) { library = s }
            case "symbol":
                symbol = string(value, keyPath)
            case "signature":
                signatureText = string(value, keyPath)
            case "args":
                hasArgs = true
                if case .sequence(let items) = value {
                    argumentNodes = items
                } else if case .scalar(let scalar) = value, scalar.text.isEmpty || scalar.isNull {
                    argumentNodes = []
                } else {
                    report(keyPath, "expected a list of argument sources, got \(kind(value))", action: name)
                }
            case "slot":
                slot = string(value, keyPath)
            case "reply":
                if let s = string(value, keyPath) {
                    do { reply = try ResponseTemplate(s) } catch { report(keyPath, error.message, action: name) }
                }
            case "free":
                free = string(value, keyPath)
            case "timeout":
                if case .scalar(let scalar) = value, scalar.plain, let seconds = scalar.double, seconds > 0, seconds.isFinite {
                    timeout = .milliseconds(Int64((seconds * 1000).rounded()))
                } else {
                    report(keyPath, "expected a positive number of seconds, got \(kind(value))", action: name)
                }
            default:
                report(keyPath, "unknown key (expected: library, symbol, signature, args, slot, reply, free, timeout)", action: name)
            }
        }
        guard let libraryText = library else {
            report("\(base).library", "missing (set it on the action or at the top level)", action: name)
            return nil
        }
        guard let signatureString = signatureText else {
            if problems.count == before { report("\(base).signature", "missing (for example double(double,int32))", action: name) }
            return nil
        }
        let signature: FFISignature
        do {
            signature = try FFISignature(parsing: signatureString)
        } catch {
            report(.signature, "\(base).signature", error.description, action: name)
            return nil
        }
        // Sources: either one per non-say parameter, or one per parameter with 'say' at every say position.
        var sources: [ArgumentSource] = []
        var sourcePaths: [String] = []
        let explicitSay = argumentNodes.count == signature.parameters.count && signature.parameters.contains(.say)
        let valueTypes = signature.parameters.filter { $0 != .say }
        for (i, node) in argumentNodes.enumerated() {
            let keyPath = "\(base).args[\(i)]"
            let parameter = i < signature.parameters.count ? (explicitSay ? signature.parameters[i] : nil) : nil
            if case .scalar(let scalar) = node, scalar.text == "say", Self.isString(scalar) {
                if parameter != .say {
                    report(.signature, keyPath, "'say' must be at a say position of \(signature) (or leave say out of args)", action: name)
                }
                continue
            }
            if parameter == .say {
                report(.signature, keyPath, "parameter \(i + 1) of \(signature) is say: write 'say' here or leave say out of args", action: name)
                continue
            }
            if let source = readSource(node, keyPath, action: name) {
                sources.append(source)
                sourcePaths.append(keyPath)
            }
        }
        if problems.count > before { return nil }
        if sources.count != valueTypes.count {
            let says = signature.parameters.count - valueTypes.count
            report(
                .signature, hasArgs ? "\(base).args" : base,
                "signature \(signature) takes \(valueTypes.count) argument\(valueTypes.count == 1 ? "" : "s")"
                    + (says > 0 ? " besides say" : "") + ", args lists \(argumentNodes.count)",
                action: name)
            return nil
        }
        for (i, (source, type)) in zip(sources, valueTypes).enumerated() {
            if case .literal(let value) = source {
                do {
                    _ = try FFIValue.convert(value, to: type)
                } catch {
                    report(.argument, sourcePaths[i], "argument \(i + 1) (\(type) parameter): \(error.message)", action: name)
                }
            }
        }
        if problems.count > before { return nil }
        guard let handle = open(libraryText, keyPath: "\(base).library", action: name) else {
            return nil
        }
        do {
            let function = try NativeFunction(library: handle, symbol: symbol ?? name, signature: signature, freeFunction: free)
            return try NativeAction(name: name, function: function, arguments: sources, slot: slot, reply: reply, timeout: timeout)
        } catch {
            let keyPath = error.code == .symbol ? "\(base).\(free != nil && error.message.contains("'\(free ?? "")'") ? "free" : "symbol")" : base
            report(error.code, keyPath, error.message, action: name)
            return nil
        }
    }

    /// Whether a scalar is a string by the YAML core schema (quoted, or plain and not null/bool/number).
    static func isString(_ scalar: ConfigScalar) -> Bool {
        !scalar.plain || (!scalar.isNull && scalar.bool == nil && scalar.int == nil && scalar.double == nil)
    }

    mutating func readSource(_ node: ConfigNode, _ keyPath: String, action: String) -> ArgumentSource? {
        guard case .scalar(let scalar) = node else {
            report(keyPath, "expected an argument source such as slot:NAME or a number, got \(kind(node))", action: action)
            return nil
        }
        if Self.isString(scalar) {
            do {
                return try ArgumentSource(parsing: scalar.text)
            } catch {
                report(keyPath, error.message, action: action)
                return nil
            }
        }
        if scalar.isNull {
            report(keyPath, "null is not an argument source", action: action)
            return nil
        }
        if let b = scalar.bool { return .literal(.bool(b)) }
        if let i = scalar.int { return .literal(.int(i)) }
        let digits = scalar.text.filter { $0 != "_" && $0 != "+" && $0 != "-" }
        if !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) {
            report(.argument, keyPath, "integer literal \(scalar.text) is out of range for int64", action: action)
            return nil
        }
        if let d = scalar.double { return .literal(.double(d)) }
        return nil
    }

    mutating func open(_ library: String, keyPath: String, action: String) -> NativeLibrary? {
        let resolved = resolve(library)
        if let handle = libraries[resolved] { return handle }
        if failedLibraries.contains(resolved) {
            report(.library, keyPath, "library \(resolved) could not be opened (see above)", action: action)
            return nil
        }
        do {
            let handle = try NativeLibrary.open(resolved)
            libraries[resolved] = handle
            return handle
        } catch {
            failedLibraries.insert(resolved)
            report(.library, keyPath, error.message, action: action)
            return nil
        }
    }

    /// `dir/x.so` and `/abs/x.so` as files; a bare `x.so` from the manifest's folder when it exists there,
    /// otherwise as a soname for the dynamic linker's search.
    func resolve(_ library: String) -> String {
        if library.hasPrefix("/") { return library }
        let local = baseDirectory == "." ? "./\(library)" : "\(baseDirectory)/\(library)"
        if library.contains("/") { return local }
        return FileManager.default.fileExists(atPath: local) ? local : library
    }

    mutating func string(_ node: ConfigNode, _ keyPath: String) -> String? {
        guard case .scalar(let scalar) = node, Self.isString(scalar) else {
            report(keyPath, "expected a string, got \(kind(node))")
            return nil
        }
        if scalar.text.isEmpty {
            report(keyPath, "must not be empty")
            return nil
        }
        return scalar.text
    }

    func kind(_ node: ConfigNode) -> String {
        switch node {
        case .mapping: "a mapping"
        case .sequence: "a list"
        case .scalar(let s):
            if Self.isString(s) {
                "the string \"\(s.text)\""
            } else if s.isNull {
                "null"
            } else if s.bool != nil {
                "the bool \(s.text)"
            } else if s.int != nil {
                "the integer \(s.text)"
            } else {
                "the number \(s.text)"
            }
        }
    }
}
