import ParleyActions
import Testing

@Suite struct SignatureTests {
    @Test(arguments: [
        ("double(double,int32)", FFIType.double, [FFIType.double, .int32]),
        ("cstring(cstring)", .cstring, [.cstring]),
        ("void(cstring,say)", .void, [.cstring, .say]),
        ("  int64 ( int64 , int64 )  ", .int64, [.int64, .int64]),
        ("bool()", .bool, []),
        ("int32(void)", .int32, []),
        ("void(say,bool,say)", .void, [.say, .bool, .say]),
    ])
    func parsesValid(text: String, returns: FFIType, parameters: [FFIType]) throws {
        let signature = try FFISignature(parsing: text)
        #expect(signature.returnType == returns)
        #expect(signature.parameters == parameters)
    }

    @Test func canonicalDescriptionRoundTrips() throws {
        let signature = try FFISignature(parsing: " double ( double , int32 ) ")
        #expect(signature.description == "double(double,int32)")
        #expect(try FFISignature(parsing: signature.description) == signature)
        #expect(try FFISignature(parsing: "void(cstring,say)").valueParameterCount == 1)
    }

    @Test(arguments: [
        ("double(float)", "parameter 1: unknown type 'float'"),
        ("double(double,int)", "parameter 2: unknown type 'int'"),
        ("float(double)", "return type: unknown type 'float'"),
        ("say(cstring)", "return type: 'say' is only valid as a parameter"),
        ("void(void,int32)", "parameter 1: 'void' is only valid as the return type"),
        ("int32(int32,void)", "parameter 2: 'void' is only valid as the return type"),
        ("double(double,)", "parameter 2: missing type name"),
        ("double(,double)", "parameter 1: missing type name"),
        ("double", "expected RETURN(PARAM,...)"),
        ("(double)", "missing return type"),
        ("double(double", "expected RETURN(PARAM,...)"),
        ("double(double) x", "unexpected text after ')'"),
        ("void(void (*)(const char *))", "nested parentheses"),
        ("", "expected RETURN(PARAM,...)"),
        ("const char *(int)", "return type: unknown type 'const char *'"),
    ])
    func rejectsInvalid(text: String, expected: String) {
        #expect {
            try FFISignature(parsing: text)
        } throws: { error in
            let description = "\(error)"
            return description.contains(expected) && description.contains("signature '\(text)'")
        }
    }

    @Test func programmaticSignatureRejectsMisplacedTypes() {
        #expect(throws: FFISignatureError.self) { try FFISignature(returns: .say, parameters: []) }
        #expect(throws: FFISignatureError.self) { try FFISignature(returns: .int32, parameters: [.void]) }
    }
}
