import ParleyActions
import ParleyJSON
import Testing

@Suite struct ManifestTests {
    func yaml(_ actions: String, library: String? = nil) throws -> String {
        "library: \(try library ?? Fixture.libraryPath())\nactions:\n\(actions)"
    }

    @Test func loadsEveryKey() throws {
        let manifest = try Fixture.loadManifest(
            try yaml(
                """
                  action_add:
                    symbol: fx_add_double_int32
                    signature: double(double,int32)
                    args: [slot:amount, 15]
                    slot: total
                    reply: "Total: {result:.2f}"
                    timeout: 0.5
                  action_greet:
                    symbol: fx_greet
                    signature: void(cstring,say)
                    args: [entity:name, say]
                  action_len:
                    symbol: fx_strlen
                    signature: int64(cstring)
                    args: ["literal:abc"]
                  action_concat:
                    symbol: fx_concat
                    signature: cstring(cstring,cstring)
                    args: [text, metadata:suffix]
                    free: fx_free
                """))
        #expect(manifest.actions.map(\.name) == ["action_add", "action_greet", "action_len", "action_concat"])
        let add = try #require(manifest.action(named: "action_add"))
        #expect(add.arguments == [.slot("amount"), .literal(15)])
        #expect(add.slot == "total")
        #expect(add.timeout == .milliseconds(500))
        #expect(add.function.signature.description == "double(double,int32)")
        #expect(manifest.action(named: "action_greet")?.arguments == [.entity("name")])
        #expect(manifest.action(named: "action_len")?.arguments == [.literal("abc")])
        #expect(manifest.action(named: "action_concat")?.function.freeFunctionName == "fx_free")
    }

    @Test func symbolDefaultsToActionNameAndLibraryResolvesNextToManifest() throws {
        // libm by soname; the action name is the symbol.
        let manifest = try Fixture.loadManifest(
            """
            actions:
              cbrt:
                library: libm.so.6
                signature: double(double)
                args: [slot:x]
            """)
        #expect(manifest.action(named: "cbrt")?.function.symbol == "cbrt")
    }

    @Test func unknownKeysAndWrongTypesNameFileAndKeyPath() throws {
        let error = try Fixture.manifestError(
            try yaml(
                """
                  action_a:
                    symbol: fx_neg_int32
                    signature: int32(int32)
                    args: [slot:x]
                    repyl: "{result}"
                  action_b:
                    symbol: [fx_neg_int32]
                    signature: int32(int32)
                    args: slot:x
                """) + "\nextra: 1\n")
        let text = error.message
        #expect(error.code == .manifest)
        #expect(text.contains("actions.yml:7:5: actions.action_a.repyl: unknown key"))
        #expect(text.contains("actions.action_b.symbol: expected a string, got a list"))
        #expect(text.contains("actions.action_b.args: expected a list of argument sources, got the string \"slot:x\""))
        #expect(text.contains("extra: unknown key (expected: library, actions)"))
    }

    @Test(arguments: [
        ("signature: double(float)\n    args: [1]", "actions.x.signature: signature 'double(float)': parameter 1: unknown type 'float'"),
        ("signature: int32(int32)\n    args: [slot:a, slot:b]", "signature int32(int32) takes 1 argument, args lists 2"),
        ("signature: int32(int32)\n    args: []", "takes 1 argument, args lists 0"),
        ("signature: int32(int32)\n    args: [slots:a]", "actions.x.args[0]: unknown argument source 'slots:a'"),
        ("signature: int32(int32)\n    args: [3000000000]", "out of range for int32"),
        ("signature: int32(int32)\n    args: [2.5]", "2.5 is not an integer"),
        ("signature: int32(int32)\n    args: [\"literal:x\"]", "expected an integer, got the string \"x\""),
        ("signature: int32(int32)\n    args: [~]", "null is not an argument source"),
        ("signature: void(cstring,say)\n    args: [say, text]", "'say' must be at a say position"),
        ("signature: int32(int32)\n    args: [1]\n    reply: \"{amount}\"", "unknown placeholder '{amount}'"),
        ("signature: void()\n    slot: s", "cannot be set: the function returns void"),
        ("signature: void()\n    reply: \"{result}\"", "uses {result} but the function returns void"),
        ("signature: int32(int32)\n    args: [1]\n    timeout: -1", "actions.x.timeout: expected a positive number of seconds"),
        ("args: [1]", "actions.x.signature: missing"),
    ])
    func actionProblemsAreReportedAtLoad(body: String, expected: String) throws {
        let error = try Fixture.manifestError(try yaml("  x:\n    symbol: fx_neg_int32\n    \(body)\n"))
        #expect(error.message.contains(expected), "\(error)")
        #expect(error.action == "x")
        #expect(error.description.contains("actions.yml"))
    }

    @Test func missingLibraryAndSymbol() throws {
        let lib = try Fixture.manifestError(
            """
            actions:
              x:
                library: libdoes-not-exist.so
                signature: void()
            """)
        #expect(lib.code == .library)
        #expect(lib.description.contains("actions.x.library: cannot open library libdoes-not-exist.so"))
        let sym = try Fixture.manifestError(try yaml("  action_nope:\n    symbol: fx_nope\n    signature: void()\n"))
        #expect(sym.code == .symbol)
        #expect(sym.description.contains("actions.action_nope.symbol: symbol 'fx_nope' not found"))
        #expect(sym.action == "action_nope")
        let free = try Fixture.manifestError(
            try yaml("  c:\n    symbol: fx_concat\n    signature: cstring(cstring,cstring)\n    args: [text, text]\n    free: no_free\n"))
        #expect(free.description.contains("actions.c.free: symbol 'no_free' not found"))
        let noLibrary = try Fixture.manifestError("actions:\n  x:\n    signature: void()\n")
        #expect(noLibrary.description.contains("actions.x.library: missing"))
    }

    @Test func notYAMLOrWrongShape() throws {
        #expect(try Fixture.manifestError("actions: [unclosed").description.contains("not valid YAML"))
        #expect(try Fixture.manifestError("- a\n- b\n").description.contains("expected a mapping with an 'actions' key"))
        #expect(try Fixture.manifestError("library: x.so\n").description.contains("actions: missing"))
        #expect(try Fixture.manifestError("actions:\n  x: 3\n").description.contains("actions.x: expected a mapping"))
        #expect {
            try ActionManifest.load(path: "/nonexistent/actions.yml")
        } throws: { error in
            "\(error)".contains("cannot read action manifest /nonexistent/actions.yml")
        }
    }

    @Test func everyProblemIsListed() throws {
        let error = try Fixture.manifestError(
            try yaml(
                """
                  a:
                    signature: double(float)
                  b:
                    signature: int32(int32)
                    args: [slots:x]
                """))
        #expect(error.message.split(separator: "\n").count == 2)
        #expect(error.action == nil)
    }
}
