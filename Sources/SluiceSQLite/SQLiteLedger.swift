import Foundation
import GRDB
import GRDBSQLite
import SluiceCore

// The delivery ledger, compact (migration v8-compact-ledger) and in two levels (v10-ledger-recent, issue #7),
// the recent one as sorted runs since v11 (v11-ledger-runs: `ledger_runs`, SQLiteLedgerRuns.swift):
//
//     ledger_sinks(id, pipeline, sink)                  one row per (pipeline, sink)
//     ledger_partitions(id, pipeline, partition, segments)  one row per (pipeline, partition)
//     ledger(sink_id, key, partition_id, segment) PRIMARY KEY (sink_id, key) WITHOUT ROWID
//     ledger_recent(sink_id, key, partition_id, segment) the same, and
//     INDEX ledger_recent_by_partition(partition_id, segment)
//     ledger_recent_keys(sink_id, keys)                 a sink's keys in ledger_recent
//
// A record key is stored as its 16 bytes when it is one of sluice's own (32 lowercase hex
// digits), as its text otherwise (a BLOB never equals a TEXT in SQLite, so the two
// kinds cannot be confused); the `StateStore` seam still speaks hex strings. Before v8
// every row repeated the pipeline, sink, key and partition as text in the table and
// again in the partition index (~177 bytes per key).
//
// Two levels (v10): sluice's keys are random, so a commit's keys land all over a B-tree
// ordered by key, and each commit rewrote nearly every leaf page of the sink's whole
// history (a day's run took twice as long after 12 days of history). Now a commit's keys
// go to `ledger_recent` (the same columns), which stays small; when it holds more than
// `LedgerLevels.recentKeys` it is merged into `ledger` in one sorted statement, so each
// page of the history is rewritten once per merge instead of once per commit (a
// log-structured merge tree of two levels). A lookup asks both tables; a table the sink's
// Bloom filter covers only for the keys the filter may hold.
//
// `segment` numbers the writes of a partition's keys (`ledger_partitions.segments`,
// counted up by each commit or acknowledgement that adds keys to it): the partition
// index of `ledger_recent` is ordered by it, so a segment's keys go to the end of their
// partition's range of the index, on new pages, instead of to random places all over
// it. `ledger` has no partition index since v10 (v8 had one on (partition_id, segment)):
// it doubled a merge's cost per row, and a replace's delete scans `ledger` instead.
//
// Since v11 a commit's keys of sluice's own go to a sorted run (`ledger_runs`, its blocks of
// keys appended to `ledger_run_blocks`), not to `ledger_recent`: the recent level is the runs
// and `ledger_recent`, which holds only keys that are not sluice's own (and rows from
// before v11).
//
// Rows of `ledger_sinks` and `ledger_partitions` are never changed (but for the counter)
// nor deleted, so an id once read stays right, also when other processes write the store.
extension SQLiteStateStore {
    static func registerCompactLedger(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v8-compact-ledger") { db in
            try db.execute(sql: """
                CREATE TABLE ledger_sinks (
                    id INTEGER PRIMARY KEY,
                    pipeline TEXT NOT NULL,
                    sink TEXT NOT NULL,
                    UNIQUE (pipeline, sink)
                );
                CREATE TABLE ledger_partitions (
                    id INTEGER PRIMARY KEY,
                    pipeline TEXT NOT NULL,
                    partition TEXT NOT NULL,
                    segments INTEGER NOT NULL DEFAULT 0,
                    UNIQUE (pipeline, partition)
                );
                INSERT INTO ledger_sinks (pipeline, sink) SELECT DISTINCT pipeline, sink FROM ledger ORDER BY pipeline, sink;
                INSERT INTO ledger_partitions (pipeline, partition) SELECT DISTINCT pipeline, partition FROM ledger ORDER BY pipeline, partition;
                CREATE TABLE ledger_v8 (
                    sink_id INTEGER NOT NULL,
                    key BLOB NOT NULL,
                    partition_id INTEGER NOT NULL,
                    segment INTEGER NOT NULL,
                    PRIMARY KEY (sink_id, key)
                ) WITHOUT ROWID;
                """)
            // In the old primary key's order: sink ids follow (pipeline, sink), and hex
            // text orders like its bytes, so the new table is written nearly in order.
            // The key conversion is the store's own (`LedgerKeys.stored`), not SQL's.
            let insert = try db.makeStatement(sql: "INSERT INTO ledger_v8 (sink_id, key, partition_id, segment) VALUES (?, ?, ?, 0)")
            let rows = try GRDB.Row.fetchCursor(db, sql: """
                SELECT s.id, l.record_key, p.id FROM ledger l
                JOIN ledger_sinks s ON s.pipeline = l.pipeline AND s.sink = l.sink
                JOIN ledger_partitions p ON p.pipeline = l.pipeline AND p.partition = l.partition
                ORDER BY l.pipeline, l.sink, l.record_key
                """)
            while let row = try rows.next() {
                try insert.execute(arguments: [row[0] as Int64, LedgerKeys.stored(row[1] as String), row[2] as Int64])
            }
            try db.execute(sql: """
                DROP TABLE ledger;
                ALTER TABLE ledger_v8 RENAME TO ledger;
                CREATE INDEX ledger_by_partition ON ledger(partition_id, segment);
                """)
        }
    }

    // MARK: ids

    /// The id of a (pipeline, sink) of the ledger (created in a write transaction when `create`).
    func ledgerSinkID(_ db: Database, pipeline: String, sink: String, create: Bool) throws -> Int64? {
        try ledgerID(db, table: "ledger_sinks", column: "sink", cache: \.sinks, pipeline: pipeline, value: sink, create: create)
    }

    /// The id of a (pipeline, partition) of the ledger (created in a write transaction when `create`).
    func ledgerPartitionID(_ db: Database, pipeline: String, partition: String, create: Bool) throws -> Int64? {
        try ledgerID(db, table: "ledger_partitions", column: "partition", cache: \.partitions, pipeline: pipeline, value: partition, create: create)
    }

    /// The id of `(pipeline, column = value)` in one of the ledger's id tables, through the cache.
    private func ledgerID(_ db: Database, table: String, column: String, cache: WritableKeyPath<LedgerIDCache, [String: Int64]>,
                          pipeline: String, value: String, create: Bool) throws -> Int64? {
        let name = pipeline + "\u{0}" + value
        if let id = idsLock.withLock({ ledgerIDs[keyPath: cache][name] }) { return id }
        var id = try Int64.fetchOne(db, sql: "SELECT id FROM \(table) WHERE pipeline = ? AND \(column) = ?", arguments: [pipeline, value])
        if id == nil, create {
            try db.execute(sql: "INSERT INTO \(table) (pipeline, \(column)) VALUES (?, ?)", arguments: [pipeline, value])
            id = db.lastInsertedRowID
        }
        if let id { idsLock.withLock { ledgerIDs[keyPath: cache][name] = id } }
        return id
    }

    // MARK: the recent keys

    /// Migration v10: `ledger_recent`, the level that takes each commit's keys (see the
    /// comment at the top). Existing keys stay in `ledger`: no row is rewritten. `ledger`'s
    /// partition index is dropped: it doubled the cost of a merge's rows (6.0, 10.5 and
    /// 9.3 CPU s against 2.3, 4.5 and 4.8 for 4M keys into 0, 4M and 8M in
    /// `bench/ledger_sql.py`) and half the file; a replace's delete scans `ledger` instead.
    static func registerRecentLedger(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v10-ledger-recent") { db in
            try db.execute(sql: """
                DROP INDEX ledger_by_partition;
                CREATE TABLE ledger_recent (
                    sink_id INTEGER NOT NULL,
                    key BLOB NOT NULL,
                    partition_id INTEGER NOT NULL,
                    segment INTEGER NOT NULL,
                    PRIMARY KEY (sink_id, key)
                ) WITHOUT ROWID;
                CREATE INDEX ledger_recent_by_partition ON ledger_recent(partition_id, segment);
                CREATE TABLE ledger_recent_keys (
                    sink_id INTEGER PRIMARY KEY,
                    keys INTEGER NOT NULL
                );
                """)
        }
    }

    /// The two levels of the ledger, in the order a key passes them (the first with the
    /// runs of `ledger_runs`).
    static let ledgerTables = ["ledger_recent", "ledger"]

    /// Keys of a sink in the recent level: in `ledger_recent`, as `ledger_recent_keys`
    /// counts them, and in its runs.
    func recentLedgerKeys(_ db: Database, sinkID: Int64) throws -> Int {
        try (Int.fetchOne(db.cachedStatement(sql: "SELECT keys FROM ledger_recent_keys WHERE sink_id = ?"), arguments: [sinkID]) ?? 0)
            + ledgerRunKeys(db, sinkID: sinkID)
    }

    /// Adds `n` (which may be negative) to a sink's count of recent keys.
    private func addRecentLedgerKeys(_ db: Database, sinkID: Int64, _ n: Int) throws {
        try db.cachedStatement(sql: """
            INSERT INTO ledger_recent_keys (sink_id, keys) VALUES (?, ?)
            ON CONFLICT (sink_id) DO UPDATE SET keys = keys + excluded.keys
            """).execute(arguments: [sinkID, n])
    }

    /// Whether the recent level holds more than `ledgerLevels.recentKeys` keys (all sinks
    /// together), or a sink more than `ledgerLevels.maxRuns` runs: asked at the end of a
    /// write transaction that inserted keys, which then calls `mergeRecentLedgerIfFull`
    /// after it (no transaction more for the others).
    func recentLedgerIsFull(_ db: Database) throws -> Bool {
        let keys = try Int.fetchOne(db, sql: "SELECT (SELECT coalesce(sum(keys), 0) FROM ledger_recent_keys) + (SELECT coalesce(sum(keys), 0) FROM ledger_runs)") ?? 0
        return try keys > ledgerLevels.recentKeys || ledgerRunsPastLimit(db)
    }

    /// `mergeRecentLedgerIfFull` after a transaction that committed keys. Its failure (a
    /// full disk, an I/O error) undoes the merge alone, not what was committed before it,
    /// so it is not the caller's: it is kept as a warning (`takeWarnings`), and the next
    /// transaction that finds the recent level full merges. (It used to be thrown: the
    /// runner then failed the run of a segment that was committed.) The message is the
    /// database's, without the statement or any key.
    func mergeAfterCommit() {
        do {
            try mergeRecentLedgerIfFull()
        } catch {
            let reason = (error as? DatabaseError).map { "SQLite error \($0.resultCode.rawValue): \($0.message ?? "")" } ?? "\(type(of: error))"
            warningsLock.withLock {
                warnings.append("merging the ledger's recent keys into its older level failed (\(reason)); "
                    + "the segment is committed, and the next commit tries again")
            }
        }
    }

    /// Moves every recent key, of every sink, into `ledger` when `recentLedgerIsFull`
    /// (asked again: another process may have merged since): `ledger_recent` in one
    /// statement in key order (each page of `ledger` is rewritten once per merge instead
    /// of once per commit), then emptied whole (SQLite frees its pages without visiting
    /// its rows); then the runs, each sink's merged in key order (`mergeLedgerRuns`). One
    /// transaction: a crash leaves the keys in one table or the other, and the next write
    /// that inserts keys finds the recent level still full. A key `ledger` holds already keeps its row there (the older one).
    /// Returns whether it merged.
    @discardableResult
    func mergeRecentLedgerIfFull() throws -> Bool {
        try write { db in
            guard try recentLedgerIsFull(db) else { return false }
            try db.execute(sql: """
                INSERT OR IGNORE INTO ledger (sink_id, key, partition_id, segment)
                SELECT sink_id, key, partition_id, segment FROM ledger_recent ORDER BY sink_id, key;
                DELETE FROM ledger_recent;
                DELETE FROM ledger_recent_keys;
                """)
            try mergeLedgerRuns(db)
            // Killed here: the transaction is not committed. Filters stay true: a filter of
            // both tables still covers the moved keys; one of `ledger_recent` alone holds
            // them as keys it may hold (a lookup more each), until it is forgotten for its size.
            CrashPoints.reach("ledger.merged")
            return true
        }
    }

    // MARK: rows

    /// The keys among these that the sink's ledger holds, with their partition ids (a key
    /// held in both tables may come twice). Each table is asked in batched lookups,
    /// `keysPerStatement` keys per statement: a table the sink's filter covers, for the
    /// keys the filter may hold; the other, for every key. `epoch` is the database's as
    /// the caller's read began; nil in a write transaction of `write`, which checked it.
    func ledgerRows(_ db: Database, pipeline: String, sink: String, sinkID: Int64?, keys: [String],
                    epoch: LedgerKnowledge.Epoch?) throws -> [(key: String, partitionID: Int64)] {
        guard !keys.isEmpty else { return [] }
        let name = pipeline + "\u{0}" + sink
        var known = ledgerLock.withLock { () -> LedgerFilter? in
            if let epoch, ledgerKnown.epoch != epoch { ledgerKnown = LedgerKnowledge(epoch: epoch) }
            return ledgerKnown.filters[name]
        }
        if known == nil {
            // A sink the ledger never saw: an empty filter, that this store's commits fill.
            let made = try sinkID.map { try ledgerFilter(db, sinkID: $0) } ?? LedgerFilter(bloom: BloomFilter(), covered: Self.ledgerTables.count)
            known = made
            ledgerLock.withLock {
                if epoch == nil || ledgerKnown.epoch == epoch { ledgerKnown.filters[name] = made }
            }
        }
        guard let sinkID else { return [] }
        let filter = known!
        var candidates: [String]?
        var found: [(key: String, partitionID: Int64)] = []
        for (level, table) in Self.ledgerTables.enumerated() {
            if level < filter.covered, candidates == nil { candidates = filter.bloom.mayContain(keys) }
            let asked = level < filter.covered ? candidates! : keys
            try ledgerRows(db, table: table, sinkID: sinkID, keys: asked, into: &found)
            if level == 0 { try ledgerRunRows(db, sinkID: sinkID, keys: asked, into: &found) }
        }
        return found
    }

    /// The keys among these that one table of the sink's ledger holds.
    private func ledgerRows(_ db: Database, table: String, sinkID: Int64, keys: [String], into found: inout [(key: String, partitionID: Int64)]) throws {
        try db.forEachChunk(of: keys, size: Self.keysPerStatement, sql: {
            "SELECT key, partition_id FROM \(table) WHERE sink_id = ? AND key IN (\(Database.marks($0)))"
        }) { chunk, statement in
            var arguments: [(any DatabaseValueConvertible)?] = [sinkID]
            arguments.reserveCapacity(chunk.count + 1)
            var original: [DatabaseValue: String] = [:]
            original.reserveCapacity(chunk.count)
            for key in chunk {
                let stored = LedgerKeys.stored(key)
                original[stored] = key
                arguments.append(stored)
            }
            let rows = try GRDB.Row.fetchCursor(statement, arguments: StatementArguments(arguments))
            while let row = try rows.next() {
                if let key = original[row[0] as DatabaseValue] { found.append((key, row[1] as Int64)) }
            }
        }
    }

    /// Adds keys to the ledger of a pipeline's sink under a partition, as one new segment
    /// of the partition: sluice's own as a run of `ledger_runs`, others to `ledger_recent`
    /// in key order (its pages walked once, in order). Keys `ledger_recent` holds already
    /// keep their row; a key of another run or of `ledger` gets a second entry until the
    /// merge, which keeps the older one (lookups find either; a replace deletes both).
    /// Callers insert only keys `delivered` did not find, or found under the partition a
    /// replace rebuilds (whose rows are deleted first): a key twice is two processes
    /// delivering it at once. Also adds them to the sink's Bloom filter if the store keeps
    /// one. Inside a write transaction of `write`; the transaction asks
    /// `recentLedgerIsFull` at its end, and merges after it if so.
    func insertLedger(_ db: Database, pipeline: String, sink: String, partition: String, keys unsorted: [String]) throws {
        guard !unsorted.isEmpty else { return }
        rememberLedgerKeys(pipeline: pipeline, sink: sink, unsorted)
        let sinkID = try ledgerSinkID(db, pipeline: pipeline, sink: sink, create: true)!
        let partitionID = try ledgerPartitionID(db, pipeline: pipeline, partition: partition, create: true)!
        try db.execute(sql: "UPDATE ledger_partitions SET segments = segments + 1 WHERE id = ?", arguments: [partitionID])
        let segment = try Int64.fetchOne(db, sql: "SELECT segments FROM ledger_partitions WHERE id = ?", arguments: [partitionID])!
        // In the primary key's order (text sorts before blobs in SQLite; a blob's bytes in
        // order are its two big-endian halves in order), sorted as integers, not as strings.
        var own: [RecordKeyBits] = []
        own.reserveCapacity(unsorted.count)
        var other: [String] = []
        for key in unsorted {
            if let bits = RecordKeyBits(key) { own.append(bits) } else { other.append(key) }
        }
        own.sortKeys()
        try writeLedgerRun(db, sinkID: sinkID, partitionID: partitionID, segment: segment, sorted: own)
        guard !other.isEmpty else { return }
        other.sort()
        // Plain `?` parameters, each value repeated per row: GRDB reads the name of every
        // parameter of a new statement, and for numbered ones (`?1`) SQLite finds each
        // name by a walk over all of them (quadratic in the parameters of a statement).
        let before = db.totalChangesCount
        try db.forEachChunk(of: other, size: Self.keysPerStatement, sql: { Self.ledgerInsertSQL(into: "ledger_recent", rows: $0) }) { chunk, statement in
            try statement.executeBound(db) { b in
                for key in chunk {
                    b.bind(sinkID)
                    b.bind(key)
                    b.bind(partitionID)
                    b.bind(segment)
                }
            }
        }
        try addRecentLedgerKeys(db, sinkID: sinkID, db.totalChangesCount - before)
    }

    /// Inserts `rows` rows into a table of the ledger, a key held already keeping its row.
    static func ledgerInsertSQL(into table: String, rows: Int) -> String {
        "INSERT OR IGNORE INTO \(table) (sink_id, key, partition_id, segment) VALUES \(Database.marks(rows, "(?, ?, ?, ?)"))"
    }

    /// Forgets a partition's ledger rows, of every sink of the pipeline, in every table (a
    /// replace): its runs, `ledger_recent` through its partition index, `ledger` by a scan
    /// (it has no partition index since v10: a replace is rare, a merge is not).
    func deleteLedgerPartition(_ db: Database, pipeline: String, partition: String) throws {
        guard let partitionID = try ledgerPartitionID(db, pipeline: pipeline, partition: partition, create: false) else { return }
        for row in try GRDB.Row.fetchAll(db, sql: "SELECT sink_id, count(*) FROM ledger_recent WHERE partition_id = ? GROUP BY sink_id",
                                         arguments: [partitionID]) {
            try addRecentLedgerKeys(db, sinkID: row[0], -(row[1] as Int))
        }
        try db.execute(sql: "DELETE FROM ledger_recent WHERE partition_id = ?", arguments: [partitionID])
        try deleteLedgerRuns(db, partitionID: partitionID)
        try db.execute(sql: "DELETE FROM ledger WHERE partition_id = ?", arguments: [partitionID])
    }

    // MARK: the Bloom filters

    /// Adds keys this write transaction inserts into a sink's `ledger_recent` to its
    /// filter, if the store keeps one (see `LedgerKnowledge`). Keys the insert then
    /// ignores, or a transaction that fails, leave keys in a filter: a lookup more, never
    /// a duplicate. A filter past `ledgerLevels.filterKeys` keys is forgotten: the next
    /// question reads a new one, of `ledger_recent` alone once the history is larger, so
    /// that memory does not grow with the history (then 1 MiB per million keys: a 12-day
    /// backfill of 1M-line days peaked at 101 MB when its filter kept every key).
    func rememberLedgerKeys(pipeline: String, sink: String, _ keys: [String]) {
        let name = pipeline + "\u{0}" + sink
        ledgerLock.withLock {
            guard var filter = ledgerKnown.filters[name] else { return }
            ledgerKnown.filters[name] = nil // one copy while inserting
            for key in keys { filter.bloom.insert(key) }
            if filter.bloom.count <= ledgerLevels.filterKeys { ledgerKnown.filters[name] = filter }
        }
    }

    /// A filter of the sink's keys, read from the store: of both tables when they hold at
    /// most `ledgerLevels.filterKeys` keys together, else of `ledger_recent` when it does
    /// (`ledger` is then asked for every key), else none. Read in the primary key's order;
    /// `ledger`'s keys are counted first (by SQLite, at most `limit + 1` of them), so a
    /// large history is not read only to be dropped. Each key is read from SQLite's own
    /// buffer, no value made per row.
    func ledgerFilter(_ db: Database, sinkID: Int64) throws -> LedgerFilter {
        let limit = ledgerLevels.filterKeys
        let recent = try recentLedgerKeys(db, sinkID: sinkID)
        guard recent <= limit else { return LedgerFilter(bloom: BloomFilter(), covered: 0) }
        let old = try Int.fetchOne(db, sql: "SELECT count(*) FROM (SELECT 1 FROM ledger WHERE sink_id = ? LIMIT ?)",
                                   arguments: [sinkID, limit - recent + 1]) ?? 0
        var filter = LedgerFilter(bloom: BloomFilter(), covered: recent + old <= limit ? 2 : 1)
        for table in Self.ledgerTables.prefix(filter.covered) {
            guard try Self.readKeys(db, table: table, sinkID: sinkID, into: &filter.bloom) else {
                // A blob key not of sluice's 16 bytes (not written by sluice): no filter.
                return LedgerFilter(bloom: BloomFilter(), covered: 0)
            }
        }
        try readLedgerRunKeys(db, sinkID: sinkID, into: &filter.bloom)
        return filter
    }

    /// Adds every key of a sink in one table of the ledger to a filter; false if a stored
    /// key is a blob of another length than sluice's 16 bytes.
    private static func readKeys(_ db: Database, table: String, sinkID: Int64, into bloom: inout BloomFilter) throws -> Bool {
        var known = true
        let statement = try db.makeStatement(sql: "SELECT key FROM \(table) WHERE sink_id = ? ORDER BY key")
        try statement.forEachRow(db, bind: { $0.bind(sinkID) }) { row in
            // The pointer first, then its length (SQLite's documented order).
            if sqlite3_column_type(row, 0) == SQLITE_BLOB {
                // Only sluice's own keys are stored as bytes (`LedgerKeys.stored`).
                let bytes = sqlite3_column_blob(row, 0)
                guard let bits = RecordKeyBits(bytes: UnsafeRawBufferPointer(start: bytes, count: Int(sqlite3_column_bytes(row, 0)))) else {
                    known = false
                    return false
                }
                bloom.insert(hash: BloomFilter.hash(bits))
            } else {
                let text = sqlite3_column_text(row, 0)
                let length = Int(sqlite3_column_bytes(row, 0))
                bloom.insert(text.map { String(decoding: UnsafeBufferPointer(start: $0, count: length), as: UTF8.self) } ?? "")
            }
            return true
        }
        return known
    }
}

