import Foundation
import Logging
import SluiceCore
import SluiceSQLite
import SluiceTestSupport
import Testing

/// The local warehouse's inserts, many rows a statement with each value bound through
/// SQLite's C API, from the rows' values or from their encoding on the worker
/// (`SQLiteRowEncoder`): what a table holds afterwards, read by Python's `sqlite3` (each
/// column's `typeof` and `quote`), against the type mapping of docs/types.md worked out by
/// hand; and the counts of new rows when keys repeat within a statement, across
/// statements of one write, and across writes.
@Suite struct WarehouseTableTests {
    static let schema = TableSchema(fields: [
        SchemaField(name: "record_key", type: .string, mode: .required),
        SchemaField(name: "n", type: .integer),
        SchemaField(name: "f", type: .float),
        SchemaField(name: "b", type: .boolean),
        SchemaField(name: "raw", type: .bytes),
        SchemaField(name: "tags", type: .string, mode: .repeated),
        SchemaField(name: "num", type: .numeric),
        SchemaField(name: "s", type: .string),
    ])

    /// Row `i` under key `key`: every kind of value, nulls in some rows.
    static func row(_ key: String, _ i: Int) -> Row {
        Row(key: key, position: SourcePosition(file: "f", line: i + 1), values: [
            .string(key),
            .int(Int64(i) - 70),
            i % 5 == 0 ? .null : .double(Double(i) + 0.5),
            .bool(i % 2 == 0),
            i % 7 == 0 ? .null : .string("AAEC/w=="), // the bytes 00 01 02 FF
            .array([.string("a\(i)"), .string("é\"")]),
            .largeInteger("1234567890123456789012345678\(i % 10)"),
            i % 3 == 0 ? .string("") : .string(String(repeating: "ü", count: i * 20)), // up to 5,960 bytes
        ])
    }

    /// `typeof` and `quote` of each column of row `i`, as SQLite reports them.
    static func expected(_ key: String, _ i: Int) -> [[String]] {
        let s = i % 3 == 0 ? "" : String(repeating: "ü", count: i * 20)
        return [
            ["text", "'\(key)'"],
            ["integer", "\(i - 70)"],
            i % 5 == 0 ? ["null", "NULL"] : ["real", "\(Double(i) + 0.5)"],
            ["integer", i % 2 == 0 ? "1" : "0"],
            i % 7 == 0 ? ["null", "NULL"] : ["blob", "X'000102FF'"],
            ["text", "'[\"a\(i)\",\"é\\\"\"]'"],
            ["text", "'1234567890123456789012345678\(i % 10)'"],
            ["text", "'\(s)'"],
            ["text", "'2026-11-18'"],
            ["integer", "1"], // the session's one commit: the first in `_sluice_commits`
        ]
    }

    /// Writes `rows` as the runner does: their values, or (`encoded`) their values
    /// encoded by the session's encoder and the rows without values.
    static func write(_ rows: [Row], to session: any LoadSession, encoded: Bool) async throws -> Int {
        guard encoded else { return try await session.write(rows) }
        let encoder = try #require(session.encoder)
        let bare = rows.map { Row(key: $0.key, position: $0.position, values: []) }
        return try await session.write(bare, encoded: encoder.encode(rows))
    }

