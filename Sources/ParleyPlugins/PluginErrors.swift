import CParley

/// Why a plugin could not be loaded. Each error is one line naming the file and the fix, e.g.
/// `plugin /srv/x.so: ABI major 2, host supports 1; rebuild it against this host's include/parley.h`.
///
/// The server refuses to start when any configured plugin fails to load.
public struct PluginLoadError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The failure class; compare with the static members (`error.code == .fileNotFound`).
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Value: String, Hashable, Sendable {
            case fileNotFound, notSharedObject, cannotOpen, entrySymbolMissing, abiMajorMismatch, abiMinorTooNew
            case initReturnedNull, initFailed, invalidDefinition, duplicateName, wrongKind, hostClosed, crashedWhileLoading
        }
        fileprivate let value: Value
        /// The code's name.
        public var description: String { value.rawValue }

        /// The path does not exist.
        public static let fileNotFound = Code(value: .fileNotFound)
        /// The file is not an ELF shared object.
        public static let notSharedObject = Code(value: .notSharedObject)
        /// `dlopen` refused the file (missing dependency, wrong architecture, executable, …).
        public static let cannotOpen = Code(value: .cannotOpen)
        /// `parley_plugin_init_v1` is not exported.
        public static let entrySymbolMissing = Code(value: .entrySymbolMissing)
        /// The plugin's ABI major differs from the host's.
        public static let abiMajorMismatch = Code(value: .abiMajorMismatch)
        /// The plugin's ABI minor is newer than the host's.
        public static let abiMinorTooNew = Code(value: .abiMinorTooNew)
        /// The entry point returned NULL.
        public static let initReturnedNull = Code(value: .initReturnedNull)
        /// The entry point did not return before the load deadline.
        public static let initFailed = Code(value: .initFailed)
        /// The returned `parley_plugin_def` is unusable (too small, NULL name or handle, unknown kind).
        public static let invalidDefinition = Code(value: .invalidDefinition)
        /// Another loaded plugin already has this name.
        public static let duplicateName = Code(value: .duplicateName)
        /// An agent configured as a formatter or the other way round.
        public static let wrongKind = Code(value: .wrongKind)
        /// The plugin host was shut down.
        public static let hostClosed = Code(value: .hostClosed)
        /// Its host process (`isolation: process`, `parley plugins check --isolated`) died or stopped answering
        /// while loading it: a crash in the plugin's entry point.
        public static let crashedWhileLoading = Code(value: .crashedWhileLoading)
    }

    /// The failure class.
    public var code: Code
    /// The plugin file as configured.
    public var path: String
    /// What is wrong and how to fix it (without the `plugin PATH:` prefix).
    public var reason: String

    /// An error for the plugin file `path`.
    public init(code: Code, path: String, reason: String) {
        self.code = code
        self.path = path
        self.reason = reason
    }

    /// `plugin PATH: REASON`, one line.
    public var description: String { "plugin \(path): \(reason)" }
}

/// Why a call into a loaded plugin gave no usable reply. The dispatcher logs it and sends the configured
/// fallback response; the description names the plugin, e.g.
/// `plugin mirror: no reply within 10 s; the late reply will be dropped`.
public struct PluginCallError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The failure class; compare with the static members.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Value: String, Hashable, Sendable {
            case deadlineExceeded, cancelled, invalidJSON, invalidShape, pluginFailed, protocolViolation, closed, crashed, unavailable
        }
        fileprivate let value: Value
        /// The code's name.
        public var description: String { value.rawValue }

        /// No completion before the call's deadline; the plugin's cancel hook was called.
        public static let deadlineExceeded = Code(value: .deadlineExceeded)
        /// The waiting task was cancelled; the plugin's cancel hook was called.
        public static let cancelled = Code(value: .cancelled)
        /// The reply is not valid JSON.
        public static let invalidJSON = Code(value: .invalidJSON)
        /// The reply is JSON but not the documented shape (e.g. `responses` not an array of objects).
        public static let invalidShape = Code(value: .invalidShape)
        /// The plugin reported a failure (a negative status from `handle` or `complete`).
        public static let pluginFailed = Code(value: .pluginFailed)
        /// The plugin broke the calling contract (`PARLEY_OK` without `complete`, NULL json pointer, …).
        public static let protocolViolation = Code(value: .protocolViolation)
        /// The plugin host is shut down.
        public static let closed = Code(value: .closed)
        /// The plugin's host process died during the call (`isolation: process`).
        public static let crashed = Code(value: .crashed)
        /// The plugin's host process is not running: restarting after a crash, or the circuit breaker is open.
        public static let unavailable = Code(value: .unavailable)
    }

    /// The failure class.
    public var code: Code
    /// The plugin's name.
    public var plugin: String
    /// What went wrong (without the `plugin NAME:` prefix).
    public var reason: String
    /// The status the plugin reported, for ``Code/pluginFailed``.
    public var status: Int32?

    /// An error for the plugin named `plugin`.
    public init(code: Code, plugin: String, reason: String, status: Int32? = nil) {
        self.code = code
        self.plugin = plugin
        self.reason = reason
        self.status = status
    }

    /// `plugin NAME: REASON`, one line.
    public var description: String { "plugin \(plugin): \(reason)" }
}

/// The C name of a status code (`PARLEY_E_EXPIRED`), or its number when unknown.
public func parleyStatusName(_ status: Int32) -> String {
    switch status {
    case PARLEY_OK.rawValue: "PARLEY_OK"
    case PARLEY_PENDING.rawValue: "PARLEY_PENDING"
    case PARLEY_E_INVALID.rawValue: "PARLEY_E_INVALID"
    case PARLEY_E_BAD_JSON.rawValue: "PARLEY_E_BAD_JSON"
    case PARLEY_E_UNSUPPORTED.rawValue: "PARLEY_E_UNSUPPORTED"
    case PARLEY_E_INTERNAL.rawValue: "PARLEY_E_INTERNAL"
    case PARLEY_E_EXPIRED.rawValue: "PARLEY_E_EXPIRED"
    case PARLEY_E_ALREADY_COMPLETED.rawValue: "PARLEY_E_ALREADY_COMPLETED"
    case PARLEY_E_CANCELLED.rawValue: "PARLEY_E_CANCELLED"
    case PARLEY_E_CLOSED.rawValue: "PARLEY_E_CLOSED"
    case PARLEY_E_BUSY.rawValue: "PARLEY_E_BUSY"
    case PARLEY_E_VERSION.rawValue: "PARLEY_E_VERSION"
    default: "status \(status)"
    }
}
