#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import SluiceCore
import SluiceFiles
import SluiceMaxMind

/// IP-to-ASN ranges from a TSV file, sorted for binary search (IPv4 and IPv6 apart).
///
/// Compact, because the real table (iptoasn.com's, ~500,000 ranges) stays resident for the
/// whole run: an IPv4 range is 12 bytes (its start and end as the addresses' 32 bits, and
/// the index of its row), an IPv6 one 36; each distinct row is 12 bytes (`Row`), its
/// description's bytes in one buffer. The texts the stage writes: the description made
/// into a string once, when an address first finds it; the countries kept once each; the
/// AS number's per record (a small string: no allocation). With a `Key` of 16 bytes a bound and
/// three strings in each range (88 bytes a range), a 500,000-line table held ~44 MB, and
/// its load peaked ~110 MB above a run without it (docs/benchmarks.md).
final class ASNTable: @unchecked Sendable {
    // `@unchecked`: the one mutable property, `made`, is only touched under `lock`.

    /// A distinct row of the table: its AS number, its description (an index into
    /// `names`), its country (an index into `countries`; 0: none). 12 bytes.
    struct Row: Sendable { var number: UInt32; var name: UInt32; var country: UInt16 }
    /// A row's fields as the stage writes them.
    struct Texts: Sendable { var number: String; var organisation: String; var country: String? }
    /// An IPv6 address's 128 bits, in order.
    struct Key: Sendable, Comparable {
        var high: UInt64, low: UInt64
        static func < (a: Key, b: Key) -> Bool { a.high != b.high ? a.high < b.high : a.low < b.low }
    }

    /// One family's ranges, by start (ranges with the same start in file order).
    struct Ranges<Bound: Comparable & Sendable>: Sendable {
        var starts: [Bound] = []
        var ends: [Bound] = []
        /// Each range's row, an index into `ASNTable.rows`.
        var rowOf: [UInt32] = []

        /// Sorted by start (the sort is over indices, so that equal starts keep file order).
        init(_ ranges: [(start: Bound, end: Bound, row: UInt32)]) {
            let order = ranges.indices.sorted { ranges[$0].start != ranges[$1].start ? ranges[$0].start < ranges[$1].start : $0 < $1 }
            starts = order.map { ranges[$0].start }
            ends = order.map { ranges[$0].end }
            rowOf = order.map { ranges[$0].row }
        }

        /// The row index of the range that holds `key`, searching `lo..<hi` for the first
        /// start above it (the range before that one is the last starting at or below it).
        func find(_ key: Bound, lo: Int, hi: Int) -> UInt32? {
            var lo = lo, hi = hi
            return starts.withUnsafeBufferPointer { starts in
                while lo < hi {
                    let mid = (lo + hi) / 2
                    if starts[mid] <= key { lo = mid + 1 } else { hi = mid }
                }
                guard lo > 0, key <= ends[lo - 1] else { return nil }
                return rowOf[lo - 1]
            }
        }
    }

    let rows: [Row]
    /// The distinct descriptions' UTF-8 bytes, one after another; description `i` ends at
    /// `nameEnds[i]` and starts where `i - 1` ends. A `String` each (64 bytes for a
    /// description of 17 to 31) was most of a 500,000-line table's memory.
    let names: [UInt8]
    let nameEnds: [UInt32]
    /// The distinct countries; 0 is none.
    let countries: [String?]
    /// The descriptions made into strings so far, by index (guarded by `lock`): only those
    /// of rows that addresses found.
    private var made: [UInt32: String] = [:]
    private let lock = Lock()
    let v4: Ranges<UInt32>
    let v6: Ranges<Key>
    /// Per /16 prefix `p` of IPv4, the first range starting at or above `p << 16`, and the
    /// count at 65536. A search looks only between the first range of the key's /16 and
    /// the next /16's (finding none there at or below the key, it takes the range before,
    /// which may reach into the /16).
    let firstOfPrefix: [UInt32]

    private static let tablesLock = Lock()
    // Guarded by `tablesLock`.
    nonisolated(unsafe) private static var tables: [String: (stamp: [Int], table: ASNTable)] = [:]

    static func cached(_ path: String) throws -> ASNTable {
        var st = stat()
        guard stat(path, &st) == 0 else { throw MaxMindFileMissing(path: path) }
        let stamp = [Int(st.st_ino), Int(st.st_size), Int(st.st_mtim.tv_sec)]
        if let c = tablesLock.withLock({ tables[path] }), c.stamp == stamp { return c.table }
        let t = try ASNTable(path: path)
        tablesLock.withLock { tables[path] = (stamp, t) }
        return t
    }

