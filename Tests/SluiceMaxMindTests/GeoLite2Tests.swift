import Foundation
import SluiceMaxMind
import Testing

/// The full-size GeoLite2 City database (2019) against MaxMind's reader, on
/// deterministic pseudo-random addresses.
@Suite struct GeoLite2Tests {
    static let paths = [["city", "names", "en"], ["country", "iso_code"], ["location", "latitude"],
                        ["subdivisions", "0", "iso_code"], ["registered_country", "geoname_id"]]

    /// 20,000 IPv4 addresses (1 in 7 IPv4-mapped IPv6) and 5,000 IPv6 addresses, mostly
    /// in allocated space, 1 in 10 in 6to4 (2002::/16, an alias of the IPv4 tree).
    static func addresses() -> [IPAddress] {
        var rng = XorShift(seed: 20_191_224)
        var out: [IPAddress] = []
        for i in 0..<20_000 {
            let v4 = UInt32(truncatingIfNeeded: rng.next() >> 17)
            out.append(i % 7 == 3 ? IPAddress(v6High: 0, low: 0xFFFF_0000_0000 | UInt64(v4)) : IPAddress(v4: v4))
        }
        let blocks: [UInt64] = [0x2001, 0x2400, 0x2403, 0x2600, 0x2604, 0x2607, 0x2800, 0x2A00, 0x2A01, 0x2A02, 0x2C0F]
        for i in 0..<5_000 {
            let r = rng.next()
            let high: UInt64
            if i % 10 == 0 {
                high = 0x2002 << 48 | (r >> 16) & 0xFFFF_FFFF_0000  // 2002:a.b.c.d::/48
            } else {
                high = blocks[Int(r % UInt64(blocks.count))] << 48 | (rng.next() >> 16) & 0x000F_FFFF_FFFF
            }
            out.append(IPAddress(v6High: high, low: rng.next()))
        }
        return out
    }

    @Test func agreesWithMaxMindsReader() throws {
        let path = Fixtures.geoLite2City
        let db = try MaxMindDatabase(path: path)
        #expect(db.metadata.nodeCount == 3_691_620 && db.metadata.recordSize == 28 && db.metadata.ipVersion == 6)
        #expect(db.metadata.databaseType == "GeoLite2-City")
        let ips = Self.addresses()
        // The reference is asked for the IPv4 form of an IPv4-mapped address (see lookup).
        let asked = ips.map { ($0.ipv4Mapped ?? $0).description }
        let fullEvery = 25
        let reference = try Fixtures.referenceLookups(path, asked, paths: Self.paths, fullEvery: fullEvery)
        var found = 0, full = 0
        // The addresses as one batch (`lookup(_: [IPAddress?])`, walks interleaved); each
        // entry also as the address's lookup alone.
        let batched = try db.lookup(ips)
        for (n, (ip, want)) in zip(ips, reference).enumerated() {
            #expect(try db.lookup(ip) == batched[n], "\(ip): alone and in a batch")
            guard let entry = batched[n] else {
                #expect(want["values"] == .array(Self.paths.map { _ in .null }), "\(ip): not found, the reference found \(want)")
                continue
            }
            found += 1
            #expect(want["prefix"]?.number == Double(entry.prefixLength), "\(ip): prefix \(entry.prefixLength), reference \(want)")
            for (i, p) in Self.paths.enumerated() {
                let ours = try db.value(entry, at: p)
                if let d = difference(ours, want["values"]?[i] ?? .null) { Issue.record("\(ip) \(p): \(d)") }
            }
            if n % fullEvery == 0 {
                if let d = difference(try db.decode(entry), want["record"] ?? .null) { Issue.record("\(ip) full record: \(d)") }
                full += 1
            }
        }
        #expect(found > 15_000, "only \(found) of \(ips.count) addresses found")
        #expect(full > 500)
    }
}
