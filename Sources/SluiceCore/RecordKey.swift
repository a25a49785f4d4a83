import Crypto
#if canImport(CCryptoBoringSSL)
import CCryptoBoringSSL
#endif

/// Record keys: deterministic, stable across runs, machines and versions.
///
/// A key is the lowercase hex of the first 16 bytes of SHA-256 over a canonical byte
/// encoding (`docs/record-keys.md` is the specification):
///
///     "sluice-key-v1\0" + str(pipeline) + for each key field: str(name) + enc(value)
///
/// where `str(s) = "s" + byte count + ":" + UTF-8 bytes`, `enc(null) = "n"`,
/// `enc(true|false) = "t"|"f"`, `enc(int) = "i" + decimal + ";"`,
/// `enc(double) = "d" + 8 bytes IEEE-754 big-endian`, `enc(string) = str`,
/// `enc(array) = "a" + count + ":" + elements`, `enc(object) = "o" + count + ":" +`
/// (str(key) + enc(value)) for keys sorted by their UTF-8 bytes.
/// Type tags and length prefixes keep `1` and `"1"`, or `["a","b"]` and `["ab"]`, apart.
///
/// Without key fields the key is built from the source position instead:
/// `"sluice-key-v1\0" + str(pipeline) + "p" + str(file identity) + enc(byte offset)`,
/// where the identity is the hash of the file's first line (the path relative to the
/// project root for sources without one).
public struct RecordKeyer: Sendable {
    public let pipeline: String
    public let fields: [FieldPath]

    /// The encoding's constant parts, made once: the prefix with the pipeline's name, and
    /// each key field's name.
    private let head: [UInt8]
    private let names: [[UInt8]]

    public init(pipeline: String, fields: [FieldPath]) {
        self.pipeline = pipeline
        self.fields = fields
        var head = Self.prefix
        Self.encodeString(pipeline, into: &head)
        self.head = head
        names = fields.map { path in
            var name: [UInt8] = []
            Self.encodeString(path.description, into: &name)
            return name
        }
    }

    static let prefix = Array("sluice-key-v1\u{0}".utf8)

    public func key(for record: Record) -> String {
        var readers = fields.map(PathReader.init)
        var bytes: [UInt8] = []
        return key(for: record, readers: &readers, bytes: &bytes)
    }

    /// The keys of many records, with one `PathReader` per key field and one buffer for
    /// the encoding across them.
    public func keys(_ records: inout [Record]) {
        var readers = fields.map(PathReader.init)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(head.count + 128)
        // Each record reached `inout`: `key(for: records[i], …)` copied the record (its five
        // references retained and released) to pass it on; an exclusive access is read where
        // it lies.
        for i in records.indices { assignKey(&records[i], readers: &readers, bytes: &bytes) }
    }

    @inline(__always)
    private func assignKey(_ record: inout Record, readers: inout [PathReader], bytes: inout [UInt8]) {
        record.key = key(for: record, readers: &readers, bytes: &bytes)
    }

    private func key(for record: Record, readers: inout [PathReader], bytes: inout [UInt8]) -> String {
        bytes.removeAll(keepingCapacity: true)
        bytes.append(contentsOf: head)
        if fields.isEmpty {
            bytes.append(UInt8(ascii: "p"))
            Self.encodeString(record.position.fileID ?? record.position.file, into: &bytes)
            Self.encode(.int(record.position.offset), into: &bytes)
        } else {
            for k in fields.indices {
                bytes.append(contentsOf: names[k])
                readers[k].withValue(in: record.fields) { v in
                    if let v { Self.encode(v, into: &bytes) } else { Self.encode(.null, into: &bytes) }
                }
            }
        }
        return bytes.withUnsafeBytes { ShortDigest.hex(of: $0) }
    }

