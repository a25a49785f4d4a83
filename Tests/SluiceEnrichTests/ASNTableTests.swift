import Foundation
@testable import SluiceEnrich
import SluiceMaxMind
import SluiceTestSupport
import Testing

/// `ASNTable` finds an IPv4 address's range through a /16 index, then a binary search
/// between two of its entries. Checked against the plain answer (the one range that holds
/// the address, found by bisecting the generated list) on tables of disjoint ranges:
/// ranges within one /16, many in one /16, ones spanning several /16s, gaps, and addresses
/// at every edge.
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

    /// The range that holds `a`, by bisection over the generated ranges (disjoint, made in
    /// ascending order): the plain answer, without a scan of 70,000 ranges per address.
    static func holding(_ a: UInt32, _ ranges: [Range]) -> Range? {
        var lo = 0, hi = ranges.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if ranges[mid].end < a { lo = mid + 1 } else { hi = mid }
        }
        return lo < ranges.count && ranges[lo].start <= a ? ranges[lo] : nil
    }

    @Test(arguments: [(1, 50, UInt32(1 << 24)), (2, 3_000, UInt32(1 << 16)), (3, 3_000, UInt32(300)), (4, 20_000, UInt32(40_000)), (5, 1, UInt32(1 << 20)), (6, 70_000, UInt32(4_000))])
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
        // The first ranges, and the last (a table of 70,000 lines is read in three MiB).
        for r in ranges.prefix(500) + ranges.suffix(500) { addresses += [r.start, r.end, r.start &- 1, r.end &+ 1, r.start & 0xFFFF_0000, r.end | 0xFFFF] }
        for a in addresses {
            let expected = Self.holding(a, ranges).map { String($0.asn) }
            #expect(table.find(IPAddress(v4: a))?.number == expected, "\(dotted(a))")
        }
    }

    /// One TSV case: the file's bytes, and what addresses find (number, description,
    /// country), worked out by hand from the text.
    struct LoadCase: Sendable, CustomStringConvertible {
        var description: String
        var tsv: [UInt8]
        var finds: [(String, (String, String, String?)?)]
    }

    static let loadCases: [LoadCase] = [
        LoadCase(description: "header, LF, every kind of row", tsv: Array("""
            range_start\trange_end\tAS_number\tcountry_code\tAS_description
            1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET
            1.0.1.0\t1.0.3.255\t0\tNone\tNot routed
            5.0.0.0\t5.0.255.255\t0042\tNone\tKar-Tel LLC, "Beeline"\tKazakhstan
            2001:db8::\t2001:db8::ffff\t64500\t\tDOC-NET
            10.0.0.0\t10.0.0.9\t7\tTR\tTürk Telekom
            7.0.0.0\t7.0.0.255\t701\tUS\tFIRST
            7.0.0.0\t7.0.0.9\t702\tUS\tSECOND

            """.utf8), finds: [
                // Two ranges with one start: sorted in file order, the later one is found.
                ("7.0.0.5", ("702", "SECOND", "US")),
                ("1.0.0.7", ("13335", "CLOUDFLARENET", "US")), ("1.0.2.1", nil), ("5.0.200.1", ("42", "Kar-Tel LLC, \"Beeline\"\tKazakhstan", nil)),
                ("2001:db8::10", ("64500", "DOC-NET", nil)), ("2001:db8::1:0", nil), ("10.0.0.9", ("7", "Türk Telekom", "TR")), ("10.0.0.10", nil),
            ]),
        LoadCase(description: "CRLF, blank lines, no header, no last newline", tsv: Array(
            "\r\n\n1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET\r\n\r\n2.0.0.0\t2.0.0.0\t3215\tFR\tOrange S.A.".utf8), finds: [
                ("1.0.0.255", ("13335", "CLOUDFLARENET", "US")), ("2.0.0.0", ("3215", "Orange S.A.", "FR")), ("2.0.0.1", nil),
            ]),
        LoadCase(description: "empty", tsv: [], finds: [("1.0.0.0", nil)]),
    ]

    /// The loader over bytes (blank lines, CRLF, a header, AS 0 left out, "None" and empty
    /// countries, descriptions with tabs and quotes, IPv6, UTF-8, a number with a leading zero).
    @Test(arguments: loadCases)
    func loadsTheRanges(_ c: LoadCase) throws {
        let dir = try TestSupport.scratchDirectory("asn")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        FileManager.default.createFile(atPath: dir + "/asn.tsv", contents: Data(c.tsv))
        let table = try ASNTable(path: dir + "/asn.tsv")
        for (ip, expected) in c.finds {
            let row = table.find(IPAddress(ip)!)
            #expect(row?.number == expected?.0, "\(ip)")
            #expect(row?.organisation == expected?.1, "\(ip)")
            #expect(row?.country == expected?.2, "\(ip)")
        }
    }

    /// A line that is not a range is an error with its line number in the file (blank
    /// lines counted), unless it is the first line that is not blank (a header).
    @Test(arguments: [
        ("header\n1.0.0.0\t1.0.0.255\t1\tUS\tA\nnot a range\n", 3),
        ("\n\nheader\n\n1.0.0.0\t1.0.0.255\tone\tUS\tA\n", 5),
        ("1.0.0.0\t1.0.0.255\t1\tUS\tA\r\n1.0.0.0\t1.0.0.255\t1\tUS\r\n", 2),
        ("h\n1.0.0.0\t1.0.0.x\t1\tUS\tA\n", 2),
        // AS numbers are 32 bits.
        ("h\n1.0.0.0\t1.0.0.255\t-5\tUS\tA\n", 2),
        ("h\n1.0.0.0\t1.0.0.255\t1\tUS\tA\n2.0.0.0\t2.0.0.255\t4294967296\tUS\tB\n", 3),
    ])
    func reportsTheLineOfABadRange(tsv: String, line: Int) throws {
        let dir = try TestSupport.scratchDirectory("asn")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try tsv.write(toFile: dir + "/asn.tsv", atomically: true, encoding: .utf8)
        #expect(throws: ASNFileError(path: dir + "/asn.tsv", line: line)) { try ASNTable(path: dir + "/asn.tsv") }
    }

    /// A line longer than the reader's buffer (a MiB) grows it; the lines around it, and
    /// a range whose start and end are of two families (an error of its line), are read
    /// as they are.
    @Test func readsALineLongerThanItsBuffer() throws {
        let dir = try TestSupport.scratchDirectory("asn")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let long = String(repeating: "ABCDEFGH", count: 300_000)
        var tsv = "1.0.0.0\t1.0.0.255\t1\tUS\tA\n2.0.0.0\t2.0.0.255\t2\tTR\t\(long)\n3.0.0.0\t3.0.0.255\t3\tDE\tC\n"
        try tsv.write(toFile: dir + "/asn.tsv", atomically: true, encoding: .utf8)
        let table = try ASNTable(path: dir + "/asn.tsv")
        #expect(table.find(IPAddress("1.0.0.9")!)?.organisation == "A")
        #expect(table.find(IPAddress("2.0.0.9")!)?.organisation == long)
        #expect(table.find(IPAddress("3.0.0.9")!)?.country == "DE")
        tsv += "4.0.0.0\t2001:db8::1\t4\tUS\tD\n"
        try tsv.write(toFile: dir + "/asn.tsv", atomically: true, encoding: .utf8)
        #expect(throws: ASNFileError(path: dir + "/asn.tsv", line: 4)) { try ASNTable(path: dir + "/asn.tsv") }
    }

    /// A gzip file (as iptoasn.com serves them) is read decompressed, by the project's
    /// line reader: compressed with the real `gzip`.
    @Test func readsAGzipFile() throws {
        let dir = try TestSupport.scratchDirectory("asn")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "h\n1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET\r\n2a02:6b8::\t2a02:6b8::ffff\t13238\tRU\tYANDEX LLC\n"
            .write(toFile: dir + "/asn.tsv", atomically: true, encoding: .utf8)
        _ = try TestSupport.run("/bin/gzip", ["-n", dir + "/asn.tsv"])
        let table = try ASNTable(path: dir + "/asn.tsv.gz")
        #expect(table.find(IPAddress("1.0.0.7")!)?.organisation == "CLOUDFLARENET")
        #expect(table.find(IPAddress("2a02:6b8::2")!)?.number == "13238")
    }

    /// Invalid UTF-8 in a description is an error of its line, not a text with
    /// replacement characters.
    @Test func invalidUTF8IsAnErrorOfItsLine() throws {
        let dir = try TestSupport.scratchDirectory("asn")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tsv = Array("1.0.0.0\t1.0.0.255\t1\tUS\tA\n2.0.0.0\t2.0.0.255\t2\tUS\t".utf8) + [0xC3, 0x28, 0x0A]
        FileManager.default.createFile(atPath: dir + "/asn.tsv", contents: Data(tsv))
        #expect(throws: ASNFileError(path: dir + "/asn.tsv", line: 2)) { try ASNTable(path: dir + "/asn.tsv") }
    }
}
