#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A table name as in SQL: an optional schema and a name, each unquoted (folded to lower
/// case, as PostgreSQL does) or double-quoted (exact, `""` for a quote).
public struct PgTableName: Sendable, Hashable, CustomStringConvertible {
    public var schema: String?
    public var name: String

    public init(schema: String?, name: String) {
        self.schema = schema
        self.name = name
    }

    /// Parses `users`, `public.users`, `public."Sign Ups"`; nil when it is not a name.
    public init?(parsing text: String) {
        var parts: [String] = []
        var bytes = Array(text.utf8)[...]
        while true {
            while let f = bytes.first, f == 32 { bytes = bytes.dropFirst() }
            if bytes.first == 34 {
                bytes = bytes.dropFirst()
                var part: [UInt8] = []
                var closed = false
                while let c = bytes.first {
                    bytes = bytes.dropFirst()
                    if c == 34 {
                        if bytes.first == 34 { part.append(34); bytes = bytes.dropFirst() } else { closed = true; break }
                    } else { part.append(c) }
                }
                guard closed, !part.isEmpty else { return nil }
                parts.append(String(decoding: part, as: UTF8.self))
            } else {
                var part: [UInt8] = []
                while let c = bytes.first, c != 46, c != 34 {
                    part.append(c >= 65 && c <= 90 ? c + 32 : c)
                    bytes = bytes.dropFirst()
                }
                while part.last == 32 { part.removeLast() }
                guard !part.isEmpty else { return nil }
                parts.append(String(decoding: part, as: UTF8.self))
            }
            while let f = bytes.first, f == 32 { bytes = bytes.dropFirst() }
            if bytes.isEmpty { break }
            guard bytes.first == 46 else { return nil }
            bytes = bytes.dropFirst()
        }
        guard parts.count == 1 || parts.count == 2 else { return nil }
        self.init(schema: parts.count == 2 ? parts[0] : nil, name: parts[parts.count - 1])
    }

    public var description: String {
        func q(_ s: String) -> String { "\"" + s.split(separator: "\"", omittingEmptySubsequences: false).joined(separator: "\"\"") + "\"" }
        return schema.map { q($0) + "." + q(name) } ?? q(name)
    }
}

/// One row of the table read from a dump.
public struct PgDumpRow: Sendable {
    /// The column names, in the order of `values` (empty when the dump does not name them:
    /// an `--inserts` data-only dump without its CREATE TABLE).
    public var columns: [String]
    /// The values as PostgreSQL prints them as text; nil is SQL NULL. Numbers keep their text,
    /// booleans are `t`/`f`, bit strings their digits.
    public var values: [String?]
    /// The 1-based line where the row starts.
    public var line: Int
    /// The byte offset where the row starts.
    public var offset: Int64

    /// The value of a column: nil when there is no such column, `.some(nil)` for NULL.
    public subscript(column: String) -> String?? {
        guard let i = columns.firstIndex(of: column), i < values.count else { return nil }
        return .some(values[i])
    }
}

/// Streams the rows of one table out of a PostgreSQL plain-format dump (`pg_dump` default
/// `COPY ... FROM stdin` blocks, or `--inserts` / `--column-inserts`).
///
/// The dump is read in chunks; statements of other tables are skipped by a lexer that only
/// finds where each statement ends (quotes, dollar quotes and comments respected, COPY data
/// blocks jumped line by line), so text that merely looks like the wanted block inside
/// another table's data or a function body is never mistaken for it. Memory is one chunk
/// plus the largest row.
public struct PgDumpReader: Sendable {
    /// Reading options.
    public struct Options: Sendable {
        /// Bytes read at a time.
        public var chunkSize: Int = 1 << 20
        /// A row whose values are larger than this is reported as an error (and skipped).
        public var maxRowBytes: Int = 256 << 20
        public init(chunkSize: Int = 1 << 20, maxRowBytes: Int = 256 << 20) {
            self.chunkSize = chunkSize
            self.maxRowBytes = maxRowBytes
        }
    }

    public let name: String
    public let table: PgTableName
    public let options: Options
    private let open: @Sendable () throws -> any DumpByteInput

    /// A reader of `table` (e.g. `public.users`, `users`, `public."Sign Ups"`; without a schema
    /// any schema matches, but only one) in the dump file at `path`.
    public init(path: String, table: String, options: Options = Options()) throws(DumpFileError) {
        guard let t = PgTableName(parsing: table) else {
            throw DumpFileError(file: path, message: "not a table name: \(table)")
        }
        self.init(name: path, table: t, options: options) { try FileByteInput(path: path) }
    }

