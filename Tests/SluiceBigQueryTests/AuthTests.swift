import Foundation
import SluiceBigQuery
import SluiceCore
import SluiceTestSupport
import Testing

/// The service-account flow: the JWT is signed with a key generated here by openssl and
/// verified by openssl (`dgst -verify`) and by Python's `cryptography` at the fake token
/// endpoint; nothing of sluice's code checks its own signature.
@Suite struct AuthTests {
    /// A fresh RSA key pair and a key file around it.
    static func keyFile(_ dir: String, tokenURI: String = "https://oauth2.googleapis.com/token") throws -> (keyFile: String, publicKey: String) {
        let pem = dir + "/key.pem", pub = dir + "/pub.pem"
        let g = try TestSupport.run("/usr/bin/env", ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", pem])
        #expect(g.status == 0, "openssl genpkey: \(g.stderr)")
        let p = try TestSupport.run("/usr/bin/env", ["openssl", "pkey", "-in", pem, "-pubout", "-out", pub])
        #expect(p.status == 0, "openssl pkey: \(p.stderr)")
        let key = try String(contentsOfFile: pem, encoding: .utf8)
        let json: [String: String] = ["type": "service_account", "project_id": "sluice-test", "private_key_id": "kid-1",
                                      "private_key": key, "client_email": "loader@sluice-test.iam.gserviceaccount.com",
                                      "token_uri": tokenURI]
        let file = dir + "/service-account.json"
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: file))
        return (file, pub)
    }

    static func base64URLDecode(_ s: Substring) -> Data? {
        var t = s.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while t.count % 4 != 0 { t += "=" }
        return Data(base64Encoded: t)
    }

    static func verify(_ jwt: String, publicKey: String, dir: String) throws -> Bool {
        let parts = jwt.split(separator: ".", omittingEmptySubsequences: false)
        #expect(parts.count == 3)
        guard parts.count == 3, let sig = base64URLDecode(parts[2]) else { return false }
        try Data((parts[0] + "." + parts[1]).utf8).write(to: URL(fileURLWithPath: dir + "/input"))
        try sig.write(to: URL(fileURLWithPath: dir + "/sig"))
        let r = try TestSupport.run("/usr/bin/env", ["openssl", "dgst", "-sha256", "-verify", publicKey, "-signature", dir + "/sig", dir + "/input"])
        return r.status == 0 && r.output.contains("Verified OK")
    }

    @Test func assertionIsRS256SignedAndVerifiesWithOpenSSL() throws {
        let dir = try TestSupport.scratchDirectory("jwt")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (file, pub) = try Self.keyFile(dir)
        let key = try ServiceAccountKey(path: file)
        let jwt = try key.assertion(scope: TokenProvider.scope, now: 1_795_000_000)
        #expect(try Self.verify(jwt, publicKey: pub, dir: dir))
        let parts = jwt.split(separator: ".")
        let header = try JSONSerialization.jsonObject(with: Self.base64URLDecode(parts[0])!) as? [String: Any]
        let claims = try JSONSerialization.jsonObject(with: Self.base64URLDecode(parts[1])!) as? [String: Any]
        #expect(header?["alg"] as? String == "RS256")
        #expect(header?["typ"] as? String == "JWT")
        #expect(header?["kid"] as? String == "kid-1")
        #expect(claims?["iss"] as? String == "loader@sluice-test.iam.gserviceaccount.com")
        #expect(claims?["aud"] as? String == "https://oauth2.googleapis.com/token")
        #expect(claims?["scope"] as? String == "https://www.googleapis.com/auth/bigquery")
        #expect(claims?["iat"] as? Int == 1_795_000_000)
        #expect(claims?["exp"] as? Int == 1_795_003_600)
        // The same check rejects a token whose claims were changed after signing.
        let forged = parts[0] + "." + JWT.base64URL(Array(#"{"iss":"someone@else"}"#.utf8)) + "." + parts[2]
        #expect(try !Self.verify(String(forged), publicKey: pub, dir: dir))
    }

    @Test func badKeyFilesAreReportedWithoutTheirContent() throws {
        let dir = try TestSupport.scratchDirectory("jwt")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = dir + "/bad.json"
        try #"{"type":"service_account","client_email":"a@b","private_key":"-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXNlY3JldA==\n-----END PRIVATE KEY-----\n"}"#
            .write(toFile: file, atomically: true, encoding: .utf8)
        #expect {
            _ = try ServiceAccountKey(path: file)
        } throws: { e in
            let text = String(describing: e)
            return text.contains("private_key is not an RSA private key") && !text.contains("c2VjcmV0")
        }
        #expect(throws: BigQueryError.self) { _ = try ServiceAccountKey(path: dir + "/missing.json") }
    }

    /// The token endpoint (Python, checking the signature with `cryptography`) hands out a
    /// token; it is reused until shortly before it expires, then fetched again.
    @Test func tokenIsExchangedAndCached() async throws {
        let dir = try TestSupport.scratchDirectory("token")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let server = try FakeBigQuery(dir: dir, arguments: ["--public-key", dir + "/pub.pem"])
        defer { server.stop() }
        let (file, _) = try Self.keyFile(dir, tokenURI: server.endpoint + "/token")
        let provider = TokenProvider(key: try ServiceAccountKey(path: file), http: HTTPClient(timeout: 10))
        let now = Int64(Date().timeIntervalSince1970)
        #expect(try await provider.token(now: now) == "ya29.fake-token-1")
        #expect(try await provider.token(now: now + 3000) == "ya29.fake-token-1")
        #expect(await provider.fetches == 1)
        // Within five minutes of expiry (3599 s) a new token is fetched.
        _ = try await provider.token(now: now + 3400)
        #expect(await provider.fetches == 2)
        let tokens = try server.log().filter { $0["path"] as? String == "/token" }
        #expect(tokens.count == 2)
        #expect(tokens.allSatisfy { $0["verified"] as? Bool == true })
    }
}

