import Foundation
import GRDB
import GRDBSQLite
import SluiceCore

// The durable buffer of streaming sinks (BigQuery), since migration v12:
//
//     stream_buffer(seq INTEGER PRIMARY KEY, sink_id, record_key, partition, file, line,
//                   byte_offset, file_id, payload)
//         UNIQUE INDEX stream_buffer_keys (sink_id, record_key)
//         INDEX stream_buffer_by_partition (sink_id, partition, seq)
//
// Rows go to the end of the table in the order they are buffered (their rowid, `seq`), and
// leave it from the front as BigQuery acknowledges them, so their payloads are written
// once, in order. `sink_id` is the ledger's (`ledger_sinks`), where acknowledged keys go.
// Before v12 the table's primary key was (pipeline, sink, record_key) `WITHOUT ROWID`:
// every row, payload included, went to a random place in that B-tree: a run of 100,000
// rows to the emulator made ~590,000 `pwrite`s and ~600,000 `pread`s (10.4 CPU s); with
// v12 and the rows inserted 100 a statement, ~220,000 and ~82,000 (5.0 CPU s; the session
// of 2026-12-01 from 06:53, docs/benchmarks.md). Only the key index takes random places
// now, and it holds no payloads.
extension SQLiteStateStore {
    /// Migration v6: the durable buffer of streaming sinks (BigQuery). Registered after v5.
    static func registerStreamBuffer(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v6-stream-buffer") { db in
            try db.execute(sql: """
                CREATE TABLE stream_buffer (
                    pipeline TEXT NOT NULL,
                    sink TEXT NOT NULL,
                    record_key TEXT NOT NULL,
                    partition TEXT NOT NULL,
                    file TEXT NOT NULL,
                    line INTEGER NOT NULL,
                    byte_offset INTEGER NOT NULL,
                    file_id TEXT,
                    payload BLOB NOT NULL,
                    seq INTEGER NOT NULL,
                    PRIMARY KEY (pipeline, sink, record_key)
                ) WITHOUT ROWID;
                CREATE INDEX stream_buffer_by_partition ON stream_buffer(pipeline, sink, partition, seq);
                """)
        }
    }

    /// Migration v12: the buffer in the order rows enter it (see the comment at the top).
    /// Rows waiting in it keep their order (`seq`), keys and payloads. Registered after v11
    /// (it needs `ledger_sinks`, v8).
    static func registerOrderedStreamBuffer(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v12-stream-buffer-in-order") { db in
            try db.execute(sql: """
                INSERT OR IGNORE INTO ledger_sinks (pipeline, sink) SELECT DISTINCT pipeline, sink FROM stream_buffer ORDER BY pipeline, sink;
                CREATE TABLE stream_buffer_v12 (
                    seq INTEGER PRIMARY KEY,
                    sink_id INTEGER NOT NULL,
                    record_key TEXT NOT NULL,
                    partition TEXT NOT NULL,
                    file TEXT NOT NULL,
                    line INTEGER NOT NULL,
                    byte_offset INTEGER NOT NULL,
                    file_id TEXT,
                    payload BLOB NOT NULL
                );
                INSERT INTO stream_buffer_v12 (seq, sink_id, record_key, partition, file, line, byte_offset, file_id, payload)
                    SELECT b.seq, s.id, b.record_key, b.partition, b.file, b.line, b.byte_offset, b.file_id, b.payload
                    FROM stream_buffer b JOIN ledger_sinks s ON s.pipeline = b.pipeline AND s.sink = b.sink
                    ORDER BY b.seq;
                DROP TABLE stream_buffer;
                ALTER TABLE stream_buffer_v12 RENAME TO stream_buffer;
                CREATE UNIQUE INDEX stream_buffer_keys ON stream_buffer(sink_id, record_key);
                CREATE INDEX stream_buffer_by_partition ON stream_buffer(sink_id, partition, seq);
                """)
        }
    }

    /// Rows a statement of `bufferRows` inserts (8 parameters each).
    static let bufferRowsPerStatement = 100

    /// Runs a statement on the buffer's rows of a sink with these keys, `keysPerStatement`
    /// keys a statement, and hands each row it returns to `row`: `sql` makes its text
    /// around the condition it is given (`WHERE sink_id = ? AND record_key IN (…)`).
    func forEachBufferRow(_ db: Database, sinkID: Int64, keys: [String], sql: (String) -> String,
                          _ row: (SQLiteStatement) throws -> Void) throws {
        try db.forEachChunk(of: keys, size: Self.keysPerStatement, sql: {
            sql("WHERE sink_id = ? AND record_key IN (\(Database.marks($0)))")
        }) { chunk, statement in
            try statement.forEachRow(db, bind: { b in
                b.bind(sinkID)
                for key in chunk { b.bind(key) }
            }) { s in
                try row(s)
                return true
            }
        }
    }
}

