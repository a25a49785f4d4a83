/// One record of a CSV file.
public struct CSVRow: Sendable {
    /// The header's column names (empty without a header).
    public var columns: [String]
    /// The fields; nil only for a field equal to `Options.nullText`.
    public var values: [String?]
    /// The 1-based line where the record starts (CR, LF and CRLF each end a line).
    public var line: Int
    /// The byte offset where the record starts.
    public var offset: Int64

    /// The fields as text, NULLs as `nullText` (or empty).
    public var strings: [String] { values.map { $0 ?? "" } }

    /// The value of a column: nil when there is no such column, `.some(nil)` for NULL.
    public subscript(column: String) -> String?? {
        guard let i = columns.firstIndex(of: column), i < values.count else { return nil }
        return .some(values[i])
    }
}

/// Streams the records of a CSV file (RFC 4180): quoted fields with doubled quotes, quoted
/// line breaks, CRLF/LF/CR line ends, a UTF-8 byte order mark, any one-byte delimiter and
/// quote. Blank lines are skipped. A record with another number of fields than the header
/// (or the first record) is reported as an error for that record and reading goes on.
public struct CSVFileReader: Sendable {
    public struct Options: Sendable {
        /// The field separator (ASCII): `,`, `;`, `\t`, `|`, ...
        public var delimiter: Unicode.Scalar = ","
        /// The quote (ASCII), or nil for none.
        public var quote: Unicode.Scalar? = "\""
        /// Whether the first record names the columns.
        public var header: Bool = true
        /// An unquoted field with exactly this text is NULL (nil); by default none is.
        public var nullText: String? = nil
        public var chunkSize: Int = 1 << 20
        /// A record whose fields are larger than this is reported as an error (and skipped).
        public var maxRowBytes: Int = 256 << 20

        public init(delimiter: Unicode.Scalar = ",", quote: Unicode.Scalar? = "\"", header: Bool = true,
                    nullText: String? = nil, chunkSize: Int = 1 << 20, maxRowBytes: Int = 256 << 20) {
            self.delimiter = delimiter
            self.quote = quote
            self.header = header
            self.nullText = nullText
            self.chunkSize = chunkSize
            self.maxRowBytes = maxRowBytes
        }
    }

    public let name: String
    public let options: Options
    private let open: @Sendable () throws -> any DumpByteInput

    /// A reader of the CSV file at `path`.
    public init(path: String, options: Options = Options()) throws(DumpFileError) {
        try self.init(name: path, options: options) { try FileByteInput(path: path) }
    }

    /// A reader over any byte input (e.g. a decompressor); `name` is used in errors.
    public init(name: String, options: Options = Options(),
                open: @escaping @Sendable () throws -> any DumpByteInput) throws(DumpFileError) {
        guard options.delimiter.isASCII, options.delimiter != "\r", options.delimiter != "\n",
              options.quote.map({ $0.isASCII && $0 != options.delimiter && $0 != "\r" && $0 != "\n" }) ?? true else {
            throw DumpFileError(file: name, message: "the CSV delimiter and quote must be distinct ASCII characters other than line ends")
        }
        self.name = name
        self.options = options
        self.open = open
    }

    /// Calls `body` with each record, or the error of a record that could not be read.
    /// Throws when the file cannot be read.
    public func rows(_ body: (Result<CSVRow, DumpRowError>) throws -> Void) throws {
        let it = try makeIterator()
        while let item = try it.next() { try body(item) }
    }

    /// A pull-style iterator over the records; the header is read on the first `next()`.
    public func makeIterator() throws -> CSVRowIterator {
        let input: any DumpByteInput
        do { input = try open() } catch let e as DumpFileError { throw e } catch {
            throw DumpFileError(file: name, message: "cannot open: \(error)")
        }
        return CSVRowIterator(ChunkBuffer(input: input, name: name, chunkSize: options.chunkSize), options: options)
    }
}

/// The records of a CSV file, pulled one at a time with `next()`.
public final class CSVRowIterator {
    private let buf: ChunkBuffer
    private let delimiter: UInt8
    private let quote: Int  // -1 for none
    private let nullText: [UInt8]?
    private let wantHeader: Bool
    private var started = false
    /// The header's names, once read.
    public private(set) var columns: [String] = []
    private var expected: Int?
    private var scratch: RowScratch
    private var line = 1
    private var class256 = [UInt8](repeating: 0, count: 256)

    init(_ buf: ChunkBuffer, options: CSVFileReader.Options) {
        self.buf = buf
        delimiter = UInt8(options.delimiter.value)
        quote = options.quote.map { Int($0.value) } ?? -1
        nullText = options.nullText.map { Array($0.utf8) }
        wantHeader = options.header
        scratch = RowScratch(limit: options.maxRowBytes)
        class256[Int(delimiter)] = 1
        class256[10] = 1
        class256[13] = 1
    }

    private struct Raw { var line: Int; var offset: Int64; var error: (column: Int, message: String)? }

