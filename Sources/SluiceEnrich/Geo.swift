import Foundation
import SluiceConfig
import SluiceCore
import SluiceMaxMind

/// Opened MaxMind databases, by path. A file replaced since it was opened (another
/// inode, size or modification time) is opened again, so a new database is picked up by
/// the next batch.
final class DatabaseCache: Sendable {
    static let shared = DatabaseCache()
    private let lock = Lock()
    // Guarded by `lock`.
    nonisolated(unsafe) private var open: [String: (stamp: [Int], db: MaxMindDatabase)] = [:]

    func database(_ path: String) throws -> MaxMindDatabase {
        var st = stat()
        guard stat(path, &st) == 0 else { throw MaxMindFileMissing(path: path) }
        let stamp = [Int(st.st_ino), Int(st.st_size), Int(st.st_mtim.tv_sec), Int(st.st_mtim.tv_nsec)]
        if let cached = lock.withLock({ open[path] }), cached.stamp == stamp { return cached.db }
        let db = try MaxMindDatabase(path: path)
        lock.withLock { open[path] = (stamp, db) }
        return db
    }
}

public struct MaxMindFileMissing: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var description: String { "\(path): no such database file" }
}

/// A Cloudflare `CF-IPCountry` value that names a country (`XX` unknown and `T1` Tor do not).
func cloudflareCountry(_ value: Value?) -> String? {
    guard case .string(let s)? = value, s.utf8.count == 2, s.utf8.allSatisfy({ $0 >= 0x41 && $0 <= 0x5A }), s != "XX", s != "T1" else { return nil }
    return s
}

/// `geoip`: fields from a MaxMind City or Country database for the record's IP. A valid
/// Cloudflare country header in the record wins over the database for the country.
public struct GeoIP: Transformer {
    /// Depends on the batch alone: may run on the read-ahead thread.
    public var isBatchLocal: Bool { true }

    public var database: String
    public var ip: FieldPath
    /// Target field → path in the database record (`geo: country.iso_code`).
    public var fields: [(String, [String])]
    public var header: FieldPath?
    public var headerTarget: String

    public func apply(_ batch: inout RecordBatch, context: RunContext) throws {
        let db = try DatabaseCache.shared.database(context.inputPath(database))
        // The database remembers each path's values by record (many addresses share one).
        let targets = fields.map(\.0), paths = fields.map { db.path($0.1) }
        var ipReader = PathReader(ip)
        var headerReader = header.map(PathReader.init)
        for i in batch.records.indices {
            var entry: MaxMindEntry?
            if case .string(let text)? = ipReader.value(in: batch.records[i].fields), let address = IPAddress(text) {
                entry = try db.lookup(address)
            }
            for j in paths.indices {
                batch.records[i].fields[targets[j]] = try entry.flatMap { try paths[j].value($0) }.map(Self.value) ?? .null
            }
            if headerReader != nil, let country = cloudflareCountry(headerReader!.value(in: batch.records[i].fields)) {
                batch.records[i].fields[headerTarget] = .string(country)
            }
        }
    }

    static func value(_ v: MMDBValue) -> Value {
        if let s = v.stringValue { return .string(s) }
        if let n = v.int64Value { return .int(n) }
        if let d = v.doubleValue { return .double(d) }
        if let b = v.boolValue { return .bool(b) }
        return .string(v.jsonString)
    }

    static func paths(_ o: inout Options, _ ctx: BuildContext, default defaults: [(String, [String])]) -> [(String, [String])] {
        guard let n = o.node("fields") else { return defaults }
        guard let entries = n.entries else {
            ctx.diagnostics.error(n.location, "`fields` must map target fields to database paths")
            return defaults
        }
        var out: [(String, [String])] = []
        for e in entries {
            guard let s = e.value.scalar, let p = FieldPath(s) else { ctx.diagnostics.error(e.value.location, "expected a database path like country.iso_code"); continue }
            out.append((e.key, p.components))
        }
        return out
    }

    static func checkDatabase(_ path: String?, _ o: Options, _ ctx: BuildContext, key: String = "database") {
        guard let path else { return }
        if !FileManager.default.fileExists(atPath: ctx.absolute(path)) {
            ctx.diagnostics.error(o.keyLocation(key), "database file `\(path)` does not exist")
        }
    }

