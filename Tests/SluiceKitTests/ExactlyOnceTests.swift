import Foundation
import SluiceCore
import SluiceFiles
import SluiceKit
import SluiceSQLite
import SluiceTestSupport
import Testing

/// Every input record reaches each sink exactly once, whatever happens to the process:
/// `sluice` is killed with SIGKILL at many points (deterministic crash points and
/// random moments), re-run until it finishes, and the CSV files and the warehouse table
/// are compared with the expected output of the samples (from their independent
/// generator): every row present, none twice.
@Suite(.serialized) struct ExactlyOnceTests {
    static let dates = ["2026-11-18", "2026-11-19", "2026-11-20"]

    /// A copy of the project whose signup pipeline commits every `commitEvery` records.
    static func project(commitEvery: Int) throws -> String {
        let root = try EndToEndTests.copyProject()
        let file = root + "/Pipelines/signup_attempts.yml"
        let text = try String(contentsOfFile: file, encoding: .utf8)
        try text.replacingOccurrences(of: "partition: day\n", with: "partition: day\ncommit_every: \(commitEvery)\n")
            .write(toFile: file, atomically: true, encoding: .utf8)
        return root
    }

    static func sluice(_ root: String, _ arguments: [String], crashAt: String? = nil) throws -> TestSupport.ProcessResult {
        var env = ProcessInfo.processInfo.environment
        env["SLUICE_CRASH_AT"] = crashAt
        env["SLUICE_LEDGER_RECENT_KEYS"] = Self.recentKeys
        return try TestSupport.run(TestSupport.sluiceExecutable, arguments, cwd: root, environment: env)
    }

    /// The ledger's recent keys are merged past this many (the default is 4M): merges
    /// every few commits of the samples, so that crashes fall before, in and after them.
    static let recentKeys = "400"

    static let backfill = ["backfill", "Pipelines/signup_attempts.yml", "--from", "2026-11-18", "--to", "2026-11-20"]

    /// Rows as sorted multisets, so that "every row once" is one comparison.
    static func csvRows(_ path: String) throws -> [String] {
        let rows = CSVFormat().parse([UInt8](try Data(contentsOf: URL(fileURLWithPath: path))))
        return rows.dropFirst().map { $0.map { $0.map { "'" + $0 } ?? "NULL" }.joined(separator: "|") }.sorted()
    }

    /// Checks both sinks hold exactly the expected rows, each once.
    static func checkSinks(_ root: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        var all: [String] = []
        for d in dates {
            let expected = try csvRows("\(root)/Samples/expected/signup_attempts/\(d).csv")
            let actual = try csvRows("\(root)/out/signup_attempts/\(d).csv")
            #expect(actual.count == expected.count, "\(d): \(actual.count) rows, expected \(expected.count)", sourceLocation: sourceLocation)
            #expect(actual == expected, "\(d): CSV rows differ", sourceLocation: sourceLocation)
            all += expected
        }
        let project = try Project.load(root: root)
        let schema = try project.pipeline(at: root + "/Pipelines/signup_attempts.yml").1.loaders[0].loader.schema
        let table = try SQLiteTableLoader.readTable(databasePath: root + "/.sluice/warehouse.sqlite", table: "signup_attempts", schema: schema)
        let warehouse = table.map { $0.map { CSVFormat.text($0).map { "'" + $0 } ?? "NULL" }.joined(separator: "|") }.sorted()
        #expect(warehouse == all.sorted(), "warehouse rows differ (\(warehouse.count) vs \(all.count))", sourceLocation: sourceLocation)
    }

    /// Crash points: after a batch reached the sinks, after the CSV write before its fsync,
    /// inside the warehouse commit, after all sinks committed but before the state, after
    /// the state commit, and inside the merge of the ledger's recent keys (after its
    /// statements, before its commit); each at several occurrences.
    static let crashes: [String] = [
        "batch.written#1", "batch.written#4", "batch.written#9", "batch.written#15",
        "csv.written#1", "csv.written#3", "csv.written#7",
        "warehouse.committed#1", "warehouse.committed#5", "warehouse.committed#11",
        "sinks.committed#2", "sinks.committed#6", "sinks.committed#13",
        "state.committed#1", "state.committed#8",
        "ledger.merged#1", "ledger.merged#3",
    ]

    @Test(arguments: crashes)
    func killedAtACrashPointThenRerunDeliversEveryRecordOnce(crash: String) throws {
        let root = try Self.project(commitEvery: 150)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let killed = try Self.sluice(root, Self.backfill, crashAt: crash)
        #expect(killed.signaled && killed.status == SIGKILL, "\(crash) was not reached: \(killed.stderr)")
        // A second crash at the same point of the next attempt, then a clean run.
        _ = try Self.sluice(root, Self.backfill, crashAt: crash)
        let done = try Self.sluice(root, Self.backfill)
        #expect(done.status == 0, "\(done.stderr)")
        try Self.checkSinks(root)
        // And once more: nothing new, nothing twice.
        #expect(try Self.sluice(root, Self.backfill).status == 0)
        try Self.checkSinks(root)
    }

