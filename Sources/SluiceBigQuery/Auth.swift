import Crypto
import _CryptoExtras
import Foundation
import SluiceCore

/// A service-account key file as Google issues it (JSON): the parts the OAuth flow needs.
public struct ServiceAccountKey: Sendable {
    public var clientEmail: String
    public var privateKeyID: String?
    public var tokenURI: String
    let privateKey: _RSA.Signing.PrivateKey

    /// Reads a key file. Errors name the file and the problem, never the key.
    public init(path: String) throws(BigQueryError) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw BigQueryError("cannot read the service-account key file \(path)")
        }
        try self.init(json: [UInt8](data), file: path)
    }

    public init(json: [UInt8], file: String) throws(BigQueryError) {
        guard let value = try? JSONParser.parse(json), case .object(let o) = value else {
            throw BigQueryError("\(file) is not a JSON service-account key file")
        }
        guard o["type"]?.stringValue ?? "service_account" == "service_account" else {
            throw BigQueryError("\(file) is not a service-account key (type is not service_account)")
        }
        guard let email = o["client_email"]?.stringValue, let pem = o["private_key"]?.stringValue else {
            throw BigQueryError("\(file) lacks client_email or private_key")
        }
        clientEmail = email
        privateKeyID = o["private_key_id"]?.stringValue
        tokenURI = o["token_uri"]?.stringValue ?? "https://oauth2.googleapis.com/token"
        do {
            privateKey = try _RSA.Signing.PrivateKey(pemRepresentation: pem)
        } catch {
            throw BigQueryError("\(file): private_key is not an RSA private key in PEM")
        }
    }

    /// The signed assertion (RFC 7523) that is exchanged for an access token.
    public func assertion(scope: String, now: Int64) throws(BigQueryError) -> String {
        var header: [(String, Value)] = [("alg", .string("RS256")), ("typ", .string("JWT"))]
        if let privateKeyID { header.append(("kid", .string(privateKeyID))) }
        let claims: [(String, Value)] = [
            ("iss", .string(clientEmail)), ("scope", .string(scope)), ("aud", .string(tokenURI)),
            ("iat", .int(now)), ("exp", .int(now + 3600)),
        ]
        return try JWT.rs256(header: header, claims: claims, key: privateKey)
    }
}

/// JSON Web Tokens signed with RS256 (RSASSA-PKCS1-v1_5 over SHA-256).
public enum JWT {
    public static func rs256(header: [(String, Value)], claims: [(String, Value)], key: _RSA.Signing.PrivateKey) throws(BigQueryError) -> String {
        func object(_ pairs: [(String, Value)]) -> [UInt8] {
            Array(JSONWriter.string(.object(Fields(pairs.map { Fields.Field($0.0, $0.1) }))).utf8)
        }
        let signingInput = base64URL(object(header)) + "." + base64URL(object(claims))
        do {
            let signature = try key.signature(for: Data(signingInput.utf8), padding: .insecurePKCS1v1_5)
            return signingInput + "." + base64URL([UInt8](signature.rawRepresentation))
        } catch {
            throw BigQueryError("cannot sign the token request with the service-account key")
        }
    }

    public static func base64URL(_ bytes: [UInt8]) -> String {
        var s = Data(bytes).base64EncodedString()
        s = s.replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        while s.hasSuffix("=") { s.removeLast() }
        return s
    }
}

/// Access tokens of a service account, fetched from the key's `token_uri` and reused
/// until shortly before they expire.
public actor TokenProvider {
    public static let scope = "https://www.googleapis.com/auth/bigquery"
    let key: ServiceAccountKey
    let http: HTTPClient
    /// A token is renewed this long before it expires.
    let margin: Int64 = 300
    var cached: (token: String, expires: Int64)?
    /// How many tokens were fetched (for tests).
    public private(set) var fetches = 0

    public init(key: ServiceAccountKey, http: HTTPClient) {
        self.key = key
        self.http = http
    }

    public func token(now: Int64 = Int64(Date().timeIntervalSince1970)) async throws(BigQueryError) -> String {
        if let cached, now < cached.expires - margin { return cached.token }
        let assertion = try key.assertion(scope: Self.scope, now: now)
        let body = "grant_type=" + "urn:ietf:params:oauth:grant-type:jwt-bearer".formEncoded + "&assertion=" + assertion.formEncoded
        let response: HTTPResponse
        do {
            response = try await http.send(method: "POST", url: key.tokenURI, headers: ["Content-Type": "application/x-www-form-urlencoded"],
                                           body: Array(body.utf8))
        } catch {
            throw BigQueryError("cannot reach the token endpoint \(key.tokenURI): \(error.description)", retryable: true)
        }
        guard response.status == 200, let value = try? JSONParser.parse(response.body), case .object(let o) = value,
              let token = o["access_token"]?.stringValue else {
            // The OAuth error code (e.g. invalid_grant) says what is wrong; the body holds no secret of ours.
            var code = ""
            if let value = try? JSONParser.parse(response.body), case .object(let o) = value, let e = o["error"]?.stringValue { code = ": " + e }
            throw BigQueryError("the token endpoint \(key.tokenURI) refused the service account \(key.clientEmail) (HTTP \(response.status)\(code))",
                                retryable: response.status == 429 || response.status >= 500)
        }
        let lifetime: Int64 = switch o["expires_in"] { case .int(let n)?: n; case .double(let d)?: Int64(d); default: 3600 }
        cached = (token, now + lifetime)
        fetches += 1
        return token
    }

    func invalidate() { cached = nil }
}

extension String {
    /// `application/x-www-form-urlencoded` value encoding.
    var formEncoded: String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return addingPercentEncoding(withAllowedCharacters: allowed) ?? self
    }
}
