import Crypto
import Foundation

/// How a vendor signs its callbacks, as configured in a pipeline (`verify:`). Secrets
/// are read from the environment when a run starts; they never appear in messages.
public enum SignatureScheme: Sendable, Equatable {
    /// Telesign: `Authorization: TSA <customer id>:<signature>`, where the signature is
    /// Base64(HMAC-SHA256(key: Base64-decoded API key, message: the raw body)). The API
    /// key is decoded as Telesign's SDKs do (Ruby's `Base64.decode64`: characters outside
    /// the alphabet are skipped and missing padding is allowed), so that the example of
    /// their documentation (customer `test_cust_id`, key `test_api_key`) verifies.
    case telesign(customerID: String, apiKeyVariable: String)
    /// A generic body HMAC-SHA256 in a header (GitHub, Stripe-like without timestamps):
    /// `header: X-Hub-Signature-256`, `prefix: "sha256="`, `encoding: hex|base64`, the key
    /// used as the UTF-8 bytes of the variable's value.
    case hmacSHA256(header: String, prefix: String, encoding: DigestEncoding, keyVariable: String)

    public enum DigestEncoding: String, Sendable, CaseIterable { case hex, base64 }

    public var variable: String {
        switch self {
        case .telesign(_, let v): v
        case .hmacSHA256(_, _, _, let v): v
        }
    }

    /// The verifier with its secret from the environment, or nil when the variable is unset.
    public func verifier(environment: [String: String]) -> SignatureVerifier? {
        guard let secret = environment[variable], !secret.isEmpty else { return nil }
        switch self {
        case .telesign(let customer, _):
            return SignatureVerifier(scheme: self, key: SymmetricKey(data: LenientBase64.decode(secret)), customerID: customer)
        case .hmacSHA256:
            return SignatureVerifier(scheme: self, key: SymmetricKey(data: Array(secret.utf8)), customerID: nil)
        }
    }
}

/// Checks callbacks of one scheme with its key. Built per run (the key stays in the task).
public struct SignatureVerifier {
    let scheme: SignatureScheme
    let key: SymmetricKey
    let customerID: String?

    /// nil when the request is signed correctly; else why not (never the signature itself).
    public func problem(_ request: ReceivedRequest) -> String? {
        switch scheme {
        case .telesign:
            guard let auth = request.header("authorization") else { return "unsigned: no Authorization header" }
            let parts = auth.trimmingSpaces.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, parts[0] == "TSA", let colon = parts[1].lastIndex(of: ":") else {
                return "unsigned: the Authorization header is not `TSA customer_id:signature`"
            }
            let customer = String(parts[1][..<colon]).trimmingSpaces
            let given = String(parts[1][parts[1].index(after: colon)...]).trimmingSpaces
            guard customer == customerID else { return "signed by another customer than the configured one" }
            guard let signature = Data(base64Encoded: given) else { return "forged: the signature is not Base64" }
            return HMAC<SHA256>.isValidAuthenticationCode(signature, authenticating: request.body, using: key)
                ? nil : "forged: the signature does not match the body"
        case .hmacSHA256(let header, let prefix, let encoding, _):
            guard let value = request.header(header)?.trimmingSpaces else { return "unsigned: no \(header) header" }
            guard value.hasPrefix(prefix) else { return "unsigned: the \(header) header does not start with `\(prefix)`" }
            let text = String(value.dropFirst(prefix.count))
            let signature: [UInt8]?
            switch encoding {
            case .hex: signature = Self.hexBytes(text)
            case .base64: signature = Data(base64Encoded: text).map(Array.init)
            }
            guard let signature else { return "forged: the signature is not \(encoding.rawValue)" }
            return HMAC<SHA256>.isValidAuthenticationCode(signature, authenticating: request.body, using: key)
                ? nil : "forged: the signature does not match the body"
        }
    }

    static func hexBytes(_ text: String) -> [UInt8]? {
        let u = Array(text.utf8)
        guard u.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(u.count / 2)
        var i = 0
        while i < u.count {
            guard let h = BodyDecoder.hex(u[i]), let l = BodyDecoder.hex(u[i + 1]) else { return nil }
            out.append(h << 4 | l)
            i += 2
        }
        return out
    }
}

/// Base64 decoding as RFC 2045 readers (and Ruby's `Base64.decode64`) do it: characters
/// outside the alphabet are skipped, decoding stops at `=`, and a last group of two or
/// three characters gives one or two bytes.
public enum LenientBase64 {
    public static func decode(_ text: String) -> [UInt8] {
        var out: [UInt8] = []
        var acc: UInt32 = 0
        var n = 0
        for c in text.utf8 {
            let v: UInt32
            switch c {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): v = UInt32(c - UInt8(ascii: "A"))
            case UInt8(ascii: "a")...UInt8(ascii: "z"): v = UInt32(c - UInt8(ascii: "a")) + 26
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = UInt32(c - UInt8(ascii: "0")) + 52
            case UInt8(ascii: "+"): v = 62
            case UInt8(ascii: "/"): v = 63
            case UInt8(ascii: "="): return finish(&out, acc, n)
            default: continue
            }
            acc = acc << 6 | v
            n += 1
            if n == 4 {
                out += [UInt8(acc >> 16 & 0xFF), UInt8(acc >> 8 & 0xFF), UInt8(acc & 0xFF)]
                acc = 0
                n = 0
            }
        }
        return finish(&out, acc, n)
    }

    private static func finish(_ out: inout [UInt8], _ acc: UInt32, _ n: Int) -> [UInt8] {
        switch n {
        case 2: out.append(UInt8(acc >> 4 & 0xFF))
        case 3: out += [UInt8(acc >> 10 & 0xFF), UInt8(acc >> 2 & 0xFF)]
        default: break
        }
        return out
    }
}
