import Foundation
import SluiceKit
import SluiceTestSupport
import Testing

/// `sluice validate` on broken pipeline, schema and project files: each problem must be
/// reported as `file:line:column: message` at the right place. The expected column is
/// found by searching the file's own text for a marker, not by the code under test.
@Suite struct ValidateTests {
    static let pipeline = """
        name: t
        partition: day
        key: [id]
        extract:
          kind: jsonl
          path: "in/{date}/*.jsonl"
          time: ts
        transform:
          - kind: select
            fields:
              ts: ts
              action: action
        load:
          - kind: warehouse
            table: t
            schema: Schemas/t.json
          - kind: csv
            path: "out/{date}.csv"

        """

    static let schema = """
        [
          {"name": "ts", "type": "TIMESTAMP", "mode": "REQUIRED"},
          {"name": "action", "type": "STRING", "mode": "REQUIRED"},
          {"name": "record_key", "type": "STRING", "mode": "REQUIRED"}
        ]

        """

    static let project = """
        default_target: local
        targets:
          local:
            kind: sqlite
            path: w.sqlite

        """

    struct Case: CustomTestStringConvertible, Sendable {
        var name: String
        /// The file to break (relative path) and its broken text.
        var file: String
        var text: String
        /// Where the problem must be reported: line, and a marker whose first occurrence on
        /// that line gives the column (nth occurrence when `occurrence` > 1).
        var line: Int
        var marker: String
        var occurrence: Int = 1
        var message: String
        var testDescription: String { name }
    }

    static func replacing(_ text: String, _ old: String, _ new: String) -> String {
        precondition(text.contains(old), old)
        return text.replacingOccurrences(of: old, with: new)
    }

