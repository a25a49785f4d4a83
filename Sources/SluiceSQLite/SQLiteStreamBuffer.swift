import Foundation
import GRDB
import SluiceCore

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
}

extension SQLiteStateStore: StreamBufferStore {
    /// The ledger check is batched and, while the store knows the sink's whole ledger
    /// (its Bloom filter), skipped for keys the filter never saw.
    public func bufferRows(pipeline: String, sink: String, _ rows: [BufferedRow]) throws -> [String] {
        guard !rows.isEmpty else { return [] }
        return try writeForgettingIDsOnFailure { db in
            var seq = try Int64.fetchOne(db, sql: "SELECT MAX(seq) FROM stream_buffer") ?? 0
            let sinkID = try ledgerSinkID(db, pipeline: pipeline, sink: sink, create: false)
            let inLedger = Set(try ledgerRows(db, pipeline: pipeline, sink: sink, sinkID: sinkID, keys: rows.map(\.key), epoch: nil).map(\.key))
            let insert = try db.cachedStatement(sql: """
                INSERT OR IGNORE INTO stream_buffer (pipeline, sink, record_key, partition, file, line, byte_offset, file_id, payload, seq)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
            var added: [String] = []
            for row in rows {
                if inLedger.contains(row.key) { continue }
                seq += 1
                try insert.execute(arguments: [pipeline, sink, row.key, row.partition, row.position.file, row.position.line,
                                               row.position.offset, row.position.fileID, Data(row.payload), seq])
                if db.changesCount > 0 { added.append(row.key) }
            }
            return added
        }
    }

    public func bufferedRows(pipeline: String, sink: String, partition: String, limit: Int) throws -> [BufferedRow] {
        try queue.read { db in
            try GRDB.Row.fetchAll(db, sql: """
                SELECT record_key, partition, file, line, byte_offset, file_id, payload FROM stream_buffer
                WHERE pipeline = ? AND sink = ? AND partition = ? ORDER BY seq LIMIT ?
                """, arguments: [pipeline, sink, partition, limit]).map { r in
                let payload: Data = r["payload"]
                return BufferedRow(key: r["record_key"], partition: r["partition"],
                                   position: SourcePosition(file: r["file"], line: r["line"], offset: r["byte_offset"], fileID: r["file_id"]),
                                   payload: [UInt8](payload))
            }
        }
    }

    /// Moves the buffered rows of these keys into the ledger (each under its own
    /// partition) through the store's write path, so that the sink's Bloom filter learns
    /// their keys instead of being forgotten.
    public func acknowledgeBuffered(pipeline: String, sink: String, keys: [String]) throws {
        guard !keys.isEmpty else { return }
        let mergeDue = try writeForgettingIDsOnFailure { db in
            // Each chunk's rows leave the buffer in one statement that says which they were.
            var byPartition: [String: [String]] = [:]
            try db.forEachChunk(of: keys, size: Self.keysPerStatement, sql: {
                "DELETE FROM stream_buffer WHERE pipeline = ? AND sink = ? AND record_key IN (\(Database.marks($0))) RETURNING record_key, partition"
            }) { chunk, statement in
                var arguments: [(any DatabaseValueConvertible)?] = [pipeline, sink]
                arguments.reserveCapacity(chunk.count + 2)
                for key in chunk { arguments.append(key) }
                let rows = try GRDB.Row.fetchCursor(statement, arguments: StatementArguments(arguments))
                while let row = try rows.next() { byPartition[row[1], default: []].append(row[0]) }
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
        try write { db in
            let delete = try db.cachedStatement(sql: "DELETE FROM stream_buffer WHERE pipeline = ? AND sink = ? AND record_key = ?")
            for (key, d) in rows {
                try delete.execute(arguments: [pipeline, sink, key])
                try Self.insertDeadLetter(db, runID: runID, pipeline: pipeline, partition: partition, d)
            }
        }
    }

    public func bufferDepths(pipeline: String?) throws -> [(pipeline: String, sink: String, partition: String, rows: Int)] {
        try queue.read { db in
            try GRDB.Row.fetchAll(db, sql: """
                SELECT pipeline, sink, partition, COUNT(*) AS n FROM stream_buffer WHERE ?1 IS NULL OR pipeline = ?1
                GROUP BY pipeline, sink, partition ORDER BY pipeline, sink, partition
                """, arguments: [pipeline]).map { (pipeline: $0["pipeline"], sink: $0["sink"], partition: $0["partition"], rows: $0["n"]) }
        }
    }
}
