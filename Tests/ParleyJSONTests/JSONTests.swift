import ParleyJSON
import Testing

@Suite struct JSONTests {
    @Test(arguments: [
        #"{"a":1,"b":[true,false,null],"c":"x\"y","d":-1.5}"#,
        #"["session_confirm","abc"]"#,
        #"{"text":"héllo 👋"}"#,
        "[]", "{}", "0", "-0.25", #""\u0001""#,
    ])
    func roundTrip(_ text: String) throws {
        let value = try JSONValue.parse(text)
        #expect(try JSONValue.parse(value.serialized) == value)
    }

    @Test func keepsKeyOrderAndTypes() throws {
        let value = try JSONValue.parse(#"{"z":1,"a":true,"m":1.5,"big":12345678901234}"#)
        #expect(value.serialized == #"{"z":1,"a":true,"m":1.5,"big":12345678901234}"#)
        #expect(value["a"] == .bool(true))
        #expect(value["z"] == .int(1))
    }

    @Test func decodesEscapesAndSurrogates() throws {
        let value = try JSONValue.parse(#""a\nb\u00e9\ud83d\udc4b\/""#)
        #expect(value == .string("a\nbé👋/"))
    }

    @Test(arguments: [
        "", "{", "[1,]", #"{"a" 1}"#, "tru", "01", "1.", "-", #""\x""#, #""\ud800""#, "[1] x", "\"a\u{01}\"", "{\"a\":1,}",
    ])
    func rejectsMalformed(_ text: String) {
        #expect(throws: JSONParseError.self) { try JSONValue.parse(text) }
    }

    @Test func rejectsInvalidUTF8() {
        let bytes: [UInt8] = [0x22, 0xFF, 0xFE, 0x22]
        #expect(throws: JSONParseError.self) { try JSONValue.parse(bytes) }
    }

    @Test func limitsDepth() {
        let deep = String(repeating: "[", count: 600) + String(repeating: "]", count: 600)
        #expect(throws: JSONParseError.self) { try JSONValue.parse(deep) }
    }

    @Test func parsesPrefix() throws {
        let bytes = Array(#"["a",{"b":2}]trailing"#.utf8)
        let (value, used) = try bytes.withUnsafeBufferPointer { try JSONValue.parsePrefix($0) }
        #expect(value == ["a", ["b": 2]])
        #expect(used == 13)
    }

    @Test func falsiness() {
        #expect(JSONValue.string("").isFalsy)
        #expect(JSONValue.array([]).isFalsy)
        #expect(!JSONValue.string("x").isFalsy)
    }
}
