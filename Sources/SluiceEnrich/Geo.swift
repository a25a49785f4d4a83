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
        let targets = fields.map { FieldName($0.0) }, paths = fields.map { db.path($0.1) }
        let headerTarget = FieldName(headerTarget)
        var ipReader = PathReader(ip)
        var headerReader = header.map(PathReader.init)
        // The batch's addresses, then their lookups all at once (interleaved).
        let entries = try db.lookup(batch.records.indices.map { i in ipReader.ipAddress(in: batch.records[i].fields) })
        for i in batch.records.indices {
            let entry = entries[i]
            for j in paths.indices {
                batch.records[i].fields[targets[j]] = try entry.flatMap { try paths[j].value($0) }.map(Self.value) ?? .null
            }
            if headerReader != nil, let country = headerReader!.withValue(in: batch.records[i].fields, cloudflareCountry) {
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
        let addresses = batch.records.indices.map { i in ipReader.ipAddress(in: batch.records[i].fields) }
        // The table's rows of the batch, then their texts in one pass (`ASNTable.texts`).
        var texts: [ASNTable.Texts?] = []
        // A MaxMind database's entries all at once (interleaved, as geoip's).
        let entries = try db.map { try $0.lookup(addresses) } ?? []
        if let table, db == nil {
            var rows = [UInt32?](repeating: nil, count: addresses.count)
            for i in addresses.indices {
                if i + 8 < addresses.count, let a = addresses[i + 8] { table.prefetch(a, step: 0) }
                if i + 4 < addresses.count, let a = addresses[i + 4] { table.prefetch(a, step: 1) }
                if let a = addresses[i] { rows[i] = table.rowIndex(a) }
            }
            texts = table.texts(rows)
        }
        let numberField = FieldName(numberField), organisationField = FieldName(organisationField)
        let countryField = FieldName(countryField)
        for i in batch.records.indices {
            var number = Value.null, org = Value.null, country = Value.null
            if addresses[i] != nil {
                if db != nil, let numberPath, let organisationPath, let entry = entries[i] {
                    if let n = try numberPath.value(entry)?.int64Value { number = .string(String(n)) }
                    if let s = try organisationPath.value(entry)?.stringValue { org = .string(s) }
                } else if !texts.isEmpty, let row = texts[i] {
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

extension PathReader {
    /// The IP address at the path (geoip's and asn's `ip`), read where the text lies (not
    /// copied out of the record: a retain and a release on every record).
    @inline(__always)
    mutating func ipAddress(in fields: Fields) -> IPAddress? {
        withValue(in: fields) { v -> IPAddress? in
            guard case .string(let text)? = v else { return nil }
            return IPAddress(text)
        }
    }
}
