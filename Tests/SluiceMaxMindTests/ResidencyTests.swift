import Foundation
import SluiceMaxMind
import Testing

/// The database holds at most its page cache of the file in memory (issue #7: a
/// mapping's touched pages all counted in the process's RSS, ~57 MB of the City
/// database in a benchmark run).
@Suite struct ResidencyTests {
    static let paths = [["country", "iso_code"], ["city", "names", "en"], ["location", "latitude"], ["subdivisions", "0", "iso_code"]]

    /// Random addresses from everywhere (IPv4, IPv4-mapped, IPv6): lookups that end all
    /// over the file, the worst case for a cache.
    static func addresses(_ count: Int, seed: UInt64) -> [IPAddress] {
        var rng = XorShift(seed: seed)
        return (0..<count).map { i in
            let r = rng.next()
            switch i % 10 {
            case 0: return IPAddress(v6High: 0x2A00 << 48 | (r >> 16), low: rng.next())
            case 1: return IPAddress(v6High: 0, low: 0xFFFF_0000_0000 | (r >> 32))
            default: return IPAddress(v4: UInt32(truncatingIfNeeded: r >> 17))
            }
        }
    }

    /// What a database answers for each address: the prefix, some values, and every 25th
    /// record in full.
    static func answers(_ db: MaxMindDatabase, _ ips: [IPAddress]) throws -> [String] {
        try ips.enumerated().map { n, ip in
            guard let e = try db.lookup(ip) else { return "-" }
            var parts = ["/\(e.prefixLength)"]
            for p in paths { parts.append(try db.value(e, at: p)?.jsonString ?? "nil") }
            if n % 25 == 0 { parts.append(try db.decode(e).jsonString) }
            return parts.joined(separator: " ")
        }
    }

    @Test func heldBytesStayWithinTheCache() throws {
        let db = try MaxMindDatabase(path: Fixtures.geoLite2City, cacheBytes: 1 << 20)
        #expect(db.cacheBytes == 1 << 20)
        _ = try Self.answers(db, Self.addresses(20_000, seed: 3))
        // 65,536 blocks of 16 bytes: most are used (a miss's neighbours in the same 64
        // bytes may be held already), none past the cache.
        #expect(db.cachedBytes <= 1 << 20 && db.cachedBytes > 3 << 18, "the cache is full after 20,000 lookups: \(db.cachedBytes)")
        #expect(db.pageReads > 20_000, "and its pages were reused: \(db.pageReads) reads")
        #expect(try MaxMindDatabase(path: Fixtures.geoLite2City).cacheBytes == MaxMindDatabase.defaultCacheBytes)
        // A cache larger than the file is cut to the file's pages.
        let small = try MaxMindDatabase(path: Fixtures.testData + "/GeoIP2-City-Test.mmdb", cacheBytes: 1 << 30)
        #expect(small.cacheBytes <= 1 << 16)
    }

    #if os(Linux)
    @Test func theFileIsNotMapped() throws {
        let db = try MaxMindDatabase(path: Fixtures.geoLite2City)
        _ = try Self.answers(db, Self.addresses(2_000, seed: 4))
        // Its pages would count in the process's RSS (`Rss` of the mapping in smaps).
        let maps = try String(contentsOfFile: "/proc/self/maps", encoding: .utf8)
        let name = URL(fileURLWithPath: Fixtures.geoLite2City).lastPathComponent
        #expect(!maps.contains(name), "\(name) is mapped into the process")
    }
    #endif

    @Test func answersDoNotDependOnTheCacheSize() throws {
        let ips = Self.addresses(20_000, seed: 5)
        // 16 KiB: 256 sets of four 16-byte blocks, evicted on nearly every read (and reads
        // that cross a block boundary); 64 MiB: the whole file.
        let tiny = try Self.answers(MaxMindDatabase(path: Fixtures.geoLite2City, cacheBytes: 16 << 10), ips)
        let whole = try Self.answers(MaxMindDatabase(path: Fixtures.geoLite2City, cacheBytes: 64 << 20), ips)
        #expect(tiny == whole)
        // Blocks of 4 bytes (most nodes and strings cross one) and 4 KiB pages; no prefix
        // tables; the largest prefix tables the tree allows (19 bits, IPv6 15).
        let small = try Self.answers(MaxMindDatabase(path: Fixtures.geoLite2City, cacheBytes: 16 << 10, blockBytes: 4), ips)
        #expect(small == whole)
        let pages = try Self.answers(MaxMindDatabase(path: Fixtures.geoLite2City, cacheBytes: 64 << 10, blockBytes: 4096), ips)
        #expect(pages == whole)
        let noTables = try Self.answers(MaxMindDatabase(path: Fixtures.geoLite2City, treeTableBytes: 0), ips)
        #expect(noTables == whole)
        let bigTables = try Self.answers(MaxMindDatabase(path: Fixtures.geoLite2City, treeTableBytes: 64 << 20), ips)
        #expect(bigTables == whole)
        #expect(whole.filter { $0 != "-" }.count > 5_000)
    }

    @Test func sharedBetweenThreads() async throws {
        let db = try MaxMindDatabase(path: Fixtures.geoLite2City, cacheBytes: 64 << 10)
        let ips = Self.addresses(4_000, seed: 6)
        let want = try Self.answers(MaxMindDatabase(path: Fixtures.geoLite2City, cacheBytes: 64 << 20), ips)
        let results = try await withThrowingTaskGroup(of: [String].self) { group in
            for _ in 0..<4 { group.addTask { try Self.answers(db, ips) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results.count == 4 && results.allSatisfy { $0 == want })
    }
}
