/// Where a record came from: the file (relative to the project root), the 1-based
/// line, and the byte offset of the line in the (decompressed) stream.
public struct SourcePosition: Sendable, Hashable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var offset: Int64
    /// The identity of the file (see `SourceCheckpoint.fileID`), when the source has one;
    /// position-based record keys use it instead of the path, so renames keep keys.
    public var fileID: String?

    public init(file: String, line: Int, offset: Int64 = 0, fileID: String? = nil) {
        self.file = file
        self.line = line
        self.offset = offset
        self.fileID = fileID
    }

    public var description: String { "\(file):\(line)" }
}

/// One record travelling through a pipeline.
public struct Record: Sendable {
    public var fields: Fields
    public var position: SourcePosition
    /// The record key (see `RecordKey`); set by the runner right after extraction.
    public var key: String
    /// The raw source text of the record, kept only until the record is loaded so that a
    /// dead letter can keep it for re-processing. Never logged.
    public var raw: [UInt8]?

    public init(fields: Fields, position: SourcePosition, key: String = "", raw: [UInt8]? = nil) {
        self.fields = fields
        self.position = position
        self.key = key
        self.raw = raw
    }
}

/// Why a record could not be loaded. The kinds are stable identifiers that tests and
/// `sluice status` use; the message says what and where, never the value.
public struct DeadLetter: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        case malformedJSON = "malformed_json"
        case invalidUTF8 = "invalid_utf8"
        case notAnObject = "not_an_object"
        case lineTooLong = "line_too_long"
        case truncatedGzip = "truncated_gzip"
        case readError = "read_error"
        case badRow = "bad_row"
        case badTime = "bad_time"
        case schema
        case transform
        /// A received request that cannot be read (a raw HTTP file, a body in its declared format).
        case badRequest = "bad_request"
        /// A callback without a valid signature of its vendor.
        case badSignature = "bad_signature"
        /// A row the warehouse refused (BigQuery's per-row insert errors).
        case warehouse
    }

    public var kind: Kind
    public var position: SourcePosition
    public var message: String
    public var raw: [UInt8]?

    public init(kind: Kind, position: SourcePosition, message: String, raw: [UInt8]? = nil) {
        self.kind = kind
        self.position = position
        self.message = message
        self.raw = raw
    }
}

/// A batch of records, the unit that stages exchange. Stages are type-erased per batch,
/// never per field.
public struct RecordBatch: Sendable {
    public var records: [Record]
    /// Input that could not become a record, or records a stage rejected.
    public var deadLetters: [DeadLetter]
    /// How many records stages dropped on purpose.
    public var filtered: Int
    /// Where the sources stand after this batch (latest per file).
    public var checkpoints: [SourceCheckpoint]

    public init(records: [Record] = [], deadLetters: [DeadLetter] = [], filtered: Int = 0, checkpoints: [SourceCheckpoint] = []) {
        self.records = records
        self.deadLetters = deadLetters
        self.filtered = filtered
        self.checkpoints = checkpoints
    }

    /// Records plus dead letters: what this batch accounts for from the input.
    public var isEmpty: Bool { records.isEmpty && deadLetters.isEmpty }

    /// Moves the records for which `reject` returns a message to the dead letters.
    public mutating func reject(kind: DeadLetter.Kind, _ reject: (inout Record) -> String?) {
        // In place: the kept records move up over the rejected ones, in their order (no
        // new array, no copy of a record when none is rejected).
        var kept = 0
        for i in records.indices {
            if let message = reject(&records[i]) {
                deadLetters.append(DeadLetter(kind: kind, position: records[i].position, message: message, raw: records[i].raw))
            } else {
                if kept != i { records.swapAt(kept, i) }
                kept += 1
            }
        }
        records.removeLast(records.count - kept)
    }
}
