import CWriteBehind
import SluiceConfig
import SluiceCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// RFC 4180 text: fields separated by a delimiter, records ended by CRLF. A field is
/// quoted (quotes doubled) when it holds the delimiter, a quote, CR or LF, or is the
/// empty string; NULL is an empty unquoted field, so NULL and "" stay apart.
/// Nested values (RECORD, REPEATED) are written as JSON text.
public struct CSVFormat: Sendable {
    public var delimiter: UInt8

    public init(delimiter: UInt8 = UInt8(ascii: ",")) { self.delimiter = delimiter }

    public func appendRecord(_ values: [Value], to out: inout [UInt8]) {
        var row = RowBytes()
        appendRecord(values, to: &row)
        out.append(row)
    }

    public func appendRecord(_ values: [Value], to out: inout RowBytes) {
        for i in values.indices {
            if i > 0 { out.append(delimiter) }
            appendField(values[i], to: &out)
        }
        appendRowEnd(to: &out)
    }

    /// The end of a row: CRLF (RFC 4180).
    @inline(__always) public func appendRowEnd(to out: inout RowBytes) {
        out.append(0x0D)
        out.append(0x0A)
    }

    public func appendHeader(_ names: [String], to out: inout [UInt8]) {
        appendRecord(names.map { .string($0) }, to: &out)
    }

    public func appendField(_ value: Value, to out: inout [UInt8]) {
        var row = RowBytes()
        appendField(value, to: &row)
        out.append(row)
    }

    public func appendField(_ value: Value, to out: inout RowBytes) {
        switch value {
        case .null: return
        case .string(let s): appendText(s, to: &out)
        case .int(let n): appendInteger(n, to: &out)
        default: appendText(Self.text(value)!, to: &out)
        }
    }

    /// An integer's decimal digits, written from the last (no string made of them).
    @inline(__always) func appendInteger(_ n: Int64, to out: inout RowBytes) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var magnitude = n.magnitude
            var at = 20
            repeat {
                at -= 1
                digits[at] = UInt8(truncatingIfNeeded: magnitude % 10) &+ 0x30
                magnitude /= 10
            } while magnitude > 0
            if n < 0 { out.append(UInt8(ascii: "-")) }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: digits[at..<20]))
        }
    }

    /// The text a value is written as (nil for NULL), before quoting.
    public static func text(_ value: Value) -> String? {
        switch value {
        case .null: return nil
        case .string(let s): return s
        case .int(let n): return String(n)
        case .largeInteger(let digits): return digits
        case .double(let d): return d.isNaN ? "NaN" : d.isInfinite ? (d < 0 ? "-Infinity" : "Infinity") : JSONWriter.formatDouble(d)
        case .bool(let b): return b ? "true" : "false"
        case .array, .object: return JSONWriter.string(value)
        }
    }

    /// Parses CSV text written in this format: quoted empty fields are empty strings,
    /// unquoted empty fields are NULL (nil). For comparing outputs, not for large inputs.
    public func parse(_ bytes: [UInt8]) -> [[String?]] {
        var rows: [[String?]] = []
        var row: [String?] = []
        var field: [UInt8] = []
        var quoted = false
        var inQuotes = false
        var i = 0
        func endField() {
            row.append(field.isEmpty && !quoted ? nil : String(decoding: field, as: UTF8.self))
            field.removeAll()
            quoted = false
        }
        while i < bytes.count {
            let c = bytes[i]
            if inQuotes {
                if c == 0x22 {
                    if i + 1 < bytes.count, bytes[i + 1] == 0x22 { field.append(0x22); i += 2; continue }
                    inQuotes = false
                } else {
                    field.append(c)
                }
                i += 1
                continue
            }
            switch c {
            case 0x22: inQuotes = true; quoted = true
            case delimiter: endField()
            case 0x0D: break
            case 0x0A: endField(); rows.append(row); row = []
            default: field.append(c)
            }
            i += 1
        }
        if !field.isEmpty || quoted || !row.isEmpty { endField(); rows.append(row) }
        return rows
    }

    func appendText(_ s: String, to out: inout RowBytes) {
        // Over the string's own UTF-8 buffer (a native string's, not a copy): scanning and
        // appending a buffer is several times faster than iterating a UTF8View.
        if s.utf8.withContiguousStorageIfAvailable({ appendText($0, to: &out) }) == nil {
            Array(s.utf8).withUnsafeBufferPointer { appendText($0, to: &out) }
        }
    }

    private func appendText(_ bytes: UnsafeBufferPointer<UInt8>, to out: inout RowBytes) {
        guard bytes.isEmpty || needsQuotes(bytes) else {
            out.append(contentsOf: bytes)
            return
        }
        out.append(0x22)
        var start = 0
        for i in bytes.indices where bytes[i] == 0x22 {
            out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start...i]))
            out.append(0x22)
            start = i + 1
        }
        out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start...]))
        out.append(0x22)
    }
}

