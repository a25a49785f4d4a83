#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import CPrefetch

/// Where an address's data is: the offset of its record in the data section, and
/// the prefix length of the network that holds the address.
public struct MaxMindEntry: Sendable, Hashable {
    /// The record's offset from the start of the data section.
    public let offset: Int
    /// The length of the network's prefix, in bits of the address that was looked up
    /// (0...32 for IPv4, including IPv4 in an IPv6 tree and `::ffff:a.b.c.d`; 0...128
    /// for IPv6), as MaxMind's readers report it.
    public let prefixLength: Int

    public init(offset: Int, prefixLength: Int) {
        self.offset = offset
        self.prefixLength = prefixLength
    }
}

/// A MaxMind DB (`.mmdb`) file, read per the MaxMind DB format 2.0.
///
/// Opening reads and checks the metadata and the search tree's bounds; a lookup walks
/// the tree (no allocation) and returns where the record is; `decode` turns the record
/// into an `MMDBValue`, and `value(_:at:)` reads one value by path without decoding the
/// rest. IPv4 addresses, and IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`), are looked
/// up in the IPv4 part of an IPv6 tree (`::/96`, whose start node is found at open).
///
/// Immutable after `init` but for its page cache, which a lock guards (one lock per
/// `lookup`, `value` or `decode`), so it may be shared between threads and tasks. Every
/// problem in the file is a thrown `MaxMindError`, never a crash or an endless loop.
///
/// Memory: the file is read with `pread` through a cache of at most `cacheBytes` of it in
/// small blocks, not mapped (issue #7). A mapping's pages count in the process's RSS as
/// soon as lookups touch them, and the kernel maps 64 KiB around each fault: addresses
/// from everywhere made the whole City database (~60 MB) resident. The file's pages stay
/// in the OS page cache, so a cache miss costs a system call and a copy of one block.
///
/// Speed (issue #7): the first levels of the search tree are also held flattened, a
/// table by address prefix (IPv4: up to 17 bits, 512 KiB; IPv6: up to 13 bits, 32 KiB;
/// smaller for smaller trees), so a lookup starts that many bits down without reading
/// those nodes; and `path(_:)` gives a path whose values are remembered by record in a
/// bounded cache (many addresses share one record: a country, a city).
public final class MaxMindDatabase: Sendable {
    /// The file's path, as given.
    public let path: String
    /// The metadata.
    public let metadata: MaxMindMetadata

    private let file: PagedFile
    private let nodeCount: Int
    private let recordSize: Int
    private let treeSize: Int
    private let dataStart: Int
    private let dataSize: Int
    /// The node (or record value) reached by 96 zero bits in an IPv6 tree; 0 in an IPv4 tree.
    private let ipv4Start: Int
    /// The tree's first levels from `ipv4Start` (IPv4 addresses) and from the root (IPv6
    /// addresses of an IPv6 tree); nil when the tree is tiny or its values too large.
    private let v4Prefixes: PrefixTable?
    private let v6Prefixes: PrefixTable?
    /// The value caches of `path(_:)`, by path.
    private let paths: PathCaches

    static let marker: [UInt8] = [0xAB, 0xCD, 0xEF] + Array("MaxMind.com".utf8)
    static let maxMetadataSize = 128 * 1024

    /// The page cache's size unless the caller says otherwise: 2 MiB (8 MiB at first;
    /// the benchmark's whole run moved within its noise from 8 to 4 to 2 MiB while peak
    /// memory fell by 6 MiB; random addresses over the whole space miss more, see
    /// docs/benchmarks.md). 1 MiB with the 16-byte blocks and the prefix tables, which
    /// with the value caches took about the memory of the 2 MiB of pages before; 2 MiB
    /// again once geoip was on the thread the others wait for (the session of 2026-11-30
    /// from 08:47): −4% wall time and −6% CPU on the benchmark's 1M lines for 1.7 MiB.
    public static let defaultCacheBytes = 2 << 20

