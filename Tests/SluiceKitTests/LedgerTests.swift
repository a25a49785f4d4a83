import Foundation
import GRDB
import GRDBSQLite
import SluiceCore
@testable import SluiceSQLite
import SluiceTestSupport
import Testing

/// The compact ledger of migration v8: sink and partition ids, record keys as 16 bytes
/// (other keys as text), and the stream buffer's moves into it through the store's
/// write path.
@Suite struct LedgerTests {
    /// A key as sluice makes them: 32 lowercase hex digits.
    static func hexKey(_ n: Int) -> String {
        var rng = SplitMix64(seed: UInt64(n) &+ 1)
        return String(format: "%016llx%016llx", rng.next(), rng.next())
    }

    /// Keys that are not sluice's own must still work: stored as text, never equal to a
    /// 16-byte key (an upper-case twin of a stored hex key is another key).
    static let otherKeys = ["k0", "", String(repeating: "A", count: 32), Self.hexKey(1).uppercased(), Self.hexKey(2) + "0",
                            String(Self.hexKey(3).dropLast()) + "g", "ключ-ü", String(repeating: "f", count: 31)]

    /// The ledger as a plain SQL query on the file reads it (no store API): pipeline,
    /// sink, key (hex of the bytes, or the text), partition; of every table (`ledger`,
    /// since v10 `ledger_recent`, since v11 the runs, their blocks cut into 16-byte keys
    /// here: `runRows`). A row twice (a key in two tables) is an issue.
    static func ledgerRows(_ path: String, unique: Bool = true) throws -> Set<[String]> {
        let db = try DatabaseQueue(path: path)
        let rows = try db.read { db in
            let recent = try db.tableExists("ledger_recent")
            return try GRDB.Row.fetchAll(db, sql: """
                SELECT s.pipeline, s.sink, CASE typeof(l.key) WHEN 'blob' THEN lower(hex(l.key)) ELSE l.key END, p.partition
                FROM (SELECT sink_id, key, partition_id FROM ledger\(recent ? " UNION ALL SELECT sink_id, key, partition_id FROM ledger_recent" : "")) l
                JOIN ledger_sinks s ON s.id = l.sink_id JOIN ledger_partitions p ON p.id = l.partition_id
                """).map { [$0[0], $0[1], $0[2], $0[3]] as [String] }
                + runRows(db).map { [$0.pipeline, $0.sink, $0.key, $0.partition] }
        }
        let keys = Set(rows.map { [$0[0], $0[1], $0[2]] })
        if unique { #expect(keys.count == rows.count, "a key held twice by one sink's ledger") }
        return Set(rows)
    }

    /// The keys of the file's runs (since v11), by plain SQL and the format's definition:
    /// a run's keys are the `keys` blobs of its rows of `ledger_run_blocks` in the order of
    /// `first`, 16 bytes each, ascending; `first` is its block's first key, every block
    /// but the last holds 64 keys, and `ledger_runs.keys` counts them. Each run is checked.
    static func runRows(_ db: Database) throws -> [(pipeline: String, sink: String, key: String, partition: String)] {
        guard try db.tableExists("ledger_runs") else { return [] }
        var rows: [(pipeline: String, sink: String, key: String, partition: String)] = []
        for run in try GRDB.Row.fetchAll(db, sql: """
            SELECT r.id, s.pipeline, s.sink, p.partition, r.keys FROM ledger_runs r
            JOIN ledger_sinks s ON s.id = r.sink_id JOIN ledger_partitions p ON p.id = r.partition_id
            """) {
            let blocks = try GRDB.Row.fetchAll(db, sql: "SELECT first, keys FROM ledger_run_blocks WHERE run = ? ORDER BY first", arguments: [run[0] as Int64])
            var keys: [String] = []
            for (n, block) in blocks.enumerated() {
                let bytes = [UInt8](block[1] as Data), first = [UInt8](block[0] as Data)
                #expect(bytes.count % 16 == 0 && (n == blocks.count - 1 ? bytes.count > 0 : bytes.count == 64 * 16), "a run's block of \(bytes.count) bytes")
                #expect(Array(bytes.prefix(16)) == first, "a block's first key is not its first")
                for start in stride(from: 0, to: bytes.count, by: 16) {
                    keys.append(bytes[start..<min(bytes.count, start + 16)].map { String(format: "%02x", $0) }.joined())
                }
            }
            #expect(keys.count == run[4] as Int && keys == Array(Set(keys)).sorted(), "a run's blocks are not its keys, distinct and in order")
            rows += keys.map { (run[1], run[2], $0, run[3]) }
        }
        #expect(try Int.fetchOne(db, sql: "SELECT count(*) FROM ledger_run_blocks WHERE run NOT IN (SELECT id FROM ledger_runs)") == 0,
                "blocks of no run")
        return rows
    }

