import Foundation
import GRDB
import SluiceConfig
import SluiceCore

/// A problem with a SQLite file (warehouse or state). Names the file and what to do.
public struct SQLiteStoreError: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var detail: String
    public var description: String { "\(path): \(detail)" }
}

/// The local target's warehouse: one SQLite table per schema (see docs/types.md for the
/// type mapping), plus a column `_sluice_partition`. Rows are inserted with the record
/// key as primary key, so a row whose key the table holds already is not inserted twice:
/// a segment replayed after a crash adds nothing. A replace deletes the partition's rows
/// and inserts the new ones in one transaction.
public struct SQLiteTableLoader: Loader {
    public var schema: TableSchema
    public var table: String
    public var databasePath: String
    public var keyColumn: String?

    public init(schema: TableSchema, table: String, databasePath: String, keyColumn: String?) {
        self.schema = schema
        self.table = table
        self.databasePath = databasePath
        self.keyColumn = keyColumn
    }

    public var label: String { "warehouse \(table)" }

    /// SQLite column types for BigQuery types.
    public static func sqliteType(_ field: SchemaField) -> String {
        if field.mode == .repeated { return "TEXT" }
        switch field.type {
        case .integer, .boolean: return "INTEGER"
        case .float: return "REAL"
        case .bytes: return "BLOB"
        default: return "TEXT"
        }
    }

    public func open(_ context: RunContext) async throws -> any LoadSession {
        let path = context.outputPath(databasePath)
        // 16 MiB of page cache: every segment inserts its keys all over the primary key's
        // index; with 4 MiB most of them re-read and spill its pages (1M lines: 22.3 s,
        // 12.3 s of it the system's, against 19.6 s and 8.9 s; docs/benchmarks.md).
        let queue = try SQLiteFiles.openQueue(path, spanningTransaction: true, cacheKiB: 16 * 1024)
        let key = keyColumn.flatMap { schema.index(of: $0) }
        try await queue.write { db in try ensureTable(db, keyIndex: key, path: path) }
        return try SQLiteTableSession(queue: queue, table: table, schema: schema, path: path,
                                      partition: context.partition.description, mode: context.mode)
    }

    public static let partitionColumn = "_sluice_partition"

    func ensureTable(_ db: Database, keyIndex: Int?, path: String) throws {
        let existing = try Row.fetchAll(db, sql: "PRAGMA table_info(\(quote(table)))")
        if existing.isEmpty {
            var columns = schema.fields.enumerated().map { (i, f) in
                "\(quote(f.name)) \(Self.sqliteType(f))" + (f.mode == .required || i == keyIndex ? " NOT NULL" : "")
            }
            columns.append("\(quote(Self.partitionColumn)) TEXT")
            if let keyIndex { columns.append("PRIMARY KEY (\(quote(schema.fields[keyIndex].name)))") }
            try db.execute(sql: "CREATE TABLE \(quote(table)) (\(columns.joined(separator: ", ")))")
            try db.execute(sql: "CREATE INDEX \(quote(table + "_by_partition")) ON \(quote(table)) (\(quote(Self.partitionColumn)))")
            return
        }
        var have: [(String, String)] = existing.map { ($0["name"], ($0["type"] as String).uppercased()) }
        if let i = have.firstIndex(where: { $0.0 == Self.partitionColumn }) {
            have.remove(at: i)
        } else {
            // A table from before partition tracking: add the column (forward-only).
            try db.execute(sql: "ALTER TABLE \(quote(table)) ADD COLUMN \(quote(Self.partitionColumn)) TEXT")
            try db.execute(sql: "CREATE INDEX IF NOT EXISTS \(quote(table + "_by_partition")) ON \(quote(table)) (\(quote(Self.partitionColumn)))")
        }
        let want = schema.fields.map { ($0.name, Self.sqliteType($0)) }
        if have.map(\.0) != want.map(\.0) || have.map(\.1) != want.map(\.1) {
            let missing = want.filter { w in !have.contains { $0.0 == w.0 } }.map(\.0)
            let extra = have.filter { h in !want.contains { $0.0 == h.0 } }.map(\.0)
            var parts: [String] = []
            if !missing.isEmpty { parts.append("columns missing from the table: \(missing.joined(separator: ", "))") }
            if !extra.isEmpty { parts.append("columns not in the schema file: \(extra.joined(separator: ", "))") }
            if parts.isEmpty { parts.append("column order or types differ") }
            throw SQLiteStoreError(path: path, detail: "table \(table) does not match its schema file \(schema.source): \(parts.joined(separator: "; ")); migrate or drop the table")
        }
    }
}

