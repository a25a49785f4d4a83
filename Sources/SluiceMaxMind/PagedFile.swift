#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A file read with `pread` through a bounded cache of small blocks (issue #7).
///
/// It replaces a memory mapping of the whole file: every page of a mapping that lookups
/// touch counts in the process's RSS, and the kernel maps 64 KiB around each page
/// fault, so addresses from everywhere soon make a City database (~60 MB) resident in
/// full. Here the process holds at most `capacity` blocks of the file (4-way set
/// associative, least recently used out); the file's pages stay in the OS page cache,
/// so a miss is a `pread` of one block from memory, not a disk read.
///
/// Blocks are 32 bytes by default, not 4 KiB pages: a lookup uses a few bytes of each
/// node and record it reads, and the profile of a miss was mostly the kernel's copy of
/// the 4 KiB page; in the same bytes of cache, 128 times as many places of the file fit.
/// With the database's prefix tables and value caches, sluice-bench's addresses of
/// 20,000 networks miss 0.26 times a lookup at 1 MiB (64-byte blocks: 0.45; 4 KiB pages
/// at 2 MiB and no tables: 2.6). Each slot costs 8 bytes of bookkeeping besides.
///
/// Not thread-safe by itself: callers hold `lock` around every read (`withLock`), and
/// use a pointer it returns before the next read (which may reuse its block).
final class PagedFile: @unchecked Sendable {
    static let ways = 4
    /// log2 of the block size unless the caller says otherwise: 32 bytes.
    static let defaultBlockShift = 5

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
    /// blocks are large enough for the file's to fit), when each slot was last used, the
    /// slots' bytes, and a buffer for reads that cross a block.
    private let tags: UnsafeMutablePointer<UInt32>
    private let stamps: UnsafeMutablePointer<UInt32>
    private let pages: UnsafeMutableRawPointer
    private var clock: UInt32 = 0
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
    init(path: String, cacheBytes: Int, blockShift: Int = PagedFile.defaultBlockShift) throws(MaxMindError) {
        self.path = path
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
        self.fd = fd
        count = Int(info.st_size)
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
        stamps = .allocate(capacity: slots)
        stamps.initialize(repeating: 0, count: slots)
        pages = .allocate(byteCount: slots * blockSize, alignment: max(blockSize, 16))
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        close(fd)
        tags.deallocate()
        stamps.deallocate()
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

    /// The cached bytes of block `p`, read on a miss.
    @inline(__always)
    private func page(_ p: Int) -> UnsafeRawPointer {
        // Most reads are in the block of the read before (a record's bytes, a subtree).
        if p == lastPage { return lastPointer }
        let first = (p & setMask) &* Self.ways
        clock &+= 1
        var pointer: UnsafeRawPointer?
        let tag = UInt32(truncatingIfNeeded: p)
        for slot in first..<(first + Self.ways) where tags[slot] == tag {
            stamps[slot] = clock
            pointer = UnsafeRawPointer(pages + slot << blockShift)
            break
        }
        let found = pointer ?? UnsafeRawPointer(load(p, first: first))
        // A slot is only reused by `load`, which makes its new block the last one.
        lastPage = p
        lastPointer = found
        return found
    }

    private func load(_ p: Int, first: Int) -> UnsafeMutableRawPointer {
        var victim = first
        for slot in (first + 1)..<(first + Self.ways) where stamps[slot] < stamps[victim] { victim = slot }
        let size = blockSize
        let buffer = pages + victim << blockShift
        var done = 0
        while done < size {
            let n = pread(fd, buffer + done, size - done, off_t(p << blockShift + done))
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
        if done < size { (buffer + done).initializeMemory(as: UInt8.self, repeating: 0, count: size - done) }
        misses += 1
        tags[victim] = UInt32(truncatingIfNeeded: p)
        stamps[victim] = clock
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