    @Test(arguments: [false, true])
    func rowsReadBackAsBoundAndRepeatedKeysAreNotInsertedTwice(encoded: Bool) async throws {
        let dir = try TestSupport.scratchDirectory("warehouse")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let context = RunContext(projectRoot: dir, outputRoot: dir, pipeline: "p", partition: Partition("2026-11-18", granularity: .day)!,
                                 logger: Logger(label: "test"))
        let loader = SQLiteTableLoader(schema: Self.schema, table: "t", databasePath: "w.sqlite", keyColumn: "record_key")
        let session = try await loader.open(context)
        // 150 rows (several statements); row 6 repeats row 5's key (one statement), row 140
        // row 10's (another statement of the same write).
        let keys = (0..<150).map { i in i == 6 ? "k005" : i == 140 ? "k010" : String(format: "k%03d", i) }
        #expect(try await Self.write(keys.enumerated().map { Self.row($1, $0) }, to: session, encoded: encoded) == 148)
        // Keys 6 and 130-199: 130-149 are there already, but for 140.
        let again = ([6] + Array(130..<200)).map { String(format: "k%03d", $0) }
        #expect(try await Self.write(again.map { Self.row($0, Int($0.dropFirst())!) }, to: session, encoded: encoded) == 52)
        _ = try await session.commitSegment(final: true)

        let dump = """
            import json, sqlite3, sys
            c = sqlite3.connect('file:' + sys.argv[1] + '?mode=ro', uri=True)
            cols = [r[1] for r in c.execute('PRAGMA table_info(t)')]
            sel = ', '.join('typeof("%s"), quote("%s")' % (n, n) for n in cols)
            rows = [[[r[2 * k], r[2 * k + 1]] for k in range(len(cols))] for r in c.execute('SELECT ' + sel + ' FROM t ORDER BY record_key')]
            print(json.dumps({'cols': cols, 'rows': rows}))
            """
        let result = try TestSupport.run(TestSupport.python, ["-c", dump, dir + "/w.sqlite"])
        #expect(result.status == 0, "\(result.stderr)")
        struct Dump: Decodable {
            var cols: [String]
            var rows: [[[String]]]
        }
        let got = try JSONDecoder().decode(Dump.self, from: result.stdout)
        #expect(got.cols == Self.schema.fields.map(\.name) + [SQLiteTableLoader.partitionColumn, SQLiteTableLoader.commitColumn])
        // Each key once, with the values of its first row: k005 from row 5, k010 from row 10,
        // k006 and k140 from the second write.
        let want = (0..<200).map { i in Self.expected(String(format: "k%03d", i), i) }
        #expect(got.rows.count == want.count)
        for (g, w) in zip(got.rows, want) where g != w {
            Issue.record("row \(w[0][1]) differs: \(g) instead of \(w)")
            break
        }
    }

    /// A state store in `dir` (or `state`), pipeline `p`'s context on 2026-11-18 with it,
    /// and table `t`'s loader.
    static func stateful(_ dir: String, mode: LoadMode = .append, state: SQLiteStateStore? = nil) throws
        -> (state: SQLiteStateStore, context: RunContext, loader: SQLiteTableLoader) {
        let state = try state ?? SQLiteStateStore(path: dir + "/state.sqlite")
        let context = RunContext(projectRoot: dir, outputRoot: dir, pipeline: "p", partition: Partition("2026-11-18", granularity: .day)!,
                                 logger: Logger(label: "test"), mode: mode, state: state)
        return (state, context, SQLiteTableLoader(schema: Self.schema, table: "t", databasePath: "w.sqlite", keyColumn: "record_key"))
    }

    /// A segment's result recorded in the state store, as the runner's commit does.
    static func record(_ result: SegmentResult, of loader: SQLiteTableLoader, in state: SQLiteStateStore, pipeline: String = "p") throws {
        try state.commit(SegmentCommit(pipeline: pipeline, partition: "2026-11-18", checkpoints: [], delivered: [loader.label: result.deliveredKeys],
                                       receipts: result.receipts, finishesReplace: false))
    }

    /// What Python's `sqlite3` prints for a query's first row, its values space-separated.
    static func query(_ sql: String, in path: String) throws -> String {
        let script = "import sqlite3, sys\nprint(*sqlite3.connect('file:' + sys.argv[1] + '?mode=ro', uri=True).execute(sys.argv[2]).fetchone())"
        let result = try TestSupport.run(TestSupport.python, ["-c", script, path, sql])
        #expect(result.status == 0, "\(result.stderr)")
        return String(decoding: result.stdout, as: UTF8.self)
    }