    /// A reader over any byte input (e.g. a decompressor); `name` is used in errors.
    public init(name: String, table: PgTableName, options: Options = Options(),
                open: @escaping @Sendable () throws -> any DumpByteInput) {
        self.name = name
        self.table = table
        self.options = options
        self.open = open
    }

    /// Calls `body` with each row, or with the error of a row that could not be read, in
    /// dump order. Throws when the input cannot be read, the table is not in the dump, or
    /// its data is in a form this reader does not read.
    public func rows(_ body: (Result<PgDumpRow, DumpRowError>) throws -> Void) throws {
        let it = try makeIterator()
        while let item = try it.next() { try body(item) }
    }

    /// A pull-style iterator over the rows.
    public func makeIterator() throws -> PgDumpRowIterator {
        let input: any DumpByteInput
        do { input = try open() } catch let e as DumpFileError { throw e } catch {
            throw DumpFileError(file: name, message: "cannot open: \(error)")
        }
        return PgDumpRowIterator(ChunkBuffer(input: input, name: name, chunkSize: options.chunkSize), table: table, options: options)
    }
}

// Byte classes.
@inline(__always) private func isSpace(_ c: UInt8) -> Bool { c == 32 || (c >= 9 && c <= 13) }
@inline(__always) private func isIdentStart(_ c: UInt8) -> Bool {
    (c | 0x20) >= 97 && (c | 0x20) <= 122 || c == 95 || c >= 0x80
}
@inline(__always) private func isIdentChar(_ c: UInt8) -> Bool { isIdentStart(c) || (c >= 48 && c <= 57) || c == 36 }
@inline(__always) private func hexValue(_ c: UInt8) -> UInt8? {
    switch c {
    case 48...57: c - 48
    case 65...70: c - 55
    case 97...102: c - 87
    default: nil
    }
}

private struct RowFailure: Error { var column: Int?; var message: String }

/// The rows of one table, pulled one at a time with `next()`.
public final class PgDumpRowIterator {
    private let buf: ChunkBuffer
    private let table: PgTableName
    private var scratch: RowScratch
    private enum Mode { case scanning, copy, tuples, finished }
    private var mode = Mode.scanning
    private var found = false
    private var lockedSchema: String??  // the schema matched when the name had none
    private var columns: [String] = []
    private var createColumns: [String]? // from CREATE TABLE, generated columns marked
    private var generated: [Bool] = []
    private var insertDropGenerated = false
    private var standardStrings = true
    private var copyLineStart: Int64 = 0

    init(_ buf: ChunkBuffer, table: PgTableName, options: PgDumpReader.Options) {
        self.buf = buf
        self.table = table
        scratch = RowScratch(limit: options.maxRowBytes)
    }

    /// The next row or row error; nil at the end of the dump.
    public func next() throws -> Result<PgDumpRow, DumpRowError>? {
        while true {
            switch mode {
            case .finished: return nil
            case .copy:
                if let r = try nextCopyRow() { return r }
            case .tuples:
                if let r = try nextTuple() { return r }
            case .scanning:
                try scanStatement()
            }
        }
    }

    private func fail(_ message: String, line: Int? = nil) -> DumpFileError {
        DumpFileError(file: buf.name, line: line ?? buf.line(at: buf.offset), message: message)
    }

    // MARK: statements

    private func skipSpaceAndComments() throws {
        while let c = try buf.peek() {
            if isSpace(c) { buf.pos += 1; continue }
            if c == 45, try buf.peek(1) == 45 { try skipLine(); continue }
            if c == 47, try buf.peek(1) == 42 { try skipBlockComment(); continue }
            return
        }
    }

    /// Skips to just after the next '\n' (or the end).
    private func skipLine() throws {
        while true {
            if buf.available > 0, let p = memchr(buf.ptr + buf.pos, 10, buf.available) {
                buf.pos = UnsafeMutableRawPointer(mutating: p).assumingMemoryBound(to: UInt8.self) - buf.ptr + 1
                return
            }
            buf.pos = buf.ptr.distance(to: buf.ptr + buf.pos + buf.available)
            if try !buf.fill() { return }
        }
    }

    private func skipBlockComment() throws {
        buf.pos += 2
        var depth = 1
        while depth > 0, let c = try buf.peek() {
            if c == 42, try buf.peek(1) == 47 { depth -= 1; buf.pos += 2 } else if c == 47, try buf.peek(1) == 42 {
                depth += 1; buf.pos += 2
            } else { buf.pos += 1 }
        }
    }

