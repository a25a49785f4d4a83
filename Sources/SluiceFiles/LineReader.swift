/// Splits a byte source into lines, counting line numbers and byte offsets, with a
/// limit on line length. A line ends at `\n`; a `\r` before it is dropped.
public final class LineReader {
    public enum Event {
        /// A line's bytes (valid only during the callback), its 1-based number and offset.
        case line(UnsafeRawBufferPointer, line: Int, offset: Int64)
        /// A line longer than the limit: skipped whole.
        case tooLong(line: Int, offset: Int64, length: Int64)
    }

    private let source: any ByteSource
    private let maxLineBytes: Int
    private var buffer: UnsafeMutableRawPointer
    private var capacity: Int
    private var start = 0          // first unconsumed byte in buffer
    private var end = 0            // end of valid bytes in buffer
    private var lineNumber = 0     // lines emitted so far
    private var offset: Int64 = 0  // stream offset of buffer[start]
    private var eof = false
    private var skipping = false   // inside an over-long line
    private var skipStartOffset: Int64 = 0
    private var skipLength: Int64 = 0

    /// Whether a last line without `\n` is a line (false while the file may still grow).
    private let readUnterminatedTail: Bool

    /// `startOffset` and `startLine`: where the source was positioned (a resumed file).
    public init(source: any ByteSource, maxLineBytes: Int, chunkSize: Int = 1 << 20,
                startOffset: Int64 = 0, startLine: Int = 0, readUnterminatedTail: Bool = true) {
        self.source = source
        self.maxLineBytes = maxLineBytes
        self.offset = startOffset
        self.lineNumber = startLine
        self.readUnterminatedTail = readUnterminatedTail
        capacity = max(chunkSize, 64 * 1024)
        buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
    }

    deinit { buffer.deallocate() }

    /// The number of the line that would come next (for a truncated file's dead letter).
    public var nextLineNumber: Int { lineNumber + 1 }
    /// Bytes of the stream consumed by the lines delivered so far.
    public var consumedOffset: Int64 { skipping ? skipStartOffset : offset }
    /// Lines delivered so far (including skipped ones).
    public var linesConsumed: Int { lineNumber }

    /// Delivers up to `maxEvents` events; returns false at the end of the input.
    /// Errors of the source (a truncated gzip stream) are thrown after every complete
    /// line before them was delivered; the unterminated tail is dropped.
    public func read(maxEvents: Int, _ handle: (Event) -> Void) throws(InputError) -> Bool {
        var delivered = 0
        while delivered < maxEvents {
            // Find the next newline in the buffered bytes.
            if let nl = findNewline(from: start) {
                if skipping {
                    skipLength += Int64(nl - start)
                    lineNumber += 1
                    handle(.tooLong(line: lineNumber, offset: skipStartOffset, length: skipLength))
                    skipping = false
                } else {
                    var lineEnd = nl
                    if lineEnd > start, buffer.load(fromByteOffset: lineEnd - 1, as: UInt8.self) == 0x0D { lineEnd -= 1 }
                    lineNumber += 1
                    if lineEnd - start > maxLineBytes {
                        handle(.tooLong(line: lineNumber, offset: offset, length: Int64(lineEnd - start)))
                    } else {
                        handle(.line(UnsafeRawBufferPointer(start: buffer + start, count: lineEnd - start), line: lineNumber, offset: offset))
                    }
                }
                offset += Int64(nl + 1 - start)
                start = nl + 1
                delivered += 1
                continue
            }
            // No newline buffered.
            if eof {
                if start < end, !readUnterminatedTail {
                    // The writer may still be in the middle of this line: leave it for later.
                    return false
                }
                if start < end {
                    if skipping {
                        skipLength += Int64(end - start)
                        lineNumber += 1
                        handle(.tooLong(line: lineNumber, offset: skipStartOffset, length: skipLength))
                        skipping = false
                    } else {
                        var lineEnd = end
                        if buffer.load(fromByteOffset: lineEnd - 1, as: UInt8.self) == 0x0D { lineEnd -= 1 }
                        lineNumber += 1
                        if lineEnd - start > maxLineBytes {
                            handle(.tooLong(line: lineNumber, offset: offset, length: Int64(lineEnd - start)))
                        } else {
                            handle(.line(UnsafeRawBufferPointer(start: buffer + start, count: lineEnd - start), line: lineNumber, offset: offset))
                        }
                    }
                    offset += Int64(end - start)
                    start = end
                    delivered += 1
                } else if skipping {
                    lineNumber += 1
                    handle(.tooLong(line: lineNumber, offset: skipStartOffset, length: skipLength))
                    skipping = false
                    delivered += 1
                }
                return false
            }
            if !skipping, end - start > maxLineBytes {
                // The line is already over the limit: skip the rest of it.
                skipping = true
                skipStartOffset = offset
                skipLength = Int64(end - start)
                offset += Int64(end - start)
                start = end
            } else if skipping {
                skipLength += Int64(end - start)
                offset += Int64(end - start)
                start = end
            }
            try fill()
        }
        return true
    }

    private func findNewline(from: Int) -> Int? {
        guard from < end else { return nil }
        let p = buffer.assumingMemoryBound(to: UInt8.self)
        if let found = memchrPointer(p + from, end - from) { return found - p }
        return nil
    }

    private func memchrPointer(_ p: UnsafeMutablePointer<UInt8>, _ n: Int) -> UnsafeMutablePointer<UInt8>? {
        guard let r = memchr(p, 0x0A, n) else { return nil }
        return r.assumingMemoryBound(to: UInt8.self)
    }

    /// Moves the unconsumed tail to the front, grows the buffer for a long line, reads more.
    private func fill() throws(InputError) {
        if start > 0 {
            if end > start { buffer.copyMemory(from: buffer + start, byteCount: end - start) }
            end -= start
            start = 0
        }
        if end == capacity {
            let newCapacity = capacity * 2
            let bigger = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 16)
            bigger.copyMemory(from: buffer, byteCount: end)
            buffer.deallocate()
            buffer = bigger
            capacity = newCapacity
        }
        do {
            let n = try source.read(into: buffer + end, count: capacity - end)
            if n == 0 { eof = true }
            end += n
        } catch {
            // Drop the unterminated tail; the caller reports the error at the next line.
            eof = true
            start = end
            skipping = false
            throw error
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
