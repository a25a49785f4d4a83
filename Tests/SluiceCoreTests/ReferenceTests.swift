import Foundation
import SluiceCore
import SluiceTestSupport
import Testing

/// Asks the Python reference (Tests/SluiceCoreTests/reference.py) many questions at once.
func reference(_ requests: [[String: Any]]) throws -> [Any] {
    let script = TestSupport.repoRoot + "/Tests/SluiceCoreTests/reference.py"
    var input = Data()
    for r in requests {
        input += try JSONSerialization.data(withJSONObject: r)
        input += Data("\n".utf8)
    }
    let out = try TestSupport.python(script: script, input: input)
    return String(decoding: out, as: UTF8.self).split(separator: "\n").map {
        try! JSONSerialization.jsonObject(with: Data($0.utf8), options: [.fragmentsAllowed])
    }
}

@Suite struct RecordKeyTests {
    /// Key fields as JSON text, so that types (1 vs "1" vs 1.0) reach both implementations intact.
    static let cases: [(String, [(String, String)])] = [
        ("signup_attempts", [("request_id", #""6f1c9b1e-7a51-4c43-9d1b-1c1f3ad0a001""#)]),
        ("signup_attempts", [("request_id", "1")]),
        ("signup_attempts", [("request_id", #""1""#)]),
        ("signup_attempts", [("request_id", "1.0")]),
        ("signup_attempts", [("request_id", "null")]),
        ("signup_attempts", [("request_id", "true")]),
        ("p", [("a", #""x""#), ("b", #""y""#)]),
        ("p", [("b", #""y""#), ("a", #""x""#)]),
        ("p", [("a", #"["a","b"]"#)]),
        ("p", [("a", #"["ab"]"#)]),
        ("p", [("a", #"{"z":1,"a":[1,2.5,"ü"],"é":null}"#)]),
        ("p", [("user.id", "-9223372036854775808")]),
        ("p", [("id", "123456789012345678901234567890")]),
        ("ünïcödé", [("k", #""İstanbul ığ 🎉""#)]),
    ]

    @Test(arguments: cases)
    func keyMatchesReference(pipeline: String, fields: [(String, String)]) throws {
        var record = Fields()
        var paths: [FieldPath] = []
        for (name, json) in fields {
            let value = try JSONParser.parse(json)
            paths.append(FieldPath(components: [name]))
            record[name] = value
        }
        let keyer = RecordKeyer(pipeline: pipeline, fields: paths)
        let ours = keyer.key(for: Record(fields: record, position: SourcePosition(file: "f", line: 1)))
        let pyFields: [[Any]] = fields.map { [$0.0, $0.1] }
        let theirs = try reference([["op": "key", "pipeline": pipeline, "fields": pyFields]])
        #expect(ours == theirs[0] as? String)
        #expect(ours.count == 32)
    }

    /// `ShortDigest` (record keys, file identities) against Python's hashlib, for inputs of
    /// every length around SHA-256's blocks and padding (55, 56, 64 bytes, ...), from one
    /// pointer and from a collection.
    @Test func shortDigestMatchesHashlib() throws {
        let lengths = Array(0...130) + [183, 184, 191, 192, 255, 256, 1_000, 4_096, 100_003]
        let inputs = lengths.map { n in (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ n) } }
        let theirs = try reference(inputs.map { ["op": "short_digest", "hex": $0.map { String(format: "%02x", $0) }.joined()] })
        for (input, expected) in zip(inputs, theirs) {
            #expect(input.withUnsafeBytes { ShortDigest.hex(of: $0) } == expected as? String, "\(input.count) bytes")
            #expect(ShortDigest.hex(input[...]) == expected as? String, "\(input.count) bytes")
        }
    }

    @Test func typesAndOrderKeepKeysApart() throws {
        func key(_ json: String) throws -> String {
            let keyer = RecordKeyer(pipeline: "p", fields: [FieldPath("id")!])
            return keyer.key(for: Record(fields: Fields(["id": try JSONParser.parse(json)]), position: SourcePosition(file: "f", line: 1)))
        }
        let keys = try ["1", "\"1\"", "1.0", "true", "null", "[1]", "[\"1\"]"].map(key)
        #expect(Set(keys).count == keys.count)
    }

    @Test(arguments: [("Samples/logs/a.jsonl", Int64(0)), ("Samples/logs/a.jsonl", Int64(1234)), ("x/ü.gz", Int64(9_000_000_000))])
    func positionKeyMatchesReference(file: String, offset: Int64) throws {
        let keyer = RecordKeyer(pipeline: "events", fields: [])
        let ours = keyer.key(for: Record(fields: Fields(), position: SourcePosition(file: file, line: 7, offset: offset)))
        let theirs = try reference([["op": "position_key", "pipeline": "events", "file": file, "offset": offset]])
        #expect(ours == theirs[0] as? String)
    }

    /// A key's bits (parsed eight digits at a time) against the standard library's
    /// parse of its two halves, for random keys and for a key with each kind of wrong
    /// byte at each of its 32 places: digits and letters next to the hex ranges, upper
    /// case, bytes of a multi-byte character, NUL.
    @Test(arguments: Array("/:`g@AFG\u{0}".utf8) + [0x7F, 0x80, 0xC3, 0xFF])
    func keyBitsLikeTheStandardLibrary(bad: UInt8) {
        func reference(_ key: [UInt8]) -> [UInt64]? {
            guard key.count == 32, key.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }),
                  let high = UInt64(String(decoding: key[..<16], as: UTF8.self), radix: 16),
                  let low = UInt64(String(decoding: key[16...], as: UTF8.self), radix: 16) else { return nil }
            return [high, low]
        }
        func ours(_ text: String) -> [UInt64]? { RecordKeyBits(text).map { [$0.high, $0.low] } }
        var rng = SystemRandomNumberGenerator()
        let digits = Array("0123456789abcdef".utf8)
        for _ in 0..<200 {
            let key = (0..<32).map { _ in digits[Int(rng.next() % 16)] }
            let text = String(decoding: key, as: UTF8.self)
            #expect(ours(text) == reference(key), "\(text)")
            for at in 0..<32 {
                var wrong = key
                wrong[at] = bad
                if bad >= 0x80 { // as the second byte of "é" (a byte >= 0x80 alone would not be UTF-8)
                    guard at > 0 else { continue }
                    wrong[at - 1] = 0xC3
                    wrong[at] = bad == 0xFF || bad == 0xC3 ? 0xA9 : bad
                }
                let text = String(decoding: wrong, as: UTF8.self)
                #expect(text.utf8.count == 32)
                #expect(ours(text) == nil && reference(Array(text.utf8)) == nil, "\(at)")
            }
        }
        #expect(ours(String(repeating: "f", count: 32)) == [.max, .max])
        #expect(ours("0123456789abcdef" + "fedcba9876543210") == [0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210])
        #expect(ours(String(repeating: "0", count: 32)) == [0, 0])
    }

    /// `RecordKeySet` (own keys as 16 bytes in a table of its own) answers as a
    /// `Set<String>` does, over inserts, lookups and emptyings: sluice's keys, keys that
    /// share one half, the all-zero key, near-keys that are not sluice's (upper case, 31
    /// or 33 digits), and other text.
    @Test(arguments: [0, 1, 7, 1_000, 40_000])
    func keySetAnswersAsASetOfStrings(own: Int) {
        var rng = SystemRandomNumberGenerator()
        func hex(_ high: UInt64, _ low: UInt64) -> String {
            let h = String(high, radix: 16), l = String(low, radix: 16)
            return String(repeating: "0", count: 16 - h.count) + h + String(repeating: "0", count: 16 - l.count) + l
        }
        var keys = (0..<own).map { _ in hex(rng.next(), rng.next()) }
        keys += (0..<min(own, 50)).map { hex(7, UInt64($0) << 20) } // one low slot, many highs
        keys += [hex(0, 0), hex(0, 1), hex(1, 0), String(repeating: "A", count: 32), String(repeating: "a", count: 31),
                 String(repeating: "a", count: 33), "order-17", "", "ü"]
        var ours = RecordKeySet(), theirs = Set<String>()
        for _ in 0..<2 {
            for key in keys.shuffled() + keys.prefix(100) {
                #expect(ours.contains(key) == theirs.contains(key))
                if let bits = RecordKeyBits(key) { ours.prefetch(bits) } // a hint: changes nothing
                #expect(ours.insert(key) == theirs.insert(key).inserted)
            }
            #expect(ours.count == theirs.count)
            for k in 0..<200 { #expect(!ours.contains(hex(UInt64(k), rng.next()))) } // 2^-64 odds of a real hit
            ours.removeAll()
            theirs.removeAll()
            #expect(ours.isEmpty)
            for key in keys.prefix(20) { #expect(!ours.contains(key)) }
        }
    }
}

@Suite struct JSONTests {
    static let texts = [
        #"{"a":1,"b":-2.5,"c":"x\"y\\z\n\t\u0001","d":[true,false,null],"e":{}}"#,
        #"{"unicode":"İstanbul ığüşöç Привет 🎉","esc":"\u00e9\ud83c\udf89","slash":"a\/b"}"#,
        #"[1e-05, 1e16, 123456789012.0, 0.1, 100, -0.0, 1E+2, 12345678901234567890]"#,
        #"  {"nested": {"deep": [[[{"x": [1, {"y": "z"}]}]]]}}  "#,
        #"{"dup":1,"dup":2}"#,
        // Duplicates among keys the parser's quick check cannot tell apart ("ab" and "!b":
        // one length, one last byte, first bytes 64 apart; see `namesAfterRemovals`), and in
        // a nested object: the last value, at the first place.
        #"{"ab":1,"!b":2,"x":0,"ab":3,"!b":4,"bb":5,"ab":6}"#,
        #"{"o":{"k":1,"kk":2,"k":3},"k":{"o":null,"o":[1]}}"#,
        // A name written with escapes and without: one name (its bits are of its text,
        // not of the bytes in the line).
        #"{"ab":1,"a\u0062":2,"\u00e9":3,"é":4,"\n":5,"\u000a":6,"x\"":7,"x\u0022":8}"#,
        #""just a string""#,
        #"{"big":9223372036854775807,"small":-9223372036854775808}"#,
    ]

    @Test(arguments: texts)
    func writerMatchesPython(text: String) throws {
        let ours = JSONWriter.string(try JSONParser.parse(text))
        let theirs = try reference([["op": "dumps", "text": text]])[0] as? String
        #expect(ours == theirs)
    }

    /// What the parser scans for eight bytes at a time (a closing quote, an escape, a
    /// control character, a non-ASCII byte), at every place of a 24-byte string, as a value
    /// and as a field name, each text parsed twice with one name cache (the second time
    /// from it): the values Python reads, or the same error.
    @Test(arguments: [#"\""#, #"\\"#, #"\n"#, #"\u00e9"#, "é", "İ", "\u{01}", "\u{1F}", "\u{7F}"])
    func specialBytesAtEveryPlace(special: String) throws {
        var texts: [String] = []
        for at in 0...24 {
            let s = String(repeating: "a", count: at) + special + String(repeating: "b", count: 24 - at)
            texts.append(#"{"v":""# + s + #"","# + #"""# + s + #"":1,"short\#(at % 16)":""# + String(repeating: "c", count: at % 16) + #""}"#)
        }
        let cache = JSONStringCache()
        let answers = try reference(texts.map { ["op": "dumps", "text": $0] })
        for (text, answer) in zip(texts, answers) {
            let bytes = Array(text.utf8)
            for _ in 0..<2 {
                let parsed = bytes.withUnsafeBytes { raw in Result { () throws(JSONError) -> Value in try JSONParser.parse(raw, strings: cache) } }
                let ours = try? JSONWriter.string(parsed.get())
                #expect(ours == answer as? String, "\(text)")
            }
        }
    }

    /// The scan after a non-ASCII byte (which goes on eight bytes at a time, no longer
    /// stopping at non-ASCII ones): a two- or four-byte character at each of the first
    /// eight places, then the special byte at each of the next 17, as a value and as a
    /// field name: the values Python reads, or the same error.
    @Test(arguments: [#"\""#, #"\\"#, #"\n"#, "\u{01}", "\u{1F}", "é", "\u{7F}"])
    func specialBytesAfterNonASCII(special: String) throws {
        var texts: [String] = []
        for first in ["ı", "🎉"] {
            for at in 0..<8 {
                for gap in 0...16 {
                    let s = String(repeating: "a", count: at) + first + String(repeating: "b", count: gap) + special + "cc"
                    texts.append(#"{"v":""# + s + #"","# + #"""# + s + #"":1}"#)
                }
            }
        }
        let cache = JSONStringCache()
        let answers = try reference(texts.map { ["op": "dumps", "text": $0] })
        for (text, answer) in zip(texts, answers) {
            let parsed = Array(text.utf8).withUnsafeBytes { raw in Result { () throws(JSONError) -> Value in try JSONParser.parse(raw, strings: cache) } }
            #expect((try? JSONWriter.string(parsed.get())) == answer as? String, "\(text)")
        }
    }

    /// More names than the cache has slots, sharing their first 8 bytes or differing only
    /// in length, non-ASCII among them, each parsed three times through one cache: every
    /// time, the name that was written.
    @Test func namesThroughTheCacheAreTheirOwn() throws {
        var names = (0..<3_000).map { "abcdefgh\($0)" } + (0..<16).map { String(repeating: "x", count: $0) }
        names += ["é", "éé", "ab", "ab ", " ab", "İstanbul", "istanbul", "a\tb"]
        let cache = JSONStringCache()
        var rng = SplitMix64(seed: 7)
        for round in 0..<3 {
            for name in names.shuffled(using: &rng) {
                let text = #"{""# + JSONWriter.string(.string(name)).dropFirst().dropLast() + #"":\#(round)}"#
                let parsed = try Array(text.utf8).withUnsafeBytes { raw in try Result { () throws(JSONError) -> Value in try JSONParser.parse(raw, strings: cache) }.get() }
                #expect(parsed == .object(Fields([Fields.Field(name, .int(Int64(round)))])), "\(name)")
            }
        }
    }

    static let malformed: [(String, JSONError.Kind)] = [
        (#"{"a":1"#, .malformed), (#"{"a":1}x"#, .malformed), (#"{'a':1}"#, .malformed), ("[1,]", .malformed),
        ("01", .malformed), ("\"a\tb\"", .malformed), (#""\x""#, .malformed), (#""\ud800""#, .malformed),
        ("", .malformed), ("nul", .malformed), ("[" + String(repeating: "[", count: 600) + "]", .tooDeep),
    ]

    @Test(arguments: malformed)
    func rejectsMalformed(text: String, kind: JSONError.Kind) {
        #expect(throws: JSONError.self) { try JSONParser.parse(text) }
        do { _ = try JSONParser.parse(text) } catch { #expect(error.kind == kind) }
    }

    /// `parseObject` (a record's line): an object's fields as `parse` makes them (the texts
    /// above are checked against Python), nil for JSON that is not an object, and for a
    /// malformed text the error `parse` throws, at the same byte.
    @Test(arguments: texts + malformed.map(\.0) + [" [1,2]", "3", "null", #"{"a":1} {"b":2}"#, "{", #"  {"a":[1,}"#])
    func parseObjectAgreesWithParse(text: String) {
        let bytes = Array(text.utf8)
        let whole = bytes.withUnsafeBytes { raw in Result { () throws(JSONError) -> Value in try JSONParser.parse(raw) } }
        let object = bytes.withUnsafeBytes { raw in Result { () throws(JSONError) -> Fields? in try JSONParser.parseObject(raw) } }
        switch (whole, object) {
        case (.success(.object(let a)), .success(let b?)): #expect(a == b)
        case (.success, .success(nil)): if case .success(.object) = whole { Issue.record("an object read as not one") }
        case (.failure(let a), .failure(let b)): #expect(a == b)
        default: Issue.record("parse: \(whole), parseObject: \(object)")
        }
    }

    /// Invalid bytes alone, after a valid non-ASCII character, and in the word after it.
    @Test(arguments: [[UInt8]([0xFF, 0xFE]), Array("é".utf8) + [0xFF], Array("ığ".utf8) + Array("abcdefgh".utf8) + [0xC3, 0x28]])
    func rejectsInvalidUTF8(inner: [UInt8]) {
        let bytes: [UInt8] = Array(#"{"a":""#.utf8) + inner + Array(#""}"#.utf8)
        do {
            _ = try JSONParser.parse(bytes)
            Issue.record("accepted invalid UTF-8")
        } catch {
            #expect(error.kind == .invalidUTF8)
        }
    }

    @Test func integersAndDoublesStayApart() throws {
        #expect(try JSONParser.parse("1") == .int(1))
        #expect(try JSONParser.parse("1.0") == .double(1.0))
        #expect(try JSONParser.parse("-0") == .int(0))
        #expect(try JSONParser.parse("1e2") == .double(100))
        #expect(try JSONParser.parse("9223372036854775808") == .largeInteger("9223372036854775808"))
        #expect(try JSONParser.parse("-9223372036854775809") == .largeInteger("-9223372036854775809"))
    }
}

@Suite struct TimestampTests {
    static let accepted = [
        "2026-11-18T00:03:12.123456Z", "2026-11-18T03:00:00.5+03:00", "2026-11-18T03:00:00-0130",
        "2026-11-18 10:00:00", "2026-11-18T10:00", "2024-02-29T23:59:59.999999Z", "1970-01-01T00:00:00Z",
        "1969-12-31T23:59:59.000001Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z",
        "2026-11-18T10:00:00.1z", "2026-11-18 10:00:00 UTC", "2026-11-18T10:00:00+05",
    ]

    @Test func acceptedFormsMatchPython() throws {
        let theirs = try reference(Self.accepted.map { ["op": "timestamp", "text": $0] })
        for (text, expected) in zip(Self.accepted, theirs) {
            let ours = Timestamp.parse(text)
            #expect(ours != nil, "rejected \(text)")
            #expect(ours.map { NSNumber(value: $0) } == expected as? NSNumber, "\(text)")
        }
    }

    @Test(arguments: ["yesterday", "2026-13-45T00:00:00Z", "2026-02-29T00:00:00Z", "2026-11-18T24:00:00Z",
                      "2026-11-18T10:61:00Z", "2026-11-18T10:00:00.Z", "2026-11-18T10:00:00+25:00", "2026-11-18X10:00",
                      "", "10000-01-01T00:00:00Z", "2026-11-18T10:00:00Zjunk", "UTC", " UTC", "2026-11-18T10:00:00Z UTC",
                      "2026-11-18T10:00:00+01:00 UTC"])
    func rejectsInvalid(text: String) {
        #expect(Timestamp.parse(text) == nil)
    }

    @Test func formatsMicrosecondsUTC() {
        #expect(Timestamp.format(Timestamp.parse("2026-11-18T03:00:00.5+03:00")!) == "2026-11-18T00:00:00.500000Z")
        #expect(Timestamp.format(Timestamp.parse("2026-11-18T10:00:00.123456789Z")!) == "2026-11-18T10:00:00.123456Z")
        #expect(Timestamp.format(-1) == "1969-12-31T23:59:59.999999Z")
    }

    /// The state store's wall-clock stamps (`started_at`, `updated_at`), as Foundation's
    /// `ISO8601DateFormatter` wrote them before `formatSeconds` replaced it.
    @Test(arguments: [Int64(0), -1, 1, 59, 86_399, 86_400, 951_782_400, 951_868_799, 1_700_000_000, 1_796_010_041,
                      -2_208_988_801, 4_102_444_800, 253_402_300_799])
    func formatsSecondsLikeFoundation(seconds: Int64) {
        let formatter = ISO8601DateFormatter()
        #expect(Timestamp.formatSeconds(seconds) == formatter.string(from: Date(timeIntervalSince1970: TimeInterval(seconds))))
    }

    /// Times written by BigQuery's canonical form, against Python's datetime: years 1 to
    /// 9999, before and after 1970, leap days; and a canonical text given to `canonical`
    /// comes back as the very same string (the TIMESTAMP column's fast path), any other
    /// form of the same time as the canonical text.
    @Test func formatsLikePython() throws {
        let micros: [Int64] = [0, -1, 1, 1_700_000_000_123_456, -62_135_596_800_000_000, 253_402_300_799_999_999,
                               951_782_400_000_000, 951_868_799_999_999, -2_208_988_800_000_001, 86_399_999_999,
                               Timestamp.parse("2026-11-18T10:00:00.5Z")!, 4_102_444_800_000_000]
        let theirs = try reference(micros.map { ["op": "format_timestamp", "micros": $0] })
        for (m, expected) in zip(micros, theirs) {
            let text = try #require(expected as? String)
            #expect(Timestamp.format(m) == text, "\(m)")
            #expect(Timestamp.formatCivil(m) + "Z" == text, "\(m)")
            #expect(Timestamp.canonical(m, of: text) == text)
            #expect(Timestamp.canonical(m, of: String(text.dropLast()) + "+00:00") == text)
            #expect(Timestamp.canonical(m, of: text.replacingOccurrences(of: "T", with: " ")) == text)
            let day = m >= 0 ? m / 86_400_000_000 : (m + 1) / 86_400_000_000 - 1
            #expect(CivilDate(epochDay: day).description == String(text.prefix(10)))
            #expect(Timestamp.formatTime(m - day * 86_400_000_000) == String(text.dropFirst(11).dropLast()))
        }
        // The time written for another time is not taken as canonical.
        #expect(Timestamp.canonical(0, of: "1970-01-01T00:00:00.000001Z") == "1970-01-01T00:00:00.000000Z")
    }

    @Test func partitions() {
        let p = Partition("2026-11-18", granularity: .day)!
        #expect(p.contains(Timestamp.parse("2026-11-18T23:59:59.999999Z")!))
        #expect(!p.contains(Timestamp.parse("2026-11-19T00:00:00Z")!))
        #expect(p.next().description == "2026-11-19")
        #expect(p.expand("logs/{date}/{yyyymmdd}.jsonl") == "logs/2026-11-18/20261118.jsonl")
        let h = Partition("2026-11-18T05", granularity: .hour)!
        #expect(h.description == "2026-11-18T05")
        #expect(h.expand("{date}-{hour}") == "2026-11-18-05")
        #expect(Partition("2026-11-18", granularity: .hour) == nil)
    }
}

/// `PathReader` reads a path from records in turn, looking first where the previous record
/// had each component: records of other shapes (fields reordered, missing, of another
/// type) must still give what Python's json module finds at that path.
@Suite struct PathReaderTests {
    /// Records read in this order: the hints of one become stale for the next.
    static let records = [
        #"{"ts":"t1","ip":"1.2.3.4","headers":{"user-agent":"ua","x-fingerprint":"fp1"},"body":{"email":"a@b.c"}}"#,
        #"{"ip":"5.6.7.8","ts":"t2","body":{"extra":{"locale":"tr"},"email":"d@e.f"},"headers":{"x-fingerprint":"fp2"}}"#,
        #"{"ts":"t3","headers":"not an object","body":null,"list":[{"a":1},{"a":[true,2.5]}]}"#,
        #"{"ts":"t4","ip":null,"headers":{"x-fingerprint":"fp4","user-agent":"ua4"},"list":[{"a":"x"}],"body":{"email":"g@h.i"}}"#,
        #"{"é":"nfc","ab":1,"ba":2,"headers":{"user-agent":"ua5","user_agent":"other"}}"#,
        #"{}"#,
        #"{"ts":"t7","ip":"9.9.9.9","headers":{"user-agent":"ua","x-fingerprint":"fp7"},"body":{"email":"j@k.l"}}"#,
    ]
    static let paths = ["ts", "ip", "headers.user-agent", "headers.x-fingerprint", "body.email", "body.extra.locale",
                        "list.0.a", "list.1.a.1", "list.2", "ab", "ba", "é", "e\u{301}", "headers.user_agent", "missing.path"]

    @Test(arguments: paths)
    func readsWhatPythonReads(path: String) throws {
        let fieldPath = try #require(FieldPath(path))
        var reader = PathReader(fieldPath)
        let answers = try reference(Self.records.map { ["op": "path", "text": $0, "path": path] })
        for (record, answer) in zip(Self.records, answers) {
            guard case .object(let fields) = try JSONParser.parse(record) else { Issue.record("not an object"); return }
            let expected = (answer as? [String: Any])?["value"] as? String
            let ours = reader.value(in: fields).map { JSONWriter.string($0) }
            #expect(ours == expected, "\(path) in \(record)")
            #expect(fields.value(at: fieldPath).map { JSONWriter.string($0) } == expected, "\(path) in \(record)")
        }
    }

    /// `Fields` skips names whose bits it never set; removing a field leaves its bits:
    /// lookups, equality and hashes must still be those of the fields held. Names "ab" and
    /// "!b" have the same bits.
    @Test(arguments: [["+ab", "+!b", "-ab", "?ab", "?!b"], ["+ab", "-ab", "?ab", "+ab", "?ab"], ["+x", "+!b", "-!b", "-x", "?x"],
                      ["+a", "+b", "-a", "+a", "?a", "?b"]])
    func namesAfterRemovals(ops: [String]) {
        #expect(Fields.nameBits("ab") == Fields.nameBits("!b"))
        var fields = Fields()
        var model: [(String, Int64)] = [] // the fields as a plain list
        for (n, op) in ops.enumerated() {
            let name = String(op.dropFirst())
            switch op.first {
            case "+": fields[name] = .int(Int64(n)); model.removeAll { $0.0 == name }; model.append((name, Int64(n)))
            case "-": fields[name] = nil; model.removeAll { $0.0 == name }
            default: #expect(fields[name] == model.first { $0.0 == name }.map { .int($0.1) }, "\(ops) at \(n)")
            }
        }
        let rebuilt = Fields(model.map { Fields.Field($0.0, .int($0.1)) })
        #expect(fields == rebuilt)
        #expect(fields.hashValue == rebuilt.hashValue)
        for name in ["ab", "!b", "cb", "a", "b", "x", "zz"] {
            #expect(fields.index(of: name) == model.firstIndex { $0.0 == name }, "\(name)")
            #expect(fields.index(of: name, from: 3) == model.firstIndex { $0.0 == name }, "\(name)")
        }
    }

    /// `RecordBatch.reject` keeps the other records in their order and dead-letters the
    /// rejected ones in theirs.
    @Test(arguments: [[Int](), [0], [4], [0, 1, 2, 3, 4], [1, 3], [0, 2, 4]])
    func rejectKeepsOrder(rejected: [Int]) {
        var batch = RecordBatch()
        for n in 0..<5 {
            batch.records.append(Record(fields: Fields(["n": .int(Int64(n))]), position: SourcePosition(file: "f", line: n + 1, offset: Int64(n))))
        }
        batch.reject(kind: .badTime) { record in
            guard case .int(let n)? = record.fields["n"] else { return "no n" }
            return rejected.contains(Int(n)) ? "rejected" : nil
        }
        #expect(batch.records.map(\.position.line) == (0..<5).filter { !rejected.contains($0) }.map { $0 + 1 })
        #expect(batch.deadLetters.map(\.position.line) == rejected.map { $0 + 1 })
    }
}