extension SQLiteStateStore: StreamBufferStore {
    /// The ledger check and the buffer check are batched (the ledger's skipped, while the
    /// store knows the sink's whole ledger, for keys its filter never saw); the rows go in
    /// `bufferRowsPerStatement` a statement, their values bound straight through SQLite's
    /// C API.
    public func bufferRows(pipeline: String, sink: String, _ rows: [BufferedRow]) throws -> [String] {
        guard !rows.isEmpty else { return [] }
        return try writeForgettingIDsOnFailure { db in
            let sinkID = try ledgerSinkID(db, pipeline: pipeline, sink: sink, create: true)!
            let keys = rows.map(\.key)
            var skip = Set(try ledgerRows(db, pipeline: pipeline, sink: sink, sinkID: sinkID, keys: keys, epoch: nil).map(\.key))
            try forEachBufferRow(db, sinkID: sinkID, keys: keys, sql: { "SELECT record_key FROM stream_buffer \($0)" }) { s in
                skip.insert(String(cString: sqlite3_column_text(s, 0)))
            }
            // New rows, each key once (the first row of a key wins, as the first insert did).
            var added: [Int] = []
            added.reserveCapacity(rows.count)
            for (i, row) in rows.enumerated() where skip.insert(row.key).inserted { added.append(i) }
            try db.forEachChunk(of: added, size: Self.bufferRowsPerStatement, sql: {
                """
                INSERT INTO stream_buffer (sink_id, record_key, partition, file, line, byte_offset, file_id, payload)
                VALUES \(Database.marks($0, "(?, ?, ?, ?, ?, ?, ?, ?)"))
                """
            }) { chunk, statement in
                try statement.executeBound(db) { b in
                    for i in chunk {
                        let row = rows[i]
                        b.bind(sinkID)
                        b.bind(row.key)
                        b.bind(row.partition)
                        b.bind(row.position.file)
                        b.bind(Int64(row.position.line))
                        b.bind(row.position.offset)
                        if let id = row.position.fileID { b.bind(id) } else { b.bindNull() }
                        row.payload.withUnsafeBytes { b.bind(blob: $0) }
                    }
                }
            }
            return added.map { rows[$0].key }
        }
    }

    public func bufferedRows(pipeline: String, sink: String, partition: String, limit: Int, withPayloads: Bool) throws -> [BufferedRow] {
        try queue.read { db in
            guard let sinkID = try ledgerSinkID(db, pipeline: pipeline, sink: sink, create: false) else { return [] }
            return try GRDB.Row.fetchAll(db, sql: """
                SELECT record_key, partition, file, line, byte_offset, file_id, length(payload) AS size, \(withPayloads ? "payload" : "NULL") AS payload
                FROM stream_buffer WHERE sink_id = ? AND partition = ? ORDER BY seq LIMIT ?
                """, arguments: [sinkID, partition, limit]).map { r in
                let payload: Data? = r["payload"]
                return BufferedRow(key: r["record_key"], partition: r["partition"],
                                   position: SourcePosition(file: r["file"], line: r["line"], offset: r["byte_offset"], fileID: r["file_id"]),
                                   payload: payload.map { [UInt8]($0) } ?? [], payloadBytes: r["size"])
            }
        }
    }