    /// An unquoted word (as written) at `pos`, or nil.
    private func readWord() throws -> String? {
        guard let c = try buf.peek(), isIdentStart(c) else { return nil }
        var bytes: [UInt8] = []
        while let c = try buf.peek(), isIdentChar(c) { bytes.append(c); buf.pos += 1 }
        return String(decoding: bytes, as: UTF8.self)
    }

    private func readKeyword() throws -> String? { try readWord()?.lowercased() }

    /// An identifier: a word folded to lower case, or a "quoted" one.
    private func readIdentifier() throws -> String? {
        guard let c = try buf.peek() else { return nil }
        if c == 34 {
            buf.pos += 1
            var bytes: [UInt8] = []
            while let c = try buf.peek() {
                buf.pos += 1
                if c == 34 {
                    if try buf.peek() == 34 { bytes.append(34); buf.pos += 1 } else { return String(decoding: bytes, as: UTF8.self) }
                } else { bytes.append(c) }
            }
            return nil
        }
        guard isIdentStart(c) else { return nil }
        var bytes: [UInt8] = []
        while let c = try buf.peek(), isIdentChar(c) { bytes.append(c >= 65 && c <= 90 ? c + 32 : c); buf.pos += 1 }
        return String(decoding: bytes, as: UTF8.self)
    }

    private func readQualifiedName() throws -> [String] {
        var parts: [String] = []
        while true {
            try skipSpaceAndComments()
            guard let p = try readIdentifier() else { return parts }
            parts.append(p)
            try skipSpaceAndComments()
            guard try buf.peek() == 46 else { return parts }
            buf.pos += 1
        }
    }

    /// Whether a statement's table is the wanted one (locking the schema on the first match).
    private func matches(_ parts: [String], at line: Int) throws -> Bool {
        guard let last = parts.last, last == table.name else { return false }
        let schema: String? = parts.count >= 2 ? parts[parts.count - 2] : nil
        if let want = table.schema { return schema == want }
        if let locked = lockedSchema {
            if locked != schema {
                throw fail("table name \(table.name) is ambiguous: the dump has it in schemas \(locked ?? "(none)") and \(schema ?? "(none)"); qualify it", line: line)
            }
        } else { lockedSchema = .some(schema) }
        return true
    }

    /// A parenthesised list of identifiers.
    private func readColumnList() throws -> [String]? {
        try skipSpaceAndComments()
        guard try buf.peek() == 40 else { return nil }
        buf.pos += 1
        var cols: [String] = []
        while true {
            try skipSpaceAndComments()
            if try buf.peek() == 41 { buf.pos += 1; return cols }
            guard let id = try readIdentifier() else { return nil }
            cols.append(id)
            try skipSpaceAndComments()
            if try buf.peek() == 44 { buf.pos += 1 }
        }
    }