@Suite struct RedactionTests {
    @Test(arguments: [
        (#"Cannot convert value "alice@example.com" to integer."#, "Cannot convert value <value> to integer."),
        ("Could not parse 'abc' as INT64 for field amount", "Could not parse <value> as INT64 for field amount"),
        ("no such field: age.", "no such field: age."),
        (#"Invalid JSON: `{"a":` at position 3"#, "Invalid JSON: <value> at position 3"),
        (#"unterminated "secret"#, "unterminated <value>"),
    ])
    func quotedValuesAreReplaced(_ input: String, _ expected: String) {
        #expect(Redaction.message(input) == expected)
    }
}

/// The HTTP client over libcurl: a header value with a line break would be a header of
/// its own in libcurl's list; it is refused before anything is sent, and the message
/// names the header, never its value. A refused connection is a retryable failure whose
/// outcome is unknown, named by host only.
@Suite struct HTTPClientTests {
    @Test(arguments: ["Bearer abc\r\nX-Injected: 1", "secret\nvalue"])
    func headerValuesWithLineBreaksAreRefused(_ value: String) async throws {
        do throws(BigQueryError) {
            _ = try await HTTPClient(timeout: 5).send(method: "GET", url: "http://127.0.0.1:9/", headers: ["Authorization": value])
            Issue.record("sent a header with a line break")
        } catch {
            #expect(error.description.contains("Authorization"))
            #expect(!error.description.contains("secret") && !error.description.contains("abc"))
            #expect(!error.retryable)
        }
    }

    @Test func aRefusedConnectionIsRetryableAndNamesTheHostOnly() async throws {
        // A port nothing listens on: bound, then closed.
        let port = try Servers.freePort()
        do throws(BigQueryError) {
            _ = try await HTTPClient(timeout: 5).send(method: "POST", url: "http://127.0.0.1:\(port)/path/with-token?key=s3cr3t", body: Array("{}".utf8))
            Issue.record("a request to a closed port succeeded")
        } catch {
            #expect(error.retryable && error.outcomeUnknown)
            #expect(error.description.contains("127.0.0.1"))
            #expect(!error.description.contains("s3cr3t") && !error.description.contains("/path"))
        }
    }
}