extension CSVFormat {
    /// `value`'s JSON text as `appendText` writes a text: written in place, then, if it
    /// needs quotes, spread out from its end to make room for them and its doubled quotes.
    func appendJSONText(_ value: Value, to out: inout RowBytes) {
        // A string's or a non-empty object's text has quotes, so the field is quoted:
        // written so at once, its quotes doubled as they are written.
        let quoted = switch value {
        case .string: true
        case .object(let fields): !fields.isEmpty
        default: false
        }
        if quoted {
            out.append(0x22)
            JSONWriter.writeQuotesDoubled(value, into: &out)
            out.append(0x22)
            return
        }
        let start = out.count
        JSONWriter.write(value, into: &out)
        let quotes = out.withBytes { all -> Int? in
            let text = UnsafeBufferPointer(rebasing: all[start...])
            guard !text.isEmpty, needsQuotes(text) else { return nil }
            return text.reduce(0) { $0 + ($1 == 0x22 ? 1 : 0) }
        }
        guard let quotes else { return }
        let end = out.count
        out.appendZeros(quotes + 2)
        out.withMutableBytes { b in
            var to = b.count - 1
            b[to] = 0x22
            var from = end - 1
            while from >= start {
                let c = b[from]
                to -= 1
                b[to] = c
                if c == 0x22 {
                    to -= 1
                    b[to] = 0x22
                }
                from -= 1
            }
            b[start] = 0x22
        }
    }

    /// Whether any byte is the delimiter, a quote, CR or LF: eight bytes at a time (a
    /// byte equal to one of them is a zero byte of the word XORed with it repeated), the
    /// last few one by one. Every text value of every row is scanned.
    func needsQuotes(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
        let d = UInt64(delimiter) &* ones, q = UInt64(0x22) &* ones, lf = UInt64(0x0A) &* ones, cr = UInt64(0x0D) &* ones
        // The four tests' bits ORed, then one branch a word (not four).
        @inline(__always) func zeroBytes(_ x: UInt64) -> UInt64 { (x &- ones) & ~x }
        guard let base = bytes.baseAddress else { return false }
        let raw = UnsafeRawPointer(base)
        @inline(__always) func special(_ w: UInt64) -> Bool {
            (zeroBytes(w ^ d) | zeroBytes(w ^ q) | zeroBytes(w ^ lf) | zeroBytes(w ^ cr)) & highs != 0
        }
        var i = 0
        while i + 8 <= bytes.count {
            if special(raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)) { return true }
            i += 8
        }
        // The last few bytes of a text of eight or more: its last eight at once (some of
        // them looked at twice), not one by one.
        if i < bytes.count, bytes.count >= 8 { return special(raw.loadUnaligned(fromByteOffset: bytes.count - 8, as: UInt64.self)) }
        while i < bytes.count {
            let c = bytes[i]
            if c == delimiter || c == 0x22 || c == 0x0A || c == 0x0D { return true }
            i += 1
        }
        return false
    }
}

/// CSV rows as `CSVSession.write` would append them, encoded off the session.
public struct CSVRowEncoder: RowEncoder {
    public var format: CSVFormat

    public init(format: CSVFormat) { self.format = format }

    public func append(_ value: Value, column: Int, to out: inout RowBytes) {
        if column > 0 { out.append(format.delimiter) }
        format.appendField(value, to: &out)
    }

    /// The JSON text written straight into the row, quoted as `append` quotes text: no
    /// string of it is made (three JSON columns a record of the benchmark's pipeline).
    public func appendJSON(_ value: Value, column: Int, to out: inout RowBytes) {
        if column > 0 { out.append(format.delimiter) }
        format.appendJSONText(value, to: &out)
    }

