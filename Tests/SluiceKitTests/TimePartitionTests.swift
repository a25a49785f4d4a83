import Foundation
import SluiceCore
import SluiceFiles
import SluiceKit
import SluiceTestSupport
import Testing

/// A pipeline whose input is not split by partition (no `{date}` in its path): the event
/// time decides, and each partition's run loads its own records of the shared file —
/// whatever order the runs come in, and when the file grows between runs.
@Suite struct TimePartitionTests {
    static func line(_ id: Int, _ day: String) -> String { #"{"id":\#(id),"ts":"\#(day)T12:00:00Z"}"# }

    @Test(arguments: [["2026-11-18", "2026-11-19"], ["2026-11-19", "2026-11-18"]])
    func everyPartitionLoadsItsRecordsOfASharedFile(order: [String]) async throws {
        let root = try TestSupport.scratchDirectory("timepart")
        defer { try? FileManager.default.removeItem(atPath: root) }
        for dir in ["Pipelines", "Schemas", "in"] { try FileManager.default.createDirectory(atPath: root + "/" + dir, withIntermediateDirectories: true) }
        let file = root + "/in/all.jsonl"
        var lines = (1...6).map { Self.line($0, $0 % 2 == 0 ? "2026-11-18" : "2026-11-19") }
        try (lines.joined(separator: "\n") + "\n").write(toFile: file, atomically: true, encoding: .utf8)
        try #"[{"name": "id", "type": "INTEGER"}, {"name": "ts", "type": "TIMESTAMP"}, {"name": "record_key", "type": "STRING"}]"#
            .write(toFile: root + "/Schemas/t.json", atomically: true, encoding: .utf8)
        try """
            name: t
            key: [id]
            extract: {kind: jsonl, path: in/all.jsonl, time: ts}
            load:
              - {kind: csv, path: "out/{date}.csv", schema: Schemas/t.json}

            """.write(toFile: root + "/Pipelines/t.yml", atomically: true, encoding: .utf8)
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
}
