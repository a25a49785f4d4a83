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
    nonisolated(unsafe) private var pending = PendingWindows()
    private let pendingLock = Lock()
    /// Pending window events are written in a transaction of their own past this many.
    /// Each pending event holds ~230 bytes, but each such transaction dirties pages all
    /// over the events' indexes: on the benchmark's 1M lines, 65,536 → 32,768 keeps ~7 MB
    /// less resident for no measurable CPU, while 8,192 costs +25% CPU (docs/benchmarks.md).
    static let maxPendingWindowEvents = 32_768

    /// A lease not renewed for this long is taken over (a holder on another machine died).
    public static let leaseTimeout: TimeInterval = 600

    /// The 8-byte hash a window key is stored under (see `WindowKeys`); a parameter so
    /// that tests can make every key collide.
    let windowKeyHash: @Sendable (String) -> Int64
    let windowMemory: StoredWindows.Limits
    /// Scope and window-key ids known to be in the store; guarded by `idsLock`. Rows of
    /// `window_scopes` and `window_keys` are never changed or deleted, so an id once read
    /// stays right, also when other processes write the store.
    nonisolated(unsafe) private var ids = WindowIDCache()
    /// Ids of the ledger's sinks and partitions (SQLiteLedger.swift); guarded by `idsLock`.
    nonisolated(unsafe) var ledgerIDs = LedgerIDCache()
    let idsLock = Lock()
    /// What the store knows of the ledger without reading it; guarded by `ledgerLock`
    /// (taken inside the database queue's closures, never around them).
    nonisolated(unsafe) var ledgerKnown = LedgerKnowledge()
    let ledgerLock = Lock()

    public convenience init(path: String) throws {
        try self.init(path: path, windowKeyHash: WindowKeys.hash, migratingUpTo: nil)
    }

    /// `migratingUpTo` stops the migrations at that one (tests of later migrations).
    /// `windowMemory`: how many window keys and events `StoredWindows` keeps per scope
    /// (tests make it small, so that keys are forgotten and loaded again).
    init(path: String, windowKeyHash: @escaping @Sendable (String) -> Int64, migratingUpTo: String?,
         windowMemory: StoredWindows.Limits = StoredWindows.Limits()) throws {
        self.path = path
        self.windowKeyHash = windowKeyHash
        self.windowMemory = windowMemory
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
        do {
            if try queue.read({ db in try migrator.hasBeenSuperseded(db) }) {
                throw SQLiteStoreError(path: path, detail: "was written by a newer sluice; upgrade sluice to use it")
            }
            // One process migrates at a time (two schedulers may open a new store together).
            let lockFD = open(path + ".lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            if lockFD >= 0 { flock(lockFD, LOCK_EX) }
            defer { if lockFD >= 0 { flock(lockFD, LOCK_UN); close(lockFD) } }
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

    static func now() -> String { ISO8601DateFormatter().string(from: Date()) }

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
            let candidates = try ledgerCandidates(db, pipeline: pipeline, sink: sink, sinkID: sinkID, keys: keys, epoch: epoch)
            guard let sinkID, !candidates.isEmpty else { return [] }
            let excluded = try excludingPartition.flatMap { try ledgerPartitionID(db, pipeline: pipeline, partition: $0, create: false) }
            var found: Set<String> = []
            for row in try ledgerRows(db, sinkID: sinkID, keys: candidates) where row.partitionID != excluded {
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
            // Rolled back: the copies of stored windows may hold events that are not stored.
            ledgerLock.withLock { ledgerKnown.windows = [:] }
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
        try pendingLock.withLock { try writeForgettingIDsOnFailure { db in
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
        } }
    }

    // MARK: sliding windows

    // Window events are kept in memory (`pending`) from `addWindowEvents` until the next
    // segment commit (or run end), which writes them in the same transaction as the
    // segment's checkpoints and deliveries. Written per batch, every batch was a write
    // transaction of a few thousand inserts at random places of three indexes: about 6
    // page writes and 6 page reads per record, half of the signup pipeline's time.
    // Events not committed are lost with a crash, together with the records they belong
    // to (neither delivered nor checkpointed): the next run reads those records again
    // and counts them anew, in the same order, with the same result. Events written
    // before their records were delivered (past `maxPendingWindowEvents`, or of the
    // batches the runner's stateful stages work ahead of its writes) are replays for
    // the next run: `windowSequences` finds them, and each record gets its first count.
    // Counts of stored events come from `StoredWindows` (a copy in memory of the recent
    // events of the keys counted lately, loaded once per key instead of a count on the
    // index per record), which is trusted like the Bloom filters: only while nothing but
    // this store's write path wrote the database, and not after a failed write.
    // Lock order: `pendingLock`, then the database queue, then `ledgerLock`.

    /// The name of a scope's filter of record keys (see `filterCandidates`): `window_events`
    /// is written by `writePendingWindowEvents` alone, inside `write`.
    static func windowFilterName(_ scope: String) -> String { "\u{1}window\u{0}" + scope }

    public func windowSequences(scope: String, recordKeys: [String]) throws -> [String: Int64] {
        guard !recordKeys.isEmpty else { return [:] }
        return try pendingLock.withLock {
            var out: [String: Int64] = try queue.read { db in
                // Like the ledger's lookups: while the store knows every record key of the
                // scope's stored events, a key its filter has never seen is not there.
                let epoch = try LedgerKnowledge.Epoch(db)
                let scopeID = try cachedScopeID(db, scope, create: false)
                let candidates = try filterCandidates(Self.windowFilterName(scope), keys: recordKeys, epoch: epoch) {
                    try scopeID.map { try Int.fetchOne(db, sql: "SELECT 1 FROM window_events WHERE scope_id = ? LIMIT 1", arguments: [$0]) == nil } ?? true
                }
                guard let scopeID else { return [:] }
                let before = pending.pruneBefore[scope] ?? .min
                var out: [String: Int64] = [:]
                try db.forEachChunk(of: candidates, size: Self.keysPerStatement, sql: {
                    "SELECT record_key, seq FROM window_events WHERE scope_id = ? AND event_time >= ? AND record_key IN (\(Database.marks($0)))"
                }) { chunk, statement in
                    var arguments: [(any DatabaseValueConvertible)?] = [scopeID, before]
                    arguments.reserveCapacity(chunk.count + 2)
                    var original: [DatabaseValue: String] = [:]
                    for key in chunk {
                        let stored = WindowKeys.recordKey(key).databaseValue
                        original[stored] = key
                        arguments.append(stored)
                    }
                    let rows = try GRDB.Row.fetchCursor(statement, arguments: StatementArguments(arguments))
                    while let row = try rows.next() {
                        if let key = original[row[0] as DatabaseValue] { out[key] = row[1] as Int64 }
                    }
                }
                return out
            }
            if let p = pending.scopes[scope] {
                for key in recordKeys where out[key] == nil {
                    if let seq = p.sequenceOf[key] { out[key] = seq }
                }
            }
            return out
        }
    }

    /// The id of a scope (created in a write transaction when `create`), through the cache.
    func cachedScopeID(_ db: Database, _ scope: String, create: Bool) throws -> Int64? {
        if let id = idsLock.withLock({ ids.scopes[scope] }) { return id }
        guard let id = try WindowKeys.scopeID(db, scope, create: create) else { return nil }
        idsLock.withLock { ids.scopes[scope] = id }
        return id
    }

    /// The stored hashes of window keys (created in a write transaction when `create`;
    /// missing keys have no events), through the cache.
    func cachedKeyIDs(_ db: Database, scopeID: Int64, _ keys: some Sequence<String>, create: Bool) throws -> [String: Int64] {
        var out: [String: Int64] = [:]
        var missing: [String] = []
        idsLock.withLock {
            let known = ids.keys[scopeID] ?? [:]
            for key in keys where out[key] == nil {
                if let id = known[key] { out[key] = id } else { missing.append(key) }
            }
        }
        guard !missing.isEmpty else { return out }
        let found = try WindowKeys.ids(db, scopeID: scopeID, missing, hash: windowKeyHash, create: create)
        idsLock.withLock {
            if ids.count > WindowIDCache.maxKeys { ids = WindowIDCache(scopes: ids.scopes) }
            for (key, id) in found {
                out[key] = id
                ids.keys[scopeID, default: [:]][key] = id
                ids.count += 1
            }
        }
        return out
    }

    /// Forgets cached ids after a failed write (ids created in it were rolled back).
    func forgetCachedIDs() {
        idsLock.withLock {
            ids = WindowIDCache()
            ledgerIDs = LedgerIDCache()
        }
    }

    /// `queue.write` for the writes that add window keys: on failure, the ids they cached
    /// are forgotten.
    func writeForgettingIDsOnFailure<T>(_ body: (Database) throws -> T) throws -> T {
        do { return try write(body) } catch {
            forgetCachedIDs()
            throw error
        }
    }

    public func windowCount(scope: String, key: String, after from: Int64, upTo to: Int64, maxSequence: Int64?) throws -> Int {
        try windowCounts(scope: scope, [WindowQuery(key: key, after: from, upTo: to, maxSequence: maxSequence)])[0]
    }

    /// Counts are answered from `StoredWindows`, a copy in memory of the stored events of
    /// the window keys counted lately (loaded once per key, from one window before the
    /// batch's earliest query), plus the pending events; a query that reaches further back
    /// than its key's copy (a late record) is counted on the store's index. The
    /// copy is trusted like the filters (`LedgerKnowledge`): only while nothing but this
    /// store's write path wrote the database.
    public func windowCounts(scope: String, _ queries: [WindowQuery]) throws -> [Int] {
        guard !queries.isEmpty else { return [] }
        return try pendingLock.withLock {
            // Events a pending prune forgets are not counted (event_time >= before).
            let before = pending.pruneBefore[scope] ?? .min
            func after(_ q: WindowQuery) -> Int64 { before == .min ? q.after : max(q.after, before - 1) }
            var counts: [Int] = try queue.read { db in
                var counts = [Int](repeating: 0, count: queries.count)
                let epoch = try LedgerKnowledge.Epoch(db)
                var windows = ledgerLock.withLock { () -> StoredWindows in
                    if ledgerKnown.epoch != epoch { ledgerKnown = LedgerKnowledge(epoch: epoch) }
                    return ledgerKnown.windows.removeValue(forKey: scope) ?? StoredWindows()
                }
                let scopeID = try cachedScopeID(db, scope, create: false)
                // `reach`: one window before the earliest query of the batch. Keys not in memory
                // yet are loaded from there.
                var reach = Int64.max
                for q in queries {
                    let (from, overflow) = after(q).subtractingReportingOverflow(max(0, q.upTo - q.after))
                    reach = min(reach, overflow ? .min : from)
                }
                windows.makeRoom(forMore: queries.count, keepingAfter: reach, limits: windowMemory)
                var missing = Set<String>()
                for q in queries where windows.keys[q.key] == nil { missing.insert(q.key) }
                if !missing.isEmpty {
                    try loadStoredWindows(db, scopeID: scopeID, Array(missing), from: reach, into: &windows)
                }
                // In memory where the copy reaches back far enough; on the index otherwise.
                var asked: [Int] = []
                for (n, q) in queries.enumerated() {
                    // No query of this batch reaches back to `reach`: a key's events up to it
                    // are forgotten as it is counted (its copy starts there from then on).
                    if let count = windows.keys[q.key]?.count(after: after(q), upTo: q.upTo, maxSequence: q.maxSequence,
                                                              forgettingUpTo: reach, total: &windows.events) {
                        counts[n] = count
                    } else {
                        asked.append(n)
                    }
                }
                if !asked.isEmpty, let scopeID {
                    try countOnIndex(db, scopeID: scopeID, queries, asked, after: after, into: &counts)
                }
                ledgerLock.withLock { if ledgerKnown.epoch == epoch { ledgerKnown.windows[scope] = windows } }
                return counts
            }
            if let p = pending.scopes[scope] {
                for (n, q) in queries.enumerated() { counts[n] += p.count(q) }
            }
            return counts
        }
    }

    /// Loads the stored events of these window keys with times after `from` into `windows`
    /// (a key the store does not hold has none at all).
    func loadStoredWindows(_ db: Database, scopeID: Int64?, _ keys: [String], from: Int64, into windows: inout StoredWindows) throws {
        var keyIDs: [String: Int64] = [:]
        if let scopeID { keyIDs = try cachedKeyIDs(db, scopeID: scopeID, keys, create: false) }
        var byID: [Int64: String] = [:]
        for key in keys {
            if let id = keyIDs[key] { byID[id] = key } else { windows.set(key, StoredWindows.Key(from: .min, events: [])) }
        }
        guard let scopeID, !byID.isEmpty else { return }
        try db.forEachChunk(of: Array(byID.keys), size: Self.keysPerStatement, sql: { """
            SELECT key_hash, event_time, seq FROM window_events WHERE scope_id = ? AND key_hash IN (\(Database.marks($0))) AND event_time > ?
            ORDER BY key_hash, event_time, seq
            """ }) { chunk, statement in
            var arguments: [(any DatabaseValueConvertible)?] = [scopeID]
            arguments.reserveCapacity(chunk.count + 2)
            for id in chunk { arguments.append(id) }
            arguments.append(from)
            var loaded: [Int64: [StoredWindows.Event]] = [:]
            let rows = try GRDB.Row.fetchCursor(statement, arguments: StatementArguments(arguments))
            while let row = try rows.next() {
                loaded[row[0] as Int64, default: []].append(StoredWindows.Event(time: row[1], sequence: row[2]))
            }
            for id in chunk { windows.set(byID[id]!, StoredWindows.Key(from: from, events: loaded[id] ?? [])) }
        }
    }

    /// Counts on the (scope, key hash, event time) index, for the queries `asked`: up to
    /// 200 per statement, a list of (index, scope, key, after, upTo, maxSequence) and one
    /// correlated count each.
    func countOnIndex(_ db: Database, scopeID: Int64, _ queries: [WindowQuery], _ asked: [Int], after: (WindowQuery) -> Int64,
                      into counts: inout [Int]) throws {
        let keyIDs = try cachedKeyIDs(db, scopeID: scopeID, asked.lazy.map { queries[$0].key }, create: false)
        // Only keys the store holds have stored events.
        let asked = asked.filter { keyIDs[queries[$0].key] != nil }
        // Plain `?` parameters (see `insertLedger`): the scope id is a column of the list.
        try db.forEachChunk(of: asked, size: 200, sql: { """
            WITH q(n, s, k, a, b, m) AS (VALUES \(Database.marks($0, "(?, ?, ?, ?, ?, ?)")))
            SELECT q.n, (SELECT count(*) FROM window_events w WHERE w.scope_id = q.s AND w.key_hash = q.k
                         AND w.event_time > q.a AND w.event_time <= q.b AND (q.m IS NULL OR w.seq <= q.m)) FROM q
            """ }) { chunk, statement in
            var arguments: [(any DatabaseValueConvertible)?] = []
            arguments.reserveCapacity(chunk.count * 6)
            for n in chunk {
                let q = queries[n]
                arguments.append(n)
                arguments.append(scopeID)
                arguments.append(keyIDs[q.key]!)
                arguments.append(after(q))
                arguments.append(q.upTo)
                arguments.append(q.maxSequence)
            }
            let cursor = try GRDB.Row.fetchCursor(statement, arguments: StatementArguments(arguments))
            while let row = try cursor.next() { counts[row[0] as Int] = row[1] }
        }
    }

    /// Keeps the events in memory until the next commit (see above). Like the insert it
    /// stands for, an event whose record key is pending already is ignored; callers add
    /// only events whose record keys `windowSequences` did not find.
    public func addWindowEvents(scope: String, _ events: [WindowEvent]) throws {
        guard !events.isEmpty else { return }
        try pendingLock.withLock {
            for e in events {
                if pending.scopes[scope, default: PendingWindowScope()].add(e, sequence: pending.nextSequence) {
                    pending.nextSequence += 1
                    pending.count += 1
                }
            }
            // A bound on memory when segments are long: write them in a transaction of their own.
            if pending.count >= Self.maxPendingWindowEvents {
                try writeForgettingIDsOnFailure { db in try writePendingWindowEvents(db) }
            }
        }
    }

    /// Forgets pending events at once, and stored ones at the next commit: the delete
    /// scans the scope's events (no index leads with the time), so once per segment, not
    /// per batch. Until then, queries skip the events it will delete.
    public func pruneWindowEvents(scope: String, before: Int64) throws {
        pendingLock.withLock {
            pending.count -= pending.scopes[scope]?.prune(before: before) ?? 0
            pending.pruneBefore[scope] = max(pending.pruneBefore[scope] ?? .min, before)
        }
    }

    /// Pending window events, most events per statement. Called with `pendingLock` held,
    /// inside a write transaction.
    static let windowEventsPerStatement = 300

    static func windowInsertSQL(rows: Int) -> String {
        "INSERT OR IGNORE INTO window_events (seq, scope_id, key_hash, event_time, record_key) VALUES "
            + repeatElement("(?, ?, ?, ?, ?)", count: rows).joined(separator: ",")
    }

    /// The insert of a full chunk, made once (not per statement).
    static let windowInsertSQL = windowInsertSQL(rows: windowEventsPerStatement)

    func writePendingWindowEvents(_ db: Database) throws {
        let perStatement = Self.windowEventsPerStatement
        // Sequence numbers are given here, as AUTOINCREMENT would (above every number the
        // table ever held, in the order added), so that the copies in memory of stored
        // windows (`StoredWindows`) take the events as written.
        var next = try Int64.fetchOne(db, sql: """
            SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'window_events'), 0),
                       coalesce((SELECT max(seq) FROM window_events), 0)) + 1
            """)!
        for (scope, p) in pending.scopes where !p.events.isEmpty {
            rememberKeys(Self.windowFilterName(scope), p.events.lazy.map(\.recordKey))
            let scopeID = try cachedScopeID(db, scope, create: true)!
            let keyIDs = try cachedKeyIDs(db, scopeID: scopeID, p.byKey.keys, create: true)
            var windows = ledgerLock.withLock { ledgerKnown.windows.removeValue(forKey: scope) }
            // Sequence numbers in the order added (the order records were seen); inserted in
            // the order of the (scope, key, time) index, so that its pages are walked once,
            // in order, instead of at random (the table's new rows all go to its end anyway).
            let base = next
            next += Int64(p.events.count)
            var order = p.events.indices.map { (keyIDs[p.events[$0].key]!, p.events[$0].time, $0) }
            order.sort { $0 < $1 }
            var start = 0
            while start < order.count {
                let chunk = order[start..<min(order.count, start + perStatement)]
                start += chunk.count
                // Plain `?` parameters (see `insertLedger`).
                let statement = chunk.count == perStatement ? try db.cachedStatement(sql: Self.windowInsertSQL)
                    : try db.makeStatement(sql: Self.windowInsertSQL(rows: chunk.count))
                var arguments: [(any DatabaseValueConvertible)?] = []
                arguments.reserveCapacity(chunk.count * 5)
                for (keyID, time, n) in chunk {
                    arguments.append(base + Int64(n))
                    arguments.append(scopeID)
                    arguments.append(keyID)
                    arguments.append(time)
                    arguments.append(WindowKeys.recordKey(p.events[n].recordKey))
                }
                try statement.execute(arguments: StatementArguments(arguments))
                if db.changesCount != chunk.count {
                    // Some were ignored (their record keys were stored): the copy would be wrong.
                    windows = nil
                } else if windows != nil {
                    for (_, time, n) in chunk { windows!.inserted(p.events[n].key, time: time, sequence: base + Int64(n)) }
                }
            }
            if let windows { ledgerLock.withLock { ledgerKnown.windows[scope] = windows } }
        }
        for (scope, before) in pending.pruneBefore {
            guard let scopeID = try cachedScopeID(db, scope, create: false) else { continue }
            try db.execute(sql: "DELETE FROM window_events WHERE scope_id = ? AND event_time < ?", arguments: [scopeID, before])
            ledgerLock.withLock { ledgerKnown.windows[scope]?.pruned(before: before) }
        }
        pending.scopes = [:]
        pending.pruneBefore = [:]
        pending.count = 0
    }

    /// Writes pending window events now (a run ends; tests).
    public func flushWindowEvents() throws {
        try pendingLock.withLock {
            guard pending.count > 0 || !pending.scopes.isEmpty || !pending.pruneBefore.isEmpty else { return }
            try writeForgettingIDsOnFailure { db in try writePendingWindowEvents(db) }
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

/// How window events are stored compactly (migration v7): scopes by an integer id,
/// window keys by an 8-byte hash, record keys by their 16 bytes.
///
/// Hash collisions are harmless: `window_keys` holds each key's text under its hash,
/// and a key whose hash another key of the scope holds already takes the next free
/// value (hash + 1, + 2, ...: open addressing). Rows of `window_keys` are never deleted,
/// so a key's chain has no gaps: a lookup walks from its hash until it finds the key's
/// text (its id) or a free value (the key has no events). Two keys never share an id.
enum WindowKeys {
    /// FNV-1a, 64 bits, of the key's UTF-8 bytes.
    @Sendable static func hash(_ key: String) -> Int64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in key.utf8 {
            h ^= UInt64(b)
            h &*= 0x0000_0100_0000_01b3
        }
        return Int64(bitPattern: h)
    }

    /// A record key as stored: the 16 bytes of sluice's own keys (32 lowercase hex
    /// digits), the text of any other (a BLOB and a TEXT never compare equal in SQLite).
    static func recordKey(_ key: String) -> any DatabaseValueConvertible {
        LedgerKeys.stored(key)
    }

    static func scopeID(_ db: Database, _ scope: String, create: Bool) throws -> Int64? {
        if let id = try Int64.fetchOne(db, sql: "SELECT id FROM window_scopes WHERE name = ?", arguments: [scope]) { return id }
        guard create else { return nil }
        try db.execute(sql: "INSERT INTO window_scopes (name) VALUES (?)", arguments: [scope])
        return db.lastInsertedRowID
    }

    /// The stored hashes of these keys; with `create` (in a write transaction), keys not
    /// stored yet are added, else left out.
    static func ids(_ db: Database, scopeID: Int64, _ keys: [String], hash: (String) -> Int64, create: Bool) throws -> [String: Int64] {
        var out: [String: Int64] = [:]
        // First the keys' own hashes, 500 per statement; then, for the rare key whose
        // hash holds another key, its chain one value at a time.
        var holder: [Int64: String] = [:]
        let hashes = keys.map(hash)
        try db.forEachChunk(of: hashes, size: SQLiteStateStore.keysPerStatement, sql: {
            "SELECT key_hash, key FROM window_keys WHERE scope_id = ? AND key_hash IN (\(Database.marks($0)))"
        }) { chunk, statement in
            var arguments: [(any DatabaseValueConvertible)?] = [scopeID]
            for h in chunk { arguments.append(h) }
            let rows = try GRDB.Row.fetchCursor(statement, arguments: StatementArguments(arguments))
            while let row = try rows.next() { holder[row[0]] = row[1] }
        }
        for (key, first) in zip(keys, hashes) where out[key] == nil {
            var h = first
            while true {
                let text: String?
                if let t = holder[h] { text = t } else if h == first {
                    text = nil // looked up above
                } else {
                    text = try String.fetchOne(db, sql: "SELECT key FROM window_keys WHERE scope_id = ? AND key_hash = ?", arguments: [scopeID, h])
                    if let text { holder[h] = text }
                }
                if text == key { out[key] = h; break }
                if text == nil {
                    if create {
                        // A cached statement: one per new key (tens of thousands in a run), not a parse each.
                        try db.cachedStatement(sql: "INSERT INTO window_keys (scope_id, key_hash, key) VALUES (?, ?, ?)")
                            .execute(arguments: [scopeID, h, key])
                        holder[h] = key
                        out[key] = h
                    }
                    break
                }
                h &+= 1
            }
        }
        return out
    }
}

/// What the store knows of the ledger without reading it: per (pipeline, sink), either
/// a Bloom filter of every key the ledger holds (it was empty when first asked, and
/// every insert since went through this store's `commit`), or nothing; the same per
/// rate-limit scope for its window events' record keys (`windowFilterName`). Valid only at
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
    enum Filter {
        case keys(BloomFilter)
        /// The ledger held keys of the sink when first asked: every key is looked up.
        case unknown
    }
    var epoch: Epoch?
    var filters: [String: Filter] = [:]
    /// Per rate-limit scope: the stored events of the window keys counted lately.
    var windows: [String: StoredWindows] = [:]
}

/// A copy in memory of a scope's stored window events, per window key: every stored event
/// of the key with a time after the key's `from`, sorted by time and sequence number.
/// Loaded by `windowCounts`, kept up to date by the store's own writes of window events
/// (`writePendingWindowEvents`: inserts with the sequence numbers they are given, and
/// prunes), and dropped with the rest of `LedgerKnowledge` when anything else wrote the
/// database, or a write of the store failed.
struct StoredWindows {
    struct Event {
        var time: Int64
        var sequence: Int64
    }
    struct Key {
        var from: Int64
        var events: [Event]

        /// Events with times in (after, upTo], optionally only those with sequence numbers
        /// up to `maxSequence`. `after` must not be before `from`.
        func count(after: Int64, upTo: Int64, maxSequence: Int64?) -> Int {
            let lo = Self.upperBound(events, after), hi = Self.upperBound(events, upTo)
            guard hi > lo else { return 0 }
            guard let maxSequence else { return hi - lo }
            var n = 0
            for i in lo..<hi where events[i].sequence <= maxSequence { n += 1 }
            return n
        }

        /// Index of the first event whose time is greater than `t`.
        static func upperBound(_ a: [Event], _ t: Int64) -> Int { a.upperBound(t, by: \.time) }
    }
    /// Past this many keys or events, keys with nothing newer than the window of the
    /// current queries are forgotten; if that is not enough, all of them.
    struct Limits: Sendable {
        // At 1M lines (benchmark): 2^13 keys keep peak RSS 1.6 MB below 2^14, same CPU.
        var keys = 1 << 13
        var events = 1 << 16
    }
    var keys: [String: Key] = [:]
    var events = 0

    mutating func set(_ key: String, _ value: Key) {
        events += value.events.count - (keys[key]?.events.count ?? 0)
        keys[key] = value
    }

    /// An event the store just wrote (its sequence number above every stored one).
    mutating func inserted(_ key: String, time: Int64, sequence: Int64) {
        guard keys[key] != nil else { return }
        keys[key]!.insert(time: time, sequence: sequence, counting: &events)
    }

    /// The store deleted its events older than `before`.
    mutating func pruned(before: Int64) {
        for (key, value) in keys {
            guard let first = value.events.first, first.time < before else { continue }
            let kept = value.events.drop { $0.time < before }
            events -= value.events.count - kept.count
            keys[key]!.events = Array(kept)
        }
    }

    /// Keeps memory bounded before `count` keys more are loaded: past the limits, forgets
    /// the events of each key up to `keepingAfter` (before every current query's window)
    /// and the keys left without events; if still too many, keys in no particular order.
    mutating func makeRoom(forMore count: Int, keepingAfter reach: Int64, limits: Limits) {
        guard keys.count + count > limits.keys || events > limits.events else { return }
        var total = 0
        keys = keys.compactMapValues { value in
            let kept = value.events.drop { $0.time <= reach }
            guard !kept.isEmpty else { return nil }
            total += kept.count
            return Key(from: max(value.from, reach), events: kept.count == value.events.count ? value.events : Array(kept))
        }
        events = total
        // Still too many (they all have events in the current windows): forget keys in no
        // particular order (the dictionary's) down to three quarters of the limits.
        let targetKeys = limits.keys * 3 / 4, targetEvents = limits.events * 3 / 4
        guard keys.count + count > targetKeys || events > targetEvents else { return }
        var victims: [String] = []
        var n = keys.count + count
        for (key, value) in keys where n > targetKeys || total > targetEvents {
            victims.append(key)
            n -= 1
            total -= value.events.count
        }
        for key in victims { keys[key] = nil }
        events = total
    }
}

extension StoredWindows.Key {
    /// `count`, after forgetting the events up to `reach` (before every query's `after`);
    /// nil when `after` is before `from` (the copy does not reach back that far).
    mutating func count(after: Int64, upTo: Int64, maxSequence: Int64?, forgettingUpTo reach: Int64, total: inout Int) -> Int? {
        guard after >= from else { return nil }
        if reach > from {
            if let first = events.first, first.time <= reach {
                let cut = Self.upperBound(events, reach)
                events.removeFirst(cut)
                total -= cut
            }
            from = reach
        }
        return count(after: after, upTo: upTo, maxSequence: maxSequence)
    }

    /// Adds a stored event; one before `from` is not kept (the copy holds only later ones).
    mutating func insert(time: Int64, sequence: Int64, counting total: inout Int) {
        guard time > from else { return }
        // After every stored event of the same time: its sequence number is the highest.
        var at = Self.upperBound(events, time)
        while at < events.count, events[at].time == time, events[at].sequence < sequence { at += 1 }
        events.insert(StoredWindows.Event(time: time, sequence: sequence), at: at)
        total += 1
    }
}

/// A Bloom filter of strings that grows: a new block of 2^23 bits (1 MiB) per 2^20 keys
/// (8 bits and 5 hashes per key: ~2% false positives per block, each a batched lookup
/// in the store; 16 bits per key held twice the memory, which grew with the input).
struct BloomFilter {
    static let blockBits = 1 << 23
    static let keysPerBlock = 1 << 20
    static let hashes = 5
    private var blocks: [[UInt64]] = []
    private var inLast = 0

    mutating func insert(_ key: String) {
        if blocks.isEmpty || inLast >= Self.keysPerBlock {
            blocks.append([UInt64](repeating: 0, count: Self.blockBits / 64))
            inLast = 0
        }
        var (h, step) = Self.hash(key)
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

    func mayContain(_ key: String) -> Bool {
        let (first, step) = Self.hash(key)
        for block in blocks {
            var h = first
            var all = true
            for _ in 0..<Self.hashes {
                let bit = Int(truncatingIfNeeded: h) & (Self.blockBits - 1)
                if block[bit >> 6] & (1 << UInt64(bit & 63)) == 0 { all = false; break }
                h &+= step
            }
            if all { return true }
        }
        return false
    }

    /// FNV-1a of the UTF-8 bytes, and an odd step from its SplitMix64 mix (double hashing).
    static func hash(_ key: String) -> (UInt64, UInt64) {
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

/// Ids of scopes and window keys read from or written to the store.
struct WindowIDCache {
    /// Past this many keys the cache starts over (memory).
    static let maxKeys = 1 << 16 // what grew with the input (one entry per window key): 25 MB at 4M lines with 2^20
    var scopes: [String: Int64] = [:]
    var keys: [Int64: [String: Int64]] = [:]
    var count = 0
}

/// Window events added since the last commit, per scope. Their sequence numbers are
/// provisional, from 2^62 on, above any the database assigns, so that they order after
/// every stored event, as they will once written.
struct PendingWindows {
    var scopes: [String: PendingWindowScope] = [:]
    /// Per scope: stored events older than this are to be deleted at the next commit.
    var pruneBefore: [String: Int64] = [:]
    var count = 0
    var nextSequence: Int64 = 1 << 62
}

struct PendingWindowScope {
    struct Entry {
        var time: Int64
        var sequence: Int64
    }
    /// In the order added (the order they are written in).
    var events: [WindowEvent] = []
    var sequenceOf: [String: Int64] = [:]
    /// Per window key, sorted by time.
    var byKey: [String: [Entry]] = [:]
    var minTime = Int64.max

    /// Adds an event unless its record key is pending already.
    mutating func add(_ e: WindowEvent, sequence: Int64) -> Bool {
        guard sequenceOf[e.recordKey] == nil else { return false }
        sequenceOf[e.recordKey] = sequence
        var stored = e
        stored.sequence = sequence
        events.append(stored)
        minTime = min(minTime, e.time)
        let at = Self.upperBound(byKey[e.key] ?? [], e.time)
        byKey[e.key, default: []].insert(Entry(time: e.time, sequence: sequence), at: at)
        return true
    }

    /// Forgets events older than `before`; returns how many.
    mutating func prune(before: Int64) -> Int {
        guard minTime < before else { return 0 }
        let old = events.count
        events.removeAll { $0.time < before }
        for (key, entries) in byKey {
            let kept = entries.filter { $0.time >= before }
            byKey[key] = kept.isEmpty ? nil : kept
        }
        sequenceOf = [:]
        for e in events { sequenceOf[e.recordKey] = e.sequence }
        minTime = events.map(\.time).min() ?? .max
        return old - events.count
    }

    /// The pending part of a window count.
    func count(_ q: WindowQuery) -> Int {
        guard let entries = byKey[q.key] else { return 0 }
        if let maxSequence = q.maxSequence {
            var n = 0
            for e in entries where e.time > q.after && e.time <= q.upTo && e.sequence <= maxSequence { n += 1 }
            return n
        }
        return max(0, Self.upperBound(entries, q.upTo) - Self.upperBound(entries, q.after))
    }

    /// Index of the first entry whose time is greater than `t`.
    static func upperBound(_ a: [Entry], _ t: Int64) -> Int { a.upperBound(t, by: \.time) }
}