    /// `ledger_recent_keys` counts what the file's `ledger_recent` holds (plain SQL).
    static func recentCountsMatch(_ path: String) throws -> Bool {
        let counts = try LedgerLevelsTests.recentCounts(path)
        return counts.counted == counts.held
    }

    static func row(_ key: String, line: Int, partition: String) -> BufferedRow {
        BufferedRow(key: key, partition: partition, position: SourcePosition(file: "in/a.jsonl", line: line, offset: Int64(line * 10)),
                    payload: Array(#"{"k":"\#(key)"}"#.utf8))
    }

    /// A store written before v8 (v7: text rows, some moved in by the BigQuery buffer,
    /// one still buffered) opened by this code: every key is still delivered, to its sink
    /// and partition only; buffered and committed again, none is taken twice.
    @Test func migrationKeepsEveryKey() throws {
        let dir = try TestSupport.scratchDirectory("ledger-v8")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/state.sqlite"
        let bq = "bigquery p.d.t"
        // (pipeline, sink, key, partition), written the way v7 wrote them.
        var rows: [[String]] = []
        for n in 0..<1200 { rows.append(["p", "csv signups", Self.hexKey(n), n % 3 == 0 ? "2026-11-18" : "2026-11-19"]) }
        for (n, key) in Self.otherKeys.enumerated() { rows.append(["p", "csv signups", key, n % 2 == 0 ? "2026-11-18" : "2026-11-19"]) }
        for n in 0..<300 { rows.append(["q", "csv signups", Self.hexKey(n), "2026-11-18"]) } // the same keys, another pipeline
        for n in 500..<520 { rows.append(["p", "csv other", Self.hexKey(n), "2026-11-20"]) }
        let viaBuffer = [Self.hexKey(5000), "bq-text-key"], stillBuffered = Self.hexKey(5001)
        do {
            let old = try SQLiteStateStore(path: path, windowKeyHash: WindowKeys.hash, migratingUpTo: "v7-compact-window-events")
            try old.queue.write { db in
                for r in rows {
                    try db.execute(sql: "INSERT INTO ledger (pipeline, sink, record_key, partition) VALUES (?, ?, ?, ?)", arguments: StatementArguments(r))
                }
                // The BigQuery buffer of v6/v7: rows enter `stream_buffer`, and an
                // acknowledgement moves them into the ledger (its SQL of then).
                for (n, key) in (viaBuffer + [stillBuffered]).enumerated() {
                    try db.execute(sql: """
                        INSERT INTO stream_buffer (pipeline, sink, record_key, partition, file, line, byte_offset, file_id, payload, seq)
                        VALUES ('p', ?, ?, '2026-11-18', 'in/a.jsonl', ?, 0, NULL, X'7B7D', ?)
                        """, arguments: [bq, key, n + 1, n + 1])
                }
                for key in viaBuffer {
                    try db.execute(sql: """
                        INSERT OR IGNORE INTO ledger (pipeline, sink, record_key, partition)
                        SELECT pipeline, sink, record_key, partition FROM stream_buffer WHERE pipeline = ? AND sink = ? AND record_key = ?
                        """, arguments: ["p", bq, key])
                    try db.execute(sql: "DELETE FROM stream_buffer WHERE pipeline = ? AND sink = ? AND record_key = ?", arguments: ["p", bq, key])
                }
            }
        }
        rows += viaBuffer.map { ["p", bq, $0, "2026-11-18"] }

        let state = try SQLiteStateStore(path: path)
        // The file, read with plain SQL, holds exactly the old rows; sluice's keys as 16 bytes.
        #expect(try Self.ledgerRows(path) == Set(rows))
        let (columns, blobs, texts) = try state.queue.read { db in
            (try db.columns(in: "ledger").map(\.name),
             try Int.fetchOne(db, sql: "SELECT count(*) FROM ledger WHERE typeof(key) = 'blob' AND length(key) = 16")!,
             try Int.fetchOne(db, sql: "SELECT count(*) FROM ledger WHERE typeof(key) = 'text'")!)
        }
        #expect(columns == ["sink_id", "key", "partition_id", "segment"])
        #expect(try Self.recentCountsMatch(path))
        // v10 dropped `ledger`'s partition index (a replace's delete scans it).
        #expect(try state.queue.read { db in
            try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name IN ('ledger', 'ledger_recent') AND sql IS NOT NULL ORDER BY name")
        } == ["ledger_recent_by_partition"])
        #expect(texts == Self.otherKeys.count + 1 && blobs == rows.count - texts)

        // Every key deduplicates, for its own pipeline and sink only, with its partition.
        let probe = (0..<1500).map(Self.hexKey) + Self.otherKeys + viaBuffer + [stillBuffered, Self.hexKey(7000), "never"]
        for (pipeline, sink) in [("p", "csv signups"), ("q", "csv signups"), ("p", "csv other"), ("p", bq), ("q", bq), ("p", "csv new")] {
            let mine = rows.filter { $0[0] == pipeline && $0[1] == sink }
            #expect(try state.delivered(pipeline: pipeline, sink: sink, keys: probe, excludingPartition: nil) == Set(mine.map { $0[2] }),
                    "\(pipeline) \(sink)")
            #expect(try state.delivered(pipeline: pipeline, sink: sink, keys: probe, excludingPartition: "2026-11-19")
                    == Set(mine.filter { $0[3] != "2026-11-19" }.map { $0[2] }), "\(pipeline) \(sink) excluding a partition")
        }
        // The key the buffer moved in is not buffered (sent) again; the one still waiting
        // is acknowledged into the ledger now.
        #expect(try state.bufferRows(pipeline: "p", sink: bq, viaBuffer.enumerated().map { Self.row($1, line: $0 + 1, partition: "2026-11-18") }).isEmpty)
        #expect(try state.bufferedRows(pipeline: "p", sink: bq, partition: "2026-11-18", limit: 10).map(\.key) == [stillBuffered])
        try state.acknowledgeBuffered(pipeline: "p", sink: bq, keys: [stillBuffered])
        #expect(try state.delivered(pipeline: "p", sink: bq, keys: probe, excludingPartition: nil) == Set(viaBuffer + [stillBuffered]))
        // A commit of old keys again (two processes delivering one key at once) gives them a
        // second row, in a run or `ledger_recent`, until its merge keeps the older one; new keys are added.
        try state.commit(SegmentCommit(pipeline: "p", partition: "2026-11-21", checkpoints: [],
                                       delivered: ["csv signups": [Self.hexKey(1), "k0", Self.hexKey(7000)]], receipts: [], finishesReplace: false))
        rows += [["p", bq, stillBuffered, "2026-11-18"], ["p", "csv signups", Self.hexKey(7000), "2026-11-21"]]
        #expect(try Self.ledgerRows(path, unique: false)
                == Set(rows + [["p", "csv signups", Self.hexKey(1), "2026-11-21"], ["p", "csv signups", "k0", "2026-11-21"]]))
        try SQLiteStateStore(path: path, windowKeyHash: WindowKeys.hash, migratingUpTo: nil, ledgerLevels: LedgerLevels(recentKeys: 1))
            .commit(SegmentCommit(pipeline: "p", partition: "2026-11-21", checkpoints: [], delivered: ["csv signups": [Self.hexKey(7001)]],
                                  receipts: [], finishesReplace: false))
        rows += [["p", "csv signups", Self.hexKey(7001), "2026-11-21"]]
        #expect(try Self.ledgerRows(path) == Set(rows))
        // A replace of a partition forgets its keys, of every sink of that pipeline only.
        try state.commit(SegmentCommit(pipeline: "p", partition: "2026-11-18", checkpoints: [], delivered: [:], receipts: [], finishesReplace: true))
        rows.removeAll { $0[0] == "p" && $0[3] == "2026-11-18" }
        #expect(try Self.ledgerRows(path) == Set(rows))
        #expect(try state.delivered(pipeline: "p", sink: "csv signups", keys: probe + [Self.hexKey(7001)], excludingPartition: nil)
                == Set(rows.filter { $0[0] == "p" && $0[1] == "csv signups" }.map { $0[2] }))
    }

    /// Keys the stream buffer moves into the ledger are added to the sink's Bloom filter:
    /// `delivered` finds every key the file's ledger holds (a plain SQL query), the filter
    /// is kept (buffer writes go through the store's write path), and `bufferRows` does
    /// not take an acknowledged key again.
    @Test(arguments: ["filter made by delivered", "filter made by bufferRows", "committed keys too", "text keys"])
    func keysAcknowledgedByTheBufferAreDelivered(how: String) throws {
        let dir = try TestSupport.scratchDirectory("ledger-buffer")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/state.sqlite"
        let state = try SQLiteStateStore(path: path)
        let sink = "bigquery p.d.t"
        let keys = how == "text keys" ? (0..<3000).map { "t\($0)" } : (0..<3000).map(Self.hexKey)
        if how == "filter made by delivered" {
            #expect(try state.delivered(pipeline: "p", sink: sink, keys: keys, excludingPartition: nil).isEmpty)
            // Made for a sink the ledger never saw (empty, of every table), before any commit.
            let made = state.ledgerLock.withLock { state.ledgerKnown.filters["p\u{0}" + sink] }
            #expect(made?.covered == 2 && made?.bloom.count == 0)
        }
        let rows = keys[..<2400].enumerated().map { Self.row($1, line: $0 + 1, partition: $0 % 2 == 0 ? "2026-11-18" : "2026-11-19") }
        for batch in stride(from: 0, to: rows.count, by: 800) {
            #expect(try state.bufferRows(pipeline: "p", sink: sink, Array(rows[batch..<batch + 800])) == rows[batch..<batch + 800].map(\.key))
        }
        if how == "committed keys too" {
            try state.commit(SegmentCommit(pipeline: "p", partition: "2026-11-20", checkpoints: [], delivered: [sink: Array(keys[2900...])],
                                           receipts: [], finishesReplace: false))
        }
        // Acknowledged in pieces (some twice, some never); refused ones become dead letters.
        try state.acknowledgeBuffered(pipeline: "p", sink: sink, keys: Array(keys[0..<700]))
        try state.acknowledgeBuffered(pipeline: "p", sink: sink, keys: Array(keys[600..<1800]) + ["not buffered"])
        let runID = try state.beginRun(pipeline: "p", partition: "2026-11-18", mode: .append)
        try state.rejectBuffered(pipeline: "p", sink: sink, runID: runID, partition: "2026-11-18",
                                 [(key: keys[1800], letter: DeadLetter(kind: .warehouse, position: rows[1800].position, message: "refused"))])

        let inFile = try Self.ledgerRows(path).filter { $0[0] == "p" && $0[1] == sink }
        #expect(inFile.count == 1800 + (how == "committed keys too" ? 100 : 0))
        #expect(try state.delivered(pipeline: "p", sink: sink, keys: keys + ["not buffered"], excludingPartition: nil) == Set(inFile.map { $0[2] }))
        #expect(try state.delivered(pipeline: "p", sink: sink, keys: keys, excludingPartition: "2026-11-18")
                == Set(inFile.filter { $0[3] != "2026-11-18" }.map { $0[2] }))
        // Still known: the buffer's writes did not make the store forget its filter.
        let filter = state.ledgerLock.withLock { state.ledgerKnown.filters["p\u{0}" + sink] }
        guard let filter, filter.covered == 2 else {
            Issue.record("the ledger filter was forgotten or covers only some levels: \(String(describing: filter?.covered))")
            return
        }
        // Buffered again: only keys neither in the ledger nor still in the buffer.
        let again = keys.enumerated().map { Self.row($1, line: $0 + 1, partition: "2026-11-18") }
        let delivered = Set(inFile.map { $0[2] }), waiting = Set(keys[1801..<2400])
        let expected = keys.filter { !delivered.contains($0) && !waiting.contains($0) }
        #expect(try state.bufferRows(pipeline: "p", sink: sink, again) == expected)
    }
}

