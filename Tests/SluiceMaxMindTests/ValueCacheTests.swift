import Foundation
import SluiceMaxMind
import Testing

/// `MaxMindDatabase.path(_:)`: values remembered by record offset (issue #7). Expected
/// values come from MaxMind's reader, never from the code under test.
@Suite struct ValueCacheTests {
    /// Paths of City records: strings, numbers, a map (never remembered) and absent paths
    /// (`postal.code` is absent from many records, `nothing.here` from all).
    static let paths = [["country", "iso_code"], ["city", "names", "en"], ["location", "latitude"],
                        ["subdivisions", "0", "iso_code"], ["registered_country", "geoname_id"], ["continent"],
                        ["postal", "code"], ["nothing", "here"]]

    /// Addresses from few networks, each asked many times in a shuffled order, so that
    /// records repeat and a small cache both hits and evicts.
    static func addresses() -> [IPAddress] {
        var rng = XorShift(seed: 77)
        let bases = (0..<300).map { _ in UInt32(truncatingIfNeeded: rng.next() >> 17) & 0xFFFF_FF00 }
        return (0..<6_000).map { i in
            let host = UInt32(truncatingIfNeeded: rng.next() >> 40) & 0xFF
            let v4 = bases[Int(rng.next() % UInt64(bases.count))] | host
            return i % 9 == 4 ? IPAddress(v6High: 0, low: 0xFFFF_0000_0000 | UInt64(v4)) : IPAddress(v4: v4)
        }
    }

    /// One database's answers through `path(_:)`, checked against the reference's values;
    /// returns how many addresses had a record.
    static func check(_ db: MaxMindDatabase, _ ips: [IPAddress], _ reference: [JSON], label: String) throws -> Int {
        let readers = Self.paths.map { db.path($0) }
        var found = 0
        for (ip, want) in zip(ips, reference) {
            guard let entry = try db.lookup(ip) else {
                #expect(want["values"] == .array(Self.paths.map { _ in .null }), "\(label) \(ip): not found, the reference found \(want)")
                continue
            }
            found += 1
            for (i, reader) in readers.enumerated() {
                if let d = difference(try reader.value(entry), want["values"]?[i] ?? .null) {
                    Issue.record("\(label) \(ip) \(Self.paths[i]): \(d)")
                }
            }
        }
        return found
    }

    @Test func rememberedValuesAgreeWithMaxMindsReader() throws {
        let path = Fixtures.geoLite2City
        let ips = Self.addresses()
        let reference = try Fixtures.referenceLookups(path, ips.map { ($0.ipv4Mapped ?? $0).description }, paths: Self.paths,
                                                      fullEvery: 1_000_000)
        // The default cache; one of 16 entries (4 sets of 4: evictions and shared sets all
        // the time); none. Twice each: the second pass answers from what the first left.
        for entries in [MaxMindDatabase.defaultValueCacheEntries, 16, 0] {
            let db = try MaxMindDatabase(path: path, valueCacheEntries: entries)
            for pass in 0..<2 {
                let found = try Self.check(db, ips, reference, label: "\(entries) entries, pass \(pass)")
                #expect(found > 3_000)
            }
        }
    }

    /// Two paths of one record are remembered apart, and a path asked for again shares
    /// the first one's cache.
    @Test func pathsAreRememberedApart() throws {
        let db = try MaxMindDatabase(path: Fixtures.testData + "/GeoIP2-City-Test.mmdb", valueCacheEntries: 4)
        let ip = "81.2.69.160"
        let reference = try Fixtures.referenceLookups(db.path, [ip], paths: [["country", "iso_code"], ["city", "names", "en"]])
        let want = try #require(reference.first?["values"])
        let entry = try #require(try db.lookup(addr(ip)))
        for _ in 0..<3 {
            let country = db.path(["country", "iso_code"]), city = db.path(["city", "names", "en"])
            #expect(difference(try country.value(entry), want[0] ?? .null) == nil)
            #expect(difference(try city.value(entry), want[1] ?? .null) == nil)
        }
    }

    /// A database file replaced on disk and opened again answers from the new file, not
    /// from values remembered for the old one (the same record offsets mean other data).
    @Test func aReopenedFileIsNotAnsweredFromTheOldCache() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-value-cache-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = dir + "/db.mmdb"
        let first = Fixtures.testData + "/GeoIP2-City-Test.mmdb", second = Fixtures.testData + "/GeoIP2-Country-Test.mmdb"
        let ips = ["81.2.69.160", "2.125.160.216", "89.160.20.112", "216.160.83.56", "175.16.199.0", "2001:218::1", "67.43.156.0"]
        let paths = [["country", "iso_code"], ["country", "geoname_id"], ["continent", "code"], ["city", "names", "en"]]
        for (source, label) in [(first, "City"), (second, "Country"), (first, "City again")] {
            try? FileManager.default.removeItem(atPath: file)
            try FileManager.default.copyItem(atPath: source, toPath: file)
            let want = try Fixtures.referenceLookups(source, ips, paths: paths)
            let db = try MaxMindDatabase(path: file)
            let readers = paths.map { db.path($0) }
            for _ in 0..<2 {
                for (ip, w) in zip(ips, want) {
                    let entry = try db.lookup(addr(ip))
                    for (i, reader) in readers.enumerated() {
                        let ours = try entry.flatMap { try reader.value($0) }
                        if let d = difference(ours, w["values"]?[i] ?? .null) { Issue.record("\(label) \(ip) \(paths[i]): \(d)") }
                    }
                }
            }
        }
    }

    @Test func sharedBetweenThreads() async throws {
        let db = try MaxMindDatabase(path: Fixtures.geoLite2City, cacheBytes: 64 << 10, valueCacheEntries: 64)
        let ips = Array(Self.addresses().prefix(3_000))
        let want = try ips.map { ip -> String in
            guard let e = try db.lookup(ip) else { return "-" }
            return try Self.paths.map { try db.value(e, at: $0)?.jsonString ?? "nil" }.joined(separator: " ")
        }
        let results = try await withThrowingTaskGroup(of: [String].self) { group in
            for _ in 0..<4 {
                group.addTask {
                    let readers = Self.paths.map { db.path($0) }
                    return try ips.map { ip -> String in
                        guard let e = try db.lookup(ip) else { return "-" }
                        return try readers.map { try $0.value(e)?.jsonString ?? "nil" }.joined(separator: " ")
                    }
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results.count == 4 && results.allSatisfy { $0 == want })
    }
}
