import Foundation
import SluiceMaxMind
import Testing

/// The decoder test database holds every data type; each key names the type of its
/// value, so the decoded case must be that type, with the reference reader's value.
@Suite struct DecoderTests {
    static let path = Fixtures.testData + "/MaxMind-DB-test-decoder.mmdb"

    /// Key -> the case it must decode to (by name).
    static func typeName(_ v: MMDBValue) -> String {
        switch v {
        case .string: return "utf8_string"
        case .double: return "double"
        case .bytes: return "bytes"
        case .uint16: return "uint16"
        case .uint32: return "uint32"
        case .map: return "map"
        case .int32: return "int32"
        case .uint64: return "uint64"
        case .uint128: return "uint128"
        case .array: return "array"
        case .boolean: return "boolean"
        case .float: return "float"
        }
    }

    @Test("every type decodes to its case and the reference's value",
          arguments: ["1.1.1.1", "::1.1.1.3", "0.0.0.0", "::", "4.5.6.7", "::255.255.255.255", "::4.5.6.7"])
    func everyType(address: String) throws {
        let db = try MaxMindDatabase(path: Self.path)
        let want = try #require(try Fixtures.referenceLookups(Self.path, [address]).first)
        let entry = try #require(try db.lookup(addr(address)))
        let record = try db.decode(entry)
        guard case .map(let entries) = record else {
            Issue.record("\(address): not a map: \(record)")
            return
        }
        for entry in entries {
            #expect(Self.typeName(entry.value) == entry.key, "\(address): \(entry.key) decoded as \(entry.value)")
        }
        #expect(difference(record, want["record"] ?? .null) == nil, "\(difference(record, want["record"] ?? .null) ?? "")")
    }