    /// Reads one statement at the scan position: the wanted table's data switches the mode;
    /// anything else is skipped.
    private func scanStatement() throws {
        try skipSpaceAndComments()
        guard let c = try buf.peek() else {
            mode = .finished
            if !found { throw DumpFileError(file: buf.name, message: "table \(table) is not in the dump") }
            return
        }
        if c == 92 { try skipLine(); return }  // a psql meta-command (\connect, \restrict)
        if c == 59 { buf.pos += 1; return }
        let line = buf.line(at: buf.offset)
        guard let word = try readKeyword() else { _ = try skipStatement(); return }
        switch word {
        case "copy":
            let name = try readQualifiedName()
            let cols = try readColumnList()
            try skipSpaceAndComments()
            let from = try readKeyword()
            try skipSpaceAndComments()
            let stdin = try readKeyword()
            let isData = from == "from" && stdin == "stdin"
            if isData, try matches(name, at: line) {
                try skipSpaceAndComments()
                guard try buf.peek() == 59 else {
                    throw fail("COPY of \(table) has options; only the default text format is read", line: line)
                }
                buf.pos += 1
                try skipLine()
                found = true
                columns = cols ?? createColumns?.enumerated().filter { !generated[$0.offset] }.map(\.element) ?? []
                mode = .copy
                return
            }
            _ = try skipStatement()
            if isData { try skipLine(); try skipCopyData() }
        case "insert":
            try skipSpaceAndComments()
            guard try readKeyword() == "into" else { _ = try skipStatement(); return }
            let name = try readQualifiedName()
            guard try matches(name, at: line) else { _ = try skipStatement(); return }
            found = true
            let cols = try readColumnList()
            try skipSpaceAndComments()
            var kw = try readKeyword()
            if kw == "overriding" {
                try skipSpaceAndComments(); _ = try readKeyword()
                try skipSpaceAndComments(); _ = try readKeyword()
                try skipSpaceAndComments(); kw = try readKeyword()
            }
            guard kw == "values" else {
                throw fail("INSERT into \(table) without VALUES is not read", line: line)
            }
            if let cols {
                columns = cols
                insertDropGenerated = false
            } else if let createColumns {
                columns = createColumns.enumerated().filter { !generated[$0.offset] }.map(\.element)
                insertDropGenerated = generated.contains(true)
            } else {
                columns = []
                insertDropGenerated = false
            }
            mode = .tuples
        case "create":
            var kw = try nextKeyword()
            while let k = kw, ["unlogged", "temp", "temporary", "global", "local"].contains(k) { kw = try nextKeyword() }
            guard kw == "table" else { _ = try skipStatement(); return }
            try skipSpaceAndComments()
            let save = buf.pos
            if try readKeyword() == "if" { _ = try nextKeyword(); _ = try nextKeyword() } else { buf.pos = save }
            let name = try readQualifiedName()
            if try matches(name, at: line) {
                found = true
                try readCreateColumns()
            }
            _ = try skipStatement()
        case "set":
            let setting = try nextKeyword()
            try skipSpaceAndComments()
            if try buf.peek() == 61 { buf.pos += 1 } else { _ = try readKeyword() }
            try skipSpaceAndComments()
            var value = ""
            if try buf.peek() == 39 {
                buf.pos += 1
                var bytes: [UInt8] = []
                while let c = try buf.peek(), c != 39 { bytes.append(c); buf.pos += 1 }
                if try buf.peek() == 39 { buf.pos += 1 }
                value = String(decoding: bytes, as: UTF8.self).lowercased()
            } else { value = try readKeyword() ?? "" }
            if setting == "standard_conforming_strings" { standardStrings = value != "off" && value != "false" }
            if setting == "client_encoding", !["utf8", "utf-8", "unicode", "sql_ascii"].contains(value) {
                throw fail("the dump's client_encoding is \(value); only UTF8 dumps are read", line: line)
            }
            _ = try skipStatement()
        default:
            _ = try skipStatement()
        }
    }

    private func nextKeyword() throws -> String? {
        try skipSpaceAndComments()
        return try readKeyword()
    }

    /// Column names of the wanted table's CREATE TABLE, noting generated (stored) columns.
    private func readCreateColumns() throws {
        try skipSpaceAndComments()
        guard try buf.peek() == 40 else { return }
        buf.pos += 1
        var names: [String] = []
        var gen: [Bool] = []
        let constraintWords: Set<String> = ["constraint", "primary", "unique", "check", "foreign", "exclude", "like"]
        elements: while true {
            try skipSpaceAndComments()
            guard let c = try buf.peek() else { break }
            if c == 41 { break }
            let wasQuoted = c == 34
            let ident = try readIdentifier()
            var isColumn = ident != nil && (wasQuoted || !constraintWords.contains(ident!))
            var sawGenerated = false, isStored = false
            var depth = 0
            // The rest of the element, to the top-level ',' or ')'.
            while true {
                try skipSpaceAndComments()
                guard let c = try buf.peek() else { break elements }
                if c == 40 { depth += 1; buf.pos += 1 } else if c == 41 {
                    if depth == 0 { break } else { depth -= 1; buf.pos += 1 }
                } else if c == 44, depth == 0 { buf.pos += 1; break } else if c == 39 || c == 34 || c == 36 {
                    if try !skipQuoted() { buf.pos += 1 }
                } else if isIdentStart(c) {
                    let w = try readKeyword()
                    if depth == 0, w == "generated" { sawGenerated = true }
                    if depth == 0, w == "stored", sawGenerated { isStored = true }
                } else { buf.pos += 1 }
            }
            if ident == nil { isColumn = false }
            if isColumn, let ident {
                names.append(ident)
                gen.append(isStored)
            }
        }
        createColumns = names
        generated = gen
    }

    /// Skips a quoted token at `pos` ('...', E'...', "...", $tag$...$tag$); false when `pos`
    /// does not start one.
    private func skipQuoted(escapes: Bool = false) throws -> Bool {
        guard let c = try buf.peek() else { return false }
        if c == 39 {
            buf.pos += 1
            let backslash = escapes || !standardStrings
            while let c = try buf.peek() {
                buf.pos += 1
                if c == 39 { if try buf.peek() == 39 { buf.pos += 1 } else { return true } } else if c == 92, backslash {
                    if try buf.peek() != nil { buf.pos += 1 }
                }
            }
            return true
        }
        if c == 34 {
            buf.pos += 1
            while let c = try buf.peek() {
                buf.pos += 1
                if c == 34 { if try buf.peek() == 34 { buf.pos += 1 } else { return true } }
            }
            return true
        }
        if c == 36 {
            guard let tag = try dollarTag() else { return false }
            buf.pos += tag.count
            try skipPast(tag)
            return true
        }
        return false
    }

