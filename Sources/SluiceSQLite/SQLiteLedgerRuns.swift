import GRDB
import GRDBSQLite
import SluiceCore

// The ledger's recent keys as sorted runs (migration v11-ledger-runs, issue #7):
//
//     ledger_runs(id INTEGER PRIMARY KEY AUTOINCREMENT, sink_id, partition_id, segment, keys)
//     INDEX ledger_runs_by_sink(sink_id, partition_id)
//     ledger_run_blocks(run, first, keys) PRIMARY KEY (run, first) WITHOUT ROWID
//
// A run is `keys` record keys of sluice's own, distinct and in ascending order, in
// blocks of `LedgerRuns.blockKeys`: a block's `keys` is its keys, 16 bytes each (the two
// halves big-endian, as `LedgerKeys.stored` stores one key), and `first` its first key;
// every block but the last of a run is full.
//
// Why: v10's `ledger_recent` took each commit's keys into a B-tree ordered by key. A
// segment's 100,000 random keys landed on nearly every page of it, so each commit
// rewrote that table (~40 MB at 1M keys) while the other threads waited: 68-131 ms of a
// commit's 111-236 ms at 1M lines, ~15% of the wall time (docs/benchmarks.md). A run's
// blocks are appended at the end of the blocks' B-tree (run ids and first keys ascend)
// and never changed. A lookup asks each run of the sink for the keys the sink's Bloom
// filter may hold, and that the run's own filter (`RunFilter`, kept by the store) may
// hold: one search of the B-tree (its inner pages are few and cached) gives the one
// block that can hold a key, a leaf of 16 blocks. Without the runs' filters every
// candidate was searched in every run: at 4M lines, where the sink's filter passes ~9% of
// the keys (four blocks of ~2.2% each), the run took 85 s against 61 s.
//
// Blocks are rows, not one blob a run: a read at an offset of a blob walks its chain of
// overflow pages from the start, and lookups spread over ten runs of 1.6 MB read 110,000
// pages more per 1M-line run than `ledger_recent` did (sys time +1 s).
//
// Keys that are not sluice's own still go to `ledger_recent`, which also keeps its rows
// from before v11: the two tables are the recent level of the ledger together.
//
// Runs are bounded. In a (sink, partition), `LedgerRuns.fanIn` runs of one size class
// (keys' log base 16) are merged into one: a day streamed in small segments rewrites each
// key a few times, never the whole day per segment. Past `LedgerLevels.maxRuns` runs of a
// sink, or `LedgerLevels.recentKeys` recent keys, the recent level is merged into
// `ledger`, the runs k-way, in key order.
enum LedgerRuns {
    /// Keys of a block (1 KiB).
    static let blockKeys = 64
    /// Bytes a key.
    static let keyBytes = 16
    /// Runs of one size class in a (sink, partition) merged into one.
    static let fanIn = 16

    /// A run's size class: log base 16 of its keys.
    static func sizeClass(_ keys: Int) -> Int { (Int.bitWidth - 1 - max(keys, 1).leadingZeroBitCount) / 4 }

    /// The key at `i` of stored keys (any alignment).
    @inline(__always) static func key(_ bytes: UnsafeRawPointer, _ i: Int) -> RecordKeyBits {
        RecordKeyBits(high: UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: i * keyBytes, as: UInt64.self)),
                      low: UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: i * keyBytes + 8, as: UInt64.self)))
    }
}

/// A Bloom filter of one run's keys (sluice's own, whose bits are uniform already): 8 bits
/// a key, in blocks of 512 bits (as many as that takes, not a power of two: a run of
/// 100,000 keys took 128 KiB rounded up, 98 KiB now), 5 bits of one block a key (~3%
/// false positives). Its bits are other bits of the key than the sink's filter's
/// (`BloomFilter.hash`), so the two say "maybe" of a stranger independently. The store
/// keeps one per run of its sinks (`LedgerKnowledge.runFilters`): the recent level holds
/// at most ~`LedgerLevels.recentKeys` keys, so they take ~1 MiB at most.
struct RunFilter {
    private var words: [UInt64]
    private let blocks: UInt64

    init(keys: Int) {
        let blocks = max(1, (keys * 8 + 511) / 512)
        words = [UInt64](repeating: 0, count: blocks * 8)
        self.blocks = UInt64(blocks)
    }

    /// The first word of a key's block: the high 32 bits of its low half scaled to the
    /// blocks (multiply and shift: no division, no power of two needed).
    @inline(__always) private func base(_ key: RecordKeyBits) -> Int {
        Int(truncatingIfNeeded: ((key.low >> 32) &* blocks) >> 32) * 8
    }

