import Foundation
import SluiceDumps
import Testing

// MARK: against a real server

private let setupSQL = #"""
CREATE SCHEMA other;
CREATE TABLE public.decoy (id int PRIMARY KEY, v text);
CREATE TABLE public.hostile (
    id int PRIMARY KEY, t text, n numeric, f float8, b boolean, ts timestamptz, d date,
    arr text[], ia integer[], by bytea, j jsonb, "Mixed Case" text,
    g int GENERATED ALWAYS AS (id * 2) STORED);
CREATE TABLE other."Hostile ""Quoted""" (id int, "x""y" text, "Select" varchar(20));
CREATE TABLE public.empty_t (id int, v text);
CREATE TABLE public.zz_after (id int, v text);
-- A function body with lines that look like the wanted table's data.
CREATE FUNCTION public.trap() RETURNS void LANGUAGE plpgsql AS $body$
BEGIN
INSERT INTO public.hostile VALUES (97, 'from a function');
COPY public.hostile (id) FROM stdin;
END
$body$;
INSERT INTO public.decoy VALUES
 (1, E'COPY public.hostile (id, t) FROM stdin;\n98\tfake\n\\.\n'),
 (2, E'x\nINSERT INTO public.hostile VALUES (99, ''fake'');\n'),
 (3, E'\\.'), (4, E'it''s; a ) trap\n\\.\nCOPY public.hostile (id) FROM stdin;');
INSERT INTO public.hostile (id, t, n, f, b, ts, d, arr, ia, by, j, "Mixed Case") VALUES
 (1, E'tab\there\nnew line\rcr\\backslash ''single'' "double"', -12.50, 1.5e-7, true,
  '2024-02-29 23:59:59.123+03', '2024-02-29', ARRAY['x,y', '{"q"}', NULL, 'a\b'], '{1,-2,3}',
  '\x00ff5c0a0d09'::bytea, '{"k": "v\n\t\\", "e": "😀"}', 'Müşteri İıŞ Привет 😀𝄞'),
 (2, '\N', NULL, 'NaN', false, NULL, NULL, '{}', '{}', '', 'null', ''),
 (3, '', 0, '-Infinity', NULL, 'infinity', '-infinity', NULL, NULL, NULL, '[]', NULL),
 (4, repeat(E'0123456789abc\\\t\n', 90000) || repeat('ş😀', 1000), 1e20, -0.0, true, '1999-12-31 23:59:59.999999+00',
  '0001-01-01 BC', ARRAY[E'back\\slash', E'new\nline'], ARRAY[2147483647], decode(repeat('ab5c', 1000), 'hex'),
  '{"a": [1, 2.5e3, null, true], "s": "\u00e9"}', E'\\.'),
 (5, E'\\.', 123456789012345678901234567890.123456789, 1e308, false, '2024-06-01 12:00:00+00', '2024-06-01',
  ARRAY['', ' '], NULL, '\x5c4e'::bytea, '"\\N"', E'\\N'),
 (6, E'COPY public.hostile (id) FROM stdin;', -1, -1.5e-300, true, NULL, NULL, NULL, NULL, NULL, '{}', E'a\tb'),
 (7, E'\x01\x02\x1f control chars \x7f', 3.14, 2.5, NULL, NULL, NULL, NULL, NULL, NULL, NULL, ' '),
 (8, E'end with backslash\\', 1, 1, true, NULL, NULL, NULL, NULL, NULL, NULL, E'\r\n');
