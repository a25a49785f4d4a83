import CZlib
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A problem reading an input file as a whole (not one record of it).
public struct InputError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable { case cannotOpen, readFailed, truncatedGzip, corruptGzip }
    public var kind: Kind
    public var file: String
    public var detail: String
    public var description: String { "\(file): \(detail)" }
}

/// Sequential bytes from a file: plain or gzip-decompressed.
public protocol ByteSource: AnyObject {
    /// Fills up to `count` bytes at `buffer`; 0 at the end.
    func read(into buffer: UnsafeMutableRawPointer, count: Int) throws(InputError) -> Int
    func close()
}

/// Opens a file, decompressing it when its content starts with the gzip magic bytes
/// (whatever its name).
public func openByteSource(path: String, display: String) throws(InputError) -> any ByteSource {
    try openByteSource(path: path, display: display, skip: 0)
}

/// Opens a file and positions it `skip` bytes into its (decompressed) content: a seek
/// for plain files, decompress-and-discard for gzip. Returns nil when the content is
/// shorter than `skip`.
public func openByteSource(path: String, display: String, skip: Int64) throws(InputError) -> any ByteSource {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else {
        throw InputError(kind: .cannotOpen, file: display, detail: "cannot open: \(String(cString: strerror(errno)))")
    }
    var magic: (UInt8, UInt8) = (0, 0)
    let n = withUnsafeMutableBytes(of: &magic) { pread(fd, $0.baseAddress, 2, 0) }
    let plain = FileSource(fd: fd, display: display)
    if n == 2, magic.0 == 0x1F, magic.1 == 0x8B {
        let gz = try GzipSource(inner: plain, display: display)
        var left = skip
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: 1 << 16, alignment: 16)
        defer { scratch.deallocate() }
        while left > 0 {
            let got = try gz.read(into: scratch, count: Int(min(left, 1 << 16)))
            if got == 0 { break }
            left -= Int64(got)
        }
        return gz
    }
    if skip > 0 { lseek(fd, off_t(skip), SEEK_SET) }
    return plain
}

/// A plain file read with read(2).
public final class FileSource: ByteSource {
    private var fd: Int32
    private let display: String

    init(fd: Int32, display: String) {
        self.fd = fd
        self.display = display
    }

    public func read(into buffer: UnsafeMutableRawPointer, count: Int) throws(InputError) -> Int {
        while true {
            let n = Glibc.read(fd, buffer, count)
            if n >= 0 { return n }
            if errno == EINTR { continue }
            throw InputError(kind: .readFailed, file: display, detail: "read failed: \(String(cString: strerror(errno)))")
        }
    }

    public func close() {
        if fd >= 0 { _ = Glibc.close(fd); fd = -1 }
    }

    deinit { close() }
}

/// Gzip decompression with zlib, streaming, including files of several gzip members
/// (as `cat a.gz b.gz` makes). Input that ends inside a member is reported as
/// `truncatedGzip` after all the bytes that could be decoded were returned.
public final class GzipSource: ByteSource {
    private let inner: any ByteSource
    private let display: String
    private var stream = z_stream()
    private var input: UnsafeMutableRawPointer
    private let inputCapacity = 256 * 1024
    private var inputEnded = false
    private var memberEnded = false
    private var finished = false
    private var initialized = false

    init(inner: any ByteSource, display: String) throws(InputError) {
        self.inner = inner
        self.display = display
        input = UnsafeMutableRawPointer.allocate(byteCount: inputCapacity, alignment: 16)
        // 15 + 16: gzip format only, largest window.
        let rc = inflateInit2_(&stream, 15 + 16, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard rc == Z_OK else {
            input.deallocate()
            throw InputError(kind: .corruptGzip, file: display, detail: "cannot start gzip decoder")
        }
        initialized = true
    }

    public func read(into buffer: UnsafeMutableRawPointer, count: Int) throws(InputError) -> Int {
        if let error = deferredError {
            deferredError = nil
            finished = true
            throw error
        }
        if finished { return 0 }
        stream.next_out = buffer.assumingMemoryBound(to: Bytef.self)
        stream.avail_out = uInt(count)
        while stream.avail_out > 0 {
            if stream.avail_in == 0 && !inputEnded {
                let n = try inner.read(into: input, count: inputCapacity)
                if n == 0 { inputEnded = true } else {
                    stream.next_in = input.assumingMemoryBound(to: Bytef.self)
                    stream.avail_in = uInt(n)
                }
            }
            if stream.avail_in == 0 && inputEnded {
                let produced = count - Int(stream.avail_out)
                if memberEnded {
                    finished = true
                    return produced
                }
                if produced > 0 { return produced }
                finished = true
                throw InputError(kind: .truncatedGzip, file: display, detail: "gzip stream ends early (truncated file)")
            }
            if memberEnded {
                // More input after a member's end: the next member starts.
                inflateReset(&stream)
                memberEnded = false
            }
            let rc = inflate(&stream, Z_NO_FLUSH)
            switch rc {
            case Z_OK: continue
            case Z_STREAM_END: memberEnded = true
            case Z_BUF_ERROR:
                if stream.avail_in == 0 { continue }
                fallthrough
            default:
                let error = InputError(kind: .corruptGzip, file: display, detail: "corrupt gzip data")
                let produced = count - Int(stream.avail_out)
                if produced > 0 { deferredError = error; return produced }
                finished = true
                throw error
            }
        }
        return count - Int(stream.avail_out)
    }

    /// An error met after some bytes were decoded; thrown on the next read.
    private var deferredError: InputError?

    public func close() {
        if initialized { inflateEnd(&stream); initialized = false }
        inner.close()
    }

    deinit {
        close()
        input.deallocate()
    }
}
