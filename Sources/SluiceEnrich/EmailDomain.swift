import SluiceConfig
import SluiceCore

/// `email_domain`: tags the probable intended domain of a mistyped email address
/// (`gmul.com` → `gmail.com`, `hotmial.com` → `hotmail.com`), by the nearest common
/// provider within two edits (a swap of neighbours counts as one). Known providers and
/// addresses with no close provider get null.
public struct EmailDomain: Transformer {
    /// Depends on the batch alone: may run on the read-ahead thread.
    public var isBatchLocal: Bool { true }

    public var field: FieldPath
    public var target: String
    public var providers: [String]

    public static let commonProviders = [
        "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "yahoo.co.jp", "hotmail.com", "hotmail.co.uk", "outlook.com",
        "live.com", "msn.com", "icloud.com", "me.com", "aol.com", "protonmail.com", "proton.me", "gmx.de", "gmx.net", "web.de",
        "mail.ru", "yandex.ru", "ya.ru", "bk.ru", "list.ru", "inbox.ru", "rambler.ru", "qq.com", "163.com", "naver.com",
    ]

    public func apply(_ batch: inout RecordBatch, context: RunContext) throws {
        // A batch has few distinct domains: each is compared with the providers once.
        // Keyed by the domain's own string (a `Substring` of the address hashed as a slice,
        // checked for NFC on every record whose address is not ASCII), found in the
        // address's bytes where they lie (the address is not copied out of the record).
        var memo: [String: Value] = [:]
        var reader = PathReader(field)
        let target = FieldName(target)
        let prefetch = BatchPrefetcher(&batch.records) // the worker's first pass over the batch
        for i in batch.records.indices {
            prefetch(i)
            let domain = reader.withValue(in: batch.records[i].fields) { v -> String? in
                guard case .string(let email)? = v else { return nil }
                return email.utf8.withContiguousStorageIfAvailable { bytes -> String? in
                    guard let at = bytes.lastIndex(of: UInt8(ascii: "@")) else { return nil }
                    return String(decoding: UnsafeBufferPointer(rebasing: bytes[(at + 1)...]), as: UTF8.self)
                } ?? email.utf8.lastIndex(of: UInt8(ascii: "@")).map { String(email[email.index(after: $0)...]) }
            }
            var suggestion = Value.null
            if let domain {
                if let known = memo[domain] {
                    suggestion = known
                } else {
                    if let d = Self.suggest(domain.lowercased(), providers: providers) { suggestion = .string(d) }
                    memo[domain] = suggestion
                }
            }
            batch.records[i].fields[target] = suggestion
        }
    }

    static func suggest(_ domain: String, providers: [String]) -> String? {
        guard !domain.isEmpty, !providers.contains(domain) else { return nil }
        var best: (String, Int)?
        var tie = false
        for p in providers {
            let d = distance(domain, p, limit: 2)
            guard d <= 2 else { continue }
            if best == nil || d < best!.1 { best = (p, d); tie = false } else if d == best!.1 { tie = true }
        }
        guard let best, !tie else { return nil }
        return best.0
    }

    /// Optimal string alignment distance, giving up above `limit` (then `limit + 1`).
    /// Over the strings' own UTF-8 bytes, in three rows of the table on the stack: every
    /// distinct domain of a batch is compared with every provider, and two arrays and a
    /// table of arrays per comparison were ~3% of a run's allocations.
    static func distance(_ a: String, _ b: String, limit: Int) -> Int {
        if abs(a.utf8.count - b.utf8.count) > limit { return limit + 1 }
        var a = a, b = b
        return a.withUTF8 { x in b.withUTF8 { y in distance(x, y) } }
    }

    private static func distance(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Int {
        let n = a.count, m = b.count
        if n == 0 || m == 0 { return max(n, m) }
        return withUnsafeTemporaryAllocation(of: Int.self, capacity: 3 * (m + 1)) { rows in
            // Rows i - 2, i - 1 and i of the table, at these offsets (rotated per row).
            var before = 0, previous = m + 1, current = 2 * (m + 1)
            for j in 0...m { rows[previous + j] = j }
            for i in 1...n {
                rows[current] = i
                for j in 1...m {
                    var d = min(rows[previous + j] + 1, rows[current + j - 1] + 1,
                                rows[previous + j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
                    if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] { d = min(d, rows[before + j - 2] + 1) }
                    rows[current + j] = d
                }
                (before, previous, current) = (previous, current, before)
            }
            return rows[previous + m]
        }
    }

    public static func register(into registry: inout StageRegistry) {
        registry.transformer("email_domain") { o, ctx in
            let field = o.path("field") ?? FieldPath("email")!
            let target = o.string("to") ?? "email_domain_suggestion"
            var providers = commonProviders
            if let list = o.stringList("providers") { providers = list.map { $0.0.lowercased() } }
            o.finish()
            return BuiltTransformer(transformer: EmailDomain(field: field, target: target, providers: providers), effects: [.add([target])])
        }
    }
}