/// The state file's page size: 16 KiB for a file the store creates, read from the file's
/// header (bytes 16-17, big-endian, by SQLite's file format); a file made with another
/// page size keeps it, and the store works on it.
@Suite struct StateFilePageTests {
    static func headerPageSize(_ path: String) throws -> Int {
        let header = try FileHandle(forReadingFrom: URL(fileURLWithPath: path)).read(upToCount: 100) ?? Data()
        let size = Int(header[16]) << 8 | Int(header[17])
        return size == 1 ? 65_536 : size
    }

    @Test(arguments: [nil, 4096, 1024] as [Int?])
    func newFilesGet16KiBPagesOldOnesKeepTheirs(existing: Int?) throws {
        let dir = try TestSupport.scratchDirectory("page-size")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/state.sqlite"
        if let existing {
            // A file made before this change (or by hand): plain SQLite, WAL, its own page size.
            let db = try DatabaseQueue(path: path)
            try db.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA page_size = \(existing)")
                try db.execute(sql: "PRAGMA journal_mode = WAL")
                try db.execute(sql: "CREATE TABLE before_sluice (x)")
            }
        }
        let keys = (0..<2000).map(LedgerTests.hexKey)
        do {
            let store = try SQLiteStateStore(path: path)
            try store.commit(SegmentCommit(pipeline: "p", partition: "2026-11-18", checkpoints: [], delivered: ["csv out": keys],
                                           receipts: [], finishesReplace: false))
        }
        #expect(try Self.headerPageSize(path) == (existing ?? 16_384))
        let reopened = try SQLiteStateStore(path: path)
        #expect(try reopened.delivered(pipeline: "p", sink: "csv out", keys: keys + ["not delivered"], excludingPartition: nil) == Set(keys))
        #expect(Set(try LedgerTests.ledgerRows(path).map { $0[2] }) == Set(keys))
    }
}