    mutating func insert(_ key: RecordKeyBits) {
        let base = base(key)
        words.withUnsafeMutableBufferPointer { w in
            for i in 0..<5 {
                let bit = Int(truncatingIfNeeded: key.high >> UInt64(23 + 8 * i)) & 511
                w[base + bit >> 6] |= 1 << UInt64(bit & 63)
            }
        }
    }

    func mayContain(_ key: RecordKeyBits) -> Bool {
        let base = base(key)
        return words.withUnsafeBufferPointer { w in
            for i in 0..<5 {
                let bit = Int(truncatingIfNeeded: key.high >> UInt64(23 + 8 * i)) & 511
                if w[base + bit >> 6] & (1 << UInt64(bit & 63)) == 0 { return false }
            }
            return true
        }
    }
}

/// A run of the ledger as listed.
struct LedgerRun {
    var id: Int64
    var partitionID: Int64
    var segment: Int64
    var keys: Int
}

/// A block of a run as read: its keys' stored bytes, copied out of SQLite's row.
struct LedgerBlock {
    private(set) var words = [UInt64](repeating: 0, count: LedgerRuns.blockKeys * 2)
    private(set) var count = 0

    /// Copies the blob of column `column` of the statement's current row; false if it is
    /// not a whole number of keys, or more than a block.
    mutating func load(_ row: SQLiteStatement, column: Int32) -> Bool {
        let bytes = Int(sqlite3_column_bytes(row, column))
        guard bytes % LedgerRuns.keyBytes == 0, bytes <= LedgerRuns.blockKeys * LedgerRuns.keyBytes else { return false }
        if bytes > 0 { words.withUnsafeMutableBytes { $0.baseAddress!.copyMemory(from: sqlite3_column_blob(row, column), byteCount: bytes) } }
        count = bytes / LedgerRuns.keyBytes
        return true
    }

    subscript(i: Int) -> RecordKeyBits { words.withUnsafeBytes { LedgerRuns.key($0.baseAddress!, i) } }

    var last: RecordKeyBits { self[count - 1] }

    func contains(_ key: RecordKeyBits) -> Bool {
        var lo = 0, hi = count
        while lo < hi {
            let mid = (lo + hi) / 2
            if self[mid] < key { lo = mid + 1 } else { hi = mid }
        }
        return lo < count && self[lo] == key
    }
}

/// A run's keys in order, a block at a time, through a statement of its own (a k-way
/// merge has one per run open at once).
final class LedgerRunCursor {
    let run: LedgerRun
    private let statement: Statement
    private let db: Database
    private var block = LedgerBlock()
    private var at = 0
    /// The key the cursor is at; nil past the end.
    private(set) var current: RecordKeyBits?

    init(_ db: Database, run: LedgerRun) throws {
        self.run = run
        self.db = db
        statement = try db.makeStatement(sql: "SELECT keys FROM ledger_run_blocks WHERE run = ? ORDER BY first")
        sqlite3_bind_int64(statement.sqliteStatement, 1, run.id)
        try step()
    }

    func advance() throws {
        at += 1
        if at < block.count { current = block[at] } else { try step() }
    }

    private func step() throws {
        let s = statement.sqliteStatement
        let code = sqlite3_step(s)
        if code == SQLITE_ROW, block.load(s, column: 0), block.count > 0 {
            at = 0
            current = block[0]
            return
        }
        current = nil
        sqlite3_reset(s)
        guard code == SQLITE_DONE else {
            throw DatabaseError(resultCode: code == SQLITE_ROW ? .SQLITE_CORRUPT : ResultCode(rawValue: code),
                                message: code == SQLITE_ROW ? "a ledger run's block is not a whole number of keys" : String(cString: sqlite3_errmsg(db.sqliteConnection)),
                                sql: statement.sql)
        }
    }

    /// Ends the cursor's statement (before its transaction ends).
    func close() {
        current = nil
        sqlite3_reset(statement.sqliteStatement)
    }

    /// Calls `body` with each key of a run, in order.
    static func forEachKey(_ db: Database, of run: LedgerRun, _ body: (RecordKeyBits) -> Void) throws {
        let cursor = try LedgerRunCursor(db, run: run)
        defer { cursor.close() }
        while let key = cursor.current {
            body(key)
            try cursor.advance()
        }
    }

