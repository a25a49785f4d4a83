import Foundation
import GRDB
import SluiceCore

/// A dead letter as the state store keeps it.
public struct StoredDeadLetter: Sendable, Hashable {
    public var pipeline: String
    public var partition: String
    public var kind: String
    public var file: String
    public var line: Int
    public var message: String
}

/// A run as the state store keeps it.
public struct StoredRun: Sendable, Hashable {
    public var id: Int64
    public var pipeline: String
    public var partition: String
    public var status: String
    public var summary: String?
    public var failure: String?
}

/// The embedded state store: a SQLite file (WAL) with forward-only migrations. It keeps
/// runs and dead letters; checkpoints and the delivery ledger join it with the
/// exactly-once work.
public final class SQLiteStateStore: RunLedger {
    let queue: DatabaseQueue
    public let path: String

    public init(path: String) throws {
        self.path = path
        queue = try SQLiteFiles.openQueue(path)
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE runs (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    pipeline TEXT NOT NULL,
                    partition TEXT NOT NULL,
                    started_at TEXT NOT NULL,
                    finished_at TEXT,
                    status TEXT NOT NULL,
                    read INTEGER, loaded INTEGER, filtered INTEGER, rejected INTEGER, buffered INTEGER,
                    summary TEXT,
                    failure TEXT
                );
                CREATE TABLE dead_letters (
                    pipeline TEXT NOT NULL,
                    partition TEXT NOT NULL,
                    file TEXT NOT NULL,
                    line INTEGER NOT NULL,
                    byte_offset INTEGER NOT NULL,
                    kind TEXT NOT NULL,
                    message TEXT NOT NULL,
                    raw BLOB,
                    run_id INTEGER NOT NULL REFERENCES runs(id),
                    PRIMARY KEY (pipeline, file, line)
                );
                CREATE INDEX dead_letters_by_partition ON dead_letters(pipeline, partition);
                """)
        }
        do {
            if try queue.read({ db in try migrator.hasBeenSuperseded(db) }) {
                throw SQLiteStoreError(path: path, detail: "was written by a newer sluice; upgrade sluice to use it")
            }
            try migrator.migrate(queue)
        } catch let error as SQLiteStoreError {
            throw error
        } catch {
            throw SQLiteStoreError(path: path, detail: "cannot prepare the state store: \(error)")
        }
    }

    static func now() -> String { ISO8601DateFormatter().string(from: Date()) }

    public func beginRun(pipeline: String, partition: String) throws -> Int64 {
        try queue.write { db in
            try db.execute(sql: "INSERT INTO runs (pipeline, partition, started_at, status) VALUES (?, ?, ?, 'running')",
                           arguments: [pipeline, partition, Self.now()])
            return db.lastInsertedRowID
        }
    }

    public func addDeadLetters(runID: Int64, pipeline: String, partition: String, _ letters: [DeadLetter]) throws {
        try queue.write { db in
            let statement = try db.cachedStatement(sql: """
                INSERT INTO dead_letters (pipeline, partition, file, line, byte_offset, kind, message, raw, run_id)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (pipeline, file, line) DO UPDATE SET
                    partition = excluded.partition, byte_offset = excluded.byte_offset, kind = excluded.kind,
                    message = excluded.message, raw = excluded.raw, run_id = excluded.run_id
                """)
            for d in letters {
                try statement.execute(arguments: [pipeline, partition, d.position.file, d.position.line, d.position.offset,
                                                  d.kind.rawValue, d.message, d.raw.map { Data($0) }, runID])
            }
        }
    }

    public func finishRun(runID: Int64, summary: RunSummary, failure: String?) throws {
        try queue.write { db in
            try db.execute(sql: """
                UPDATE runs SET finished_at = ?, status = ?, read = ?, loaded = ?, filtered = ?, rejected = ?, buffered = ?,
                summary = ?, failure = ? WHERE id = ?
                """, arguments: [Self.now(), failure == nil ? "succeeded" : "failed", summary.read, summary.loaded,
                                 summary.filtered, summary.rejected, summary.buffered, summary.line, failure, runID])
        }
    }

    public func deadLetters(pipeline: String?, partition: String? = nil, runID: Int64? = nil, limit: Int = 1000) throws -> [StoredDeadLetter] {
        try queue.read { db in
            var sql = "SELECT pipeline, partition, kind, file, line, message FROM dead_letters WHERE 1"
            var args: [any DatabaseValueConvertible] = []
            if let pipeline { sql += " AND pipeline = ?"; args.append(pipeline) }
            if let partition { sql += " AND partition = ?"; args.append(partition) }
            if let runID { sql += " AND run_id = ?"; args.append(runID) }
            sql += " ORDER BY partition, file, line LIMIT ?"
            args.append(limit)
            return try GRDB.Row.fetchAll(db, sql: sql, arguments: StatementArguments(args)).map {
                StoredDeadLetter(pipeline: $0["pipeline"], partition: $0["partition"], kind: $0["kind"], file: $0["file"],
                                 line: $0["line"], message: $0["message"])
            }
        }
    }

    public func runs(pipeline: String?, limit: Int = 20) throws -> [StoredRun] {
        try queue.read { db in
            var sql = "SELECT id, pipeline, partition, status, summary, failure FROM runs"
            var args: [any DatabaseValueConvertible] = []
            if let pipeline { sql += " WHERE pipeline = ?"; args.append(pipeline) }
            sql += " ORDER BY id DESC LIMIT ?"
            args.append(limit)
            return try GRDB.Row.fetchAll(db, sql: sql, arguments: StatementArguments(args)).map {
                StoredRun(id: $0["id"], pipeline: $0["pipeline"], partition: $0["partition"], status: $0["status"],
                          summary: $0["summary"], failure: $0["failure"])
            }
        }
    }
}
