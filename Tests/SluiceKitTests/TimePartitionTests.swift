import Foundation
import SluiceCore
import SluiceFiles
import SluiceKit
import SluiceSQLite
import SluiceTestSupport
import Testing

/// A pipeline whose input is not split by partition (no `{date}` in its path): the event
/// time decides, and each partition's run loads its own records of the shared file —
/// whatever order the runs come in, and when the file grows between runs.
@Suite struct TimePartitionTests {
    static func line(_ id: Int, _ day: String) -> String { #"{"id":\#(id),"ts":"\#(day)T12:00:00Z"}"# }

    /// A scratch project: `lines` in `in/all.jsonl`, read by `Pipelines/t.yml` (key `id`,
    /// event time `ts`, not split by partition) into `out/{date}.csv`.
    static func project(_ name: String, lines: [String]) throws -> String {
        let root = try TestSupport.scratchDirectory(name)
        for dir in ["Pipelines", "Schemas", "in"] { try FileManager.default.createDirectory(atPath: root + "/" + dir, withIntermediateDirectories: true) }
        try (lines.joined(separator: "\n") + "\n").write(toFile: root + "/in/all.jsonl", atomically: true, encoding: .utf8)
        try #"[{"name": "id", "type": "INTEGER"}, {"name": "ts", "type": "TIMESTAMP"}, {"name": "record_key", "type": "STRING"}]"#
            .write(toFile: root + "/Schemas/t.json", atomically: true, encoding: .utf8)
        try """
            name: t
            key: [id]
            extract: {kind: jsonl, path: in/all.jsonl, time: ts}
            load:
              - {kind: csv, path: "out/{date}.csv", schema: Schemas/t.json}

            """.write(toFile: root + "/Pipelines/t.yml", atomically: true, encoding: .utf8)
        return root
    }

    @Test(arguments: [["2026-11-18", "2026-11-19"], ["2026-11-19", "2026-11-18"]])
    func everyPartitionLoadsItsRecordsOfASharedFile(order: [String]) async throws {
        var lines = (1...6).map { Self.line($0, $0 % 2 == 0 ? "2026-11-18" : "2026-11-19") }
        let root = try Self.project("timepart", lines: lines)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let file = root + "/in/all.jsonl"
        func ids(_ day: String) throws -> [String] {
            let path = root + "/out/\(day).csv"
            guard FileManager.default.fileExists(atPath: path) else { return [] }
            return CSVFormat().parse([UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))).dropFirst().compactMap { $0[0] }.sorted()
        }
        func run(_ day: String) async {
            let console = CapturingConsole()
            #expect(await Commands.run(pipeline: root + "/Pipelines/t.yml", partitions: [day], target: nil, projectRoot: root, console: console) == 0,
                    "\(console.errors)")
        }
        for day in order { await run(day) }
        #expect(try ids("2026-11-18") == ["2", "4", "6"])
        #expect(try ids("2026-11-19") == ["1", "3", "5"])
        // The file grows: each partition's next run adds its new records, once.
        lines = [Self.line(7, "2026-11-19"), Self.line(8, "2026-11-18")]
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: file))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data((lines.joined(separator: "\n") + "\n").utf8))
        try handle.close()
        for day in order + order { await run(day) }
        #expect(try ids("2026-11-18") == ["2", "4", "6", "8"])
        #expect(try ids("2026-11-19") == ["1", "3", "5", "7"])
    }

    /// A record whose event time is absent, null or not a timestamp is a `bad_time` dead
    /// letter of its line, with what is wrong (never the value); the others are loaded,
    /// or left to their own partition.
    @Test func badEventTimesAreDeadLettersOfTheirLines() async throws {
        let cases: [(line: String, problem: String?)] = [
            (#"{"id":1,"ts":"2026-11-18T12:00:00Z"}"#, nil),
            (#"{"id":2}"#, "event time field ts is missing"),
            (#"{"id":3,"ts":null}"#, "event time field ts is missing"),
            (#"{"id":4,"ts":"yesterday"}"#, "event time field ts is not a valid timestamp"),
            (#"{"id":5,"ts":true}"#, "event time field ts is not a valid timestamp"),
            (#"{"id":6,"ts":"2026-11-19T00:00:00Z"}"#, nil),
            (#"{"ts":"2026-11-18T23:59:59.999999Z","id":7}"#, nil),
        ]
        let root = try Self.project("badtime", lines: cases.map(\.line))
        defer { try? FileManager.default.removeItem(atPath: root) }
        let console = CapturingConsole()
        #expect(await Commands.run(pipeline: root + "/Pipelines/t.yml", partitions: ["2026-11-18"], target: nil, projectRoot: root,
                                   console: console) == 0, "\(console.errors)")
        let loaded = CSVFormat().parse([UInt8](try Data(contentsOf: URL(fileURLWithPath: root + "/out/2026-11-18.csv")))).dropFirst().compactMap { $0[0] }
        #expect(loaded.sorted() == ["1", "7"])
        let letters = try SQLiteStateStore(path: root + "/.sluice/state.sqlite").deadLetters(pipeline: "t")
        let expected = cases.enumerated().compactMap { n, c in c.problem.map { (n + 1, $0) } }
        #expect(letters.map(\.line) == expected.map(\.0))
        #expect(letters.map(\.message) == expected.map(\.1))
        #expect(letters.allSatisfy { $0.kind == "bad_time" && $0.file == "in/all.jsonl" })
    }
}