    public static func register(into registry: inout StageRegistry) {
        registry.transformer("geoip") { o, ctx in
            let database = o.string("database", required: true)
            checkDatabase(database, o, ctx)
            let ip = o.path("ip") ?? FieldPath("ip")!
            let header = o.path("cloudflare_header")
            let fields = paths(&o, ctx, default: [("geo", ["country", "iso_code"])])
            let headerTarget = o.string("cloudflare_to") ?? fields.first?.0 ?? "geo"
            o.finish()
            guard let database else { return nil }
            return BuiltTransformer(transformer: GeoIP(database: database, ip: ip, fields: fields, header: header, headerTarget: headerTarget),
                                    effects: [.add(fields.map(\.0) + [headerTarget])])
        }
    }
}

/// `asn`: autonomous system number, organisation and (from the TSV format) country of
/// the record's IP, from a MaxMind ASN database (`database:`) or an IP-to-ASN TSV file
/// (`tsv:` lines of range start, range end, AS number, country, description; AS 0 means
/// not routed).
public struct ASN: Transformer {
    /// Depends on the batch alone: may run on the read-ahead thread.
    public var isBatchLocal: Bool { true }

    public var database: String?
    public var tsv: String?
    public var ip: FieldPath
    public var numberField: String
    public var organisationField: String
    public var countryField: String

    public func apply(_ batch: inout RecordBatch, context: RunContext) throws {
        let db = try database.map { try DatabaseCache.shared.database(context.inputPath($0)) }
        let numberPath = db?.path(["autonomous_system_number"]), organisationPath = db?.path(["autonomous_system_organization"])
        let table = try tsv.map { try ASNTable.cached(context.inputPath($0)) }
        var ipReader = PathReader(ip)
        // The batch's addresses first, then the table searched with the next ones' entries
        // asked of the CPU ahead (`ASNTable.prefetch`): each search is a few cache misses
        // at random places, which the loop then overlaps.
        let addresses = batch.records.indices.map { i -> IPAddress? in
            guard case .string(let text)? = ipReader.value(in: batch.records[i].fields) else { return nil }
            return IPAddress(text)
        }
        for i in batch.records.indices {
            if let table {
                if i + 8 < addresses.count, let a = addresses[i + 8] { table.prefetch(a, step: 0) }
                if i + 4 < addresses.count, let a = addresses[i + 4] { table.prefetch(a, step: 1) }
            }
            var number = Value.null, org = Value.null, country = Value.null
            if let address = addresses[i] {
                if let db, let numberPath, let organisationPath, let entry = try db.lookup(address) {
                    if let n = try numberPath.value(entry)?.int64Value { number = .string(String(n)) }
                    if let s = try organisationPath.value(entry)?.stringValue { org = .string(s) }
                } else if let table, let row = table.find(address) {
                    number = .string(row.number)
                    org = .string(row.organisation)
                    country = row.country.map(Value.string) ?? .null
                }
            }
            batch.records[i].fields[numberField] = number
            batch.records[i].fields[organisationField] = org
            batch.records[i].fields[countryField] = country
        }
    }

    public static func register(into registry: inout StageRegistry) {
        registry.transformer("asn") { o, ctx in
            let database = o.string("database")
            let tsv = o.string("tsv")
            GeoIP.checkDatabase(database, o, ctx)
            GeoIP.checkDatabase(tsv, o, ctx, key: "tsv")
            if (database == nil) == (tsv == nil) { ctx.diagnostics.error(o.location, "asn needs one of `database` (MaxMind ASN) or `tsv` (IP-to-ASN ranges)") }
            let ip = o.path("ip") ?? FieldPath("ip")!
            let number = o.string("number_to") ?? "as_number"
            let org = o.string("organisation_to") ?? "as_description"
            let country = o.string("country_to") ?? "as_country_code"
            o.finish()
            return BuiltTransformer(transformer: ASN(database: database, tsv: tsv, ip: ip, numberField: number, organisationField: org, countryField: country),
                                    effects: [.add([number, org, country])])
        }
    }
}

