import Logging

/// The unit of a run and of a backfill: one UTC day or one UTC hour.
public struct Partition: Sendable, Hashable, Comparable, CustomStringConvertible {
    public enum Granularity: String, Sendable, Hashable, CaseIterable {
        case day, hour
    }

    public let granularity: Granularity
    /// Start of the partition, microseconds since the Unix epoch (UTC).
    public let start: Int64

    public init(granularity: Granularity, start: Int64) {
        self.granularity = granularity
        self.start = start
    }

    /// The partition that contains an instant.
    public init(granularity: Granularity, containing micros: Int64) {
        let unit = granularity.micros
        self.granularity = granularity
        self.start = micros >= 0 ? micros / unit * unit : ((micros + 1) / unit - 1) * unit
    }

    /// Parses `YYYY-MM-DD` (day) or `YYYY-MM-DDTHH` / `YYYY-MM-DD HH` (hour).
    public init?(_ text: String, granularity: Granularity) {
        let bytes = Array(text.utf8)
        guard bytes.count >= 10, let date = CivilDate(bytes[0..<10]) else { return nil }
        var start = date.epochDay * 86_400_000_000
        switch granularity {
        case .day:
            guard bytes.count == 10 else { return nil }
        case .hour:
            guard bytes.count == 13, bytes[10] == UInt8(ascii: "T") || bytes[10] == UInt8(ascii: " "),
                  let hour = Int(String(decoding: bytes[11..<13], as: UTF8.self)), (0..<24).contains(hour)
            else { return nil }
            start += Int64(hour) * 3_600_000_000
        }
        self.init(granularity: granularity, start: start)
    }

    public var end: Int64 { start + granularity.micros }
    public var date: CivilDate { CivilDate(epochDay: Timestamp.dayAndTime(start).day) }
    public var hour: Int { Int((start - date.epochDay * 86_400_000_000) / 3_600_000_000) }

    /// `2026-11-18` or `2026-11-18T05`.
    public var description: String {
        switch granularity {
        case .day: date.description
        case .hour: date.description + "T" + (hour < 10 ? "0" : "") + String(hour)
        }
    }

    public func next() -> Partition { Partition(granularity: granularity, start: end) }

    public func contains(_ micros: Int64) -> Bool { micros >= start && micros < end }

    public static func < (a: Partition, b: Partition) -> Bool { a.start < b.start }

    /// Expands `{date}` (YYYY-MM-DD), `{hour}` (HH), `{partition}` and the compact
    /// `{yyyymmdd}` in a pattern.
    public func expand(_ pattern: String) -> String {
        guard pattern.contains("{") else { return pattern }
        let d = date.description
        return pattern
            .replacingAll("{date}", with: d)
            .replacingAll("{yyyymmdd}", with: d.filter { $0 != "-" })
            .replacingAll("{hour}", with: (hour < 10 ? "0" : "") + String(hour))
            .replacingAll("{partition}", with: description)
    }

    /// The placeholders `expand` knows.
    public static let placeholders: Set<String> = ["date", "yyyymmdd", "hour", "partition"]
}

extension Partition.Granularity {
    public var micros: Int64 { self == .day ? 86_400_000_000 : 3_600_000_000 }
}

extension String {
    func replacingAll(_ target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var result = ""
        var rest = self[...]
        while let range = rest.range(of: target) {
            result += rest[..<range.lowerBound]
            result += replacement
            rest = rest[range.upperBound...]
        }
        result += rest
        return result
    }
}

extension Substring {
    func range(of target: String) -> Range<Substring.Index>? {
        let t = Array(target.utf8)
        let u = self.utf8
        var i = u.startIndex
        while i != u.endIndex {
            var j = i
            var k = 0
            while k < t.count, j != u.endIndex, u[j] == t[k] {
                j = u.index(after: j)
                k += 1
            }
            if k == t.count { return i..<j }
            i = u.index(after: i)
        }
        return nil
    }
}

/// What every stage of one run can see.
public struct RunContext: Sendable {
    /// The folder that relative input paths are resolved against (the project root).
    public var projectRoot: String
    /// The folder that relative output paths (CSV files, local warehouse) are resolved against.
    public var outputRoot: String
    public var pipeline: String
    public var partition: Partition
    public var logger: Logger
    /// The process environment, for secrets named in pipeline files.
    public var environment: [String: String]
    /// Append what is new, or rebuild the partition's output.
    public var mode: LoadMode
    /// Checkpoints, ledger and receipts; nil runs without state (everything is new).
    public var state: (any StateStore)?
    /// The run's id in the state store (set by the runner), for sinks that record dead
    /// letters themselves.
    public var runID: Int64?
    /// Set when a stop was asked for (SIGINT/SIGTERM; set by the runner): the run ends
    /// after the batch in hand, and a sink that waits on a remote service (BigQuery's
    /// back-pressure and drain) stops waiting, its rows durable where they are.
    public var stop: StopFlag?