    /// The keys of runs in ascending order, each with the run it came from; of equal
    /// keys, the one of the earlier run in `runs` first.
    static func merge(_ db: Database, _ runs: [LedgerRun], _ body: (RecordKeyBits, LedgerRun) throws -> Void) throws {
        let cursors = try runs.map { try LedgerRunCursor(db, run: $0) }
        defer { for c in cursors { c.close() } }
        // A linear pass over the cursors per key: a sink has at most `maxRuns` runs, and
        // usually ten or so (a heap pays off only with many more).
        while true {
            var best: LedgerRunCursor?
            var bestKey = RecordKeyBits.zero
            for c in cursors {
                guard let key = c.current else { continue }
                if best == nil || key < bestKey { best = c; bestKey = key }
            }
            guard let best else { return }
            try body(bestKey, best.run)
            try best.advance()
        }
    }
}

/// Writes a new run from keys given in ascending order (a key equal to the one before is
/// skipped), a block a row as they come: no copy of the whole run is made.
struct LedgerRunWriter {
    private let db: Database
    let id: Int64
    /// The filter of the keys written (sized for the keys said at the start).
    private(set) var filter: RunFilter
    private var block: [UInt64] = []
    private var first = RecordKeyBits.zero
    private var previous: RecordKeyBits?
    private(set) var written = 0

    init(_ db: Database, sinkID: Int64, partitionID: Int64, segment: Int64, keys: Int) throws {
        self.db = db
        filter = RunFilter(keys: keys)
        try db.cachedStatement(sql: "INSERT INTO ledger_runs (sink_id, partition_id, segment, keys) VALUES (?, ?, ?, 0)")
            .execute(arguments: [sinkID, partitionID, segment])
        id = db.lastInsertedRowID
        block.reserveCapacity(LedgerRuns.blockKeys * 2)
    }

    mutating func append(_ key: RecordKeyBits) throws {
        if let previous, previous == key { return }
        previous = key
        filter.insert(key)
        if block.isEmpty { first = key }
        block.append(key.high.bigEndian)
        block.append(key.low.bigEndian)
        if block.count == LedgerRuns.blockKeys * 2 { try flush() }
    }

    private mutating func flush() throws {
        guard !block.isEmpty else { return }
        let (id, first) = (self.id, self.first)
        try block.withUnsafeBytes { bytes in
            try db.cachedStatement(sql: "INSERT INTO ledger_run_blocks (run, first, keys) VALUES (?, ?, ?)").executeBound(db) { b in
                b.bind(id)
                b.bind(first)
                b.bind(blob: bytes)
            }
        }
        written += block.count / 2
        block.removeAll(keepingCapacity: true)
    }

    /// Writes the last block and the run's count of keys (a run of none is not kept).
    mutating func finish() throws {
        try flush()
        if written == 0 {
            try db.execute(sql: "DELETE FROM ledger_runs WHERE id = ?", arguments: [id])
        } else {
            try db.cachedStatement(sql: "UPDATE ledger_runs SET keys = ? WHERE id = ?").execute(arguments: [written, id])
        }
    }
}