    /// The size of the page cache's blocks unless the caller says otherwise: 16 bytes
    /// (a node is 6 to 8 bytes; 4 KiB pages at first, whose copy was most of a miss).
    public static let defaultBlockBytes = 1 << PagedFile.defaultBlockShift

    /// How many records' values each path of `path(_:)` remembers unless the caller says
    /// otherwise (the benchmark's 200,000 addresses share ~8,000 City records).
    public static let defaultValueCacheEntries = 8192

    /// The most bytes of the IPv4 prefix table unless the caller says otherwise (the IPv6
    /// one has a sixteenth of it): 512 KiB, 17 bits.
    public static let defaultTreeTableBytes = 512 << 10

    /// Opens and checks a database file.
    /// - Parameters:
    ///   - cacheBytes: the most bytes of the file held in memory at a time (whole blocks,
    ///     4 blocks at least).
    ///   - blockBytes: the size of the cache's blocks, a power of two in 4...4096 (others
    ///     are rounded down and clamped).
    ///   - valueCacheEntries: how many records' values each path of `path(_:)` remembers
    ///     (0: none).
    ///   - treeTableBytes: the most bytes of the table of the tree's first levels for IPv4
    ///     addresses (4 bytes a prefix, 24 bits at most; the IPv6 table has a sixteenth;
    ///     0: none). Either is smaller for a small tree (a prefix for every 4 nodes at most).
    /// - Throws: `MaxMindError` when the file cannot be read or is not a valid database.
    public init(path: String, cacheBytes: Int = MaxMindDatabase.defaultCacheBytes,
                blockBytes: Int = MaxMindDatabase.defaultBlockBytes,
                valueCacheEntries: Int = MaxMindDatabase.defaultValueCacheEntries,
                treeTableBytes: Int = MaxMindDatabase.defaultTreeTableBytes) throws {
        self.path = path
        var shift = 2
        while shift < 12, 2 << shift <= blockBytes { shift += 1 }
        let file = try PagedFile(path: path, cacheBytes: cacheBytes, blockShift: shift)
        self.file = file
        guard file.count > 0, let markerStart = file.withLock({ Self.lastMarker(in: file) }) else {
            throw MaxMindError(path: path, kind: .missingMetadataMarker)
        }
        let metadataStart = markerStart + Self.marker.count
        let section = DataSection(file: file, start: metadataStart, size: file.count - metadataStart)
        var budget = DataSection.Budget()
        let raw: MMDBValue
        do throws(DataFault) {
            raw = try file.withLock { () throws(DataFault) -> MMDBValue in try section.decode(at: 0, budget: &budget).0 }
        } catch {
            throw error.error(path: path, section: .metadata)
        }
        let metadata: MaxMindMetadata
        do throws(MetadataProblem) {
            metadata = try MaxMindMetadata(raw)
        } catch {
            throw MaxMindError(path: path, kind: .invalidMetadata(error.message))
        }
        self.metadata = metadata
        guard metadata.binaryFormatMajorVersion == 2 else {
            throw MaxMindError(path: path, kind: .unsupported(
                "binary format major version \(metadata.binaryFormatMajorVersion) (this reader reads version 2)"))
        }
        guard [24, 28, 32].contains(metadata.recordSize) else {
            throw MaxMindError(path: path, kind: .unsupported("record size \(metadata.recordSize) bits (24, 28 or 32 expected)"))
        }
        guard metadata.ipVersion == 4 || metadata.ipVersion == 6 else {
            throw MaxMindError(path: path, kind: .invalidMetadata("ip_version is \(metadata.ipVersion), not 4 or 6"))
        }
        nodeCount = Int(metadata.nodeCount)
        recordSize = Int(metadata.recordSize)
        treeSize = nodeCount * recordSize / 4
        // The tree and the 16-byte separator must fit before the metadata marker.
        guard treeSize + 16 <= markerStart else {
            throw MaxMindError(path: path, kind: .corruptSearchTree(
                "node_count \(nodeCount) needs \(treeSize) bytes of search tree plus a 16-byte separator, "
                    + "but only \(markerStart) bytes precede the metadata"))
        }
        dataStart = treeSize + 16
        dataSize = markerStart - dataStart
        var node = 0
        if metadata.ipVersion == 6 {
            let (count, size) = (nodeCount, recordSize)
            node = file.withLock {
                var node = 0, depth = 0
                while depth < 96, node < count {
                    node = Self.record(file, size, node, 0)
                    depth += 1
                }
                return node
            }
        }
        ipv4Start = node
        // The flattened first levels: 4 nodes or more for each entry.
        var log2Nodes = 0
        while 2 << log2Nodes <= nodeCount { log2Nodes += 1 }
        var log2Entries = 0
        while log2Entries < 24, 8 << log2Entries <= treeTableBytes { log2Entries += 1 }
        let (count, size) = (nodeCount, recordSize)
        let v4Bits = treeTableBytes >= 8 ? min(log2Entries, log2Nodes - 2) : 0
        let v6Bits = metadata.ipVersion == 6 ? min(v4Bits - 4, log2Nodes - 4) : 0
        // Read through 4 KiB pages of the same open file, dropped after: the walk goes
        // through the tree in file order when it is written depth-first, as MaxMind's
        // writers do (the City database: ~4,600 reads instead of ~43,000 blocks).
        let pages = try PagedFile(sharing: file, cacheBytes: 64 << 10, blockShift: 12)
        (v4Prefixes, v6Prefixes) = pages.withLock {
            (PrefixTable(pages, size, count, from: node, bits: v4Bits), PrefixTable(pages, size, count, from: 0, bits: v6Bits))
        }
        paths = PathCaches(entries: valueCacheEntries)
    }

