import Foundation
import EngineIO
import ParleyChannels
import ParleyConfig
import ParleyYAML
import ParleyDispatch
import NIOCore
import ParleyPostgres
import ParleyServer
import SocketIORedis
import ParleyJSON
import Testing

/// Parses `yaml` as `parley.yml` with a fixed environment.
private func parse(_ yaml: String, env: [String: String] = [:], file: String = "parley.yml", base: String = ".") throws -> ParleyConfiguration {
    try ConfigurationLoader(environment: env).parse(yaml: yaml, file: file, baseDirectory: base)
}

/// The message of the ``ConfigError`` that parsing `yaml` throws (nil when it parses), without its `:LINE:COL`
/// (``ConfigurationPositionTests`` checks the positions).
private func failure(_ yaml: String, env: [String: String] = [:]) -> String? {
    do {
        _ = try parse(yaml, env: env)
        return nil
    } catch var e as ConfigError {
        (e.line, e.column) = (nil, nil)
        return "\(e)"
    } catch {
        return "\(error)"
    }
}

@Suite("Configuration error positions")
struct ConfigurationPositionTests {
    /// Every error names FILE:LINE:COL: the key's position, or its mapping's for a missing key.
    @Test func nodeID() throws {
        #expect(try parse("agents: [{name: a, plugin: a.so}]\nserver: {node_id: n-1_a}\n").application.server.nodeID == "n-1_a")
        #expect(failure("server: {node_id: \"n.1\"}")?.hasPrefix("parley.yml: server.node_id: `n.1` may hold only letters") == true)
    }

    @Test func redisAdapter() throws {
        let c = try parse("agents: [{name: a, plugin: a.so}]\nadapter: {type: redis, url: \"redis://:pw@cache:6380\", key: chat}\n")
        let r = try #require(c.application.redisAdapter)
        #expect(r.host == "cache" && r.port == 6380 && r.password == "pw" && r.key == "chat")
        #expect(try parse("agents: [{name: a, plugin: a.so}]\n").application.redisAdapter == nil)
        #expect(failure("adapter: {type: redis}") == "parley.yml: adapter.url: adapter.type is redis: set adapter.url (redis://HOST:PORT)")
        #expect(failure("adapter: {type: kafka}") == "parley.yml: adapter.type: expected one of \"memory\", \"redis\", got \"kafka\"")
    }

    @Test func postgresStoreWithThePasswordFromTheEnvironment() throws {
        let c = try parse(
            "agents: [{name: a, plugin: a.so}]\nstore:\n  type: postgres\n  url: postgres://bot:${PGPASS}@db:6432/chat\n  schema: s2\n  pool_size: 4\n",
            env: ["PGPASS": "s3cr%t"])
        let p = try #require(c.application.store.postgres)
        #expect(c.application.store.kind == .postgres)
        #expect(p.host == "db" && p.port == 6432 && p.username == "bot" && p.password == "s3cr%t" && p.database == "chat")
        #expect(p.schema == "s2" && p.poolSize == 4)
    }

    @Test func errorsNameLineAndColumn() {
        let yaml = "server:\n  port: 80\nchannels:\n  socketio:\n    ping_interval: fast\n"
        #expect(throws: ConfigError.self) { try parse(yaml) }
        do {
            _ = try parse(yaml)
        } catch let error as ConfigError {
            #expect(error.description == "parley.yml:5:5: channels.socketio.ping_interval: expected a number of seconds, got \"fast\"")
        } catch {
            Issue.record("not a ConfigError: \(error)")
        }
        do {
            _ = try parse("agents:\n  - plugin: a.so\n")
        } catch let error as ConfigError {
            // The missing `name` is reported where its agent's mapping starts.
            #expect(error.description == "parley.yml:2:5: agents[0].name: missing; every agent needs a name")
        } catch {
            Issue.record("not a ConfigError: \(error)")
        }
        do {
            _ = try parse("server:\n  port: [1\n")
        } catch let error as ConfigError {
            #expect(error.line != nil && error.description.hasPrefix("parley.yml:"))
        } catch {
            Issue.record("not a ConfigError: \(error)")
        }
    }
}

