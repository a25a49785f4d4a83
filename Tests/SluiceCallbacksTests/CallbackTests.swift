import Foundation
@testable import SluiceCallbacks
import SluiceCore
import SluiceTestSupport
import Testing

/// Answers of `callbacks_reference.py` (Python's standard library and xmltodict).
enum Reference {
    static func ask(_ query: [String: Any]) throws -> [String: Any] {
        let script = TestSupport.repoRoot + "/Tests/SluiceCallbacksTests/callbacks_reference.py"
        let out = try TestSupport.python(script: script, input: try JSONSerialization.data(withJSONObject: query))
        return try JSONSerialization.jsonObject(with: out) as! [String: Any]
    }

    static func b64(_ s: String) -> String { Data(s.utf8).base64EncodedString() }
    static func b64(_ b: [UInt8]) -> String { Data(b).base64EncodedString() }

    /// A Value as the JSON text Python's json module gives for the same structure.
    static func canonical(_ any: Any?) -> String {
        guard let any, !(any is NSNull) else { return "null" }
        let data = try! JSONSerialization.data(withJSONObject: any, options: [.sortedKeys, .fragmentsAllowed])
        return String(decoding: data, as: UTF8.self)
    }

    static func canonical(_ v: Value) -> String {
        canonical(try! JSONSerialization.jsonObject(with: Data(JSONWriter.string(v).utf8), options: .fragmentsAllowed))
    }
}

/// The example of seed 000: Telesign's documentation callback, customer `test_cust_id`, API key `test_api_key`.
enum Seed000 {
    static let body = #"{ "status": { "updated_on": "2016-07-08T20:52:46.417428Z", "code": "207", "description": "Error delivering SMS to handset (reason unknown)" }, "errors": {}, "reference_id": "2557312299CC1304904080F4BE17BFB4" }"#
    static let authorization = "TSA test_cust_id:edBpPk9ZCt3N+Z0+2EaW6MZPn9DnbRo3smDbVhH9A1E="
    static let environment = ["TELESIGN_API_KEY": "test_api_key"]
    static let scheme = SignatureScheme.telesign(customerID: "test_cust_id", apiKeyVariable: "TELESIGN_API_KEY")

    static func request(body: String = body, authorization: String? = authorization) -> ReceivedRequest {
        var headers = [(name: "Content-Type", value: "application/json")]
        if let authorization { headers.append((name: "Authorization", value: authorization)) }
        return ReceivedRequest(method: "POST", target: "/-/phone_verification/telesign_callback", headers: headers, body: Array(body.utf8))
    }
}