    /// The canonical bytes (exposed for tests and documentation).
    public static func encode(_ value: Value, into out: inout [UInt8]) {
        switch value {
        case .null: out.append(UInt8(ascii: "n"))
        case .bool(let b): out.append(UInt8(ascii: b ? "t" : "f"))
        case .int(let n):
            out.append(UInt8(ascii: "i"))
            out.append(contentsOf: String(n).utf8)
            out.append(UInt8(ascii: ";"))
        case .largeInteger(let digits):
            out.append(UInt8(ascii: "i"))
            out.append(contentsOf: digits.utf8)
            out.append(UInt8(ascii: ";"))
        case .double(let d):
            out.append(UInt8(ascii: "d"))
            let bits = d.bitPattern.bigEndian
            withUnsafeBytes(of: bits) { out.append(contentsOf: $0) }
        case .string(let s): encodeString(s, into: &out)
        case .array(let items):
            out.append(UInt8(ascii: "a"))
            out.append(contentsOf: String(items.count).utf8)
            out.append(UInt8(ascii: ":"))
            for item in items { encode(item, into: &out) }
        case .object(let fields):
            out.append(UInt8(ascii: "o"))
            out.append(contentsOf: String(fields.count).utf8)
            out.append(UInt8(ascii: ":"))
            for field in fields.sorted(by: { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }) {
                encodeString(field.name, into: &out)
                encode(field.value, into: &out)
            }
        }
    }

    static func encodeString(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "s"))
        out.append(contentsOf: String(s.utf8.count).utf8)
        out.append(UInt8(ascii: ":"))
        out.append(contentsOf: s.utf8)
    }

    @inline(__always) static func hexDigit(_ n: UInt8) -> UInt8 { n < 10 ? 0x30 + n : 0x57 + n }
}

/// The 128-bit SHA-256 prefix, as lowercase hex, that keys and file identities use.
public enum ShortDigest {
    public static func hex<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        Array(bytes).withUnsafeBytes { hex(of: $0) }
    }

    /// The hex of these bytes' digest prefix. With the BoringSSL that swift-crypto builds
    /// on (Linux), its one-shot `SHA256`: swift-crypto's `SHA256.hash` makes its hash
    /// context a heap object, and copies it to finish, two allocations a record key (~1/3
    /// of the keys' time on a 1M-line run). Elsewhere (CryptoKit), `SHA256.hash`.
    public static func hex(of bytes: UnsafeRawBufferPointer) -> String {
        #if canImport(CCryptoBoringSSL)
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 32) { digest in
            _ = CCryptoBoringSSL_SHA256(bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count, digest.baseAddress)
            return hex(digest: UnsafeRawBufferPointer(digest))
        }
        #else
        SHA256.hash(data: Array(bytes)).withUnsafeBytes { hex(digest: $0) }
        #endif
    }

    /// The lowercase hex of a digest's first 16 bytes, written into the string itself.
    static func hex(digest d: UnsafeRawBufferPointer) -> String {
        String(unsafeUninitializedCapacity: 32) { out in
            for i in 0..<16 {
                out[2 * i] = RecordKeyer.hexDigit(d[i] >> 4)
                out[2 * i + 1] = RecordKeyer.hexDigit(d[i] & 0xF)
            }
            return 32
        }
    }
}

/// A record key's 16 bytes as two big-endian halves, for sluice's own keys (32 lowercase
/// hex digits); other keys (a sink's own, from outside) have none.
public struct RecordKeyBits: Hashable, Sendable {
    public var high: UInt64
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// A dictionary's hash of the two words (`foldedHash`).
    public func _rawHashValue(seed: Int) -> Int { foldedHash(high, low, seed: seed) }
}

extension RecordKeyBits: Comparable {
    /// In the order of the stored bytes (`withBytes`): the high half first.
    @inline(__always) public static func < (a: RecordKeyBits, b: RecordKeyBits) -> Bool {
        a.high != b.high ? a.high < b.high : a.low < b.low
    }
}

