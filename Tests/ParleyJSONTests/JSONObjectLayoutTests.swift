import ParleyJSON
import Testing

/// The small-object layout (linear scan) and the indexed layout of large objects behave the same.
@Suite struct JSONObjectLayoutTests {
    /// An object with `n` keys `k0…k(n-1)` set to their index.
    func object(_ n: Int) -> JSONObject {
        var o = JSONObject()
        for i in 0..<n { o["k\(i)"] = .int(Int64(i)) }
        return o
    }

    @Test(arguments: [0, 1, 5, 12, 13, 40])
    func setGetReplaceRemoveKeepOrder(_ n: Int) {
        var o = object(n)
        #expect(o.count == n)
        #expect(o.keys == (0..<n).map { "k\($0)" })
        for i in 0..<n { #expect(o["k\(i)"] == .int(Int64(i))) }
        #expect(o["missing"] == nil)
        // Replacing keeps the position.
        if n > 2 {
            o["k1"] = "x"
            #expect(o.keys[1] == "k1")
            #expect(o["k1"] == "x")
            // Removing shifts the later keys, which stay reachable.
            o["k0"] = nil
            #expect(o.count == n - 1)
            #expect(o.keys.first == "k1")
            for i in 2..<n { #expect(o["k\(i)"] == .int(Int64(i))) }
            o["new"] = true
            #expect(o.keys.last == "new")
            #expect(o["new"] == true)
        }
    }

    @Test(arguments: [3, 30])
    func equalityAndHashIgnoreKeyOrder(_ n: Int) {
        let forward = object(n)
        var backward = JSONObject()
        for i in (0..<n).reversed() { backward["k\(i)"] = .int(Int64(i)) }
        #expect(forward == backward)
        #expect(forward.hashValue == backward.hashValue)
        var different = backward
        different["k0"] = "other"
        #expect(forward != different)
        #expect(Set([JSONValue.object(forward), .object(backward)]).count == 1)
    }

    @Test func duplicateKeysInTextKeepTheLastValueAtTheFirstPosition() throws {
        let value = try JSONValue.parse(#"{"a":1,"b":2,"a":3}"#)
        #expect(value.serialized == #"{"a":3,"b":2}"#)
        let many = "{" + (0..<20).map { #""k\#($0)":\#($0)"# }.joined(separator: ",") + #","k3":"x"}"#
        let parsed = try JSONValue.parse(many)
        #expect(parsed.objectValue?.count == 20)
        #expect(parsed["k3"] == "x")
    }

    @Test func integersAndEscapesSerialiseAsBefore() throws {
        let text = #"[0,-0,7,-7,123456789012345678,-123456789012345678,9223372036854775807,-9223372036854775808,1.5,"a\"b\\c\n\u0001é"]"#
        let value = try JSONValue.parse(text)
        guard case .array(let a) = value else { Issue.record("not an array"); return }
        #expect(a[0] == .int(0))
        #expect(a[1] == .int(0))
        #expect(a[4] == .int(123_456_789_012_345_678))
        #expect(a[5] == .int(-123_456_789_012_345_678))
        #expect(a[6] == .int(.max))
        #expect(a[7] == .int(.min))
        #expect(value.serialized == #"[0,0,7,-7,123456789012345678,-123456789012345678,9223372036854775807,-9223372036854775808,1.5,"a\"b\\c\n\u0001é"]"#)
        #expect(JSONValue.double(1764405123.25).serialized == "1764405123.25")
        #expect(JSONValue.double(3).serialized == "3")
    }
}
