import Foundation
import SluiceCore
import SluiceFiles
import SluiceI18n
import SluiceMaxMind

// Micro-benchmarks of sluice's hot parts (release build):
//   swift run -c release sluice-bench [path/to/shared/data]
// Prints operations per second; inputs are generated deterministically or read from the
// shared third-party data. Figures are kept in docs/benchmarks.md.

let shared = CommandLine.arguments.dropFirst().first ?? "../shared/data"
var state: UInt64 = 12345
@MainActor func nextRandom() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

func measure(_ name: String, units: String, count: Int, bytes: Int? = nil, _ body: () throws -> Void) rethrows {
    let clock = ContinuousClock()
    let start = clock.now
    try body()
    let d = clock.now - start
    let seconds = Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    var line = "\(name): \(String(format: "%.2f", Double(count) / seconds / 1e6)) M \(units)/s"
    if let bytes { line += ", \(String(format: "%.0f", Double(bytes) / seconds / 1e6)) MB/s" }
    print(line + " (\(count) in \(String(format: "%.2f", seconds)) s)")
}

// JSON parsing: API-log-shaped lines.
let sample = Array(#"{"timestamp":"2026-11-18T00:03:12.123456Z","request_id":"6f1c9b1e-7a51-4c43-9d1b-1c1f3ad0a001","method":"POST","host":"api.example.com","path":"/graphql","query":"utm_source=google","action":"signup","ip":"81.2.69.142","headers":{"user-agent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36","referer":"https://example.com/landing","cf-ipcountry":"GB","x-fingerprint":"fp_0123456789ab"},"body":{"email":"a@gmul.com","country":"TR","currency":"TRY","phone":"+905551234567","affiliate_data":{"aff_id":"123","promo_id":"P1","click_id":"c-9"},"extra":{"locale":"tr","marketing_opt_in":true}},"response":{"http_status":422,"status":"error","error":{"message":"E-posta zaten kullanılıyor","locale":"tr"}},"duration_ns":123456789}"#.utf8)
let jsonCount = 200_000
try measure("JSON parse (API log lines)", units: "lines", count: jsonCount, bytes: jsonCount * sample.count) {
    var fields = 0
    for _ in 0..<jsonCount {
        if case .object(let f) = try JSONParser.parse(sample) { fields += f.count }
    }
    precondition(fields > 0)
}
let names = JSONStringCache()
try measure("JSON parse (API log lines), names cached", units: "lines", count: jsonCount, bytes: jsonCount * sample.count) {
    var fields = 0
    try sample.withUnsafeBytes { bytes in
        for _ in 0..<jsonCount {
            if case .object(let f) = try JSONParser.parse(bytes, strings: names) { fields += f.count }
        }
    }
    precondition(fields > 0)
}

// Field access: the signup pipeline's paths (the select stage's, rate_limit's, error_code's).
let parsed = try JSONParser.parse(sample)
guard case .object(let record) = parsed else { fatalError("sample is not an object") }
let paths = ["timestamp", "headers.user-agent", "ip", "host", "path", "query", "action", "headers.x-fingerprint", "headers.referer",
             "body.email", "body.country", "body.currency", "body.phone", "response.status", "body.affiliate_data", "body.extra",
             "response", "duration_ns", "request_id", "response.error.message"].map { FieldPath($0)! }
let accessCount = 1_000_000
measure("field access (20 paths per record)", units: "records", count: accessCount) {
    var found = 0
    for _ in 0..<accessCount {
        for path in paths where record.value(at: path) != nil { found += 1 }
    }
    precondition(found > 0)
}
// The same through PathReaders, as the stages read a batch (records of one shape).
measure("field access, PathReader (20 paths per record)", units: "records", count: accessCount) {
    var found = 0
    var readers = paths.map(PathReader.init)
    for _ in 0..<accessCount {
        for k in readers.indices where readers[k].value(in: record) != nil { found += 1 }
    }
    precondition(found > 0)
}

// CSV writing.
let row: [Value] = [.string("2026-11-18T00:03:12.123456Z"), .string("Mozilla/5.0 (Windows NT 10.0; Win64; x64)"), .string("81.2.69.142"),
                    .null, .string("signup"), .string(#"{"locale":"tr","note":"comma, inside"}"#), .int(123456789), .bool(true)]
var out: [UInt8] = []
out.reserveCapacity(1 << 26)
// As the worker writes: each row into one `RowBytes`, then appended to the batch's bytes.
var rowBytes = RowBytes()
measure("CSV write", units: "rows", count: 500_000) {
    let encoder = CSVRowEncoder(format: CSVFormat())
    for _ in 0..<500_000 {
        rowBytes.removeAll()
        for c in row.indices { encoder.append(row[c], column: c, to: &rowBytes) }
        encoder.endRow(&rowBytes)
        out.append(rowBytes)
    }
}
print("  (\(out.count / 1_000_000) MB written)")

// MaxMind lookups on the full GeoLite2 City database. Random IPv4 addresses: the worst
// case for the caches, every lookup ends in another part of the file. Addresses from
// 20,000 networks of the database with data (found by random lookups, as
// bench/generate.py finds the benchmark's), a random address in a random one each time:
// many addresses share records, as in a log.
let cityPath = shared + "/geolite2-city-2019/GeoLite2-City.mmdb"
if FileManager.default.fileExists(atPath: cityPath) {
    try measure("MMDB open (GeoLite2 City: metadata, prefix tables)", units: "opens", count: 5) {
        for _ in 0..<5 { _ = try MaxMindDatabase(path: cityPath) }
    }
    let db = try MaxMindDatabase(path: cityPath)
    let ips = (0..<1_000_000).map { _ in IPAddress(v4: UInt32(truncatingIfNeeded: nextRandom())) }
    var networks: [(UInt32, Int)] = []
    for ip in ips where networks.count < 20_000 {
        if let e = try db.lookup(ip), e.prefixLength > 0 {
            let bits = UInt32(truncatingIfNeeded: ip.low)
            networks.append((e.prefixLength >= 32 ? bits : bits & ~(UInt32.max >> UInt32(e.prefixLength)), e.prefixLength))
        }
    }
    let logIPs = (0..<1_000_000).map { _ -> IPAddress in
        let (base, prefix) = networks[Int(nextRandom() % UInt64(networks.count))]
        let host = prefix >= 32 ? 0 : UInt32(truncatingIfNeeded: nextRandom()) & (UInt32.max >> UInt32(prefix))
        return IPAddress(v4: base | host)
    }
    var hits = 0
    try measure("MMDB lookup (GeoLite2 City, random IPv4)", units: "lookups", count: ips.count) {
        for ip in ips where try db.lookup(ip) != nil { hits += 1 }
    }
    try measure("MMDB lookup + country.iso_code", units: "lookups", count: ips.count) {
        for ip in ips { if let e = try db.lookup(ip), try db.value(e, at: ["country", "iso_code"]) != nil { hits += 1 } }
    }
    print("  (\(db.cachedBytes >> 20) MiB of the file held, \(db.pageReads) blocks read)")
    let country = db.path(["country", "iso_code"])
    try measure("MMDB lookup + country.iso_code, value cache", units: "lookups", count: ips.count) {
        for ip in ips { if let e = try db.lookup(ip), try country.value(e) != nil { hits += 1 } }
    }
    var reads = db.pageReads
    try measure("MMDB lookup + country.iso_code, addresses of 20,000 networks", units: "lookups", count: logIPs.count) {
        for ip in logIPs { if let e = try db.lookup(ip), try db.value(e, at: ["country", "iso_code"]) != nil { hits += 1 } }
    }
    print("  (\(Double(db.pageReads - reads) / Double(logIPs.count)) block reads per lookup)")
    reads = db.pageReads
    try measure("MMDB lookup + country.iso_code, 20,000 networks, value cache", units: "lookups", count: logIPs.count) {
        for ip in logIPs { if let e = try db.lookup(ip), try country.value(e) != nil { hits += 1 } }
    }
    print("  (\(Double(db.pageReads - reads) / Double(logIPs.count)) block reads per lookup)")
    // In batches of the runner's size (5,000), one address at a time and interleaved
    // (`lookup(_: [IPAddress?])`); and with the CPU's caches filled with other data
    // between two batches (16 MiB written), as a run's other work does. One address in
    // ten is IPv6, as in the benchmark's log: in networks of the database found by
    // random lookups in allocated blocks, whose walks are longer.
    let v6Blocks: [UInt64] = [0x2001, 0x2400, 0x2600, 0x2604, 0x2800, 0x2A00, 0x2A01, 0x2A02, 0x2C0F]
    var v6Networks: [(UInt64, Int)] = []
    while v6Networks.count < 2_000 {
        let high = v6Blocks[Int(nextRandom() % UInt64(v6Blocks.count))] << 48 | (nextRandom() >> 16) & 0x000F_FFFF_FFFF
        if let e = try db.lookup(IPAddress(v6High: high, low: 0)), e.prefixLength > 16, e.prefixLength <= 64 {
            v6Networks.append((high & ~(UInt64.max >> UInt64(e.prefixLength)), e.prefixLength))
        }
    }
    let mixedIPs = logIPs.enumerated().map { n, ip -> IPAddress in
        guard n % 10 == 9 else { return ip }
        let (base, prefix) = v6Networks[Int(nextRandom() % UInt64(v6Networks.count))]
        return IPAddress(v6High: base | (prefix >= 64 ? 0 : nextRandom() & (UInt64.max >> UInt64(prefix))), low: nextRandom())
    }
    let batches = stride(from: 0, to: mixedIPs.count, by: 5_000).map { Array(mixedIPs[$0..<min($0 + 5_000, mixedIPs.count)]) }
    var other = [UInt8](repeating: 0, count: 16 << 20)
    for flushed in [false, true] {
        let label = flushed ? ", caches flushed between batches" : ""
        try measure("MMDB lookup + country.iso_code, 20,000 + 2,000 IPv6 networks, value cache, one at a time\(label)", units: "lookups", count: logIPs.count) {
            for batch in batches {
                if flushed { for k in stride(from: 0, to: other.count, by: 64) { other[k] &+= 1 } }
                for ip in batch { if let e = try db.lookup(ip), try country.value(e) != nil { hits += 1 } }
            }
        }
        try measure("MMDB lookup + country.iso_code, 20,000 + 2,000 IPv6 networks, value cache, interleaved\(label)", units: "lookups", count: logIPs.count) {
            for batch in batches {
                if flushed { for k in stride(from: 0, to: other.count, by: 64) { other[k] &+= 1 } }
                for e in try db.lookup(batch) { if let e, try country.value(e) != nil { hits += 1 } }
            }
        }
    }
    // Other cache, block, table and value cache sizes (the default: 1 MiB of 16-byte
    // blocks, a 512 KiB table, 8,192 values; the last one is as before issue #7's work).
    let configurations: [(cache: Int, block: Int, table: Int, values: Int)] = [
        (1 << 20, 32, 512 << 10, 8192), (1 << 20, 64, 512 << 10, 8192), (512 << 10, 16, 1 << 20, 8192), (2 << 20, 4096, 0, 0),
    ]
    for (cache, block, table, values) in configurations {
        let db = try MaxMindDatabase(path: cityPath, cacheBytes: cache, blockBytes: block, valueCacheEntries: values, treeTableBytes: table)
        let country = db.path(["country", "iso_code"])
        for ip in logIPs.prefix(100_000) { if let e = try db.lookup(ip) { _ = try country.value(e) } }
        let reads = db.pageReads
        try measure("MMDB lookup + country.iso_code, 20,000 networks, \(cache >> 10) KiB cache of \(block)-byte blocks, "
                    + "\(table >> 10) KiB table, \(values) values", units: "lookups", count: logIPs.count) {
            for ip in logIPs { if let e = try db.lookup(ip), try country.value(e) != nil { hits += 1 } }
        }
        print("  (\(Double(db.pageReads - reads) / Double(logIPs.count)) block reads per lookup)")
    }
    precondition(hits > 0)
} else {
    print("MMDB: \(cityPath) not found, skipped")
}

// Error-code matching with the samples' catalogs and Django's.
let catalogs = ["Samples/i18n/errors.en.yml", "Samples/i18n/errors.tr.yml", "Samples/i18n/errors.ru.yml"]
let matcher = try ErrorCodeMatcher(catalogPaths: catalogs)
let texts = ["Email has already been taken", "E-posta zaten kullanılıyor", "  E-POSTA ZATEN KULLANILIYOR ",
             "Пароль слишком короткий (минимум 22 символа)", "Password is too short (minimum is 8 characters)", "Something exploded"]
var matched = 0
measure("error_code match (samples' catalogs, mixed texts)", units: "matches", count: 600_000) {
    for i in 0..<600_000 where matcher.match(texts[i % texts.count]) != nil { matched += 1 }
}
precondition(matched > 0)

// Sorting a segment commit's record keys for the ledger's run (`sortKeys`; `sort()` before).
let segmentKeys = (0..<100_000).map { _ in RecordKeyBits(high: nextRandom(), low: nextRandom()) }
var sortedKeys: [RecordKeyBits] = []
measure("sort 100,000 record keys, sort()", units: "keys", count: 100 * segmentKeys.count) {
    for _ in 0..<100 { sortedKeys = segmentKeys; sortedKeys.sort() }
}
let bySort = sortedKeys
measure("sort 100,000 record keys, sortKeys()", units: "keys", count: 100 * segmentKeys.count) {
    for _ in 0..<100 { sortedKeys = segmentKeys; sortedKeys.sortKeys() }
}
precondition(sortedKeys == bySort)