@Suite("Configuration defaults and values")
struct ConfigurationValueTests {
    @Test func emptyFileGivesDefaults() throws {
        let c = try parse("")
        #expect(c.server.host == "127.0.0.1")
        #expect(c.server.port == 5005)
        #expect(c.server.tls == nil)
        let s = try #require(c.channels.socketIO)
        #expect(s.userMessageEvent == "user_uttered")
        #expect(s.botMessageEvent == "bot_uttered")
        #expect(s.namespace == "/")
        #expect(s.sessionPersistence == false)
        #expect(s.socketIOPath == "/socket.io")
        #expect(s.jwt == nil)
        #expect(s.metadataKey == "metadata")
        #expect(s.pingInterval == 25 && s.pingTimeout == 20 && s.maxPayload == 1_000_000)
        #expect(c.channels.rest != nil)
        #expect(c.store.kind == .sqlite && c.store.path == "parley.db")
        #expect(c.dispatcher.sessionExpirationMinutes == 60 && c.dispatcher.carryOverSlotsToNewSession)
        // One set of defaults: the dispatcher's own.
        #expect(c.dispatcher.fallbackText == DispatcherConfiguration().fallbackText && c.dispatcher.idleEvictionSeconds == 300)
        #expect(c.dispatcher.turnDeadline == .seconds(10) && c.dispatcher.mailboxCapacity == 64 && c.workers == 4)
        #expect(c.logging.level == .info && c.logging.format == .text)
        #expect(c.api.token == nil)
        #expect(c.warnings.isEmpty)
    }

    @Test func fullFile() throws {
        let c = try parse(
            """
            server: {host: 0.0.0.0, port: 8080, shutdown_timeout: 5, tls: {cert: certs/c.pem, key: certs/k.pem}}
            channels:
              socketio:
                user_message_evt: user_says
                bot_message_evt: bot_says
                namespace: /chat
                session_persistence: true
                socketio_path: ws/
                jwt_key: secret
                jwt_method: hs512
                jwt_session_claim: sub
                metadata_key: customData
                cors_origins: "*"
                ping_interval: 500ms
                ping_timeout: 2.5
                max_payload: 2048
            agents:
              - name: mirror
                plugin: plugins/libmirror.so
                deadline: 3
                thread_safe: true
                tracker_events: 0
                config: {greeting: hi, n: 2, list: [1, "x", null], nested: {ok: yes}}
              - name: admin
                plugin: /abs/libadmin.so
                route: {prefix: /admin, metadata: {tier: gold}, channels: [rest]}
            formatters:
              - {name: md, plugin: plugins/libmd.so, channels: socketio}
            actions: {manifest: actions.yml}
            store: {type: memory}
            session: {session_expiration_time: 0, carry_over_slots_to_new_session: false}
            dispatcher: {mailbox_size: 8, turn_deadline: 4, fallback_text: oops, idle_eviction: 60, workers: 2}
            api: {token: t0k}
            logging: {level: DEBUG, format: json}
            """, base: "/etc/parley")
        #expect(c.server.host == "0.0.0.0" && c.server.port == 8080 && c.server.shutdownTimeout == 5)
        #expect(c.server.tls == TLSConfiguration(certificatePath: "/etc/parley/certs/c.pem", keyPath: "/etc/parley/certs/k.pem"))
        let s = try #require(c.channels.socketIO)
        #expect(c.channels.rest == nil)
        #expect(s.userMessageEvent == "user_says" && s.botMessageEvent == "bot_says")
        #expect(s.namespace == "/chat" && s.sessionPersistence && s.socketIOPath == "/ws")
        #expect(s.jwt == JWTConfiguration(key: "secret", keySource: "channels.socketio.jwt_key", method: "HS512", sessionClaim: "sub"))
        #expect(s.metadataKey == "customData" && s.corsOrigins == ["*"])
        #expect(s.pingInterval == 0.5 && s.pingTimeout == 2.5 && s.maxPayload == 2048)
        #expect(c.agents.count == 2)
        #expect(c.agents[0].pluginPath == "/etc/parley/plugins/libmirror.so")
        #expect(c.agents[0].deadline == 3 && c.agents[0].threadSafe == true && c.agents[0].trackerEvents == 0)
        #expect(c.agents[1].trackerEvents == nil)
        #expect(c.agents[0].config == ["greeting": "hi", "n": 2, "list": [1, "x", nil], "nested": ["ok": true]])
        #expect(c.agents[0].route == nil)
        #expect(c.agents[1].pluginPath == "/abs/libadmin.so")
        #expect(c.agents[1].route == AgentRouteConditions(prefix: "/admin", metadata: ["tier": "gold"], channels: ["rest"]))
        #expect(c.formatters == [FormatterConfiguration(name: "md", pluginPath: "/etc/parley/plugins/libmd.so", channels: ["socketio"])])
        #expect(c.actions.manifestPath == "/etc/parley/actions.yml")
        #expect(c.store.kind == .memory)
        #expect(c.dispatcher.sessionExpirationMinutes == 0 && !c.dispatcher.carryOverSlotsToNewSession)
        #expect(c.dispatcher.mailboxCapacity == 8 && c.dispatcher.turnDeadline == .seconds(4) && c.dispatcher.fallbackText == "oops")
        #expect(c.dispatcher.idleEvictionSeconds == 60 && c.workers == 2)
        #expect(c.api.token == "t0k")
        #expect(c.logging == LoggingConfiguration(level: .debug, format: .json))
    }

