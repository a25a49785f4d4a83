import Foundation
import GRDB
import GRDBSQLite
import SluiceCore

// The delivery ledger, compact (migration v8-compact-ledger, issue #7):
//
//     ledger_sinks(id, pipeline, sink)                  one row per (pipeline, sink)
//     ledger_partitions(id, pipeline, partition, segments)  one row per (pipeline, partition)
//     ledger(sink_id, key, partition_id, segment) PRIMARY KEY (sink_id, key) WITHOUT ROWID
//     INDEX ledger_by_partition(partition_id, segment)
//
// A record key is stored as its 16 bytes when it is one of sluice's own (32 lowercase hex
// digits), as its text otherwise (a BLOB never equals a TEXT in SQLite, so the two
// kinds cannot be confused); the `StateStore` seam still speaks hex strings. Before v8
// every row repeated the pipeline, sink, key and partition as text in the table and
// again in the partition index (~177 bytes per key).
//
// `segment` numbers the writes of a partition's keys (`ledger_partitions.segments`,
// counted up by each commit or acknowledgement that adds keys to it): the partition
// index is ordered by it, so a segment's keys go to the end of their partition's range
// of the index, on new pages, instead of to random places all over it. The primary key
// still takes them at random places (lookups need it by key); the index no longer does.
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

    // MARK: rows

    /// The keys among these that the sink's ledger holds, with their partition ids;
    /// batched lookups, `keysPerStatement` keys per statement.
    func ledgerRows(_ db: Database, sinkID: Int64, keys: some Collection<String>) throws -> [(key: String, partitionID: Int64)] {
        var found: [(key: String, partitionID: Int64)] = []
        try db.forEachChunk(of: Array(keys), size: Self.keysPerStatement, sql: {
            "SELECT key, partition_id FROM ledger WHERE sink_id = ? AND key IN (\(Database.marks($0)))"
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
        return found
    }

    /// Adds keys to the ledger of a pipeline's sink under a partition, as one new segment
    /// of the partition, in key order (the primary key's pages walked once, in order).
    /// Keys the sink's ledger holds already keep their row. Also adds them to the sink's
    /// Bloom filter if the store keeps one. Inside a write transaction of `write`.
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
        own.sort { ($0.high, $0.low) < ($1.high, $1.low) }
        other.sort()
        // Plain `?` parameters, each value repeated per row: GRDB reads the name of every
        // parameter of a new statement, and for numbered ones (`?1`) SQLite finds each
        // name by a walk over all of them (quadratic in the parameters of a statement).
        try db.forEachChunk(of: 0..<(other.count + own.count), size: Self.keysPerStatement, sql: Self.ledgerInsertSQL) { chunk, statement in
            try statement.executeBound(db) { b in
                for i in chunk {
                    b.bind(sinkID)
                    if i < other.count { b.bind(other[i]) } else { b.bind(own[i - other.count]) }
                    b.bind(partitionID)
                    b.bind(segment)
                }
            }
        }
    }

    static func ledgerInsertSQL(rows: Int) -> String {
        "INSERT OR IGNORE INTO ledger (sink_id, key, partition_id, segment) VALUES \(Database.marks(rows, "(?, ?, ?, ?)"))"
    }

    /// Forgets a partition's ledger rows, of every sink of the pipeline (a replace).
    func deleteLedgerPartition(_ db: Database, pipeline: String, partition: String) throws {
        guard let partitionID = try ledgerPartitionID(db, pipeline: pipeline, partition: partition, create: false) else { return }
        try db.execute(sql: "DELETE FROM ledger WHERE partition_id = ?", arguments: [partitionID])
    }

    // MARK: the Bloom filters

    /// Adds keys this write transaction inserts into a sink's ledger to its filter, if
    /// the store keeps one (see `LedgerKnowledge`). Keys the insert then ignores, or a
    /// transaction that fails, leave keys in a filter: a lookup more, never a duplicate.
    func rememberLedgerKeys(pipeline: String, sink: String, _ keys: [String]) {
        rememberKeys(pipeline + "\u{0}" + sink, keys)
    }

    /// The keys among these that may be in the sink's ledger: all of them, unless the
    /// store knows every key the ledger holds (a filter, made on the first question: empty
    /// for an empty ledger, of every key it holds when they are at most
    /// `maxKeysLoadedIntoFilter`). `epoch` is the database's as the caller's read began;
    /// nil in a write transaction of `write`, which checked it already.
    func ledgerCandidates(_ db: Database, pipeline: String, sink: String, sinkID: Int64?, keys: [String],
                          epoch: LedgerKnowledge.Epoch?) throws -> [String] {
        let candidates = try filterCandidates(pipeline + "\u{0}" + sink, keys: keys, epoch: epoch) {
            guard let sinkID else { return .keys(BloomFilter()) }
            return try Self.ledgerFilter(db, sinkID: sinkID)
        }
        return sinkID == nil ? [] : candidates
    }

    /// A sink's ledger of at most this many keys is read into a filter when a process
    /// first asks about it (1 MiB of filter per million keys, ~0.2 s per million to read).
    /// Before, only an empty ledger got a filter: a process that started on a day's keys
    /// looked every key of the next day up in the store (+41% for a 1M-line day).
    static let maxKeysLoadedIntoFilter = 4 << 20

    /// A filter of every key the sink's ledger holds, read in the primary key's order (one
    /// pass over the sink's range); `.unknown` past `limit` keys, found by SQLite's count
    /// of at most `limit + 1` rows before any key is read. (A process that started on a
    /// ledger of 12M keys read 4M of them one by one, then threw them away: 16% of its
    /// samples.) Each key is read from SQLite's own buffer, no value made per row.
    static func ledgerFilter(_ db: Database, sinkID: Int64, limit: Int = maxKeysLoadedIntoFilter) throws -> LedgerKnowledge.Filter {
        let count = try Int.fetchOne(db, sql: "SELECT count(*) FROM (SELECT 1 FROM ledger WHERE sink_id = ? LIMIT ?)",
                                     arguments: [sinkID, limit + 1]) ?? 0
        guard count <= limit else { return .unknown }
        var bloom = BloomFilter()
        var known = true
        let statement = try db.makeStatement(sql: "SELECT key FROM ledger WHERE sink_id = ? ORDER BY key")
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
        return known ? .keys(bloom) : .unknown
    }

    /// Adds keys to the filter `name` (a sink's ledger), if the store keeps one.
    func rememberKeys(_ name: String, _ keys: some Sequence<String>) {
        ledgerLock.withLock {
            if case .keys(var bloom)? = ledgerKnown.filters[name] {
                ledgerKnown.filters[name] = nil // one copy while inserting
                for key in keys { bloom.insert(key) }
                ledgerKnown.filters[name] = .keys(bloom)
            }
        }
    }

    /// The keys among these that the filter `name` may hold: all of them unless the
    /// store knows every key stored under that name. When first asked (or after a write
    /// the store did not see), `initial` reads what is stored: a filter of all of it is
    /// kept from then on, or `.unknown` (every key is a candidate). `epoch` as in
    /// `ledgerCandidates`.
    func filterCandidates(_ name: String, keys: [String], epoch: LedgerKnowledge.Epoch?,
                          initial: () throws -> LedgerKnowledge.Filter) rethrows -> [String] {
        var filter = ledgerLock.withLock { () -> LedgerKnowledge.Filter? in
            if let epoch, ledgerKnown.epoch != epoch { ledgerKnown = LedgerKnowledge(epoch: epoch) }
            return ledgerKnown.filters[name]
        }
        if filter == nil {
            filter = try initial()
            ledgerLock.withLock {
                if epoch == nil || ledgerKnown.epoch == epoch { ledgerKnown.filters[name] = filter }
            }
        }
        if case .keys(let bloom)? = filter { return keys.filter { bloom.mayContain($0) } }
        return keys
    }
}

/// Ids of the ledger's sinks and partitions read from or written to the store (by
/// pipeline + NUL + sink or partition).
struct LedgerIDCache {
    var sinks: [String: Int64] = [:]
    var partitions: [String: Int64] = [:]
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
            if chunk.count == size {
                if full == nil { full = try cachedStatement(sql: sql(size)) }
                try body(chunk, full!)
            } else {
                try body(chunk, try makeStatement(sql: sql(chunk.count)))
            }
        }
    }

    /// `n` placeholders (`?,?,…`, or another group such as `(?, ?)`) for an `IN` list or `VALUES`.
    static func marks(_ n: Int, _ one: String = "?") -> String { repeatElement(one, count: n).joined(separator: ",") }
}