/// The local warehouse's rows encoded on the runner's worker (`RowEncoder`), for
/// `SQLiteTableSession.write(_:encoded:)` to bind: each value a tag byte, then 8 bytes
/// little-endian (0 null; 1 an integer; 2 a real) or a 4-byte little-endian length and
/// the bytes (3 a text, 4 a blob). Values as the table stores them (docs/types.md):
/// booleans as 0 and 1, BYTES (base64 text in records) as a blob, arrays and objects
/// (REPEATED and RECORD columns) as their JSON text. The worker already has the values
/// at hand; the runner (the thread a run to this sink waits for) then binds bytes,
/// instead of retaining each value of a row and freeing the rows.
struct SQLiteRowEncoder: RowEncoder {
    /// Per column: BYTES, not REPEATED (its base64 text becomes a blob).
    let blobs: [Bool]

    static let null: UInt8 = 0, integer: UInt8 = 1, real: UInt8 = 2, text: UInt8 = 3, blob: UInt8 = 4

    func append(_ value: Value, column: Int, to out: inout RowBytes) {
        switch value {
        case .null: out.append(Self.null)
        case .int(let n): Self.eight(Self.integer, UInt64(bitPattern: n), &out)
        case .bool(let b): Self.eight(Self.integer, b ? 1 : 0, &out)
        case .double(let d): Self.eight(Self.real, d.bitPattern, &out)
        case .largeInteger(let digits): Self.string(Self.text, digits, &out)
        case .string(let s):
            if blobs[column], let bytes = Base64.decode(s) {
                Self.length(Self.blob, bytes.count, &out)
                bytes.withUnsafeBufferPointer { out.append(contentsOf: $0) }
            } else {
                Self.string(Self.text, s, &out)
            }
        case .array, .object: appendJSON(value, column: column, to: &out)
        }
    }

    /// The JSON text written straight into the row, no string of it made.
    func appendJSON(_ value: Value, column: Int, to out: inout RowBytes) {
        out.append(Self.text)
        let at = out.count
        out.appendZeros(4)
        JSONWriter.write(value, into: &out)
        let n = out.count - at - 4
        out.withMutableBytes { b in withUnsafeBytes(of: UInt32(n).littleEndian) { for k in 0..<4 { b[at + k] = $0[k] } } }
    }

    func endRow(_ out: inout RowBytes) {}

    @inline(__always) static func eight(_ tag: UInt8, _ bits: UInt64, _ out: inout RowBytes) {
        out.append(tag)
        withUnsafeBytes(of: bits.littleEndian) { out.append(contentsOf: $0) }
    }

    /// A tag and a length, before that many bytes.
    @inline(__always) static func length(_ tag: UInt8, _ n: Int, _ out: inout RowBytes) {
        out.append(tag)
        withUnsafeBytes(of: UInt32(n).littleEndian) { out.append(contentsOf: $0) }
    }

    /// A tag, the text's UTF-8 length and its bytes.
    @inline(__always) static func string(_ tag: UInt8, _ s: String, _ out: inout RowBytes) {
        var s = s
        s.withUTF8 { bytes in
            length(tag, bytes.count, &out)
            out.append(contentsOf: bytes)
        }
    }
}

extension SQLiteBinder {
    /// Binds the value encoded at `at` in `bytes` (`SQLiteRowEncoder`), and moves `at` past it.
    mutating func bind(encodedAt at: inout Int, in bytes: UnsafeRawBufferPointer) {
        let tag = bytes[at]
        at += 1
        switch tag {
        case SQLiteRowEncoder.integer, SQLiteRowEncoder.real:
            let bits = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: at, as: UInt64.self))
            at += 8
            if tag == SQLiteRowEncoder.integer { bind(Int64(bitPattern: bits)) } else { bind(double: Double(bitPattern: bits)) }
        case SQLiteRowEncoder.text, SQLiteRowEncoder.blob:
            let n = Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: at, as: UInt32.self)))
            let value = UnsafeRawBufferPointer(rebasing: bytes[(at + 4)..<(at + 4 + n)])
            at += 4 + n
            if tag == SQLiteRowEncoder.text { bind(text: value) } else { bind(blob: value) }
        default:
            bindNull()
        }
    }
}

