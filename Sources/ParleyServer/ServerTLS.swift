import Foundation
import HummingbirdCore
import HummingbirdTLS
import NIOSSL

/// `server.tls`: loads and checks the PEM certificate chain and private key at startup and wraps the server's
/// child channel (HTTP/1.1 + Engine.IO) in TLS, so HTTPS and WSS are served on the one configured port.
///
/// Every mistake is found before the port is opened and reported as one ``StartupError`` naming the key, the
/// file and the fix: a missing or unreadable file, a file that holds no PEM certificate or no PEM private key,
/// an encrypted key, and a key that does not belong to the certificate.
struct ServerTLS: Sendable {
    /// Where the certificate and key came from (`server.tls`).
    let source: TLSConfiguration
    /// The checked NIOSSL server configuration (TLS 1.2 and later).
    let configuration: NIOSSL.TLSConfiguration

    /// Loads and checks the certificate chain and private key of `tls`.
    /// - Throws: ``StartupError`` naming the file and the fix.
    init(_ tls: TLSConfiguration) throws {
        let certPath = tls.certificatePath
        let keyPath = tls.keyPath
        let certBytes = try Self.read(certPath, key: "server.tls.cert", what: "the PEM certificate chain")
        let keyBytes = try Self.read(keyPath, key: "server.tls.key", what: "the PEM private key")

        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMBytes(certBytes)
        } catch {
            chain = []
        }
        guard !chain.isEmpty else {
            throw StartupError(
                "server.tls.cert \(certPath): no PEM certificate in the file (expected -----BEGIN CERTIFICATE-----); give the certificate chain in PEM form, the server's certificate first"
            )
        }

        let privateKey: NIOSSLPrivateKey
        do {
            privateKey = try NIOSSLPrivateKey(bytes: keyBytes, format: .pem)
        } catch {
            if String(decoding: keyBytes, as: UTF8.self).contains("ENCRYPTED") {
                throw StartupError(
                    "server.tls.key \(keyPath): the private key is encrypted; give an unencrypted PEM key (openssl pkey -in \(keyPath) -out key-decrypted.pem) and protect it with file permissions"
                )
            }
            throw StartupError(
                "server.tls.key \(keyPath): no PEM private key in the file (expected -----BEGIN PRIVATE KEY----- or -----BEGIN EC/RSA PRIVATE KEY-----); give the private key of the certificate in PEM form"
            )
        }

        var configuration = NIOSSL.TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) },
            privateKey: .privateKey(privateKey)
        )
        configuration.minimumTLSVersion = .tlsv12
        // Building a context is where BoringSSL compares the key with the certificate.
        do {
            _ = try NIOSSLContext(configuration: configuration)
        } catch NIOSSLError.failedToLoadPrivateKey {
            throw StartupError(
                "server.tls.key \(keyPath): the private key does not match the certificate in \(certPath); give the key the certificate was issued for")
        } catch {
            throw StartupError("server.tls: cannot use \(certPath) with \(keyPath): \(error); check that both are PEM files of one certificate and its key")
        }
        self.source = tls
        self.configuration = configuration
    }

    /// `base` (the server's child channel) behind TLS: every connection starts with the TLS handshake.
    /// - Throws: ``StartupError`` if the TLS context cannot be built.
    func wrap(_ base: HTTPServerBuilder) throws -> HTTPServerBuilder {
        do {
            return try .tls(base, tlsConfiguration: configuration)
        } catch {
            throw StartupError("server.tls: cannot set up TLS with \(source.certificatePath) and \(source.keyPath): \(error)")
        }
    }

    /// The bytes of `path`, or a ``StartupError`` saying why it cannot be read.
    private static func read(_ path: String, key: String, what: String) throws -> [UInt8] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw StartupError("\(key) \(path): file not found; give the path of \(what) (relative paths are relative to the configuration file)")
        }
        guard !isDirectory.boolValue else {
            throw StartupError("\(key) \(path): is a folder; give the path of \(what) file")
        }
        guard FileManager.default.isReadableFile(atPath: path), let data = FileManager.default.contents(atPath: path) else {
            throw StartupError("\(key) \(path): cannot be read (permission denied); make it readable by the user running parley")
        }
        return [UInt8](data)
    }
}