    static let cases: [Case] = [
        Case(name: "unknown key with a suggestion", file: "Pipelines/p.yml",
             text: replacing(pipeline, "partition: day", "partiton: day"), line: 2, marker: "partiton",
             message: "unknown key `partiton` (did you mean `partition`?)"),
        Case(name: "YAML syntax error", file: "Pipelines/p.yml",
             text: replacing(pipeline, "  kind: jsonl", "  kind: [jsonl"), line: 6, marker: ":",
             message: "YAML syntax error"),
        Case(name: "unknown extract kind", file: "Pipelines/p.yml",
             text: replacing(pipeline, "kind: jsonl", "kind: jsonx"), line: 5, marker: "jsonx",
             message: "unknown extract kind `jsonx`"),
        Case(name: "stage of another role", file: "Pipelines/p.yml",
             text: replacing(pipeline, "  - kind: select", "  - kind: warehouse"), line: 9, marker: "warehouse",
             message: "unknown transform kind `warehouse` (it is a load stage)"),
        Case(name: "stage of two other roles", file: "Pipelines/p.yml",
             text: replacing(pipeline, "  - kind: select", "  - kind: csv"), line: 9, marker: "csv",
             message: "unknown transform kind `csv` (it is an extract and load stage)"),
        Case(name: "wrong type", file: "Pipelines/p.yml",
             text: replacing(pipeline, "key: [id]", "key: {a: 1}"), line: 3, marker: "{",
             message: "`key` must be a list of strings, found a mapping"),
        Case(name: "unexpandable {date} pattern", file: "Pipelines/p.yml",
             text: replacing(pipeline, "in/{date}/", "in/{dte}/"), line: 6, marker: "\"",
             message: "unknown placeholder `{dte}`"),
        Case(name: "missing schema file", file: "Pipelines/p.yml",
             text: replacing(pipeline, "Schemas/t.json", "Schemas/missing.json"), line: 16, marker: "Schemas",
             message: "schema file `Schemas/missing.json` does not exist"),
        Case(name: "REQUIRED column no stage produces", file: "Pipelines/p.yml",
             text: replacing(pipeline, "      action: action\n", ""), line: 15, marker: "Schemas",
             message: "column `action` is REQUIRED in Schemas/t.json but no stage produces it"),
        Case(name: "invalid cron schedule", file: "Pipelines/p.yml",
             text: replacing(pipeline, "partition: day", "schedule: \"61 * * * *\""), line: 2, marker: "\"",
             message: "invalid schedule `61 * * * *`: minute: 61 is out of 0-59"),
        Case(name: "unknown partition unit", file: "Pipelines/p.yml",
             text: replacing(pipeline, "partition: day", "partition: week"), line: 2, marker: "week",
             message: "`partition` must be one of `day`, `hour`, found `week`"),
        Case(name: "option of the wrong type", file: "Pipelines/p.yml",
             text: replacing(pipeline, "  time: ts", "  time: ts\n  max_line_bytes: lots"), line: 8, marker: "lots",
             message: "`max_line_bytes` must be an integer"),
        Case(name: "misspelt stage option", file: "Pipelines/p.yml",
             text: replacing(pipeline, "  path: \"in", "  pth: \"in"), line: 6, marker: "pth",
             message: "unknown key `pth` (did you mean `path`?)"),
        Case(name: "duplicate key", file: "Pipelines/p.yml",
             text: replacing(pipeline, "partition: day", "name: u"), line: 2, marker: "name",
             message: "duplicate key `name`"),
        Case(name: "missing load", file: "Pipelines/p.yml",
             text: String(pipeline[..<pipeline.range(of: "load:")!.lowerBound]), line: 1, marker: "name",
             message: "missing required key `load`"),
        Case(name: "invalid test partition", file: "Pipelines/p.yml",
             text: pipeline + "test:\n  dates: [2026-02-30]\n  expected: Pipelines\n", line: 20, marker: "2026",
             message: "`2026-02-30` is not a day partition"),
        Case(name: "unknown column type", file: "Schemas/t.json",
             text: replacing(schema, "\"STRING\"", "\"STRIN\""), line: 3, marker: "\"STRIN\"",
             message: "unknown type `STRIN` for column `action`"),
        Case(name: "duplicate column", file: "Schemas/t.json",
             text: replacing(schema, "\"name\": \"action\"", "\"name\": \"TS\""), line: 3, marker: "\"TS\"",
             message: "duplicate column `TS` (first at line 2)"),
        Case(name: "RECORD without fields", file: "Schemas/t.json",
             text: replacing(schema, "\"STRING\"", "\"RECORD\""), line: 3, marker: "{",
             message: "RECORD column `action` needs `fields`"),
        Case(name: "invalid mode", file: "Schemas/t.json",
             text: replacing(schema, "\"mode\": \"REQUIRED\"}\n]", "\"mode\": \"OPTIONAL\"}\n]"), line: 4, marker: "\"OPTIONAL\"",
             message: "unknown mode `OPTIONAL` for column `record_key`"),
        Case(name: "invalid column name", file: "Schemas/t.json",
             text: replacing(schema, "\"name\": \"action\"", "\"name\": \"1action-x\""), line: 3, marker: "\"1action-x\"",
             message: "invalid column name `1action-x`"),
        Case(name: "unknown key in a schema field", file: "Schemas/t.json",
             text: replacing(schema, "\"mode\": \"REQUIRED\"},\n  {\"name\": \"action\"", "\"mdoe\": \"REQUIRED\"},\n  {\"name\": \"action\""), line: 2,
             marker: "\"mdoe\"", message: "unknown key `mdoe` (did you mean `mode`?)"),
        Case(name: "JSON syntax error", file: "Schemas/t.json",
             text: replacing(schema, "\"REQUIRED\"},\n  {\"name\": \"action\"", "\"REQUIRED\"}\n  {\"name\": \"action\""), line: 3,
             marker: "{", message: "YAML syntax error"),
        Case(name: "unknown callback vendor", file: "Pipelines/p.yml",
             text: replacing(pipeline, "  kind: jsonl\n", "  kind: callbacks\n  verify: {vendor: twilio, key_env: K}\n"), line: 6, marker: "twilio",
             message: "`vendor` must be one of `telesign`, `hmac_sha256`, found `twilio`"),
        Case(name: "telesign without its key variable", file: "Pipelines/p.yml",
             text: replacing(pipeline, "  kind: jsonl\n", "  kind: callbacks\n  verify:\n    vendor: telesign\n    customer_id: c\n"), line: 7, marker: "vendor",
             message: "missing required key `api_key_env`"),
        Case(name: "filter with two tests", file: "Pipelines/p.yml",
             text: replacing(pipeline, "  - kind: select", "  - kind: filter\n    field: action\n    equals: signup\n    exists: true\n  - kind: select"), line: 9, marker: "kind",
             message: "filter needs exactly one of `equals`, `in`, `not_in` or `exists`"),
        Case(name: "undefined default target", file: "sluice.yml",
             text: replacing(project, "default_target: local", "default_target: prod"), line: 1, marker: "prod",
             message: "default target `prod` is not defined in `targets`"),
        Case(name: "unknown target kind", file: "sluice.yml",
             text: replacing(project, "kind: sqlite", "kind: duckdb"), line: 4, marker: "duckdb",
             message: "`kind` must be one of `sqlite`, `bigquery`, found `duckdb`"),
        Case(name: "bigquery request size out of range", file: "sluice.yml",
             text: project + "  bq:\n    kind: bigquery\n    project: p\n    dataset: d\n    max_rows: 60000\n", line: 10, marker: "60000",
             message: "`max_rows` must be between 1 and 50000"),
        Case(name: "bigquery knob that is not a number", file: "sluice.yml",
             text: project + "  bq:\n    kind: bigquery\n    project: p\n    dataset: d\n    flush_ms: soon\n", line: 10, marker: "soon",
             message: "`flush_ms` must be an integer, found `soon`"),
        Case(name: "bigquery allow_new_columns not a boolean", file: "sluice.yml",
             text: project + "  bq:\n    kind: bigquery\n    project: p\n    dataset: d\n    allow_new_columns: maybe\n", line: 10, marker: "maybe",
             message: "`allow_new_columns` must be true or false"),
    ]