    @Test func relativePathsStayRelativeForTheWorkingDirectory() throws {
        let c = try parse("store: {path: data/x.db}\nagents: [{name: a, plugin: build/plugins/liba.so}]")
        #expect(c.store.path == "data/x.db")
        #expect(c.agents[0].pluginPath == "build/plugins/liba.so")
        let d = try parse("store: {path: x.db}", base: "examples")
        #expect(d.store.path == "examples/x.db")
    }

    @Test func channelsSectionServesOnlyWhatIsListed() throws {
        let c = try parse("channels:\n  rest:\n")
        #expect(c.channels.socketIO == nil)
        #expect(c.channels.rest == RESTChannelConfiguration())
        let d = try parse("channels:\n  socketio:\n")
        #expect(d.channels.socketIO == SocketIOChannelConfiguration())
        #expect(d.channels.rest == nil)
    }

    @Test func validateForServing() throws {
        #expect(throws: ConfigError.self) { try ParleyConfiguration().validateForServing(file: "parley.yml") }
        do {
            try ParleyConfiguration().validateForServing(file: "parley.yml")
        } catch {
            #expect("\(error)".hasPrefix("parley.yml: agents: at least one agent is required"))
        }
        let c = try parse("agents: [{name: a, plugin: a.so}]")
        try c.validateForServing(file: "parley.yml")
    }
}

@Suite("Environment substitution")
struct EnvironmentSubstitutionTests {
    @Test func substitutesSetVariables() throws {
        let c = try parse(
            "server:\n  host: ${HOST}\n  port: ${PORT}\napi: {token: \"Bearer-${TOKEN}-x\"}", env: ["HOST": "::1", "PORT": "6000", "TOKEN": "abc"])
        #expect(c.server.host == "::1" && c.server.port == 6000 && c.api.token == "Bearer-abc-x")
    }

    @Test func quotedSubstitutionIsAcceptedWhereANumberIsExpected() throws {
        let c = try parse("server: {port: \"${PORT}\"}", env: ["PORT": "7000"])
        #expect(c.server.port == 7000)
    }

    @Test func defaultsApplyWhenUnsetOrEmpty() throws {
        let c = try parse("server: {port: \"${PORT:-5999}\", host: \"${H:-localhost}\"}", env: ["H": ""])
        #expect(c.server.port == 5999 && c.server.host == "localhost")
        let d = try parse("api: {token: \"${TOKEN:-}\"}")
        #expect(d.api.token == nil)
    }

    @Test func missingVariableIsAnError() {
        #expect(
            failure("channels: {socketio: {jwt_key: \"${JWT_SECRET}\"}}")
                == "parley.yml: channels.socketio.jwt_key: environment variable JWT_SECRET is not set (set it, or give a default with ${JWT_SECRET:-default})")
    }

    @Test func malformedReferencesAreErrors() {
        #expect(failure("api: {token: \"${TOKEN\"}")?.contains("api.token: unterminated ${") == true)
        #expect(failure("api: {token: \"${1X}\"}")?.contains("api.token: invalid environment reference ${1X}") == true)
    }

    @Test func doubleDollarKeepsALiteral() throws {
        let c = try parse("dispatcher: {fallback_text: \"cost $${PRICE}\"}")
        #expect(c.dispatcher.fallbackText == "cost ${PRICE}")
    }
}