/// The ledger in two levels (migration v10): `ledger_recent` takes each commit's keys and
/// is merged into `ledger` when it holds more than `recentKeys`. Checked against the file
/// read with plain SQL and against a model of what was committed, after every commit, with
/// small levels (so that a few thousand keys pass through many merges).
@Suite struct LedgerLevelsTests {
    /// Keys of the recent level, by plain SQL: rows of `ledger_recent` and keys of the runs
    /// (16 bytes each).
    static func recentHeld(_ path: String) throws -> Int {
        try DatabaseQueue(path: path).read { db in
            try Int.fetchOne(db, sql: "SELECT (SELECT count(*) FROM ledger_recent) + (SELECT coalesce(sum(length(keys) / 16), 0) FROM ledger_run_blocks)")!
        }
    }

    /// Plain SQL: `ledger_recent_keys` counts what `ledger_recent` holds per sink.
    static func recentCounts(_ path: String) throws -> (counted: [[Int]], held: [[Int]]) {
        let db = try DatabaseQueue(path: path)
        return try db.read { db in
            (try GRDB.Row.fetchAll(db, sql: "SELECT sink_id, keys FROM ledger_recent_keys WHERE keys != 0 ORDER BY 1").map { [$0[0], $0[1]] },
             try GRDB.Row.fetchAll(db, sql: "SELECT sink_id, count(*) FROM ledger_recent GROUP BY 1 ORDER BY 1").map { [$0[0], $0[1]] })
        }
    }

