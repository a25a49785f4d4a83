import Foundation
import SluiceCore
import SluiceTestSupport
import Testing

/// The paths the emulator cannot show, against fake_bigquery.py (BigQuery's documented
/// response shapes), through the real `sluice` executable: whole-request failures retried,
/// oversized requests split, per-row `invalid` errors as dead letters with `stopped` rows
/// sent again, the OAuth flow, and table creation and schema checks.
@Suite(.serialized) struct FakeServerTests {
    static let rowCount = 60

    /// A project with one pipeline (60 records on 2026-11-18) and a `bq` target on the fake.
    static func project(endpoint: String, settings: String = "", keyFile: String? = nil, notes: [Int: String] = [:],
                        rowCount: Int = rowCount) throws -> String {
        let root = try TestSupport.scratchDirectory("bq-fake")
        for d in ["Pipelines", "Schemas", "in/2026-11-18"] {
            try FileManager.default.createDirectory(atPath: root + "/" + d, withIntermediateDirectories: true)
        }
        try """
            default_target: local
            targets:
              local:
                kind: sqlite
                path: .sluice/warehouse.sqlite
              bq:
                kind: bigquery
                project: sluice-test
                dataset: events_ds
                endpoint: \(endpoint)
            \(keyFile.map { "    credentials: \($0)\n" } ?? "")\(settings)
            """.write(toFile: root + "/sluice.yml", atomically: true, encoding: .utf8)
        try """
            name: events
            key: [id]
            extract:
              kind: jsonl
              path: "in/{date}/*"
              time: ts
            transform:
              - kind: select
                fields: {id: id, ts: ts, note: note, n: n}
            load:
              - kind: warehouse
                table: events
                schema: Schemas/events.json
            """.write(toFile: root + "/Pipelines/events.yml", atomically: true, encoding: .utf8)
        try """
            [
              {"name": "id", "type": "STRING", "mode": "REQUIRED"},
              {"name": "ts", "type": "TIMESTAMP", "mode": "REQUIRED"},
              {"name": "note", "type": "STRING"},
              {"name": "n", "type": "INTEGER"},
              {"name": "record_key", "type": "STRING", "mode": "REQUIRED"}
            ]
            """.write(toFile: root + "/Schemas/events.json", atomically: true, encoding: .utf8)
        var lines = ""
        for i in 0..<rowCount {
            let note = notes[i] ?? "note \(i) " + String(repeating: "x", count: i % 7 * 10)
            let ts = "2026-11-18T" + [10 + i / 3600, i / 60 % 60, i % 60].map { $0 < 10 ? "0\($0)" : "\($0)" }.joined(separator: ":") + "Z"
            lines += #"{"id":"e\#(i)","ts":"\#(ts)","note":"\#(note)","n":\#(i)}"# + "\n"
        }
        try lines.write(toFile: root + "/in/2026-11-18/a.jsonl", atomically: true, encoding: .utf8)
        return root
    }