@Suite("Configuration errors")
struct ConfigurationErrorTests {
    @Test func wrongTypeNamesFileKeyAndExpectation() {
        #expect(
            failure("channels:\n  socketio:\n    ping_interval: fast\n")
                == "parley.yml: channels.socketio.ping_interval: expected a number of seconds, got \"fast\"")
        #expect(failure("server: {port: eighty}") == "parley.yml: server.port: expected a TCP port number, got \"eighty\"")
        #expect(failure("server: {port: 70000}") == "parley.yml: server.port: expected a TCP port number between 0 and 65535, got 70000")
        #expect(
            failure("channels: {socketio: {session_persistence: maybe}}")
                == "parley.yml: channels.socketio.session_persistence: expected true or false, got \"maybe\"")
        #expect(
            failure("channels: {socketio: {user_message_evt: [a]}}")
                == "parley.yml: channels.socketio.user_message_evt: expected an event name, got a list")
        #expect(failure("server: [1]") == "parley.yml: server: expected a mapping, got a list")
        #expect(failure("agents: {name: a}") == "parley.yml: agents: expected a list of agents (- name: …, plugin: …), got a mapping")
        #expect(
            failure("channels: {socketio: {ping_timeout: -1}}")
                == "parley.yml: channels.socketio.ping_timeout: expected a positive number of seconds, got -1")
        #expect(
            failure("session: {session_expiration_time: soon}")
                == "parley.yml: session.session_expiration_time: expected a number of minutes (0 = sessions never expire), got \"soon\"")
        #expect(
            failure("logging: {level: loud}")
                == "parley.yml: logging.level: expected one of \"trace\", \"debug\", \"info\", \"notice\", \"warning\", \"error\", \"critical\", got \"loud\"")
        #expect(failure("store: {type: redis}") == "parley.yml: store.type: expected one of \"sqlite\", \"memory\", \"postgres\", got \"redis\"")
        #expect(
            failure("store: {type: postgres}")
                == "parley.yml: store.url: store.type is postgres: set store.url (postgres://USER:PASSWORD@HOST:PORT/DATABASE)")
        #expect(
            failure("store: {type: postgres, url: \"mysql://a@b/c\"}")
                == "parley.yml: store.url: the scheme must be postgres:// or postgresql:// (expected postgres://USER:PASSWORD@HOST:PORT/DATABASE)")
        #expect(failure("store: {type: postgres, url: \"postgres://a@b/c\", schema: Bad}")?.hasPrefix("parley.yml: store.schema: `Bad` is not") == true)
        #expect(
            failure("agents: [{name: a, plugin: a.so, config: [1]}]")
                == "parley.yml: agents[0].config: expected a mapping (the object handed to the plugin), got a list")
    }

    @Test func quotedNumberIsAString() {
        #expect(failure("server: {port: \"5005\"}") == "parley.yml: server.port: expected a TCP port number, got \"5005\"")
    }

    @Test func unknownKeysAreRefusedWithASuggestion() {
        let top = failure("sever: {port: 1}")
        #expect(top?.hasPrefix("parley.yml: sever: unknown key; did you mean \"server\"?") == true)
        let nested = failure("channels: {socketio: {pingInterval: 3}}")
        #expect(nested?.hasPrefix("parley.yml: channels.socketio.pingInterval: unknown key; did you mean \"ping_interval\"?") == true)
        let inList = failure("agents: [{name: a, plugin: a.so, plugn: b}]")
        #expect(inList?.hasPrefix("parley.yml: agents[0].plugn: unknown key; did you mean \"plugin\"?") == true)
        let channel = failure("channels: {telegram: {}}")
        #expect(channel?.hasPrefix("parley.yml: channels.telegram: unknown key") == true)
    }

    @Test func invalidYAML() {
        let m = failure("server: {port: 1\nchannels: [")
        #expect(m?.hasPrefix("parley.yml: invalid YAML: line ") == true)
        #expect(failure("- a\n- b") == "parley.yml: expected a mapping with sections such as server:, channels:, agents:, got a list")
        let duplicate = failure("server: {port: 1, port: 2}")
        #expect(duplicate?.contains("port") == true && duplicate?.hasPrefix("parley.yml: ") == true, "\(duplicate ?? "")")
    }

    @Test func agentsAndFormatters() {
        #expect(failure("agents: [{plugin: a.so}]") == "parley.yml: agents[0].name: missing; every agent needs a name")
        #expect(failure("agents: [{name: a}]")?.hasPrefix("parley.yml: agents[0].plugin: missing;") == true)
        #expect(
            failure("agents: [{name: a, plugin: a.so}, {name: a, plugin: b.so}]")
                == "parley.yml: agents[1].name: duplicate agent name \"a\"; names must be unique")
        #expect(
            failure("agents: [{name: a, plugin: a.so, route: {channels: [sms]}}]")
                == "parley.yml: agents[0].route.channels[0]: expected \"socketio\" or \"rest\", got \"sms\"")
        #expect(
            failure("agents: [{name: a, plugin: a.so, route: {metadata: 3}}]")
                == "parley.yml: agents[0].route.metadata: expected a mapping of metadata keys to values, got 3")
        #expect(
            failure("formatters: [{name: f, plugin: f.so}, {name: f, plugin: g.so}]")
                == "parley.yml: formatters[1].name: duplicate formatter name \"f\"; names must be unique")
    }

    @Test func socketIOSpecificChecks() {
        #expect(
            failure("channels: {socketio: {namespace: chat}}")
                == "parley.yml: channels.socketio.namespace: expected a namespace starting with /, got \"chat\"; write \"/chat\"")
        #expect(
            failure("channels: {socketio: {cors_origins: [example.com]}}")
                == "parley.yml: channels.socketio.cors_origins[0]: expected \"*\" or an origin such as https://example.com, got \"example.com\"")
        #expect(
            failure("channels: {socketio: {socketio_path: /}}")
                == "parley.yml: channels.socketio.socketio_path: expected a URL path such as /socket.io, got \"/\"")
    }

    @Test func jwtChecks() throws {
        #expect(
            failure("channels: {socketio: {jwt_key: k, jwt_method: none}}")?
                .hasPrefix("parley.yml: channels.socketio.jwt_method: \"none\" is never accepted") == true)
        #expect(
            failure("channels: {socketio: {jwt_key: k, jwt_method: PS256}}")?
                .hasPrefix("parley.yml: channels.socketio.jwt_method: expected one of HS256") == true)
        #expect(
            failure("channels: {socketio: {jwt_key: k, jwt_key_env: K}}")
                == "parley.yml: channels.socketio.jwt_key_env: give only one of jwt_key, jwt_key_file and jwt_key_env (found jwt_key and jwt_key_env)")
        #expect(
            failure("channels: {socketio: {jwt_key_file: /nonexistent/key.pem}}")
                == "parley.yml: channels.socketio.jwt_key_file: cannot read \"/nonexistent/key.pem\"; check that the file exists and is readable")
        #expect(
            failure("channels: {socketio: {jwt_key_env: NOPE}}")
                == "parley.yml: channels.socketio.jwt_key_env: environment variable NOPE is not set or empty")
        #expect(
            failure("channels: {socketio: {jwt_session_claim: sub}}")
                == "parley.yml: channels.socketio.jwt_session_claim: needs a JWT key; set jwt_key, jwt_key_file or jwt_key_env")

        let fromEnv = try parse("channels: {socketio: {jwt_key_env: K, jwt_method: RS256}}", env: ["K": "pem"])
        #expect(fromEnv.channels.socketIO?.jwt == JWTConfiguration(key: "pem", keySource: "environment variable K", method: "RS256"))

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("parley-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try "  s3cret\n".write(to: dir.appendingPathComponent("jwt.key"), atomically: true, encoding: .utf8)
        let fromFile = try parse("channels: {socketio: {jwt_key_file: jwt.key}}", base: dir.path)
        #expect(fromFile.channels.socketIO?.jwt?.key == "s3cret")

        let empty = try parse("channels: {socketio: {jwt_key: \"\"}}")
        #expect(empty.channels.socketIO?.jwt == nil)
        #expect(empty.warnings.count == 1)
    }
}

