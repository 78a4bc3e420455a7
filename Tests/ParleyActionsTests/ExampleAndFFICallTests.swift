import ParleyActions
import ParleyDispatch
import ParleyJSON
import Testing

/// `parley ffi-call` (its library function) against libm and the fixture, and the Plugins/actions-c example.
@Suite struct FFICallTests {
    @Test func powFromLibm() throws {
        #expect(try FFICall.run(library: "libm.so.6", symbol: "pow", signature: "double(double,double)", arguments: ["2", "10"]) == ["1024"])
        #expect(try FFICall.run(library: "libm.so.6", symbol: "cbrt", signature: "double(double)", arguments: ["8"]) == ["2"])
        #expect(try FFICall.run(library: "libm.so.6", symbol: "sqrt", signature: "double(double)", arguments: ["2"]) == ["1.4142135623730951"])
    }

    @Test func sayAndStringsFromTheFixture() throws {
        let lib = try Fixture.libraryPath()
        #expect(try FFICall.run(library: lib, symbol: "fx_greet", signature: "void(cstring,say)", arguments: ["Ada"]) == ["say: hello, Ada", "say: bye"])
        #expect(try FFICall.run(library: lib, symbol: "fx_null_string", signature: "cstring()", arguments: []) == ["NULL"])
        #expect(try FFICall.run(library: lib, symbol: "fx_not", signature: "bool(bool)", arguments: ["false"]) == ["true"])
        #expect(
            try FFICall.run(library: lib, symbol: "fx_concat", signature: "cstring(cstring,cstring)", arguments: ["a", "b"], freeFunction: "fx_free") == ["ab"])
    }

    @Test(arguments: [
        (["2"], "signature double(double,double) takes 2 arguments, got 1"),
        (["2", "x"], "argument 2 (double): 'x' is not a number"),
    ])
    func badArguments(arguments: [String], expected: String) {
        #expect {
            try FFICall.run(library: "libm.so.6", symbol: "pow", signature: "double(double,double)", arguments: arguments)
        } throws: { error in
            "\(error)".contains(expected)
        }
    }

    @Test func badSignatureLibraryAndSymbol() {
        #expect { try FFICall.run(library: "libm.so.6", symbol: "pow", signature: "double(double,float)", arguments: ["1", "2"]) } throws: {
            "\($0)".contains("parameter 2: unknown type 'float'")
        }
        #expect { try FFICall.run(library: "libnope.so.9", symbol: "pow", signature: "double()", arguments: []) } throws: {
            "\($0)".contains("cannot open library libnope.so.9")
        }
        #expect { try FFICall.run(library: "libm.so.6", symbol: "no_such_fn", signature: "double()", arguments: []) } throws: {
            "\($0)".contains("symbol 'no_such_fn' not found in libm.so.6")
        }
    }
}

@Suite struct ExampleManifestTests {
    @Test func examplePluginActionsRun() async throws {
        let out = try Fixture.exampleDirectory.get()
        let manifest = try ActionManifest.load(path: "\(out)/actions.yml")
        #expect(Set(manifest.actions.map(\.name)) == ["action_tip", "action_convert", "action_greet", "action_leap_year", "action_power"])
        let runner = NativeActionRunner(manifest: manifest, pool: testPool, logger: testLogger)

        let tip = try await runner.runAction(named: "action_tip", invocation: invocation(slots: ["amount": 42, "percent": 15]))
        #expect(tip.responses == [["text": "Tip: 6.30"]])
        #expect(tip.events.last == ["event": "slot", "name": "tip", "value": 6.3])

        let convert = try await runner.runAction(
            named: "action_convert", invocation: invocation(slots: ["distance": 10, "from_unit": "km", "to_unit": "mi"]))
        #expect(convert.responses == [["text": "10 km = 6.21 mi"]])
        let unknownUnit = try await runner.runAction(
            named: "action_convert", invocation: invocation(slots: ["distance": 10, "from_unit": "km", "to_unit": "parsec"]))
        #expect(unknownUnit.responses.isEmpty)

        let greet = try await runner.runAction(named: "action_greet", invocation: invocation(slots: ["user_name": "Ada"]))
        #expect(greet.responses == [["text": "Hello, Ada!"], ["text": "Ask me for a tip or a unit conversion."]])

        let leap = try await runner.runAction(named: "action_leap_year", invocation: invocation(slots: ["year": 2000]))
        #expect(leap.events.last == ["event": "slot", "name": "is_leap_year", "value": true])
        #expect(leap.responses == [["text": "Leap year: true"]])

        let power = try await runner.runAction(named: "action_power", invocation: invocation(slots: ["base": 2, "exponent": 10]))
        #expect(power.responses == [["text": "1024"]])
        #expect(power.events.last == ["event": "slot", "name": "power", "value": 1024.0])
    }
}
