import Foundation
import GRDB
import SluiceCore
import SluiceFiles
import SluiceKit
import SluiceSQLite
import SluiceTestSupport
import Testing

/// The `csv` and `pg_dump` extract stages in a pipeline: values as PostgreSQL and RFC
/// 4180 define them, bad rows as dead letters with their line, files read once.
@Suite(.serialized) struct TableFileTests {
    static func project(input name: String, content: Data, extract: String) throws -> String {
        let root = try TestSupport.scratchDirectory("tables")
        for dir in ["Pipelines", "Schemas", "in"] { try FileManager.default.createDirectory(atPath: root + "/" + dir, withIntermediateDirectories: true) }
        try content.write(to: URL(fileURLWithPath: root + "/in/" + name))
        // Files are read once they have been quiet for a while (a dump being written waits).
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -120)], ofItemAtPath: root + "/in/" + name)
        try #"[{"name": "id", "type": "INTEGER", "mode": "REQUIRED"}, {"name": "note", "type": "STRING"}, {"name": "record_key", "type": "STRING"}]"#
            .write(toFile: root + "/Schemas/t.json", atomically: true, encoding: .utf8)
        try """
            name: t
            key: [id]
            extract: \(extract)
            load:
              - {kind: csv, path: "out/{date}.csv", schema: Schemas/t.json}

            """.write(toFile: root + "/Pipelines/t.yml", atomically: true, encoding: .utf8)
        return root
    }

    static func run(_ root: String) async throws -> ([[String?]], [StoredDeadLetter]) {
        let console = CapturingConsole()
        let status = await Commands.run(pipeline: root + "/Pipelines/t.yml", partitions: ["2026-11-18"], target: nil, projectRoot: root, console: console)
        #expect(status == 0, "\(console.errors)")
        let rows = CSVFormat().parse([UInt8](try Data(contentsOf: URL(fileURLWithPath: root + "/out/2026-11-18.csv")))).dropFirst()
        let letters = try SQLiteStateStore(path: root + "/.sluice/state.sqlite").deadLetters(pipeline: "t")
        return (rows.map { Array($0.prefix(2)) }, letters)
    }

    @Test func pgDumpCopyBlock() async throws {
        let dump = """
            --
            -- PostgreSQL database dump
            --
            SET client_encoding = 'UTF8';
            CREATE TABLE public.other (id integer);
            COPY public.other (id) FROM stdin;
            99
            \\.
            CREATE TABLE public.users (id integer, note text);
            COPY public.users (id, note) FROM stdin;
            1\ttab\\there
            2\t\\N
            3\t
            4\tline\\nbreak and \\\\ backslash and \\101 octal
            oops
            5\tİstanbul 🎉
            \\.

            """
        let root = try Self.project(input: "db.sql", content: Data(dump.utf8), extract: #"{kind: pg_dump, path: "in/db.sql", table: users}"#)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let (rows, letters) = try await Self.run(root)
        #expect(rows == [["1", "tab\there"], ["2", nil], ["3", ""], ["4", "line\nbreak and \\ backslash and A octal"], ["5", "İstanbul 🎉"]])
        #expect(letters.map { "\($0.kind):\($0.line)" } == ["bad_row:15"])
        // Read whole once: a second run reads nothing.
        let (again, _) = try await Self.run(root)
        #expect(again.count == 5)
    }

    @Test func csvWithBOMQuotedNewlinesAndAnotherDelimiter() async throws {
        let csv = Data([0xEF, 0xBB, 0xBF]) + Data("id;note\r\n1;\"multi\r\nline; with \"\"quotes\"\"\"\r\n2;NULL\r\n3;\"\"\r\n4;a;b\r\n5;plain\r\n".utf8)
        let root = try Self.project(input: "t.csv", content: csv, extract: #"{kind: csv, path: "in/*.csv", delimiter: ";", "null": "NULL"}"#)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let (rows, letters) = try await Self.run(root)
        #expect(rows == [["1", "multi\r\nline; with \"quotes\""], ["2", nil], ["3", ""], ["5", "plain"]])
        #expect(letters.map { "\($0.kind):\($0.line)" } == ["bad_row:6"])
    }
}

/// The `lookup` join (seed 000: phone-number validations by Telesign reference id).
@Suite(.serialized) struct LookupTests {
    static let dump = """
        SET client_encoding = 'UTF8';
        COPY public.user_phone_number_validations (user_id, country, telesign_reference_xid) FROM stdin;
        1\tTR\t2557312299CC1304904080F4BE17BFB4
        2\tRU\t262D2B00EB44080491901EFD3A82446B
        3\t\\N\tAAAA
        \\.

        """

    static let references = ["2557312299CC1304904080F4BE17BFB4", "262D2B00EB44080491901EFD3A82446B", "AAAA", "NOPE"]

    static func run(missing: String, dump: String = dump, lines count: Int = 4) async throws -> (rows: [[String?]], filtered: Int, rejected: Int, root: String) {
        let root = try TestSupport.scratchDirectory("lookup")
        for dir in ["Pipelines", "Schemas", "in/2026-11-18", "db"] { try FileManager.default.createDirectory(atPath: root + "/" + dir, withIntermediateDirectories: true) }
        try dump.write(toFile: root + "/db/validations.sql", atomically: true, encoding: .utf8)
        // Line n (from 1) refers to references[(n - 1) % 4].
        let lines = (1...count).map {
            #"{"id":\#($0),"ts":"2026-11-18T10:00:00Z","reference_id":"\#(references[($0 - 1) % references.count])"}"#
        }
        try (lines.joined(separator: "\n") + "\n").write(toFile: root + "/in/2026-11-18/cb.jsonl", atomically: true, encoding: .utf8)
        try #"[{"name": "id", "type": "INTEGER"}, {"name": "country", "type": "STRING"}, {"name": "user_id", "type": "INTEGER"}]"#
            .write(toFile: root + "/Schemas/t.json", atomically: true, encoding: .utf8)
        try """
            name: t
            key: [id]
            extract: {kind: jsonl, path: "in/{date}/*.jsonl", time: ts}
            transform:
              - kind: lookup
                from: {kind: pg_dump, path: db/validations.sql, table: user_phone_number_validations}
                key: telesign_reference_xid
                on: reference_id
                columns: {country: country, user_id: user_id}
                missing: \(missing)
            load:
              - {kind: csv, path: "out/{date}.csv", schema: Schemas/t.json}

            """.write(toFile: root + "/Pipelines/t.yml", atomically: true, encoding: .utf8)
        let console = CapturingConsole()
        let status = await Commands.run(pipeline: root + "/Pipelines/t.yml", partitions: ["2026-11-18"], target: nil, projectRoot: root, console: console)
        #expect(status == 0, "\(console.errors)")
        let rows = CSVFormat().parse([UInt8](try Data(contentsOf: URL(fileURLWithPath: root + "/out/2026-11-18.csv")))).dropFirst()
        let summary = console.output.last ?? ""
        let n = EndToEndTests.numbers(in: summary)
        return (Array(rows), n["filtered"] ?? -1, n["rejected"] ?? -1, root)
    }

    @Test(arguments: [("keep", 4, 0, 0), ("drop", 3, 1, 0), ("dead_letter", 3, 0, 1)])
    func joinsByKey(missing: String, rows: Int, filtered: Int, rejected: Int) async throws {
        let r = try await Self.run(missing: missing)
        defer { try? FileManager.default.removeItem(atPath: r.root) }
        #expect(r.rows.count == rows)
        #expect(r.filtered == filtered)
        #expect(r.rejected == rejected)
        #expect(r.rows[0] == ["1", "TR", "1"])
        #expect(r.rows[1] == ["2", "RU", "2"])
        #expect(r.rows[2] == ["3", nil, "3"])
        if missing == "keep" { #expect(r.rows[3] == ["4", nil, nil]) }
    }

    /// Several batches (2,500 lines: 1,024 records a batch), every fourth line without a
    /// match: the rows keep the input's order, each with its own match, and every line
    /// without one is kept, dropped or a dead letter.
    @Test(arguments: [("keep", 2500, 0, 0), ("drop", 1875, 625, 0), ("dead_letter", 1875, 0, 625)])
    func joinsByKeyAcrossBatches(missing: String, rows: Int, filtered: Int, rejected: Int) async throws {
        let r = try await Self.run(missing: missing, lines: 2500)
        defer { try? FileManager.default.removeItem(atPath: r.root) }
        #expect(r.rows.count == rows)
        #expect(r.filtered == filtered)
        #expect(r.rejected == rejected)
        let want: [[String?]] = (1...2500).compactMap { n in
            switch (n - 1) % 4 {
            case 0: ["\(n)", "TR", "1"]
            case 1: ["\(n)", "RU", "2"]
            case 2: ["\(n)", nil, "3"]
            default: missing == "keep" ? ["\(n)", nil, nil] : nil
            }
        }
        #expect(r.rows == want)
    }
}

/// The `sqlite` extract stage: a table read in pages, or a query.
@Suite struct SQLiteExtractTests {
    @Test(arguments: [#"table: "phone validations""#, #"query: "SELECT * FROM \"phone validations\" WHERE id % 2 = 0""#])
    func readsEveryRowOnce(source: String) async throws {
        let root = try TestSupport.scratchDirectory("sqlite")
        defer { try? FileManager.default.removeItem(atPath: root) }
        for dir in ["Pipelines", "Schemas"] { try FileManager.default.createDirectory(atPath: root + "/" + dir, withIntermediateDirectories: true) }
        let db = try DatabaseQueue(path: root + "/db.sqlite")
        try await db.write { db in
            try db.execute(sql: #"CREATE TABLE "phone validations" (id INTEGER PRIMARY KEY, country TEXT, score REAL, raw BLOB)"#)
            for i in 1...5000 {
                try db.execute(sql: #"INSERT INTO "phone validations" VALUES (?, ?, ?, ?)"#,
                               arguments: [i, i % 7 == 0 ? nil : "C\(i % 5)", Double(i) / 4, Data([UInt8(i % 256)])])
            }
        }
        try #"[{"name": "id", "type": "INTEGER"}, {"name": "country", "type": "STRING"}, {"name": "score", "type": "FLOAT"}, {"name": "raw", "type": "BYTES"}]"#
            .write(toFile: root + "/Schemas/t.json", atomically: true, encoding: .utf8)
        try """
            name: t
            key: [id]
            extract: {kind: sqlite, path: db.sqlite, \(source)}
            load:
              - {kind: csv, path: "out/{date}.csv", schema: Schemas/t.json}

            """.write(toFile: root + "/Pipelines/t.yml", atomically: true, encoding: .utf8)
        let console = CapturingConsole()
        #expect(await Commands.run(pipeline: root + "/Pipelines/t.yml", partitions: ["2026-11-18"], target: nil, projectRoot: root, console: console) == 0,
                "\(console.errors)")
        let rows = CSVFormat().parse([UInt8](try Data(contentsOf: URL(fileURLWithPath: root + "/out/2026-11-18.csv")))).dropFirst()
        let even = source.hasPrefix("query")
        #expect(rows.count == (even ? 2500 : 5000))
        #expect(Set(rows.map { $0[0]! }).count == rows.count)
        let seven = rows.first { $0[0] == "7" }
        if !even { #expect(seven == ["7", nil, "1.75", Data([7]).base64EncodedString()]) }
        #expect(rows.first { $0[0] == "10" } == ["10", "C0", "2.5", Data([10]).base64EncodedString()])
    }
}