    /// Reads the TSV (iptoasn.com's `ip2asn-*.tsv`: range start, range end, AS number,
    /// country, description; a description may hold tabs). Blank lines are skipped, a
    /// line may end in CRLF, and a first line that is not a range is a header; any other
    /// such line is an error with its line number. Ranges of AS 0 (not routed) are left out.
    ///
    /// Over the file's bytes, a MiB at a time, not `String`'s characters: splitting the
    /// text into lines and columns by `Character` (grapheme breaking) took 5 µs a line,
    /// 110 ms for the benchmark's 22,000 ranges on every run (half of a small run's time),
    /// and 1.8 s for a 500,000-line table (docs/benchmarks.md).
    init(path: String) throws {
        var rows: [Row] = []
        // Rows by 128 bits of their columns' bytes (`key`): a row seen before costs no
        // string and no hash of strings (a dictionary of `Row`s, hashed again at each of
        // its resizes, was most of the load's time). Descriptions and countries the same.
        var rowIndex: [TextHash: UInt32] = [:]
        var nameIndex: [TextHash: UInt32] = [:]
        var countryIndex: [String: UInt16] = [:]
        var names: [UInt8] = [], nameEnds: [UInt32] = [], countries: [String?] = [nil]
        var v4: [(start: UInt32, end: UInt32, row: UInt32)] = []
        var v6: [(start: Key, end: Key, row: UInt32)] = []
        var first = true
        try Self.forEachLine(path: path) { line, number in
            // A line that is not a range: the header if it is the first line, else an error.
            func notARange() throws {
                guard first else { throw ASNFileError(path: path, line: number) }
                first = false
            }
            guard let f = Self.fields(line), let a = IPAddress(utf8: f.start), let b = IPAddress(utf8: f.end), a.family == b.family,
                  let asn = UInt32(String(decoding: f.number, as: UTF8.self)) else { return try notARange() }
            guard asn != 0 else { first = false; return }  // not routed
            let key = Self.key(f.number, f.country, f.description)
            let index: UInt32
            if let known = rowIndex[key] { index = known } else {
                guard let country = String(validating: f.country, as: UTF8.self),
                      String(validating: f.description, as: UTF8.self) != nil else { return try notARange() }
                let nameKey = Self.key(f.description)
                let name: UInt32
                if let known = nameIndex[nameKey] { name = known } else {
                    name = UInt32(nameEnds.count)
                    names.append(contentsOf: f.description)
                    nameEnds.append(UInt32(names.count))
                    nameIndex[nameKey] = name
                }
                var place: UInt16 = 0
                if !country.isEmpty, country != "None" {
                    if let known = countryIndex[country] { place = known } else {
                        guard countries.count <= Int(UInt16.max) else { return try notARange() }
                        place = UInt16(countries.count)
                        countries.append(country)
                        countryIndex[country] = place
                    }
                }
                index = UInt32(rows.count)
                rows.append(Row(number: asn, name: name, country: place))
                rowIndex[key] = index
            }
            first = false
            if let a4 = a.v4, let b4 = b.v4 { v4.append((a4, b4, index)) } else { v6.append((Key(high: a.high, low: a.low), Key(high: b.high, low: b.low), index)) }
        }
        self.names = names
        self.nameEnds = nameEnds
        self.countries = countries
        self.rows = rows
        self.v4 = Ranges(v4)
        self.v6 = Ranges(v6)
        var index: [UInt32] = []
        index.reserveCapacity(65_537)
        var r = 0
        for prefix in 0...65_536 {
            while r < self.v4.starts.count, UInt64(self.v4.starts[r]) < UInt64(prefix) << 16 { r += 1 }
            index.append(UInt32(r))
        }
        firstOfPrefix = index
    }

    /// 128 bits of columns (a row's AS number, country and description, or a description)
    /// as they are in the file, each with its length.
    static func key(_ columns: UnsafeBufferPointer<UInt8>...) -> TextHash {
        TextHash { hasher in
            for column in columns {
                hasher.combine(column.count)
                hasher.combine(bytes: UnsafeRawBufferPointer(column))
            }
        }
    }

    /// Each line that is not blank, without its end (LF or CRLF), with its number in the
    /// file (`LineReader`, a MiB at a time; a gzip file is read decompressed). A line past
    /// 16 MiB is an error of its line.
    private static func forEachLine(path: String, _ body: (UnsafeBufferPointer<UInt8>, Int) throws -> Void) throws {
        let source: any ByteSource
        do { source = try openByteSource(path: path, display: path) } catch {
            if error.kind == .cannotOpen { throw MaxMindFileMissing(path: path) }
            throw ASNFileError(path: path, line: 0, problem: error.detail)
        }
        defer { source.close() }
        let reader = LineReader(source: source, maxLineBytes: 1 << 24)
        var failure: (any Error)?
        var more = true
        while more, failure == nil {
            do {
                more = try reader.read(maxEvents: 1024) { event in
                    guard failure == nil else { return }
                    switch event {
                    case .line(let bytes, let line, _):
                        guard !bytes.isEmpty else { return }
                        do { try body(bytes.bindMemory(to: UInt8.self), line) } catch { failure = error }
                    case .tooLong(let line, _, _):
                        failure = ASNFileError(path: path, line: line)
                    }
                }
            } catch {
                throw ASNFileError(path: path, line: 0, problem: error.detail)
            }
        }
        if let failure { throw failure }
    }

