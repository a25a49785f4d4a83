import Foundation
import SluiceConfig
import SluiceCore
import SluiceFiles
import SluiceSQLite

/// `sluice test`: runs a pipeline on its samples in a scratch folder (its own local
/// warehouse, state and CSV output) and compares with the expected output named by the
/// pipeline's `test` section:
///
/// - `<expected>/<partition>.csv`: the rows of each partition, as the CSV sink writes them;
///   compared with every CSV sink's file and with the warehouse tables;
/// - `<expected>/dead_letters.csv` (`date,file,line,kind`): the dead letters;
/// - `<expected>/summary.csv` (`date,read,loaded,filtered,rejected`): the counts.
public enum PipelineTest {
    public static func run(pipelines: [String], projectRoot: String, console: any Console) async -> Int32 {
        var paths = pipelines
        let root = Project.absolutePath(projectRoot)
        if paths.isEmpty {
            let dir = RunContext.resolve("Pipelines", in: root)
            paths = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
                .filter { $0.hasSuffix(".yml") || $0.hasSuffix(".yaml") }.map { dir + "/" + $0 }
        }
        var failed = 0
        var passed = 0
        for path in paths {
            if await test(path, projectRoot: root, console: console) { passed += 1 } else { failed += 1 }
        }
        console.out("pipelines: \(passed) passed, \(failed) failed")
        return failed == 0 ? ExitStatus.success : ExitStatus.failure
    }

    static func test(_ path: String, projectRoot: String, console: any Console) async -> Bool {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-test-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        var project: Project
        let spec: PipelineSpec
        let pipeline: Pipeline
        do {
            project = try Project.load(root: projectRoot)
            let loc = SourceLocation(file: project.spec.file, line: 1, column: 1)
            project.spec.targets = ["test": TargetSpec(name: "test", kind: .sqlite, path: "warehouse.sqlite", settings: [:], location: loc)]
            project.spec.defaultTarget = "test"
            project.spec.statePath = "state.sqlite"
            (spec, pipeline) = try project.pipeline(at: path)
        } catch {
            for d in error.diagnostics { console.err(d.description) }
            console.out("FAIL \(path): invalid pipeline")
            return false
        }
        guard let test = spec.test else {
            console.err("\(spec.file): pipeline has no `test` section (dates and expected output)")
            console.out("FAIL \(spec.name): nothing to test")
            return false
        }
        var problems: [String] = []
        var summaries: [String: RunSummary] = [:]
        do {
            try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
            let state = try project.stateStore(outputRoot: scratch)
            let environment = ProcessInfo.processInfo.environment.merging(test.environment) { _, test in test }
            for (date, _) in test.dates {
                guard let partition = Partition(date, granularity: spec.partition) else { continue }
                summaries[date] = try await Commands.runOne(pipeline, partition: partition, project: project, outputRoot: scratch,
                                                            state: state, environment: environment)
            }
            let expectedDir = RunContext.resolve(test.expected, in: project.root)
            problems += compareSummaries(summaries, expectedDir: expectedDir)
            problems += try compareDeadLetters(state: state, pipeline: spec.name, dates: test.dates.map(\.0), expectedDir: expectedDir)
            problems += try compareRows(pipeline: pipeline, dates: test.dates.map(\.0), granularity: spec.partition,
                                        expectedDir: expectedDir, scratch: scratch)
        } catch {
            problems.append("run failed: \(error)")
        }
        let rows = summaries.values.reduce(0) { $0 + $1.loaded }
        let dead = summaries.values.reduce(0) { $0 + $1.rejected }
        if problems.isEmpty {
            console.out("ok \(spec.name): \(test.dates.count) partitions, \(rows) rows, \(dead) dead letters as expected in \(test.expected)")
            return true
        }
        for p in problems.prefix(25) { console.err("  \(p)") }
        if problems.count > 25 { console.err("  ... and \(problems.count - 25) more differences") }
        console.out("FAIL \(spec.name): \(problems.count) difference\(problems.count == 1 ? "" : "s") from \(test.expected)")
        return false
    }