    /// Reads one record into the scratch; nil at the end of the file.
    private func readRecord() throws -> Raw? {
        while true {
            guard try buf.ensure(1) else { return nil }
            let c = buf.ptr[buf.pos]
            // Blank lines.
            if c == 10 { buf.pos += 1; line += 1; continue }
            if c == 13 { buf.pos += 1; if try buf.peek() == 10 { buf.pos += 1 }; line += 1; continue }
            break
        }
        var raw = Raw(line: line, offset: buf.offset, error: nil)
        scratch.reset()
        fields: while true {
            scratch.beginField()
            var quoted = false
            if quote >= 0, try buf.peek() == UInt8(quote) {
                quoted = true
                buf.pos += 1
                let q = UInt8(quote)
                inQuotes: while true {
                    if buf.available == 0, try !buf.fill() {
                        if raw.error == nil { raw.error = (scratch.fieldCount, "unterminated quoted field at the end of the file") }
                        return raw
                    }
                    var i = buf.pos
                    let end = buf.pos + buf.available
                    while i < end {
                        let b = buf.ptr[i]
                        if b == q { break }
                        if b == 10 { line += 1 } else if b == 13, i + 1 < end ? buf.ptr[i + 1] != 10 : true {
                            // A CR alone ends a line; a CR at the chunk end is decided below.
                            if i + 1 < end { line += 1 } else {
                                scratch.append(buf.ptr + buf.pos, i - buf.pos)
                                buf.pos = i
                                if try buf.peek(1) != 10 { line += 1 }
                                scratch.append(13)
                                buf.pos += 1
                                continue inQuotes
                            }
                        }
                        i += 1
                    }
                    scratch.append(buf.ptr + buf.pos, i - buf.pos)
                    buf.pos = i
                    if i == end { continue }
                    // A quote: doubled, or the end of the field.
                    buf.pos += 1
                    if try buf.peek() == q { scratch.append(q); buf.pos += 1; continue }
                    break
                }
                if let n = try buf.peek(), n != delimiter, n != 10, n != 13 {
                    if raw.error == nil { raw.error = (scratch.fieldCount, "'\(Unicode.Scalar(delimiter))' expected after a closing quote") }
                }
            }
            // Unquoted text (or what follows a closing quote, kept as Python's csv does).
            while true {
                if buf.available == 0, try !buf.fill() { finishField(quoted: quoted); return raw }
                var i = buf.pos
                let end = buf.pos + buf.available
                while i < end, class256[Int(buf.ptr[i])] == 0 { i += 1 }
                scratch.append(buf.ptr + buf.pos, i - buf.pos)
                buf.pos = i
                if i == end { continue }
                let b = buf.ptr[i]
                buf.pos += 1
                if b == delimiter { finishField(quoted: quoted); continue fields }
                finishField(quoted: quoted)
                if b == 13, try buf.peek() == 10 { buf.pos += 1 }
                line += 1
                return raw
            }
        }
    }

    private func finishField(quoted: Bool) {
        guard !quoted, let nullText else { return }
        let s = scratch.starts[scratch.starts.count - 1]
        if scratch.bytes.count - s == nullText.count, scratch.bytes[s...].elementsEqual(nullText) {
            scratch.nulls[scratch.nulls.count - 1] = true
        }
    }

    /// The next record or record error; nil at the end of the file.
    public func next() throws -> Result<CSVRow, DumpRowError>? {
        if !started {
            started = true
            if try buf.ensure(3), buf.ptr[buf.pos] == 0xEF, buf.ptr[buf.pos + 1] == 0xBB, buf.ptr[buf.pos + 2] == 0xBF { buf.pos += 3 }
            if wantHeader {
                guard let raw = try readRecord() else { return nil }
                let (values, bad) = scratch.strings()
                if let e = raw.error { throw DumpFileError(file: buf.name, line: raw.line, message: "header: \(e.message)") }
                if bad != nil { throw DumpFileError(file: buf.name, line: raw.line, message: "header is not valid UTF-8") }
                columns = values.map { $0 ?? "" }
                expected = columns.count
            }
        }
        guard let raw = try readRecord() else { return nil }
        func failure(_ column: Int?, _ message: String) -> Result<CSVRow, DumpRowError> {
            .failure(DumpRowError(file: buf.name, line: raw.line, column: column, offset: raw.offset, message: message))
        }
        if scratch.tooBig { return failure(nil, "record is larger than \(scratch.limit) bytes") }
        if let e = raw.error { return failure(e.column, e.message) }
        if let expected, scratch.fieldCount != expected {
            return failure(nil, "record has \(scratch.fieldCount) fields, expected \(expected)")
        }
        if expected == nil { expected = scratch.fieldCount }
        let (values, bad) = scratch.strings()
        if let bad { return failure(bad, "field is not valid UTF-8") }
        return .success(CSVRow(columns: columns, values: values, line: raw.line, offset: raw.offset))
    }
}
