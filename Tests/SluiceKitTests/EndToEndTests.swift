import Foundation
import SluiceCore
import SluiceFiles
import SluiceKit
import SluiceSQLite
import SluiceTestSupport
import Testing

/// The sample pipelines end to end: real files, real gzip, a real SQLite warehouse,
/// compared with the expected output that the samples' generator (an independent
/// Python model, Samples/generate_signup_samples.py) wrote.
@Suite(.serialized) struct EndToEndTests {
    /// A copy of the project's signup pipeline, schemas and samples in a scratch folder
    /// (the other pipelines stay out: `schedule` would run them too).
    static func copyProject() throws -> String {
        let dir = try TestSupport.scratchDirectory("project")
        for item in ["Schemas", "Samples", "sluice.yml"] {
            try FileManager.default.copyItem(atPath: TestSupport.repoRoot + "/" + item, toPath: dir + "/" + item)
        }
        try FileManager.default.createDirectory(atPath: dir + "/Pipelines", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: TestSupport.repoRoot + "/Pipelines/signup_attempts.yml", toPath: dir + "/Pipelines/signup_attempts.yml")
        return dir
    }

    static let dates = ["2026-11-18", "2026-11-19", "2026-11-20"]

    static func expectedRows(_ root: String) throws -> [[String?]] {
        var rows: [[String?]] = []
        for d in dates {
            let data = try Data(contentsOf: URL(fileURLWithPath: "\(root)/Samples/expected/signup_attempts/\(d).csv"))
            rows += CSVFormat().parse([UInt8](data)).dropFirst()
        }
        return rows
    }

    @Test func samplePipelinePassesItsTest() async throws {
        let console = CapturingConsole()
        let status = await PipelineTest.run(pipelines: [TestSupport.repoRoot + "/Pipelines/signup_attempts.yml"],
                                            projectRoot: TestSupport.repoRoot, console: console)
        #expect(status == 0, "\(console.errors.joined(separator: "\n"))")
        #expect(console.output.last == "pipelines: 1 passed, 0 failed")
    }

    @Test(arguments: [("a changed value", 5, 2), ("a NULL made empty", 7, 9), ("a changed key", 3, 23)])
    func sluiceTestFailsWhenOneExpectedRowChanges(what: String, row: Int, column: Int) async throws {
        let root = try Self.copyProject()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let file = root + "/Samples/expected/signup_attempts/2026-11-19.csv"
        var rows = CSVFormat().parse([UInt8](try Data(contentsOf: URL(fileURLWithPath: file))))
        let original = rows[row][column]
        rows[row][column] = original == nil ? "" : (original == "" ? nil : original! + "x")
        var out: [UInt8] = []
        for r in rows { CSVFormat().appendRecord(r.map { $0.map(Value.string) ?? .null }, to: &out) }
        try Data(out).write(to: URL(fileURLWithPath: file))
        let console = CapturingConsole()
        let status = await PipelineTest.run(pipelines: [root + "/Pipelines/signup_attempts.yml"], projectRoot: root, console: console)
        #expect(status == 1, "\(what) was not noticed")
        #expect(console.output.last == "pipelines: 0 passed, 1 failed")
        #expect(!console.errors.isEmpty)
    }

    @Test func runsAreIdempotentAndCountsAddUp() async throws {
        let root = try Self.copyProject()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let expected = try Self.expectedRows(root)
        for attempt in 1...2 {
            let console = CapturingConsole()
            let status = await Commands.run(pipeline: root + "/Pipelines/signup_attempts.yml", partitions: Self.dates, target: nil,
                                            projectRoot: root, console: console)
            #expect(status == 0, "attempt \(attempt): \(console.errors)")
            // One summary line per partition; read = loaded + filtered + rejected.
            #expect(console.output.count == 3)
            for line in console.output {
                let n = Self.numbers(in: line)
                #expect(n["read"] == n["loaded"]! + n["filtered"]! + n["rejected"]! + n["buffered"]!, "\(line)")
            }
        }
        let schema = try #require(Project.load(root: root).pipeline(at: root + "/Pipelines/signup_attempts.yml").1.loaders.first?.loader.schema)
        let table = try SQLiteTableLoader.readTable(databasePath: root + "/.sluice/warehouse.sqlite", table: "signup_attempts", schema: schema)
        #expect(table.count == expected.count)
        let keyIndex = schema.index(of: "record_key")!
        #expect(Set(table.map { CSVFormat.text($0[keyIndex]) }).count == table.count, "duplicate keys in the warehouse")
        #expect(Set(table.map { CSVFormat.text($0[keyIndex]) }) == Set(expected.map { $0[keyIndex] }))
        // Dead letters keep file and line, once each even after two runs.
        let state = try SQLiteStateStore(path: root + "/.sluice/state.sqlite")
        let letters = try state.deadLetters(pipeline: "signup_attempts")
        let expectedLetters = CSVFormat().parse([UInt8](try Data(contentsOf: URL(fileURLWithPath: root + "/Samples/expected/signup_attempts/dead_letters.csv")))).dropFirst()
        #expect(letters.count == expectedLetters.count)
        #expect(letters.allSatisfy { $0.file.hasPrefix("Samples/logs/api/") && $0.line > 0 })
    }

    static func numbers(in line: String) -> [String: Int] {
        var out: [String: Int] = [:]
        let words = line.replacingOccurrences(of: ",", with: "").split(separator: " ")
        for (w, next) in zip(words, words.dropFirst()) {
            if let n = Int(next), ["read", "loaded", "filtered", "rejected", "buffered"].contains(String(w)) { out[String(w)] = n }
        }
        return out
    }

    @Test(arguments: [
        (["run"], Int32(2)),
        (["run", "Pipelines/signup_attempts.yml", "--date", "2026-13-01"], Int32(2)),
        (["backfill", "Pipelines/signup_attempts.yml", "--from", "2026-11-20", "--to", "2026-11-18"], Int32(2)),
        (["frobnicate"], Int32(2)),
        (["validate", "Pipelines/nope.yml"], Int32(1)),
        (["validate"], Int32(0)),
        (["--help"], Int32(0)),
    ])
    func exitStatuses(arguments: [String], status: Int32) throws {
        let r = try TestSupport.run(TestSupport.sluiceExecutable, arguments, cwd: TestSupport.repoRoot)
        #expect(r.status == status, "\(arguments): \(r.stderr)")
    }
}
