import ParleyActions
import Testing

/// Calls through libffi against Fixtures/fixture.c, built with cc into a temporary directory.
@Suite struct NativeCallTests {
    func call(_ symbol: String, _ signature: String, _ arguments: [FFIValue], free: String? = nil) throws -> NativeFunction.Outcome {
        try Fixture.function(symbol, signature, free: free).call(arguments)
    }

    @Test func scalarTypes() throws {
        #expect(try call("fx_add_double_int32", "double(double,int32)", [.double(42), .int32(15)]).value == .double(57))
        #expect(try call("fx_neg_int32", "int32(int32)", [.int32(-7)]).value == .int32(7))
        #expect(try call("fx_neg_int32", "int32(int32)", [.int32(Int32.max)]).value == .int32(-Int32.max))
        #expect(try call("fx_mul_int64", "int64(int64,int64)", [.int64(3_000_000_000), .int64(3)]).value == .int64(9_000_000_000))
        #expect(try call("fx_min_int32", "int32()", []).value == .int32(.min))
        #expect(try call("fx_max_int64", "int64(void)", []).value == .int64(.max))
        #expect(try call("fx_not", "bool(bool)", [.bool(true)]).value == .bool(false))
        #expect(try call("fx_not", "bool(bool)", [.bool(false)]).value == .bool(true))
        #expect(try call("fx_is_positive", "bool(double)", [.double(-0.5)]).value == .bool(false))
        #expect(try call("fx_bool_to_int", "int32(bool)", [.bool(true)]).value == .int32(1))
        #expect(try call("fx_void_noop", "void()", []).value == .void)
    }

    @Test func strings() throws {
        #expect(try call("fx_strlen", "int64(cstring)", [.cstring("héllo")]).value == .int64(6))
        #expect(try call("fx_strlen", "int64(cstring)", [.cstring("")]).value == .int64(0))
        #expect(try call("fx_static_string", "cstring()", []).value == .cstring("static ünïcödé"))
        #expect(try call("fx_null_string", "cstring()", []).value == .cstring(nil))
        #expect(try call("fx_concat", "cstring(cstring,cstring)", [.cstring("ab"), .cstring("çd")], free: "fx_free").value == .cstring("abçd"))
    }

    @Test func freeFunctionRunsOncePerReturnedString() throws {
        let count = try Fixture.function("fx_free_count", "int32()")
        let concat = try Fixture.function("fx_concat", "cstring(cstring,cstring)", free: "fx_free")
        guard case .int32(let before) = try count.call([]).value else { Issue.record("count"); return }
        for _ in 0..<3 { _ = try concat.call([.cstring("a"), .cstring("b")]) }
        // Other tests may free concurrently, so at least our three calls are counted.
        guard case .int32(let after) = try count.call([]).value else { Issue.record("count"); return }
        #expect(after - before >= 3)
    }

    @Test func mixedAndManyArguments() throws {
        let mixed = try call(
            "fx_mixed", "double(bool,int32,int64,double,cstring)", [.bool(true), .int32(-2), .int64(10_000_000_000), .double(0.5), .cstring("abc")])
        let expected: Double = 10_000_001_001.5  // 1000 (flag) - 2 + 10_000_000_000 + 0.5 + strlen("abc")
        #expect(mixed.value == .double(expected))
        let ints: [FFIValue] = (1...8).map { .int32(Int32($0)) }
        #expect(try call("fx_many_int32", "int32(int32,int32,int32,int32,int32,int32,int32,int32)", ints).value == .int32(204))
        let doubles: [FFIValue] = (1...10).map { .double(Double($0) / 2) }
        #expect(try call("fx_many_double", "double(double,double,double,double,double,double,double,double,double,double)", doubles).value == .double(27.5))
    }

    @Test func sayCallbacks() throws {
        let greet = try call("fx_greet", "void(cstring,say)", [.cstring("Ada")])
        #expect(greet.said == ["hello, Ada", "bye"])
        #expect(greet.value == .void)
        let two = try call("fx_two_says", "int32(say,int32,say)", [.int32(21)])
        #expect(two.value == .int32(42))
        #expect(two.said == ["one", "two", "three"])
    }

    @Test func invalidUTF8IsAnErrorNotACrash() throws {
        #expect {
            try call("fx_invalid_utf8", "cstring()", [])
        } throws: { error in
            (error as? ActionError)?.code == .result && "\(error)".contains("not valid UTF-8")
        }
        #expect {
            try call("fx_invalid_utf8_malloc", "cstring()", [], free: "fx_free")
        } throws: { error in
            (error as? ActionError)?.code == .result
        }
        #expect {
            try call("fx_say_invalid", "void(say)", [])
        } throws: { error in
            (error as? ActionError)?.code == .callback && "\(error)".contains("say message 2")
        }
    }

    @Test func bindingErrors() throws {
        let path = try Fixture.libraryPath()
        #expect {
            try NativeFunction(library: path, symbol: "fx_missing", signature: FFISignature(parsing: "void()"))
        } throws: { error in
            (error as? ActionError)?.code == .symbol && "\(error)".contains("'fx_missing'")
        }
        #expect {
            try NativeFunction(library: "/nonexistent/libnope.so", symbol: "x", signature: FFISignature(parsing: "void()"))
        } throws: { error in
            (error as? ActionError)?.code == .library && "\(error)".contains("/nonexistent/libnope.so")
        }
        #expect {
            try NativeFunction(library: path, symbol: "fx_concat", signature: FFISignature(parsing: "cstring(cstring,cstring)"), freeFunction: "fx_nofree")
        } throws: { error in
            (error as? ActionError)?.code == .symbol && "\(error)".contains("fx_nofree")
        }
        #expect {
            try NativeFunction(library: path, symbol: "fx_neg_int32", signature: FFISignature(parsing: "int32(int32)"), freeFunction: "fx_free")
        } throws: { error in
            (error as? ActionError)?.code == .signature
        }
    }

    @Test func callArgumentMismatch() throws {
        let function = try Fixture.function("fx_add_double_int32", "double(double,int32)")
        #expect(throws: ActionError.self) { try function.call([.double(1)]) }
        #expect(throws: ActionError.self) { try function.call([.double(1), .int64(2)]) }
        #expect(throws: ActionError.self) { try function.call([.double(1), .int32(2), .int32(3)]) }
    }
}