func quote(_ identifier: String) -> String {
    "\"" + identifier.replacingOccurrences(of: "\"", with: "\"\"") + "\""
}

final class SQLiteTableSession: LoadSession {
    let queue: DatabaseQueue
    /// The INSERT up to its rows, and one row's parameters.
    let insertHead: String
    let rowMarks: String
    let rowEncoder: SQLiteRowEncoder
    let schema: TableSchema
    let path: String
    let partition: String
    var open = false

    init(queue: DatabaseQueue, table: String, schema: TableSchema, path: String, partition: String, mode: LoadMode) throws {
        self.queue = queue
        self.schema = schema
        self.path = path
        self.partition = partition
        let cols = (schema.fields.map(\.name) + [SQLiteTableLoader.partitionColumn]).map(quote).joined(separator: ", ")
        insertHead = "INSERT INTO \(quote(table)) (\(cols)) VALUES "
        rowMarks = "(" + Database.marks(schema.fields.count + 1) + ")"
        rowEncoder = SQLiteRowEncoder(blobs: schema.fields.map { $0.type == .bytes && $0.mode != .repeated })
        try queue.inDatabase { db in
            try db.execute(sql: "BEGIN IMMEDIATE")
            if mode == .replace {
                try db.execute(sql: "DELETE FROM \(quote(table)) WHERE \(quote(SQLiteTableLoader.partitionColumn)) = ?", arguments: [partition])
            }
        }
        open = true
    }

    /// Rows per INSERT: a few statements a batch, far from SQLite's limit of 32,766
    /// parameters for any schema of fewer than ~500 columns.
    static func rowsPerStatement(columns: Int) -> Int { max(1, min(64, 32_000 / (columns + 1))) }

    /// The INSERT of `rows` rows (the columns, then the partition).
    func insertSQL(rows: Int) -> String {
        insertHead + Database.marks(rows, rowMarks) + " ON CONFLICT DO NOTHING"
    }

    /// Rows with their values: encoded here (`encoder`), then written as encoded rows.
    func write(_ rows: [SluiceCore.Row]) async throws -> Int {
        try await write(rows, encoded: rowEncoder.encode(rows))
    }

    var encoder: (any RowEncoder)? { rowEncoder }

    /// Binds each row's values from their encoding (`SQLiteRowEncoder`; the rows
    /// themselves may be without values) straight through SQLite's C API
    /// (`SQLiteBinder`), many rows a statement. Through GRDB each value became a
    /// `DatabaseValue` in an array of arguments and each row a statement: the runner spent
    /// more time on that than SQLite did on its inserts (a 1M-line run to this sink: 25.5
    /// s; docs/benchmarks.md).
    func write(_ rows: [SluiceCore.Row], encoded: EncodedRows?) async throws -> Int {
        guard let encoded, encoded.ends.count == rows.count else { return try await write(rows) }
        let columns = schema.fields.count
        let partition = self.partition
        let size = Self.rowsPerStatement(columns: columns)
        return try queue.inDatabase { db in
            var inserted = 0
            try encoded.bytes.withUnsafeBytes { bytes in
                try db.forEachChunk(of: rows.indices, size: size, sql: insertSQL) { chunk, statement in
                    try statement.executeBound(db) { b in
                        for r in chunk {
                            var at = r == 0 ? 0 : encoded.ends[r - 1]
                            for _ in 0..<columns { b.bind(encodedAt: &at, in: bytes) }
                            b.bind(partition)
                        }
                    }
                    inserted += db.changesCount
                }
            }
            return inserted
        }
    }

    func commitSegment(final: Bool) async throws -> SegmentResult {
        try queue.inDatabase { db in
            try db.execute(sql: "COMMIT")
            CrashPoints.reach("warehouse.committed")
            if !final { try db.execute(sql: "BEGIN IMMEDIATE") }
        }
        open = !final
        return SegmentResult()
    }

