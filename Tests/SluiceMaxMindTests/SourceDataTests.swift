import Foundation
import SluiceMaxMind
import Testing

/// The JSON files the test databases were built from (source-data/*.json).
enum SourceData {
    /// The source JSON of a database, e.g. GeoIP2-City-Test.json for GeoIP2-City-Test.mmdb.
    static func path(forDatabase name: String) -> String? {
        let candidate = Fixtures.maxmind + "/source-data/" + name.replacingOccurrences(of: ".mmdb", with: ".json")
        return FileManager.default.fileExists(atPath: candidate) ? candidate : nil
    }

    /// The [network: value] pairs of a database's source JSON (empty when it has none).
    static func networks(forDatabase name: String) throws -> [(String, JSON)] {
        guard let path = path(forDatabase: name) else { return [] }
        let text = try String(contentsOfFile: path, encoding: .utf8)
        guard case .array(let items) = try JSON.parse(text) else { return [] }
        var out: [(String, JSON)] = []
        for case .object(let fields) in items { out += fields }
        return out
    }

    /// "1.2.3.0/24" into its address and prefix length.
    static func parseNetwork(_ text: String) -> (IPAddress, Int)? {
        let parts = text.split(separator: "/")
        guard parts.count == 2, let address = IPAddress(String(parts[0])), let prefix = Int(parts[1]) else { return nil }
        return (address, prefix)
    }

    /// A network's first and last address as 128-bit ranges (IPv4 as ::a.b.c.d, where
    /// an IPv6 tree keeps it).
    static func range(_ address: IPAddress, _ prefix: Int) -> (ClosedRange<UInt128Key>) {
        let first = address.masked(to: prefix), last = address.lastAddress(prefixLength: prefix)
        return UInt128Key(first)...UInt128Key(last)
    }
}

/// A 128-bit address as a comparable key.
struct UInt128Key: Comparable {
    var high: UInt64, low: UInt64
    init(_ a: IPAddress) { high = a.high; low = a.low }
    static func < (a: Self, b: Self) -> Bool { (a.high, a.low) < (b.high, b.low) }
}

@Suite struct SourceDataTests {
    static let databases: [String] = Fixtures.goodDatabases.filter { SourceData.path(forDatabase: $0) != nil }

    /// For every network of the source JSON that no other network overlaps, its first and
    /// last addresses give exactly the source's value (numbers by value, maps unordered).
    @Test("records equal the source JSON", arguments: databases)
    func recordsEqualSource(name: String) throws {
        let db = try MaxMindDatabase(path: Fixtures.testData + "/" + name)
        let networks = try SourceData.networks(forDatabase: name)
        #expect(!networks.isEmpty)
        let parsed = try networks.map { (text, value) in
            let (address, prefix) = try #require(SourceData.parseNetwork(text), "bad network \(text) in the source")
            return (address, prefix, value, SourceData.range(address, prefix))
        }
        // Networks nest or are disjoint: a sweep in address order finds every nesting.
        let order = parsed.indices.sorted { parsed[$0].3.lowerBound < parsed[$1].3.lowerBound }
        var overlapped = Set<Int>()
        var widest: Int?
        for i in order {
            if let w = widest, parsed[i].3.lowerBound <= parsed[w].3.upperBound {
                overlapped.insert(i)
                overlapped.insert(w)
                if parsed[i].3.upperBound > parsed[w].3.upperBound { widest = i }
            } else {
                widest = i
            }
        }
        var compared = 0
        for (i, (address, prefix, value, _)) in parsed.enumerated() where !overlapped.contains(i) {
            for probe in [address.masked(to: prefix), address.lastAddress(prefixLength: prefix)] {
                let entry = try #require(try db.lookup(probe), "\(name) \(probe): no record for a source network")
                if let d = difference(try db.decode(entry), value, ordered: false) {
                    Issue.record("\(name) \(probe) (\(networks[i].0)): \(d)")
                }
                compared += 1
            }
        }
        #expect(compared > 0 && compared == 2 * (networks.count - overlapped.count), "\(name): compared \(compared)")
    }
}
