import Foundation
import JWTKit
public import ParleyJSON

/// Why a connection's JWT was refused. The client only ever sees Rasa's
/// `44{"message":"Connection rejected by server"}`; the reason goes to the log.
public struct JWTRejection: Error, Sendable, Hashable, CustomStringConvertible {
    /// A stable identifier of the reason (`missing_auth`, `bad_signature`, …), for logs and tests.
    public var code: String
    /// A human-readable explanation.
    public var reason: String

    public init(code: String, reason: String) {
        self.code = code
        self.reason = reason
    }

    public var description: String { "\(code): \(reason)" }

    static let missingAuth = JWTRejection(code: "missing_auth", reason: "no auth object in the CONNECT packet (send {\"token\": \"<jwt>\"})")
    static let authNotObject = JWTRejection(code: "auth_not_object", reason: "the auth payload is not an object")
    static let missingToken = JWTRejection(code: "missing_token", reason: "auth.token is missing or not a string")
    static let emptyToken = JWTRejection(code: "empty_token", reason: "auth.token is empty")
    static let badSignature = JWTRejection(code: "bad_signature", reason: "the signature does not verify with the configured key")
    static let expired = JWTRejection(code: "expired", reason: "the token has expired (exp)")
    static let notYetValid = JWTRejection(code: "not_yet_valid", reason: "the token is not valid yet (nbf)")
    static let emptyClaims = JWTRejection(code: "empty_claims", reason: "the token has no claims (Rasa refuses empty payloads)")
    static func malformed(_ why: String) -> JWTRejection { JWTRejection(code: "malformed", reason: "malformed token: \(why)") }
    static func wrongAlgorithm(_ alg: String, expected: String) -> JWTRejection {
        JWTRejection(code: "wrong_algorithm", reason: "token algorithm \(alg) is not the configured \(expected)")
    }
    static func missingSessionClaim(_ claim: String) -> JWTRejection {
        JWTRejection(code: "missing_session_claim", reason: "the token has no string claim \"\(claim)\" (jwt_session_claim)")
    }
}

/// A JWT key or method that cannot be used; reported at startup.
public struct JWTSetupError: Error, Sendable, Hashable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A verified connection identity.
public struct JWTIdentity: Sendable, Hashable {
    /// The token's claims (never empty).
    public var claims: JSONObject
    /// The value of the configured `jwt_session_claim`, when one is configured: the only session id this
    /// socket may request and send for.
    public var sessionID: String?
}

/// Verifies the JWT a Socket.IO client sends in its CONNECT auth object, as Rasa's socketio channel does:
/// the token is `auth.token` (a `Bearer ` prefix is removed), it must be signed with exactly the configured
/// algorithm (never `none`), must not be expired or not-yet-valid, and must carry at least one claim.
///
/// Verification is synchronous (it runs inside the Socket.IO connection middleware); only building the
/// verifier is `async` (jwt-kit's key collection is an actor).
///
/// Thread-safety: `Sendable`; ``verify(auth:now:)`` may run concurrently.
public struct JWTVerifier: Sendable {
    /// The single accepted algorithm (`HS256`, …, `EdDSA`).
    public let method: String
    /// The claim whose value is the socket's session id, or nil.
    public let sessionClaim: String?
    private let algorithm: any JWTAlgorithm

    /// Builds a verifier.
    /// - Parameters:
    ///   - method: one of `HS256 HS384 HS512 RS256 RS384 RS512 ES256 ES384 EdDSA`.
    ///   - key: the HMAC secret for `HS*`; a PEM public key (or private key, whose public half is used) otherwise.
    ///   - sessionClaim: see ``JWTIdentity/sessionID``.
    /// - Throws: ``JWTSetupError`` when the method is unsupported or the key does not fit it.
    public init(method: String, key: String, sessionClaim: String? = nil) async throws(JWTSetupError) {
        self.method = method
        self.sessionClaim = sessionClaim
        let keys = JWTKeyCollection()
        let pem = key.trimmingCharacters(in: .whitespacesAndNewlines)
        do {
            switch method {
            case "HS256", "HS384", "HS512":
                guard !key.isEmpty else { throw JWTSetupError("the HMAC secret is empty") }
                let digest: DigestAlgorithm = method == "HS256" ? .sha256 : method == "HS384" ? .sha384 : .sha512
                await keys.add(hmac: HMACKey(from: Self.hmacKeyBytes(key, method: method)), digestAlgorithm: digest)
            case "RS256", "RS384", "RS512":
                let digest: DigestAlgorithm = method == "RS256" ? .sha256 : method == "RS384" ? .sha384 : .sha512
                let publicKey: Insecure.RSA.PublicKey
                if let k = try? Insecure.RSA.PublicKey(pem: pem) {
                    publicKey = k
                } else if let k = try? Insecure.RSA.PrivateKey(pem: pem) {
                    publicKey = k.publicKey
                } else if let k = try? Insecure.RSA.PublicKey(certificatePEM: pem) {
                    publicKey = k
                } else {
                    throw JWTSetupError("\(method) needs a PEM RSA public key of at least 2048 bits (-----BEGIN PUBLIC KEY-----)")
                }
                await keys.add(rsa: publicKey, digestAlgorithm: digest)
            case "ES256":
                if let k = try? ES256PublicKey(pem: pem) {
                    await keys.add(ecdsa: k)
                } else if let k = try? ES256PrivateKey(pem: pem) {
                    await keys.add(ecdsa: k.publicKey)
                } else {
                    throw JWTSetupError("ES256 needs a PEM P-256 public key (-----BEGIN PUBLIC KEY-----)")
                }
            case "ES384":
                if let k = try? ES384PublicKey(pem: pem) {
                    await keys.add(ecdsa: k)
                } else if let k = try? ES384PrivateKey(pem: pem) {
                    await keys.add(ecdsa: k.publicKey)
                } else {
                    throw JWTSetupError("ES384 needs a PEM P-384 public key (-----BEGIN PUBLIC KEY-----)")
                }
            case "EdDSA":
                if let k = try? EdDSA.PublicKey(pem: pem) {
                    await keys.add(eddsa: k)
                } else if let k = try? EdDSA.PrivateKey(pem: pem) {
                    await keys.add(eddsa: k.publicKey)
                } else {
                    throw JWTSetupError("EdDSA needs a PEM Ed25519 public key (-----BEGIN PUBLIC KEY-----)")
                }
            default:
                throw JWTSetupError("unsupported jwt_method \(method); use one of HS256 HS384 HS512 RS256 RS384 RS512 ES256 ES384 EdDSA")
            }
            self.algorithm = try await keys.getKey()
        } catch let error as JWTSetupError {
            throw error
        } catch {
            throw JWTSetupError("\(error)")
        }
    }

