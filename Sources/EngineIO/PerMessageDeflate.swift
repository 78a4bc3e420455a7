/// WebSocket permessage-deflate (RFC 7692) settings of an ``EngineIOServer``.
///
/// Set ``EngineIOConfiguration/perMessageDeflate`` to offer it (the default, `nil`, never negotiates it). The
/// server then accepts the first acceptable `permessage-deflate` offer of a client's `Sec-WebSocket-Extensions`
/// header and answers it in the 101 response; clients that offer nothing are served exactly as without it.
/// Only the WebSocket transport compresses; long-polling is unaffected.
///
/// Cost: a connection that exchanges a message at or above ``threshold`` allocates a zlib compressor
/// (about `2^(maxWindowBits+2)` + 128 KiB) and/or decompressor (about `2^maxWindowBits` bytes) on first use and
/// keeps it for the connection's life; connections that only exchange small messages allocate nothing.
public struct PerMessageDeflate: Sendable, Hashable {
    /// Outbound text/binary messages whose payload is smaller than this many bytes are sent uncompressed
    /// (compressing small messages costs more CPU than it saves bytes). Default 1024.
    public var threshold: Int
    /// The server resets its compressor after every message (`server_no_context_takeover` in the response).
    /// Always honoured when the client asks for it. Default false (context takeover: better ratio on
    /// repetitive traffic).
    public var serverNoContextTakeover: Bool
    /// Asks the client to reset its compressor after every message (`client_no_context_takeover` in the
    /// response); the server then resets its decompressor after every message. Default false.
    public var clientNoContextTakeover: Bool
    /// LZ77 window size (base-2 logarithm, 9...15) of the server's compressor; when the client offers
    /// `client_max_window_bits`, the client's window is limited to it too. Default 15. Values outside
    /// 9...15 are clamped.
    public var maxWindowBits: Int
    /// zlib compression level, 1 (fastest) ... 9 (smallest); default 6 (zlib's default). Clamped to 1...9.
    public var compressionLevel: Int

    /// Creates permessage-deflate settings; every parameter has a default.
    /// - Parameters:
    ///   - threshold: smallest payload, in bytes, that is compressed (default 1024).
    ///   - serverNoContextTakeover: reset the server's compressor per message (default false).
    ///   - clientNoContextTakeover: ask the client to reset its compressor per message (default false).
    ///   - maxWindowBits: 9...15 (default 15).
    ///   - compressionLevel: 1...9 (default 6).
    public init(
        threshold: Int = 1024,
        serverNoContextTakeover: Bool = false,
        clientNoContextTakeover: Bool = false,
        maxWindowBits: Int = 15,
        compressionLevel: Int = 6
    ) {
        self.threshold = threshold
        self.serverNoContextTakeover = serverNoContextTakeover
        self.clientNoContextTakeover = clientNoContextTakeover
        self.maxWindowBits = maxWindowBits
        self.compressionLevel = compressionLevel
    }

    var clampedWindowBits: Int { min(15, max(9, maxWindowBits)) }
    var clampedLevel: Int32 { Int32(min(9, max(1, compressionLevel))) }
}

/// The outcome of a permessage-deflate negotiation: what both sides agreed on for one connection.
struct NegotiatedDeflate: Sendable, Equatable {
    /// The server resets its compressor after each message.
    var serverNoContextTakeover: Bool
    /// The client resets its compressor after each message, so the server resets its decompressor.
    var clientNoContextTakeover: Bool
    /// Window bits the server's compressor uses (9...15).
    var serverWindowBits: Int
    /// Window bits the server's decompressor uses (9...15; at least what the client may use).
    var clientWindowBits: Int
    /// Smallest payload that is compressed.
    var threshold: Int
    /// zlib level.
    var level: Int32
    /// The `Sec-WebSocket-Extensions` value of the 101 response.
    var responseHeader: String

    /// Picks the first offer of `headerValues` (every `Sec-WebSocket-Extensions` header of the request) that
    /// the server can honour, per RFC 7692 §7: an offer with an unknown, repeated or invalid parameter is
    /// declined, as is `server_max_window_bits=8` (zlib's raw deflate cannot produce 256-byte windows). Returns
    /// nil when nothing is acceptable (the connection then runs uncompressed).
    static func negotiate(offers headerValues: [String], settings: PerMessageDeflate) -> NegotiatedDeflate? {
        for offer in parseOffers(headerValues) where offer.name == "permessage-deflate" {
            if let accepted = accept(offer.parameters, settings: settings) { return accepted }
        }
        return nil
    }