@Suite("Rasa credentials.yml")
struct CredentialsTests {
    static let rasaFile = """
        rest:
        # the socketio channel as Rasa documents it
        socketio:
          user_message_evt: user_uttered
          bot_message_evt: bot_uttered
          session_persistence: true
          socketio_path: /socket.io/
          jwt_key: my_public_key
          jwt_method: HS256
          metadata_key: customData
        rasa:
          url: "http://localhost:5002/api"
        facebook:
          verify: "rasa-bot"
          secret: "3e34709d01ea89032asdebfe5a74518"
          page-access-token: "EAAbHPa7H9rEBAAuFk4Q3gPKbDedQnx4djJJ1JmQ7CAqO4iJKrQcNT0wtD"
        """

    @Test func mapsSocketIOAndRestAndWarnsAboutTheRest() throws {
        let (channels, warnings) = try ConfigurationLoader(environment: [:]).parseCredentials(yaml: Self.rasaFile)
        let s = try #require(channels.socketIO)
        #expect(s.sessionPersistence && s.socketIOPath == "/socket.io" && s.metadataKey == "customData")
        #expect(s.jwt == JWTConfiguration(key: "my_public_key", keySource: "socketio.jwt_key", method: "HS256"))
        #expect(channels.rest == RESTChannelConfiguration())
        #expect(
            warnings == [
                "credentials.yml: rasa: Rasa channel \"rasa\" is not supported by Parley and is ignored (Parley serves socketio and rest)",
                "credentials.yml: facebook: Rasa channel \"facebook\" is not supported by Parley and is ignored (Parley serves socketio and rest)",
            ])
    }

    @Test func proKeyIsAcceptedWithAWarning() throws {
        let (channels, warnings) = try ConfigurationLoader(environment: [:]).parseCredentials(yaml: "socketio:\n  enable_silence_timeout: true\n")
        #expect(channels.socketIO != nil && channels.rest == nil)
        #expect(warnings.count == 1 && warnings[0].contains("silence timeout"))
    }

    @Test func unknownKeyInSocketIOSectionIsAnError() {
        #expect(throws: ConfigError.self) { try ConfigurationLoader(environment: [:]).parseCredentials(yaml: "socketio:\n  sesion_persistence: true\n") }
        do {
            _ = try ConfigurationLoader(environment: [:]).parseCredentials(yaml: "socketio:\n  sesion_persistence: true\n")
        } catch {
            #expect("\(error)".hasPrefix("credentials.yml:2:3: socketio.sesion_persistence: unknown key; did you mean \"session_persistence\"?"))
        }
    }

    @Test func loadFromFilesReplacesChannelsAndResolvesPaths() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("parley-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = dir.appendingPathComponent("parley.yml").path
        let creds = dir.appendingPathComponent("credentials.yml").path
        try "channels: {rest: }\nagents: [{name: m, plugin: libm.so}]\n".write(toFile: config, atomically: true, encoding: .utf8)
        try Self.rasaFile.write(toFile: creds, atomically: true, encoding: .utf8)
        let c = try ConfigurationLoader(environment: [:]).load(configPath: config, credentialsPath: creds)
        #expect(c.agents[0].pluginPath == dir.path + "/libm.so")
        #expect(c.channels.socketIO?.sessionPersistence == true)
        #expect(c.warnings.count == 3)
        #expect(c.warnings[0].contains("replace the channels section"))
    }

    @Test func missingFiles() {
        do {
            _ = try ConfigurationLoader(environment: [:]).load(configPath: "/nonexistent/parley.yml", credentialsPath: nil)
            Issue.record("expected an error")
        } catch {
            #expect("\(error)" == "/nonexistent/parley.yml: configuration file not found; pass --config with an existing file")
        }
        do {
            _ = try ConfigurationLoader(environment: [:]).load(configPath: nil, credentialsPath: "/nonexistent/credentials.yml")
            Issue.record("expected an error")
        } catch {
            #expect("\(error)".hasPrefix("/nonexistent/credentials.yml: credentials file not found"))
        }
    }
}

