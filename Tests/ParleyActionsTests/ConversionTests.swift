import ParleyActions
import ParleyJSON
import Testing

@Suite struct ConversionTests {
    @Test func numbersToDeclaredTypes() throws {
        #expect(try FFIValue.convert(.int(15), to: .int32) == .int32(15))
        #expect(try FFIValue.convert(.double(15.0), to: .int32) == .int32(15))
        #expect(try FFIValue.convert(.int(-2_147_483_648), to: .int32) == .int32(.min))
        #expect(try FFIValue.convert(.int(2_147_483_647), to: .int32) == .int32(.max))
        #expect(try FFIValue.convert(.int(.max), to: .int64) == .int64(.max))
        #expect(try FFIValue.convert(.int(42), to: .double) == .double(42))
        #expect(try FFIValue.convert(.double(6.3), to: .double) == .double(6.3))
        #expect(try FFIValue.convert(.bool(true), to: .bool) == .bool(true))
        #expect(try FFIValue.convert(.string("héllo"), to: .cstring) == .cstring("héllo"))
    }

    @Test(arguments: [
        (JSONValue.int(2_147_483_648), FFIType.int32, "out of range for int32"),
        (.int(-2_147_483_649), .int32, "out of range for int32"),
        (.double(1e19), .int64, "out of range for int64"),
        (.double(15.5), .int32, "15.5 is not an integer"),
        (.double(.infinity), .int64, "is not an integer"),
        (.string("15"), .int32, "expected an integer, got the string \"15\""),
        (.string("6.3"), .double, "expected a number, got the string"),
        (.null, .double, "expected a number, got null"),
        (.int(1), .bool, "expected a bool, got the number 1"),
        (.int(1), .cstring, "expected a string, got the number 1"),
        (.array([]), .cstring, "got an array"),
        (.object([:]), .int64, "got an object"),
        (.string("a\u{0}b"), .cstring, "NUL character"),
        (.string("x"), .say, "takes no value"),
        (.string("x"), .void, "takes no value"),
    ])
    func rejectsWrongTypesAndRanges(value: JSONValue, type: FFIType, expected: String) {
        #expect {
            try FFIValue.convert(value, to: type)
        } throws: { error in
            "\(error)".contains(expected)
        }
    }

    @Test func commandLineWords() throws {
        #expect(try FFIValue.convert(argument: "-3", to: .int32) == .int32(-3))
        #expect(try FFIValue.convert(argument: "1e3", to: .int64) == .int64(1000))
        #expect(try FFIValue.convert(argument: "2.5", to: .double) == .double(2.5))
        #expect(try FFIValue.convert(argument: "true", to: .bool) == .bool(true))
        #expect(try FFIValue.convert(argument: "0", to: .bool) == .bool(false))
        #expect(try FFIValue.convert(argument: "12", to: .cstring) == .cstring("12"))
        #expect(throws: FFIConversionError.self) { try FFIValue.convert(argument: "abc", to: .double) }
        #expect(throws: FFIConversionError.self) { try FFIValue.convert(argument: "3000000000", to: .int32) }
        #expect(throws: FFIConversionError.self) { try FFIValue.convert(argument: "99999999999999999999", to: .int64) }
        #expect(throws: FFIConversionError.self) { try FFIValue.convert(argument: "yes", to: .bool) }
    }

    @Test func resultText() {
        #expect(FFIValue.double(1024).text == "1024")
        #expect(FFIValue.double(6.3).text == "6.3")
        #expect(FFIValue.double(-0.5).text == "-0.5")
        #expect(FFIValue.bool(false).text == "false")
        #expect(FFIValue.int64(.min).text == "-9223372036854775808")
        #expect(FFIValue.cstring(nil).json == .null)
        #expect(FFIValue.int32(7).json == .int(7))
    }

    @Test func templates() throws {
        #expect(try ResponseTemplate("Tip: {result}").render(.double(6.3)) == "Tip: 6.3")
        #expect(try ResponseTemplate("Tip: {result:.2f}").render(.double(6.3)) == "Tip: 6.30")
        #expect(try ResponseTemplate("{result:.0f}").render(.double(2.5)) == "3")
        #expect(try ResponseTemplate("{result:.1f}").render(.double(-1.25)) == "-1.3")
        #expect(try ResponseTemplate("{result:.3f}").render(.int32(4)) == "4.000")
        #expect(try ResponseTemplate("{{literal}} {result}").render(.bool(true)) == "{literal} true")
        #expect(try ResponseTemplate("no result").usesResult == false)
        #expect(throws: ActionError.self) { try ResponseTemplate("{amount}") }
        #expect(throws: ActionError.self) { try ResponseTemplate("open {result") }
        #expect(throws: ActionError.self) { try ResponseTemplate("close }") }
    }

    @Test func argumentSources() throws {
        #expect(try ArgumentSource(parsing: "slot:amount") == .slot("amount"))
        #expect(try ArgumentSource(parsing: "entity:city") == .entity("city"))
        #expect(try ArgumentSource(parsing: "metadata:locale") == .metadata("locale"))
        #expect(try ArgumentSource(parsing: "text") == .text)
        #expect(try ArgumentSource(parsing: "literal:km") == .literal("km"))
        #expect(throws: ActionError.self) { try ArgumentSource(parsing: "slots:amount") }
        #expect(throws: ActionError.self) { try ArgumentSource(parsing: "slot:") }

        let inv = invocation(
            slots: ["amount": 42, "empty": nil], text: "tip please",
            entities: [["entity": "city", "value": "Oslo"], ["entity": "city", "value": "Bergen"]],
            metadata: ["locale": "nb"])
        #expect(try ArgumentSource.slot("amount").value(in: inv) == 42)
        #expect(try ArgumentSource.entity("city").value(in: inv) == "Oslo")
        #expect(try ArgumentSource.metadata("locale").value(in: inv) == "nb")
        #expect(try ArgumentSource.text.value(in: inv) == "tip please")
        #expect(throws: ActionError.self) { try ArgumentSource.slot("empty").value(in: inv) }
        #expect(throws: ActionError.self) { try ArgumentSource.slot("missing").value(in: inv) }
        #expect(throws: ActionError.self) { try ArgumentSource.entity("name").value(in: inv) }
        #expect(throws: ActionError.self) { try ArgumentSource.metadata("x").value(in: inv) }
    }
}