    /// What a crash between a segment's commits leaves, and what the next session of the
    /// pipeline and partition makes of it: `recorded` of the `committed` warehouse commits
    /// (100 rows each) reached the state store (its receipts and ledger) as well. The next
    /// session deletes the others' rows, then writes all the rows again: only those it
    /// deleted, and 50 new ones, are inserted (the ledger keeps the recorded ones out).
    /// The table is read by Python's `sqlite3`.
    @Test(arguments: [(committed: 2, recorded: 1), (committed: 2, recorded: 0), (committed: 3, recorded: 3), (committed: 1, recorded: 0)])
    func segmentsTheStateDidNotRecordAreDeletedByTheNextSession(committed: Int, recorded: Int) async throws {
        let dir = try TestSupport.scratchDirectory("warehouse")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (state, context, loader) = try Self.stateful(dir)
        let keys = (0..<(committed * 100 + 50)).map { String(format: "%032x", $0 * 7919 + 1) }
        let rows = keys.enumerated().map { Self.row($1, $0 % 300) }
        let first = try await loader.open(context)
        for s in 0..<committed {
            #expect(try await first.write(Array(rows[(s * 100)..<(s * 100 + 100)])) == 100)
            let result = try await first.commitSegment(final: s == committed - 1)
            if s < recorded { try Self.record(result, of: loader, in: state) }
        }
        let next = try await loader.open(context)
        #expect(try await next.write(rows) == rows.count - recorded * 100)
        _ = try await next.commitSegment(final: true)

        #expect(try Self.query("SELECT count(*), count(DISTINCT record_key) FROM t", in: dir + "/w.sqlite") == "\(rows.count) \(rows.count)\n")
    }