/// IP-to-ASN ranges from a TSV file, sorted for binary search (IPv4 and IPv6 apart).
/// A range's fields are kept as the text the stage writes (issue #7: not converted again
/// for each record), one copy of each description, and the starts apart from them, so
/// that the search reads 16 bytes an entry.
final class ASNTable: Sendable {
    /// The fields of a range: AS number (as text), description, country (nil for none).
    struct Row: Sendable { var number: String; var organisation: String; var country: String? }
    struct Key: Sendable, Comparable {
        var high: UInt64, low: UInt64
        static func < (a: Key, b: Key) -> Bool { a.high != b.high ? a.high < b.high : a.low < b.low }
    }
    /// One family's ranges, by start.
    struct Ranges: Sendable {
        var starts: [Key] = []
        var ends: [Key] = []
        var rows: [Row] = []
        /// For IPv4 (`indexed`): per /16 prefix `p`, the first range starting at or above
        /// `p << 16`, and the count at 65536. A search looks only between the first range
        /// of the key's /16 and the next /16's (finding none there at or below the key, it
        /// takes the range before, which may reach into the /16).
        var firstOfPrefix: [UInt32] = []

        mutating func append(_ start: Key, _ end: Key, _ row: Row) {
            starts.append(start)
            ends.append(end)
            rows.append(row)
        }

        /// By start, ranges with the same start in file order.
        /// Sorted by start; with `indexed`, the IPv4 /16 index too (keys of IPv4
        /// addresses: their 32 bits in `low`).
        func sorted(indexed: Bool) -> Ranges {
            let order = starts.indices.sorted { starts[$0] != starts[$1] ? starts[$0] < starts[$1] : $0 < $1 }
            var out = Ranges(starts: order.map { starts[$0] }, ends: order.map { ends[$0] }, rows: order.map { rows[$0] })
            if indexed {
                out.firstOfPrefix.reserveCapacity(65_537)
                var r = 0
                for prefix in 0...65_536 {
                    let first = Key(high: 0, low: UInt64(prefix) << 16)
                    while r < out.starts.count, out.starts[r] < first { r += 1 }
                    out.firstOfPrefix.append(UInt32(r))
                }
            }
            return out
        }

        func find(_ key: Key) -> Row? {
            var lo = 0, hi = starts.count
            if !firstOfPrefix.isEmpty, key.high == 0, key.low <= UInt64(UInt32.max) {
                let prefix = Int(key.low >> 16)
                lo = Int(firstOfPrefix[prefix])
                hi = Int(firstOfPrefix[prefix + 1])
            }
            return starts.withUnsafeBufferPointer { starts in
                // The first range above the key in [lo, hi); the one before it is the last
                // starting at or below the key.
                while lo < hi {
                    let mid = (lo + hi) / 2
                    if starts[mid] <= key { lo = mid + 1 } else { hi = mid }
                }
                guard lo > 0, key <= ends[lo - 1] else { return nil }
                return rows[lo - 1]
            }
        }
    }
    let v4: Ranges
    let v6: Ranges

    private static let lock = Lock()
    // Guarded by `lock`.
    nonisolated(unsafe) private static var tables: [String: (stamp: [Int], table: ASNTable)] = [:]

    static func cached(_ path: String) throws -> ASNTable {
        var st = stat()
        guard stat(path, &st) == 0 else { throw MaxMindFileMissing(path: path) }
        let stamp = [Int(st.st_ino), Int(st.st_size), Int(st.st_mtim.tv_sec)]
        if let c = lock.withLock({ tables[path] }), c.stamp == stamp { return c.table }
        let t = try ASNTable(path: path)
        lock.withLock { tables[path] = (stamp, t) }
        return t
    }

