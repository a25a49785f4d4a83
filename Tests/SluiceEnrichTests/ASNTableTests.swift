import Foundation
@testable import SluiceEnrich
import SluiceMaxMind
import SluiceTestSupport
import Testing

/// `ASNTable` finds an IPv4 address's range through a /16 index, then a binary search
/// between two of its entries. Checked against the plain answer (the one range that holds
/// the address, found by a scan) on tables of disjoint ranges: ranges within one /16, many
/// in one /16, ones spanning several /16s, gaps, and addresses at every edge.
@Suite struct ASNTableTests {
    struct Range { var start: UInt32; var end: UInt32; var asn: Int }

    static func table(seed: UInt64, count: Int, maxLength: UInt32) -> [Range] {
        var rng = SplitMix64(seed: seed)
        var ranges: [Range] = []
        var at = UInt32(rng.next() % 4096)
        for n in 0..<count {
            let length = UInt32(rng.next() % UInt64(maxLength)) + 1
            let gap = rng.next() % 3 == 0 ? 0 : UInt32(rng.next() % UInt64(maxLength))
            guard at <= UInt32.max - length - gap - 1 else { break }
            ranges.append(Range(start: at, end: at + length - 1, asn: n + 1))
            at += length + gap
        }
        return ranges
    }

    @Test(arguments: [(1, 50, UInt32(1 << 24)), (2, 3_000, UInt32(1 << 16)), (3, 3_000, UInt32(300)), (4, 20_000, UInt32(40_000)), (5, 1, UInt32(1 << 20))])
    func findsTheRangeThatHoldsTheAddress(seed: UInt64, count: Int, maxLength: UInt32) throws {
        let ranges = Self.table(seed: seed, count: count, maxLength: maxLength)
        let dir = try TestSupport.scratchDirectory("asn")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func dotted(_ a: UInt32) -> String { "\(a >> 24).\((a >> 16) & 255).\((a >> 8) & 255).\(a & 255)" }
        var tsv = "range_start\trange_end\tAS_number\tcountry_code\tAS_description\n"
        var order = SplitMix64(seed: seed)
        for r in ranges.shuffled(using: &order) { tsv += "\(dotted(r.start))\t\(dotted(r.end))\t\(r.asn)\tTR\tAS \(r.asn)\n" }
        try tsv.write(toFile: dir + "/asn.tsv", atomically: true, encoding: .utf8)
        let table = try ASNTable(path: dir + "/asn.tsv")
        var rng = SplitMix64(seed: seed &* 31)
        var addresses: [UInt32] = (0..<2_000).map { _ in UInt32(truncatingIfNeeded: rng.next()) } + [0, .max, 65_535, 65_536]
        for r in ranges.prefix(500) { addresses += [r.start, r.end, r.start &- 1, r.end &+ 1, r.start & 0xFFFF_0000, r.end | 0xFFFF] }
        for a in addresses {
            let expected = ranges.first { $0.start <= a && a <= $0.end }.map { String($0.asn) }
            #expect(table.find(IPAddress(v4: a))?.number == expected, "\(dotted(a))")
        }
    }
}

