// swift-tools-version:6.2
// The libFuzzer executable behind `make fuzz` (scripts/fuzz.sh): one binary, the target chosen by
// PARLEY_FUZZ_TARGET (engineio, socketio, json, deflate, config). Built with
// `swift build -c release --sanitize=fuzzer --sanitize=address`; the targets themselves live in the main
// package (ParleyFuzzTargets), where `make test` replays their committed inputs without the fuzzer.
import PackageDescription

let package = Package(
    name: "parley-fuzz",
    platforms: [.macOS(.v14)],
    dependencies: [.package(name: "parley", path: "..")],
    targets: [
        .executableTarget(
            name: "parley-fuzz",
            dependencies: [.product(name: "ParleyFuzzTargets", package: "parley")]
        )
    ]
)