    static func makeProject(_ overrides: [String: String]) throws -> String {
        let root = try TestSupport.scratchDirectory("validate")
        let files = ["Pipelines/p.yml": pipeline, "Schemas/t.json": schema, "sluice.yml": project].merging(overrides) { $1 }
        for (path, text) in files {
            let full = root + "/" + path
            try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try text.write(toFile: full, atomically: true, encoding: .utf8)
        }
        return root
    }

    @Test func theUnbrokenProjectIsValid() throws {
        let root = try Self.makeProject([:])
        defer { try? FileManager.default.removeItem(atPath: root) }
        let console = CapturingConsole()
        #expect(Commands.validate(paths: [], projectRoot: root, console: console) == 0, "\(console.errors)")
    }

    @Test(arguments: cases)
    func reportsTheProblemWhereItIs(_ c: Case) throws {
        let root = try Self.makeProject([c.file: c.text])
        defer { try? FileManager.default.removeItem(atPath: root) }
        let console = CapturingConsole()
        let status = Commands.validate(paths: [], projectRoot: root, console: console)
        #expect(status == 1)
        let lineText = c.text.components(separatedBy: "\n")[c.line - 1]
        var column = 0
        var rest = lineText[...]
        for _ in 0..<c.occurrence {
            let r = rest.range(of: c.marker)!
            column = lineText.unicodeScalars.distance(from: lineText.startIndex, to: r.lowerBound) + 1
            rest = rest[r.upperBound...]
        }
        let prefix = "\(c.file):\(c.line):\(column): "
        let match = console.errors.first { $0.hasPrefix(prefix) && $0.contains(c.message) }
        #expect(match != nil, "expected \(prefix)…\(c.message); got:\n\(console.errors.joined(separator: "\n"))")
    }

    @Test func aBrokenPipelineNeverStartsARun() async throws {
        let root = try Self.makeProject(["Pipelines/p.yml": Self.replacing(Self.pipeline, "kind: jsonl", "kind: jsonx")])
        defer { try? FileManager.default.removeItem(atPath: root) }
        let console = CapturingConsole()
        let status = await Commands.run(pipeline: root + "/Pipelines/p.yml", partitions: ["2026-11-18"], target: nil, projectRoot: root, console: console)
        #expect(status == 1)
        #expect(!FileManager.default.fileExists(atPath: root + "/.sluice/state.sqlite"))
        #expect(!FileManager.default.fileExists(atPath: root + "/w.sqlite"))
        #expect(console.errors.contains { $0.hasPrefix("Pipelines/p.yml:5:9: unknown extract kind") })
    }
}
