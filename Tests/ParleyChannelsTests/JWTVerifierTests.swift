import Foundation
import JWTKit
import ParleyChannels
import ParleyJSON
import Testing

/// A claims payload for signing test tokens; nil fields are left out, so `TestClaims()` signs `{}`.
struct TestClaims: JWTPayload {
    var sub: String?
    var exp: ExpirationClaim?
    var nbf: NotBeforeClaim?
    var name: String?

    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

/// A fixed 2048-bit RSA key for tests only (generating RSA keys needs CryptoExtras directly).
let testRSAPrivateKeyPEM = """
    -----BEGIN RSA PRIVATE KEY-----
    MIIEogIBAAKCAQEAsLRyr5GmnkE8h//0ikx4dRVMNH72WQZH0HGmy7YmlyPh1kQg
    gHa/y+D4rP4MjwpTt+lZx/TjpR3iR9K4jdZg8VcR0XzLHhvR5I1bl74gAirXuBdr
    ZaZjEwnQkjd7SiaTUeAzkQ39K2MVvdqZJipcmbwOHWlTcFGkQjq/fKumjrKjM06e
    +UCrvQN9HuCWWDpWkPeqTFs5JSppZHrX452cWSEzOdQSiZ0WVQ0mzwqbV8fgwU7m
    LFFrUuqa1Hxkx6329GUU4v5RSx5a9/lYDIrxdG8/LZHbAIF9Nv55VtK1PIj2vCO0
    sw4OMrtNmJ3OjNC00d3g0jbJSOoKE+RJdZLKVQIDAQABAoIBAEPwZSXetLak826A
    uRdRVoEBusZ2SCYrVYItqEkrlAPJXoPAttRdk9mB+mqc1NxMRqrv076fB8WMy1r9
    CEs0cRppdSbbucauQJGEzgH2Lh1XNpCHpJm1EuOXgvMs1MDKOxsgPgNX4w6C7rGL
    shVr9SWAmdayD8wf/60dJFF9N7EmFy9d52KU1BT09niwf2LXLW6qRWvnA5iCwVOO
    okMz4rLPxJSXP2QawKJ+nw/KMQC/Vu3m6AbOlBdd6fNxnQ5C16eZYMHGb4znI6TJ
    PY2Ns7LHg23cIoURK6v/pg0XtklyEM1sP5ukBpJnsG+6wnrhQQy/Q6GDsy0RB0fA
    MbudoxMCgYEA1RXBYmbzgYbF8yPGIoCHeCUd7yK0SbyrplVNYvxYP4QbxICml1Ny
    IZk0gZsjldbGmFRBIRMS7KEt9LqDP7RyYWN3Gh7gqLZNltiliQeE66GJDCQtOgx/
    0IZW/kNxfduRdG+K26OE1o5IuR3henYV6nukzqmn8f/6GtO4a8pHYD8CgYEA1EsB
    Zoa6MUUebjurNSs2CyQXGFSwfECcC0GcZIXBm2i1ZnhR0/QNRZpPu2xJUa6ozhcS
    1yFGOj0P+xlp7ZbINgt8d10RmcZvCLYmXaTlAt4WiD4cfu0XRZEmlB30D7LE+2nf
    MENJ0YRzsGOZlcpXXi5p9KwKvK3OXkyBaofecGsCgYBRzsVtCwuH+f87hsuF6YSZ
    Gt7wNYm0GYxpEqzgSPN0hzrF6YKL7IyP26rt62rxFwEt8IMEuLb2RDdJkuXa6mNT
    goVycNJd04fcVxbOkiV09ZKRJ755X90eaMUzXx9Oa6LfageMpa3VVdETySYNBxMI
    8Clo8ne5EEasUAao04MtrwKBgF3GJ/824gYjhvagatcYmE3BimYX+sFX9NXQDJom
    r0fLr91sppCejEJDkJa0lYp8QVqPvKXEr/XHxUhgiHcHlLayyi8bsEuh6KgLddUF
    opdqrL9P2FyEtDPpkwX4WTeZ+wMnWAxEnNXs0QGIbW5KK9+RVwJaAIApsi/bUYtS
    KwKzAoGAAXjUpLa8raJg0LrXvCJVWOTm+eiMNlSbriknplIGPH/HzjMXwnoVAeMc
    BAnCFayqLNZ7Pd8oYrl56Ydc/YXdPuI5dh4sCHxdBc5eZ04wTJLvL4ntA2zd9Kkp
    8Y7QT7Eu+Pvm8gIr1zdNyDHCzYlpbBPhMjGcuN72FVihpNnKHE4=
    -----END RSA PRIVATE KEY-----
    """

/// Signs `claims` with the given key collection (header `alg` set by the signer).
func sign(_ claims: TestClaims, with keys: JWTKeyCollection) async throws -> String {
    try await keys.sign(claims)
}

/// A signer and the PEM/secret the verifier is configured with, for one algorithm.
func signer(for method: String) async throws -> (JWTKeyCollection, String) {
    let keys = JWTKeyCollection()
    switch method {
    // A short secret (as Rasa users write them) is signed with its zero-padded form, which HMAC treats
    // identically; the verifier is configured with the short one.
    case "HS256": await keys.add(hmac: HMACKey(from: padded("secret-key", 32)), digestAlgorithm: .sha256); return (keys, "secret-key")
    case "HS384": await keys.add(hmac: HMACKey(from: padded("secret-key", 48)), digestAlgorithm: .sha384); return (keys, "secret-key")
    case "HS512": await keys.add(hmac: HMACKey(from: padded("secret-key", 64)), digestAlgorithm: .sha512); return (keys, "secret-key")
    case "RS256", "RS384", "RS512":
        let key = try Insecure.RSA.PrivateKey(pem: testRSAPrivateKeyPEM)
        let digest: DigestAlgorithm = method == "RS256" ? .sha256 : method == "RS384" ? .sha384 : .sha512
        await keys.add(rsa: key, digestAlgorithm: digest)
        return (keys, key.publicKey.pemRepresentation)
    case "ES256":
        let key = ES256PrivateKey()
        await keys.add(ecdsa: key)
        return (keys, key.publicKey.pemRepresentation)
    case "ES384":
        let key = ES384PrivateKey()
        await keys.add(ecdsa: key)
        return (keys, key.publicKey.pemRepresentation)
    case "EdDSA":
        let key = try EdDSA.PrivateKey()
        await keys.add(eddsa: key)
        return (keys, key.publicKey.pemRepresentation)
    default:
        throw JWTSetupError("no test signer for \(method)")
    }
}

func padded(_ key: String, _ size: Int) -> [UInt8] {
    Array(key.utf8) + [UInt8](repeating: 0, count: max(0, size - key.utf8.count))
}

func b64url(_ s: String) -> String {
    Data(s.utf8).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        .replacingOccurrences(of: "=", with: "")
}

@Suite("JWT verification")
struct JWTVerifierTests {
    static let methods = ["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "EdDSA"]
    let future = ExpirationClaim(value: Date().addingTimeInterval(3600))

    @Test(arguments: methods)
    func acceptsAValidTokenWithAndWithoutBearer(method: String) async throws {
        let (keys, key) = try await signer(for: method)
        let verifier = try await JWTVerifier(method: method, key: key)
        let token = try await sign(TestClaims(sub: "user-1", exp: future), with: keys)
        let plain = verifier.verify(auth: ["token": .string(token)])
        #expect(try plain.get().claims["sub"] == "user-1")
        let bearer = verifier.verify(auth: ["token": .string("Bearer " + token)])
        #expect(try bearer.get().sessionID == nil)
    }

    @Test(arguments: methods)
    func rejectsAnExpiredToken(method: String) async throws {
        let (keys, key) = try await signer(for: method)
        let verifier = try await JWTVerifier(method: method, key: key)
        let token = try await sign(TestClaims(sub: "u", exp: ExpirationClaim(value: Date().addingTimeInterval(-10))), with: keys)
        #expect(verifier.verify(auth: ["token": .string(token)]) == .failure(JWTRejection(code: "expired", reason: "the token has expired (exp)")))
    }

    @Test(arguments: methods)
    func rejectsEmptyClaims(method: String) async throws {
        let (keys, key) = try await signer(for: method)
        let verifier = try await JWTVerifier(method: method, key: key)
        let token = try await sign(TestClaims(), with: keys)
        #expect(verifier.verify(auth: ["token": .string(token)]).code == "empty_claims")
    }

    @Test(arguments: methods)
    func rejectsASignatureFromAnotherKey(method: String) async throws {
        let (_, key) = try await signer(for: method)
        let verifier = try await JWTVerifier(method: method, key: key)
        let (otherKeys, _) = try await signer(for: method)
        var token = try await sign(TestClaims(sub: "u"), with: otherKeys)
        if method.hasPrefix("HS") || method.hasPrefix("RS") {
            // Same fixed key material: tamper with the payload instead.
            let parts = token.split(separator: ".")
            token = "\(parts[0]).\(b64url("{\"sub\":\"admin\"}")).\(parts[2])"
        }
        #expect(verifier.verify(auth: ["token": .string(token)]).code == "bad_signature")
    }