    /// Every key of a sink in one level, by plain SQL (hex of the bytes, or the text):
    /// `ledger`, or `ledger_recent` with the runs.
    static func keys(_ path: String, sink: String, table: String) throws -> [String] {
        let db = try DatabaseQueue(path: path)
        return try db.read { db in
            try String.fetchAll(db, sql: """
                SELECT CASE typeof(l.key) WHEN 'blob' THEN lower(hex(l.key)) ELSE l.key END
                FROM \(table) l JOIN ledger_sinks s ON s.id = l.sink_id WHERE s.pipeline = 'p' AND s.sink = ?
                """, arguments: [sink])
                + (table == "ledger_recent" ? LedgerTests.runRows(db).filter { $0.pipeline == "p" && $0.sink == sink }.map(\.key) : [])
        }
    }

    static func store(_ path: String, _ levels: LedgerLevels) throws -> SQLiteStateStore {
        try SQLiteStateStore(path: path, windowKeyHash: WindowKeys.hash, migratingUpTo: nil, ledgerLevels: levels)
    }

    static func key(_ n: Int) -> String { n % 13 == 0 ? "text-\(n)" : LedgerTests.hexKey(n) }

    /// (`recentKeys`, `filterKeys`): merges every few commits or every commit; a filter of
    /// both tables, of `ledger_recent` only once the history outgrows it, or none.
    @Test(arguments: [(300, 100_000), (300, 400), (150, 0), (40, 40)])
    func keysAreFoundBeforeAndAfterEveryMerge(recentKeys: Int, filterKeys: Int) throws {
        let dir = try TestSupport.scratchDirectory("ledger-levels")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/state.sqlite"
        let levels = LedgerLevels(recentKeys: recentKeys, filterKeys: filterKeys)
        let state = try Self.store(path, levels)
        let sinks = ["csv a", "csv b"]
        var model: Set<[String]> = [] // (pipeline, sink, key, partition), as LedgerTests.ledgerRows reads the file
        var next = 0
        var merges = 0
        for segment in 0..<40 {
            let partition = "2026-11-\(10 + segment / 8)"
            for sink in sinks {
                // 20-70 keys a segment, every 13th not sluice's own; sink b every other segment.
                if sink == "csv b", segment % 2 == 1 { continue }
                let keys = (next..<next + 20 + (segment * 37) % 51).map(Self.key)
                next += keys.count
                // What the store says is delivered is not delivered again (as the sinks do).
                #expect(try state.delivered(pipeline: "p", sink: sink, keys: keys, excludingPartition: nil).isEmpty)
                let before = try Self.recentHeld(path)
                try state.commit(SegmentCommit(pipeline: "p", partition: partition, checkpoints: [], delivered: [sink: keys],
                                               receipts: [], finishesReplace: false))
                let after = try Self.recentHeld(path)
                // Merged exactly when the recent keys passed the limit; then none are left.
                if before + keys.count > recentKeys { #expect(after == 0); merges += 1 } else { #expect(after == before + keys.count) }
                for key in keys { model.insert(["p", sink, key, partition]) }
            }
            #expect(try LedgerTests.ledgerRows(path) == model)
            #expect(try LedgerTests.recentCountsMatch(path))
            // The filter holds every key of the tables it covers (read from the file), and at
            // most `filterKeys` keys: memory does not grow with the history.
            for sink in sinks {
                guard let filter = state.ledgerLock.withLock({ state.ledgerKnown.filters["p\u{0}" + sink] }) else { continue }
                #expect(filter.bloom.count <= filterKeys)
                for table in SQLiteStateStore.ledgerTables.prefix(filter.covered) {
                    #expect(try Self.keys(path, sink: sink, table: table).allSatisfy { filter.bloom.mayContain($0) }, "\(table)")
                }
            }
            // Lookups: this store (its filters kept through its own writes) and a new one.
            if segment % 5 == 4 {
                let probe = (0..<next + 50).map(Self.key)
                for store in [state, try Self.store(path, levels)] {
                    for sink in sinks {
                        let mine = model.filter { $0[1] == sink }
                        #expect(try store.delivered(pipeline: "p", sink: sink, keys: probe, excludingPartition: nil) == Set(mine.map { $0[2] }))
                        #expect(try store.delivered(pipeline: "p", sink: sink, keys: probe, excludingPartition: partition)
                                == Set(mine.filter { $0[3] != partition }.map { $0[2] }))
                    }
                }
            }
        }
        #expect(merges >= 5)
        // A replace of a partition forgets its keys in both tables, and the counts follow.
        let replaced = "2026-11-14", again = [LedgerTests.hexKey(1_000_000)]
        #expect(try !Self.keys(path, sink: "csv a", table: "ledger").isEmpty)
        try state.commit(SegmentCommit(pipeline: "p", partition: replaced, checkpoints: [], delivered: ["csv a": again],
                                       receipts: [], finishesReplace: true))
        model = model.filter { $0[3] != replaced }.union([["p", "csv a", again[0], replaced]])
        #expect(try LedgerTests.ledgerRows(path) == model)
        #expect(try LedgerTests.recentCountsMatch(path))
        let probe = (0..<next).map(Self.key) + again
        for store in [state, try Self.store(path, levels)] {
            #expect(try store.delivered(pipeline: "p", sink: "csv a", keys: probe, excludingPartition: nil)
                    == Set(model.filter { $0[1] == "csv a" }.map { $0[2] }))
        }
    }

    /// A merge that fails (here: a trigger, made by another connection, that refuses rows
    /// of `ledger`; a full disk in life) after a commit does not fail the commit, which is
    /// kept: its checkpoint and keys are there, each key is found, and the failure is a
    /// warning, given once, without any key. The next commit past the limit merges.
    @Test func aFailedMergeLeavesTheCommitAndIsTriedAgain() throws {
        let dir = try TestSupport.scratchDirectory("ledger-merge-fails")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/state.sqlite"
        let store = try Self.store(path, LedgerLevels(recentKeys: 100, filterKeys: 1_000))
        let keys = (0..<150).map(LedgerTests.hexKey), more = (150..<160).map(LedgerTests.hexKey)
        try DatabaseQueue(path: path).write { db in
            try db.execute(sql: "CREATE TRIGGER refuse BEFORE INSERT ON ledger BEGIN SELECT RAISE(FAIL, 'refused by the test'); END")
        }
        let checkpoint = SourceCheckpoint(fileID: "f", path: "in/a.jsonl", offset: 100, line: 7, complete: false)
        try store.commit(SegmentCommit(pipeline: "p", partition: "2026-11-18", checkpoints: [checkpoint], delivered: ["csv": keys],
                                       receipts: [], finishesReplace: false))
        let warnings = store.takeWarnings()
        #expect(warnings.count == 1)
        #expect(warnings.first?.contains("merging the ledger's recent keys") == true)
        #expect(warnings.first?.contains("refused by the test") == true)
        #expect(!keys.contains { key in warnings.contains { $0.contains(key) } })
        #expect(store.takeWarnings().isEmpty)
        #expect(try Self.recentHeld(path) == 150)
        #expect(try store.checkpoints(pipeline: "p", partition: "2026-11-18")["f"]?.offset == 100)
        #expect(try store.delivered(pipeline: "p", sink: "csv", keys: keys + more, excludingPartition: nil) == Set(keys))
        try DatabaseQueue(path: path).write { db in try db.execute(sql: "DROP TRIGGER refuse") }
        try store.commit(SegmentCommit(pipeline: "p", partition: "2026-11-19", checkpoints: [], delivered: ["csv": more], receipts: [],
                                       finishesReplace: false))
        #expect(store.takeWarnings().isEmpty)
        #expect(try Self.recentHeld(path) == 0)
        #expect(try LedgerTests.ledgerRows(path) == Set(keys.map { ["p", "csv", $0, "2026-11-18"] } + more.map { ["p", "csv", $0, "2026-11-19"] }))
    }

    /// A process that committed and died before its merge leaves `ledger_recent` past the
    /// limit: every key is still found, and the next commit (of another process) merges.
    @Test func aMergeLeftUndoneIsDoneByTheNextCommit() throws {
        let dir = try TestSupport.scratchDirectory("ledger-cut")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/state.sqlite"
        let small = LedgerLevels(recentKeys: 100, filterKeys: 1_000)
        let keys = (0..<150).map(LedgerTests.hexKey), more = (150..<160).map(LedgerTests.hexKey)
        // Committed by a store whose limit is larger: not merged.
        try Self.store(path, LedgerLevels(recentKeys: 1_000)).commit(
            SegmentCommit(pipeline: "p", partition: "2026-11-18", checkpoints: [], delivered: ["csv": keys], receipts: [], finishesReplace: false))
        #expect(try Self.recentHeld(path) == 150)
        let later = try Self.store(path, small)
        #expect(try later.delivered(pipeline: "p", sink: "csv", keys: keys + more, excludingPartition: nil) == Set(keys))
        try later.commit(SegmentCommit(pipeline: "p", partition: "2026-11-19", checkpoints: [], delivered: ["csv": more], receipts: [], finishesReplace: false))
        #expect(try Self.recentHeld(path) == 0)
        #expect(try Self.keys(path, sink: "csv", table: "ledger").count == 160)
        #expect(try LedgerTests.ledgerRows(path) == Set(keys.map { ["p", "csv", $0, "2026-11-18"] } + more.map { ["p", "csv", $0, "2026-11-19"] }))
        #expect(try Self.store(path, small).delivered(pipeline: "p", sink: "csv", keys: keys + more + ["x"], excludingPartition: nil) == Set(keys + more))
    }
}