INSERT INTO other."Hostile ""Quoted""" VALUES (1, 'a"b', 'sel'), (2, NULL, ''), (3, E'line\nbreak', NULL);
INSERT INTO public.zz_after VALUES (1, 'after');
"""#

private struct TableCase {
    var spec: String
    var sqlName: String
    var columns: [String]
}

private let tableCases = [
    TableCase(spec: "public.hostile", sqlName: "public.hostile",
              columns: ["id", "t", "n", "f", "b", "ts", "d", "arr", "ia", "by", "j", "Mixed Case"]),
    TableCase(spec: "hostile", sqlName: "public.hostile",
              columns: ["id", "t", "n", "f", "b", "ts", "d", "arr", "ia", "by", "j", "Mixed Case"]),
    TableCase(spec: #"other."Hostile ""Quoted""""#, sqlName: #"other."Hostile ""Quoted""""#, columns: ["id", "x\"y", "Select"]),
    TableCase(spec: "decoy", sqlName: "public.decoy", columns: ["id", "v"]),
    TableCase(spec: "public.empty_t", sqlName: "public.empty_t", columns: ["id", "v"]),
]

private func quoteIdent(_ s: String) -> String { "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }

/// The table as psql prints it: JSON arrays of each column's text (JSON null for NULL).
private func reference(_ server: PostgresServer, _ t: TableCase) throws -> [[String?]] {
    // format('%s') prints with the type's output function (what COPY writes); ::text does
    // not for every type (booleans).
    let cols = t.columns.map { "CASE WHEN \(quoteIdent($0)) IS NULL THEN NULL ELSE format('%s', \(quoteIdent($0))) END" }
        .joined(separator: ", ")
    let out = try server.psql("SELECT coalesce(json_agg(json_build_array(\(cols)) ORDER BY id), '[]') FROM \(t.sqlName);")
    let rows = try #require(try JSONSerialization.jsonObject(with: out) as? [[Any]])
    return rows.map { $0.map { $0 is NSNull ? nil : ($0 as! String) } }
}

@Test("pg_dump (COPY, --inserts, --column-inserts) read back equals psql", .timeLimit(.minutes(2)))
func pgDumpMatchesPsql() throws {
    let server = try PostgresServer()
    defer { server.stop() }
    try server.psql(setupSQL)
    let references = try tableCases.map { try reference(server, $0) }
    #expect(references[0].count == 8)
    #expect(references[0][3][1]!.utf8.count > 1_000_000)

    let modes: [(String, [String])] = [("copy", []), ("inserts", ["--inserts"]),
                                       ("column-inserts", ["--column-inserts", "--rows-per-insert=3"])]
    for (mode, options) in modes {
        let path = server.dir + "/dump-\(mode).sql"
        try server.dump(options, to: path)
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        for (t, expected) in zip(tableCases, references) {
            let reader = try PgDumpReader(path: path, table: t.spec, options: .init(chunkSize: 1 << 16))
            let (rows, errors) = try Support.collect(reader)
            #expect(errors.isEmpty, "\(mode) \(t.spec): \(errors)")
            let got = rows.sorted { Int($0.values[0]!)! < Int($1.values[0]!)! }.map(\.values)
            let same = got == expected
            #expect(same, "\(mode) \(t.spec): values differ from psql: \(firstDifference(got, expected))")
            for r in rows {
                #expect(r.columns == t.columns, "\(mode) \(t.spec)")
                // The line and offset point at the row's start in the file.
                let o = Int(r.offset)
                #expect(bytes[..<o].reduce(0) { $0 + ($1 == 10 ? 1 : 0) } + 1 == r.line)
                #expect(mode == "copy" ? (o == 0 || bytes[o - 1] == 10) : bytes[o] == UInt8(ascii: "("))
            }
        }
        // Other tables' data that mimics the wanted block is not read as it.
        let (rows, _) = try Support.collect(try PgDumpReader(path: path, table: "hostile"))
        #expect(!rows.contains { ["97", "98", "99"].contains($0.values[0]) })
    }
}

private func firstDifference(_ a: [[String?]], _ b: [[String?]]) -> String {
    if a.count != b.count { return "\(a.count) rows vs \(b.count)" }
    for (i, (x, y)) in zip(a, b).enumerated() where x != y {
        for (k, (u, v)) in zip(x, y).enumerated() where u != v {
            return "row \(i + 1) column \(k + 1): \(String(describing: u).prefix(200)) vs \(String(describing: v).prefix(200))"
        }
        return "row \(i + 1): \(x.count) values vs \(y.count)"
    }
    return "none"
}

// MARK: hand-written dumps

struct SnippetCase: Sendable, CustomStringConvertible {
    var name: String
    var dump: String
    var table: String = "public.t"
    var columns: [String]
    var rows: [[String?]]
    /// Lines of the rows, when checked.
    var lines: [Int]? = nil
    /// Lines of expected row errors.
    var errorLines: [Int] = []
    var description: String { name }
}

let snippetCases: [SnippetCase] = [
    SnippetCase(name: "COPY escapes", dump: """
        SET standard_conforming_strings = on;
        COPY public.t (a, b) FROM stdin;
        \\101\\60\\0601\\7\t\\x41\\x4A\\x4a\\xg\\x7
        \\b\\f\\n\\r\\t\\v\\\\\t\\N
        \\\\N\t\\Nx
        a\\.b\t\\q\\"\\'
        \\303\\251\\xc3\\xa9\tend
        \\.
        """, columns: ["a", "b"],
        rows: [["A00\u{31}\u{7}", "AJJxg\u{7}"], ["\u{8}\u{c}\n\r\t\u{b}\\", nil], ["\\N", "Nx"], ["a.b", "q\"'"], ["éé", "end"]],
        lines: [3, 4, 5, 6, 7]),
    SnippetCase(name: "COPY CRLF, backslash-newline, empty vs NULL", dump:
        "COPY t (a, b) FROM stdin;\r\n1\t\r\n\t\\N\r\nline\\\ncontinued\tx\r\n\\.\r\n",
        table: "t", columns: ["a", "b"], rows: [["1", ""], ["", nil], ["line\ncontinued", "x"]]),
    SnippetCase(name: "COPY bad rows are errors and reading goes on", dump: """
        COPY public.t (a, b) FROM stdin;
        1\tok
        only one field
        2\t\\xff
        3\tthree\textra
        4\tfine
        \\.
        """, columns: ["a", "b"], rows: [["1", "ok"], ["4", "fine"]], lines: [2, 6], errorLines: [3, 4, 5]),
    SnippetCase(name: "COPY of the same name in another schema is not the qualified one", dump: """
        COPY other.t (a) FROM stdin;
        x
        \\.
        COPY public.t (a) FROM stdin;
        y
        \\.
        """, columns: ["a"], rows: [["y"]], lines: [5]),
    SnippetCase(name: "INSERT values of every kind", dump: """
        CREATE TABLE public.t (a text, "B" text, c numeric);
        INSERT INTO public.t VALUES ('it''s; a ) trap
        on two lines', E'\\t\\n\\\\\\'\\x41\\101\\u00e9\\U0001F600', -1.5e-3);
        INSERT INTO public.t VALUES (NULL, '', +4), (true, false, .5), ('2024-01-01'::date, '{1,2}'::integer[], 7::numeric(10,2));
        /* a comment */ INSERT INTO public.t VALUES (B'1010', X'1F', 1e10), (U&'d\\0061t\\+000061', $$dollar 'quoted'$$, 0),
          (date '2024-02-29', $x$a$$b$x$, -0) ; -- trailing comment
        """, columns: ["a", "B", "c"],
        rows: [["it's; a ) trap\non two lines", "\t\n\\'AAé😀", "-1.5e-3"], [nil, "", "+4"], ["t", "f", ".5"],
               ["2024-01-01", "{1,2}", "7"], ["1010", "00011111", "1e10"], ["data", "dollar 'quoted'", "0"],
               ["2024-02-29", "a$$b", "-0"]],
        lines: [2, 4, 4, 4, 5, 5, 6]),
    SnippetCase(name: "INSERT bad tuples are errors and reading goes on", dump: """
        INSERT INTO public.t (a, b) VALUES (1, now()), (2, 'ok');
        INSERT INTO public.t (a, b) VALUES (3, (select 1)), (4, 'fine'), (5);
        INSERT INTO public.t (a, b) VALUES (6, E'\\xff');
        INSERT INTO public.t (a, b) VALUES (7, 'seven');
        """, columns: ["a", "b"], rows: [["2", "ok"], ["4", "fine"], ["7", "seven"]], lines: [1, 2, 4],
        errorLines: [1, 2, 2, 3]),
    SnippetCase(name: "standard_conforming_strings off", dump: """
        SET standard_conforming_strings = off;
        INSERT INTO t VALUES ('a\\\\b\\'c', 'x');
        """, table: "t", columns: [], rows: [["a\\b'c", "x"]]),
    SnippetCase(name: "quoted identifiers and other tables' strings", dump: """
        \\restrict abc
        INSERT INTO public.other VALUES ('
        INSERT INTO public."We""ird" VALUES (''fake'');');
        CREATE TABLE public."We""ird" ("Col 1" int, g int GENERATED ALWAYS AS (1) STORED, CONSTRAINT k CHECK ((g > 0)));
        INSERT INTO public."We""ird" VALUES (1, DEFAULT);
        \\unrestrict abc
        """, table: #"public."We""ird""#, columns: ["Col 1"], rows: [["1"]], lines: [5]),
    SnippetCase(name: "quoted names with doubled quotes", dump: #"""
        CREATE TABLE other."Hostile ""Quoted""" (
            id integer,
            "x""y" text,
            "Select" character varying(20)
        );
        COPY other."Hostile ""Quoted""" (id, "x""y", "Select") FROM stdin;
        1\#ta"b\#tsel
        \.
        """#, table: #"other."Hostile ""Quoted""""#, columns: ["id", "x\"y", "Select"], rows: [["1", "a\"b", "sel"]]),
]