    /// The HMAC key bytes, zero-padded to the hash size. HMAC pads every key shorter than the hash block with
    /// zeros, so the MAC is unchanged; padding only keeps jwt-kit's debug assertion about short keys (PyJWT and
    /// Rasa accept short secrets such as `secret`) from stopping the process.
    static func hmacKeyBytes(_ key: String, method: String) -> [UInt8] {
        let size = method == "HS256" ? 32 : method == "HS384" ? 48 : 64
        var bytes = Array(key.utf8)
        if bytes.count < size { bytes += [UInt8](repeating: 0, count: size - bytes.count) }
        return bytes
    }

    /// Checks the auth payload of a CONNECT packet.
    /// - Parameters:
    ///   - auth: the CONNECT packet's payload; nil when the client sent none.
    ///   - now: the current time (injectable for tests).
    /// - Returns: the identity, or the reason for refusing the connection.
    public func verify(auth: JSONValue?, now: Date = Date()) -> Result<JWTIdentity, JWTRejection> {
        guard let auth, !auth.isNull else { return .failure(.missingAuth) }
        guard case .object(let object) = auth else { return .failure(.authNotObject) }
        guard case .string(let raw)? = object["token"] else { return .failure(.missingToken) }
        // Rasa: token.replace("Bearer ", "")
        let token = raw.replacingOccurrences(of: "Bearer ", with: "")
        guard !token.isEmpty else { return .failure(.emptyToken) }
        return verify(token: token, now: now)
    }

    /// Verifies a bare token (no `Bearer ` handling).
    public func verify(token: String, now: Date = Date()) -> Result<JWTIdentity, JWTRejection> {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else { return .failure(.malformed("expected 3 dot-separated parts, got \(parts.count)")) }
        guard let headerBytes = Base64URL.decode(parts[0]), let header = try? JSONValue.parse(headerBytes, maxDepth: JSONValue.inputParseDepth),
            case .object(let h) = header
        else {
            return .failure(.malformed("the header is not base64url-encoded JSON"))
        }
        guard case .string(let alg)? = h["alg"] else { return .failure(.malformed("the header has no alg")) }
        guard alg == method else { return .failure(.wrongAlgorithm(alg, expected: method)) }
        guard let payloadBytes = Base64URL.decode(parts[1]), let payload = try? JSONValue.parse(payloadBytes, maxDepth: JSONValue.inputParseDepth) else {
            return .failure(.malformed("the payload is not base64url-encoded JSON"))
        }
        guard case .object(let claims) = payload else { return .failure(.malformed("the payload is not a JSON object")) }
        guard let signature = Base64URL.decode(parts[2]) else { return .failure(.malformed("the signature is not base64url")) }
        let signed = Array(token.utf8.prefix(parts[0].utf8.count + 1 + parts[1].utf8.count))
        do {
            guard try algorithm.verify(signature, signs: signed) else { return .failure(.badSignature) }
        } catch {
            return .failure(.badSignature)
        }
        // PyJWT's defaults: exp and nbf must be numbers and hold; iat must be a number when present.
        let seconds = now.timeIntervalSince1970
        for key in ["exp", "nbf", "iat"] {
            guard let value = claims[key] else { continue }
            guard let t = value.doubleValue else { return .failure(.malformed("the \(key) claim is not a number")) }
            if key == "exp" && !(seconds < t) { return .failure(.expired) }
            if key == "nbf" && seconds < t { return .failure(.notYetValid) }
        }
        guard !claims.isEmpty else { return .failure(.emptyClaims) }
        var sessionID: String?
        if let claim = sessionClaim {
            switch claims[claim] {
            case .string(let s)? where !s.isEmpty: sessionID = s
            case .int(let i)?: sessionID = String(i)
            default: return .failure(.missingSessionClaim(claim))
            }
        }
        return .success(JWTIdentity(claims: claims, sessionID: sessionID))
    }
}

/// Base64url without padding (RFC 7515 §2), tolerant of padding.
enum Base64URL {
    static func decode(_ text: some StringProtocol) -> [UInt8]? {
        var s = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while s.hasSuffix("=") { s.removeLast() }
        switch s.count % 4 {
        case 2: s += "=="
        case 3: s += "="
        case 1: return nil
        default: break
        }
        guard let data = Data(base64Encoded: s) else { return nil }
        return [UInt8](data)
    }
}
