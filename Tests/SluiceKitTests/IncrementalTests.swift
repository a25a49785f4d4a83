import Foundation
import SluiceCore
import SluiceFiles
import SluiceKit
import SluiceSQLite
import SluiceTestSupport
import Testing

/// Incremental runs over files that grow, rotate, are truncated and compressed: each
/// record is delivered once, whatever happens to the files between runs.
@Suite(.serialized) struct IncrementalTests {
    static func makeProject(key: Bool) throws -> String {
        let root = try TestSupport.scratchDirectory("incr")
        try FileManager.default.createDirectory(atPath: root + "/Pipelines", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: root + "/Schemas", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: root + "/in/2026-11-18", withIntermediateDirectories: true)
        try """
            name: events
            \(key ? "key: [id]" : "")
            extract:
              kind: jsonl
              path: "in/{date}/*"
              time: ts
            transform:
              - kind: select
                fields: {id: id, ts: ts, v: v}
            load:
              - kind: warehouse
                table: events
                schema: Schemas/events.json
              - kind: csv
                path: "out/{date}.csv"

            """.write(toFile: root + "/Pipelines/events.yml", atomically: true, encoding: .utf8)
        try """
            [{"name": "id", "type": "INTEGER", "mode": "REQUIRED"}, {"name": "ts", "type": "TIMESTAMP", "mode": "REQUIRED"},
             {"name": "v", "type": "STRING"}, {"name": "record_key", "type": "STRING", "mode": "REQUIRED"}]
            """.write(toFile: root + "/Schemas/events.json", atomically: true, encoding: .utf8)
        return root
    }

