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
        #expect(got.cols == Self.schema.fields.map(\.name) + [SQLiteTableLoader.partitionColumn])
        // Each key once, with the values of its first row: k005 from row 5, k010 from row 10,
        // k006 and k140 from the second write.
        let want = (0..<200).map { i in Self.expected(String(format: "k%03d", i), i) }
        #expect(got.rows.count == want.count)
        for (g, w) in zip(got.rows, want) where g != w {
            Issue.record("row \(w[0][1]) differs: \(g) instead of \(w)")
            break
        }
    }
}