    public func bufferedPayloads(pipeline: String, sink: String, keys: [String]) throws -> [String: [UInt8]] {
        guard !keys.isEmpty else { return [:] }
        return try queue.read { db in
            guard let sinkID = try ledgerSinkID(db, pipeline: pipeline, sink: sink, create: false) else { return [:] }
            var out: [String: [UInt8]] = [:]
            out.reserveCapacity(keys.count)
            try forEachBufferRow(db, sinkID: sinkID, keys: keys, sql: { "SELECT record_key, payload FROM stream_buffer \($0)" }) { s in
                let blob = sqlite3_column_blob(s, 1), n = Int(sqlite3_column_bytes(s, 1)) // in this order (SQLite's advice)
                out[String(cString: sqlite3_column_text(s, 0))] = n == 0 ? [] : [UInt8](UnsafeRawBufferPointer(start: blob, count: n))
            }
            return out
        }
    }

    /// Moves the buffered rows of these keys into the ledger (each under its own
    /// partition) through the store's write path, so that the sink's Bloom filter learns
    /// their keys instead of being forgotten.
    public func acknowledgeBuffered(pipeline: String, sink: String, keys: [String]) throws {
        guard !keys.isEmpty else { return }
        let mergeDue = try writeForgettingIDsOnFailure { db in
            guard let sinkID = try ledgerSinkID(db, pipeline: pipeline, sink: sink, create: false) else { return false }
            // Each chunk's rows leave the buffer in one statement that says which they were.
            var byPartition: [String: [String]] = [:]
            try forEachBufferRow(db, sinkID: sinkID, keys: keys, sql: { "DELETE FROM stream_buffer \($0) RETURNING record_key, partition" }) { s in
                byPartition[String(cString: sqlite3_column_text(s, 1)), default: []].append(String(cString: sqlite3_column_text(s, 0)))
            }
            for (partition, moved) in byPartition.sorted(by: { $0.key < $1.key }) {
                try insertLedger(db, pipeline: pipeline, sink: sink, partition: partition, keys: moved)
            }
            return try !byPartition.isEmpty && recentLedgerIsFull(db)
        }
        // As after a segment commit (`commit`).
        if mergeDue { mergeAfterCommit() }
    }

    public func rejectBuffered(pipeline: String, sink: String, runID: Int64, partition: String, _ rows: [(key: String, letter: DeadLetter)]) throws {
        guard !rows.isEmpty else { return }
        try writeForgettingIDsOnFailure { db in
            let sinkID = try ledgerSinkID(db, pipeline: pipeline, sink: sink, create: false)
            let delete = try db.cachedStatement(sql: "DELETE FROM stream_buffer WHERE sink_id = ? AND record_key = ?")
            for (key, d) in rows {
                if let sinkID { try delete.execute(arguments: [sinkID, key]) }
                try Self.insertDeadLetter(db, runID: runID, pipeline: pipeline, partition: partition, d)
            }
        }
    }

    public func bufferDepths(pipeline: String?) throws -> [(pipeline: String, sink: String, partition: String, rows: Int)] {
        try queue.read { db in
            try GRDB.Row.fetchAll(db, sql: """
                SELECT s.pipeline, s.sink, b.partition, COUNT(*) AS n FROM stream_buffer b JOIN ledger_sinks s ON s.id = b.sink_id
                WHERE ?1 IS NULL OR s.pipeline = ?1
                GROUP BY s.pipeline, s.sink, b.partition ORDER BY s.pipeline, s.sink, b.partition
                """, arguments: [pipeline]).map { (pipeline: $0["pipeline"], sink: $0["sink"], partition: $0["partition"], rows: $0["n"]) }
        }
    }
}
