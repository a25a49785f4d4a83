import Foundation
import SluiceCore
import SluiceFiles
import SluiceTestSupport
import Testing

/// The signup pipeline into the BigQuery emulator (bqemulator on DuckDB), read back by an
/// independent Python reader (tables.get + tabledata.list) and compared with the samples'
/// expected rows (from their independent generator): every row present, none twice —
/// on a plain run, through an outage of the emulator in the middle of the run, and after
/// the loader was killed with SIGKILL while requests were in flight.
@Suite(.serialized) struct EmulatorTests {
    static let dates = ["2026-11-18", "2026-11-19", "2026-11-20"]
    static let backfill = ["backfill", "Pipelines/signup_attempts.yml", "--from", "2026-11-18", "--to", "2026-11-20", "--target", "emulator"]

    /// A copy of the project with an `emulator` target.
    static func project(_ emulator: BigQueryEmulator, dataset: String, settings: String = "") throws -> String {
        let root = try TestSupport.scratchDirectory("bq-project")
        for item in ["Schemas", "Samples"] {
            try FileManager.default.copyItem(atPath: TestSupport.repoRoot + "/" + item, toPath: root + "/" + item)
        }
        try FileManager.default.createDirectory(atPath: root + "/Pipelines", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: TestSupport.repoRoot + "/Pipelines/signup_attempts.yml", toPath: root + "/Pipelines/signup_attempts.yml")
        try """
            default_target: local
            targets:
              local:
                kind: sqlite
                path: .sluice/warehouse.sqlite
              emulator:
                kind: bigquery
                project: \(emulator.project)
                dataset: \(dataset)
                location: US
                endpoint: \(emulator.endpoint)
            \(settings)
            state:
              kind: sqlite
              path: .sluice/state.sqlite
            """.write(toFile: root + "/sluice.yml", atomically: true, encoding: .utf8)
        return root
    }

    static func sluice(_ root: String, _ arguments: [String], crashAt: String? = nil) throws -> TestSupport.ProcessResult {
        var env = ProcessInfo.processInfo.environment
        env["SLUICE_CRASH_AT"] = crashAt
        return try TestSupport.run(TestSupport.sluiceExecutable, arguments, cwd: root, environment: env)
    }

    /// The expected rows of the three days by record key, as text (NULL as nil).
    static func expected(_ root: String, dates: [String] = dates) throws -> [String: [String: String?]] {
        var out: [String: [String: String?]] = [:]
        for d in dates {
            let rows = CSVFormat().parse([UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(root)/Samples/expected/signup_attempts/\(d).csv"))))
            guard let header = rows.first?.map({ $0 ?? "" }) else { continue }
            for r in rows.dropFirst() {
                var row: [String: String?] = [:]
                for (name, value) in zip(header, r) { row[name] = value }
                if let key = row["record_key"] ?? nil { out[key] = row }
            }
        }
        return out
    }

    /// The table holds exactly the expected rows, each once.
    static func checkTable(_ emulator: BigQueryEmulator, dataset: String, root: String, dates: [String] = dates,
                           sourceLocation: SourceLocation = #_sourceLocation) throws {
        let expected = try expected(root, dates: dates)
        let rows = try emulator.rows(dataset: dataset, table: "signup_attempts")
        let keys = rows.compactMap { $0["record_key"] ?? nil }
        #expect(expected.count > 700 * dates.count, sourceLocation: sourceLocation)
        #expect(rows.count == expected.count, "\(rows.count) rows in BigQuery, expected \(expected.count)", sourceLocation: sourceLocation)
        #expect(Set(keys).count == keys.count, "\(keys.count - Set(keys).count) rows twice", sourceLocation: sourceLocation)
        #expect(Set(keys) == Set(expected.keys), "\(Set(expected.keys).subtracting(keys).count) rows missing", sourceLocation: sourceLocation)
        var differing = 0
        for row in rows {
            guard let key = row["record_key"] ?? nil, let want = expected[key] else { continue }
            for (column, value) in want {
                var got = row[column] ?? nil
                if column == "timestamp", let g = got, let micros = Int64(g) { got = Timestamp.format(micros) }
                if got != value, !(got == nil && value == "") { differing += 1; break }
            }
        }
        #expect(differing == 0, "\(differing) rows differ from the expected ones", sourceLocation: sourceLocation)
    }

    /// The harness starts an emulator that has not answered in time again, on the same
    /// port and data: with no time to answer, each start is given up (and logged), the
    /// last one's failure is thrown (and its process killed); then a start with time answers.
    @Test func anEmulatorThatDoesNotAnswerIsStartedAgain() async throws {
        let emulator = try BigQueryEmulator()
        defer { emulator.kill() }
        await #expect(throws: TestSupport.ReferenceError.self) {
            try await emulator.start(answerWithin: .zero, attempts: 2)
        }
        #expect(emulator.log.components(separatedBy: "starting again").count - 1 == 1)
        try await emulator.start() // throws unless it answers
    }

    @Test func signupRowsAreLoadedOnce() async throws {
        let emulator = try BigQueryEmulator()
        try await emulator.start()
        defer { emulator.kill() }
        let root = try Self.project(emulator, dataset: "plain")
        let r = try Self.sluice(root, Self.backfill)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.output.contains("buffered 0"), "\(r.output)")
        try Self.checkTable(emulator, dataset: "plain", root: root)
        // A second backfill sends nothing again (the ledger knows every key).
        let again = try Self.sluice(root, Self.backfill)
        #expect(again.status == 0, "\(again.stderr)")
        try Self.checkTable(emulator, dataset: "plain", root: root)
        await emulator.stop()
    }