    @Test func rejectsAnotherAlgorithmAndNone() async throws {
        let verifier = try await JWTVerifier(method: "HS256", key: "secret-key")
        let (keys512, _) = try await signer(for: "HS512")
        let token = try await sign(TestClaims(sub: "u"), with: keys512)
        #expect(verifier.verify(auth: ["token": .string(token)]).code == "wrong_algorithm")
        let none = "\(b64url("{\"alg\":\"none\",\"typ\":\"JWT\"}")).\(b64url("{\"sub\":\"u\"}"))."
        #expect(verifier.verify(auth: ["token": .string(none)]).code == "wrong_algorithm")
        let (rsKeys, _) = try await signer(for: "RS256")
        let rs = try await sign(TestClaims(sub: "u"), with: rsKeys)
        #expect(verifier.verify(auth: ["token": .string(rs)]).code == "wrong_algorithm")
    }

    @Test func rejectsMalformedAndMissingTokens() async throws {
        let verifier = try await JWTVerifier(method: "HS256", key: "secret-key")
        #expect(verifier.verify(auth: nil).code == "missing_auth")
        #expect(verifier.verify(auth: .null).code == "missing_auth")
        #expect(verifier.verify(auth: "abc").code == "auth_not_object")
        #expect(verifier.verify(auth: [1, 2]).code == "auth_not_object")
        #expect(verifier.verify(auth: [:]).code == "missing_token")
        #expect(verifier.verify(auth: ["token": 5]).code == "missing_token")
        #expect(verifier.verify(auth: ["token": ""]).code == "empty_token")
        #expect(verifier.verify(auth: ["token": "Bearer "]).code == "empty_token")
        #expect(verifier.verify(auth: ["token": "not-a-jwt"]).code == "malformed")
        #expect(verifier.verify(auth: ["token": "a.b.c"]).code == "malformed")
        let arrayPayload = "\(b64url("{\"alg\":\"HS256\"}")).\(b64url("[1]")).sig"
        #expect(verifier.verify(auth: ["token": .string(arrayPayload)]).code == "malformed")
        let (keys, _) = try await signer(for: "HS256")
        let stringExp = try await keys.sign(StringExpClaims(sub: "u", exp: "tomorrow"))
        #expect(verifier.verify(auth: ["token": .string(stringExp)]).code == "malformed")
    }

    @Test func notBeforeIsChecked() async throws {
        let (keys, key) = try await signer(for: "HS256")
        let verifier = try await JWTVerifier(method: "HS256", key: key)
        let token = try await sign(TestClaims(sub: "u", nbf: NotBeforeClaim(value: Date().addingTimeInterval(600))), with: keys)
        #expect(verifier.verify(auth: ["token": .string(token)]).code == "not_yet_valid")
    }

    @Test func sessionClaimBindsTheSession() async throws {
        let (keys, key) = try await signer(for: "ES256")
        let verifier = try await JWTVerifier(method: "ES256", key: key, sessionClaim: "sub")
        let token = try await sign(TestClaims(sub: "conv-42", exp: future), with: keys)
        #expect(try verifier.verify(auth: ["token": .string(token)]).get().sessionID == "conv-42")
        let anonymous = try await sign(TestClaims(exp: future, name: "x"), with: keys)
        #expect(verifier.verify(auth: ["token": .string(anonymous)]).code == "missing_session_claim")
    }

    @Test func badKeysFailAtSetup() async throws {
        await #expect(throws: JWTSetupError.self) { try await JWTVerifier(method: "RS256", key: "not a pem") }
        await #expect(throws: JWTSetupError.self) { try await JWTVerifier(method: "ES256", key: "not a pem") }
        await #expect(throws: JWTSetupError.self) { try await JWTVerifier(method: "EdDSA", key: "not a pem") }
        await #expect(throws: JWTSetupError.self) { try await JWTVerifier(method: "none", key: "k") }
        await #expect(throws: JWTSetupError.self) { try await JWTVerifier(method: "HS256", key: "") }
        // A P-384 key is not a P-256 key.
        let p384 = ES384PrivateKey().publicKey.pemRepresentation
        await #expect(throws: JWTSetupError.self) { try await JWTVerifier(method: "ES256", key: p384) }
        // A private key is accepted; its public half verifies.
        let rsa = try await JWTVerifier(method: "RS256", key: testRSAPrivateKeyPEM)
        #expect(rsa.method == "RS256")
    }
}

/// A payload whose `exp` is not a number (PyJWT refuses it; so must we).
struct StringExpClaims: JWTPayload {
    var sub: String
    var exp: String
    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

extension Result where Failure == JWTRejection {
    /// The rejection code, or nil on success.
    var code: String? {
        if case .failure(let r) = self { return r.code }
        return nil
    }
}