    /// The `$tag$` at `pos`, if one starts there.
    private func dollarTag() throws -> [UInt8]? {
        var k = 1
        while let c = try buf.peek(k) {
            if c == 36 { return Array(UnsafeBufferPointer(start: buf.ptr + buf.pos, count: k + 1)) }
            guard k == 1 ? isIdentStart(c) : (isIdentChar(c) && c != 36) else { return nil }
            k += 1
            if k > 256 { return nil }
        }
        return nil
    }

    /// Moves past the next occurrence of `marker`.
    private func skipPast(_ marker: [UInt8]) throws {
        let first = marker[0]
        while true {
            if buf.available >= marker.count, let p = memchr(buf.ptr + buf.pos, Int32(first), buf.available) {
                let i = UnsafeMutableRawPointer(mutating: p).assumingMemoryBound(to: UInt8.self) - buf.ptr
                buf.pos = i
                if try !buf.ensure(marker.count) { buf.pos = buf.pos + buf.available; return }
                if memcmp(buf.ptr + buf.pos, marker, marker.count) == 0 { buf.pos += marker.count; return }
                buf.pos += 1
                continue
            }
            if buf.available >= marker.count { buf.pos += buf.available - marker.count + 1 }
            if try !buf.fill() { buf.pos += buf.available; return }
        }
    }

    /// Skips to just after the statement's ';' at top level (or to the end); returns whether
    /// it stopped at a ';'. With `closeParen`, stops before an unmatched ')' instead.
    private func skipStatement(closeParen: Bool = false) throws -> Bool {
        var depth = 0
        var prev: UInt8 = 32, prev2: UInt8 = 32
        while true {
            if buf.pos >= buf.available + buf.pos, try !buf.ensure(1) { return false }
            let c = buf.ptr[buf.pos]
            switch c {
            case 59:
                buf.pos += 1
                return true
            case 39:
                let e = (prev | 0x20) == 101 && !isIdentChar(prev2)
                _ = try skipQuoted(escapes: e)
                prev = 39; prev2 = 32
                continue
            case 34:
                _ = try skipQuoted()
                prev = 34; prev2 = 32
                continue
            case 36 where !isIdentChar(prev):
                if try skipQuoted() { prev = 36; prev2 = 32; continue }
            case 45:
                if try buf.peek(1) == 45 { try skipLine(); prev = 10; continue }
            case 47:
                if try buf.peek(1) == 42 { try skipBlockComment(); prev = 32; continue }
            case 40:
                depth += 1
            case 41:
                if closeParen, depth == 0 { return false }
                depth -= 1
            default:
                break
            }
            prev2 = prev
            prev = c
            buf.pos += 1
        }
    }

    /// Skips another table's COPY data, to just after its `\.` line.
    private func skipCopyData() throws {
        while true {
            guard try buf.ensure(1) else { return }
            if try atEndMarker() { try skipLine(); return }
            try skipLine()
        }
    }

    // MARK: COPY rows

    /// Whether the line at `pos` is the `\.` end of COPY data.
    private func atEndMarker() throws -> Bool {
        guard try buf.peek() == 92, try buf.peek(1) == 46 else { return false }
        let n = try buf.peek(2)
        if n == nil || n == 10 { return true }
        return n == 13 ? try buf.peek(3) == 10 : false
    }