@Test("hand-written dump snippets", arguments: snippetCases, [5, 64, 1 << 20])
func pgDumpSnippets(_ c: SnippetCase, chunk: Int) throws {
    let dir = try Support.scratchDirectory("pg")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let path = dir + "/dump.sql"
    try Data(c.dump.utf8).write(to: URL(fileURLWithPath: path))
    let (rows, errors) = try Support.collect(try PgDumpReader(path: path, table: c.table, options: .init(chunkSize: chunk)))
    #expect(rows.map(\.values) == c.rows)
    #expect(rows.allSatisfy { $0.columns == c.columns })
    if let lines = c.lines { #expect(rows.map(\.line) == lines) }
    #expect(errors.map(\.line) == c.errorLines, "\(errors)")
    for e in errors { #expect(e.description.hasPrefix(path + ":\(e.line):")) }
}

@Test func pgDumpFileErrors() throws {
    let dir = try Support.scratchDirectory("pg")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let path = dir + "/dump.sql"
    try Data("COPY a.t (x) FROM stdin;\n1\n\\.\nCOPY b.t (x) FROM stdin;\n2\n\\.\n".utf8).write(to: URL(fileURLWithPath: path))
    #expect(throws: DumpFileError.self) { try PgDumpReader(path: path, table: "missing").rows { _ in } }
    // Unqualified and in two schemas: ambiguous.
    let ambiguous = #expect(throws: DumpFileError.self) { try PgDumpReader(path: path, table: "t").rows { _ in } }
    #expect(ambiguous?.line == 4)
    let (rows, _) = try Support.collect(try PgDumpReader(path: path, table: "B.T"))
    #expect(rows.map(\.values) == [["2"]])
    #expect(throws: DumpFileError.self) { try PgDumpReader(path: dir + "/nope.sql", table: "t").rows { _ in } }
    // A truncated COPY block: its rows, then an error.
    try Data("COPY t (x) FROM stdin;\n1\n2".utf8).write(to: URL(fileURLWithPath: path))
    let (r2, e2) = try Support.collect(try PgDumpReader(path: path, table: "t"))
    #expect(r2.map(\.values) == [["1"], ["2"]])
    #expect(e2.count == 1)
}

@Test func tableNames() {
    #expect(PgTableName(parsing: "Public.Users") == PgTableName(schema: "public", name: "users"))
    #expect(PgTableName(parsing: #""My Schema"."Sign ""Ups""""#) == PgTableName(schema: "My Schema", name: "Sign \"Ups\""))
    #expect(PgTableName(parsing: "a.b.c") == nil)
    #expect(PgTableName(parsing: "") == nil)
}

@Test("rows of 64 MiB and more, read in 1 MiB chunks")
func largeRows() throws {
    let dir = try Support.scratchDirectory("pg")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let path = dir + "/dump.sql"
    let size = 65 << 20
    var text = [UInt8](repeating: UInt8(ascii: "a"), count: size)
    for i in stride(from: 0, to: size, by: 4096) { text[i] = UInt8(ascii: "\n") }  // escaped as \n in COPY
    var copy = Array("COPY t (id, v) FROM stdin;\n1\t".utf8)
    copy.reserveCapacity(size + size / 2048 + 100)
    for b in text { if b == 10 { copy += [92, 110] } else { copy.append(b) } }
    copy += Array("\n2\tsmall\n\\.\nINSERT INTO u VALUES (1, '".utf8) + text + Array("'), (2, 'x');\n".utf8)
    try Data(copy).write(to: URL(fileURLWithPath: path))
    let expected = String(decoding: text, as: UTF8.self)
    for table in ["t", "u"] {
        let (rows, errors) = try Support.collect(try PgDumpReader(path: path, table: table))
        #expect(errors.isEmpty)
        #expect(rows.count == 2)
        #expect(rows.first?.values[1] == expected, "the large value differs")
        #expect(rows.last?.values[1] == (table == "t" ? "small" : "x"))
    }
    // Over the row limit: an error for that row, and the next row still comes.
    let (rows, errors) = try Support.collect(try PgDumpReader(path: path, table: "t", options: .init(maxRowBytes: 1 << 20)))
    #expect(rows.map(\.values) == [["2", "small"]])
    #expect(errors.map(\.line) == [2])
}
