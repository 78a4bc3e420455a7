import Foundation
import ParleyFuzzTargets
import Testing

/// Every committed fuzz input (`Tests/fuzz/corpus/<target>/` seeds and `Tests/fuzz/regressions/<target>/` for
/// inputs that once crashed, hung or blew up memory) runs through its target without the fuzzer: a finding,
/// once fixed, stays fixed. `make fuzz` finds new ones.
@Suite struct FuzzReplayTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("fuzz")

    static func inputs(of target: FuzzTarget) -> [URL] {
        ["corpus", "regressions"].flatMap { kind -> [URL] in
            let folder = root.appendingPathComponent(kind).appendingPathComponent(target.rawValue)
            let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
            return names.sorted().map { folder.appendingPathComponent($0) }
        }
    }

    @Test(arguments: FuzzTarget.allCases)
    func replay(_ target: FuzzTarget) throws {
        let files = Self.inputs(of: target)
        #expect(!files.isEmpty, "no seed inputs under Tests/fuzz/corpus/\(target.rawValue)")
        for file in files {
            target.run(Array(try Data(contentsOf: file)))
        }
    }
}