    @Test func killedAtRandomMomentsThenRerunDeliversEveryRecordOnce() async throws {
        let root = try Self.project(commitEvery: 100)
        defer { try? FileManager.default.removeItem(atPath: root) }
        var rng = SplitMix64(seed: 7)
        var kills = 0
        for _ in 0..<12 {
            let delay = Duration.milliseconds(Int(rng.next() % 400) + 20)
            var env = ProcessInfo.processInfo.environment
            env["SLUICE_LEDGER_RECENT_KEYS"] = Self.recentKeys
            let r = try await TestSupport.runAndSignal(TestSupport.sluiceExecutable, Self.backfill, cwd: root, environment: env,
                                                       after: delay, signal: SIGKILL)
            if r.signaled { kills += 1 } else { #expect(r.status == 0, "\(r.stderr)") }
        }
        #expect(kills > 0, "no run was killed; lengthen the input or shorten the delays")
        #expect(try Self.sluice(root, Self.backfill).status == 0)
        try Self.checkSinks(root)
    }

    @Test(arguments: ["csv.rename#1", "warehouse.committed#1", "sinks.committed#1", "csv.written#2"])
    func aReplaceKilledMidwayIsFinishedByTheNextRun(crash: String) throws {
        let root = try Self.project(commitEvery: 150)
        defer { try? FileManager.default.removeItem(atPath: root) }
        #expect(try Self.sluice(root, Self.backfill).status == 0)
        let killed = try Self.sluice(root, Self.backfill + ["--replace"], crashAt: crash)
        #expect(killed.signaled, "\(crash) was not reached")
        // No temporary file is left visible as output, and a plain run finishes the replace.
        #expect(try Self.sluice(root, Self.backfill).status == 0)
        try Self.checkSinks(root)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: root + "/out/signup_attempts").filter { !$0.hasSuffix(".csv") }
        #expect(leftovers.isEmpty, "\(leftovers)")
    }

    /// A full disk, played by a file-size limit (`ulimit -f`): writes fail in the middle of
    /// a run; nothing that was committed before is lost, and a later run finishes the job.
    @Test(arguments: [200, 700, 1500])
    func aFullDiskLosesNothingAlreadyCommitted(blocks: Int) throws {
        let root = try Self.project(commitEvery: 150)
        defer { try? FileManager.default.removeItem(atPath: root) }
        // Create the state store first, so that the limit hits the sinks.
        #expect(try Self.sluice(root, ["status"]).status == 0)
        let command = "ulimit -f \(blocks); exec '\(TestSupport.sluiceExecutable)' " + Self.backfill.joined(separator: " ")
        let full = try TestSupport.run("/bin/bash", ["-c", command], cwd: root)
        #expect(full.signaled || full.status != 0, "the limit was not reached")
        #expect(try Self.sluice(root, Self.backfill).status == 0)
        try Self.checkSinks(root)
    }

    @Test func sigtermFinishesTheBatchCommitsAndExitsZero() async throws {
        let root = try Self.project(commitEvery: 200)
        defer { try? FileManager.default.removeItem(atPath: root) }
        // A bigger day so that the signal arrives mid-run.
        let big = root + "/Samples/logs/api/2026-11-18/api-9-big.jsonl"
        // The samples hold invalid UTF-8 on purpose: take the first good line.
        let line = try Data(contentsOf: URL(fileURLWithPath: root + "/Samples/logs/api/2026-11-18/api-1.jsonl"))
            .split(separator: 0x0A).compactMap { String(validating: $0, as: UTF8.self) }.first { $0.hasPrefix("{\"timestamp\"") }!
        var text = ""
        for i in 0..<60_000 {
            text += line.replacingOccurrences(of: "\"request_id\":\"", with: "\"request_id\":\"big-\(i)-") + "\n"
        }
        try text.write(toFile: big, atomically: true, encoding: .utf8)
        let r = try await TestSupport.runAndSignal(TestSupport.sluiceExecutable, Self.backfill, cwd: root, after: .milliseconds(700), signal: SIGTERM)
        #expect(!r.signaled && r.status == 0, "\(r.status) \(r.stderr)")
        let state = try SQLiteStateStore(path: root + "/.sluice/state.sqlite")
        #expect(try state.runs(pipeline: "signup_attempts").allSatisfy { $0.status == "succeeded" })
        #expect(try Self.sluice(root, Self.backfill).status == 0)
        let rows = try Self.csvRows(root + "/out/signup_attempts/2026-11-18.csv")
        let expected = try Self.csvRows(root + "/Samples/expected/signup_attempts/2026-11-18.csv")
        #expect(rows.count == expected.count + 60_000)
        #expect(Set(rows).count == rows.count)
    }
}