    /// One extension of an offer: its lowercased name and parameters (name lowercased, value unquoted).
    struct Offer: Equatable {
        var name: String
        var parameters: [(name: String, value: String?)]

        static func == (lhs: Offer, rhs: Offer) -> Bool {
            lhs.name == rhs.name && lhs.parameters.map(\.name) == rhs.parameters.map(\.name)
                && lhs.parameters.map(\.value) == rhs.parameters.map(\.value)
        }
    }

    /// Splits `ext1; a; b=1, ext2` (possibly across several header lines) into offers.
    static func parseOffers(_ headerValues: [String]) -> [Offer] {
        var offers: [Offer] = []
        for value in headerValues {
            for item in value.split(separator: ",") {
                let parts = item.split(separator: ";", omittingEmptySubsequences: false).map { $0.trimmingWhitespace() }
                guard let name = parts.first, !name.isEmpty else { continue }
                var parameters: [(name: String, value: String?)] = []
                for part in parts.dropFirst() where !part.isEmpty {
                    if let equals = part.firstIndex(of: "=") {
                        let key = String(part[..<equals]).trimmingWhitespace().lowercased()
                        var raw = String(part[part.index(after: equals)...]).trimmingWhitespace()
                        if raw.count >= 2, raw.hasPrefix("\""), raw.hasSuffix("\"") { raw = String(raw.dropFirst().dropLast()) }
                        parameters.append((key, raw))
                    } else {
                        parameters.append((part.lowercased(), nil))
                    }
                }
                offers.append(Offer(name: name.lowercased(), parameters: parameters))
            }
        }
        return offers
    }

    private static func windowBits(_ value: String) -> Int? {
        // RFC 7692 §7.1.2: 1*DIGIT without leading zeros, 8...15.
        guard !value.isEmpty, value.count <= 2, value.first != "0", let bits = Int(value), (8...15).contains(bits) else { return nil }
        return bits
    }

    private static func accept(_ parameters: [(name: String, value: String?)], settings: PerMessageDeflate) -> NegotiatedDeflate? {
        var seen = Set<String>()
        var serverNoContextTakeover = false
        var clientNoContextTakeover = false
        var serverMaxWindowBits: Int?
        var clientMaxWindowBitsOffered = false
        var clientMaxWindowBits: Int?
        for (name, value) in parameters {
            guard seen.insert(name).inserted else { return nil }
            switch name {
            case "server_no_context_takeover":
                guard value == nil else { return nil }
                serverNoContextTakeover = true
            case "client_no_context_takeover":
                guard value == nil else { return nil }
                clientNoContextTakeover = true
            case "server_max_window_bits":
                guard let value, let bits = windowBits(value) else { return nil }
                serverMaxWindowBits = bits
            case "client_max_window_bits":
                clientMaxWindowBitsOffered = true
                if let value {
                    guard let bits = windowBits(value) else { return nil }
                    clientMaxWindowBits = bits
                }
            default:
                return nil
            }
        }
        let configuredBits = settings.clampedWindowBits
        var response = "permessage-deflate"
        let resetServer = serverNoContextTakeover || settings.serverNoContextTakeover
        if resetServer { response += "; server_no_context_takeover" }
        let resetClient = clientNoContextTakeover || settings.clientNoContextTakeover
        if resetClient { response += "; client_no_context_takeover" }
        var serverBits = configuredBits
        if let requested = serverMaxWindowBits {
            serverBits = min(requested, configuredBits)
            // zlib cannot compress raw deflate with a 256-byte window: decline rather than break the client.
            guard serverBits >= 9 else { return nil }
            response += "; server_max_window_bits=\(serverBits)"
        }
        var clientBits = 15
        if clientMaxWindowBitsOffered {
            let limit = min(clientMaxWindowBits ?? 15, configuredBits)
            if limit < 15 { response += "; client_max_window_bits=\(limit)" }
            // An 8-bit client window is decoded with 9 bits (some zlib builds silently use 9 for 8).
            clientBits = max(9, limit)
        }
        return NegotiatedDeflate(
            serverNoContextTakeover: resetServer,
            clientNoContextTakeover: resetClient,
            serverWindowBits: serverBits,
            clientWindowBits: clientBits,
            threshold: max(0, settings.threshold),
            level: settings.clampedLevel,
            responseHeader: response
        )
    }
}

extension StringProtocol {
    fileprivate func trimmingWhitespace() -> String {
        var slice = Substring(self)
        while let first = slice.first, first == " " || first == "\t" { slice.removeFirst() }
        while let last = slice.last, last == " " || last == "\t" { slice.removeLast() }
        return String(slice)
    }
}