    static func readCSV(_ path: String) -> [[String?]]? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return CSVFormat().parse([UInt8](data))
    }

    static func compareSummaries(_ summaries: [String: RunSummary], expectedDir: String) -> [String] {
        guard let rows = readCSV(expectedDir + "/summary.csv"), let header = rows.first else { return [] }
        var problems: [String] = []
        for row in rows.dropFirst() {
            var expected: [String: String] = [:]
            for (h, v) in zip(header, row) { if let h { expected[h] = v ?? "" } }
            guard let date = expected["date"] else { continue }
            guard let s = summaries[date] else { problems.append("summary: partition \(date) was not run"); continue }
            let actual = ["read": s.read, "loaded": s.loaded, "filtered": s.filtered, "rejected": s.rejected]
            for (name, value) in actual.sorted(by: { $0.key < $1.key }) {
                if let e = expected[name], e != String(value) {
                    problems.append("summary \(date): \(name) expected \(e), got \(value)")
                }
            }
        }
        return problems
    }

    static func compareDeadLetters(state: SQLiteStateStore, pipeline: String, dates: [String], expectedDir: String) throws -> [String] {
        guard let rows = readCSV(expectedDir + "/dead_letters.csv") else { return [] }
        let expected = Set(rows.dropFirst().map { $0.map { $0 ?? "" }.joined(separator: ",") })
        var actual: Set<String> = []
        for date in dates {
            for d in try state.deadLetters(pipeline: pipeline, partition: date, limit: 1_000_000) {
                actual.insert("\(date),\(d.file),\(d.line),\(d.kind)")
            }
        }
        var problems: [String] = []
        for missing in expected.subtracting(actual).sorted() { problems.append("dead letter expected but not produced: \(missing)") }
        for extra in actual.subtracting(expected).sorted() { problems.append("dead letter not expected: \(extra)") }
        return problems
    }

    static func compareRows(pipeline: Pipeline, dates: [String], granularity: Partition.Granularity,
                            expectedDir: String, scratch: String) throws -> [String] {
        var problems: [String] = []
        var allExpected: [[String?]] = []
        var header: [String?]?
        for date in dates {
            guard let rows = readCSV(expectedDir + "/\(date).csv") else {
                problems.append("missing expected file \(date).csv")
                continue
            }
            header = header ?? rows.first
            allExpected += rows.dropFirst()
            guard let partition = Partition(date, granularity: granularity) else { continue }
            for binding in pipeline.loaders {
                guard let csv = binding.loader as? CSVLoader else { continue }
                let file = RunContext.resolve(partition.expand(csv.pathPattern), in: scratch)
                guard let actual = readCSV(file) else {
                    problems.append("\(csv.label) \(date): no output file")
                    continue
                }
                problems += compare(expected: rows, actual: actual, what: "\(csv.label) \(date)", keyColumn: binding.keyColumn)
            }
        }
        for binding in pipeline.loaders {
            guard let table = binding.loader as? SQLiteTableLoader, let header else { continue }
            let values = try SQLiteTableLoader.readTable(databasePath: RunContext.resolve(table.databasePath, in: scratch),
                                                         table: table.table, schema: table.schema)
            let actual = [table.schema.columnNames.map { Optional($0) }] + values.map { $0.map(CSVFormat.text) }
            problems += compare(expected: [header] + allExpected, actual: actual, what: table.label, keyColumn: binding.keyColumn)
        }
        return problems
    }

    /// Compares two tables of cells (first row the header), matching rows by the key
    /// column when there is one, else by position.
    static func compare(expected: [[String?]], actual: [[String?]], what: String, keyColumn: String?) -> [String] {
        guard let eh = expected.first, let ah = actual.first else { return ["\(what): empty output"] }
        if eh != ah {
            return ["\(what): columns differ: expected \(eh.map { $0 ?? "" }.joined(separator: ",")), got \(ah.map { $0 ?? "" }.joined(separator: ","))"]
        }
        let names = eh.map { $0 ?? "" }
        let keyIndex = keyColumn.flatMap { names.firstIndex(of: $0) }
        func key(_ row: [String?], _ i: Int) -> String { keyIndex.flatMap { row.indices.contains($0) ? row[$0] : nil } ?? "#\(i + 1)" }
        var actualByKey: [String: [String?]] = [:]
        for (i, row) in actual.dropFirst().enumerated() { actualByKey[key(row, i)] = row }
        var problems: [String] = []
        var seen: Set<String> = []
        for (i, row) in expected.dropFirst().enumerated() {
            let k = key(row, i)
            seen.insert(k)
            guard let got = actualByKey[k] else { problems.append("\(what): row \(k) missing"); continue }
            for (c, name) in names.enumerated() {
                let e = c < row.count ? row[c] : nil
                let a = c < got.count ? got[c] : nil
                if e != a { problems.append("\(what): row \(k) column \(name): expected \(show(e)), got \(show(a))") }
            }
        }
        for (i, row) in actual.dropFirst().enumerated() where !seen.contains(key(row, i)) {
            problems.append("\(what): unexpected row \(key(row, i))")
        }
        if actual.count - 1 != actualByKey.count { problems.append("\(what): duplicate keys in the output") }
        return problems
    }

    static func show(_ s: String?) -> String {
        guard let s else { return "NULL" }
        return s.count > 80 ? "`\(s.prefix(77))...`" : "`\(s)`"
    }
}
