import SluiceCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What sluice knows about an input file before reading it.
struct InputFile {
    var path: String
    var display: String
    /// Hash of the first line (up to 1 KiB) of the decompressed content: stays the same
    /// when the file is renamed (rotation) or compressed afterwards, changes when the file
    /// is truncated and written anew. Nil while the file has no complete first line yet.
    var identity: String?
    var isGzip: Bool
    var size: Int64
    /// No write for a while: an unterminated last line is taken as complete.
    var settled: Bool

    /// Seconds without a write after which a file's unterminated last line is read.
    static let settleSeconds: Double = 30
    static let headBytes = 1024

    static func inspect(path: String, display: String) throws(InputError) -> InputFile {
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw InputError(kind: .cannotOpen, file: display, detail: "cannot stat: \(String(cString: strerror(errno)))")
        }
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let age = Double(now.tv_sec - st.st_mtim.tv_sec) + Double(now.tv_nsec - st.st_mtim.tv_nsec) / 1e9
        let source = try openByteSource(path: path, display: display)
        defer { source.close() }
        let isGzip = source is GzipSource
        var head = [UInt8](repeating: 0, count: headBytes)
        var filled = 0
        var truncated = false
        do {
            while filled < headBytes {
                let n = try head.withUnsafeMutableBytes { buffer throws(InputError) in
                    try source.read(into: buffer.baseAddress! + filled, count: headBytes - filled)
                }
                if n == 0 { break }
                filled += n
                if head[..<filled].contains(0x0A) { break }
            }
        } catch {
            // A gzip file cut inside its first KiB: identify it by what could be decoded.
            truncated = true
        }
        let settled = isGzip || age >= settleSeconds
        var identity: String?
        if let nl = head[..<filled].firstIndex(of: 0x0A) {
            identity = ShortDigest.hex(head[...nl])
        } else if filled == headBytes || ((settled || truncated) && filled > 0) {
            identity = ShortDigest.hex(head[..<filled])
        } else if truncated {
            // Nothing decodable at all: still a source, so that its dead letter is kept once.
            identity = ShortDigest.hex(Array("unreadable:\(display)".utf8))
        }
        return InputFile(path: path, display: display, identity: identity, isGzip: isGzip, size: Int64(st.st_size), settled: settled)
    }
}