    /// The first index at or after `from` that holds `byte`, or the end.
    private static func index(of byte: UInt8, in bytes: UnsafeBufferPointer<UInt8>, from: Int) -> Int {
        guard from < bytes.count, let base = bytes.baseAddress,
              let found = memchr(base + from, Int32(byte), bytes.count - from) else { return bytes.count }
        return base.distance(to: found.assumingMemoryBound(to: UInt8.self))
    }

    /// A line's five columns (the fifth runs to the end of the line, tabs and all); nil
    /// when it has fewer.
    private static func fields(_ line: UnsafeBufferPointer<UInt8>)
        -> (start: UnsafeBufferPointer<UInt8>, end: UnsafeBufferPointer<UInt8>, number: UnsafeBufferPointer<UInt8>,
            country: UnsafeBufferPointer<UInt8>, description: UnsafeBufferPointer<UInt8>)? {
        var from = 0
        func column() -> UnsafeBufferPointer<UInt8>? {
            let tab = index(of: 0x09, in: line, from: from)
            guard tab < line.count else { return nil }
            defer { from = tab + 1 }
            return UnsafeBufferPointer(rebasing: line[from..<tab])
        }
        guard let a = column(), let b = column(), let c = column(), let d = column() else { return nil }
        return (a, b, c, d, UnsafeBufferPointer(rebasing: line[from...]))
    }

    /// The index of the row of the range that holds `ip`, if any.
    func rowIndex(_ ip: IPAddress) -> UInt32? {
        if let bits = ip.v4 {
            let prefix = Int(bits >> 16)
            return v4.find(bits, lo: Int(firstOfPrefix[prefix]), hi: Int(firstOfPrefix[prefix + 1]))
        }
        return v6.find(Key(high: ip.high, low: ip.low), lo: 0, hi: v6.starts.count)
    }

    /// The texts of rows (by index), for a batch at a time: the table's lock is taken once.
    /// A description is made into a string the first time a row of it is asked for, and
    /// kept for the table's life (the stage's values share it).
    func texts(_ indices: [UInt32?]) -> [Texts?] {
        lock.withLock {
            rows.withUnsafeBufferPointer { rows in
                indices.indices.map { k in
                    // The row 8 ahead asked of the CPU: a row is at a random place of a table
                    // of up to a few MB, and its load was nearly all of this loop's samples.
                    if k + 8 < indices.count, let ahead = indices[k + 8] { prefetchHint(rows.baseAddress! + Int(ahead)) }
                    guard let index = indices[k] else { return nil }
                    let row = rows[Int(index)]
                    let organisation: String
                    if let known = made[row.name] { organisation = known } else {
                        let start = row.name == 0 ? 0 : Int(nameEnds[Int(row.name) - 1])
                        organisation = names.withUnsafeBufferPointer { String(decoding: $0[start..<Int(nameEnds[Int(row.name)])], as: UTF8.self) }
                        made[row.name] = organisation
                    }
                    return Texts(number: String(row.number), organisation: organisation, country: countries[Int(row.country)])
                }
            }
        }
    }

    /// The texts of the row of the range that holds `ip`, if any (one address: tests; the
    /// stage asks `rowIndex` and `texts` a batch at a time).
    func find(_ ip: IPAddress) -> Texts? { texts([rowIndex(ip)])[0] }

    /// Asks the CPU for what `find(ip)` reads first (an IPv4 address's /16 index entry:
    /// step 0) or next (its ranges' first entries, from that index entry: step 1).
    @inline(__always) func prefetch(_ ip: IPAddress, step: Int) {
        guard let bits = ip.v4 else { return }
        let prefix = Int(bits >> 16)
        firstOfPrefix.withUnsafeBufferPointer { index in
            guard let base = index.baseAddress else { return }
            if step == 0 { prefetchHint(base + prefix); return }
            let first = Int(index[prefix])
            guard first < v4.starts.count else { return }
            v4.starts.withUnsafeBufferPointer { prefetchHint($0.baseAddress! + first) }
            v4.ends.withUnsafeBufferPointer { prefetchHint($0.baseAddress! + first) }
            v4.rowOf.withUnsafeBufferPointer { prefetchHint($0.baseAddress! + first) }
        }
    }
}

public struct ASNFileError: Error, Sendable, Equatable, CustomStringConvertible {
    public var path: String
    /// 0: the file as a whole.
    public var line: Int
    public var problem: String
    public init(path: String, line: Int, problem: String = "not a line of range start, range end, AS number, country, description") {
        self.path = path
        self.line = line
        self.problem = problem
    }
    public var description: String { line > 0 ? "\(path):\(line): \(problem)" : "\(path): \(problem)" }
}
