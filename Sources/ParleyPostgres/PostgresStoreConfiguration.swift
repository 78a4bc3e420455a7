/// Where and how ``PostgresConversationStore`` connects (`store: {type: postgres, …}` in `parley.yml`).
public struct PostgresStoreConfiguration: Sendable, Hashable {
    /// Server host name or address.
    public var host: String
    /// Server port (default 5432).
    public var port: Int
    /// Role to log in as.
    public var username: String
    /// Password (nil: none, e.g. `trust` authentication).
    public var password: String?
    /// Database name (default: the user name).
    public var database: String
    /// The schema (PostgreSQL namespace) Parley's tables live in, created when missing (default `parley`).
    /// Lower-case letters, digits and `_`, starting with a letter or `_`.
    public var schema: String
    /// Most connections this node opens (default 10). Nodes × pool size must fit `max_connections`.
    public var poolSize: Int
    /// Whether to require TLS (`sslmode=require` in the URL); otherwise plain TCP (loopback, private networks).
    public var requireTLS: Bool
    /// How long one connection attempt may take (default 5 s).
    public var connectTimeout: Duration
    /// How long one statement (a group commit, a read, the health check) may wait for a connection and an
    /// answer before it fails (default 5 s), so that turns answer with the fallback while the server is down.
    public var statementTimeout: Duration

    public init(
        host: String = "127.0.0.1", port: Int = 5432, username: String = "postgres", password: String? = nil, database: String? = nil,
        schema: String = "parley", poolSize: Int = 10, requireTLS: Bool = false, connectTimeout: Duration = .seconds(5),
        statementTimeout: Duration = .seconds(5)
    ) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database ?? username
        self.schema = schema
        self.poolSize = poolSize
        self.requireTLS = requireTLS
        self.connectTimeout = connectTimeout
        self.statementTimeout = statementTimeout
    }

    /// Reads a libpq-style URL: `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=disable|require]`
    /// (`postgresql://` too; user, password and database percent-decoded). Throws a message naming what is wrong.
    public init(url: String, schema: String = "parley", poolSize: Int = 10) throws(PostgresStoreError) {
        func fail(_ why: String) -> PostgresStoreError { .configuration("store.url: \(why) (expected postgres://USER:PASSWORD@HOST:PORT/DATABASE)") }
        var rest = Substring(url)
        if rest.hasPrefix("postgres://") {
            rest = rest.dropFirst("postgres://".count)
        } else if rest.hasPrefix("postgresql://") {
            rest = rest.dropFirst("postgresql://".count)
        } else {
            throw fail("the scheme must be postgres:// or postgresql://")
        }
        var query: Substring = ""
        if let q = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: q)...]
            rest = rest[..<q]
        }
        var path: Substring = ""
        if let slash = rest.firstIndex(of: "/") {
            path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
        }
        var user: String?
        var password: String?
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = credentials.firstIndex(of: ":") {
                user = Self.percentDecoded(credentials[..<colon])
                password = Self.percentDecoded(credentials[credentials.index(after: colon)...])
            } else {
                user = Self.percentDecoded(credentials)
            }
        }
        var host = rest
        var port = 5432
        if host.hasPrefix("["), let close = host.firstIndex(of: "]") {
            let after = host[host.index(after: close)...]
            if after.hasPrefix(":") {
                guard let p = Int(after.dropFirst()), (1...65535).contains(p) else { throw fail("bad port `\(after.dropFirst())`") }
                port = p
            }
            host = host[host.index(after: host.startIndex)..<close]
        } else if let colon = host.lastIndex(of: ":") {
            let portText = host[host.index(after: colon)...]
            guard let p = Int(portText), (1...65535).contains(p) else { throw fail("bad port `\(portText)`") }
            port = p
            host = host[..<colon]
        }
        guard !host.isEmpty else { throw fail("no host") }
        guard let user, !user.isEmpty else { throw fail("no user name") }
        var requireTLS = false
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { throw fail("bad parameter `\(pair)`") }
            switch (parts[0], parts[1]) {
            case ("sslmode", "disable"), ("sslmode", "allow"), ("sslmode", "prefer"): requireTLS = false
            case ("sslmode", "require"): requireTLS = true
            case ("sslmode", let other): throw fail("sslmode `\(other)` is not supported (disable or require)")
            default: throw fail("unknown parameter `\(parts[0])` (only sslmode is read)")
            }
        }
        self.init(
            host: String(host), port: port, username: user, password: password,
            database: path.isEmpty ? nil : Self.percentDecoded(path), schema: schema, poolSize: poolSize, requireTLS: requireTLS)
    }

    /// Whether `name` is usable as the schema name without quoting.
    public static func isValidSchemaName(_ name: String) -> Bool {
        guard let first = name.utf8.first, name.utf8.count <= 63 else { return false }
        func letter(_ c: UInt8) -> Bool { (c >= 0x61 && c <= 0x7A) || c == 0x5F }
        return letter(first) && name.utf8.allSatisfy { letter($0) || ($0 >= 0x30 && $0 <= 0x39) }
    }

    /// `host:port/database` (no credentials), for messages.
    public var displayName: String { "\(host):\(port)/\(database)" }

    private static func percentDecoded(_ text: Substring) -> String {
        var bytes: [UInt8] = []
        var utf8 = Array(text.utf8)[...]
        while let c = utf8.popFirst() {
            if c == UInt8(ascii: "%"), utf8.count >= 2, let v = UInt8(String(decoding: utf8.prefix(2), as: UTF8.self), radix: 16) {
                bytes.append(v)
                utf8 = utf8.dropFirst(2)
            } else {
                bytes.append(c)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