    public func endRow(_ out: inout RowBytes) { format.appendRowEnd(to: &out) }
}

/// Writes a partition's rows to one CSV file, columns in schema order.
///
/// Appending (incremental runs): new rows are appended and made durable at each segment
/// commit; the state store then records the file's committed length and the keys it
/// holds (the delivery ledger) together with the checkpoints. When the file is opened
/// again, anything past the committed length (a crash between the file's sync and the
/// state's commit) is cut away, and rows whose key the file holds already are skipped.
///
/// Replacing (`backfill --replace`): the partition's rows go to a temporary file beside
/// the target, which is synced and renamed over it at the end: readers see the old file
/// or the new one, never a mix.
public struct CSVLoader: Loader {
    public var schema: TableSchema
    public var pathPattern: String
    public var format: CSVFormat
    public var header: Bool

    public init(schema: TableSchema, pathPattern: String, format: CSVFormat = CSVFormat(), header: Bool = true) {
        self.schema = schema
        self.pathPattern = pathPattern
        self.format = format
        self.header = header
    }

    public var label: String { "csv \(pathPattern)" }

    public func open(_ context: RunContext) async throws -> any LoadSession {
        let target = context.partition.expand(pathPattern)
        let path = context.outputPath(target)
        let headerBytes: [UInt8] = {
            var out: [UInt8] = []
            if header { format.appendHeader(schema.columnNames, to: &out) }
            return out
        }()
        let committed = try context.state?.receipt(pipeline: context.pipeline, sink: label, target: target)
        return try CSVSession(path: path, target: target, sink: label, format: format, header: headerBytes, mode: context.mode,
                              committedLength: committed, context: context)
    }

    public static func register(into registry: inout StageRegistry) {
        registry.loader("csv") { o, ctx, defaultSchema in
            let path = o.string("path", required: true)
            if let path { checkPlaceholders(path, at: o.node("path")!.location, diagnostics: ctx.diagnostics) }
            var schema: TableSchema?
            var schemaLocation = o.location
            if let s = o.string("schema") {
                schemaLocation = o.node("schema")!.location
                schema = ctx.schema(s, at: schemaLocation)
            } else if let d = defaultSchema {
                schema = d.0
            } else {
                ctx.diagnostics.error(o.location, "csv stage needs `schema` (or a warehouse stage whose schema it can use)")
            }
            var delimiter = UInt8(ascii: ",")
            if let d = o.string("delimiter") {
                if d.utf8.count == 1, let b = d.utf8.first, b != 0x22, b != 0x0A, b != 0x0D { delimiter = b }
                else if d == "\\t" { delimiter = 0x09 }
                else { ctx.diagnostics.error(o.node("delimiter")!.location, "`delimiter` must be one ASCII character other than a quote or newline") }
            }
            let header = o.bool("header") ?? true
            let keyColumn = o.string("key_column") ?? "record_key"
            o.finish()
            guard let path, let schema else { return nil }
            return BuiltLoader(loader: CSVLoader(schema: schema, pathPattern: path, format: CSVFormat(delimiter: delimiter), header: header),
                               keyColumn: keyColumn, schemaLocation: schemaLocation)
        }
    }
}

/// A problem writing an output file.
public struct OutputError: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var detail: String
    public var description: String { "\(path): \(detail)" }
}

final class CSVSession: LoadSession {
    let path: String
    let target: String
    let sink: String
    let writePath: String
    let format: CSVFormat
    let mode: LoadMode
    let context: RunContext
    var fd: Int32 = -1
    var buffer: [UInt8] = []
    /// Length of the file as last committed.
    var committedLength: Int64
    /// Length written so far (committed or not).
    var length: Int64
    /// The rows each write keeps, and the keys the segment wrote (for the ledger).
    var deliveries: SegmentDeliveries
    /// Where the bytes not yet handed to write-behind start (see `writeBehindBytes`), and
    /// how many times it was started.
    private(set) var writeBehindFrom: Int64 = 0
    private(set) var writeBehinds = 0
    /// Where the bytes still in the page cache start (see `dropLagBytes`), and how many
    /// times written bytes were dropped from it.
    private(set) var droppedFrom: Int64 = 0
    private(set) var drops = 0