@Suite struct TelesignSignatureTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var name: String
        var body: String = Seed000.body
        var authorization: String? = Seed000.authorization
        var key: String = "test_api_key"
        var verifies: Bool
        var reason: String? = nil
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(name: "the seed's example", verifies: true),
        Case(name: "one character of the body changed", body: Seed000.body.replacingOccurrences(of: "207", with: "208"), verifies: false, reason: "forged"),
        Case(name: "a space added to the body", body: Seed000.body + " ", verifies: false, reason: "forged"),
        Case(name: "another API key", key: "best_api_key", verifies: false, reason: "forged"),
        // Lenient decoding keeps only whole bytes: the last two characters carry 8 bits of 12,
        // so keys that differ only in the lowest bits are the same key (as for Telesign).
        Case(name: "the same key bytes written otherwise", key: "test_api_kez", verifies: true),
        Case(name: "another customer", authorization: "TSA other_cust:edBpPk9ZCt3N+Z0+2EaW6MZPn9DnbRo3smDbVhH9A1E=", verifies: false, reason: "another customer"),
        Case(name: "no Authorization header", authorization: nil, verifies: false, reason: "unsigned"),
        Case(name: "Basic instead of TSA", authorization: "Basic dGVzdDp0ZXN0", verifies: false, reason: "unsigned"),
        Case(name: "signature not Base64", authorization: "TSA test_cust_id:not base64!", verifies: false, reason: "forged"),
        Case(name: "signature of another body", authorization: "TSA test_cust_id:Qu1U5cQBMIby6DExcMmDvMODO6LgpfUTSQ5enV53EcQ=", verifies: false, reason: "forged"),
    ]

    @Test(arguments: cases)
    func verifies(_ c: Case) throws {
        let verifier = try #require(Seed000.scheme.verifier(environment: ["TELESIGN_API_KEY": c.key]))
        let problem = verifier.problem(Seed000.request(body: c.body, authorization: c.authorization))
        #expect((problem == nil) == c.verifies)
        if let reason = c.reason { #expect(problem?.contains(reason) == true, "\(problem ?? "nil")") }
        // A reason never quotes the signature or the key.
        #expect(problem?.contains("edBpPk9Z") != true && problem?.contains(c.key) != true)
    }

    @Test func noKeyInTheEnvironmentIsNoVerifier() {
        #expect(Seed000.scheme.verifier(environment: [:]) == nil)
        #expect(Seed000.scheme.verifier(environment: ["TELESIGN_API_KEY": ""]) == nil)
    }

    /// Signatures made by Python's hmac with the key decoded the lenient way agree.
    @Test func agreesWithPythonHMAC() throws {
        var rng = SplitMix64(seed: 7)
        let keys = ["test_api_key", "c2VjcmV0a2V5", "a+b/c=d", "ÄÖÜ-key_with~odd chars"]
        var bodies: [[UInt8]] = [[], Array("x".utf8), Array(Seed000.body.utf8)]
        bodies.append((0..<3000).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
        var pairs: [[String]] = []
        for k in keys { for b in bodies { pairs.append([Reference.b64(LenientBase64.decode(k)), Reference.b64(b)]) } }
        let answers = try Reference.ask(["hmac": pairs])["hmac"] as! [String]
        var i = 0
        for k in keys {
            let verifier = try #require(Seed000.scheme.verifier(environment: ["TELESIGN_API_KEY": k]))
            for b in bodies {
                let req = ReceivedRequest(method: "POST", target: "/", headers: [("Authorization", "TSA test_cust_id:\(answers[i])")], body: b)
                #expect(verifier.problem(req) == nil)
                i += 1
            }
        }
    }
}

@Suite struct GenericHMACTests {
    @Test(arguments: [
        ("sha256=", SignatureScheme.DigestEncoding.hex, true),
        ("", SignatureScheme.DigestEncoding.base64, true),
    ])
    func verifies(prefix: String, encoding: SignatureScheme.DigestEncoding, _: Bool) throws {
        // GitHub's documented example: secret "It's a Secret to Everybody", payload "Hello, World!".
        let scheme = SignatureScheme.hmacSHA256(header: "X-Hub-Signature-256", prefix: prefix, encoding: encoding, keyVariable: "K")
        let verifier = try #require(scheme.verifier(environment: ["K": "It's a Secret to Everybody"]))
        let hex = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        let signature = encoding == .hex ? hex : Data(SignatureVerifier.hexBytes(hex)!).base64EncodedString()
        let good = ReceivedRequest(method: "POST", target: "/", headers: [("x-hub-signature-256", prefix + signature)], body: Array("Hello, World!".utf8))
        #expect(verifier.problem(good) == nil)
        var bad = good
        bad.body = Array("Hello, World?".utf8)
        #expect(verifier.problem(bad)?.hasPrefix("forged") == true)
        bad = good
        bad.headers = []
        #expect(verifier.problem(bad)?.hasPrefix("unsigned") == true)
    }
}

@Suite struct LenientBase64Tests {
    static let cases = ["test_api_key", "dGVzdA==", "dGVzdA", "dGV zdA\n==", "dGVzdA=garbage", "a", "ab", "abc", "abcd", "", "====",
                        "-_-_", "QUJD\r\nREVG", "ÄÖÜ", "c2VjcmV0a2V5"]

    @Test func agreesWithRFC2045Reading() throws {
        let answers = try Reference.ask(["base64": Self.cases])["base64"] as! [String]
        for (text, expected) in zip(Self.cases, answers) {
            #expect(Data(LenientBase64.decode(text)).base64EncodedString() == expected, "\(text)")
        }
    }
}

@Suite struct BodyDecoderTests {
    static let forms: [String] = [
        "a=1&b=2", "a=1&a=2&a=3", "name=Ay%C5%9Fe+Y%C4%B1lmaz&city=%C4%B0stanbul", "empty=&novalue&&x=1",
        "bad=%zz%4&pct=100%25", "invalid_utf8=%FF%FE", "plus=a+b%2Bc", "", "k%3Dx=v%26y", "MessageStatus=delivered&To=%2B905551234567",
    ]

    @Test func formAgreesWithPython() throws {
        let answers = try Reference.ask(["form": Self.forms.map { Reference.b64($0) }])["form"] as! [[[Any]]]
        for (body, expected) in zip(Self.forms, answers) {
            let got = BodyDecoder.form(Array(body.utf8))
            let pairs: [[Any]] = expected
            guard case .object(let fields) = got else { Issue.record("not an object"); continue }
            #expect(fields.names == pairs.map { $0[0] as! String }, "\(body)")
            for (f, p) in zip(fields, pairs) {
                #expect(Reference.canonical(f.value) == Reference.canonical(p[1]), "\(body): \(f.name)")
            }
        }
    }

    static let xmls: [String] = [
        #"<DeliveryReport><ReferenceId>ABC</ReferenceId><Status code="200">Delivered</Status></DeliveryReport>"#,
        "<a><b>1</b><b>2</b><c/><b>3</b></a>",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<r>\n  <x> padded </x>\n  <empty></empty>\n</r>",
        "<r><t><![CDATA[<not> & markup]]></t><u>&lt;&amp;&gt;&#233;</u></r>",
        #"<ns:r xmlns:ns="urn:x" ns:a="1"><ns:c>İstanbul 🎉</ns:c></ns:r>"#,
        "<r a=\"1\" b=\"2\">text<k>v</k>more</r>",
        "<r><deep><er><est>x</est></er></deep></r>",
        "<unclosed><a></unclosed>",
        "not xml at all <",
        "<r>1</r><r>2</r>",
    ]

    @Test func xmlAgreesWithXmltodict() throws {
        let answers = try Reference.ask(["xml": Self.xmls.map { Reference.b64($0) }])["xml"] as! [[String: Any]]
        for (body, expected) in zip(Self.xmls, answers) {
            let got = Result { () throws(RequestError) -> Value? in try BodyDecoder.decode(Array(body.utf8), as: .xml) }
            if expected["error"] != nil {
                guard case .failure(let e) = got else { Issue.record("\(body): expected a malformed-XML error"); continue }
                #expect(e.description.contains("malformed"))
                #expect(!e.description.contains("<"), "an error never quotes the body")
            } else {
                guard case .success(let v?) = got else { Issue.record("\(body): \(got)"); continue }
                #expect(Reference.canonical(v) == Reference.canonical(expected["ok"]), "\(body)")
            }
        }
    }

    @Test func externalEntitiesAreNeverResolved() throws {
        let secret = try TestSupport.scratchDirectory("xxe") + "/secret.txt"
        try "TOP-SECRET".write(toFile: secret, atomically: true, encoding: .utf8)
        let body = "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY x SYSTEM \"file://\(secret)\">]><r>&x;</r>"
        let v = try? BodyDecoder.decode(Array(body.utf8), as: .xml)
        #expect(v.map { JSONWriter.string($0 ?? .null) }?.contains("TOP-SECRET") != true)
    }

    @Test(arguments: [
        ("application/json; charset=utf-8", "{}", BodyDecoder.Format.json),
        ("application/vnd.api+json", "{}", .json),
        ("text/xml", "<a/>", .xml),
        ("application/soap+xml", "<a/>", .xml),
        ("application/x-www-form-urlencoded", "a=1", .form),
        (nil, "  {\"a\":1}", .json),
        (nil, "\n<a/>", .xml),
        ("text/plain", "hello", .text),
        (nil, "", .text),
    ] as [(String?, String, BodyDecoder.Format)])
    func formatFromMediaTypeOrContent(contentType: String?, body: String, format: BodyDecoder.Format) {
        #expect(BodyDecoder.format(contentType: contentType, body: Array(body.utf8)) == format)
    }
}

@Suite struct HTTPRequestParserTests {
    static let requests: [String] = [
        "POST /-/phone_verification/telesign_callback HTTP/1.1\r\nHost: example.com\r\nAuthorization: TSA test_cust_id:sig\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        "POST /cb?x=1&y=%20 HTTP/1.0\nHost: a\nX-Multi: 1\nX-Multi: 2\n\nbody without length",
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "POST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcdeEXTRA",
        "POST /p HTTP/1.1\r\nX-Spaces:    padded value   \r\nContent-Length: 0\r\n\r\n",
        "POST /p HTTP/2\r\nHost: a\r\n\r\n",
        "FOO\r\n\r\n",
    ]

    @Test func agreesWithPythonsHTTPServer() throws {
        let answers = try Reference.ask(["http": Self.requests.map { Reference.b64($0) }])["http"] as! [[String: Any]]
        for (text, expected) in zip(Self.requests, answers) {
            let got = Result { () throws(RequestError) -> ReceivedRequest in try HTTPRequestParser.parse(Array(text.utf8)) }
            if expected["error"] != nil {
                guard case .failure = got else { Issue.record("\(text.prefix(20)): expected an error"); continue }
                continue
            }
            guard case .success(let r) = got else { Issue.record("\(text.prefix(30)): \(got)"); continue }
            #expect(r.method == expected["method"] as? String)
            #expect(r.target == expected["target"] as? String)
            let headers = (expected["headers"] as! [[String]]).map { ($0[0], $0[1]) }
            #expect(r.headers.map(\.name) == headers.map(\.0))
            // RFC 9110 5.5: a field value has no leading or trailing whitespace (Python keeps the trailing).
            #expect(r.headers.map(\.value) == headers.map { $0.1.trimmingCharacters(in: .whitespaces) })
            #expect(Reference.b64(r.body) == expected["body"] as? String)
        }
    }

    @Test(arguments: [
        ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n7;ext=1\r\npedia i\r\nB\r\nn \r\nchunks.\r\n0\r\n\r\n", "Wikipedia in \r\nchunks."),
        ("POST / HTTP/1.1\nTransfer-Encoding: gzip, chunked\n\n3\nabc\n0\n\n", "abc"),
    ])
    func chunkedBodies(request: String, body: String) throws {
        #expect(try HTTPRequestParser.parse(Array(request.utf8)).body == Array(body.utf8))
    }

    @Test(arguments: [
        ("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort", "fewer than its Content-Length"),
        ("POST / HTTP/1.1\r\nHost: a\r\n", "ends inside its head"),
        ("POST / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", "folded"),
        ("POST / HTTP/1.1\r\nno colon here\r\n\r\n", "not a header field"),
        ("POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n", "not a number"),
        ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", "shorter than its size"),
        ("post / HTTP/1.1\r\n\r\n", "request line"),
    ])
    func problemsSayWhat(request: String, message: String) {
        #expect(throws: RequestError.self) { try HTTPRequestParser.parse(Array(request.utf8)) }
        do { _ = try HTTPRequestParser.parse(Array(request.utf8)) } catch { #expect(error.description.contains(message), "\(error)") }
    }

    @Test func imfFixdate() {
        #expect(HTTPDate.parse("Sun, 06 Nov 1994 08:49:37 GMT") == Timestamp.parse("1994-11-06T08:49:37Z"))
        #expect(HTTPDate.parse("Sunday, 06-Nov-94 08:49:37 GMT") == nil)
    }
}