extension SQLiteStateStore {
    /// Migration v11: the recent keys of sluice's own as sorted runs (see the comment at
    /// the top). Existing rows stay where they are.
    static func registerLedgerRuns(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v11-ledger-runs") { db in
            try db.execute(sql: """
                CREATE TABLE ledger_runs (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    sink_id INTEGER NOT NULL,
                    partition_id INTEGER NOT NULL,
                    segment INTEGER NOT NULL,
                    keys INTEGER NOT NULL
                );
                CREATE INDEX ledger_runs_by_sink ON ledger_runs(sink_id, partition_id);
                CREATE TABLE ledger_run_blocks (
                    run INTEGER NOT NULL,
                    first BLOB NOT NULL,
                    keys BLOB NOT NULL,
                    PRIMARY KEY (run, first)
                ) WITHOUT ROWID;
                """)
        }
    }

    /// The runs of a sink (of one partition of it, if given), oldest first.
    func ledgerRuns(_ db: Database, sinkID: Int64, partitionID: Int64? = nil) throws -> [LedgerRun] {
        let sql = "SELECT id, partition_id, segment, keys FROM ledger_runs WHERE sink_id = ?" + (partitionID == nil ? "" : " AND partition_id = ?") + " ORDER BY id"
        var arguments: StatementArguments = [sinkID]
        if let partitionID { arguments += [partitionID] }
        return try GRDB.Row.fetchAll(db.cachedStatement(sql: sql), arguments: arguments).map {
            LedgerRun(id: $0[0], partitionID: $0[1], segment: $0[2], keys: $0[3])
        }
    }

    /// Keys of a sink in its runs.
    func ledgerRunKeys(_ db: Database, sinkID: Int64) throws -> Int {
        try Int.fetchOne(db.cachedStatement(sql: "SELECT coalesce(sum(keys), 0) FROM ledger_runs WHERE sink_id = ?"), arguments: [sinkID]) ?? 0
    }

    /// Writes sorted keys as a run of a sink's partition, then merges the partition's runs
    /// of a size class that has `LedgerRuns.fanIn` of them. Inside a write transaction.
    func writeLedgerRun(_ db: Database, sinkID: Int64, partitionID: Int64, segment: Int64, sorted: [RecordKeyBits]) throws {
        guard !sorted.isEmpty else { return }
        var writer = try LedgerRunWriter(db, sinkID: sinkID, partitionID: partitionID, segment: segment, keys: sorted.count)
        for key in sorted { try writer.append(key) }
        try writer.finish()
        keepRunFilter(sinkID: sinkID, writer)
        try compactLedgerRuns(db, sinkID: sinkID, partitionID: partitionID)
    }

    /// Merges runs of a (sink, partition) while a size class has `fanIn` of them, the new
    /// run written as the k-way merge yields its keys (a key of two runs once).
    private func compactLedgerRuns(_ db: Database, sinkID: Int64, partitionID: Int64) throws {
        while true {
            let runs = try ledgerRuns(db, sinkID: sinkID, partitionID: partitionID)
            let byClass = Dictionary(grouping: runs) { LedgerRuns.sizeClass($0.keys) }
            guard let group = byClass.filter({ $0.value.count >= LedgerRuns.fanIn }).min(by: { $0.key < $1.key })?.value else { return }
            var writer = try LedgerRunWriter(db, sinkID: sinkID, partitionID: partitionID, segment: group.map(\.segment).max()!,
                                             keys: group.reduce(0) { $0 + $1.keys })
            try LedgerRunCursor.merge(db, group) { key, _ in try writer.append(key) }
            try writer.finish()
            keepRunFilter(sinkID: sinkID, writer)
            for run in group { try deleteLedgerRun(db, run.id) }
        }
    }

    private func deleteLedgerRun(_ db: Database, _ id: Int64) throws {
        try db.cachedStatement(sql: "DELETE FROM ledger_run_blocks WHERE run = ?").execute(arguments: [id])
        try db.cachedStatement(sql: "DELETE FROM ledger_runs WHERE id = ?").execute(arguments: [id])
    }

    /// Keeps the filter of a run just written. A run's id is never used again
    /// (`AUTOINCREMENT`) but after a rollback, and a write that fails forgets every filter
    /// (`write`); so a filter kept under an id is of that run's keys.
    private func keepRunFilter(sinkID: Int64, _ writer: LedgerRunWriter) {
        guard writer.written > 0 else { return }
        ledgerLock.withLock { ledgerKnown.runFilters[sinkID, default: [:]][writer.id] = writer.filter }
    }

    /// The filters of a sink's runs: kept, or read from the run's keys (and kept); those
    /// of runs the sink no longer has are dropped.
    private func runFilters(_ db: Database, sinkID: Int64, _ runs: [LedgerRun]) throws -> [RunFilter] {
        var kept = ledgerLock.withLock { ledgerKnown.runFilters[sinkID] ?? [:] }
        kept = kept.filter { id, _ in runs.contains { $0.id == id } }
        for run in runs where kept[run.id] == nil {
            var filter = RunFilter(keys: run.keys)
            try LedgerRunCursor.forEachKey(db, of: run) { filter.insert($0) }
            kept[run.id] = filter
        }
        ledgerLock.withLock { ledgerKnown.runFilters[sinkID] = kept }
        return runs.map { kept[$0.id]! }
    }

    /// Forgets the runs of a partition, of every sink (a replace).
    func deleteLedgerRuns(_ db: Database, partitionID: Int64) throws {
        for id in try Int64.fetchAll(db, sql: "SELECT id FROM ledger_runs WHERE partition_id = ?", arguments: [partitionID]) {
            try deleteLedgerRun(db, id)
        }
    }

    /// The keys among these that the sink's runs hold, with their runs' partitions. The
    /// keys of sluice's own, sorted; for each run, each key's block (the one with the
    /// greatest first key at most the key) read once for the keys that fall in it, and
    /// searched.
    func ledgerRunRows(_ db: Database, sinkID: Int64, keys: [String], into found: inout [(key: String, partitionID: Int64)]) throws {
        guard !keys.isEmpty else { return }
        let runs = try ledgerRuns(db, sinkID: sinkID)
        guard !runs.isEmpty else { return }
        var own: [(bits: RecordKeyBits, index: Int)] = []
        own.reserveCapacity(keys.count)
        for (i, key) in keys.enumerated() { if let bits = RecordKeyBits(key) { own.append((bits, i)) } }
        guard !own.isEmpty else { return }
        own.sort { $0.bits < $1.bits }
        let statement = try db.cachedStatement(sql: "SELECT first, keys FROM ledger_run_blocks WHERE run = ? AND first <= ? ORDER BY first DESC LIMIT 1")
        var block = LedgerBlock()
        for (run, filter) in zip(runs, try runFilters(db, sinkID: sinkID, runs)) {
            // The block read last covers keys from its first to its last key.
            var covered: (first: RecordKeyBits, last: RecordKeyBits)?
            for (bits, index) in own where filter.mayContain(bits) {
                if let c = covered, c.first <= bits, bits <= c.last {
                    // In the block read last.
                } else {
                    var read = false
                    try statement.forEachRow(db, bind: { b in
                        b.bind(run.id)
                        b.bind(bits)
                    }) { row in
                        guard let first = RecordKeyBits(bytes: UnsafeRawBufferPointer(start: sqlite3_column_blob(row, 0), count: Int(sqlite3_column_bytes(row, 0)))),
                              block.load(row, column: 1), block.count > 0 else {
                            throw DatabaseError(resultCode: .SQLITE_CORRUPT, message: "a ledger run's block is not a whole number of keys")
                        }
                        covered = (first, block.last)
                        read = true
                        return false
                    }
                    // Below the run's first key, or past the block that would hold it.
                    guard read, bits <= block.last else { continue }
                }
                if block.contains(bits) { found.append((keys[index], run.partitionID)) }
            }
        }
    }

    /// Adds every key of a sink's runs to a filter, and keeps each run's own filter made
    /// in the same pass (the lookups that follow would otherwise read every run again).
    func readLedgerRunKeys(_ db: Database, sinkID: Int64, into bloom: inout BloomFilter) throws {
        var filters: [Int64: RunFilter] = [:]
        for run in try ledgerRuns(db, sinkID: sinkID) {
            var filter = RunFilter(keys: run.keys)
            try LedgerRunCursor.forEachKey(db, of: run) { key in
                bloom.insert(hash: BloomFilter.hash(key))
                filter.insert(key)
            }
            filters[run.id] = filter
        }
        ledgerLock.withLock { ledgerKnown.runFilters[sinkID] = filters }
    }

    /// Moves every run, of every sink, into `ledger`: a sink's runs k-way merged, in key
    /// order, `keysPerStatement` rows a statement; a key `ledger` holds already keeps its
    /// row there, and of a key in two runs the older run's row is kept. Then the runs are
    /// deleted. Inside the merge's write transaction (`mergeRecentLedgerIfFull`).
    func mergeLedgerRuns(_ db: Database) throws {
        for sinkID in try Int64.fetchAll(db, sql: "SELECT DISTINCT sink_id FROM ledger_runs ORDER BY sink_id") {
            var rows: [(key: RecordKeyBits, run: LedgerRun)] = []
            rows.reserveCapacity(Self.keysPerStatement)
            // A full statement's text made and looked up once per merge, not once a statement.
            var full: Statement?
            func flush() throws {
                guard !rows.isEmpty else { return }
                let statement = try db.chunkStatement(rows: rows.count, of: Self.keysPerStatement, full: &full) {
                    Self.ledgerInsertSQL(into: "ledger", rows: $0)
                }
                try statement.executeBound(db) { b in
                    for row in rows {
                        b.bind(sinkID)
                        b.bind(row.key)
                        b.bind(row.run.partitionID)
                        b.bind(row.run.segment)
                    }
                }
                rows.removeAll(keepingCapacity: true)
            }
            try LedgerRunCursor.merge(db, try ledgerRuns(db, sinkID: sinkID)) { key, run in
                rows.append((key, run))
                if rows.count == Self.keysPerStatement { try flush() }
            }
            try flush()
        }
        try db.execute(sql: "DELETE FROM ledger_run_blocks; DELETE FROM ledger_runs")
    }

    /// Whether a sink has more than `ledgerLevels.maxRuns` runs.
    func ledgerRunsPastLimit(_ db: Database) throws -> Bool {
        (try Int.fetchOne(db, sql: "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM ledger_runs GROUP BY sink_id)") ?? 0) > ledgerLevels.maxRuns
    }
}
