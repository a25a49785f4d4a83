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

    /// Window events added and not yet written; guarded by `pendingLock`.
    nonisolated(unsafe) var pending = PendingWindows()
    let pendingLock = Lock()
    /// Pending window events are written in a transaction of their own past this many.
    /// Each pending event holds ~230 bytes. Since v9 such a transaction appends to the end
    /// of the time-ordered events instead of dirtying pages all over three indexes: on the
    /// benchmark's 1M lines, 32,768 → 8,192 keeps ~2.5 MB less resident for the same CPU
    /// (with the indexes of v7 it cost +25% CPU; docs/benchmarks.md).
    static let maxPendingWindowEvents = 8_192

    /// A lease not renewed for this long is taken over (a holder on another machine died).
    public static let leaseTimeout: TimeInterval = 600

    /// The 8-byte hash migration v7 stored window keys under (see `WindowKeys`); a
    /// parameter so that tests can make every key collide.
    let windowKeyHash: @Sendable (String) -> Int64
    let windowMemory: StoredWindow.Limits
    /// The shape of the ledger's two levels (SQLiteLedger.swift); tests make them small.
    let ledgerLevels: LedgerLevels
    /// Ids of window scopes known to be in the store (SQLiteWindows.swift); guarded by `idsLock`.
    nonisolated(unsafe) var windowScopeIDs: [String: Int64] = [:]
    /// Ids of the ledger's sinks and partitions (SQLiteLedger.swift); guarded by `idsLock`.
    nonisolated(unsafe) var ledgerIDs = LedgerIDCache()
    let idsLock = Lock()
    /// What the store knows of the ledger without reading it; guarded by `ledgerLock`
    /// (taken inside the database queue's closures, never around them).
    nonisolated(unsafe) var ledgerKnown = LedgerKnowledge()
    let ledgerLock = Lock()
    /// Failures after a commit that did not undo it (`takeWarnings`); guarded by `warningsLock`.
    nonisolated(unsafe) var warnings: [String] = []
    let warningsLock = Lock()

    public convenience init(path: String) throws {
        try self.init(path: path, windowKeyHash: WindowKeys.hash, migratingUpTo: nil, ledgerLevels: .configured)
    }

    /// `migratingUpTo` stops the migrations at that one (tests of later migrations).
    /// `windowMemory`: how many events `StoredWindow` keeps per scope (tests make it
    /// small, so that scopes are counted per batch).
    init(path: String, windowKeyHash: @escaping @Sendable (String) -> Int64, migratingUpTo: String?,
         windowMemory: StoredWindow.Limits = StoredWindow.Limits(), ledgerLevels: LedgerLevels = LedgerLevels()) throws {
        self.path = path
        self.ledgerLevels = ledgerLevels
        self.windowKeyHash = windowKeyHash
        self.windowMemory = windowMemory
        var name = [UInt8](repeating: 0, count: 256)
        gethostname(&name, 255)
        host = String(decoding: name.prefix { $0 != 0 }, as: UTF8.self)
        pid = getpid()
        queue = try SQLiteFiles.openQueue(path, pageSize: Self.pageSize)
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
        // Window events compact (issue #7): an integer scope id, an 8-byte hash of the window
        // key and the record key's 16 bytes instead of three texts repeated in the table and
        // both indexes (~260 bytes per event before). Existing events are converted in order,
        // with their sequence numbers, so replays find them and count as before.
        migrator.registerMigration("v7-compact-window-events") { db in
            try db.execute(sql: """
                CREATE TABLE window_scopes (
                    id INTEGER PRIMARY KEY,
                    name TEXT NOT NULL UNIQUE
                );
                CREATE TABLE window_keys (
                    scope_id INTEGER NOT NULL,
                    key_hash INTEGER NOT NULL,
                    key TEXT NOT NULL,
                    PRIMARY KEY (scope_id, key_hash)
                ) WITHOUT ROWID;
                CREATE TABLE window_events_v7 (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    scope_id INTEGER NOT NULL,
                    key_hash INTEGER NOT NULL,
                    event_time INTEGER NOT NULL,
                    record_key BLOB NOT NULL,
                    UNIQUE (scope_id, record_key)
                );
                """)
            var scopes: [String: Int64] = [:]
            var keys: [Int64: [String: Int64]] = [:]
            let insert = try db.makeStatement(sql: "INSERT INTO window_events_v7 (seq, scope_id, key_hash, event_time, record_key) VALUES (?, ?, ?, ?, ?)")
            let rows = try GRDB.Row.fetchCursor(db, sql: "SELECT seq, scope, window_key, event_time, record_key FROM window_events ORDER BY seq")
            while let row = try rows.next() {
                let scope: String = row[1], key: String = row[2], recordKey: String = row[4]
                let scopeID: Int64
                if let id = scopes[scope] { scopeID = id } else {
                    scopeID = try WindowKeys.scopeID(db, scope, create: true)!
                    scopes[scope] = scopeID
                }
                let keyHash: Int64
                if let h = keys[scopeID]?[key] { keyHash = h } else {
                    keyHash = try WindowKeys.ids(db, scopeID: scopeID, [key], hash: windowKeyHash, create: true)[key]!
                    keys[scopeID, default: [:]][key] = keyHash
                }
                try insert.execute(arguments: [row[0] as Int64, scopeID, keyHash, row[3] as Int64, WindowKeys.recordKey(recordKey)])
            }
            let high = try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'window_events'")
            try db.execute(sql: """
                DROP TABLE window_events;
                ALTER TABLE window_events_v7 RENAME TO window_events;
                CREATE INDEX window_events_by_key ON window_events(scope_id, key_hash, event_time);
                """)
            // New events keep numbers above every old one (deleted ones included).
            if let high {
                try db.execute(sql: "DELETE FROM sqlite_sequence WHERE name = 'window_events'")
                try db.execute(sql: "INSERT INTO sqlite_sequence (name, seq) VALUES ('window_events', max(?, (SELECT coalesce(max(seq), 0) FROM window_events)))",
                               arguments: [high])
            }
        }
        // v8: the compact delivery ledger (SQLiteLedger.swift).
        Self.registerCompactLedger(&migrator)
        // v9: window events in time order (SQLiteWindows.swift).
        Self.registerTimeOrderedWindows(&migrator)
        // v10: the ledger's recent keys (SQLiteLedger.swift).
        Self.registerRecentLedger(&migrator)
        // v11: the ledger's recent keys as sorted runs (SQLiteLedgerRuns.swift).
        Self.registerLedgerRuns(&migrator)
        // v12: the streaming sinks' buffer in the order rows enter it (SQLiteStreamBuffer.swift).
        Self.registerOrderedStreamBuffer(&migrator)
        do {
            // One process checks and migrates at a time (two schedulers may open a new store
            // together). The version check is inside the lock too: outside, it could read
            // `grdb_migrations` while another process was creating the store, through a
            // schema this connection had loaded before ("no such table", 1 in ~40 starts of
            // four processes on a new store).
            let lockFD = open(path + ".lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            if lockFD >= 0 { flock(lockFD, LOCK_EX) }
            defer { if lockFD >= 0 { flock(lockFD, LOCK_UN); close(lockFD) } }
            let superseded = try retryingWhileBusy {
                try queue.inDatabase { db in
                    // The schema as it is now, not as it was when the connection opened.
                    db.clearSchemaCache()
                    _ = try Int.fetchOne(db, sql: "SELECT count(*) FROM sqlite_master")
                    return try migrator.hasBeenSuperseded(db)
                }
            }
            if superseded {
                throw SQLiteStoreError(path: path, detail: "was written by a newer sluice; upgrade sluice to use it")
            }
            try retryingWhileBusy {
                if let migratingUpTo { try migrator.migrate(queue, upTo: migratingUpTo) } else { try migrator.migrate(queue) }
            }
        } catch let error as SQLiteStoreError {
            throw error
        } catch let error as DatabaseError where error.resultCode == .SQLITE_BUSY || error.resultCode == .SQLITE_LOCKED {
            throw SQLiteStoreError(path: path, detail: "is locked by another process; wait for it to finish")
        } catch {
            throw SQLiteStoreError(path: path, detail: "cannot prepare the state store: \(error)")
        }
    }

    /// The wall clock as `YYYY-MM-DDTHH:MM:SSZ` (UTC, whole seconds).
    static func now() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Timestamp.formatSeconds(Int64(ts.tv_sec))
    }

    // MARK: runs and dead letters

    public func beginRun(pipeline: String, partition: String, mode: LoadMode) throws -> Int64 {
        try write { db in
            try db.execute(sql: "INSERT INTO runs (pipeline, partition, started_at, status, mode) VALUES (?, ?, ?, 'running', ?)",
                           arguments: [pipeline, partition, Self.now(), mode.rawValue])
            return db.lastInsertedRowID
        }
    }

    public func addDeadLetters(runID: Int64, pipeline: String, partition: String, _ letters: [DeadLetter]) throws {
        try write { db in
            for d in letters { try Self.insertDeadLetter(db, runID: runID, pipeline: pipeline, partition: partition, d) }
        }
    }

    /// One dead letter per source position: a later one for the same position replaces it.
    static func insertDeadLetter(_ db: Database, runID: Int64, pipeline: String, partition: String, _ d: DeadLetter) throws {
        let statement = try db.cachedStatement(sql: """
            INSERT INTO dead_letters (pipeline, partition, file, line, byte_offset, kind, message, raw, run_id, file_id)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (pipeline, file, line) DO UPDATE SET
                partition = excluded.partition, byte_offset = excluded.byte_offset, kind = excluded.kind,
                message = excluded.message, raw = excluded.raw, run_id = excluded.run_id, file_id = excluded.file_id
            """)
        try statement.execute(arguments: [pipeline, partition, d.position.file, d.position.line, d.position.offset,
                                          d.kind.rawValue, d.message, d.raw.map { Data($0) }, runID, d.position.fileID])
    }

    public func finishRun(runID: Int64, summary: RunSummary, failure: String?) throws {
        try flushWindowEvents()
        try write { db in
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
        try write { db in
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
        try write { db in
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
        try write { db in
            try db.execute(sql: "UPDATE leases SET renewed_at = ? WHERE pipeline = ? AND partition = ? AND host = ? AND pid = ?",
                           arguments: [Date().timeIntervalSince1970, pipeline, partition, host, pid])
        }
    }

    public func releaseLease(pipeline: String, partition: String) throws {
        try write { db in
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

    /// The page size of a state file created now: 16 KiB, not SQLite's 4 KiB. Every
    /// segment commit writes pages all over the ledger's primary key (random record keys),
    /// and on 4,000,000 lines of one day 16 KiB pages took 51-55 s and 73-79 CPU s against
    /// 61-65 s and 84-90 CPU s with 4 KiB (8 KiB in between, 32 and 64 KiB no better; 1 KiB
    /// twice the system time); 1,000,000 lines were the same within the noise (docs/benchmarks.md).
    /// The page cache stays 4 MiB (`cache_size` is set in KiB). A file made before keeps its
    /// 4 KiB pages: SQLite cannot change the page size of a file in WAL mode.
    static let pageSize = 16 << 10

    /// Keys per statement of the ledger's batched lookups and inserts (SQLite allows 32,766
    /// parameters): one statement per chunk instead of one per key.
    static let keysPerStatement = 500

    /// Keys are looked up in the ledger only when they may be in it: while the store
    /// knows every key the ledger holds for a sink (see `LedgerKnowledge`), a key its
    /// filter has never seen cannot be there.
    public func delivered(pipeline: String, sink: String, keys: [String], excludingPartition: String?) throws -> Set<String> {
        guard !keys.isEmpty else { return [] }
        return try queue.read { db in
            let epoch = try LedgerKnowledge.Epoch(db)
            let sinkID = try ledgerSinkID(db, pipeline: pipeline, sink: sink, create: false)
            let excluded = try excludingPartition.flatMap { try ledgerPartitionID(db, pipeline: pipeline, partition: $0, create: false) }
            var found: Set<String> = []
            for row in try ledgerRows(db, pipeline: pipeline, sink: sink, sinkID: sinkID, keys: keys, epoch: epoch) where row.partitionID != excluded {
                found.insert(row.key)
            }
            return found
        }
    }

    /// `queue.write` for every write of the store. It keeps `ledgerKnown` true: if
    /// anything wrote the database since the store last looked (another connection: the
    /// data version moved; this connection outside this method: the change count moved),
    /// what it knew is forgotten; otherwise the body's own ledger inserts (`insertLedger`,
    /// from `commit` and the stream buffer's `acknowledgeBuffered`, the only writers of
    /// the ledger here) were added to the filters, and the new epoch is noted. A ledger
    /// delete (a replace) leaves keys in a filter: that costs a lookup, never a duplicate.
    func write<T>(_ body: (Database) throws -> T) throws -> T {
        do { return try writeKeepingKnowledge(body) } catch {
            // Rolled back: the copies of stored windows may hold events that are not stored,
            // and a run's filter may be of a run that is not (its id may come again).
            ledgerLock.withLock {
                ledgerKnown.windows = [:]
                ledgerKnown.runFilters = [:]
            }
            throw error
        }
    }

    private func writeKeepingKnowledge<T>(_ body: (Database) throws -> T) throws -> T {
        try queue.write { db in
            let before = try LedgerKnowledge.Epoch(db)
            // Knowledge of an older epoch is forgotten; what the store learns in this
            // transaction (filters made, keys inserted) holds from `before` on.
            ledgerLock.withLock { if ledgerKnown.epoch != before { ledgerKnown = LedgerKnowledge(epoch: before) } }
            let result = try body(db)
            let after = try LedgerKnowledge.Epoch(db)
            ledgerLock.withLock {
                if ledgerKnown.epoch == before, after.dataVersion == before.dataVersion {
                    ledgerKnown.epoch = after
                } else {
                    ledgerKnown = LedgerKnowledge(epoch: nil)
                }
            }
            return result
        }
    }

    public func commit(_ segment: SegmentCommit) throws {
        let mergeDue = try pendingLock.withLock { try writeForgettingIDsOnFailure { db in
            try writePendingWindowEvents(db)
            if segment.finishesReplace {
                try db.execute(sql: "DELETE FROM checkpoints WHERE pipeline = ? AND partition = ?", arguments: [segment.pipeline, segment.partition])
                try deleteLedgerPartition(db, pipeline: segment.pipeline, partition: segment.partition)
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
            for (sink, keys) in segment.delivered.sorted(by: { $0.key < $1.key }) {
                try insertLedger(db, pipeline: segment.pipeline, sink: sink, partition: segment.partition, keys: keys)
            }
            let receipt = try db.cachedStatement(sql: """
                INSERT INTO receipts (pipeline, sink, target, partition, length) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (pipeline, sink, target) DO UPDATE SET length = excluded.length, partition = excluded.partition
                """)
            for r in segment.receipts {
                try receipt.execute(arguments: [segment.pipeline, r.sink, r.target, segment.partition, r.length])
            }
            return try segment.delivered.values.contains { !$0.isEmpty } && recentLedgerIsFull(db)
        } }
        // After the segment's transaction, in one of its own: the segment is committed
        // whether or not the merge is.
        if mergeDue { mergeAfterCommit() }
    }

    public func takeWarnings() -> [String] {
        warningsLock.withLock {
            defer { warnings = [] }
            return warnings
        }
    }

    // MARK: replaces

    public func replacePending(pipeline: String, partition: String) throws -> Bool {
        try queue.read { db in
            try Int.fetchOne(db, sql: "SELECT 1 FROM replaces WHERE pipeline = ? AND partition = ?", arguments: [pipeline, partition]) != nil
        }
    }

    public func beginReplace(pipeline: String, partition: String) throws {
        try write { db in
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
        try write { db in
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

/// What the store knows of the ledger without reading it: per (pipeline, sink), a Bloom
/// filter of every key of the ledger's first levels (read when first asked, and every
/// insert since went through this store's write path: `LedgerFilter`); and per rate-limit
/// scope, a copy of its stored events in a time range (`StoredWindow`). Valid only at
/// `epoch`: the database's data version (which moves when another connection commits)
/// and this connection's change count (which moves with every row this connection
/// changes) as they were after the store's last own write.
struct LedgerKnowledge {
    struct Epoch: Equatable {
        var dataVersion: Int
        var changes: Int
        init(_ db: Database) throws {
            dataVersion = try Int.fetchOne(db, sql: "PRAGMA data_version") ?? -1
            changes = db.totalChangesCount
        }
    }
    var epoch: Epoch?
    /// Per (pipeline, sink): what the store knows of its ledger's keys.
    var filters: [String: LedgerFilter] = [:]
    /// Per rate-limit scope: its stored events in the time range counted lately.
    var windows: [String: StoredWindow] = [:]
    /// Per sink id, the filters of its ledger runs by run id (SQLiteLedgerRuns.swift).
    var runFilters: [Int64: [Int64: RunFilter]] = [:]
}

/// A Bloom filter of strings that grows: a new block of 2^23 bits (1 MiB) per 1,398,101
/// keys (6 bits and 4 hashes per key: ~5.6% false positives in a full block, ~2.4% at 8
/// bits a key, each a batched lookup in the store). 16 bits per key held twice the memory,
/// which grew with the input; 8 bits (2^20 keys a block, ~2.2%) took 4 MiB at 4M keys and,
/// with the ledger runs' own filters (SQLiteLedgerRuns.swift) beside it, put the 4M-line
/// benchmark's peak 10.3% over the 1M-line one (the target is 10%); 3 MiB at 6 bits.
struct BloomFilter {
    static let blockBits = 1 << 23
    static let keysPerBlock = blockBits / 6
    static let hashes = 4
    private var blocks: [[UInt64]] = []
    private var inLast = 0

    /// Keys inserted (a key inserted twice counts twice).
    var count: Int { blocks.isEmpty ? 0 : (blocks.count - 1) * Self.keysPerBlock + inLast }

    mutating func insert(_ key: String) {
        insert(hash: Self.hash(key))
    }

    /// Inserts a key by its hash pair (`hash(_:)` of its text or of its bits).
    mutating func insert(hash: (UInt64, UInt64)) {
        if blocks.isEmpty || inLast >= Self.keysPerBlock {
            blocks.append([UInt64](repeating: 0, count: Self.blockBits / 64))
            inLast = 0
        }
        var (h, step) = hash
        let last = blocks.count - 1
        blocks[last].withUnsafeMutableBufferPointer { bits in
            for _ in 0..<Self.hashes {
                let bit = Int(truncatingIfNeeded: h) & (Self.blockBits - 1)
                bits[bit >> 6] |= 1 << UInt64(bit & 63)
                h &+= step
            }
        }
        inLast += 1
    }

    /// The keys among these the filter may hold, in their order (what `mayContain` says of
    /// each). The keys' hashes first, then each block probed with the word of the key 8
    /// ahead asked of the CPU: each key's first probe is a cache miss at a random place
    /// of a 1 MiB block, and the loop overlaps them (the sink's lookup of every batch).
    func mayContain(_ keys: [String]) -> [String] {
        guard !blocks.isEmpty, !keys.isEmpty else { return [] }
        let hashes = keys.map(Self.hash)
        var maybe = [Bool](repeating: false, count: keys.count)
        for b in blocks.indices {
            blocks[b].withUnsafeBufferPointer { bits in
                let words = UnsafeRawPointer(bits.baseAddress!)
                for i in hashes.indices where !maybe[i] {
                    if i + 8 < hashes.count {
                        let bit = Int(truncatingIfNeeded: hashes[i + 8].0) & (Self.blockBits - 1)
                        prefetchHint(words + (bit >> 6) * 8)
                    }
                    maybe[i] = Self.allSet(hashes[i], in: bits)
                }
            }
        }
        return keys.indices.compactMap { maybe[$0] ? keys[$0] : nil }
    }

    func mayContain(_ key: String) -> Bool {
        let hash = Self.hash(key)
        return blocks.indices.contains { b in blocks[b].withUnsafeBufferPointer { Self.allSet(hash, in: $0) } }
    }

    /// Whether a block has every bit of a key's hash pair set (its `hashes` probes).
    @inline(__always) private static func allSet(_ hash: (UInt64, UInt64), in bits: UnsafeBufferPointer<UInt64>) -> Bool {
        var (h, step) = hash
        for _ in 0..<Self.hashes {
            let bit = Int(truncatingIfNeeded: h) & (Self.blockBits - 1)
            if bits[bit >> 6] & (1 << UInt64(bit & 63)) == 0 { return false }
            h &+= step
        }
        return true
    }

    /// Sluice's own keys: their two halves are a SHA-256 prefix, spread already.
    static func hash(_ bits: RecordKeyBits) -> (UInt64, UInt64) { (bits.low, bits.high | 1) }

    /// A first bit and an odd step (double hashing). Sluice's own keys are a SHA-256
    /// prefix already: their two halves serve as they are. Any other key: FNV-1a of its
    /// UTF-8 bytes and its SplitMix64 mix (a byte-by-byte loop, 1% of a 1M-line run when
    /// every key went through it).
    static func hash(_ key: String) -> (UInt64, UInt64) {
        if let bits = RecordKeyBits(key) { return hash(bits) }
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in key.utf8 {
            h ^= UInt64(b)
            h &*= 0x0000_0100_0000_01b3
        }
        var z = h &+ 0x9e37_79b9_7f4a_7c15
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        z ^= z >> 31
        return (z, (h >> 17 | h << 47) | 1)
    }
}