    static func line(_ id: Int, _ v: String = "x") -> String { #"{"id":\#(id),"ts":"2026-11-18T00:00:\#(10 + id)Z","v":"\#(v)"}"# + "\n" }

    static func append(_ text: String, to path: String) throws {
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try h.seekToEnd()
        try h.write(contentsOf: Data(text.utf8))
        try h.close()
    }

    static func run(_ root: String) async throws {
        let console = CapturingConsole()
        let status = await Commands.run(pipeline: root + "/Pipelines/events.yml", partitions: ["2026-11-18"], target: nil,
                                        projectRoot: root, console: console)
        #expect(status == 0, "\(console.errors)")
    }

    /// (id, v) of the rows in both sinks; they must agree and hold each id once.
    static func sinkRows(_ root: String) throws -> [String] {
        let csv = CSVFormat().parse([UInt8](try Data(contentsOf: URL(fileURLWithPath: root + "/out/2026-11-18.csv")))).dropFirst()
            .map { "\($0[0]!)=\($0[2] ?? "NULL")" }.sorted()
        let schema = try Project.load(root: root).pipeline(at: root + "/Pipelines/events.yml").1.loaders[0].loader.schema
        let table = try SQLiteTableLoader.readTable(databasePath: root + "/.sluice/warehouse.sqlite", table: "events", schema: schema)
            .map { "\(CSVFormat.text($0[0])!)=\(CSVFormat.text($0[2]) ?? "NULL")" }.sorted()
        #expect(csv == table, "the CSV file and the warehouse disagree")
        return csv
    }

    static func expected(_ ids: ClosedRange<Int>, partial: Int? = nil) -> [String] {
        ids.map { "\($0)=\($0 == partial ? "partial" : "x")" }.sorted()
    }

    @Test(arguments: [true, false])
    func growingRotatedTruncatedAndCompressedFiles(withKeyFields: Bool) async throws {
        let root = try Self.makeProject(key: withKeyFields)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let dir = root + "/in/2026-11-18"
        // 1. A new file.
        try Self.append(Self.line(1) + Self.line(2) + Self.line(3), to: dir + "/a.jsonl")
        try await Self.run(root)
        #expect(try Self.sinkRows(root) == Self.expected(1...3))
        // 2. It grows, and its writer is in the middle of a line: that line waits.
        try Self.append(Self.line(4) + Self.line(5) + #"{"id":6,"ts":"2026-11-18T00:00:16Z","v":"par"#, to: dir + "/a.jsonl")
        try await Self.run(root)
        #expect(try Self.sinkRows(root) == Self.expected(1...5))
        // 3. The line is finished, the file rotated (renamed) and a new one started.
        try Self.append(#"tial"}"# + "\n", to: dir + "/a.jsonl")
        try FileManager.default.moveItem(atPath: dir + "/a.jsonl", toPath: dir + "/a.jsonl.1")
        try Self.append(Self.line(7) + Self.line(8), to: dir + "/a.jsonl")
        try await Self.run(root)
        #expect(try Self.sinkRows(root) == Self.expected(1...8, partial: 6))
        // 4. The new file is truncated in place (copytruncate) and written anew.
        try Data().write(to: URL(fileURLWithPath: dir + "/a.jsonl"))
        try Self.append(Self.line(9), to: dir + "/a.jsonl")
        try await Self.run(root)
        #expect(try Self.sinkRows(root) == Self.expected(1...9, partial: 6))
        // 5. The rotated file is compressed afterwards: the same content, read already.
        let r = try TestSupport.run("/bin/gzip", ["-n", dir + "/a.jsonl.1"])
        #expect(r.status == 0)
        try await Self.run(root)
        #expect(try Self.sinkRows(root) == Self.expected(1...9, partial: 6))
        // 6. Nothing new: nothing happens.
        try await Self.run(root)
        #expect(try Self.sinkRows(root) == Self.expected(1...9, partial: 6))
    }

    @Test func duplicateKeysInTheInputAreLoadedOnce() async throws {
        let root = try Self.makeProject(key: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let dir = root + "/in/2026-11-18"
        try Self.append(Self.line(1) + Self.line(2) + Self.line(1) + Self.line(3), to: dir + "/a.jsonl")
        try Self.append(Self.line(2) + Self.line(4), to: dir + "/b.jsonl")
        try await Self.run(root)
        #expect(try Self.sinkRows(root) == Self.expected(1...4))
    }

    @Test func deadLettersAreReprocessedAfterAFix() async throws {
        let root = try Self.makeProject(key: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let dir = root + "/in/2026-11-18"
        try Self.append(Self.line(1) + #"{"id":2,"ts":"2026-11-18T00:00:12Z","v":{"a":1}}"# + "\n" + Self.line(3) + "{broken\n", to: dir + "/a.jsonl")
        try await Self.run(root)
        #expect(try Self.sinkRows(root) == ["1=x", "3=x"])
        let state = try SQLiteStateStore(path: root + "/.sluice/state.sqlite")
        #expect(try state.deadLetters(pipeline: "events").map(\.kind) == ["schema", "malformed_json"])
        // The fix: `v` may be an object, stored as JSON text.
        let file = root + "/Pipelines/events.yml"
        try String(contentsOfFile: file, encoding: .utf8).replacingOccurrences(of: "v: v}", with: "v: {from: v, as: json}}")
            .write(toFile: file, atomically: true, encoding: .utf8)
        let console = CapturingConsole()
        #expect(await Commands.reprocess(pipeline: file, partition: nil, projectRoot: root, console: console) == 0, "\(console.errors)")
        #expect(console.output.last?.hasSuffix("1 dead letter resolved, 1 remain") == true, "\(console.output)")
        #expect(try Self.sinkRows(root) == ["1=x", #"2={"a":1}"#, "3=x"])
        #expect(try state.deadLetters(pipeline: "events").map(\.kind) == ["malformed_json"])
        // Again: nothing changes, nothing is loaded twice.
        #expect(await Commands.reprocess(pipeline: file, partition: nil, projectRoot: root, console: console) == 0)
        #expect(try Self.sinkRows(root) == ["1=x", #"2={"a":1}"#, "3=x"])
    }

    @Test func aCorruptStateFileIsAClearErrorNotAReset() async throws {
        let root = try Self.makeProject(key: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root + "/.sluice", withIntermediateDirectories: true)
        try Data(repeating: 0x42, count: 8192).write(to: URL(fileURLWithPath: root + "/.sluice/state.sqlite"))
        let console = CapturingConsole()
        let status = await Commands.run(pipeline: root + "/Pipelines/events.yml", partitions: ["2026-11-18"], target: nil,
                                        projectRoot: root, console: console)
        #expect(status == 1)
        #expect(console.errors.contains { $0.contains(".sluice/state.sqlite") && $0.contains("not a valid SQLite database") })
        #expect(try Data(contentsOf: URL(fileURLWithPath: root + "/.sluice/state.sqlite")) == Data(repeating: 0x42, count: 8192))
    }
}

/// Backfills and the scheduler on the samples.
@Suite(.serialized) struct BackfillAndScheduleTests {
    static func sluice(_ root: String, _ arguments: [String], env extra: [String: String] = [:]) throws -> TestSupport.ProcessResult {
        var env = ProcessInfo.processInfo.environment
        for (k, v) in extra { env[k] = v }
        return try TestSupport.run(TestSupport.sluiceExecutable, arguments, cwd: root, environment: env)
    }

    @Test func aBackfillRunTwiceLeavesTheSameRows() throws {
        let root = try EndToEndTests.copyProject()
        defer { try? FileManager.default.removeItem(atPath: root) }
        #expect(try Self.sluice(root, ExactlyOnceTests.backfill + ["--parallel", "3"]).status == 0)
        try ExactlyOnceTests.checkSinks(root)
        #expect(try Self.sluice(root, ExactlyOnceTests.backfill).status == 0)
        try ExactlyOnceTests.checkSinks(root)
    }

    @Test func replaceAfterAChangedTransformLeavesOnlyTheNewValues() throws {
        let root = try EndToEndTests.copyProject()
        defer { try? FileManager.default.removeItem(atPath: root) }
        #expect(try Self.sluice(root, ExactlyOnceTests.backfill).status == 0)
        let file = root + "/Pipelines/signup_attempts.yml"
        let text = try String(contentsOfFile: file, encoding: .utf8)
        try text.replacingOccurrences(of: "load:\n", with: "  - kind: set\n    fields: {status: changed}\nload:\n")
            .write(toFile: file, atomically: true, encoding: .utf8)
        #expect(try Self.sluice(root, ExactlyOnceTests.backfill + ["--replace", "--parallel", "2"]).status == 0)
        var total = 0
        for d in ExactlyOnceTests.dates {
            let expected = CSVFormat().parse([UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(root)/Samples/expected/signup_attempts/\(d).csv"))))
            let actual = CSVFormat().parse([UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(root)/out/signup_attempts/\(d).csv"))))
            let status = actual[0].firstIndex(of: "status")!, key = actual[0].firstIndex(of: "record_key")!
            #expect(actual.count == expected.count)
            #expect(actual.dropFirst().allSatisfy { $0[status] == "changed" })
            #expect(Set(actual.dropFirst().map { $0[key] }) == Set(expected.dropFirst().map { $0[key] }))
            total += actual.count - 1
        }
        let rows = try SQLiteTableLoader.readTable(databasePath: root + "/.sluice/warehouse.sqlite", table: "signup_attempts",
                                                   schema: try Project.load(root: root).pipeline(at: file).1.loaders[0].loader.schema)
        #expect(rows.count == total)
        #expect(rows.allSatisfy { $0[17] == .string("changed") })
    }

    /// Four processes started together on a state store that does not exist yet all open
    /// it: the version check read the store outside the migration lock, through a schema
    /// loaded before another process created it ("no such table: grdb_migrations", 5 in
    /// 80 such starts of a release build).
    @Test func processesStartingTogetherOnANewStoreAllOpenIt() async throws {
        let root = try EndToEndTests.copyProject()
        defer { try? FileManager.default.removeItem(atPath: root) }
        for round in 0..<60 {
            try? FileManager.default.removeItem(atPath: root + "/.sluice")
            let results = try await withThrowingTaskGroup(of: TestSupport.ProcessResult.self) { group in
                for _ in 0..<4 { group.addTask { try Self.sluice(root, ["status"]) } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            for r in results { #expect(r.status == 0, "round \(round): \(r.stderr)") }
        }
    }

    /// Two `schedule --once` processes started together on one state store: each due
    /// partition runs once; after downtime, missed fires are caught up, once.
    @Test func twoSchedulersOnOneStoreRunEachDuePartitionOnce() async throws {
        let root = try EndToEndTests.copyProject()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let file = root + "/Pipelines/signup_attempts.yml"
        try String(contentsOfFile: file, encoding: .utf8).replacingOccurrences(of: "schedule: \"*/5 * * * *\"", with: "schedule: \"0 0 * * *\"")
            .write(toFile: file, atomically: true, encoding: .utf8)
        func both(now: String) async throws {
            let env = ["SLUICE_NOW": now]
            async let a = Task.detached { try Self.sluice(root, ["schedule", "--once"], env: env) }.value
            async let b = Task.detached { try Self.sluice(root, ["schedule", "--once"], env: env) }.value
            let (ra, rb) = try await (a, b)
            #expect(ra.status == 0, "\(ra.stderr)")
            #expect(rb.status == 0, "\(rb.stderr)")
        }
        try await both(now: "2026-11-19T00:00:30Z")
        try await both(now: "2026-11-21T00:00:30Z")
        let state = try SQLiteStateStore(path: root + "/.sluice/state.sqlite")
        let runs = try state.runs(pipeline: "signup_attempts", limit: 100)
        var perPartition: [String: Int] = [:]
        for r in runs { perPartition[r.partition, default: 0] += 1 }
        // First pass: the fire of 11-19 00:00 runs 11-19. Second: the fires of 11-20 and
        // 11-21 run 11-19 (the previous fire's partition, to finish it), 11-20 and 11-21.
        #expect(perPartition == ["2026-11-19": 2, "2026-11-20": 1, "2026-11-21": 1], "\(perPartition)")
        #expect(runs.allSatisfy { $0.status == "succeeded" })
        #expect(try state.lastFire(pipeline: "signup_attempts") == Timestamp.parse("2026-11-21T00:00:00Z"))
    }

    @Test func aBrokenPipelineDoesNotStopTheOthers() throws {
        let root = try EndToEndTests.copyProject()
        defer { try? FileManager.default.removeItem(atPath: root) }
        try "name: broken\nschedule: \"* * * * *\"\nextract: {kind: nope}\nload: []\n".write(toFile: root + "/Pipelines/broken.yml", atomically: true, encoding: .utf8)
        let r = try Self.sluice(root, ["schedule", "--once"], env: ["SLUICE_NOW": "2026-11-20T12:00:30Z"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("Pipelines/broken.yml"))
        let state = try SQLiteStateStore(path: root + "/.sluice/state.sqlite")
        #expect(try state.runs(pipeline: "signup_attempts").map(\.partition) == ["2026-11-20"])
    }
}