    /// The most bytes of the file held in memory at a time.
    public var cacheBytes: Int { file.capacityBytes }

    /// The bytes of the file held in memory now.
    public var cachedBytes: Int { file.cachedBytes }

    /// The size of the cache's blocks.
    public var blockBytes: Int { file.blockSize }

    /// Blocks read from the file so far (cache misses).
    public var pageReads: Int { file.withLock { file.misses } }

    /// The start of the last metadata marker, searched in the last 128 KiB. Under the lock.
    private static func lastMarker(in file: PagedFile) -> Int? {
        let count = file.count
        let m = marker
        guard count >= m.count else { return nil }
        let lowest = max(0, count - maxMetadataSize)
        var i = count - m.count
        while i >= lowest {
            if file.byte(i) == 0xAB {
                var j = 1
                while j < m.count, file.byte(i + j) == m[j] { j += 1 }
                if j == m.count { return i }
            }
            i -= 1
        }
        return nil
    }

    // MARK: - Search tree

    /// Record `side` (0 left, 1 right) of `node`; the node must be below node_count (its
    /// bytes are then inside the file, checked at open). Under the lock.
    @inline(__always)
    static func record(_ file: PagedFile, _ recordSize: Int, _ node: Int, _ side: Int) -> Int {
        switch recordSize {
        case 24:
            let offset = node * 6 + side * 3
            return Int(file.uint32(at: offset) >> 8)
        case 28:
            let offset = node * 7
            if side == 0 {
                let v = Int(file.uint32(at: offset))
                return (v >> 8) | ((v & 0xF0) << 20)
            }
            return Int(file.uint32(at: offset + 3)) & 0x0FFF_FFFF
        default:
            return Int(file.uint32(at: node * 8 + side * 4))
        }
    }

    /// Finds the record for an address.
    ///
    /// - Returns: where the record is and the network's prefix length, or nil when the
    ///   database has no data for the address.
    /// - Throws: `MaxMindError` for an IPv6 address in an IPv4 database (IPv4-mapped
    ///   ones excepted) or a corrupt search tree.
    @inline(__always)
    public func lookup(_ ip: IPAddress) throws -> MaxMindEntry? {
        if Self.walksIPv6(ip), metadata.ipVersion != 6 { throw MaxMindError(path: path, kind: .ipv6LookupInIPv4Database) }
        var w = start(ip)
        if !w.done(nodeCount) {
            let (nodeCount, recordSize) = (self.nodeCount, self.recordSize)
            file.withLock {
                while !w.done(nodeCount) { w.step(Self.record(file, recordSize, w.node, w.bit)) }
            }
        }
        if w.node == nodeCount { return nil }
        return try entry(record: w.node, depth: w.depth, bitCount: w.bitCount)
    }