@Suite("channels.socketio.per_message_deflate")
struct PerMessageDeflateConfigurationTests {
    @Test func offByDefaultAndWhenFalse() throws {
        #expect(try #require(parse("").channels.socketIO).perMessageDeflate == nil)
        #expect(try #require(parse("channels: {socketio: {per_message_deflate: false}}").channels.socketIO).perMessageDeflate == nil)
        #expect(try #require(parse("channels: {socketio: {per_message_deflate: }}").channels.socketIO).perMessageDeflate == nil)
    }

    @Test func trueGivesTheDefaults() throws {
        let s = try #require(parse("channels: {socketio: {per_message_deflate: true}}").channels.socketIO)
        #expect(s.perMessageDeflate == PerMessageDeflate())
        #expect(s.perMessageDeflate?.threshold == 1024 && s.perMessageDeflate?.maxWindowBits == 15)
        #expect(s.perMessageDeflate?.compressionLevel == 6 && s.perMessageDeflate?.serverNoContextTakeover == false)
    }

    @Test func mappingSetsEveryField() throws {
        let c = try parse(
            """
            channels:
              socketio:
                per_message_deflate:
                  threshold: 0
                  server_no_context_takeover: true
                  client_no_context_takeover: yes
                  max_window_bits: 10
                  compression_level: 9
            """
        )
        let d = try #require(c.channels.socketIO?.perMessageDeflate)
        #expect(d == PerMessageDeflate(threshold: 0, serverNoContextTakeover: true, clientNoContextTakeover: true, maxWindowBits: 10, compressionLevel: 9))
        // An empty mapping means the defaults.
        #expect(try parse("channels: {socketio: {per_message_deflate: {}}}").channels.socketIO?.perMessageDeflate == PerMessageDeflate())
    }

