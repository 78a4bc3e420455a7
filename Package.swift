// swift-tools-version:6.2
// Parley: a Rasa-compatible Socket.IO bot runtime with C-ABI plugins.
//
// Layers (lower layers never import higher ones):
//   ParleyJSON                          JSON value type, parser and serializer (no Foundation on the hot path)
//   EngineIO  <- SocketIO               Engine.IO v4 transports, Socket.IO v5 packets/namespaces/rooms/adapter
//   ParleyCore                          messages, events, responses (no I/O)
//   ParleyWorkers                       the worker pool for blocking foreign calls (a TaskExecutor), injected
//   ParleyDispatch -> ParleyCore        mailboxes, routing, formatter chain, output mapping; owns the
//                                       Agent / MessageFormatter / ConversationStore protocols
//   ParleyStore, ParleyPlugins,         implementations of the Dispatch protocols (GRDB/SQLite, dlopen C ABI,
//   ParleyActions                       libffi manifest actions)
//   ParleyChannels                      Rasa socketio channel, REST channel, conversation HTTP API
//   ParleyConfig                        YAML configuration onto typed, defaulted structs
//   parley (executable)                 wires everything: serve, plugins check, ffi-call, loadtest, version
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "parley",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "parley", targets: ["ParleyCLI"]),
        .executable(name: "parley-plugin-host", targets: ["ParleyPluginHost"]),
        .executable(name: "parley-protocol-server", targets: ["ProtocolServer"]),
        .library(name: "EngineIO", targets: ["EngineIO"]),
        .library(name: "SocketIO", targets: ["SocketIO"]),
        // Test kit for embedders and store / plugin authors (like HummingbirdTesting).
        .library(name: "ParleyTesting", targets: ["ParleyTesting"]),
        // What the fuzz targets in Fuzz/ (make fuzz) feed to which decoder; make test replays their inputs.
        .library(name: "ParleyFuzzTargets", targets: ["ParleyFuzzTargets"]),
        // The example Swift agent plugin, loaded with dlopen like any other plugin.
        .library(name: "ParleyAssistant", type: .dynamic, targets: ["ParleyAssistant"]),
        /// Turns through the dispatcher with the SQLite store: the kill -9 test driver and the turn/store benchmark.
        .executable(name: "parley-turns", targets: ["TurnBench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        // Already in the graph through hummingbird; named here because EngineIO builds its own HTTP1 + WebSocket pipeline.
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.34.1"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.7.1"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        // Already in the graph through hummingbird (HummingbirdTLS); named here for the PEM loading in `parley serve`.
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        // Metrics: the libraries record through swift-metrics; the executable exports them with swift-prometheus.
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        // Base64 for Engine.IO binary packets over long-polling.
        .package(url: "https://github.com/swift-extras/swift-extras-base64.git", from: "1.2.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        // `store: postgres` (ParleyPostgres).
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
    ],
    targets: [
        // MARK: C
        /// The public plugin ABI: header-only C target over the repository's `include/`.
        .target(name: "CParley", path: "include", publicHeadersPath: "."),
        /// libffi through pkg-config (`libffi-dev`).
        .systemLibrary(name: "CFFI", pkgConfig: "libffi", providers: [.apt(["libffi-dev"])]),
        /// zlib through pkg-config (`zlib1g-dev`): raw deflate for WebSocket permessage-deflate (RFC 7692).
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        /// hiredis (`libhiredis-dev`): the RESP reader and command formatter of the Redis adapter (I/O is NIO's).
        .systemLibrary(name: "CHiredis", path: "Sources/CHiredis", pkgConfig: "hiredis", providers: [.apt(["libhiredis-dev"])]),

        // MARK: Libraries
        .target(name: "ParleyJSON", swiftSettings: swiftSettings),
        .target(
            name: "EngineIO",
            dependencies: [
                .product(name: "ExtrasBase64", package: "swift-extras-base64"),
                .product(name: "Metrics", package: "swift-metrics"),
                "CZlib", "ParleyJSON",
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "SocketIO",
            dependencies: [
                .product(name: "Metrics", package: "swift-metrics"),
                "EngineIO", "ParleyJSON",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(name: "ParleyCore", dependencies: ["ParleyJSON"], swiftSettings: swiftSettings),
        /// Threads for foreign calls that may block (plugins, libffi actions, the store's inline commit); also the
        /// `TaskExecutor` turns run on. Given to the libraries that use it (`BlockingExecutor`), never discovered.
        .target(name: "ParleyWorkers", dependencies: [.product(name: "NIOCore", package: "swift-nio")], swiftSettings: swiftSettings),
        .target(
            name: "ParleyDispatch",
            dependencies: [
                .product(name: "Metrics", package: "swift-metrics"),
                "ParleyCore", "ParleyJSON",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        /// The fuzz targets' entry points (Fuzz/ builds them with libFuzzer; ParleyFuzzTargetsTests replays the inputs).
        .target(name: "ParleyFuzzTargets", dependencies: ["EngineIO", "SocketIO", "ParleyJSON", "ParleyConfig"], swiftSettings: swiftSettings),
        /// Test kit shipped for users: the ConversationStore conformance checks (framework-neutral).
        .target(name: "ParleyTesting", dependencies: ["ParleyDispatch", "ParleyCore", "ParleyJSON", "EngineIO", "SocketIO"], swiftSettings: swiftSettings),
        .target(
            name: "ParleyStore",
            dependencies: [
                "ParleyDispatch", "ParleyWorkers", "ParleyCore", "ParleyJSON",
                .product(name: "GRDB", package: "GRDB.swift"),
                // The SQLite C API GRDB builds on: the commit binds event bytes without a copy, and the
                // checkpointer runs on a connection of its own.
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        /// `adapter: redis`: Socket.IO rooms across nodes in socket.io's Redis adapter format.
        .target(
            name: "SocketIORedis",
            dependencies: [
                "SocketIO", "ParleyJSON", "CHiredis",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        /// `store: postgres`: the conversation store every node of a cluster shares (postgres-nio).
        .target(
            name: "ParleyPostgres",
            dependencies: [
                "ParleyDispatch", "ParleyJSON",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ParleyPlugins",
            dependencies: [
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                "CParley", "ParleyDispatch", "ParleyWorkers", "ParleyCore", "ParleyJSON",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ParleyActions",
            dependencies: [
                "CFFI", "ParleyDispatch", "ParleyWorkers", "ParleyCore", "ParleyJSON", "ParleyYAML",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ParleyChannels",
            dependencies: [
                .product(name: "Metrics", package: "swift-metrics"),
                "SocketIO", "EngineIO", "ParleyDispatch", "ParleyCore", "ParleyJSON",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        /// The application as a library: `buildApplication(ParleyServerConfiguration)` assembles store, plugins,
        /// dispatcher, channels and the HTTP server into one service; tests and embedders build it in process.
        .target(
            name: "ParleyServer",
            dependencies: [
                "ParleyChannels", "ParleyDispatch", "ParleyWorkers", "ParleyStore", "ParleyPostgres", "SocketIORedis", "ParleyPlugins", "ParleyActions",
                "ParleyCore", "ParleyJSON", "SocketIO", "EngineIO",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings
        ),
        /// The one YAML reader (configuration and action manifests): `${ENV}` substitution, typed reads with the
        /// key path, unknown-key refusal, and FILE:LINE:COL in every error.
        .target(
            name: "ParleyYAML", dependencies: ["ParleyJSON", .product(name: "Yams", package: "Yams")], swiftSettings: swiftSettings),
        /// YAML (`parley.yml`, Rasa's `credentials.yml`) onto the libraries' configuration structs; only the
        /// executable imports it.
        .target(
            name: "ParleyConfig",
            dependencies: [
                "ParleyServer", "ParleyPostgres", "SocketIORedis", "SocketIO", "ParleyChannels", "ParleyDispatch", "EngineIO", "ParleyJSON", "ParleyYAML",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "LoadTest",
            dependencies: [
                "ParleyJSON",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: Executables
        /// The host process of a plugin with `isolation: process` (started by the server, not by users).
        .executableTarget(
            name: "ParleyPluginHost",
            dependencies: [
                "ParleyPlugins", "ParleyWorkers", "ParleyDispatch", "ParleyCore", "ParleyJSON",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "ParleyCLI",
            dependencies: [
                "ParleyServer", "ParleyChannels", "ParleyDispatch", "ParleyWorkers", "ParleyStore", "ParleyPlugins", "ParleyActions",
                "ParleyConfig", "ParleyYAML", "ParleyCore", "ParleyJSON", "SocketIO", "EngineIO", "LoadTest",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "ProtocolServer",
            dependencies: [
                "SocketIO", "EngineIO", "ParleyJSON",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        /// Raw SwiftNIO WebSocket echo server: the transport limit in `make bench`.
        .executableTarget(
            name: "NIOEchoBench",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ],
            path: "Benchmarks/NIOEchoBench",
            swiftSettings: swiftSettings
        ),

        /// `parley-turns`: dispatcher + SQLite store driver (kill -9 test, turn cost and store throughput benchmarks).
        .executableTarget(
            name: "TurnBench",
            dependencies: ["ParleyDispatch", "ParleyStore", "ParleyCore", "ParleyJSON"],
            path: "Benchmarks/TurnBench",
            swiftSettings: swiftSettings
        ),

        /// Plugin round-trip benchmark: `swift run -c release PluginBench build/plugins/libmirror.so`.
        .executableTarget(
            name: "PluginBench",
            dependencies: ["ParleyPlugins", "ParleyDispatch", "ParleyWorkers", "ParleyCore", "ParleyJSON"],
            path: "Benchmarks/PluginBench",
            swiftSettings: swiftSettings
        ),

        /// ParleyJSON against Foundation's JSONSerialization and Codable on one turn's payloads:
        /// `swift run -c release JSONBench` (docs/performance.md records the result).
        .executableTarget(name: "JSONBench", dependencies: ["ParleyJSON"], path: "Benchmarks/JSONBench", swiftSettings: swiftSettings),

        // MARK: Example plugin in Swift
        .target(
            name: "ParleyAssistant",
            dependencies: ["CParley", "ParleyJSON"],
            path: "Plugins/assistant-swift/Sources",
            swiftSettings: swiftSettings,
            // Export only parley_plugin_init_v1 (the version script hides the Swift symbols).
            linkerSettings: [
                .unsafeFlags(["-Xlinker", "--version-script=\(Context.packageDirectory)/Plugins/assistant-swift/exports.map"], .when(platforms: [.linux]))
            ]
        ),

        // MARK: Tests
        .testTarget(name: "ParleyJSONTests", dependencies: ["ParleyJSON"], swiftSettings: swiftSettings),
        .testTarget(
            name: "EngineIOTests",
            dependencies: [
                "EngineIO", "SocketIO", "ParleyJSON", "CZlib",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "SocketIOTests", dependencies: ["SocketIO", "EngineIO", "ParleyJSON"], swiftSettings: swiftSettings),
        .testTarget(
            name: "ParleyDispatchTests",
            dependencies: [
                "ParleyDispatch", "ParleyWorkers", "ParleyCore", "ParleyJSON",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "ParleyWorkersTests", dependencies: ["ParleyWorkers"], swiftSettings: swiftSettings),
        .testTarget(name: "ParleyFuzzTargetsTests", dependencies: ["ParleyFuzzTargets"], swiftSettings: swiftSettings),
        .testTarget(
            name: "ParleyStoreTests", dependencies: ["ParleyStore", "ParleyDispatch", "ParleyWorkers", "ParleyCore", "ParleyJSON", "ParleyTesting"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "SocketIORedisTests",
            dependencies: [
                "SocketIORedis", "SocketIO", "ParleyJSON", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "ParleyPostgresTests",
            dependencies: ["ParleyPostgres", "ParleyDispatch", "ParleyJSON", "ParleyTesting", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "ParleyPluginsTests",
            dependencies: [
                "ParleyPlugins", "CParley", "ParleyDispatch", "ParleyWorkers", "ParleyCore", "ParleyJSON", .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["Fixtures"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ParleyActionsTests",
            dependencies: ["ParleyActions", "ParleyDispatch", "ParleyWorkers", "ParleyCore", "ParleyJSON", .product(name: "Logging", package: "swift-log")],
            exclude: ["Fixtures"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ParleyConfigTests",
            dependencies: [
                "ParleyConfig", "ParleyYAML", "ParleyServer", "ParleyPostgres", "SocketIORedis", "ParleyChannels", "ParleyDispatch", "EngineIO", "ParleyJSON",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "ParleyServerTests",
            dependencies: [
                "ParleyServer", "ParleyChannels", "ParleyDispatch", "ParleyCore", "ParleyJSON", "ParleyTesting",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "LoadTestTests", dependencies: ["LoadTest", "ParleyJSON", .product(name: "NIOCore", package: "swift-nio")], swiftSettings: swiftSettings),
        .testTarget(
            name: "ParleyChannelsTests",
            dependencies: [
                "ParleyChannels", "ParleyDispatch", "ParleyCore", "ParleyJSON", "SocketIO", "EngineIO", "ParleyTesting",
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
