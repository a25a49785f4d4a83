#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A source of bytes for the dump readers: a plain file by default; wrap another source
/// (e.g. a gzip decompressor) to read compressed dumps.
public protocol DumpByteInput: AnyObject {
    /// Fills up to `buffer.count` bytes; returns 0 at the end of the input.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int
    /// Releases the input; called once when reading ends.
    func close()
}

/// A plain file read with read(2).
public final class FileByteInput: DumpByteInput {
    private var fd: Int32
    private let display: String

    /// Opens `path` for reading; `display` names it in errors.
    public init(path: String, display: String? = nil) throws(DumpFileError) {
        self.display = display ?? path
        fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw DumpFileError(file: self.display, message: "cannot open: \(String(cString: strerror(errno)))") }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        while true {
            #if canImport(Glibc)
            let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
            #else
            let n = Darwin.read(fd, buffer.baseAddress, buffer.count)
            #endif
            if n >= 0 { return n }
            if errno == EINTR { continue }
            throw DumpFileError(file: display, message: "read failed: \(String(cString: strerror(errno)))")
        }
    }

    public func close() {
        if fd >= 0 { _ = closeFD(fd); fd = -1 }
    }

    deinit { close() }
}

@inline(__always) private func closeFD(_ fd: Int32) -> Int32 {
    #if canImport(Glibc)
    Glibc.close(fd)
    #else
    Darwin.close(fd)
    #endif
}

/// A problem with an input as a whole (cannot open or read it, the table is missing, an
/// unsupported format): reading stops. Never contains row values.
public struct DumpFileError: Error, Sendable, CustomStringConvertible {
    /// The file, as given to the reader.
    public var file: String
    /// The 1-based line the problem is at, when it is at one.
    public var line: Int?
    public var message: String

    public init(file: String, line: Int? = nil, message: String) {
        self.file = file
        self.line = line
        self.message = message
    }

    public var description: String { line.map { "\(file):\($0): \(message)" } ?? "\(file): \(message)" }
}

/// One row (or record) that could not be read: the reader reports it and goes on with the
/// next one. Never contains row values.
public struct DumpRowError: Error, Sendable, CustomStringConvertible {
    public var file: String
    /// The 1-based line where the row starts.
    public var line: Int
    /// The 1-based column (field) number the problem is in, when it is in one.
    public var column: Int?
    /// The byte offset where the row starts.
    public var offset: Int64
    public var message: String

    public var description: String {
        if let column { return "\(file):\(line): column \(column): \(message)" }
        return "\(file):\(line): \(message)"
    }
}

/// Bytes read in chunks into one buffer, with lookahead and lazy line counting ('\n').
final class ChunkBuffer {
    let input: any DumpByteInput
    let name: String
    private(set) var ptr: UnsafeMutablePointer<UInt8>
    private(set) var capacity: Int
    /// Next unread byte, and the end of the valid bytes, as indexes into `ptr`.
    var pos = 0
    private(set) var end = 0
    /// The absolute offset of `ptr[0]`.
    private(set) var base: Int64 = 0
    private(set) var eof = false
    private var countedTo: Int64 = 0
    private var newlinesBefore = 0

    init(input: any DumpByteInput, name: String, chunkSize: Int) {
        self.input = input
        self.name = name
        capacity = max(chunkSize, 64)
        ptr = .allocate(capacity: capacity)
    }

    deinit {
        ptr.deallocate()
        input.close()
    }

    @inline(__always) var available: Int { end - pos }
    @inline(__always) var offset: Int64 { base + Int64(pos) }

    /// Reads more bytes after `end` (moving the unread bytes to the front first); false at the end.
    func fill() throws -> Bool {
        if eof { return false }
        if pos > 0 {
            countLines(upTo: base + Int64(pos))
            let keep = end - pos
            if keep > 0 { memmove(ptr, ptr + pos, keep) }
            base += Int64(pos)
            end = keep
            pos = 0
        }
        if end == capacity {
            let bigger = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity * 2)
            bigger.update(from: ptr, count: end)
            ptr.deallocate()
            ptr = bigger
            capacity *= 2
        }
        let n: Int
        do {
            n = try input.read(into: UnsafeMutableRawBufferPointer(start: ptr + end, count: capacity - end))
        } catch let e as DumpFileError {
            throw e
        } catch {
            throw DumpFileError(file: name, message: "read failed: \(error)")
        }
        if n == 0 { eof = true; return false }
        end += n
        return true
    }

    /// Makes at least `n` bytes available from `pos` unless the input ends first.
    @inline(__always) func ensure(_ n: Int) throws -> Bool {
        while end - pos < n { if try !fill() { return false } }
        return true
    }

    /// The byte at `pos + k`, or nil past the end of the input.
    @inline(__always) func peek(_ k: Int = 0) throws -> UInt8? {
        if pos + k < end { return ptr[pos + k] }
        return try ensure(k + 1) ? ptr[pos + k] : nil
    }

    /// The 1-based line of an absolute offset not yet discarded, at or after any asked before.
    func line(at offset: Int64) -> Int {
        countLines(upTo: offset)
        return newlinesBefore + 1
    }

    private func countLines(upTo offset: Int64) {
        guard offset > countedTo else { return }
        var i = Int(countedTo - base)
        let e = Int(offset - base)
        while i < e {
            guard let p = memchr(ptr + i, 10, e - i) else { break }
            newlinesBefore += 1
            i = UnsafeMutableRawPointer(mutating: p).assumingMemoryBound(to: UInt8.self) - ptr + 1
        }
        countedTo = offset
    }
}

/// UTF-8 text from bytes, or nil when they are not valid UTF-8.
@inline(__always) func utf8String(_ bytes: UnsafeBufferPointer<UInt8>) -> String? {
    String(validating: bytes, as: UTF8.self)
}

/// Row bytes being collected: the values of one row back to back, with their bounds.
struct RowScratch {
    var bytes: [UInt8] = []
    var starts: [Int] = []
    var nulls: [Bool] = []
    var tooBig = false
    let limit: Int

    init(limit: Int) { self.limit = limit; bytes.reserveCapacity(4096) }

    mutating func reset() {
        bytes.removeAll(keepingCapacity: bytes.capacity <= 1 << 20)
        starts.removeAll(keepingCapacity: true)
        nulls.removeAll(keepingCapacity: true)
        tooBig = false
    }

    @inline(__always) mutating func beginField() { starts.append(bytes.count); nulls.append(false) }
    @inline(__always) mutating func append(_ b: UInt8) {
        if bytes.count >= limit { tooBig = true; return }
        bytes.append(b)
    }
    @inline(__always) mutating func append(_ p: UnsafePointer<UInt8>, _ n: Int) {
        if n == 0 { return }
        if bytes.count + n > limit { tooBig = true; return }
        bytes.append(contentsOf: UnsafeBufferPointer(start: p, count: n))
    }
    var fieldCount: Int { starts.count }

    /// The values, or the 1-based index of the first one that is not UTF-8.
    func strings() -> (values: [String?], badColumn: Int?) {
        var out: [String?] = []
        out.reserveCapacity(starts.count)
        return bytes.withUnsafeBufferPointer { all in
            for i in 0..<starts.count {
                if nulls[i] { out.append(nil); continue }
                let s = starts[i], e = i + 1 < starts.count ? starts[i + 1] : all.count
                guard let str = utf8String(UnsafeBufferPointer(rebasing: all[s..<e])) else { return ([], i + 1) }
                out.append(str)
            }
            return (out, nil)
        }
    }
}
