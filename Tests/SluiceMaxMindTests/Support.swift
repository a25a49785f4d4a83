import Foundation
import SluiceMaxMind
import SluiceTestSupport
import Testing

/// Where the shared test data is, and how to ask the Python reference reader.
enum Fixtures {
    static var root: URL { URL(fileURLWithPath: TestSupport.repoRoot) }
    static var sharedData: String { TestSupport.sharedData }

    static var maxmind: String { sharedData + "/maxmind-db" }
    static var testData: String { maxmind + "/test-data" }
    static var geoLite2City: String { sharedData + "/geolite2-city-2019/GeoLite2-City.mmdb" }
    static let script: String = root.appendingPathComponent("Tests/SluiceMaxMindTests/reference_lookup.py").path

    /// The broken databases that live in test-data/ rather than bad-data/.
    static let brokenTestData: Set<String> = [
        "GeoIP2-City-Test-Broken-Double-Format.mmdb", "GeoIP2-City-Test-Invalid-Node-Count.mmdb",
        "MaxMind-DB-test-broken-pointers-24.mmdb", "MaxMind-DB-test-broken-search-tree-24.mmdb",
    ]

    /// Every good test database, by file name (an empty list fails the tests that use it).
    static let goodDatabases: [String] = {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: testData)) ?? []
        return names.filter { $0.hasSuffix(".mmdb") && !brokenTestData.contains($0) }.sorted()
    }()

    /// Every file under bad-data/, as a path relative to it.
    static let badDatabases: [String] = {
        let dir = maxmind + "/bad-data"
        let all = FileManager.default.enumerator(atPath: dir)?.allObjects as? [String] ?? []
        return all.filter { $0.hasSuffix(".mmdb") }.sorted()
    }()

    /// The Python used for the reference: `SLUICE_PYTHON`, else `python3` on PATH.
    struct ReferenceFailure: Error, CustomStringConvertible {
        var description: String
    }

    /// Runs the reference script; throws (so the test fails) when Python or the
    /// `maxminddb` package is missing or the script fails.
    static func reference(_ arguments: [String], input: String = "") throws -> String {
        do {
            return String(decoding: try TestSupport.python(script: script, arguments, input: Data(input.utf8)), as: UTF8.self)
        } catch {
            throw ReferenceFailure(description: "\(error)\nCI must pip install maxminddb (scripts/setup does).")
        }
    }

    /// The reference's answer for each address, one parsed JSON line each.
    static func referenceLookups(_ db: String, _ ips: [String], paths: [[String]]? = nil,
                                 fullEvery: Int = 1) throws -> [JSON] {
        var args = ["lookup", db]
        if let paths { args += [paths.map { $0.joined(separator: ".") }.joined(separator: ","), String(fullEvery)] }
        let out = try reference(args, input: ips.joined(separator: "\n") + "\n")
        let lines = out.split(separator: "\n", omittingEmptySubsequences: true)
        guard lines.count == ips.count else {
            throw ReferenceFailure(description: "the reference answered \(lines.count) lines for \(ips.count) addresses")
        }
        return try lines.map { try JSON.parse(String($0)) }
    }
}

/// A small JSON reader that keeps object key order and numbers as their text, so
/// that the reference's values compare exactly.
indirect enum JSON: Equatable, CustomStringConvertible {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JSON])
    case object([(String, JSON)])

    static func == (a: JSON, b: JSON) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case (.bool(let x), .bool(let y)): return x == y
        case (.number(let x), .number(let y)): return x == y
        case (.string(let x), .string(let y)): return x == y
        case (.array(let x), .array(let y)): return x == y
        case (.object(let x), .object(let y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    subscript(key: String) -> JSON? {
        if case .object(let fields) = self { return fields.first { $0.0 == key }?.1 }
        return nil
    }

    var string: String? { if case .string(let s) = self { return s } else { return nil } }
    var number: Double? { if case .number(let s) = self { return Double(s) } else { return nil } }

    var description: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return String(b)
        case .number(let n): return n
        case .string(let s): return "\"\(s)\""
        case .array(let a): return "[" + a.map(\.description).joined(separator: ",") + "]"
        case .object(let f): return "{" + f.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
        }
    }

    struct ParseError: Error, CustomStringConvertible {
        var description: String
    }

    static func parse(_ text: String) throws -> JSON {
        var parser = Parser(bytes: Array(text.utf8))
        let v = try parser.value()
        parser.space()
        guard parser.i == parser.bytes.count else { throw ParseError(description: "trailing text in JSON") }
        return v
    }

    private struct Parser {
        let bytes: [UInt8]
        var i = 0

        mutating func space() {
            while i < bytes.count, [0x20, 0x0A, 0x0D, 0x09].contains(bytes[i]) { i += 1 }
        }

        mutating func expect(_ s: String) throws {
            for c in s.utf8 {
                guard i < bytes.count, bytes[i] == c else { throw ParseError(description: "expected \(s) at \(i)") }
                i += 1
            }
        }

        mutating func value() throws -> JSON {
            space()
            guard i < bytes.count else { throw ParseError(description: "unexpected end of JSON") }
            switch bytes[i] {
            case UInt8(ascii: "n"): try expect("null"); return .null
            case UInt8(ascii: "t"): try expect("true"); return .bool(true)
            case UInt8(ascii: "f"): try expect("false"); return .bool(false)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "["):
                i += 1
                var items: [JSON] = []
                space()
                if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
                while true {
                    items.append(try value())
                    space()
                    guard i < bytes.count else { throw ParseError(description: "unterminated array") }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    try expect("]")
                    return .array(items)
                }
            case UInt8(ascii: "{"):
                i += 1
                var fields: [(String, JSON)] = []
                space()
                if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return .object(fields) }
                while true {
                    space()
                    let key = try string()
                    space()
                    try expect(":")
                    fields.append((key, try value()))
                    space()
                    guard i < bytes.count else { throw ParseError(description: "unterminated object") }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    try expect("}")
                    return .object(fields)
                }
            default:
                let start = i
                while i < bytes.count, "+-0123456789.eE".utf8.contains(bytes[i]) { i += 1 }
                guard i > start else { throw ParseError(description: "unexpected character at \(i)") }
                return .number(String(decoding: bytes[start..<i], as: UTF8.self))
            }
        }

        mutating func string() throws -> String {
            try expect("\"")
            var out: [UInt8] = []
            while i < bytes.count, bytes[i] != UInt8(ascii: "\"") {
                if bytes[i] == UInt8(ascii: "\\") {
                    i += 1
                    guard i < bytes.count else { break }
                    let c = bytes[i]
                    switch c {
                    case UInt8(ascii: "n"): out.append(0x0A)
                    case UInt8(ascii: "t"): out.append(0x09)
                    case UInt8(ascii: "r"): out.append(0x0D)
                    case UInt8(ascii: "b"): out.append(0x08)
                    case UInt8(ascii: "f"): out.append(0x0C)
                    case UInt8(ascii: "u"):
                        var code = try hex4()
                        if (0xD800..<0xDC00).contains(code) {
                            try expect("\\u")
                            i -= 1
                            let low = try hex4()
                            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                        }
                        out.append(contentsOf: Array(String(Character(Unicode.Scalar(code) ?? "?")).utf8))
                    default: out.append(c)
                    }
                    i += 1
                } else {
                    out.append(bytes[i])
                    i += 1
                }
            }
            try expect("\"")
            return String(decoding: out, as: UTF8.self)
        }

        /// Reads "XXXX" after a "u" at `i`, leaving `i` on the last hex digit.
        mutating func hex4() throws -> UInt32 {
            guard i + 4 < bytes.count, let v = UInt32(String(decoding: bytes[(i + 1)...(i + 4)], as: UTF8.self), radix: 16) else {
                throw ParseError(description: "bad \\u escape")
            }
            i += 4
            return v
        }
    }
}