    func rollback() async {
        if open { try? queue.inDatabase { db in try db.execute(sql: "ROLLBACK") } }
        open = false
    }
}

/// Retries an operation that SQLite refused with BUSY for up to 10 seconds: switching a
/// new file to WAL or migrating it does not wait on the busy handler when another
/// process opens the same new file at the same moment.
func retryingWhileBusy<T>(_ body: () throws -> T) throws -> T {
    let deadline = Date().addingTimeInterval(10)
    while true {
        do {
            return try body()
        } catch let error as DatabaseError where (error.resultCode == .SQLITE_BUSY || error.resultCode == .SQLITE_LOCKED) && Date() < deadline {
            usleep(useconds_t.random(in: 5_000...50_000))
        }
    }
}

enum SQLiteFiles {
    /// Opens (creating folders) a SQLite file in WAL mode, with a clear error for a file
    /// that is not a database or is locked.
    /// `spanningTransaction`: a run's transaction stays open across the batches of a
    /// session (GRDB must allow a transaction left open between accesses). `pageSize`: of
    /// a file created now (SQLite cannot change it for a file in WAL mode; an existing
    /// file keeps its own).
    static func openQueue(_ path: String, spanningTransaction: Bool = false, pageSize: Int? = nil, cacheKiB: Int = 4096) throws -> DatabaseQueue {
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty { try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        var config = Configuration()
        config.busyMode = .timeout(10)
        config.allowsUnsafeTransactions = spanningTransaction
        config.prepareDatabase { db in
            // Before the switch to WAL, the first write of a new file.
            if let pageSize { try db.execute(sql: "PRAGMA page_size = \(pageSize)") }
            try db.execute(sql: "PRAGMA journal_mode = WAL")
            try db.execute(sql: "PRAGMA synchronous = FULL")
            // 4 MiB of page cache by default (SQLite's is 2 MiB): the ledger's and the
            // windows' indexes take random keys; a small cache re-reads and spills their
            // pages. The local warehouse asks for 16 MiB (`SQLiteTableLoader.open`).
            try db.execute(sql: "PRAGMA cache_size = -\(cacheKiB)")
        }
        do {
            return try retryingWhileBusy {
                let queue = try DatabaseQueue(path: path, configuration: config)
                try queue.inDatabase { db in _ = try Int.fetchOne(db, sql: "SELECT count(*) FROM sqlite_master") }
                return queue
            }
        } catch let error as DatabaseError {
            switch error.resultCode {
            case .SQLITE_NOTADB, .SQLITE_CORRUPT:
                throw SQLiteStoreError(path: path, detail: "is not a valid SQLite database (corrupt?); restore it from a backup or move it away — sluice never resets it silently")
            case .SQLITE_BUSY, .SQLITE_LOCKED:
                throw SQLiteStoreError(path: path, detail: "is locked by another process; wait for it to finish")
            default:
                throw SQLiteStoreError(path: path, detail: "cannot open: \(error.message ?? "\(error.resultCode)")")
            }
        }
    }
}

extension SQLiteTableLoader {
    /// Reads a warehouse table back as values in schema order (BOOLEAN as booleans, BYTES
    /// as base64), for `sluice test` and for checks.
    public static func readTable(databasePath: String, table: String, schema: TableSchema) throws -> [[Value]] {
        let queue = try SQLiteFiles.openQueue(databasePath)
        return try queue.read { db in
            let cols = schema.fields.map { quote($0.name) }.joined(separator: ", ")
            return try GRDB.Row.fetchAll(db, sql: "SELECT \(cols) FROM \(quote(table))").map { row in
                schema.fields.enumerated().map { (i, field) -> Value in
                    let dbValue: DatabaseValue = row[i]
                    switch dbValue.storage {
                    case .null: return .null
                    case .int64(let n):
                        if field.type == .boolean, field.mode != .repeated { return .bool(n != 0) }
                        return .int(n)
                    case .double(let d): return .double(d)
                    case .string(let s): return .string(s)
                    case .blob(let data): return .string(Base64.encode([UInt8](data)))
                    }
                }
            }
        }
    }
}