extension Array where Element == RecordKeyBits {
    /// Sorts the keys in their order (`<`, the stored bytes' order) as `sort()` would, in
    /// a fraction of its time for sluice's own keys, whose bits are a hash's (uniform), and
    /// in place (no second array: a segment commit's 100,000 keys are 1.6 MB, and a copy
    /// moved the run's peak memory). The keys are put in buckets by the leading bits of
    /// `high` (2^4 to 2^16 buckets, 16 to 32 keys each; an American flag sort: counted, then moved
    /// into place by cycles of swaps), then each bucket in order by insertion; a bucket of
    /// many keys (keys that are not hashes) by `sort()`. A segment commit sorts its keys
    /// for the ledger's run (docs/benchmarks.md, the micro-benchmarks).
    public mutating func sortKeys() {
        let n = count
        guard n > 64 else { sort(); return }
        let bits = Swift.min(16, Swift.max(4, Int.bitWidth - n.leadingZeroBitCount - 4))
        let shift = UInt64(64 - bits), buckets = 1 << bits
        withUnsafeMutableBufferPointer { keys in
            // ends[b]: where bucket b ends once in place; next[b]: its first key not yet placed.
            var ends = [Int](repeating: 0, count: buckets)
            for k in keys { ends[Int(truncatingIfNeeded: k.high >> shift)] &+= 1 }
            var next = [Int](repeating: 0, count: buckets)
            var total = 0
            for b in 0..<buckets {
                next[b] = total
                total &+= ends[b]
                ends[b] = total
            }
            for b in 0..<buckets {
                while next[b] < ends[b] {
                    // Carry the key at bucket b's next place to its own bucket, and the one
                    // found there to its own, until one that belongs in bucket b.
                    var k = keys[next[b]]
                    var kb = Int(truncatingIfNeeded: k.high >> shift)
                    while kb != b {
                        swap(&k, &keys[next[kb]])
                        next[kb] &+= 1
                        kb = Int(truncatingIfNeeded: k.high >> shift)
                    }
                    keys[next[b]] = k
                    next[b] &+= 1
                }
            }
            var lo = 0
            for b in 0..<buckets {
                let hi = ends[b]
                defer { lo = hi }
                guard hi &- lo > 1 else { continue }
                if hi &- lo > 64 {
                    var bucket = UnsafeMutableBufferPointer(rebasing: keys[lo..<hi])
                    bucket.sort()
                    continue
                }
                for i in (lo &+ 1)..<hi {
                    let k = keys[i]
                    var j = i
                    while j > lo, k < keys[j &- 1] {
                        keys[j] = keys[j &- 1]
                        j &-= 1
                    }
                    keys[j] = k
                }
            }
        }
    }
}