    private func nextCopyRow() throws -> Result<PgDumpRow, DumpRowError>? {
        guard try buf.ensure(1) else {
            mode = .finished
            return .failure(rowError(line: buf.line(at: buf.offset), offset: buf.offset, column: nil,
                                     "COPY data of \(table) ends without its \\. line (truncated dump?)"))
        }
        let start = buf.offset
        if try atEndMarker() {
            try skipLine()
            mode = .scanning
            return nil
        }
        let line = buf.line(at: start)
        scratch.reset()
        scratch.beginField()
        var rawNull = false         // the field so far is exactly "\N"
        var rawLen = 0
        var lastRawCR = false
        var crAfterNull = false     // the field is "\N" and a raw CR (a CRLF line end)
        var failure: RowFailure?
        func endField() {
            if (rawNull && rawLen == 2) || (crAfterNull && lastRawCR) { scratch.nulls[scratch.nulls.count - 1] = true }
            if lastRawCR, !scratch.tooBig, !scratch.bytes.isEmpty { scratch.bytes.removeLast() }
        }
        loop: while true {
            if buf.available == 0, try !buf.fill() { endField(); break loop }
            let c = buf.ptr[buf.pos]
            switch c {
            case 10:
                buf.pos += 1
                endField()
                break loop
            case 9:
                buf.pos += 1
                endField()
                scratch.beginField()
                rawNull = false; rawLen = 0; lastRawCR = false; crAfterNull = false
            case 92:
                guard let e = try buf.peek(1) else { buf.pos += 1; endField(); break loop }
                rawNull = rawLen == 0 && e == 78
                rawLen += 2
                lastRawCR = false
                crAfterNull = false
                buf.pos += 2
                switch e {
                case 98, 102, 110, 114, 116, 118: scratch.append(pgControlEscape(e))
                case 48...55:
                    var v = Int(e - 48)
                    for _ in 0..<2 {
                        guard let d = try buf.peek(), d >= 48, d <= 55 else { break }
                        v = v * 8 + Int(d - 48); buf.pos += 1; rawLen += 1
                    }
                    scratch.append(UInt8(truncatingIfNeeded: v))
                case 120:
                    if let h = try buf.peek(), let hv = hexValue(h) {
                        var v = hv; buf.pos += 1; rawLen += 1
                        if let h2 = try buf.peek(), let hv2 = hexValue(h2) { v = v * 16 + hv2; buf.pos += 1; rawLen += 1 }
                        scratch.append(v)
                    } else { scratch.append(120) }
                default: scratch.append(e)
                }
            default:
                // A run of plain bytes.
                var i = buf.pos
                let end = buf.pos + buf.available
                while i < end {
                    let b = buf.ptr[i]
                    if b == 9 || b == 10 || b == 92 { break }
                    i += 1
                }
                let n = i - buf.pos
                scratch.append(buf.ptr + buf.pos, n)
                lastRawCR = buf.ptr[i - 1] == 13
                crAfterNull = rawNull && rawLen == 2 && n == 1 && lastRawCR
                rawLen += n
                rawNull = false
                buf.pos = i
            }
        }
        return finishRow(line: line, offset: start, failure: &failure)
    }

    private func rowError(line: Int, offset: Int64, column: Int?, _ message: String) -> DumpRowError {
        DumpRowError(file: buf.name, line: line, column: column, offset: offset, message: message)
    }

    private func finishRow(line: Int, offset: Int64, failure: inout RowFailure?) -> Result<PgDumpRow, DumpRowError> {
        if scratch.tooBig {
            return .failure(rowError(line: line, offset: offset, column: nil, "row of \(table) is larger than \(scratch.limit) bytes"))
        }
        if let f = failure { return .failure(rowError(line: line, offset: offset, column: f.column, f.message)) }
        if !columns.isEmpty, scratch.fieldCount != columns.count {
            return .failure(rowError(line: line, offset: offset, column: nil,
                                     "row of \(table) has \(scratch.fieldCount) values, expected \(columns.count)"))
        }
        let (values, bad) = scratch.strings()
        if let bad { return .failure(rowError(line: line, offset: offset, column: bad, "value is not valid UTF-8")) }
        return .success(PgDumpRow(columns: columns, values: values, line: line, offset: offset))
    }

    // MARK: INSERT tuples