/// Ids of the ledger's sinks and partitions read from or written to the store (by
/// pipeline + NUL + sink or partition).
struct LedgerIDCache {
    var sinks: [String: Int64] = [:]
    var partitions: [String: Int64] = [:]
}

/// The shape of the ledger's two levels: `ledger_recent` takes each commit's keys, and is
/// merged into `ledger` when it holds more than `recentKeys` (of all sinks together).
struct LedgerLevels: Sendable {
    /// About a day of the benchmark's input. A larger `ledger_recent` costs each commit
    /// more pages (its keys are random too), a smaller one more merges (each rewrites
    /// `ledger`'s pages once). The ledger's inserts alone (`bench/ledger_sql.py`, 13M
    /// keys in commits of 100k): 37.5 CPU s with 1M, 37.4 with 2M, 50.6 with 4M, 66.2
    /// in one table; 4M keys: 11.4 with 1M, 10.9 in one table.
    var recentKeys = 1 << 20
    /// A process reads into its filter the keys of both levels when they hold at most this
    /// many together, else of the recent level alone (three blocks of the filter, 3 MiB:
    /// 0.75 MiB per million keys, ~0.2 s per million to read), and keeps at most this many
    /// in it; a level the filter does not cover is asked for every key.
    var filterKeys = 3 * BloomFilter.keysPerBlock
    /// Runs of a sink (`ledger_runs`) past which the recent level is merged into
    /// `ledger`, whatever its keys: a lookup reads a block of each run. A day's
    /// commits of 100,000 keys make ten; runs of a partition are merged by size
    /// (`LedgerRuns.fanIn`), so this bounds runs of many partitions (a backfill of small days).
    var maxRuns = 64

