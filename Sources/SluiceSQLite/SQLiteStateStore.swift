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

/// A checkpoint as `sluice status` shows it.
public struct StoredCheckpoint: Sendable, Hashable {
    public var partition: String
    public var checkpoint: SourceCheckpoint
}

/// The embedded state store: a SQLite file (WAL, synchronous FULL) with forward-only
/// migrations. It keeps runs, partition leases, checkpoints, the delivery ledger, sink
/// receipts, pending replaces, schedules and dead letters.
public final class SQLiteStateStore: StateStore {
    let queue: DatabaseQueue
    public let path: String
    let host: String
    let pid: Int32

    /// A lease not renewed for this long is taken over (a holder on another machine died).
    public static let leaseTimeout: TimeInterval = 600

    public init(path: String) throws {
        self.path = path
        var name = [UInt8](repeating: 0, count: 256)
        gethostname(&name, 255)
        host = String(decoding: name.prefix { $0 != 0 }, as: UTF8.self)
        pid = getpid()
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
        migrator.registerMigration("v2-exactly-once") { db in
            try db.execute(sql: """
                ALTER TABLE runs ADD COLUMN mode TEXT NOT NULL DEFAULT 'append';
                ALTER TABLE dead_letters ADD COLUMN file_id TEXT;
                CREATE TABLE checkpoints (
                    pipeline TEXT NOT NULL,
                    file_id TEXT NOT NULL,
                    partition TEXT NOT NULL,
                    path TEXT NOT NULL,
                    byte_offset INTEGER NOT NULL,
                    line INTEGER NOT NULL,
                    complete INTEGER NOT NULL,
                    updated_at TEXT NOT NULL,
                    PRIMARY KEY (pipeline, file_id)
                );
                CREATE INDEX checkpoints_by_partition ON checkpoints(pipeline, partition);
                CREATE TABLE ledger (
                    pipeline TEXT NOT NULL,
                    sink TEXT NOT NULL,
                    record_key TEXT NOT NULL,
                    partition TEXT NOT NULL,
                    PRIMARY KEY (pipeline, sink, record_key)
                ) WITHOUT ROWID;
                CREATE INDEX ledger_by_partition ON ledger(pipeline, partition);
                CREATE TABLE receipts (
                    pipeline TEXT NOT NULL,
                    sink TEXT NOT NULL,
                    target TEXT NOT NULL,
                    partition TEXT NOT NULL,
                    length INTEGER NOT NULL,
                    PRIMARY KEY (pipeline, sink, target)
                );
                CREATE TABLE leases (
                    pipeline TEXT NOT NULL,
                    partition TEXT NOT NULL,
                    host TEXT NOT NULL,
                    pid INTEGER NOT NULL,
                    renewed_at REAL NOT NULL,
                    PRIMARY KEY (pipeline, partition)
                );
                CREATE TABLE replaces (
                    pipeline TEXT NOT NULL,
                    partition TEXT NOT NULL,
                    started_at TEXT NOT NULL,
                    PRIMARY KEY (pipeline, partition)
                );
                CREATE TABLE schedules (
                    pipeline TEXT PRIMARY KEY,
                    last_fire INTEGER NOT NULL
                );
                """)
        }
        migrator.registerMigration("v3-windows") { db in
            try db.execute(sql: """
                CREATE TABLE window_events (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    scope TEXT NOT NULL,
                    window_key TEXT NOT NULL,
                    event_time INTEGER NOT NULL,
                    record_key TEXT NOT NULL,
                    UNIQUE (scope, record_key)
                );
                CREATE INDEX window_events_by_key ON window_events(scope, window_key, event_time);
                """)
        }
        // Checkpoints per partition: a file shared by several partitions (no `{date}` in
        // the path, event time decides) is read by each partition's run from its own
        // offset. Keyed by file alone, one partition's run used to move the checkpoint
        // past the records of the others, which then were never read.
        migrator.registerMigration("v5-checkpoints-by-partition") { db in
            try db.execute(sql: """
                CREATE TABLE checkpoints_new (
                    pipeline TEXT NOT NULL,
                    partition TEXT NOT NULL,
                    file_id TEXT NOT NULL,
                    path TEXT NOT NULL,
                    byte_offset INTEGER NOT NULL,
                    line INTEGER NOT NULL,
                    complete INTEGER NOT NULL,
                    updated_at TEXT NOT NULL,
                    PRIMARY KEY (pipeline, partition, file_id)
                );
                INSERT INTO checkpoints_new (pipeline, partition, file_id, path, byte_offset, line, complete, updated_at)
                    SELECT pipeline, partition, file_id, path, byte_offset, line, complete, updated_at FROM checkpoints;
                DROP TABLE checkpoints;
                ALTER TABLE checkpoints_new RENAME TO checkpoints;
                """)
        }
        // v6: the durable buffer of streaming sinks (SQLiteStreamBuffer.swift).
        Self.registerStreamBuffer(&migrator)
        do {
            if try queue.read({ db in try migrator.hasBeenSuperseded(db) }) {
                throw SQLiteStoreError(path: path, detail: "was written by a newer sluice; upgrade sluice to use it")
            }
            // One process migrates at a time (two schedulers may open a new store together).
            let lockFD = open(path + ".lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            if lockFD >= 0 { flock(lockFD, LOCK_EX) }
            defer { if lockFD >= 0 { flock(lockFD, LOCK_UN); close(lockFD) } }
            try retryingWhileBusy { try migrator.migrate(queue) }
        } catch let error as SQLiteStoreError {
            throw error
        } catch let error as DatabaseError where error.resultCode == .SQLITE_BUSY || error.resultCode == .SQLITE_LOCKED {
            throw SQLiteStoreError(path: path, detail: "is locked by another process; wait for it to finish")
        } catch {
            throw SQLiteStoreError(path: path, detail: "cannot prepare the state store: \(error)")
        }
    }

    static func now() -> String { ISO8601DateFormatter().string(from: Date()) }

    // MARK: runs and dead letters

    public func beginRun(pipeline: String, partition: String, mode: LoadMode) throws -> Int64 {
        try queue.write { db in
            try db.execute(sql: "INSERT INTO runs (pipeline, partition, started_at, status, mode) VALUES (?, ?, ?, 'running', ?)",
                           arguments: [pipeline, partition, Self.now(), mode.rawValue])
            return db.lastInsertedRowID
        }
    }

    public func addDeadLetters(runID: Int64, pipeline: String, partition: String, _ letters: [DeadLetter]) throws {
        try queue.write { db in
            let statement = try db.cachedStatement(sql: """
                INSERT INTO dead_letters (pipeline, partition, file, line, byte_offset, kind, message, raw, run_id, file_id)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (pipeline, file, line) DO UPDATE SET
                    partition = excluded.partition, byte_offset = excluded.byte_offset, kind = excluded.kind,
                    message = excluded.message, raw = excluded.raw, run_id = excluded.run_id, file_id = excluded.file_id
                """)
            for d in letters {
                try statement.execute(arguments: [pipeline, partition, d.position.file, d.position.line, d.position.offset,
                                                  d.kind.rawValue, d.message, d.raw.map { Data($0) }, runID, d.position.fileID])
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

    /// The positions of a partition's dead letters, to read them again after a fix.
    public func deadLetterPositions(pipeline: String, partition: String) throws -> [SourcePosition] {
        try queue.read { db in
            try GRDB.Row.fetchAll(db, sql: "SELECT file, line, byte_offset, file_id FROM dead_letters WHERE pipeline = ? AND partition = ? ORDER BY file, line",
                                  arguments: [pipeline, partition]).map {
                SourcePosition(file: $0["file"], line: $0["line"], offset: $0["byte_offset"], fileID: $0["file_id"])
            }
        }
    }

    /// The number of dead letters per partition, in partition order.
    public func deadLetterCounts(pipeline: String) throws -> [(String, Int)] {
        try queue.read { db in
            try GRDB.Row.fetchAll(db, sql: "SELECT partition, count(*) AS n FROM dead_letters WHERE pipeline = ? GROUP BY partition ORDER BY partition",
                                  arguments: [pipeline]).map { ($0["partition"], $0["n"]) }
        }
    }

    /// The partitions that have dead letters.
    public func deadLetterPartitions(pipeline: String) throws -> [String] {
        try queue.read { db in
            try String.fetchAll(db, sql: "SELECT DISTINCT partition FROM dead_letters WHERE pipeline = ? ORDER BY partition", arguments: [pipeline])
        }
    }

    /// Removes the dead letters at these positions that run `runID` did not write again
    /// (they loaded this time).
    public func removeDeadLetters(pipeline: String, positions: [SourcePosition], exceptRun runID: Int64) throws -> Int {
        try queue.write { db in
            var removed = 0
            let statement = try db.cachedStatement(sql: "DELETE FROM dead_letters WHERE pipeline = ? AND file = ? AND line = ? AND run_id != ?")
            for p in positions {
                try statement.execute(arguments: [pipeline, p.file, p.line, runID])
                removed += db.changesCount
            }
            return removed
        }
    }

    // MARK: leases

    public func acquireLease(pipeline: String, partition: String) throws {
        let host = self.host, pid = self.pid
        try queue.write { db in
            if let row = try GRDB.Row.fetchOne(db, sql: "SELECT host, pid, renewed_at FROM leases WHERE pipeline = ? AND partition = ?",
                                               arguments: [pipeline, partition]) {
                let holderHost: String = row["host"], holderPid: Int32 = row["pid"], renewed: Double = row["renewed_at"]
                let mine = holderHost == host && holderPid == pid
                let alive = holderHost == host ? (kill(holderPid, 0) == 0 || errno == EPERM)
                                               : Date().timeIntervalSince1970 - renewed < Self.leaseTimeout
                if !mine, alive {
                    throw PartitionBusy(pipeline: pipeline, partition: partition, holder: "process \(holderPid) on \(holderHost)")
                }
            }
            try db.execute(sql: """
                INSERT INTO leases (pipeline, partition, host, pid, renewed_at) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (pipeline, partition) DO UPDATE SET host = excluded.host, pid = excluded.pid, renewed_at = excluded.renewed_at
                """, arguments: [pipeline, partition, host, pid, Date().timeIntervalSince1970])
        }
    }

    public func renewLease(pipeline: String, partition: String) throws {
        try queue.write { db in
            try db.execute(sql: "UPDATE leases SET renewed_at = ? WHERE pipeline = ? AND partition = ? AND host = ? AND pid = ?",
                           arguments: [Date().timeIntervalSince1970, pipeline, partition, host, pid])
        }
    }

    public func releaseLease(pipeline: String, partition: String) throws {
        try queue.write { db in
            try db.execute(sql: "DELETE FROM leases WHERE pipeline = ? AND partition = ? AND host = ? AND pid = ?",
                           arguments: [pipeline, partition, host, pid])
        }
    }

    // MARK: checkpoints, ledger, receipts

    public func checkpoints(pipeline: String, partition: String) throws -> [String: SourceCheckpoint] {
        try queue.read { db in
            var out: [String: SourceCheckpoint] = [:]
            for row in try GRDB.Row.fetchAll(db, sql: "SELECT file_id, path, byte_offset, line, complete FROM checkpoints WHERE pipeline = ? AND partition = ?",
                                             arguments: [pipeline, partition]) {
                let c = SourceCheckpoint(fileID: row["file_id"], path: row["path"], offset: row["byte_offset"], line: row["line"],
                                         complete: row["complete"])
                out[c.fileID] = c
            }
            return out
        }
    }

    public func storedCheckpoints(pipeline: String) throws -> [StoredCheckpoint] {
        try queue.read { db in
            try GRDB.Row.fetchAll(db, sql: "SELECT * FROM checkpoints WHERE pipeline = ? ORDER BY partition, path", arguments: [pipeline]).map {
                StoredCheckpoint(partition: $0["partition"], checkpoint: SourceCheckpoint(
                    fileID: $0["file_id"], path: $0["path"], offset: $0["byte_offset"], line: $0["line"], complete: $0["complete"]))
            }
        }
    }

    public func receipt(pipeline: String, sink: String, target: String) throws -> Int64? {
        try queue.read { db in
            try Int64.fetchOne(db, sql: "SELECT length FROM receipts WHERE pipeline = ? AND sink = ? AND target = ?",
                               arguments: [pipeline, sink, target])
        }
    }

    public func delivered(pipeline: String, sink: String, keys: [String], excludingPartition: String?) throws -> Set<String> {
        guard !keys.isEmpty else { return [] }
        return try queue.read { db in
            let statement = try db.cachedStatement(sql: "SELECT partition FROM ledger WHERE pipeline = ? AND sink = ? AND record_key = ?")
            var found: Set<String> = []
            for key in keys {
                if let partition = try String.fetchOne(statement, arguments: [pipeline, sink, key]), partition != excludingPartition {
                    found.insert(key)
                }
            }
            return found
        }
    }

    public func commit(_ segment: SegmentCommit) throws {
        try queue.write { db in
            if segment.finishesReplace {
                try db.execute(sql: "DELETE FROM checkpoints WHERE pipeline = ? AND partition = ?", arguments: [segment.pipeline, segment.partition])
                try db.execute(sql: "DELETE FROM ledger WHERE pipeline = ? AND partition = ?", arguments: [segment.pipeline, segment.partition])
                try db.execute(sql: "DELETE FROM replaces WHERE pipeline = ? AND partition = ?", arguments: [segment.pipeline, segment.partition])
            }
            let now = Self.now()
            let cp = try db.cachedStatement(sql: """
                INSERT INTO checkpoints (pipeline, file_id, partition, path, byte_offset, line, complete, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (pipeline, partition, file_id) DO UPDATE SET path = excluded.path,
                    byte_offset = excluded.byte_offset, line = excluded.line, complete = excluded.complete, updated_at = excluded.updated_at
                """)
            for c in segment.checkpoints {
                try cp.execute(arguments: [segment.pipeline, c.fileID, segment.partition, c.path, c.offset, c.line, c.complete, now])
            }
            let ledger = try db.cachedStatement(sql: "INSERT OR IGNORE INTO ledger (pipeline, sink, record_key, partition) VALUES (?, ?, ?, ?)")
            for (sink, keys) in segment.delivered {
                for key in keys { try ledger.execute(arguments: [segment.pipeline, sink, key, segment.partition]) }
            }
            let receipt = try db.cachedStatement(sql: """
                INSERT INTO receipts (pipeline, sink, target, partition, length) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (pipeline, sink, target) DO UPDATE SET length = excluded.length, partition = excluded.partition
                """)
            for r in segment.receipts {
                try receipt.execute(arguments: [segment.pipeline, r.sink, r.target, segment.partition, r.length])
            }
        }
    }

    // MARK: sliding windows

    public func windowSequences(scope: String, recordKeys: [String]) throws -> [String: Int64] {
        guard !recordKeys.isEmpty else { return [:] }
        return try queue.read { db in
            let statement = try db.cachedStatement(sql: "SELECT seq FROM window_events WHERE scope = ? AND record_key = ?")
            var out: [String: Int64] = [:]
            for key in recordKeys {
                if let seq = try Int64.fetchOne(statement, arguments: [scope, key]) { out[key] = seq }
            }
            return out
        }
    }

    public func windowCount(scope: String, key: String, after from: Int64, upTo to: Int64, maxSequence: Int64?) throws -> Int {
        try queue.read { db in
            if let maxSequence {
                return try Int.fetchOne(db, sql: """
                    SELECT count(*) FROM window_events WHERE scope = ? AND window_key = ? AND event_time > ? AND event_time <= ? AND seq <= ?
                    """, arguments: [scope, key, from, to, maxSequence]) ?? 0
            }
            return try Int.fetchOne(db, sql: """
                SELECT count(*) FROM window_events WHERE scope = ? AND window_key = ? AND event_time > ? AND event_time <= ?
                """, arguments: [scope, key, from, to]) ?? 0
        }
    }

    public func addWindowEvents(scope: String, _ events: [WindowEvent]) throws {
        guard !events.isEmpty else { return }
        try queue.write { db in
            let statement = try db.cachedStatement(sql: """
                INSERT OR IGNORE INTO window_events (scope, window_key, event_time, record_key) VALUES (?, ?, ?, ?)
                """)
            for e in events { try statement.execute(arguments: [scope, e.key, e.time, e.recordKey]) }
        }
    }

    public func pruneWindowEvents(scope: String, before: Int64) throws {
        try queue.write { db in
            try db.execute(sql: "DELETE FROM window_events WHERE scope = ? AND event_time < ?", arguments: [scope, before])
        }
    }

    // MARK: replaces

    public func replacePending(pipeline: String, partition: String) throws -> Bool {
        try queue.read { db in
            try Int.fetchOne(db, sql: "SELECT 1 FROM replaces WHERE pipeline = ? AND partition = ?", arguments: [pipeline, partition]) != nil
        }
    }

    public func beginReplace(pipeline: String, partition: String) throws {
        try queue.write { db in
            try db.execute(sql: "INSERT OR IGNORE INTO replaces (pipeline, partition, started_at) VALUES (?, ?, ?)",
                           arguments: [pipeline, partition, Self.now()])
        }
    }

    // MARK: schedules

    /// The last fire time the scheduler claimed for a pipeline (microseconds), if any.
    public func lastFire(pipeline: String) throws -> Int64? {
        try queue.read { db in try Int64.fetchOne(db, sql: "SELECT last_fire FROM schedules WHERE pipeline = ?", arguments: [pipeline]) }
    }

    /// Claims the fire times up to `to` if the last claimed one is still `from`
    /// (compare-and-set): of several schedulers on one store, exactly one wins.
    public func claimFires(pipeline: String, from: Int64?, to: Int64) throws -> Bool {
        try queue.write { db in
            let current = try Int64.fetchOne(db, sql: "SELECT last_fire FROM schedules WHERE pipeline = ?", arguments: [pipeline])
            guard current == from else { return false }
            try db.execute(sql: """
                INSERT INTO schedules (pipeline, last_fire) VALUES (?, ?)
                ON CONFLICT (pipeline) DO UPDATE SET last_fire = excluded.last_fire
                """, arguments: [pipeline, to])
            return true
        }
    }
}