    /// The next tuple of the current INSERT's VALUES list; nil when the statement ends.
    private func nextTuple() throws -> Result<PgDumpRow, DumpRowError>? {
        try skipSpaceAndComments()
        guard let c = try buf.peek() else { mode = .finished; return nil }
        if c == 59 { buf.pos += 1; mode = .scanning; return nil }
        if c == 44 { buf.pos += 1; try skipSpaceAndComments() }
        let start = buf.offset
        let line = buf.line(at: start)
        scratch.reset()
        guard try buf.peek() == 40 else {
            let stopped = try skipStatement()
            mode = stopped ? .scanning : .finished
            return .failure(rowError(line: line, offset: start, column: nil, "expected a '(' row in INSERT into \(table)"))
        }
        buf.pos += 1
        var failure: RowFailure?
        var column = 0
        while true {
            column += 1
            do {
                try readValue(column: column)
            } catch let f as RowFailure {
                failure = f
                // Resynchronise at this row's closing ')' (or the statement's end).
                if try !skipStatement(closeParen: true) {
                    if try buf.peek() == 41 { buf.pos += 1 } else { mode = .finished }
                } else { mode = .scanning }
                break
            }
            try skipSpaceAndComments()
            guard let d = try buf.peek() else { failure = RowFailure(column: nil, message: "INSERT ends in the middle of a row"); mode = .finished; break }
            buf.pos += 1
            if d == 44 { continue }
            if d == 41 { break }
            failure = RowFailure(column: column, message: "unexpected character after a value")
            buf.pos -= 1
            if try !skipStatement(closeParen: true) {
                if try buf.peek() == 41 { buf.pos += 1 } else { mode = .finished }
            } else { mode = .scanning }
            break
        }
        if failure == nil, insertDropGenerated, scratch.fieldCount == generated.count {
            // `--inserts` writes DEFAULT for generated columns, which COPY leaves out.
            var keep = RowScratch(limit: scratch.limit)
            scratch.bytes.withUnsafeBufferPointer { all in
                for i in 0..<scratch.starts.count where !generated[i] {
                    let s = scratch.starts[i], e = i + 1 < scratch.starts.count ? scratch.starts[i + 1] : all.count
                    keep.beginField()
                    keep.nulls[keep.nulls.count - 1] = scratch.nulls[i]
                    keep.append(all.baseAddress! + s, e - s)
                }
            }
            scratch = keep
        }
        return finishRow(line: line, offset: start, failure: &failure)
    }

    /// Reads one value expression of a VALUES row into the scratch.
    private func readValue(column: Int) throws {
        try skipSpaceAndComments()
        scratch.beginField()
        guard let c = try buf.peek() else { throw RowFailure(column: column, message: "INSERT ends in the middle of a row") }
        switch c {
        case 39:
            try readString(escapes: !standardStrings)
        case 36:
            guard let tag = try dollarTag() else { throw RowFailure(column: column, message: "unexpected '$'") }
            buf.pos += tag.count
            try readDollar(tag)
        case 45, 43, 46, 48...57:
            var n = 0
            while let d = try buf.peek(), (d >= 48 && d <= 57) || d == 46 || (d | 0x20) == 101 || d == 43 || d == 45 {
                if d == 45, n > 0, try buf.peek(1) == 45 { break }
                scratch.append(d); buf.pos += 1; n += 1
            }
        default:
            guard isIdentStart(c) else { throw RowFailure(column: column, message: "unsupported value expression") }
            let next = try buf.peek(1)
            let lower = c | 0x20
            if next == 39, lower == 101 { buf.pos += 1; try readString(escapes: true); break }
            if next == 39, lower == 98 { buf.pos += 1; try readString(escapes: false); break }
            if next == 39, lower == 120 {
                buf.pos += 1
                try readString(escapes: false)
                try hexToBits(column: column)
                break
            }
            if lower == 117, next == 38, try buf.peek(2) == 39 {
                buf.pos += 2
                try readString(escapes: false)
                try decodeUnicodeEscapes(column: column)
                break
            }
            let word = try readKeyword() ?? ""
            switch word {
            case "null", "default": scratch.nulls[scratch.nulls.count - 1] = true
            case "true": scratch.append(116)
            case "false": scratch.append(102)
            default:
                // A typed literal: `date '2020-01-01'`, `timestamp with time zone '...'`.
                try skipSpaceAndComments()
                var words = 0
                while try buf.peek() != 39, words < 4 {
                    guard try readKeyword() != nil else { break }
                    words += 1
                    try skipSpaceAndComments()
                }
                guard try buf.peek() == 39 else { throw RowFailure(column: column, message: "unsupported value expression") }
                try readString(escapes: !standardStrings)
            }
        }
        // Casts: `::type`, skipped to the end of the value.
        try skipSpaceAndComments()
        while try buf.peek() == 58, try buf.peek(1) == 58 {
            buf.pos += 2
            var depth = 0
            while let d = try buf.peek() {
                if d == 40 || d == 91 { depth += 1 } else if d == 41 || d == 93 {
                    if depth == 0 && d == 41 { break }
                    depth -= 1
                } else if d == 44, depth == 0 { break } else if d == 58 { break } else if d == 34 {
                    _ = try skipQuoted(); continue
                }
                buf.pos += 1
            }
        }
    }