    /// Reads the TSV (iptoasn.com's `ip2asn-*.tsv`: range start, range end, AS number,
    /// country, description; a description may hold tabs). Blank lines are skipped, a
    /// line may end in CRLF, and a first line that is not a range is a header; any other
    /// such line is an error with its line number. Ranges of AS 0 (not routed) are left out.
    ///
    /// Over the file's bytes, not `String`'s characters: splitting the text into lines and
    /// columns by `Character` (grapheme breaking) took 5 µs a line, 110 ms for the
    /// benchmark's 22,000 ranges on every run, half of a small run's time; the real file's
    /// ~500,000 lines took seconds.
    init(path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else { throw MaxMindFileMissing(path: path) }
        var v4 = Ranges(), v6 = Ranges()
        // One copy of each description: an AS has many ranges.
        var names: [String: String] = [:]
        try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) throws in
            let bytes = raw.bindMemory(to: UInt8.self)
            var line = 0, at = 0, first = true
            while at < bytes.count {
                line += 1
                let next = Self.index(of: 0x0A, in: bytes, from: at)
                var stop = next
                if stop > at, bytes[stop - 1] == 0x0D { stop -= 1 }
                defer { at = next + 1 }
                guard stop > at else { continue }
                defer { first = false }
                let fields = Self.fields(bytes, at..<stop)
                guard let f = fields, let a = IPAddress(utf8: f.start), let b = IPAddress(utf8: f.end),
                      let asn = Int64(String(decoding: f.number, as: UTF8.self)),
                      let country = String(validating: f.country, as: UTF8.self),
                      var name = String(validating: f.description, as: UTF8.self) else {
                    if first { continue }  // a header line
                    throw ASNFileError(path: path, line: line)
                }
                guard asn != 0 else { continue }  // not routed
                if let known = names[name] { name = known } else { names[name] = name }
                let row = Row(number: String(asn), organisation: name, country: country.isEmpty || country == "None" ? nil : country)
                let (start, end) = (Key(high: a.high, low: a.low), Key(high: b.high, low: b.low))
                if a.v4 != nil { v4.append(start, end, row) } else { v6.append(start, end, row) }
            }
        }
        self.v4 = v4.sorted(indexed: true)
        self.v6 = v6.sorted(indexed: false)
    }

    /// The first index at or after `from` that holds `byte`, or the end.
    private static func index(of byte: UInt8, in bytes: UnsafeBufferPointer<UInt8>, from: Int) -> Int {
        guard from < bytes.count, let base = bytes.baseAddress,
              let found = memchr(base + from, Int32(byte), bytes.count - from) else { return bytes.count }
        return base.distance(to: found.assumingMemoryBound(to: UInt8.self))
    }

    /// A line's five columns (the fifth runs to the end of the line, tabs and all); nil
    /// when it has fewer.
    private static func fields(_ bytes: UnsafeBufferPointer<UInt8>, _ line: Range<Int>)
        -> (start: UnsafeBufferPointer<UInt8>, end: UnsafeBufferPointer<UInt8>, number: UnsafeBufferPointer<UInt8>,
            country: UnsafeBufferPointer<UInt8>, description: UnsafeBufferPointer<UInt8>)? {
        let upTo = UnsafeBufferPointer(rebasing: bytes[..<line.upperBound])
        var from = line.lowerBound
        func column() -> UnsafeBufferPointer<UInt8>? {
            let tab = index(of: 0x09, in: upTo, from: from)
            guard tab < line.upperBound else { return nil }
            defer { from = tab + 1 }
            return UnsafeBufferPointer(rebasing: bytes[from..<tab])
        }
        guard let a = column(), let b = column(), let c = column(), let d = column() else { return nil }
        return (a, b, c, d, UnsafeBufferPointer(rebasing: bytes[from..<line.upperBound]))
    }

    func find(_ ip: IPAddress) -> Row? {
        let key = Key(high: ip.high, low: ip.low)
        return ip.v4 != nil ? v4.find(key) : v6.find(key)
    }

    /// Asks the CPU for what `find(ip)` reads first (an IPv4 address's /16 index entry:
    /// step 0) or next (its ranges' first entries, from that index entry: step 1).
    @inline(__always) func prefetch(_ ip: IPAddress, step: Int) {
        guard let bits = ip.v4 else { return }
        let prefix = Int(bits >> 16)
        v4.firstOfPrefix.withUnsafeBufferPointer { index in
            guard prefix + 1 < index.count, let base = index.baseAddress else { return }
            if step == 0 { prefetchHint(base + prefix); return }
            let first = Int(index[prefix])
            guard first < v4.starts.count else { return }
            v4.starts.withUnsafeBufferPointer { prefetchHint($0.baseAddress! + first) }
            v4.ends.withUnsafeBufferPointer { prefetchHint($0.baseAddress! + first) }
            v4.rows.withUnsafeBufferPointer { prefetchHint($0.baseAddress! + first) }
        }
    }
}

public struct ASNFileError: Error, Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var line: Int
    public var description: String { "\(path):\(line): not a line of range start, range end, AS number, country, description" }
}