extension RecordKeyBits {
    /// The 16 bytes as stored (the ledger's and window events' blobs): the two halves,
    /// big-endian, so that the bytes sort as the bits do.
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withUnsafeBytes(of: (high.bigEndian, low.bigEndian), body)
    }

    /// The bits of 16 stored bytes (`withBytes`); nil for any other length.
    public init?(bytes: UnsafeRawBufferPointer) {
        guard bytes.count == 16 else { return nil }
        self.init(high: UInt64(bigEndian: bytes.loadUnaligned(as: UInt64.self)),
                  low: UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
    }

    /// The bits of a key of exactly 32 lowercase hex digits; nil for any other text.
    public init?(_ key: String) {
        guard key.utf8.count == 32 else { return nil }
        // From the string's own bytes (a native string's are contiguous); every key of a
        // run is parsed several times (the sink's key set, the ledger, window events).
        let parsed = key.utf8.withContiguousStorageIfAvailable(Self.parse) ?? Array(key.utf8).withUnsafeBufferPointer(Self.parse)
        guard let bits = parsed else { return nil }
        self = bits
    }

    /// The bits of 32 lowercase hex digits.
    private static func parse(_ b: UnsafeBufferPointer<UInt8>) -> RecordKeyBits? {
        guard let high = half(b, 0), let low = half(b, 16) else { return nil }
        return RecordKeyBits(high: high, low: low)
    }

    /// The all-zero key: the empty slot of `RecordKeySet`'s table.
    public static let zero = RecordKeyBits(high: 0, low: 0)
    var isZero: Bool { high == 0 && low == 0 }

    /// 16 lowercase hex digits from `start`, as a number; nil if any is not one. Eight
    /// digits at a time (`eight`): byte by byte, this was 1% of a run's samples (every
    /// key is parsed several times: the sink's key set, the ledger, its filter).
    @inline(__always) private static func half(_ b: UnsafeBufferPointer<UInt8>, _ start: Int) -> UInt64? {
        let p = UnsafeRawPointer(b.baseAddress! + start)
        guard let high = eight(UInt64(littleEndian: p.loadUnaligned(as: UInt64.self))),
              let low = eight(UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt64.self))) else { return nil }
        return UInt64(high) << 32 | UInt64(low)
    }

    /// The value of 8 lowercase hex digits, the first in the word's low byte (as loaded
    /// little-endian); nil if any byte is not one.
    @inline(__always) static func eight(_ x: UInt64) -> UInt32? {
        let ones: UInt64 = 0x0101_0101_0101_0101, top: UInt64 = 0x8080_8080_8080_8080
        // Per byte below 0x80 (no carry between bytes), the top bit of c + (0x80 - n) is
        // set when c >= n: a digit is >= "0" and not >= ":", a letter >= "a" and not >= "g".
        let digit = (x &+ 0x50 &* ones) & ~(x &+ 0x46 &* ones)
        let letter = (x &+ 0x1F &* ones) & ~(x &+ 0x19 &* ones)
        guard x & top == 0, (digit | letter) & top == top else { return nil }
        // A digit's value is its low four bits; a letter's, its low four bits + 9 (bit 6 tells them apart).
        let nibbles = (x & 0x0F0F_0F0F_0F0F_0F0F) &+ ((x & 0x4040_4040_4040_4040) >> 6) &* 9
        // Two digits a byte (the first the high half), then the four bytes together.
        var v = (nibbles & 0x000F_000F_000F_000F) << 4 | (nibbles & 0x0F00_0F00_0F00_0F00) >> 8
        v = (v | v >> 8) & 0x0000_FFFF_0000_FFFF
        v = (v | v >> 16) & 0xFFFF_FFFF
        return UInt32(truncatingIfNeeded: v).byteSwapped
    }
}

/// A set of record keys that holds sluice's own keys as their 16 bytes, in a table of its
/// own: the bytes are already uniformly spread (a SHA-256 prefix), so they need no
/// hashing, and the set holds no string (a `Set<String>` of a segment's 100,000 keys kept
/// each key's string alive and hashed 32 bytes for every insert). Other keys go to a
/// plain set of strings.
public struct RecordKeySet: Sendable {
    /// Open addressing, linear probing, a power-of-two size at most half full. An empty
    /// slot is all zeros; the all-zero key itself is held by `hasZero`.
    private var slots: [RecordKeyBits] = []
    private var ownCount = 0
    private var hasZero = false
    private var other: Set<String> = []

    public init() {}

    public var count: Int { ownCount + (hasZero ? 1 : 0) + other.count }
    public var isEmpty: Bool { count == 0 }

    public func contains(_ key: String) -> Bool {
        guard let bits = RecordKeyBits(key) else { return other.contains(key) }
        if bits.isZero { return hasZero }
        guard !slots.isEmpty else { return false }
        let mask = slots.count - 1
        var i = Int(truncatingIfNeeded: bits.low) & mask
        while true {
            let s = slots[i]
            if s == bits { return true }
            if s.isZero { return false }
            i = (i + 1) & mask
        }
    }

    /// Adds a key; false when it was there already.
    @discardableResult
    public mutating func insert(_ key: String) -> Bool {
        insert(key, bits: RecordKeyBits(key))
    }

