#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import CPrefetch

/// A file read with `pread` through a bounded cache of small blocks (issue #7).
///
/// It replaces a memory mapping of the whole file: every page of a mapping that lookups
/// touch counts in the process's RSS, and the kernel maps 64 KiB around each page
/// fault, so addresses from everywhere soon make a City database (~60 MB) resident in
/// full. Here the process holds at most `capacity` blocks of the file (4-way set
/// associative, about the least recently used out); the file's pages stay in the OS page cache,
/// so a miss is a `pread` of one block from memory, not a disk read.
///
/// Blocks are 16 bytes by default, not 4 KiB pages: a lookup uses a few bytes of each
/// node and record it reads, and the profile of a miss was mostly the kernel's copy of
/// the 4 KiB page; in the same bytes of cache, 256 times as many places of the file fit.
/// A miss reads the aligned 64 bytes around the block (one `pread`, as cheap as 16
/// bytes) and keeps the neighbours as the next to evict in their sets: a subtree of the
/// search tree is contiguous, and the first reads of a network's nodes are misses. With
/// the database's prefix tables and value caches, sluice-bench's addresses of 20,000
/// networks miss about 0.16 times a lookup at 1 MiB (32-byte blocks: 0.26, 64-byte:
/// 0.45; 4 KiB pages at 2 MiB and no tables: 2.6); the benchmark's 200,000-line run
/// reads ~124,000 times (585,000 pages before). Each slot costs 4 bytes of bookkeeping
/// besides, and each set of 4 slots one byte.
///
/// Not thread-safe by itself: callers hold `lock` around every read (`withLock`), and
/// use a pointer it returns before the next read (which may reuse its block).
final class PagedFile: @unchecked Sendable {
    static let ways = 4
    /// log2 of the block size unless the caller says otherwise: 16 bytes.
    static let defaultBlockShift = 4