    /// `lookup(_:)` of each address (nil: no address, no entry), the same entries. For
    /// many addresses at once (a batch's): the walks of `interleaved` addresses take
    /// turns, one level each, and each asks the CPU for the node it reads next before
    /// the others' turns. A walk is a chain of reads each of which needs the one before,
    /// so one address at a time waits for memory at every level past the prefix table
    /// (the cache's slots and tags are far apart in memory, and other work between two
    /// batches pushes them out of the CPU's caches); interleaved, those waits overlap.
    ///
    /// - Throws: as `lookup(_:)`, for the first address (in order) that would throw.
    public func lookup(_ addresses: [IPAddress?]) throws -> [MaxMindEntry?] {
        if metadata.ipVersion != 6, addresses.contains(where: { $0.map(Self.walksIPv6) ?? false }) {
            throw MaxMindError(path: path, kind: .ipv6LookupInIPv4Database)
        }
        let nodeCount = self.nodeCount, recordSize = self.recordSize, nodeBytes = recordSize / 4
        // Where each address's walk ended (`nodeCount`: no data, or no address) and how deep.
        var records = [Int](repeating: nodeCount, count: addresses.count)
        var depths = [Int](repeating: 0, count: addresses.count)
        file.withLock {
            // The walks in flight and the addresses they are of.
            withUnsafeTemporaryAllocation(of: (walk: TreeWalk, index: Int).self, capacity: Self.interleaved) { slots in
                var next = 0
                /// Starts the next address's walk that goes past the prefix table in slot
                /// `s`, and asks for its first node; false when no address is left.
                func begin(_ s: Int) -> Bool {
                    while next < addresses.count {
                        let i = next
                        next += 1
                        if next + Self.interleaved < addresses.count, let ahead = addresses[next + Self.interleaved] { prefetchTable(ahead) }
                        guard let ip = addresses[i] else { continue }
                        let w = start(ip)
                        if w.done(nodeCount) {
                            records[i] = w.node
                            depths[i] = w.depth
                            continue
                        }
                        file.prefetch(w.node &* nodeBytes)
                        slots[s] = (w, i)
                        return true
                    }
                    return false
                }
                var active = 0
                for s in 0..<Self.interleaved {
                    if begin(s) { active += 1 } else { slots[s].index = -1 }
                }
                while active > 0 {
                    for s in 0..<Self.interleaved where slots[s].index >= 0 {
                        slots[s].walk.step(Self.record(file, recordSize, slots[s].walk.node, slots[s].walk.bit))
                        if slots[s].walk.done(nodeCount) {
                            records[slots[s].index] = slots[s].walk.node
                            depths[slots[s].index] = slots[s].walk.depth
                            if !begin(s) {
                                slots[s].index = -1
                                active -= 1
                            }
                        } else {
                            file.prefetch(slots[s].walk.node &* nodeBytes)
                        }
                    }
                }
            }
        }
        return try addresses.indices.map { i in
            guard let ip = addresses[i], records[i] != nodeCount else { return nil }
            return try entry(record: records[i], depth: depths[i], bitCount: Self.walksIPv6(ip) ? 128 : 32)
        }
    }

    /// Whether an address's walk is IPv6's (128 bits from the root), not IPv4's (32 bits
    /// from `ipv4Start`; IPv4-mapped IPv6 addresses too).
    @inline(__always)
    static func walksIPv6(_ ip: IPAddress) -> Bool {
        !(ip.family == .v4 || (ip.high == 0 && ip.low >> 32 == 0xFFFF))
    }

    /// How many walks `lookup(_:)` of many addresses keeps in flight.
    static let interleaved = 12