    @Test func errorsNameTheKeyAndTheFix() {
        let key = "parley.yml: channels.socketio.per_message_deflate"
        let expected =
            "expected true, false or a mapping (threshold, server_no_context_takeover, client_no_context_takeover, max_window_bits, compression_level)"
        #expect(failure("channels: {socketio: {per_message_deflate: sometimes}}") == "\(key): \(expected), got \"sometimes\"")
        #expect(failure("channels: {socketio: {per_message_deflate: [1]}}") == "\(key): \(expected), got a list")
        #expect(
            failure("channels: {socketio: {per_message_deflate: {max_window_bits: 16}}}")
                == "\(key).max_window_bits: expected a window size in bits between 9 and 15, got 16")
        #expect(
            failure("channels: {socketio: {per_message_deflate: {compression_level: 0}}}")
                == "\(key).compression_level: expected a zlib level between 1 and 9, got 0")
        #expect(
            failure("channels: {socketio: {per_message_deflate: {threshold: -1}}}")
                == "\(key).threshold: expected a number of bytes between 0 and 1073741824, got -1")
        #expect(
            failure("channels: {socketio: {per_message_deflate: {threshold: big}}}")
                == "\(key).threshold: expected a number of bytes, got \"big\"")
        #expect(
            failure("channels: {socketio: {per_message_deflate: {server_no_context_takeover: 2}}}")
                == "\(key).server_no_context_takeover: expected true or false, got 2")
        let unknown = failure("channels: {socketio: {per_message_deflate: {max_windowbits: 10}}}")
        #expect(unknown?.hasPrefix("\(key).max_windowbits: unknown key; did you mean \"max_window_bits\"?") == true, "\(unknown ?? "")")
    }
}

@Suite("The conversation API is closed to the network by default")
struct APIExposureTests {
    @Test func servedOnLoopbackOnlyWithoutAToken() {
        let open = APIConfiguration()
        for host in ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]", "LOCALHOST"] {
            #expect(open.isServed(host: host), "\(host)")
        }
        for host in ["0.0.0.0", "::", "192.0.2.10", "example.com", "127.0.0.1.example.com", "1270.0.0.1", "128.0.0.1"] {
            #expect(!open.isServed(host: host), "\(host)")
        }
    }

    @Test func aTokenOrSessionTokensOpenItAnywhere() {
        #expect(APIConfiguration(token: "t").isServed(host: "0.0.0.0"))
        #expect(APIConfiguration(sessionToken: true).isServed(host: "0.0.0.0"))
        #expect(!APIConfiguration(enabled: false, token: "t").isServed(host: "127.0.0.1"))
    }

    @Test func restAndAPIKeys() throws {
        let c = try parse(
            """
            channels:
              rest:
                jwt_key: rest-secret
                jwt_session_claim: sub
            api:
              token: admin
            """)
        #expect(c.channels.rest?.jwt?.key == "rest-secret")
        #expect(c.channels.rest?.jwt?.sessionClaim == "sub")
        #expect(c.api.token == "admin" && !c.api.sessionToken)
        #expect(failure("api:\n  session_token: maybe")?.contains("api.session_token") == true)
    }
}

@Suite("Keys for limits, metrics and the chat page")
struct SecurityAndOperationsKeysTests {
    @Test func defaults() throws {
        let c = try parse("")
        #expect(c.server.chatPage == false)
        #expect(c.server.limits.headerTimeout == .seconds(10) && c.server.limits.idleTimeout == .seconds(60))
        #expect(c.server.limits.maxConnectionsPerAddress == 256 && c.server.limits.exemptAddresses == ["127.0.0.0/8", "::1"])
        let s = try #require(c.channels.socketIO)
        #expect(s.errorEvent == "parley_error" && s.messagesPerSecond == 20 && s.messageBurst == 40)
        #expect(s.maxAttachments == 16 && s.maxAttachmentBytes == 4 << 20 && s.pendingAttachmentBudget == 64 << 20)
        #expect(c.dispatcher.maxMessageBytes == 65_536 && c.dispatcher.maxMetadataDepth == 32 && c.dispatcher.maxMetadataBytes == 16_384)
        #expect(c.dispatcher.maxResidentConversations == 20_000)
        #expect(c.metrics.enabled && c.metrics.token == nil)
    }