    /// The values MaxMind's reader test suites check, written out.
    @Test func knownValues() throws {
        let db = try MaxMindDatabase(path: Self.path)
        let full = try #require(try db.lookup(addr("1.1.1.1")))
        let r = try db.decode(full)
        #expect(r["uint128"] == .uint128(high: 1 << 56, low: 0))  // 2**120
        #expect(r["uint128"]?.decimalString == "1329227995784915872903807060280344576")
        #expect(r["uint64"] == .uint64(1 << 60))
        #expect(r["int32"] == .int32(-268_435_456))
        #expect(r["uint32"] == .uint32(1 << 28))
        #expect(r["uint16"] == .uint16(100))
        #expect(r["double"] == .double(42.123456))
        #expect(r["float"] == .float(1.1))
        #expect(r["bytes"] == .bytes([0, 0, 0, 42]))
        #expect(r["boolean"] == .boolean(true))
        #expect(r["utf8_string"] == .string("unicode! ☯ - ♫"))
        #expect(r["array"] == .array([.uint32(1), .uint32(2), .uint32(3)]))
        #expect(r[path: ["map", "mapX", "arrayX", "1"]] == .uint32(8))
        #expect(r[path: ["map", "mapX", "utf8_stringX"]] == .string("hello"))

        let max = try db.decode(try #require(try db.lookup(addr("::255.255.255.255"))))
        #expect(max["uint128"] == .uint128(high: .max, low: .max))
        #expect(max["uint128"]?.decimalString == "340282366920938463463374607431768211455")
        #expect(max["uint64"] == .uint64(.max))
        #expect(max["int32"] == .int32(.max))
        #expect(max["double"] == .double(.infinity))
        #expect(max["float"] == .float(.infinity))

        let zero = try db.decode(try #require(try db.lookup(addr("::"))))
        #expect(zero["map"] == .map([]) && zero["array"] == .array([]) && zero["bytes"] == .bytes([]))
        #expect(zero["utf8_string"] == .string("") && zero["boolean"] == .boolean(false) && zero["uint128"] == .uint128(high: 0, low: 0))
    }

    @Test func jsonRendering() throws {
        let db = try MaxMindDatabase(path: Self.path)
        let r = try db.decode(try #require(try db.lookup(addr("1.1.1.1"))))
        let json = r.jsonString
        #expect(json.hasPrefix("{\"array\":[1,2,3],\"boolean\":true,\"bytes\":\"0000002a\",\"double\":42.123456,"))
        #expect(json.contains("\"uint128\":1329227995784915872903807060280344576"))
        #expect(json.contains("\"int32\":-268435456"))
        #expect(r.description == json)
        // It is JSON: Foundation reads it back.
        let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
        #expect(object?["utf8_string"] as? String == "unicode! ☯ - ♫")
        #expect(MMDBValue.map([.init(key: "a\"\n", value: .double(.nan))]).jsonString == "{\"a\\\"\\n\":\"NaN\"}")
    }

    /// Pointers of every size, and pointers in the metadata (relative to its start).
    @Test func pointers() throws {
        for name in ["MaxMind-DB-test-pointer-decoder.mmdb", "MaxMind-DB-test-metadata-pointers.mmdb",
                     "MaxMind-DB-string-value-entries.mmdb", "MaxMind-DB-test-nested.mmdb"] {
            let db = try MaxMindDatabase(path: Fixtures.testData + "/" + name)
            try db.verify()
        }
        let meta = try MaxMindDatabase(path: Fixtures.testData + "/MaxMind-DB-test-metadata-pointers.mmdb").metadata
        #expect(!meta.languages.isEmpty && !meta.description.isEmpty)
        #expect(meta.description.count == meta.languages.count)
    }
}

/// `value(_:at:)` walks by key without decoding siblings; it must answer exactly what
/// decoding the record and walking the result answers, for every path in it.
@Suite struct PathTests {
    /// Every path in a value: map keys, array indices (and the last one counted from the end).
    static func paths(in value: MMDBValue, prefix: [String] = []) -> [[String]] {
        var out = [prefix]
        switch value {
        case .map(let entries):
            for e in entries { out += paths(in: e.value, prefix: prefix + [e.key]) }
            out.append(prefix + ["no such key"])
        case .array(let items):
            for (i, item) in items.enumerated() { out += paths(in: item, prefix: prefix + [String(i)]) }
            if !items.isEmpty { out.append(prefix + ["-1"]) }
            out.append(prefix + [String(items.count)])
            out.append(prefix + ["x"])
        default:
            out.append(prefix + ["deeper"])
        }
        return out
    }

    @Test("value(at:) equals decode then walk",
          arguments: ["GeoIP2-City-Test.mmdb", "GeoIP2-Enterprise-Test.mmdb", "MaxMind-DB-test-decoder.mmdb",
                      "MaxMind-DB-test-nested.mmdb", "MaxMind-DB-test-pointer-decoder.mmdb", "GeoLite2-ASN-Test.mmdb",
                      "GeoIP2-Precision-Enterprise-Test.mmdb"])
    func fastPathEqualsDecode(name: String) throws {
        let db = try MaxMindDatabase(path: Fixtures.testData + "/" + name)
        var checked = 0
        for ip in try ReferenceReaderTests.addresses(for: name) {
            guard let address = IPAddress(ip), let entry = try? db.lookup(address) else { continue }
            let record = try db.decode(entry)
            for path in Self.paths(in: record) {
                let fast = try db.value(entry, at: path)
                #expect(fast == record[path: path], "\(name) \(ip) \(path)")
                checked += 1
            }
        }
        #expect(checked > 100)
    }

    @Test func typicalPaths() throws {
        let db = try MaxMindDatabase(path: Fixtures.testData + "/GeoIP2-City-Test.mmdb")
        let entry = try #require(try db.lookup(addr("2.125.160.216")))
        #expect(try db.value(entry, at: ["country", "iso_code"]) == .string("GB"))
        #expect(try db.value(entry, at: ["subdivisions", "0", "iso_code"]) == .string("ENG"))
        #expect(try db.value(entry, at: ["subdivisions", "-1", "iso_code"]) == .string("WBK"))
        #expect(try db.value(entry, at: ["city", "names", "en"]) == .string("Boxford"))
        #expect(try db.value(entry, at: ["location", "latitude"])?.doubleValue == 51.75)
        #expect(try db.value(entry, at: []) == (try db.decode(entry)))
        #expect(try db.value(entry, at: ["country", "iso_code", "x"]) == nil)
        #expect(try db.value(entry, at: ["subdivisions", "2"]) == nil)
    }
}