    public init(projectRoot: String, outputRoot: String, pipeline: String, partition: Partition,
                logger: Logger, environment: [String: String] = [:], mode: LoadMode = .append, state: (any StateStore)? = nil) {
        self.projectRoot = projectRoot
        self.outputRoot = outputRoot
        self.pipeline = pipeline
        self.partition = partition
        self.logger = logger
        self.environment = environment
        self.mode = mode
        self.state = state
    }

    /// The checkpoints an extractor resumes from: none when rebuilding.
    public func checkpoints() throws -> [String: SourceCheckpoint] {
        guard mode == .append, let state else { return [:] }
        return try state.checkpoints(pipeline: pipeline, partition: partition.description)
    }

    public func inputPath(_ path: String) -> String { Self.resolve(path, in: projectRoot) }
    public func outputPath(_ path: String) -> String { Self.resolve(path, in: outputRoot) }

    public static func resolve(_ path: String, in root: String) -> String {
        if path.hasPrefix("/") { return path }
        return root.hasSuffix("/") ? root + path : root + "/" + path
    }
}

/// Reads the records of one partition.
public protocol Extractor: Sendable {
    /// Opens the partition's sources. Problems with single records become dead letters
    /// in the batches; a thrown error means the source as a whole cannot be read.
    func open(_ context: RunContext) throws -> any RecordSource
}

/// An extractor that can read single records again by their source position (to
/// re-process dead letters after a fix).
public protocol PositionRereader: Extractor {
    func reread(_ positions: [SourcePosition], context: RunContext) throws -> any RecordSource
}

public struct RetryUnsupported: Error, Sendable, CustomStringConvertible {
    public var pipeline: String
    public var description: String { "the extractor of \(pipeline) cannot read single records again" }
}

/// A stream of batches from an opened extractor. Used from one task only.
public protocol RecordSource: AnyObject {
    /// Up to about `limit` records and dead letters; nil when the source is exhausted.
    func next(limit: Int) throws -> RecordBatch?
}

/// Changes, drops or rejects the records of a batch.
public protocol Transformer: Sendable {
    func apply(_ batch: inout RecordBatch, context: RunContext) throws
    /// Lines for the run's report when the run ends (e.g. the most frequent unknown texts).
    func finish(context: RunContext) -> [String]
    /// True when `apply` depends on nothing but the batch and the stage's own settings
    /// (no state store, no sink): such stages at the head of a pipeline run on the
    /// read-ahead thread, a batch or two ahead of loading (the second core). A batch
    /// transformed ahead and never loaded (a stop, an error) left no trace but notes.
    var isBatchLocal: Bool { get }
    /// For a stage that only picks fields (a `select`): where each output field comes
    /// from. When such a stage is the pipeline's last, the run reads the columns of the
    /// sinks' schemas through it instead of building the selected records first.
    var projection: Projection? { get }
}

extension Transformer {
    public func finish(context: RunContext) -> [String] { [] }
    public var isBatchLocal: Bool { false }
    public var projection: Projection? { nil }
}

/// What a `select` makes of a record: only these fields, each read from a path (absent:
/// null), the value as it is or as compact JSON text (null stays null).
public struct Projection: Sendable {
    public struct Column: Sendable {
        public var name: String
        public var path: FieldPath
        public var asJSON: Bool
        public init(name: String, path: FieldPath, asJSON: Bool) {
            self.name = name
            self.path = path
            self.asJSON = asJSON
        }
    }

    public var columns: [Column]
    public init(columns: [Column]) { self.columns = columns }

    /// The value of column `c` in a record (its reader remembers where the path was found).
    public func value(_ c: Int, in fields: Fields, reader: inout PathReader) -> Value {
        Self.value(in: fields, reader: &reader, asJSON: columns[c].asJSON)
    }

    /// A path's value (absent: null), as it is or as compact JSON text (null stays null):
    /// what `select` and `copy` take from a record.
    public static func value(in fields: Fields, reader: inout PathReader, asJSON: Bool) -> Value {
        withValue(in: fields, reader: &reader, asJSON: asJSON) { $0 }
    }

    /// `body` of column `c`'s value, where it lies in the record when it is taken as it is
    /// (`PathReader.withValue`: not copied).
    @inline(__always)
    public func withValue<R>(_ c: Int, in fields: Fields, reader: inout PathReader, _ body: (Value) -> R) -> R {
        Self.withValue(in: fields, reader: &reader, asJSON: columns[c].asJSON, body)
    }

    @inline(__always)
    static func withValue<R>(in fields: Fields, reader: inout PathReader, asJSON: Bool, _ body: (Value) -> R) -> R {
        reader.withValue(in: fields) { v in
            guard let v else { return body(.null) }
            return asJSON && !v.isNull ? body(.string(JSONWriter.string(v))) : body(v)
        }
    }
}

/// One row coerced to a table schema: values in schema column order.
public struct Row: Sendable {
    public var key: String
    public var position: SourcePosition
    public var values: [Value]

    public init(key: String, position: SourcePosition, values: [Value]) {
        self.key = key
        self.position = position
        self.values = values
    }
}