/// The recent keys as sorted runs (migration v11): each commit's keys of sluice's own are
/// one run; a partition's runs of one size class are merged by `LedgerRuns.fanIn`, and a
/// sink past `maxRuns` runs is merged into `ledger`. Checked against the file read with
/// plain SQL (`LedgerTests.runRows` cuts each run into its keys and checks its order and
/// fence) and against a model of what was committed.
@Suite struct LedgerRunsTests {
    static func commit(_ state: SQLiteStateStore, _ sink: String, _ partition: String, _ keys: [String]) throws {
        try state.commit(SegmentCommit(pipeline: "p", partition: partition, checkpoints: [], delivered: [sink: keys], receipts: [], finishesReplace: false))
    }

    /// Runs per (sink, partition) and size class, by plain SQL.
    static func runsByClass(_ path: String) throws -> [[Int64]: Int] {
        let rows = try DatabaseQueue(path: path).read { db in
            try GRDB.Row.fetchAll(db, sql: "SELECT r.sink_id, r.partition_id, sum(length(b.keys) / 16) FROM ledger_runs r JOIN ledger_run_blocks b ON b.run = r.id GROUP BY r.id")
        }
        var counts: [[Int64]: Int] = [:]
        for row in rows {
            let keys: Int64 = row[2]
            counts[[row[0], row[1], Int64((63 - keys.leadingZeroBitCount) / 4)], default: 0] += 1
        }
        return counts
    }