/// Compares a decoded value with the reference's JSON for it; nil when equal, else
/// where and how they differ. Maps must have the same keys in the same order unless
/// `ordered` is false; numbers compare by value at the width of the decoded type.
func difference(_ value: MMDBValue?, _ json: JSON, ordered: Bool = true, at path: String = "") -> String? {
    let here = path.isEmpty ? "/" : path
    guard let value else { return json == .null ? nil : "\(here): expected \(json), got nothing" }
    func mismatch() -> String { "\(here): expected \(json), got \(value)" }
    switch value {
    case .string(let s):
        return json == .string(s) ? nil : mismatch()
    case .boolean(let b):
        return json == .bool(b) ? nil : mismatch()
    case .double(let d):
        if case .object = json, let special = json["$float"]?.string {
            let ok = special == "nan" ? d.isNaN : (special == "inf" ? d == .infinity : d == -.infinity)
            return ok ? nil : mismatch()
        }
        return json.number == d ? nil : mismatch()
    case .float(let f):
        if case .object = json, let special = json["$float"]?.string {
            let ok = special == "nan" ? f.isNaN : (special == "inf" ? f == .infinity : f == -.infinity)
            return ok ? nil : mismatch()
        }
        // The reference widens the float to a double, the JSON source writes its decimal.
        guard case .number(let text) = json else { return mismatch() }
        return Double(text) == Double(f) || Float(text) == f ? nil : mismatch()
    case .bytes(let b):
        let hex = b.map { String(format: "%02x", $0) }.joined()
        return json["$bytes"]?.string == hex ? nil : mismatch()
    case .uint16, .uint32, .int32, .uint64, .uint128:
        let decimal = value.decimalString!
        if case .number(let text) = json { return text == decimal ? nil : mismatch() }
        return json["$int"]?.string == decimal ? nil : mismatch()
    case .array(let items):
        guard case .array(let expected) = json else { return mismatch() }
        guard items.count == expected.count else { return "\(here): expected \(expected.count) items, got \(items.count)" }
        for (i, (item, want)) in zip(items, expected).enumerated() {
            if let d = difference(item, want, ordered: ordered, at: "\(path)/\(i)") { return d }
        }
        return nil
    case .map(let entries):
        guard case .object(let fields) = json else { return mismatch() }
        guard entries.count == fields.count else {
            return "\(here): expected keys \(fields.map(\.0)), got \(entries.map(\.key))"
        }
        for (i, entry) in entries.enumerated() {
            let want: JSON?
            if ordered {
                guard fields[i].0 == entry.key else { return "\(here): key \(i) expected \(fields[i].0), got \(entry.key)" }
                want = fields[i].1
            } else {
                want = json[entry.key]
            }
            guard let want else { return "\(here): unexpected key \(entry.key)" }
            if let d = difference(entry.value, want, ordered: ordered, at: "\(path)/\(entry.key)") { return d }
        }
        return nil
    }
}

/// Deterministic pseudo-random numbers (xorshift64*).
struct XorShift {
    var state: UInt64
    init(seed: UInt64) { state = seed == 0 ? 0x9E37_79B9_7F4A_7C15 : seed }
    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 2_685_821_657_736_338_717
    }
}

/// The address `text`, or a test failure.
func addr(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> IPAddress {
    try #require(IPAddress(text), "not an address: \(text)", sourceLocation: sourceLocation)
}