    /// A '...' string at `pos` into the scratch (`''` is a quote; with `escapes`, backslash escapes).
    private func readString(escapes: Bool) throws {
        buf.pos += 1
        while true {
            if buf.available == 0, try !buf.fill() { throw RowFailure(column: scratch.fieldCount, message: "unterminated string") }
            var i = buf.pos
            let end = buf.pos + buf.available
            while i < end {
                let b = buf.ptr[i]
                if b == 39 || (b == 92 && escapes) { break }
                i += 1
            }
            scratch.append(buf.ptr + buf.pos, i - buf.pos)
            buf.pos = i
            guard i < end else { continue }
            if buf.ptr[i] == 39 {
                if try buf.peek(1) == 39 { scratch.append(39); buf.pos += 2; continue }
                buf.pos += 1
                // SQL joins string constants separated by a newline.
                return
            }
            // A backslash escape (E'...').
            guard let e = try buf.peek(1) else { throw RowFailure(column: scratch.fieldCount, message: "unterminated string") }
            buf.pos += 2
            switch e {
            case 98, 102, 110, 114, 116, 118: scratch.append(pgControlEscape(e))
            case 48...55:
                var v = Int(e - 48)
                for _ in 0..<2 {
                    guard let d = try buf.peek(), d >= 48, d <= 55 else { break }
                    v = v * 8 + Int(d - 48); buf.pos += 1
                }
                scratch.append(UInt8(truncatingIfNeeded: v))
            case 120:
                if let h = try buf.peek(), let hv = hexValue(h) {
                    var v = hv; buf.pos += 1
                    if let h2 = try buf.peek(), let hv2 = hexValue(h2) { v = v * 16 + hv2; buf.pos += 1 }
                    scratch.append(v)
                } else { scratch.append(120) }
            case 117, 85:
                let n = e == 117 ? 4 : 8
                var v: UInt32 = 0
                for _ in 0..<n {
                    guard let h = try buf.peek(), let hv = hexValue(h) else {
                        throw RowFailure(column: scratch.fieldCount, message: "invalid Unicode escape")
                    }
                    v = v * 16 + UInt32(hv); buf.pos += 1
                }
                try appendScalar(v)
            default: scratch.append(e)
            }
        }
    }

    private func appendScalar(_ v: UInt32) throws {
        guard let s = Unicode.Scalar(v) else { throw RowFailure(column: scratch.fieldCount, message: "invalid Unicode escape") }
        for b in String(Character(s)).utf8 { scratch.append(b) }
    }

    private func readDollar(_ tag: [UInt8]) throws {
        while true {
            if buf.available == 0, try !buf.fill() { throw RowFailure(column: scratch.fieldCount, message: "unterminated dollar-quoted string") }
            let c = buf.ptr[buf.pos]
            if c == 36, try buf.ensure(tag.count), memcmp(buf.ptr + buf.pos, tag, tag.count) == 0 {
                buf.pos += tag.count
                return
            }
            scratch.append(c)
            buf.pos += 1
        }
    }

    /// The current field's bytes.
    private func takeField() -> [UInt8] {
        let s = scratch.starts[scratch.starts.count - 1]
        let bytes = Array(scratch.bytes[s...])
        scratch.bytes.removeSubrange(s...)
        return bytes
    }

    private func hexToBits(column: Int) throws {
        for h in takeField() {
            guard let v = hexValue(h) else { throw RowFailure(column: column, message: "invalid hexadecimal bit string") }
            for k in stride(from: 3, through: 0, by: -1) { scratch.append(v >> UInt8(k) & 1 == 1 ? 49 : 48) }
        }
    }

    private func decodeUnicodeEscapes(column: Int) throws {
        let raw = takeField()
        var i = 0
        while i < raw.count {
            let b = raw[i]
            guard b == 92 else { scratch.append(b); i += 1; continue }
            if i + 1 < raw.count, raw[i + 1] == 92 { scratch.append(92); i += 2; continue }
            let n = i + 1 < raw.count && raw[i + 1] == 43 ? 6 : 4
            let from = i + 1 + (n == 6 ? 1 : 0)
            guard from + n <= raw.count else { throw RowFailure(column: column, message: "invalid Unicode escape") }
            var v: UInt32 = 0
            for h in raw[from..<from + n] {
                guard let hv = hexValue(h) else { throw RowFailure(column: column, message: "invalid Unicode escape") }
                v = v * 16 + UInt32(hv)
            }
            try appendScalar(v)
            i = from + n
        }
    }
}

/// The byte of a one-letter backslash escape of COPY text and `E''` strings:
/// `\b \f \n \r \t \v`.
@inline(__always)
func pgControlEscape(_ letter: UInt8) -> UInt8 {
    switch letter {
    case 98: 8
    case 102: 12
    case 110: 10
    case 114: 13
    case 116: 9
    default: 11  // v
    }
}