    /// Adds a key whose bits (`RecordKeyBits(key)`) the caller has already.
    @discardableResult
    public mutating func insert(_ key: String, bits: RecordKeyBits?) -> Bool {
        guard let bits else { return other.insert(key).inserted }
        if bits.isZero {
            defer { hasZero = true }
            return !hasZero
        }
        if (ownCount + 1) * 2 > slots.count { grow() }
        let mask = slots.count - 1
        var i = Int(truncatingIfNeeded: bits.low) & mask
        while true {
            let s = slots[i]
            if s == bits { return false }
            if s.isZero {
                slots[i] = bits
                ownCount += 1
                return true
            }
            i = (i + 1) & mask
        }
    }

    /// Asks the CPU for the slot an insert of `bits` looks at first: a loop inserting keys
    /// calls it a few keys ahead (the table of a segment's keys is megabytes, and each
    /// insert a cache miss at a random place). Only a hint.
    @inline(__always) public func prefetch(_ bits: RecordKeyBits) {
        slots.withUnsafeBufferPointer { table in
            guard let base = table.baseAddress, !table.isEmpty else { return }
            prefetchHint(base + (Int(truncatingIfNeeded: bits.low) & (table.count - 1)))
        }
    }

    /// Empties the set, keeping its table for the next segment's keys (no regrowth).
    public mutating func removeAll() {
        for i in slots.indices { slots[i] = .zero }
        ownCount = 0
        hasZero = false
        other.removeAll()
    }

    private mutating func grow() {
        let old = slots
        slots = [RecordKeyBits](repeating: .zero, count: max(64, old.count * 2))
        let mask = slots.count - 1
        for bits in old where !bits.isZero {
            var i = Int(truncatingIfNeeded: bits.low) & mask
            while !slots[i].isZero { i = (i + 1) & mask }
            slots[i] = bits
        }
    }
}

/// What a sink that keeps no index of keys itself (a CSV file, the local warehouse's
/// table) writes of each batch: the rows whose keys neither the delivery ledger nor the
/// segment so far holds (a record replayed after a crash, a `request_id` logged twice);
/// and the keys it wrote since its last commit, for the ledger
/// (`SegmentResult.deliveredKeys`). Without a state store every row is new but for the
/// segment's repeats.
public struct SegmentDeliveries {
    public let sink: String
    /// Keys written since the last segment commit (not yet in the ledger).
    public private(set) var pending: [String] = []
    private var pendingSet = RecordKeySet()

    public init(sink: String) { self.sink = sink }

    /// The indices of the rows to write, in order; their keys join the pending ones. A
    /// `replace` run does not count the ledger's keys of the partition it rebuilds.
    public mutating func newRows(_ rows: [Row], context: RunContext) throws -> [Int] {
        let rebuilding = context.mode == .replace ? context.partition.description : nil
        let delivered = try context.state?.delivered(pipeline: context.pipeline, sink: sink, keys: rows.map(\.key),
                                                     excludingPartition: rebuilding) ?? []
        // The keys' bits first, then each insert with the slot of the key 8 ahead asked of
        // the CPU (`RecordKeySet.prefetch`).
        var kept: [Int] = []
        kept.reserveCapacity(rows.count)
        let bits = rows.map { RecordKeyBits($0.key) }
        for i in rows.indices { // by index: a row's key read, not the whole row copied
            if i + 8 < bits.count, let ahead = bits[i + 8] { pendingSet.prefetch(ahead) }
            let key = rows[i].key
            guard !delivered.contains(key), pendingSet.insert(key, bits: bits[i]) else { continue }
            pending.append(key)
            kept.append(i)
        }
        return kept
    }

    /// The keys written since the last call (a segment commit's), and none pending after.
    public mutating func takePending() -> [String] {
        defer {
            pending = []
            pendingSet.removeAll()
        }
        return pending
    }
}