    /// An address's walk down the tree: the node reached, the levels walked and the
    /// address's bits still to walk (the next one the highest of `high`).
    struct TreeWalk {
        var node: Int
        var depth: Int
        var bitCount: Int
        var high: UInt64
        var low: UInt64

        /// The side the next level takes.
        var bit: Int { Int(truncatingIfNeeded: high >> 63) }

        /// Past the tree's nodes (a record value), or out of bits.
        @inline(__always)
        func done(_ nodeCount: Int) -> Bool { node >= nodeCount || depth >= bitCount }

        @inline(__always)
        mutating func step(_ next: Int) {
            node = next
            depth += 1
            high = high << 1 | low >> 63
            low <<= 1
        }
    }

    /// Where an address's walk starts past the prefix table (`lookup(_:)`'s first part);
    /// an IPv6 address in an IPv6 database.
    @inline(__always)
    private func start(_ ip: IPAddress) -> TreeWalk {
        let (table, walk) = root(ip)
        guard let table else { return walk }
        let bits = table.bits
        let entry = table.entries[table.index(walk.high)]
        let node = Int(entry >> 5), depth = Int(entry & 31)
        // A record value reached within the table's bits: that depth; else on from `bits`.
        if node >= nodeCount { return TreeWalk(node: node, depth: depth, bitCount: walk.bitCount, high: 0, low: 0) }
        return TreeWalk(node: node, depth: bits, bitCount: walk.bitCount,
                        high: walk.high << UInt64(bits) | walk.low >> UInt64(64 - bits), low: walk.low << UInt64(bits))
    }

    /// An address's walk from its tree's root (IPv4 addresses from `ipv4Start`), and the
    /// prefix table of that tree's first levels.
    @inline(__always)
    private func root(_ ip: IPAddress) -> (PrefixTable?, TreeWalk) {
        Self.walksIPv6(ip)
            ? (v6Prefixes, TreeWalk(node: 0, depth: 0, bitCount: 128, high: ip.high, low: ip.low))
            : (v4Prefixes, TreeWalk(node: ipv4Start, depth: 0, bitCount: 32, high: ip.low << 32, low: 0))
    }

    /// Asks the CPU for the prefix table's entry of an address (`start`), a few addresses ahead.
    @inline(__always)
    private func prefetchTable(_ ip: IPAddress) {
        let (table, walk) = root(ip)
        guard let table else { return }
        table.entries.withUnsafeBufferPointer { sluice_prefetch($0.baseAddress! + table.index(walk.high)) }
    }

    /// The entry for a record value reached in the tree, checked.
    @inline(__always)
    private func entry(record: Int, depth: Int, bitCount: Int) throws -> MaxMindEntry {
        guard record > nodeCount else {
            throw MaxMindError(path: path, kind: .corruptSearchTree(
                "the tree is deeper than the \(bitCount) bits of an address (node \(record) after the last bit)"))
        }
        let offset = record - nodeCount - 16
        guard offset >= 0 else {
            throw MaxMindError(path: path, kind: .corruptSearchTree(
                "record value \(record) points into the 16-byte separator after the tree (node_count \(nodeCount))"))
        }
        guard offset < dataSize else {
            throw MaxMindError(path: path, kind: .corruptSearchTree(
                "record value \(record) points to data offset \(offset), past the data section (\(dataSize) bytes)"))
        }
        return MaxMindEntry(offset: offset, prefixLength: depth)
    }

    // MARK: - Data

    @inline(__always)
    private var dataSection: DataSection {
        DataSection(file: file, start: dataStart, size: dataSize)
    }

    /// Decodes the whole record of an entry.
    /// - Throws: `MaxMindError` when the data is corrupt or exceeds the decoder's limits.
    public func decode(_ entry: MaxMindEntry) throws -> MMDBValue {
        var budget = DataSection.Budget()
        let section = dataSection
        do throws(DataFault) {
            return try file.withLock { () throws(DataFault) -> MMDBValue in try section.decode(at: entry.offset, budget: &budget).0 }
        } catch {
            throw error.error(path: path, section: .data)
        }
    }