    /// The defaults, but `recentKeys` from `SLUICE_LEDGER_RECENT_KEYS` when it is set to
    /// a positive integer (the crash tests merge every few commits of their small input).
    static var configured: LedgerLevels {
        var levels = LedgerLevels()
        if let raw = getenv("SLUICE_LEDGER_RECENT_KEYS"), let n = Int(String(cString: raw)), n > 0 { levels.recentKeys = n }
        return levels
    }
}

/// What a process knows of a sink's ledger: every key of the first `covered` tables of
/// `ledgerTables` is in `bloom` (2: both; 1: `ledger_recent`; 0: none). The filter may hold
/// more keys (moved to `ledger`, deleted, or ignored as held already): each costs a lookup,
/// never a duplicate.
struct LedgerFilter {
    var bloom: BloomFilter
    var covered: Int
}

/// Record keys as the ledger stores them.
enum LedgerKeys {
    /// The 16 bytes of sluice's own keys (32 lowercase hex digits), the text of any other
    /// (the same conversion as window events' record keys).
    static func stored(_ key: String) -> DatabaseValue {
        guard let bits = RecordKeyBits(key) else { return key.databaseValue }
        return bits.withBytes { Data($0) }.databaseValue
    }
}

extension Database {
    /// Runs a statement over `items`, `size` at a time: `sql(n)` is its text for `n` items.
    /// A full chunk's statement is made (its text built and looked up in the connection's
    /// cache) once per call, a shorter last one's made for it.
    func forEachChunk<C: RandomAccessCollection>(of items: C, size: Int, sql: (Int) -> String,
                                                 _ body: (C.SubSequence, Statement) throws -> Void) throws where C.Index == Int {
        var full: Statement?
        var start = items.startIndex
        while start < items.endIndex {
            let chunk = items[start..<min(items.endIndex, start + size)]
            start += chunk.count
            try body(chunk, try chunkStatement(rows: chunk.count, of: size, full: &full, sql: sql))
        }
    }

    /// The statement for a chunk of `rows` items of chunks of `size`: a full chunk's made
    /// (its text built and looked up in the connection's cache) once and kept in `full`, a
    /// shorter one's made for it.
    func chunkStatement(rows: Int, of size: Int, full: inout Statement?, sql: (Int) -> String) throws -> Statement {
        guard rows == size else { return try makeStatement(sql: sql(rows)) }
        if let full { return full }
        let made = try cachedStatement(sql: sql(size))
        full = made
        return made
    }

    /// `n` placeholders (`?,?,…`, or another group such as `(?, ?)`) for an `IN` list or `VALUES`.
    /// Appended into one string of the right capacity: `repeatElement(one, count:
    /// n).joined(separator:)` ran through unspecialized generic code (~135 µs for 500
    /// groups), and a merge of the ledger's runs made one text a statement of 500 keys:
    /// ~0.7 s of a 1M-line day on two days of history (docs/benchmarks.md).
    static func marks(_ n: Int, _ one: String = "?") -> String {
        guard n > 0 else { return "" }
        var text = ""
        text.reserveCapacity(n * (one.utf8.count + 1))
        text += one
        for _ in 1..<n {
            text += ","
            text += one
        }
        return text
    }
}