/// Writes rows to a sink (a warehouse table, a CSV file).
public protocol Loader: Sendable {
    /// The table schema rows are coerced to before they reach this loader.
    var schema: TableSchema { get }
    /// A short name for messages: `warehouse signup_attempts`, `csv out/x.csv`.
    var label: String { get }
    func open(_ context: RunContext) async throws -> any LoadSession
}

/// What a sink made durable in one segment.
public struct SegmentResult: Sendable {
    /// Keys to add to the delivery ledger (sinks that cannot check keys themselves).
    public var deliveredKeys: [String]
    public var receipts: [SinkReceipt]
    /// A streaming sink: rows of this run that the sink has not acknowledged yet (they wait
    /// in the state store's durable buffer), counted once, by the final commit.
    public var buffered: Int
    /// Rows of this run the sink refused for good since the last commit (the sink kept
    /// their dead letters in the state store itself, with the rows leaving its buffer).
    public var rejectedOfRun: Int
    public init(deliveredKeys: [String] = [], receipts: [SinkReceipt] = [], buffered: Int = 0, rejectedOfRun: Int = 0) {
        self.deliveredKeys = deliveredKeys
        self.receipts = receipts
        self.buffered = buffered
        self.rejectedOfRun = rejectedOfRun
    }
}

/// One run's writes to a sink, in segments. Used from one task only.
///
/// The runner calls `commitSegment` on every sink, then records the segment's
/// checkpoints and the sinks' results in the state store in one transaction. A sink
/// must therefore survive a crash between its own commit and the state's: a sink that
/// checks keys itself ignores rows it holds already (BigQuery's buffer); a file sink is
/// repaired back to its last receipt when it opens, and the local warehouse deletes the
/// commits past its receipt.
public protocol LoadSession: AnyObject {
    /// Writes rows; returns how many were new to the sink (rows whose key the sink held
    /// already are not written again).
    func write(_ rows: [Row]) async throws -> Int
    /// Encodes rows in the sink's format away from the session (on the runner's worker
    /// thread), if the sink has such a format; `write(_:encoded:)` then gets the bytes.
    var encoder: (any RowEncoder)? { get }
    /// `write(_:)` with the rows already encoded by `encoder` (nil: not encoded). With
    /// encoded rows, the rows carry their keys and positions but no values.
    func write(_ rows: [Row], encoded: EncodedRows?) async throws -> Int
    /// Makes everything written so far durable. With `final`, the session ends (a
    /// replace makes its new output visible only then).
    func commitSegment(final: Bool) async throws -> SegmentResult
    func rollback() async
}

extension LoadSession {
    public var encoder: (any RowEncoder)? { nil }
    public func write(_ rows: [Row], encoded: EncodedRows?) async throws -> Int { try await write(rows) }
}

/// Rows encoded in a sink's format, in one buffer: row `i` is `bytes[ends[i - 1]..<ends[i]]`
/// (from 0 for the first).
public struct EncodedRows: Sendable {
    public var bytes: [UInt8]
    public var ends: [Int]

    public init(bytes: [UInt8] = [], ends: [Int] = []) {
        self.bytes = bytes
        self.ends = ends
    }

    public func row(_ i: Int) -> ArraySlice<UInt8> { bytes[(i == 0 ? 0 : ends[i - 1])..<ends[i]] }

    /// The bytes, moved out (left empty here): a buffer to reuse.
    public mutating func takeBytes() -> [UInt8] {
        var taken: [UInt8] = []
        swap(&taken, &bytes)
        return taken
    }
}

/// Encodes rows in a sink's format; pure, so it runs on any thread. A row is encoded a
/// value at a time, in column order, then ended: the worker writes each coerced value
/// straight into the row's bytes (`RowBytes`), without a row of values in between.
public protocol RowEncoder: Sendable {
    /// Appends the value of column `column` (0-based; called in column order).
    func append(_ value: Value, column: Int, to out: inout RowBytes)
    /// Appends, as the value of column `column`, `value`'s compact JSON text: what
    /// `append(.string(JSONWriter.string(value)), ...)` appends, which is the default.
    func appendJSON(_ value: Value, column: Int, to out: inout RowBytes)
    /// Ends a row whose every column was appended.
    func endRow(_ out: inout RowBytes)
}

extension RowEncoder {
    public func appendJSON(_ value: Value, column: Int, to out: inout RowBytes) {
        append(.string(JSONWriter.string(value)), column: column, to: &out)
    }

    /// Rows of values, encoded the same way.
    public func encode(_ rows: [Row]) -> EncodedRows {
        var out = EncodedRows()
        out.ends.reserveCapacity(rows.count)
        out.bytes.reserveCapacity(rows.count * 512)
        var row = RowBytes()
        for r in rows {
            row.removeAll()
            for c in r.values.indices { append(r.values[c], column: c, to: &row) }
            endRow(&row)
            out.bytes.append(row)
            out.ends.append(out.bytes.count)
        }
        return out
    }
}