    /// The value at `path` in an entry's record, e.g. `["country", "iso_code"]`,
    /// `["city", "names", "en"]`, `["subdivisions", "0", "iso_code"]` (an array index in
    /// decimal, negative from the end). Keys are compared as UTF-8 bytes and siblings are
    /// skipped by size, not decoded; only the value found is decoded.
    ///
    /// - Returns: nil when a key or index along the path is absent, or a value along it is
    ///   not a map or array. An empty path gives the whole record.
    /// - Throws: `MaxMindError` when the data on the way is corrupt.
    public func value(_ entry: MaxMindEntry, at path: [String]) throws -> MMDBValue? {
        let section = dataSection
        var pos = entry.offset
        do throws(DataFault) {
            return try file.withLock { () throws(DataFault) -> MMDBValue? in
            for component in path {
                let found: Int?
                if let result = component.utf8.withContiguousStorageIfAvailable({ bytes in
                    Result { () throws(DataFault) -> Int? in try section.find(from: pos, component: bytes) }
                }) {
                    found = try result.get()
                } else {
                    let bytes = Array(component.utf8)
                    found = try bytes.withUnsafeBufferPointer { buffer in
                        Result { () throws(DataFault) -> Int? in try section.find(from: pos, component: buffer) }
                    }.get()
                }
                guard let found else { return nil }
                pos = found
            }
            var budget = DataSection.Budget()
            return try section.decode(at: pos, budget: &budget).0
            }
        } catch {
            throw error.error(path: self.path, section: .data)
        }
    }

    /// `components` as a path (see `value(_:at:)`) whose values this database remembers by
    /// record: many addresses share a record (a country's, a city's), and a remembered
    /// value costs no read or decode. Each path remembers `valueCacheEntries` records'
    /// values (least recently used out); only scalars are remembered (strings and bytes
    /// up to 32 bytes), and that a path is absent; maps, arrays and errors never are.
    /// The first 8 paths asked for get a cache; more paths are read as `value(_:at:)`.
    public func path(_ components: [String]) -> MaxMindPath {
        MaxMindPath(database: self, components: components, cache: paths.cache(for: components))
    }

    /// Looks up an address given as text and reads the value at `path` of its record.
    /// - Returns: nil when the database has no record for the address or the record has
    ///   nothing at `path`.
    /// - Throws: `MaxMindError` when `ip` is not an IP address, or as `lookup` and `value`.
    public func lookup(_ ip: String, path: [String]) throws -> MMDBValue? {
        guard let address = IPAddress(ip) else { throw MaxMindError(path: self.path, kind: .invalidAddress(ip)) }
        guard let entry = try lookup(address) else { return nil }
        return try value(entry, at: path)
    }

    // MARK: - Verification

    /// Checks the whole file, as a verifier would, beyond what lookups touch: the data
    /// section separator is 16 zero bytes; every node is reachable from the root (none
    /// unreachable or in a cycle) within an address's bits; every record is a node, "no
    /// data" or a valid data offset; and every record those offsets start decodes.
    /// Work is bounded by the node count and the decoder's per-record limits.
    /// - Throws: `MaxMindError` describing the first problem found.
    public func verify() throws {
        let pages = file
        for i in 0..<16 where file.withLock({ pages.byte(treeSize + i) }) != 0 {
            throw MaxMindError(path: path, kind: .corruptSearchTree("byte \(i) of the data section separator is not zero"))
        }
        guard nodeCount > 0 else { return }
        let bitCount = metadata.ipVersion == 6 ? 128 : 32
        var visited = [Bool](repeating: false, count: nodeCount)
        var stack: [(node: Int, depth: Int)] = [(0, 0)]
        visited[0] = true
        var reached = 1
        var offsets = Set<Int>()
        while let (node, depth) = stack.popLast() {
            for side in 0...1 {
                let r = file.withLock { Self.record(pages, recordSize, node, side) }
                if r < nodeCount {
                    guard depth + 1 < bitCount else {
                        throw MaxMindError(path: path, kind: .corruptSearchTree(
                            "node \(node) at depth \(depth) points to node \(r), deeper than an address's \(bitCount) bits"))
                    }
                    if !visited[r] {
                        visited[r] = true
                        reached += 1
                        stack.append((r, depth + 1))
                    }
                } else if r > nodeCount {
                    offsets.insert(try entry(record: r, depth: depth + 1, bitCount: bitCount).offset)
                }
            }
        }
        guard reached == nodeCount else {
            throw MaxMindError(path: path, kind: .corruptSearchTree(
                "\(nodeCount - reached) of \(nodeCount) nodes cannot be reached from the root"))
        }
        for offset in offsets.sorted() {
            _ = try decode(MaxMindEntry(offset: offset, prefixLength: 0))
        }
    }
}