    @Test func values() throws {
        let c = try parse(
            """
            server:
              chat_page: true
              limits:
                header_timeout: 2.5
                idle_timeout: "90s"
                max_header_bytes: 8192
                max_header_count: 50
                max_connections_per_address: 0
                connections_per_second_per_address: 5.5
                connection_burst_per_address: 7
                exempt_addresses: [10.0.0.0/8]
            channels:
              socketio:
                error_event: ""
                rate_limit: {messages_per_second: 0, burst: 3}
                max_attachments: 2
                max_attachment_bytes: 1000
                pending_attachment_budget: 2000
            dispatcher:
              max_message_bytes: 100
              max_metadata_depth: 4
              max_metadata_bytes: 200
              max_resident_conversations: 50
            metrics:
              enabled: false
              token: scrape
            """)
        #expect(c.server.chatPage)
        #expect(c.server.limits.headerTimeout == .milliseconds(2500) && c.server.limits.idleTimeout == .seconds(90))
        #expect(c.server.limits.maxHeaderBytes == 8192 && c.server.limits.maxHeaderCount == 50)
        #expect(c.server.limits.maxConnectionsPerAddress == 0 && c.server.limits.connectionsPerSecondPerAddress == 5.5)
        #expect(c.server.limits.connectionBurstPerAddress == 7 && c.server.limits.exemptAddresses == ["10.0.0.0/8"])
        let s = try #require(c.channels.socketIO)
        #expect(s.errorEvent == "" && s.messagesPerSecond == 0 && s.messageBurst == 3)
        #expect(s.maxAttachments == 2 && s.maxAttachmentBytes == 1000 && s.pendingAttachmentBudget == 2000)
        #expect(c.dispatcher.maxMessageBytes == 100 && c.dispatcher.maxMetadataDepth == 4 && c.dispatcher.maxMetadataBytes == 200)
        #expect(c.dispatcher.maxResidentConversations == 50)
        #expect(!c.metrics.enabled && c.metrics.token == "scrape")
    }

    @Test func mistakesNameTheKey() {
        #expect(failure("server:\n  limits:\n    header_timeout: soon")?.contains("server.limits.header_timeout") == true)
        #expect(failure("server:\n  limits:\n    max_header_bytes: 10")?.contains("server.limits.max_header_bytes") == true)
        #expect(failure("channels:\n  socketio:\n    rate_limit:\n      messages_per_second: -1")?.contains("rate_limit.messages_per_second") == true)
        #expect(failure("channels:\n  socketio:\n    rate_limit:\n      burts: 3")?.contains("did you mean") == true)
        #expect(failure("dispatcher:\n  max_metadata_depth: 1000")?.contains("dispatcher.max_metadata_depth") == true)
        #expect(failure("metrics:\n  enabled: maybe")?.contains("metrics.enabled") == true)
        #expect(failure("server:\n  chat_page: sure")?.contains("server.chat_page") == true)
    }
}

@Suite("Plugin isolation and slot keys")
struct PluginIsolationKeysTests {
    @Test func isolationSettingsReachTheServerConfiguration() throws {
        let c = try parse(
            """
            agents:
              - {name: a, plugin: a.so, isolation: process, processes: 3, memory_limit_mb: 128, cpu_limit_seconds: 60, open_files_limit: 64, address_space_limit_mb: 4096}
              - {name: b, plugin: b.so, max_concurrent_calls: 4}
            formatters:
              - {name: f, plugin: f.so, isolation: process}
            dispatcher: {workers: 2, max_threads: 40}
            """
        ).application
        #expect(c.agents[0].isolation == ProcessIsolation(processes: 3, memoryLimit: 128 << 20, addressSpaceLimit: 4096 << 20, cpuSeconds: 60, openFiles: 64))
        #expect(c.agents[1].isolation == nil && c.agents[1].maxConcurrentCalls == 4)
        #expect(c.formatters[0].isolated && c.formatters[0].isolation?.processes == 1)
        #expect(c.workers == 2 && c.maxThreads == 40)
    }

    @Test func isolationKeysNeedTheirMode() {
        #expect(failure("agents: [{name: a, plugin: a.so, processes: 2}]")?.contains("agents[0].processes: only with isolation: process") == true)
        #expect(failure("formatters: [{name: f, plugin: f.so, cpu_limit_seconds: 5}]")?.contains("only with isolation: process") == true)
        #expect(
            failure("agents: [{name: a, plugin: a.so, isolation: process, max_concurrent_calls: 2}]")?.contains("only with isolation: in_process") == true)
        #expect(failure("agents: [{name: a, plugin: a.so, isolation: sandbox}]") != nil)
        #expect(failure("dispatcher: {workers: 8, max_threads: 4}")?.contains("must be at least dispatcher.workers (8)") == true)
    }
}