    /// Past this many bytes written since the last time, the kernel is asked to start
    /// writing them to the disk (write-behind, as RocksDB's `bytes_per_sync`), so that a
    /// segment commit's `fsync` finds little left to write: the benchmark's CSV grows by
    /// ~45 MB a segment, and its `fsync` took ~18-24 ms of each ~60 ms commit, while the
    /// other threads waited (2-4 ms with write-behind). Durability is the `fsync`'s, as before.
    static let writeBehindBytes: Int64 = 8 << 20

    /// Bytes written this far behind the end, their write-behind started at least one
    /// `writeBehindBytes` before, are waited for (they are on the disk by then, as a rule)
    /// and dropped from the page cache; a commit's `fsync` lets it drop all it wrote. The
    /// file's pages in the cache stay under ~`dropLagBytes` + `writeBehindBytes`, not the
    /// whole output, and each write reuses the pages just freed. On the VMs here a page
    /// the kernel takes from its free memory costs ~10 times a reused one (the hypervisor
    /// backs it again: writing 1.8 GB took 3.9-4.5 s, 0.74 s dropping behind,
    /// `docs/benchmarks.md`), and a long run's output no longer pushes other files out of
    /// the cache.
    static let dropLagBytes: Int64 = 16 << 20

    /// Drops start and end (but at the file's end) on multiples of this: the kernel drops
    /// a large folio (up to 2 MiB) only when the range covers it whole, so one split
    /// between two drops would stay cached (measured: 128-644 KiB left of 28-44 MiB).
    static let dropAlignment: Int64 = 2 << 20

    /// `offset` rounded down to a multiple of `dropAlignment`.
    static func dropBoundary(_ offset: Int64) -> Int64 { offset / dropAlignment * dropAlignment }