/// A path into a database's records (`MaxMindDatabase.path(_:)`), with the values found
/// at it remembered by record offset.
public struct MaxMindPath: Sendable {
    public let database: MaxMindDatabase
    public let components: [String]
    let cache: ValueCache?

    /// The value at the path in an entry's record, as `database.value(entry, at: components)`.
    @inline(__always)
    public func value(_ entry: MaxMindEntry) throws -> MMDBValue? {
        guard let cache else { return try database.value(entry, at: components) }
        if let known = cache.value(at: entry.offset) { return known.value }
        let value = try database.value(entry, at: components)
        cache.remember(value, at: entry.offset)
        return value
    }
}

/// The first `bits` levels of a search tree from one start node, flattened (issue #7):
/// entry `p` is where the walk of the `bits`-bit prefix `p` ends, as the node or record
/// value shifted left by 5, or'ed with the number of bits walked (`bits` when it ends on a
/// node, to walk on from; fewer when it reached a record value first).
struct PrefixTable: Sendable {
    let bits: Int
    let entries: [UInt32]

    /// The entry of an address whose bits (from the table's start) lead `high`.
    @inline(__always) func index(_ high: UInt64) -> Int { Int(truncatingIfNeeded: high >> UInt64(64 - bits)) }

    /// Reads the levels (under the file's lock). Nil when `bits` is below 1, or a value
    /// reached does not fit in 27 bits. Work: at most 2^(bits+1) records read.
    init?(_ file: PagedFile, _ recordSize: Int, _ nodeCount: Int, from start: Int, bits: Int) {
        guard bits >= 1, bits <= 24 else { return nil }
        var entries = [UInt32](repeating: 0, count: 1 << bits)
        var stack: [(node: Int, depth: Int, prefix: Int)] = [(start, 0, 0)]
        while let (node, depth, prefix) = stack.popLast() {
            if node >= nodeCount || depth == bits {
                guard node < 1 << 27 else { return nil }
                let entry = UInt32(node) << 5 | UInt32(depth)
                let first = prefix << (bits - depth)
                entries.withUnsafeMutableBufferPointer { b in
                    for i in first..<(first + 1 << (bits - depth)) { b[i] = entry }
                }
                continue
            }
            stack.append((MaxMindDatabase.record(file, recordSize, node, 1), depth + 1, prefix << 1 | 1))
            stack.append((MaxMindDatabase.record(file, recordSize, node, 0), depth + 1, prefix << 1))
        }
        self.bits = bits
        self.entries = entries
    }
}

/// The value caches of one database's paths.
final class PathCaches: @unchecked Sendable {
    static let maxPaths = 8
    let entries: Int
    /// Guarded by `lock`.
    private var caches: [[String]: ValueCache] = [:]
    private let lock = PthreadLock()

    init(entries: Int) { self.entries = entries }

    func cache(for path: [String]) -> ValueCache? {
        guard entries > 0 else { return nil }
        return lock.withLock {
            if let c = caches[path] { return c }
            guard caches.count < Self.maxPaths else { return nil }
            let c = ValueCache(entries: entries)
            caches[path] = c
            return c
        }
    }
}

