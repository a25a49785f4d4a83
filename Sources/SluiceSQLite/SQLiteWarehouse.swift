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
/// type mapping), plus the columns `_sluice_partition` and `_sluice_commit`, and a table
/// `_sluice_commits` of the segments committed to it. Each row is written once, as to a
/// CSV file: the delivery ledger and the segment's own keys (`SegmentDeliveries`) keep
/// the rows whose keys the table holds already out, and a segment the table committed
/// but the state store did not (a crash between the two commits) is deleted when the
/// next session of its pipeline and partition opens: its commit is newer than the
/// state's receipt. The table has no index of keys: one (its primary key, before) took
/// random keys all over its pages, and a 1M-line run spent half its time on it
/// (docs/benchmarks.md). A replace deletes the partition's rows first.
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
        // SQLite's own 2 MiB of page cache: rows are appended, and no index takes random
        // keys (16 MiB while the record key was the primary key). 1 and 4 MiB ran 1M lines
        // in the same time; each MiB is one of the run's peak. A new file gets 16 KiB
        // pages, as the state store: a quarter of the WAL's and the checkpoints' `pwrite`s
        // for the same bytes (1M lines: 7.35-7.53 s, 1.85-2.00 system CPU s with 4 KiB;
        // 6.55-6.98 s, 1.23-1.37 s; docs/benchmarks.md). A file made before keeps its own.
        let queue = try SQLiteFiles.openQueue(path, spanningTransaction: true, pageSize: 16 << 10, cacheKiB: 2048)
        let key = keyColumn.flatMap { schema.index(of: $0) }
        try await queue.write { db in
            try ensureTable(db, keyIndex: key, path: path)
            try Self.ensureCommits(db)
        }
        // The last of this pipeline's commits to the partition that the state store
        // recorded (0: none); nil without a state store (nothing to repair against).
        let target = Self.receiptTarget(table: table, partition: context.partition.description, file: databasePath)
        let acknowledged = try context.state.map { try $0.receipt(pipeline: context.pipeline, sink: label, target: target) ?? 0 }
        return try SQLiteTableSession(queue: queue, table: table, schema: schema, path: path, sink: label, target: target,
                                      acknowledged: acknowledged, context: context)
    }

    public static let partitionColumn = "_sluice_partition"
    /// The id (in `_sluice_commits`) of the segment commit that wrote a row.
    public static let commitColumn = "_sluice_commit"
    public static let commitsTable = "_sluice_commits"

    /// The target of a table's receipts in the state store: its commits to one partition,
    /// in one file (the target's `path` as configured). Commit ids count within a file: two
    /// files' receipts must never be taken for each other (one state store, two sqlite
    /// targets run in turn), or a session would delete commits the state recorded.
    static func receiptTarget(table: String, partition: String, file: String) -> String { "\(table) \(partition) in \(file)" }

    /// `_sluice_commits`: a row per segment commit of a pipeline to a table's partition,
    /// ids never reused (`AUTOINCREMENT`).
    static func ensureCommits(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE IF NOT EXISTS \(commitsTable) (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                table_name TEXT NOT NULL,
                pipeline TEXT NOT NULL,
                partition TEXT NOT NULL,
                committed_at TEXT NOT NULL
            );
            CREATE INDEX IF NOT EXISTS \(commitsTable)_by_load ON \(commitsTable) (table_name, pipeline, partition, id);
            """)
    }

    func ensureTable(_ db: Database, keyIndex: Int?, path: String) throws {
        let existing = try Row.fetchAll(db, sql: "PRAGMA table_info(\(quote(table)))")
        if existing.isEmpty {
            var columns = schema.fields.enumerated().map { (i, f) in
                "\(quote(f.name)) \(Self.sqliteType(f))" + (f.mode == .required || i == keyIndex ? " NOT NULL" : "")
            }
            columns.append("\(quote(Self.partitionColumn)) TEXT")
            columns.append("\(quote(Self.commitColumn)) INTEGER")
            try db.execute(sql: "CREATE TABLE \(quote(table)) (\(columns.joined(separator: ", ")))")
            try db.execute(sql: "CREATE INDEX \(quote(table + "_by_partition")) ON \(quote(table)) (\(quote(Self.partitionColumn)))")
            return
        }
        var have: [(String, String)] = existing.map { ($0["name"], ($0["type"] as String).uppercased()) }
        if let i = have.firstIndex(where: { $0.0 == Self.commitColumn }) {
            have.remove(at: i)
        } else {
            // A table from before commits were tracked (its primary key on the record key
            // stays, and keeps ignoring the rows it holds): add the column.
            try db.execute(sql: "ALTER TABLE \(quote(table)) ADD COLUMN \(quote(Self.commitColumn)) INTEGER")
        }
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
    let table: String
    let path: String
    let partition: String
    /// The receipts' target (`SQLiteTableLoader.receiptTarget`); their sink is the deliveries'.
    let target: String
    let context: RunContext
    var deliveries: SegmentDeliveries
    /// The id of the segment commit in progress (`_sluice_commits`), which its rows carry.
    var commit: Int64 = 0
    var open = false

    /// Opens the session's first transaction. `acknowledged`: the state store's receipt
    /// (nil without a state store): this pipeline's commits to the partition past it are
    /// deleted first, rows and all.
    init(queue: DatabaseQueue, table: String, schema: TableSchema, path: String, sink: String, target: String,
         acknowledged: Int64?, context: RunContext) throws {
        self.queue = queue
        self.schema = schema
        self.table = table
        self.path = path
        self.partition = context.partition.description
        self.target = target
        self.context = context
        deliveries = SegmentDeliveries(sink: sink)
        let cols = (schema.fields.map(\.name) + [SQLiteTableLoader.partitionColumn, SQLiteTableLoader.commitColumn]).map(quote)
            .joined(separator: ", ")
        // `OR FAIL`: a statement of many rows that may abort halfway (the default, `ABORT`,
        // for a NOT NULL column) makes SQLite keep a statement journal, the first content
        // of each page it changes, to undo that statement alone; past 64 KiB it goes to a
        // temporary file (7.7 GB written for 1M lines; docs/benchmarks.md). With `FAIL`
        // a failing statement keeps the rows before it, and needs no journal: a failure
        // ends the session's transaction anyway, which is rolled back.
        insertHead = "INSERT OR FAIL INTO \(quote(table)) (\(cols)) VALUES "
        rowMarks = "(" + Database.marks(schema.fields.count + 2) + ")"
        rowEncoder = SQLiteRowEncoder(blobs: schema.fields.map { $0.type == .bytes && $0.mode != .repeated })
        try queue.inDatabase { db in
            try db.execute(sql: "BEGIN IMMEDIATE")
            do {
                if let acknowledged { try repair(db, acknowledged: acknowledged) }
                if context.mode == .replace {
                    try db.execute(sql: "DELETE FROM \(quote(table)) WHERE \(quote(SQLiteTableLoader.partitionColumn)) = ?", arguments: [partition])
                }
                commit = try beginCommit(db)
            } catch {
                try? db.execute(sql: "ROLLBACK")
                throw error
            }
        }
        open = true
    }

    /// Deletes this pipeline's commits to the partition that the state store has not
    /// recorded (`acknowledged` is the last it has), with their rows. A receipt whose
    /// commit the table does not have means the table (or its file) was replaced or
    /// deleted after rows were delivered to it: the ledger would keep them out for good.
    /// The rows of earlier commits of the partition go from `_sluice_commits` (a run every
    /// minute would add half a million a year; only the recorded one is needed, for the
    /// check); their rows keep their ids, which are never reused.
    func repair(_ db: Database, acknowledged: Int64) throws {
        let commits = SQLiteTableLoader.commitsTable
        let load: StatementArguments = [table, context.pipeline, partition]
        let stale = try Int64.fetchAll(db, sql: """
            SELECT id FROM \(commits) WHERE table_name = ? AND pipeline = ? AND partition = ? AND id > ?
            """, arguments: load + [acknowledged])
        if !stale.isEmpty {
            let ids = stale.map(String.init).joined(separator: ", ")
            try db.execute(sql: """
                DELETE FROM \(quote(table)) WHERE \(quote(SQLiteTableLoader.partitionColumn)) = ? AND \(quote(SQLiteTableLoader.commitColumn)) IN (\(ids))
                """, arguments: [partition])
            try db.execute(sql: "DELETE FROM \(commits) WHERE id IN (\(ids))")
            context.logger.warning("\(deliveries.sink): removed the rows of \(stale.count) segment(s) of \(partition) committed after the last state commit (a crash between the two); they are loaded again")
        }
        if acknowledged > 0, context.mode == .append,
           try Int64.fetchOne(db, sql: "SELECT id FROM \(commits) WHERE id = ? AND table_name = ? AND pipeline = ? AND partition = ?",
                              arguments: [acknowledged] + load) == nil {
            throw SQLiteStoreError(path: path, detail: "table \(table) does not hold the rows delivered to it for \(partition) (it was dropped or replaced outside sluice); rebuild the partition with `sluice backfill --replace`")
        }
        try db.execute(sql: "DELETE FROM \(commits) WHERE table_name = ? AND pipeline = ? AND partition = ? AND id < ?",
                       arguments: load + [acknowledged])
    }

    /// A row in `_sluice_commits` for the transaction just begun; its id.
    func beginCommit(_ db: Database) throws -> Int64 {
        try db.execute(sql: """
            INSERT INTO \(SQLiteTableLoader.commitsTable) (table_name, pipeline, partition, committed_at) VALUES (?, ?, ?, ?)
            """, arguments: [table, context.pipeline, partition, SQLiteStateStore.now()])
        return db.lastInsertedRowID
    }

    /// Rows per INSERT: a few statements a batch, far from SQLite's limit of 32,766
    /// parameters for any schema of fewer than ~500 columns.
    static func rowsPerStatement(columns: Int) -> Int { max(1, min(64, 32_000 / (columns + 2))) }

    /// The INSERT of `rows` rows (the columns, then the partition and the commit). `ON
    /// CONFLICT DO NOTHING` is for tables made before commits were tracked, whose primary
    /// key on the record key ignores the rows they hold.
    func insertSQL(rows: Int) -> String {
        insertHead + Database.marks(rows, rowMarks) + " ON CONFLICT DO NOTHING"
    }

    /// Rows with their values: encoded here (`encoder`), then written as encoded rows.
    func write(_ rows: [SluiceCore.Row]) async throws -> Int {
        try await write(rows, encoded: rowEncoder.encode(rows))
    }

    var encoder: (any RowEncoder)? { rowEncoder }

    /// Binds the new rows' values from their encoding (`SQLiteRowEncoder`; the rows
    /// themselves may be without values) straight through SQLite's C API
    /// (`SQLiteBinder`), many rows a statement. Through GRDB each value became a
    /// `DatabaseValue` in an array of arguments and each row a statement: the runner spent
    /// more time on that than SQLite did on its inserts (a 1M-line run to this sink: 25.5
    /// s; docs/benchmarks.md).
    func write(_ rows: [SluiceCore.Row], encoded: EncodedRows?) async throws -> Int {
        guard let encoded, encoded.ends.count == rows.count else { return try await write(rows) }
        let kept = try deliveries.newRows(rows, context: context)
        guard !kept.isEmpty else { return 0 }
        let columns = schema.fields.count
        let partition = self.partition, commit = self.commit
        let size = Self.rowsPerStatement(columns: columns)
        return try queue.inDatabase { db in
            var inserted = 0
            try encoded.bytes.withUnsafeBytes { bytes in
                try db.forEachChunk(of: kept, size: size, sql: insertSQL) { chunk, statement in
                    try statement.executeBound(db) { b in
                        for r in chunk {
                            var at = r == 0 ? 0 : encoded.ends[r - 1]
                            for _ in 0..<columns { b.bind(encodedAt: &at, in: bytes) }
                            b.bind(partition)
                            b.bind(commit)
                        }
                    }
                    inserted += db.changesCount
                }
            }
            return inserted
        }
    }

    func commitSegment(final: Bool) async throws -> SegmentResult {
        let committed = commit
        try queue.inDatabase { db in
            try db.execute(sql: "COMMIT")
            CrashPoints.reach("warehouse.committed")
            if !final {
                try db.execute(sql: "BEGIN IMMEDIATE")
                commit = try beginCommit(db)
            }
        }
        open = !final
        return SegmentResult(deliveredKeys: deliveries.takePending(), receipts: [SinkReceipt(sink: deliveries.sink, target: target, length: committed)])
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