    /// (partitions, maxRuns): one day streamed in small commits (runs merged by size), or
    /// many small days (the sink merged into `ledger` past a few runs).
    @Test(arguments: [(1, 64), (7, 5)])
    func smallCommitsKeepRunsBounded(partitions: Int, maxRuns: Int) throws {
        let dir = try TestSupport.scratchDirectory("ledger-runs")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/state.sqlite"
        let levels = LedgerLevels(recentKeys: 1 << 20, filterKeys: 1 << 20, maxRuns: maxRuns)
        let state = try LedgerLevelsTests.store(path, levels)
        var model: Set<[String]> = []
        var next = 0
        var largest = 0
        for commit in 0..<70 {
            let partition = "2026-11-\(10 + commit % partitions)"
            let keys = (next..<next + 3 + (commit * 17) % 23).map(LedgerLevelsTests.key)
            next += keys.count
            try Self.commit(state, "csv a", partition, keys)
            for key in keys { model.insert(["p", "csv a", key, partition]) }
            #expect(try LedgerTests.ledgerRows(path) == model)
            let byClass = try Self.runsByClass(path)
            #expect(byClass.values.allSatisfy { $0 < LedgerRuns.fanIn }, "a size class of a partition with \(LedgerRuns.fanIn) runs")
            #expect(byClass.values.reduce(0, +) <= maxRuns)
            largest = max(largest, try DatabaseQueue(path: path).read { db in try Int.fetchOne(db, sql: "SELECT coalesce(max(keys), 0) FROM ledger_runs")! })
            if commit % 9 == 8 {
                let probe = (0..<next + 40).map(LedgerLevelsTests.key)
                for store in [state, try LedgerLevelsTests.store(path, levels)] {
                    #expect(try store.delivered(pipeline: "p", sink: "csv a", keys: probe, excludingPartition: nil) == Set(model.map { $0[2] }))
                    #expect(try store.delivered(pipeline: "p", sink: "csv a", keys: probe, excludingPartition: partition)
                            == Set(model.filter { $0[3] != partition }.map { $0[2] }))
                }
            }
        }
        let inLedger = try LedgerLevelsTests.keys(path, sink: "csv a", table: "ledger").count
        if partitions == 1 {
            // Merged by size: a run larger than any commit's 25 keys, none moved to `ledger`.
            #expect(largest > 25 && inLedger == 0)
        } else {
            #expect(inLedger > 0)
        }
    }

    /// A run's filter holds every key it was given, and few others (8 bits a key: ~3%),
    /// whatever the run's size (its blocks are as many as the keys take).
    @Test(arguments: [1, 7, 64, 65, 1_000, 100_000])
    func runFiltersHoldTheirKeysAndFewOthers(keys: Int) {
        var rng = SplitMix64(seed: UInt64(keys))
        let inserted = (0..<keys).map { _ in RecordKeyBits(high: rng.next(), low: rng.next()) }
        let strangers = (0..<20_000).map { _ in RecordKeyBits(high: rng.next(), low: rng.next()) }
        var filter = RunFilter(keys: keys)
        for key in inserted { filter.insert(key) }
        #expect(inserted.allSatisfy { filter.mayContain($0) })
        let passed = strangers.filter { filter.mayContain($0) }.count
        #expect(passed < strangers.count * 5 / 100, "\(passed) of \(strangers.count) strangers pass")
    }

    /// A merge of more keys than a few statements take (500 keys each, the full statement
    /// made once and used again, then a shorter last one): every key lands in `ledger` once,
    /// under its partition (read back by plain SQL), and a new store finds exactly them.
    @Test(arguments: [(700, 2), (1_001, 3), (250, 9)])
    func aMergeOfManyStatementsMovesEveryKey(keysPerCommit: Int, commits: Int) throws {
        let dir = try TestSupport.scratchDirectory("ledger-run-merge")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/state.sqlite"
        let total = keysPerCommit * commits
        let state = try LedgerLevelsTests.store(path, LedgerLevels(recentKeys: total - 1))
        var model: Set<[String]> = []
        for c in 0..<commits {
            let partition = "2026-11-\(10 + c)"
            let keys = (c * keysPerCommit..<(c + 1) * keysPerCommit).map(LedgerTests.hexKey)
            try Self.commit(state, "csv", partition, keys)
            for key in keys { model.insert(["p", "csv", key, partition]) }
        }
        // The last commit passed the limit: the runs were merged into `ledger`.
        #expect(try LedgerLevelsTests.recentHeld(path) == 0)
        #expect(try LedgerLevelsTests.keys(path, sink: "csv", table: "ledger").count == total)
        #expect(try LedgerTests.ledgerRows(path) == model)
        let probe = (0..<total + 100).map(LedgerTests.hexKey)
        let fresh = try LedgerLevelsTests.store(path, LedgerLevels(filterKeys: 0)) // every key asked of `ledger`
        #expect(try fresh.delivered(pipeline: "p", sink: "csv", keys: probe, excludingPartition: nil) == Set(model.map { $0[2] }))
    }

    /// `Database.marks`: `n` groups of placeholders, comma-separated, as SQLite counts them
    /// (`sqlite3_bind_parameter_count` of a statement made from the text).
    @Test(arguments: [(1, "?"), (2, "?"), (500, "?"), (3, "(?, ?)"), (300, "(?, ?, ?, ?, ?)"), (0, "?")])
    func marksAreAsManyParametersAsAsked(n: Int, group: String) throws {
        let text = Database.marks(n, group)
        #expect(text == Array(repeating: group, count: n).joined(separator: ","))
        guard n > 0 else { return }
        let perGroup = group.filter { $0 == "?" }.count
        let db = try DatabaseQueue()
        let count = try db.read { db in
            let sql = group == "?" ? "SELECT 1 WHERE 1 IN (\(text))" : "VALUES \(text)"
            return Int(sqlite3_bind_parameter_count(try db.makeStatement(sql: sql).sqliteStatement))
        }
        #expect(count == n * perGroup)
    }

    /// One large run: every key is found, and keys beside them (one bit above or below,
    /// below the first, above the last) are not; through the fence's blocks and their edges.
    @Test func lookupsInALargeRunFindExactlyItsKeys() throws {
        let dir = try TestSupport.scratchDirectory("ledger-run-lookups")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/state.sqlite"
        let keys = (0..<10_000).map(LedgerTests.hexKey)
        try Self.commit(SQLiteStateStore(path: path), "csv", "2026-11-18", keys)
        let sorted = keys.sorted()
        func shifted(_ key: String, _ by: Int) -> String {
            let bits = RecordKeyBits(key)!
            let low = by > 0 ? bits.low &+ UInt64(by) : bits.low &- UInt64(-by)
            return String(format: "%016llx%016llx", bits.high, low)
        }
        let all = Set(keys)
        let beside = keys.flatMap { [shifted($0, 1), shifted($0, -1)] }.filter { !all.contains($0) }
        let edges = [String(repeating: "0", count: 32), String(repeating: "f", count: 32), shifted(sorted[0], -1), shifted(sorted.last!, 1)]
            + stride(from: 0, to: sorted.count, by: 64).flatMap { [sorted[$0], shifted(sorted[$0], -1)] }
        // A new store reads the run's fence; without a filter every key is asked of the run,
        // in batches as a sink asks them.
        let state = try LedgerLevelsTests.store(path, LedgerLevels(filterKeys: 0))
        var rng = SplitMix64(seed: 7)
        let probe = (keys + beside + edges).shuffled(using: &rng)
        var found: Set<String> = []
        for start in stride(from: 0, to: probe.count, by: 4096) {
            found.formUnion(try state.delivered(pipeline: "p", sink: "csv", keys: Array(probe[start..<min(probe.count, start + 4096)]), excludingPartition: nil))
        }
        #expect(found == Set(keys))
        #expect(try LedgerTests.ledgerRows(path).count == keys.count)
    }
}