    static func sluice(_ root: String, _ arguments: [String], environment: [String: String] = [:]) throws -> TestSupport.ProcessResult {
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "GOOGLE_APPLICATION_CREDENTIALS")
        for (k, v) in environment { env[k] = v }
        return try TestSupport.run(TestSupport.sluiceExecutable, arguments, cwd: root, environment: env)
    }

    static let run = ["run", "Pipelines/events.yml", "--date", "2026-11-18", "--target", "bq"]

    /// Record keys of the 60 records, as the reference computes them: every key the
    /// fake stored must be one of them, once.
    static func checkStoredOnce(_ server: FakeBigQuery, expected: Int, sourceLocation: SourceLocation = #_sourceLocation) {
        let stored = server.stored
        #expect(stored.count == expected, "stored \(stored.count) rows, expected \(expected)", sourceLocation: sourceLocation)
        #expect(Set(stored).count == stored.count, "a row was stored twice", sourceLocation: sourceLocation)
    }

    /// libcurl (and the ~30 libraries behind it) is opened by the first request, not
    /// mapped in every run: the dynamic loader's own log (glibc's `LD_DEBUG=files`) names
    /// it in a run to the `bq` target and not in the same run to the SQLite target, which
    /// names SQLite (so the log was read). libxml2 is opened by XML bodies alone.
    @Test func libcurlIsOpenedOnlyByARunThatSendsRequests() async throws {
        #if os(Linux)
        let dir = try TestSupport.scratchDirectory("bq-fake")
        let server = try FakeBigQuery(dir: dir, arguments: [])
        defer { server.stop() }
        let root = try Self.project(endpoint: server.endpoint)
        let localRoot = try Self.project(endpoint: server.endpoint)
        let local = try Self.sluice(localRoot, ["run", "Pipelines/events.yml", "--date", "2026-11-18"], environment: ["LD_DEBUG": "files"])
        #expect(local.output.contains("loaded \(Self.rowCount),"), "\(local.output)")
        #expect(local.status == 0, "\(local.stderr)")
        #expect(local.stderr.contains("file=libsqlite3"), "the loader's log was not read")
        #expect(!local.stderr.contains("libcurl"))
        #expect(!local.stderr.contains("libxml2"))
        let remote = try Self.sluice(root, Self.run, environment: ["LD_DEBUG": "files"])
        #expect(remote.status == 0, "\(remote.stderr)")
        #expect(remote.stderr.contains("file=libcurl.so"))
        #expect(!remote.stderr.contains("libxml2"))
        Self.checkStoredOnce(server, expected: Self.rowCount)
        #endif
    }

    @Test(arguments: ["503,429,500,502", "429,429,429,429,503"])
    func failedRequestsAreRetried(_ statuses: String) async throws {
        let dir = try TestSupport.scratchDirectory("bq-fake")
        let server = try FakeBigQuery(dir: dir, arguments: ["--fail", statuses])
        defer { server.stop() }
        let root = try Self.project(endpoint: server.endpoint, settings: "    retry_max_ms: 200\n    max_rows: 25\n")
        let r = try Self.sluice(root, Self.run)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.output.contains("loaded \(Self.rowCount), filtered 0, rejected 0, buffered 0"), "\(r.output)")
        let failures = statuses.split(separator: ",").compactMap { Int($0) }
        let seen = server.inserts.map { $0["status"] as? Int ?? 0 }
        #expect(Array(seen.prefix(failures.count)) == failures)
        #expect(seen.dropFirst(failures.count).allSatisfy { $0 == 200 })
        Self.checkStoredOnce(server, expected: Self.rowCount)
        #expect(server.inserts.allSatisfy { ($0["insertIds"] as? [String])?.count ?? 0 <= 25 })
        // After a 5xx the outcome is unknown: the keys were checked by query before the rows were sent again; not after a 429.
        let queries = try server.log().filter { ($0["path"] as? String)?.hasSuffix("/queries") == true }
        #expect(queries.count == failures.filter { $0 >= 500 }.count)
        #expect(server.inserts.allSatisfy { $0["skipInvalidRows"] as? Bool == false })
    }

    /// BigQuery stored the rows of a request but the answer was lost (the connection broke):
    /// the keys are checked by query, and the rows found are not sent again.
    @Test func rowsOfALostAnswerAreCheckedNotResent() async throws {
        let dir = try TestSupport.scratchDirectory("bq-fake")
        let server = try FakeBigQuery(dir: dir, arguments: ["--lose-answer", "1,3"])
        defer { server.stop() }
        let root = try Self.project(endpoint: server.endpoint, settings: "    retry_max_ms: 100\n    max_rows: 10\n")
        let r = try Self.sluice(root, Self.run)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.output.contains("loaded \(Self.rowCount), filtered 0, rejected 0, buffered 0"), "\(r.output)")
        #expect(server.inserts.filter { $0["status"] as? String == "lost" }.count == 2)
        Self.checkStoredOnce(server, expected: Self.rowCount)
        let found = try server.log().compactMap { $0["found"] as? Int }
        #expect(found.count == 2 && found.allSatisfy { $0 == 10 }, "\(found)")
    }

    @Test(arguments: [["--max-rows", "7"], ["--max-bytes", "1500"]])
    func oversizedRequestsAreSplit(_ limit: [String]) async throws {
        let dir = try TestSupport.scratchDirectory("bq-fake")
        let server = try FakeBigQuery(dir: dir, arguments: limit)
        defer { server.stop() }
        let root = try Self.project(endpoint: server.endpoint, settings: "    max_rows: 60\n    flush_ms: 1000\n    max_in_flight: 1\n")
        let r = try Self.sluice(root, Self.run)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.output.contains("loaded \(Self.rowCount),"), "\(r.output)")
        Self.checkStoredOnce(server, expected: Self.rowCount)
        let refused = server.inserts.filter { $0["status"] as? Int != 200 }
        #expect(!refused.isEmpty, "no request was too large: the test does not test splitting")
        for i in server.inserts where i["status"] as? Int == 200 {
            if limit[0] == "--max-rows" { #expect((i["insertIds"] as? [String])?.count ?? 0 <= 7) }
            else { #expect(i["bytes"] as? Int ?? 0 <= 1500) }
        }
    }

    @Test func invalidRowsBecomeDeadLettersAndStoppedRowsAreSentAgain() async throws {
        let dir = try TestSupport.scratchDirectory("bq-fake")
        let server = try FakeBigQuery(dir: dir, arguments: ["--invalid", "note=poison-value-17"])
        defer { server.stop() }
        let root = try Self.project(endpoint: server.endpoint, settings: "    max_rows: 20\n", notes: [17: "poison-value-17"])
        let r = try Self.sluice(root, Self.run)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.output.contains("read \(Self.rowCount), loaded \(Self.rowCount - 1), filtered 0, rejected 1, buffered 0"), "\(r.output)")
        Self.checkStoredOnce(server, expected: Self.rowCount - 1)
        #expect(server.inserts.flatMap { $0["invalid"] as? [String] ?? [] }.count == 1)
        // The request with the invalid row stored nothing (its other rows were `stopped`); they were sent again.
        #expect(server.inserts.contains { ($0["invalid"] as? [String])?.isEmpty == false && ($0["insertIds"] as? [String])?.count ?? 0 > 1 })
        let letters = try Self.sluice(root, ["status", "events", "--dead-letters"])
        #expect(letters.output.contains("in/2026-11-18/a.jsonl:18: warehouse: BigQuery refused the row: invalid at note: Cannot convert value <value> to integer: invalid digits in <value>."),
                "\(letters.output)")
        #expect(!letters.output.contains("poison") && !r.stderr.contains("poison"))
        // Dead letters are re-processed after a fix; the buffer is empty.
        let status = try Self.sluice(root, ["status", "events"])
        #expect(!status.output.contains("rows waiting"), "\(status.output)")
    }

    /// BigQuery was down when a day's run ended: its rows stay in the buffer. The pipeline's
    /// next scheduled fire (a later day) runs that day too, so the rows are sent once
    /// BigQuery is back, without a backfill.
    @Test func theSchedulerDrainsBufferedRowsOfEarlierPartitions() async throws {
        let dir = try TestSupport.scratchDirectory("bq-fake")
        let down = try FakeBigQuery(dir: dir, arguments: ["--fail", Array(repeating: "503", count: 400).joined(separator: ",")])
        defer { down.stop() }
        let root = try Self.project(endpoint: down.endpoint, settings: "    retry_max_ms: 50\n    drain_timeout_s: 1\n    max_rows: 20\n")
        let first = try Self.sluice(root, Self.run)
        #expect(first.output.contains("buffered \(Self.rowCount)"), "\(first.output)\n\(first.stderr)")
        #expect(down.stored.isEmpty)
        let waiting = try Self.sluice(root, ["status", "events"])
        #expect(waiting.output.contains("2026-11-18"), "\(waiting.output)")

        // BigQuery is back (at another address), the pipeline gets a schedule, bq becomes the default target.
        down.stop()
        let dir2 = try TestSupport.scratchDirectory("bq-fake")
        let back = try FakeBigQuery(dir: dir2)
        defer { back.stop() }
        let yml = try String(contentsOfFile: root + "/sluice.yml", encoding: .utf8)
            .replacingOccurrences(of: down.endpoint, with: back.endpoint)
            .replacingOccurrences(of: "default_target: local", with: "default_target: bq")
        try yml.write(toFile: root + "/sluice.yml", atomically: true, encoding: .utf8)
        let pipeline = try String(contentsOfFile: root + "/Pipelines/events.yml", encoding: .utf8)
        try ("schedule: \"0 0 * * *\"\n" + pipeline).write(toFile: root + "/Pipelines/events.yml", atomically: true, encoding: .utf8)

        let r = try Self.sluice(root, ["schedule", "--once"], environment: ["SLUICE_NOW": "2026-11-21T00:00:30Z"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.output.contains("2026-11-18"), "the buffered day was not run: \(r.output)")
        Self.checkStoredOnce(back, expected: Self.rowCount)
        let status = try Self.sluice(root, ["status", "events"])
        #expect(!status.output.contains("rows waiting"), "\(status.output)")
    }

    @Test func serviceAccountTokenIsUsedForEveryCall() async throws {
        let dir = try TestSupport.scratchDirectory("bq-fake")
        let server = try FakeBigQuery(dir: dir, arguments: ["--public-key", dir + "/pub.pem"])
        defer { server.stop() }
        let (keyFile, _) = try AuthTests.keyFile(dir, tokenURI: server.endpoint + "/token")
        let root = try Self.project(endpoint: server.endpoint, settings: "    max_rows: 10\n", keyFile: keyFile)
        let r = try Self.sluice(root, Self.run)
        #expect(r.status == 0, "\(r.stderr)")
        Self.checkStoredOnce(server, expected: Self.rowCount)
        let log = try server.log()
        #expect(log.filter { $0["path"] as? String == "/token" }.count == 1)
        #expect(log.filter { $0["status"] as? Int == 401 }.isEmpty)
        #expect(server.inserts.count >= 6)
        #expect(server.inserts.allSatisfy { $0["auth"] as? String == "Bearer ya29.fake-token-1" })
        #expect(!r.stderr.contains("ya29") && !r.output.contains("ya29"))
    }

    /// A fake BigQuery that answers 503 to every insert.
    static func unavailable() throws -> FakeBigQuery {
        try FakeBigQuery(dir: try TestSupport.scratchDirectory("bq-fake"),
                         arguments: ["--fail", Array(repeating: "503", count: 10_000).joined(separator: ",")])
    }

    /// BigQuery is back: the project points at a fake that takes rows instead of `down`,
    /// and the run again delivers every one of the `rows` once. The caller stops the fake.
    static func runAgainWhenBack(_ root: String, down: FakeBigQuery, rows: Int) throws -> FakeBigQuery {
        let up = try FakeBigQuery(dir: try TestSupport.scratchDirectory("bq-fake"))
        let yml = root + "/sluice.yml"
        try String(contentsOfFile: yml, encoding: .utf8).replacingOccurrences(of: down.endpoint, with: up.endpoint)
            .write(toFile: yml, atomically: true, encoding: .utf8)
        let r = try Self.sluice(root, Self.run)
        #expect(r.status == 0, "\(r.stderr)")
        Self.checkStoredOnce(up, expected: rows)
        return up
    }

    /// BigQuery answers 503 to every insert: the extract stops at the buffer's limit
    /// (back-pressure) and the run fails after the drain timeout without losing a row; once
    /// BigQuery takes rows again, the re-run delivers all of them, once.
    @Test func fullBufferHoldsTheExtractAndDropsNothing() async throws {
        let down = try Self.unavailable()
        let rows = 5_000
        let root = try Self.project(endpoint: down.endpoint, settings: "    buffer_rows: 10\n    max_rows: 5\n    drain_timeout_s: 2\n    retry_max_ms: 100\n",
                                    rowCount: rows)
        let r = try Self.sluice(root, Self.run)
        down.stop()
        #expect(r.status == 1)
        #expect(r.stderr.contains("BigQuery took no rows for 2.0 seconds while"), "\(r.stderr)")
        let status = try Self.sluice(root, ["status", "events"])
        // The extract stopped at the limit: the first batch (1,024 records, a run's batch: `Commands.batchSize`) entered the buffer, no more.
        #expect(status.output.contains("buffer events 2026-11-18 bigquery sluice-test.events_ds.events: 1024 rows waiting"), "\(status.output)")
        #expect(down.stored.isEmpty)

        let up = try Self.runAgainWhenBack(root, down: down, rows: rows)
        defer { up.stop() }
        // The rows left by the failed run were checked by key first (none had arrived).
        #expect(try up.log().contains { $0["asked"] as? Int ?? 0 > 0 })
        let after = try Self.sluice(root, ["status", "events"])
        #expect(!after.output.contains("rows waiting"), "\(after.output)")
    }

    /// SIGTERM while the extract waits for room in a full buffer (BigQuery answers 503 to
    /// every insert) ends the run at once, with exit status 0: not after `drain_timeout_s`
    /// of waiting for room, and again for the drain. The batch in hand entered the buffer
    /// first; the re-run, once BigQuery takes rows, delivers every row once.
    @Test func aStopWhileTheBufferIsFullEndsTheRunAtOnce() async throws {
        let down = try Self.unavailable()
        let rows = 5_000
        let root = try Self.project(endpoint: down.endpoint, settings: "    buffer_rows: 10\n    max_rows: 5\n    drain_timeout_s: 90\n    retry_max_ms: 100\n",
                                    rowCount: rows)
        let started = ContinuousClock.now
        let r = try await TestSupport.runAndSignal(TestSupport.sluiceExecutable, Self.run, cwd: root, after: .seconds(3), signal: SIGTERM)
        let took = ContinuousClock.now - started
        down.stop()
        #expect(!r.signaled && r.status == 0, "\(r.stderr)")
        #expect(took < .seconds(60), "the run took \(took) after its stop")
        // The run ended part of the way through the day (a few batches: the one in hand
        // and those the runner had ready), every row it read waiting in the buffer.
        let status = try Self.sluice(root, ["status", "events"])
        let waiting = status.output.firstMatch(of: /events_ds\.events: (\d+) rows waiting/).flatMap { Int($0.1) } ?? 0
        #expect(waiting >= 1024 && waiting < rows && waiting % 1024 == 0, "\(status.output)")
        #expect(status.output.contains("read \(waiting), loaded 0, filtered 0, rejected 0, buffered \(waiting) in "), "\(status.output)")
        #expect(down.stored.isEmpty)

        let up = try Self.runAgainWhenBack(root, down: down, rows: rows)
        defer { up.stop() }
    }

    @Test func missingTableIsCreatedWithDayPartitions() async throws {
        let dir = try TestSupport.scratchDirectory("bq-fake")
        let server = try FakeBigQuery(dir: dir)
        defer { server.stop() }
        let root = try Self.project(endpoint: server.endpoint)
        let r = try Self.sluice(root, Self.run)
        #expect(r.status == 0, "\(r.stderr)")
        let created = try server.log().first { $0["table"] != nil }?["table"] as? [String: Any]
        let partitioning = created?["timePartitioning"] as? [String: Any]
        #expect(partitioning?["type"] as? String == "DAY")
        #expect(partitioning?["field"] as? String == "ts")
        let fields = (created?["schema"] as? [String: Any])?["fields"] as? [[String: Any]] ?? []
        #expect(fields.map { $0["name"] as? String ?? "" } == ["id", "ts", "note", "n", "record_key"])
        #expect(fields.map { $0["mode"] as? String ?? "" } == ["REQUIRED", "REQUIRED", "NULLABLE", "NULLABLE", "REQUIRED"])
    }

    static let existing = #"[{"name":"id","type":"STRING","mode":"REQUIRED"},{"name":"ts","type":"TIMESTAMP","mode":"REQUIRED"},{"name":"record_key","type":"STRING","mode":"REQUIRED"},{"name":"extra","type":"STRING","mode":"NULLABLE"}"#

    @Test(arguments: [
        (existing + #",{"name":"note","type":"INT64"},{"name":"n","type":"INTEGER"}]"#, "",
         "does not match Schemas/events.json: column note is INTEGER in the table, STRING in the schema file"),
        (existing + "]", "", "lacks columns note, n of Schemas/events.json; add them, or set `allow_new_columns: true`"),
        (existing + #",{"name":"note","type":"STRING"},{"name":"n","type":"INTEGER"},{"name":"must","type":"STRING","mode":"REQUIRED"}]"#, "",
         "column must is REQUIRED in the table and not in the schema file"),
    ])
    func differingTablesFailClearly(_ schema: String, _ settings: String, _ message: String) async throws {
        let dir = try TestSupport.scratchDirectory("bq-fake")
        try schema.write(toFile: dir + "/schema.json", atomically: true, encoding: .utf8)
        let server = try FakeBigQuery(dir: dir, arguments: ["--table-schema", dir + "/schema.json"])
        defer { server.stop() }
        let root = try Self.project(endpoint: server.endpoint, settings: settings)
        let r = try Self.sluice(root, Self.run)
        #expect(r.status == 1)
        #expect(r.stderr.contains(message), "\(r.stderr)")
        #expect(server.inserts.isEmpty)
    }

    @Test func newColumnsAreAddedAsNullableWhenAllowed() async throws {
        let dir = try TestSupport.scratchDirectory("bq-fake")
        try (Self.existing + "]").write(toFile: dir + "/schema.json", atomically: true, encoding: .utf8)
        let server = try FakeBigQuery(dir: dir, arguments: ["--table-schema", dir + "/schema.json"])
        defer { server.stop() }
        let root = try Self.project(endpoint: server.endpoint, settings: "    allow_new_columns: true\n")
        let r = try Self.sluice(root, Self.run)
        #expect(r.status == 0, "\(r.stderr)")
        let patch = try server.log().first { $0["patch"] != nil }?["patch"] as? [String: Any]
        let fields = (patch?["schema"] as? [String: Any])?["fields"] as? [[String: Any]] ?? []
        #expect(fields.map { $0["name"] as? String ?? "" } == ["id", "ts", "record_key", "extra", "note", "n"])
        #expect(fields.suffix(2).allSatisfy { $0["mode"] as? String == "NULLABLE" })
        Self.checkStoredOnce(server, expected: Self.rowCount)
    }
}