    /// A table dropped after rows were delivered to it (the state store has a receipt of a
    /// commit the table does not hold) is an error that says how to rebuild it, not a
    /// table that silently lacks them; a replace rebuilds it.
    @Test func aTableDroppedAfterDeliveriesIsAnErrorUntilReplaced() async throws {
        let dir = try TestSupport.scratchDirectory("warehouse")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (state, context, loader) = try Self.stateful(dir)
        let session = try await loader.open(context)
        #expect(try await session.write([Self.row(String(format: "%032x", 1), 1)]) == 1)
        try Self.record(try await session.commitSegment(final: true), of: loader, in: state)
        let drop = "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\nc.execute('DROP TABLE t')\nc.execute('DELETE FROM _sluice_commits')\nc.commit()"
        #expect(try TestSupport.run(TestSupport.python, ["-c", drop, dir + "/w.sqlite"]).status == 0)
        await #expect {
            _ = try await loader.open(context)
        } throws: { error in
            "\(error)".contains("table t does not hold the rows delivered to it for 2026-11-18") && "\(error)".contains("sluice backfill --replace")
        }
        let rebuilt = try await loader.open(try Self.stateful(dir, mode: .replace, state: state).context)
        #expect(try await rebuilt.write([Self.row(String(format: "%032x", 1), 1)]) == 1)
        _ = try await rebuilt.commitSegment(final: true)
    }

    /// A statement that fails halfway (a NOT NULL column without a value; the runner's
    /// coercion keeps such rows out, so only a table changed outside sluice gets one) keeps
    /// none of its rows: inserts are `OR FAIL` (no statement journal), and the failure
    /// rolls the session's whole segment back. The rows of the committed segment stay.
    @Test func aFailingInsertLeavesTheTableAsCommitted() async throws {
        let dir = try TestSupport.scratchDirectory("warehouse")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (state, context, loader) = try Self.stateful(dir)
        let session = try await loader.open(context)
        let rows = (0..<200).map { Self.row(String(format: "%032x", $0 + 1), $0) }
        #expect(try await session.write(Array(rows[..<100])) == 100)
        try Self.record(try await session.commitSegment(final: false), of: loader, in: state)
        var bad = Array(rows[100...])
        bad[30].values[0] = .null // the key column, NOT NULL, in the middle of the first statement
        await #expect(throws: (any Error).self) { _ = try await session.write(bad) }
        await session.rollback()
        #expect(try Self.query("SELECT count(*) FROM t", in: dir + "/w.sqlite") == "100\n")
    }

    /// A table made by an earlier sluice (the record key its primary key, no
    /// `_sluice_commit`) gets the column, and its primary key still ignores the rows it
    /// holds, which the ledger, younger than the table, does not know.
    @Test func aTableFromBeforeCommitsKeepsItsRowsOnce() async throws {
        let dir = try TestSupport.scratchDirectory("warehouse")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let old = """
            import sqlite3, sys
            c = sqlite3.connect(sys.argv[1])
            c.execute('CREATE TABLE t (record_key TEXT NOT NULL, n INTEGER, f REAL, b INTEGER, raw BLOB, tags TEXT, num TEXT, s TEXT, '
                      '_sluice_partition TEXT, PRIMARY KEY (record_key))')
            c.execute("INSERT INTO t (record_key, n, _sluice_partition) VALUES ('k001', 1, '2026-11-17')")
            c.commit()
            """
        #expect(try TestSupport.run(TestSupport.python, ["-c", old, dir + "/w.sqlite"]).status == 0)
        let (_, context, loader) = try Self.stateful(dir)
        let session = try await loader.open(context)
        #expect(try await session.write([Self.row("k001", 1), Self.row("k002", 2)]) == 1)
        _ = try await session.commitSegment(final: true)
        let read = """
            import sqlite3, sys
            c = sqlite3.connect(sys.argv[1])
            print([r[1] for r in c.execute('PRAGMA table_info(t)')][-2:], c.execute('SELECT record_key, _sluice_partition, _sluice_commit FROM t ORDER BY 1').fetchall())
            """
        let result = try TestSupport.run(TestSupport.python, ["-c", read, dir + "/w.sqlite"])
        #expect(String(decoding: result.stdout, as: UTF8.self)
            == "['_sluice_partition', '_sluice_commit'] [('k001', '2026-11-17', None), ('k002', '2026-11-18', 1)]\n", "\(result.stderr)")
    }

    /// A warehouse file sluice creates gets 16 KiB pages (read from the file's header); one
    /// made before with another page size keeps it, and takes the rows.
    @Test(arguments: [nil, 4096] as [Int?])
    func newWarehouseFilesGet16KiBPagesOldOnesKeepTheirs(existing: Int?) async throws {
        let dir = try TestSupport.scratchDirectory("warehouse")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        if let existing {
            let make = "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\nc.execute('PRAGMA page_size = \(existing)')\nc.execute('PRAGMA journal_mode = WAL')\nc.execute('CREATE TABLE other (x)')\nc.commit()"
            #expect(try TestSupport.run(TestSupport.python, ["-c", make, dir + "/w.sqlite"]).status == 0)
        }
        let context = RunContext(projectRoot: dir, outputRoot: dir, pipeline: "p", partition: Partition("2026-11-18", granularity: .day)!,
                                 logger: Logger(label: "test"))
        let loader = SQLiteTableLoader(schema: Self.schema, table: "t", databasePath: "w.sqlite", keyColumn: "record_key")
        let session = try await loader.open(context)
        #expect(try await session.write((0..<300).map { Self.row(String(format: "k%03d", $0), $0) }) == 300)
        _ = try await session.commitSegment(final: true)
        #expect(try StateFilePageTests.headerPageSize(dir + "/w.sqlite") == (existing ?? 16_384))
        #expect(try Self.query("SELECT count(*) FROM t", in: dir + "/w.sqlite") == "300\n")
    }

    /// Two pipelines load one table's partition, one session at a time (a session holds
    /// the file's write lock), and each crashes once between its commits. A session deletes
    /// only its own pipeline's unrecorded commits: the other's, older or newer, stay.
    @Test func aSessionDeletesOnlyItsOwnPipelinesCommits() async throws {
        let dir = try TestSupport.scratchDirectory("warehouse")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (state, p, loader) = try Self.stateful(dir)
        let q = RunContext(projectRoot: dir, outputRoot: dir, pipeline: "q", partition: p.partition, logger: p.logger, state: state)
        func rows(_ from: Int) -> [Row] { (from..<(from + 10)).map { Self.row(String(format: "%032x", $0), $0) } }
        /// One session of `context` writing `rows`, its commit recorded in the state or not.
        func session(_ context: RunContext, _ rows: [Row], recorded: Bool) async throws {
            let s = try await loader.open(context)
            _ = try await s.write(rows)
            let result = try await s.commitSegment(final: true)
            if recorded { try Self.record(result, of: loader, in: state, pipeline: context.pipeline) }
        }
        let commits = "SELECT group_concat(c), sum(n) FROM (SELECT _sluice_commit AS c, count(*) AS n FROM t GROUP BY 1 ORDER BY 1)"
        try await session(p, rows(0), recorded: true) // commit 1
        try await session(q, rows(100), recorded: false) // 2
        try await session(p, rows(10), recorded: false) // 3
        #expect(try Self.query(commits, in: dir + "/w.sqlite") == "1,2,3 30\n")
        try await session(q, rows(100) + rows(110), recorded: true) // 2 deleted, not 3; 4 writes q's rows again
        #expect(try Self.query(commits, in: dir + "/w.sqlite") == "1,3,4 40\n")
        try await session(p, rows(0) + rows(10), recorded: true) // 3 deleted, not 4; 5 writes p's second rows again
        #expect(try Self.query(commits, in: dir + "/w.sqlite") == "1,4,5 40\n")
        // `_sluice_commits` keeps each pipeline's recorded commit and what came after: p's
        // next session lets 1 go (5 is recorded), q's 4 stays; the rows keep their ids.
        try await session(p, [], recorded: true) // 6, no rows
        #expect(try Self.query("SELECT group_concat(id) FROM (SELECT id FROM _sluice_commits ORDER BY 1)", in: dir + "/w.sqlite") == "4,5,6\n")
        #expect(try Self.query(commits, in: dir + "/w.sqlite") == "1,4,5 40\n")
    }

    /// One state store, one pipeline, two warehouse files (two sqlite targets run in turn):
    /// each file's receipts are its own, so neither file's session takes the other's
    /// recorded commits for unrecorded ones (commit ids count within a file).
    @Test func twoFilesKeepTheirOwnReceipts() async throws {
        let dir = try TestSupport.scratchDirectory("warehouse")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (state, context, first) = try Self.stateful(dir)
        let second = SQLiteTableLoader(schema: Self.schema, table: "t", databasePath: "other.sqlite", keyColumn: "record_key")
        func load(_ loader: SQLiteTableLoader, _ from: Int, segments: Int) async throws {
            let session = try await loader.open(context)
            for s in 0..<segments {
                _ = try await session.write((0..<10).map { i in Self.row(String(format: "%032x", from + s * 10 + i), i) })
                try Self.record(try await session.commitSegment(final: s == segments - 1), of: loader, in: state)
            }
        }
        try await load(first, 0, segments: 3) // commits 1-3 of w.sqlite, recorded
        try await load(second, 1000, segments: 1) // commit 1 of other.sqlite, recorded
        try await load(first, 2000, segments: 1) // w.sqlite: nothing to repair; commit 4
        #expect(try Self.query("SELECT group_concat(DISTINCT _sluice_commit), count(*) FROM t", in: dir + "/w.sqlite") == "1,2,3,4 40\n")
        #expect(try Self.query("SELECT count(*) FROM t", in: dir + "/other.sqlite") == "10\n")
    }
}