    init(path: String, target: String, sink: String, format: CSVFormat, header: [UInt8], mode: LoadMode,
         committedLength: Int64?, context: RunContext) throws {
        self.path = path
        self.target = target
        self.sink = sink
        self.format = format
        self.mode = mode
        self.context = context
        deliveries = SegmentDeliveries(sink: sink)
        try Self.makeDirectories(Self.directory(of: path))
        let temp = path + ".sluice-tmp"
        unlink(temp) // a replace that died before its rename
        buffer.reserveCapacity(Self.bufferBytes)
        switch mode {
        case .replace:
            writePath = temp
            fd = Glibc.open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw OutputError(path: target, detail: "cannot create temporary file: \(String(cString: strerror(errno)))") }
            self.committedLength = 0
            length = 0
        case .append:
            writePath = path
            var st = stat()
            let exists = stat(path, &st) == 0
            let size = exists ? Int64(st.st_size) : 0
            let known = committedLength ?? 0
            if exists, committedLength != nil, size < known {
                throw OutputError(path: target, detail: "is shorter than its committed length (\(size) < \(known) bytes): it was changed outside sluice; rebuild the partition with `sluice backfill --replace`")
            }
            if !exists, known > 0 {
                throw OutputError(path: target, detail: "was deleted after rows were delivered to it; rebuild the partition with `sluice backfill --replace`")
            }
            fd = Glibc.open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw OutputError(path: target, detail: "cannot open: \(String(cString: strerror(errno)))") }
            // Repair: cut what a crash left past the last commit (or an unknown file whole).
            if size > known {
                guard ftruncate(fd, off_t(known)) == 0, fsync(fd) == 0 else {
                    throw OutputError(path: target, detail: "cannot repair to its committed length: \(String(cString: strerror(errno)))")
                }
            }
            lseek(fd, off_t(known), SEEK_SET)
            self.committedLength = known
            length = known
        }
        writeBehindFrom = length
        droppedFrom = Self.dropBoundary(length)
        if length == 0 { buffer += header }
    }

    func write(_ rows: [Row]) async throws -> Int {
        try await write(rows, encoded: nil)
    }

    var encoder: (any RowEncoder)? { CSVRowEncoder(format: format) }

    func write(_ rows: [Row], encoded: EncodedRows?) async throws -> Int {
        guard !rows.isEmpty else { return 0 }
        let encoded = encoded.flatMap { $0.ends.count == rows.count ? $0 : nil } ?? CSVRowEncoder(format: format).encode(rows)
        let kept = try deliveries.newRows(rows, context: context)
        if kept.count == rows.count {
            try append(encoded.bytes[...]) // every row new (the usual case): the bytes as they are
        } else {
            for i in kept { try append(encoded.row(i)) }
        }
        return kept.count
    }

    /// The output buffer's size: it is written out before it would grow past this.
    static let bufferBytes = 1 << 20

    /// Bytes at least this many are written at once (after what the buffer holds), not
    /// copied into it: a batch's rows (~0.5 MB in the benchmark) were copied whole.
    static let directBytes = 1 << 16

    /// Appends to the output buffer, writing it out first if the bytes would not fit;
    /// `directBytes` or more are written at once, not copied.
    func append(_ bytes: ArraySlice<UInt8>) throws {
        if bytes.count >= Self.directBytes {
            if !buffer.isEmpty { try flush() }
            try bytes.withUnsafeBytes { try writeAll($0) }
            return
        }
        if buffer.count + bytes.count > Self.bufferBytes { try flush() }
        buffer.append(contentsOf: bytes)
    }

    func flush() throws {
        try buffer.withUnsafeBytes { try writeAll($0) }
        buffer.removeAll(keepingCapacity: true)
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw OutputError(path: target, detail: "write failed: \(String(cString: strerror(errno)))")
            }
            done += n
        }
        length += Int64(bytes.count)
        if length - writeBehindFrom >= Self.writeBehindBytes {
            // A hint: a failure here is not one of the data's (the `fsync` reports those).
            _ = sluice_start_writeback(fd, writeBehindFrom, length - writeBehindFrom)
            writeBehindFrom = length
            writeBehinds += 1
            if writeBehindFrom - droppedFrom >= Self.dropLagBytes + Self.writeBehindBytes {
                dropWritten(upTo: Self.dropBoundary(writeBehindFrom - Self.dropLagBytes))
            }
        }
    }

    /// Drops the file's bytes from `droppedFrom` to `end` from the page cache, once they are
    /// on the disk; the next drop starts at `end` rounded down to `dropAlignment`. A hint as
    /// well: a failure only leaves them cached.
    private func dropWritten(upTo end: Int64) {
        guard end > droppedFrom else { return }
        _ = sluice_drop_written(fd, droppedFrom, end - droppedFrom)
        droppedFrom = Self.dropBoundary(end)
        drops += 1
    }

    func commitSegment(final: Bool) async throws -> SegmentResult {
        try flush()
        CrashPoints.reach("csv.written")
        guard fsync(fd) == 0 else { throw OutputError(path: target, detail: "fsync failed: \(String(cString: strerror(errno)))") }
        dropWritten(upTo: length) // all on the disk now: nothing to wait for
        if mode == .replace, final {
            Glibc.close(fd)
            fd = -1
            CrashPoints.reach("csv.rename")
            guard rename(writePath, path) == 0 else { throw OutputError(path: target, detail: "rename failed: \(String(cString: strerror(errno)))") }
        }
        if final, fd >= 0 { Glibc.close(fd); fd = -1 }
        if final || mode == .replace || committedLength == 0 { Self.syncDirectory(of: path) }
        committedLength = length
        return SegmentResult(deliveredKeys: deliveries.takePending(), receipts: [SinkReceipt(sink: sink, target: target, length: length)])
    }

    func rollback() async {
        if mode == .append, fd >= 0 { _ = ftruncate(fd, off_t(committedLength)) }
        if fd >= 0 { Glibc.close(fd); fd = -1 }
        if mode == .replace { unlink(writePath) }
    }

    deinit {
        if fd >= 0 { Glibc.close(fd) }
    }

    static func syncDirectory(of path: String) {
        let dfd = Glibc.open(directory(of: path), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { _ = fsync(dfd); Glibc.close(dfd) }
    }

    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    static func makeDirectories(_ dir: String) throws {
        var current = dir.hasPrefix("/") ? "" : "."
        for part in dir.split(separator: "/") {
            current += "/" + part
            if mkdir(current, 0o755) != 0, errno != EEXIST {
                throw OutputError(path: dir, detail: "cannot create directory: \(String(cString: strerror(errno)))")
            }
        }
    }
}
