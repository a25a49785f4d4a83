import Foundation
import SluiceMaxMind
import Testing

/// Every test database of the MaxMind-DB suite against MaxMind's own reader (the
/// Python `maxminddb` package): the same record, prefix length and metadata.
@Suite struct ReferenceReaderTests {
    /// Addresses that most test databases do not hold, or hold at their edges.
    static let extraAddresses = [
        "0.0.0.0", "1.1.1.1", "1.1.1.3", "1.2.3.4", "2.125.160.216", "8.8.8.8", "67.43.156.0", "81.2.69.160",
        "89.160.20.112", "128.0.0.0", "175.16.199.0", "202.196.224.0", "216.160.83.56", "223.255.255.255",
        "255.255.255.255", "::", "::1", "::1.1.1.1", "::255.255.255.255", "1000::1234:5", "2001:db8::1",
        "2001:218::", "2001:220::1", "2001:480::", "2002:101:101::", "2002:5902:1470::", "2a02:cf40::",
        "abcd::1", "fe80::1", "ffff::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    ]

    /// Addresses to compare for one database: both ends of every network the reference
    /// reader lists, both ends of every network of the source JSON, and the extras.
    static func addresses(for name: String) throws -> [String] {
        let path = Fixtures.testData + "/" + name
        var out: [String] = []
        if case .array(let networks) = try JSON.parse(try Fixtures.reference(["networks", path])) {
            for case .array(let pair) in networks { out += pair.compactMap(\.string) }
        }
        for (network, _) in try SourceData.networks(forDatabase: name) {
            guard let (address, prefix) = SourceData.parseNetwork(network) else { continue }
            out += [address.masked(to: prefix).description, address.lastAddress(prefixLength: prefix).description]
        }
        var seen = Set<String>()
        return (out + extraAddresses).filter { seen.insert($0).inserted }
    }

    /// Our answer against the reference's for one address; nil when they agree.
    static func compare(_ db: MaxMindDatabase, _ ip: String, _ want: JSON) -> String? {
        guard let address = IPAddress(ip) else { return "\(ip): our parser rejects it" }
        return compare(db, ip, Result { try db.lookup(address) }, want)
    }

    /// Our lookup's answer (an entry, none, or an error) against the reference's.
    static func compare(_ db: MaxMindDatabase, _ ip: String, _ lookup: Result<MaxMindEntry?, any Error>, _ want: JSON) -> String? {
        let entry: MaxMindEntry?
        do {
            entry = try lookup.get()
        } catch {
            return want["error"] != nil ? nil : "\(ip): we threw \(error), the reference answered \(want)"
        }
        if let error = want["error"] {
            // The reference decodes as it looks up: our decode must fail as well.
            guard let entry, (try? db.decode(entry)) == nil else {
                return "\(ip): the reference failed (\(error)), we answered \(String(describing: entry))"
            }
            return nil
        }
        guard let record = want["record"] else { return "\(ip): no record in the reference's answer" }
        guard let entry else { return record == .null ? nil : "\(ip): we found nothing, the reference found \(record)" }
        if record == .null { return "\(ip): we found \(entry), the reference found nothing" }
        guard want["prefix"]?.number == Double(entry.prefixLength) else {
            return "\(ip): prefix \(entry.prefixLength), the reference says \(want["prefix"] ?? .null)"
        }
        do {
            return difference(try db.decode(entry), record).map { "\(ip) \($0)" }
        } catch {
            return "\(ip): decode threw \(error)"
        }
    }

    /// Each address alone, then all of them as one batch (`lookup(_: [IPAddress?])`, the
    /// walks interleaved): each address's entry is the reference's, whatever the addresses
    /// around it (no address every seventh place); an address the lookup refuses (IPv6 in
    /// an IPv4 tree) fails the batch.
    @Test("agrees with MaxMind's reader, alone and in a batch", arguments: Fixtures.goodDatabases)
    func agreesWithReferenceReader(name: String) throws {
        let path = Fixtures.testData + "/" + name
        let db = try MaxMindDatabase(path: path)
        let ips = try Self.addresses(for: name)
        let expected = try Fixtures.referenceLookups(path, ips)
        var found = 0
        for (ip, want) in zip(ips, expected) {
            if let problem = Self.compare(db, ip, want) { Issue.record("\(name) \(problem)") }
            if let record = want["record"], record != .null { found += 1 }
        }
        #expect(found > 0, "\(name): no address of the sample has data")
        var batch: [IPAddress?] = [], wants: [(String, JSON)?] = [], refused: [IPAddress] = []
        for (ip, want) in zip(ips, expected) {
            let address = try addr(ip)
            if case .failure = Result(catching: { try db.lookup(address) }) {
                refused.append(address)
                continue
            }
            if batch.count % 7 == 3 {
                batch.append(nil)
                wants.append(nil)
            }
            batch.append(address)
            wants.append((ip, want))
        }
        let entries = try db.lookup(batch)
        #expect(entries.count == batch.count)
        found = 0
        for (entry, want) in zip(entries, wants) {
            guard let (ip, want) = want else {
                #expect(entry == nil)
                continue
            }
            if let problem = Self.compare(db, ip, .success(entry), want) { Issue.record("\(name) batch \(problem)") }
            if entry != nil { found += 1 }
        }
        #expect(found > 0, "\(name): no address of the batch has data")
        if let bad = refused.first {
            #expect(throws: MaxMindError.self) { try db.lookup(batch + [bad]) }
        }
    }

    @Test("metadata equals the reference's", arguments: Fixtures.goodDatabases)
    func metadata(name: String) throws {
        let path = Fixtures.testData + "/" + name
        let m = try MaxMindDatabase(path: path).metadata
        let want = try JSON.parse(try Fixtures.reference(["metadata", path]))
        #expect(want["node_count"]?.number == Double(m.nodeCount))
        #expect(want["record_size"]?.number == Double(m.recordSize))
        #expect(want["ip_version"]?.number == Double(m.ipVersion))
        #expect(want["database_type"]?.string == m.databaseType)
        #expect(want["languages"] == .array(m.languages.map { .string($0) }))
        #expect(want["binary_format_major_version"]?.number == Double(m.binaryFormatMajorVersion))
        #expect(want["binary_format_minor_version"]?.number == Double(m.binaryFormatMinorVersion))
        #expect(difference(.uint64(m.buildEpoch), want["build_epoch"] ?? .null) == nil)
        guard case .object(let fields)? = want["description"] else {
            Issue.record("no description in the reference's metadata")
            return
        }
        #expect(m.description == Dictionary(uniqueKeysWithValues: fields.map { ($0.0, $0.1.string ?? "") }))
        // The raw map holds the same keys.
        #expect(m.raw["database_type"] == .string(m.databaseType))
    }

    /// `::ffff:a.b.c.d` is looked up as a.b.c.d, in IPv4 and IPv6 trees alike; in the
    /// databases that alias `::ffff:0:0/96` to the IPv4 tree, MaxMind's reader agrees when
    /// asked for the mapped form (with 96 more prefix bits).
    @Test("IPv4-mapped IPv6 addresses are looked up as IPv4",
          arguments: ["GeoIP2-City-Test.mmdb", "MaxMind-DB-test-decoder.mmdb", "MaxMind-DB-test-ipv4-24.mmdb",
                      "MaxMind-DB-test-mixed-28.mmdb", "GeoLite2-ASN-Test.mmdb"])
    func ipv4Mapped(name: String) throws {
        let path = Fixtures.testData + "/" + name
        let db = try MaxMindDatabase(path: path)
        let v4 = try Self.addresses(for: name).filter { !$0.contains(":") }
        var hits = 0
        for ip in v4 {
            let plain = try db.lookup(addr(ip))
            let mapped = try db.lookup(addr("::ffff:" + ip))
            #expect(plain == mapped, "\(name) \(ip)")
            if plain != nil { hits += 1 }
        }
        #expect(hits > 0)
        if db.metadata.ipVersion == 6, name != "MaxMind-DB-test-mixed-28.mmdb" {
            let mappedText = v4.map { "::ffff:" + $0 }
            let reference = try Fixtures.referenceLookups(path, mappedText)
            for (ip, want) in zip(v4, reference) {
                guard let entry = try db.lookup(addr(ip)) else {
                    #expect(want["record"] == .null, "\(name) ::ffff:\(ip)")
                    continue
                }
                #expect(want["prefix"]?.number == Double(entry.prefixLength + 96), "\(name) ::ffff:\(ip)")
                #expect(difference(try db.decode(entry), want["record"] ?? .null) == nil, "\(name) ::ffff:\(ip)")
            }
        }
    }

    /// IPv4 lookups in IPv6 trees start at the node 96 zero bits down; a tree with data
    /// above that (::/64) answers every IPv4 address with it, prefix 0; a tree with no
    /// IPv4 data answers nothing; an IPv4 tree rejects IPv6 addresses.
    @Test func ipv4InIPv6Trees() throws {
        let noSubtree = try MaxMindDatabase(path: Fixtures.testData + "/MaxMind-DB-no-ipv4-search-tree.mmdb")
        for ip in ["1.1.1.1", "192.1.1.1", "255.255.255.255", "::ffff:10.0.0.1"] {
            let entry = try #require(try noSubtree.lookup(addr(ip)))
            #expect(entry.prefixLength == 0)
            #expect(try noSubtree.decode(entry) == .string("::/64"))
        }
        let v6Only = try MaxMindDatabase(path: Fixtures.testData + "/MaxMind-DB-test-ipv6-24.mmdb")
        #expect(try v6Only.lookup(addr("1.1.1.1")) == nil)
        let v4Only = try MaxMindDatabase(path: Fixtures.testData + "/MaxMind-DB-test-ipv4-24.mmdb")
        #expect(throws: MaxMindError.self) { try v4Only.lookup(addr("2001::1")) }
        #expect(try v4Only.lookup(addr("::ffff:1.1.1.1")) != nil)
        let mixed = try MaxMindDatabase(path: Fixtures.testData + "/MaxMind-DB-test-mixed-24.mmdb")
        let viaV4 = try #require(try mixed.lookup(addr("1.1.1.1")))
        let viaV6 = try #require(try mixed.lookup(addr("::1.1.1.1")))
        #expect(viaV4.offset == viaV6.offset)
        #expect(viaV4.prefixLength == 32 && viaV6.prefixLength == 128)
    }

    /// The same data in 24-, 28- and 32-bit trees gives the same answers.
    @Test(arguments: ["ipv4", "ipv6", "mixed"])
    func recordSizesAgree(family: String) throws {
        let dbs = try [24, 28, 32].map { try MaxMindDatabase(path: Fixtures.testData + "/MaxMind-DB-test-\(family)-\($0).mmdb") }
        #expect(dbs.map(\.metadata.recordSize) == [24, 28, 32])
        var found = 0
        for ip in try Self.addresses(for: "MaxMind-DB-test-\(family)-24.mmdb") {
            let address = try addr(ip)
            let answers = dbs.map { db -> String in
                do {
                    guard let e = try db.lookup(address) else { return "none" }
                    return "\(e.prefixLength) \(try db.decode(e))"
                } catch {
                    return "error"
                }
            }
            #expect(Set(answers).count == 1, "\(family) \(ip): \(answers)")
            if answers[0] != "none", answers[0] != "error" { found += 1 }
        }
        #expect(found > 0)
    }

    /// Text lookups with a path, and bad text.
    @Test func lookupByTextAndPath() throws {
        let db = try MaxMindDatabase(path: Fixtures.testData + "/GeoIP2-City-Test.mmdb")
        let reference = try Fixtures.referenceLookups(db.path, ["81.2.69.160"], paths: [["country", "iso_code"], ["city", "names", "en"]])
        let values = try #require(reference.first?["values"])
        #expect(difference(try db.lookup("81.2.69.160", path: ["country", "iso_code"]), values[0] ?? .null) == nil)
        #expect(difference(try db.lookup("81.2.69.160", path: ["city", "names", "en"]), values[1] ?? .null) == nil)
        #expect(try db.lookup("10.0.0.1", path: ["country", "iso_code"]) == nil)
        do {
            _ = try db.lookup("81.2.69.999", path: ["country"])
            Issue.record("an invalid address was accepted")
        } catch let error as MaxMindError {
            #expect(error.kind == .invalidAddress("81.2.69.999"))
            #expect(error.description.contains("GeoIP2-City-Test.mmdb"))
        }
    }
}

extension JSON {
    subscript(index: Int) -> JSON? {
        if case .array(let items) = self, items.indices.contains(index) { return items[index] }
        return nil
    }
}