/// Values by record offset for one path: a bounded, 4-way set-associative cache, least
/// recently used out. Only small scalars are kept, so its memory is bounded by its entry
/// count: 20 bytes a slot, and for each value kept about 100 bytes at most, less when
/// values repeat (a string is kept once). 8,192 entries: 160 KiB to about 1 MiB.
final class ValueCache: @unchecked Sendable {
    /// A value remembered: `value` nil when the path is absent from the record.
    struct Known { let value: MMDBValue? }

    static let ways = 4
    static let maxBytes = 32
    /// Guarded by `lock`: each slot's record offset (-1: none), value, and when it was
    /// last used.
    private let offsets: UnsafeMutablePointer<Int>
    private let values: UnsafeMutablePointer<MMDBValue?>
    private let stamps: UnsafeMutablePointer<UInt32>
    private var clock: UInt32 = 0
    /// Guarded by `lock`: one value for each string remembered (up to `slots / 4`), so
    /// that records with the same string (a country code) share one value's storage.
    private var strings: [String: MMDBValue] = [:]
    private let setShift: Int
    private let slots: Int
    private let lock = PthreadLock()

    /// A cache of `entries` values (rounded down to a power of two, 4 at least).
    init(entries: Int) {
        var sets = 1
        while sets * 2 * Self.ways <= entries { sets *= 2 }
        var log2Sets = 0
        while 1 << log2Sets < sets { log2Sets += 1 }
        setShift = 64 - log2Sets
        slots = sets * Self.ways
        offsets = .allocate(capacity: slots)
        offsets.initialize(repeating: -1, count: slots)
        values = .allocate(capacity: slots)
        values.initialize(repeating: nil, count: slots)
        stamps = .allocate(capacity: slots)
        stamps.initialize(repeating: 0, count: slots)
    }

    deinit {
        offsets.deallocate()
        values.deinitialize(count: slots)
        values.deallocate()
        stamps.deallocate()
    }

    var capacity: Int { slots }

    @inline(__always)
    private func firstSlot(_ offset: Int) -> Int {
        // Fibonacci hashing; a shift by 64 (one set) gives 0.
        let h = UInt64(truncatingIfNeeded: offset) &* 0x9E37_79B9_7F4A_7C15
        return setShift >= 64 ? 0 : Int(truncatingIfNeeded: h >> UInt64(setShift)) &* Self.ways
    }

    /// The value remembered for the record at `offset`, if any.
    @inline(__always)
    func value(at offset: Int) -> Known? {
        let first = firstSlot(offset)
        return lock.withLock {
            clock &+= 1
            for slot in first..<(first + Self.ways) where offsets[slot] == offset {
                stamps[slot] = clock
                return Known(value: values[slot])
            }
            return nil
        }
    }

    /// Remembers `value` for the record at `offset` when it is small enough to keep.
    func remember(_ value: MMDBValue?, at offset: Int) {
        guard Self.keeps(value) else { return }
        let first = firstSlot(offset)
        lock.withLock {
            var value = value
            if case .string(let s)? = value {
                if let shared = strings[s] {
                    value = shared
                } else if strings.count < slots / 4 {
                    strings[s] = value
                }
            }
            clock &+= 1
            var victim = first
            for slot in first..<(first + Self.ways) {
                if offsets[slot] == offset { victim = slot; break }
                if stamps[slot] < stamps[victim] { victim = slot }
            }
            offsets[victim] = offset
            values[victim] = value
            stamps[victim] = clock
        }
    }

    /// Absent, numbers, booleans, and strings and bytes of 32 bytes at most.
    static func keeps(_ value: MMDBValue?) -> Bool {
        switch value {
        case nil: return true
        case .string(let s)?: return s.utf8.count <= maxBytes
        case .bytes(let b)?: return b.count <= maxBytes
        case .map?, .array?: return false
        default: return true
        }
    }
}

/// A pthread mutex (the package's oldest macOS lacks `Synchronization.Mutex`).
final class PthreadLock: @unchecked Sendable {
    // The mutex is only used through pthread_mutex_lock/unlock, which serialise access.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    init() {
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    @inline(__always)
    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}