    let path: String
    /// The file's size in bytes.
    let count: Int
    /// log2 of the block size, and the block size (4...4096 bytes).
    let blockShift: Int
    let blockSize: Int
    private let blockMask: Int
    private let fd: Int32
    private let setMask: Int
    /// Guarded by `mutex`: the block number held by each slot (`UInt32.max`: none; the
    /// blocks are large enough for the file's to fit), each set's pseudo-LRU bits (a
    /// tree of 3: bit 0 set, the next victim is in ways 2-3, else 0-1; bit 1 set, it is
    /// way 1 of 0-1; bit 2 set, way 3 of 2-3), the slots' bytes, and a buffer for reads
    /// that cross a block.
    private let tags: UnsafeMutablePointer<UInt32>
    private let lru: UnsafeMutablePointer<UInt8>
    private let pages: UnsafeMutableRawPointer
    /// log2 of the blocks read at a time (64 bytes at least), and a buffer for them.
    private let groupShift: Int
    private let group: UnsafeMutableRawPointer
    private var lastPage = -1
    private var lastPointer = UnsafeRawPointer(bitPattern: 1)!
    private var scratch: UnsafeMutableRawPointer?
    private var scratchSize = 0
    private(set) var misses = 0
    private let slots: Int
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    /// Opens `path`; at most `cacheBytes` (rounded to a power of two of 4-block sets, at
    /// least one set) of it are held at a time, in blocks of `1 << blockShift` bytes
    /// (clamped to 4...4096).
    convenience init(path: String, cacheBytes: Int, blockShift: Int = PagedFile.defaultBlockShift) throws(MaxMindError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw MaxMindError(path: path, kind: .cannotOpen(errno: errno)) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let e = errno
            close(fd)
            throw MaxMindError(path: path, kind: .cannotOpen(errno: e))
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            let code = (info.st_mode & S_IFMT) == S_IFDIR ? EISDIR : ENODEV
            throw MaxMindError(path: path, kind: .cannotOpen(errno: code))
        }
        self.init(fd: fd, path: path, count: Int(info.st_size), cacheBytes: cacheBytes, blockShift: blockShift)
    }

    /// Another cache of `other`'s open file (its descriptor duplicated: the same file,
    /// even if its path has been replaced since), e.g. with larger blocks for one pass.
    convenience init(sharing other: PagedFile, cacheBytes: Int, blockShift: Int) throws(MaxMindError) {
        let fd = fcntl(other.fd, F_DUPFD_CLOEXEC, 0)
        guard fd >= 0 else { throw MaxMindError(path: other.path, kind: .cannotOpen(errno: errno)) }
        self.init(fd: fd, path: other.path, count: other.count, cacheBytes: cacheBytes, blockShift: blockShift)
    }

    private init(fd: Int32, path: String, count: Int, cacheBytes: Int, blockShift: Int) {
        self.path = path
        self.fd = fd
        self.count = count
        var shift = min(max(blockShift, 2), 12)
        while count >> shift >= Int(UInt32.max) { shift += 1 }
        self.blockShift = shift
        blockSize = 1 << shift
        blockMask = blockSize - 1
        // Sets: a power of two, no more than the file needs.
        let fileBlocks = max(1, (count + blockSize - 1) >> shift)
        let wanted = max(1, min(cacheBytes >> shift, fileBlocks) / Self.ways)
        var sets = 1
        while sets * 2 <= wanted { sets *= 2 }
        setMask = sets - 1
        slots = sets * Self.ways
        tags = .allocate(capacity: slots)
        tags.initialize(repeating: .max, count: slots)
        groupShift = max(0, 6 - shift)
        group = .allocate(byteCount: blockSize << groupShift, alignment: 16)
        lru = .allocate(capacity: sets)
        lru.initialize(repeating: 0, count: sets)
        // A set's slots (4 × 16 bytes) in one cache line (`prefetch`).
        pages = .allocate(byteCount: slots * blockSize, alignment: max(blockSize, 64))
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        close(fd)
        tags.deallocate()
        lru.deallocate()
        group.deallocate()
        pages.deallocate()
        scratch?.deallocate()
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// The most bytes of the file this object holds at a time.
    var capacityBytes: Int { slots * blockSize }

    /// The bytes of the file held now (pages read into the cache).
    var cachedBytes: Int {
        withLock { (0..<slots).reduce(0) { $0 + (tags[$1] != .max ? blockSize : 0) } }
    }

    @inline(__always)
    func withLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// The byte at `offset` (< count). Under `lock`.
    @inline(__always)
    func byte(_ offset: Int) -> UInt8 {
        page(offset >> blockShift).load(fromByteOffset: offset & blockMask, as: UInt8.self)
    }

    /// `n` contiguous bytes at `offset` (`offset + n <= count`), valid until the next
    /// read. Under `lock`.
    @inline(__always)
    func bytes(at offset: Int, count n: Int) -> UnsafeRawPointer {
        let inPage = offset & blockMask
        if inPage + n <= blockSize { return page(offset >> blockShift) + inPage }
        return spanning(offset, n)
    }

    /// A big-endian UInt32 at `offset`; bytes past the end of the file read as zero.
    @inline(__always)
    func uint32(at offset: Int) -> UInt32 {
        let inPage = offset & blockMask
        if inPage <= blockSize - 4 {
            return UInt32(bigEndian: page(offset >> blockShift).loadUnaligned(fromByteOffset: inPage, as: UInt32.self))
        }
        var v: UInt32 = 0
        for i in 0..<4 { v = v << 8 | UInt32(offset + i < count ? byte(offset + i) : 0) }
        return v
    }

    /// Asks the CPU to bring toward its caches what a read at `offset` looks at first: the
    /// tags and the recency bits of the block's set, and the set's slots (one cache line
    /// with 16-byte blocks). A hint: it never reads the file nor changes the cache.
    /// Under `lock` or not (it reads nothing).
    @inline(__always)
    func prefetch(_ offset: Int) {
        let set = (offset >> blockShift) & setMask
        let first = set &* Self.ways
        sluice_prefetch(tags + first)
        sluice_prefetch(lru + set)
        sluice_prefetch(pages + first << blockShift)
    }

    /// The cached bytes of block `p`, read on a miss.
    @inline(__always)
    private func page(_ p: Int) -> UnsafeRawPointer {
        // Most reads are in the block of the read before (a record's bytes, a subtree).
        if p == lastPage { return lastPointer }
        let set = p & setMask
        let first = set &* Self.ways
        var pointer: UnsafeRawPointer?
        let tag = UInt32(truncatingIfNeeded: p)
        for slot in first..<(first + Self.ways) where tags[slot] == tag {
            touch(set, way: slot - first)
            pointer = UnsafeRawPointer(pages + slot << blockShift)
            break
        }
        let found = pointer ?? UnsafeRawPointer(load(p, set: set))
        // A slot is only reused by `load`, which makes its new block the last one.
        lastPage = p
        lastPointer = found
        return found
    }

    /// Marks `way` of `set` as the most recently used: the bits point away from it.
    @inline(__always)
    private func touch(_ set: Int, way: Int) {
        var bits = lru[set]
        switch way {
        case 0: bits |= 0b011
        case 1: bits = bits & ~0b010 | 0b001
        case 2: bits = bits & ~0b001 | 0b100
        default: bits &= ~0b101
        }
        lru[set] = bits
    }

    /// The way of `set` to evict next.
    @inline(__always)
    private func victim(_ set: Int) -> Int {
        let bits = lru[set]
        return bits & 1 == 0 ? Int(bits >> 1 & 1) : 2 + Int(bits >> 2 & 1)
    }

    /// Reads block `p`, and with it the other blocks of its aligned group of
    /// `groupBlocks` (one `pread` of `groupBlocks` blocks): `p` goes into `set` as its most
    /// recently used way, each other block not held yet into its own set as the next to
    /// evict there (nearby nodes are often read next: a subtree is contiguous).
    private func load(_ p: Int, set: Int) -> UnsafeMutableRawPointer {
        let size = blockSize << groupShift
        let firstBlock = (p >> groupShift) << groupShift
        var done = 0
        while done < size {
            let n = pread(fd, group + done, size - done, off_t(firstBlock << blockShift + done))
            if n > 0 {
                done += n
            } else if n < 0, errno == EINTR {
                continue
            } else {
                // The end of the file (or a read error, which the data's checks then
                // report as corrupt data): zeros.
                break
            }
        }
        if done < size { (group + done).initializeMemory(as: UInt8.self, repeating: 0, count: size - done) }
        misses += 1
        // The others first, so that in a cache of fewer sets than a group's blocks, `p`
        // is not evicted by them.
        for b in firstBlock..<(firstBlock + 1 << groupShift) where b != p {
            let s = b & setMask
            let first = s &* Self.ways
            let tag = UInt32(truncatingIfNeeded: b)
            guard !(first..<(first + Self.ways)).contains(where: { tags[$0] == tag }) else { continue }
            let slot = first + victim(s)
            (pages + slot << blockShift).copyMemory(from: group + (b - firstBlock) << blockShift, byteCount: blockSize)
            tags[slot] = tag
        }
        let way = victim(set)
        let slot = set &* Self.ways + way
        let buffer = pages + slot << blockShift
        buffer.copyMemory(from: group + (p - firstBlock) << blockShift, byteCount: blockSize)
        tags[slot] = UInt32(truncatingIfNeeded: p)
        touch(set, way: way)
        return buffer
    }

    /// Bytes that cross a block boundary, copied into the scratch buffer.
    private func spanning(_ offset: Int, _ n: Int) -> UnsafeRawPointer {
        if scratchSize < n {
            scratch?.deallocate()
            scratchSize = max(n, 2 * scratchSize, 256)
            scratch = .allocate(byteCount: scratchSize, alignment: 8)
        }
        let out = scratch!
        var done = 0
        while done < n {
            let at = offset + done
            let inPage = at & blockMask
            let chunk = min(n - done, blockSize - inPage)
            (out + done).copyMemory(from: page(at >> blockShift) + inPage, byteCount: chunk)
            done += chunk
        }
        return UnsafeRawPointer(out)
    }
}