    /// The emulator is killed while the run of one day streams (small requests, a small
    /// buffer so that the extract waits), kept down for a few seconds, and started again on
    /// its DuckDB file: the run finishes by itself and every row is there once.
    @Test func outageInTheMiddleOfARunLosesNothing() async throws {
        let emulator = try BigQueryEmulator()
        try await emulator.start()
        defer { emulator.kill() }
        let root = try Self.project(emulator, dataset: "outage", settings: """
                max_rows: 10
                max_in_flight: 1
                buffer_rows: 40
                flush_ms: 20
                retry_max_ms: 400
                request_timeout_s: 5
            """)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: TestSupport.sluiceExecutable)
        p.arguments = ["run", "Pipelines/signup_attempts.yml", "--date", "2026-11-19", "--target", "emulator"]
        p.currentDirectoryURL = URL(fileURLWithPath: root)
        let errFile = root + "/stderr.txt", outFile = root + "/stdout.txt"
        _ = FileManager.default.createFile(atPath: errFile, contents: nil)
        _ = FileManager.default.createFile(atPath: outFile, contents: nil)
        p.standardError = FileHandle(forWritingAtPath: errFile)
        p.standardOutput = FileHandle(forWritingAtPath: outFile)
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        // Wait until BigQuery acknowledged rows (the ledger of the state store, all its
        // tables, runs' blocks by their 16-byte keys, read with Python's sqlite3), then take BigQuery away. The emulator
        // itself is not polled: a request of ours beside the loader's can wedge its
        // single DuckDB connection.
        let count = "import sqlite3,sys; c=sqlite3.connect('file:'+sys.argv[1]+'?mode=ro', uri=True, timeout=5); " +
            "print(c.execute(\"SELECT (SELECT COUNT(*) FROM (SELECT sink_id FROM ledger UNION ALL SELECT sink_id FROM ledger_recent) l " +
            "JOIN ledger_sinks s ON s.id = l.sink_id WHERE s.sink LIKE 'bigquery %') + (SELECT coalesce(sum(length(b.keys) / 16), 0) " +
            "FROM ledger_run_blocks b JOIN ledger_runs r ON r.id = b.run JOIN ledger_sinks s ON s.id = r.sink_id WHERE s.sink LIKE 'bigquery %')\").fetchone()[0])"
        let deadline = ContinuousClock.now + .seconds(90)
        var arrived = 0
        while arrived < 20, ContinuousClock.now < deadline, p.isRunning {
            let r = try TestSupport.run(TestSupport.python, ["-c", count, root + "/.sluice/state.sqlite"])
            arrived = Int(r.output.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(arrived >= 20, "no rows arrived before the outage: \((try? String(contentsOfFile: errFile, encoding: .utf8)) ?? "")")
        // A hard outage: the emulator is killed (its DuckDB file keeps what it acknowledged).
        emulator.kill()
        try await Task.sleep(for: .seconds(4))
        #expect(p.isRunning, "the run ended during the outage: \((try? String(contentsOfFile: errFile, encoding: .utf8)) ?? "")")
        try await emulator.start()
        while p.isRunning { try await Task.sleep(for: .milliseconds(50)) }
        let err = (try? String(contentsOfFile: errFile, encoding: .utf8)) ?? ""
        let out = (try? String(contentsOfFile: outFile, encoding: .utf8)) ?? ""
        #expect(p.terminationStatus == 0, "\(err)")
        #expect(err.contains("retrying"), "no retry was logged: the outage did not happen during the run\n\(err)")
        #expect(out.contains("buffered 0"), "\(out)")
        try Self.checkTable(emulator, dataset: "outage", root: root, dates: ["2026-11-19"])
        await emulator.stop()
    }

    /// BigQuery is down for a whole run: the run keeps every row in the durable buffer
    /// (summary and status say how many), and the partitions' next runs send them.
    @Test func outageLongerThanTheRunKeepsRowsInTheBuffer() async throws {
        let emulator = try BigQueryEmulator()
        defer { emulator.kill() }
        let root = try Self.project(emulator, dataset: "down", settings: """
                drain_timeout_s: 2
                retry_max_ms: 300
            """)
        let r = try Self.sluice(root, ["run", "Pipelines/signup_attempts.yml", "--date", "2026-11-19", "--target", "emulator"])
        #expect(r.status == 0, "\(r.stderr)")
        // Every row of the day waits: as many as the expected rows of 2026-11-19.
        let day = try Self.expected(root).values.filter { ($0["timestamp"] ?? nil)?.hasPrefix("2026-11-19") == true }.count
        #expect(day > 500)
        #expect(r.output.contains(", loaded 0, ") && r.output.contains(", buffered \(day) in "), "\(r.output)")
        let status = try Self.sluice(root, ["status", "signup_attempts"])
        #expect(status.output.contains("buffer signup_attempts 2026-11-19 bigquery \(emulator.project).down.signup_attempts: \(day) rows waiting"), "\(status.output)")
        try await emulator.start()
        // BigQuery is back; the next runs wait as long as it takes to drain the buffer.
        let yml = root + "/sluice.yml"
        try String(contentsOfFile: yml, encoding: .utf8).replacingOccurrences(of: "drain_timeout_s: 2", with: "drain_timeout_s: 300")
            .write(toFile: yml, atomically: true, encoding: .utf8)
        let r2 = try Self.sluice(root, Self.backfill)
        #expect(r2.status == 0, "\(r2.stderr)")
        try Self.checkTable(emulator, dataset: "down", root: root)
        let after = try Self.sluice(root, ["status", "signup_attempts"])
        #expect(!after.output.contains("rows waiting"), "\(after.output)")
        await emulator.stop()
    }

    /// SIGTERM while BigQuery is down and the buffer is full ends the run at once (not after
    /// `drain_timeout_s` of waiting for room and again for the drain), with exit status 0
    /// and the rows read so far waiting in the buffer; once BigQuery is back, the next
    /// runs load every row once.
    @Test func aStopDuringAnOutageEndsTheRunAtOnce() async throws {
        let emulator = try BigQueryEmulator()
        defer { emulator.kill() }
        let root = try Self.project(emulator, dataset: "stop", settings: """
                buffer_rows: 100
                drain_timeout_s: 90
                retry_max_ms: 300
            """)
        let started = ContinuousClock.now
        let r = try await TestSupport.runAndSignal(TestSupport.sluiceExecutable, ["run", "Pipelines/signup_attempts.yml", "--date", "2026-11-19",
                                                                                  "--target", "emulator"],
                                                   cwd: root, after: .seconds(4), signal: SIGTERM)
        let took = ContinuousClock.now - started
        #expect(!r.signaled && r.status == 0, "\(r.stderr)")
        #expect(took < .seconds(60), "the run took \(took) after its stop")
        #expect(r.stderr.contains("rows still wait for BigQuery (stopping)"), "\(r.stderr)")
        let status = try Self.sluice(root, ["status", "signup_attempts"])
        #expect(status.output.contains("buffer signup_attempts 2026-11-19 bigquery \(emulator.project).stop.signup_attempts: "), "\(status.output)")
        try await emulator.start()
        let r2 = try Self.sluice(root, Self.backfill)
        #expect(r2.status == 0, "\(r2.stderr)")
        try Self.checkTable(emulator, dataset: "stop", root: root)
        await emulator.stop()
    }

    /// `sluice` kills itself with SIGKILL right after BigQuery accepted a request and before
    /// the state store knows it (`bigquery.inserted`), or right after rows entered the
    /// buffer (`bigquery.buffered`); the re-run checks the buffered rows by key with a
    /// query, sends only the missing ones, and every row is there once.
    @Test(arguments: ["bigquery.inserted#3", "bigquery.buffered#2"])
    func crashWhileRequestsAreInFlight(_ point: String) async throws {
        let emulator = try BigQueryEmulator()
        try await emulator.start()
        defer { emulator.kill() }
        let dataset = "crash_" + point.replacingOccurrences(of: ".", with: "_").replacingOccurrences(of: "#", with: "_")
        let root = try Self.project(emulator, dataset: dataset, settings: "    max_rows: 200\n    max_in_flight: 4\n")
        let crashed = try Self.sluice(root, Self.backfill, crashAt: point)
        #expect(crashed.signaled && crashed.status == SIGKILL, "the crash point \(point) was not reached: \(crashed.output)")
        let r = try Self.sluice(root, Self.backfill)
        #expect(r.status == 0, "\(r.stderr)")
        // The re-run checked the rows left in the buffer by key before sending any again.
        #expect(r.stderr.contains("rows of an earlier run were waiting"), "\(r.stderr)")
        if point.hasPrefix("bigquery.inserted") {
            #expect(r.stderr.contains(" found in BigQuery") && !r.stderr.contains("waiting: 0 found"), "\(r.stderr)")
        }
        try Self.checkTable(emulator, dataset: dataset, root: root)
        await emulator.stop()
    }
}
