import Foundation
import Logging
import SluiceConfig
import SluiceCore
import SluiceFiles
import SluiceSQLite

/// Where commands write. Standard output carries results (summary lines); standard
/// error carries diagnostics and dead-letter listings.
public protocol Console: Sendable {
    func out(_ line: String)
    func err(_ line: String)
}

public struct StandardConsole: Console {
    public init() {}
    public func out(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }
    public func err(_ line: String) { FileHandle.standardError.write(Data((line + "\n").utf8)) }
}

/// Collects output, for tests. The lock guards both arrays.
public final class CapturingConsole: Console, @unchecked Sendable {
    private let lock = NSLock()
    private var outLines: [String] = []
    private var errLines: [String] = []
    public init() {}
    public func out(_ line: String) { lock.withLock { outLines.append(line) } }
    public func err(_ line: String) { lock.withLock { errLines.append(line) } }
    public var output: [String] { lock.withLock { outLines } }
    public var errors: [String] { lock.withLock { errLines } }
}

/// A thread-safe count.
final class Counter: Sendable {
    private let lock = Lock()
    // Guarded by `lock`.
    nonisolated(unsafe) private var n = 0
    func increment() { lock.withLock { n += 1 } }
    var value: Int { lock.withLock { n } }
}

/// Exit statuses: 0 success, 1 a data or configuration failure, 2 wrong usage.
public enum ExitStatus {
    public static let success: Int32 = 0
    public static let failure: Int32 = 1
    public static let usage: Int32 = 2
}

public enum Commands {
    // MARK: validate

    /// Static check of pipeline files, `sluice.yml` and schemas. Each problem as
    /// `file:line:column: message`.
    public static func validate(paths: [String], projectRoot: String, console: any Console) -> Int32 {
        let root = Project.absolutePath(projectRoot)
        var targets = paths
        if targets.isEmpty {
            targets = ["Pipelines", "Schemas", "sluice.yml"].map { RunContext.resolve($0, in: root) }
                .filter { FileManager.default.fileExists(atPath: $0) }
        }
        var diagnostics: [Diagnostic] = []
        let project: Project
        do {
            project = try Project.load(root: root)
        } catch {
            diagnostics += error.diagnostics
            project = Project(root: root, spec: .defaults(), registry: .builtIn)
        }
        var files: [String] = []
        for t in targets {
            let abs = Project.absolutePath(t)
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: abs, isDirectory: &isDir) else {
                diagnostics.append(Diagnostic(SourceLocation(file: project.display(abs), line: 1, column: 1), "no such file or folder"))
                continue
            }
            if isDir.boolValue {
                let items = (FileManager.default.enumerator(atPath: abs)?.allObjects as? [String] ?? []).sorted()
                files += items.map { abs + "/" + $0 }.filter { ["json", "yml", "yaml"].contains(($0 as NSString).pathExtension) }
            } else {
                files.append(abs)
            }
        }
        var names: [String: String] = [:]
        var checked = 0
        for file in files {
            let display = project.display(file)
            let collector = DiagnosticCollector()
            checked += 1
            if (file as NSString).lastPathComponent == "sluice.yml" {
                _ = ProjectSpec.load(path: file, displayPath: display, diagnostics: collector)
            } else if (file as NSString).pathExtension == "json" {
                _ = SchemaFile.load(path: file, displayPath: display, diagnostics: collector)
            } else {
                do {
                    let (spec, _) = try project.pipeline(at: file)
                    if let other = names[spec.name] {
                        collector.error(spec.location, "pipeline name `\(spec.name)` is also used by \(other)")
                    }
                    names[spec.name] = display
                    if let test = spec.test, !FileManager.default.fileExists(atPath: RunContext.resolve(test.expected, in: root)) {
                        collector.error(test.expectedLocation, "expected output folder `\(test.expected)` does not exist")
                    }
                } catch {
                    diagnostics += error.diagnostics
                }
            }
            diagnostics += collector.diagnostics
        }
        for d in Set(diagnostics).sorted() { console.err(d.description) }
        if diagnostics.isEmpty {
            console.out("ok: \(checked) file\(checked == 1 ? "" : "s") valid")
            return ExitStatus.success
        }
        console.err("\(Set(diagnostics).count) problem\(diagnostics.count == 1 ? "" : "s") found")
        return ExitStatus.failure
    }

    // MARK: run, backfill

    public struct RunOptions: Sendable {
        public var target: String?
        public var mode: LoadMode
        /// Partitions run at the same time (backfill).
        public var parallel: Int
        public var stop: StopFlag?
        /// A progress display (a terminal's), if any.
        public var progress: (any RunProgress)?
        public init(target: String? = nil, mode: LoadMode = .append, parallel: Int = 1, stop: StopFlag? = nil,
                    progress: (any RunProgress)? = nil) {
            self.target = target
            self.mode = mode
            self.parallel = parallel
            self.stop = stop
            self.progress = progress
        }
    }

    /// Runs the partitions (in order, or `parallel` at a time). Each ends with its summary
    /// line on standard output.
    public static func run(pipeline path: String, partitions dates: [String], target: String?, projectRoot: String,
                           console: any Console, environment: [String: String] = ProcessInfo.processInfo.environment) async -> Int32 {
        await run(pipeline: path, partitions: dates, options: RunOptions(target: target), projectRoot: projectRoot,
                  console: console, environment: environment)
    }

    public static func run(pipeline path: String, partitions dates: [String], options: RunOptions, projectRoot: String,
                           console: any Console, environment: [String: String] = ProcessInfo.processInfo.environment) async -> Int32 {
        let project: Project
        let spec: PipelineSpec
        let pipeline: Pipeline
        do {
            project = try Project.load(root: projectRoot)
            (spec, pipeline) = try project.pipeline(at: path, target: options.target)
        } catch {
            for d in error.diagnostics { console.err(d.description) }
            return ExitStatus.failure
        }
        var partitions: [Partition] = []
        for d in dates {
            guard let p = Partition(d, granularity: spec.partition) else {
                console.err("error: `\(d)` is not a \(spec.partition.rawValue) partition (\(spec.partition == .day ? "YYYY-MM-DD" : "YYYY-MM-DDTHH"))")
                return ExitStatus.usage
            }
            partitions.append(p)
        }
        let state: SQLiteStateStore
        do {
            state = try project.stateStore()
        } catch {
            console.err("error: \(error)")
            return ExitStatus.failure
        }
        let failed = Counter()
        await withTaskGroup(of: Void.self) { group in
            var next = 0
            func launch() {
                guard next < partitions.count else { return }
                let partition = partitions[next]
                next += 1
                group.addTask {
                    do {
                        let summary: RunSummary
                        do {
                            defer { options.progress?.finished(pipeline: pipeline.name, partition: partition.description) }
                            summary = try await runOne(pipeline, partition: partition, project: project, outputRoot: project.root,
                                                       state: state, environment: environment, mode: options.mode, stop: options.stop,
                                                       progress: options.progress)
                        }
                        try listDeadLetters(state: state, pipeline: pipeline.name, partition: partition, console: console)
                        for note in summary.notes { console.err(note) }
                        console.out(summary.line)
                    } catch {
                        console.err("error: \(pipeline.name) \(partition): \(error)")
                        failed.increment()
                    }
                }
            }
            for _ in 0..<max(1, options.parallel) { launch() }
            while await group.next() != nil {
                if options.stop?.isStopped ?? false { continue }
                launch()
            }
        }
        return failed.value == 0 ? ExitStatus.success : ExitStatus.failure
    }

    static func runOne(_ pipeline: Pipeline, partition: Partition, project: Project, outputRoot: String,
                       state: SQLiteStateStore, environment: [String: String], mode: LoadMode = .append,
                       stop: StopFlag? = nil, progress: (any RunProgress)? = nil) async throws -> RunSummary {
        let context = RunContext(projectRoot: project.root, outputRoot: outputRoot, pipeline: pipeline.name,
                                 partition: partition, logger: project.logger(), environment: environment, mode: mode, state: state)
        defer { Heap.returnFreedPages() } // the next run starts from what is in use, not from this run's peak
        return try await Runner(commitEvery: pipeline.commitEvery, stop: stop, progress: progress).run(pipeline, context: context)
    }

    static func listDeadLetters(state: SQLiteStateStore, pipeline: String, partition: Partition, console: any Console) throws {
        let letters = try state.deadLetters(pipeline: pipeline, partition: partition.description, limit: 11)
        for d in letters.prefix(10) { console.err("dead letter: \(d.file):\(d.line): \(d.kind): \(d.message)") }
        if letters.count > 10 { console.err("more dead letters: sluice status \(pipeline) --dead-letters") }
    }

    /// The partitions from `from` to `to`, both included.
    public static func partitions(from: String, to: String, granularity: Partition.Granularity) -> [String]? {
        guard let a = Partition(from, granularity: granularity), let b = Partition(to, granularity: granularity), a <= b else { return nil }
        var out: [String] = []
        var p = a
        while p <= b {
            out.append(p.description)
            p = p.next()
        }
        return out
    }

    public static func granularity(of path: String, projectRoot: String) -> Partition.Granularity {
        guard let data = FileManager.default.contents(atPath: Project.absolutePath(path)),
              let text = String(data: data, encoding: .utf8),
              let spec = PipelineSpec.parse(text: text, file: path, diagnostics: DiagnosticCollector()) else { return .day }
        return spec.partition
    }

    /// Reports an error (configuration problems as `file:line:column: message`) and gives
    /// the failure status.
    static func failure(_ error: any Error, console: any Console) -> Int32 {
        if let config = error as? ConfigurationError {
            for d in config.diagnostics { console.err(d.description) }
        } else {
            console.err("error: \(error)")
        }
        return ExitStatus.failure
    }

    // MARK: reprocess

    /// Reads the records behind a pipeline's dead letters again, through the pipeline as it
    /// is now (after a fix), into the same sinks (keys keep them from being loaded twice).
    /// Those that load are removed from the dead letters; the others stay, with their
    /// reason as of this run.
    public static func reprocess(pipeline path: String, partition: String?, projectRoot: String, console: any Console,
                                 environment: [String: String] = ProcessInfo.processInfo.environment) async -> Int32 {
        do {
            let project = try Project.load(root: projectRoot)
            let (spec, pipeline) = try project.pipeline(at: path)
            let state = try project.stateStore()
            let partitions = try partition.map { [$0] } ?? state.deadLetterPartitions(pipeline: spec.name)
            if partitions.isEmpty { console.out("\(spec.name): no dead letters") }
            for name in partitions {
                guard let p = Partition(name, granularity: spec.partition) else {
                    console.err("error: `\(name)` is not a \(spec.partition.rawValue) partition")
                    return ExitStatus.usage
                }
                let positions = try state.deadLetterPositions(pipeline: spec.name, partition: name)
                guard !positions.isEmpty else { continue }
                let context = RunContext(projectRoot: project.root, outputRoot: project.root, pipeline: spec.name, partition: p,
                                         logger: project.logger(), environment: environment, state: state)
                let (summary, runID) = try await Runner(commitEvery: pipeline.commitEvery).runReturningID(pipeline, context: context, retrying: positions)
                let removed = try runID.map { try state.removeDeadLetters(pipeline: spec.name, positions: positions, exceptRun: $0) } ?? 0
                console.out("\(summary.line); \(removed) dead letter\(removed == 1 ? "" : "s") resolved, \(positions.count - removed) remain")
            }
            return ExitStatus.success
        } catch {
            return failure(error, console: console)
        }
    }

    // MARK: status

    public static func status(pipeline: String?, deadLetters: Bool, projectRoot: String, console: any Console) -> Int32 {
        do {
            let project = try Project.load(root: projectRoot)
            let state = try project.stateStore()
            var name = pipeline
            if let p = pipeline, p.hasSuffix(".yml") || p.hasSuffix(".yaml") {
                name = try project.pipeline(at: p).0.name
            }
            if deadLetters {
                for d in try state.deadLetters(pipeline: name, limit: 10_000) {
                    console.out("\(d.pipeline) \(d.partition) \(d.file):\(d.line): \(d.kind): \(d.message)")
                }
                return ExitStatus.success
            }
            let runs = try state.runs(pipeline: name)
            if runs.isEmpty { console.out("no runs yet") }
            for r in runs {
                console.out("run \(r.id) \(r.status): " + (r.summary ?? "\(r.pipeline) \(r.partition)") + (r.failure.map { " — \($0)" } ?? ""))
            }
            if let name {
                let checkpoints = try state.storedCheckpoints(pipeline: name)
                if !checkpoints.isEmpty { console.out("checkpoints:") }
                for c in checkpoints {
                    let cp = c.checkpoint
                    console.out("  \(c.partition) \(cp.path): line \(cp.line), byte \(cp.offset)\(cp.complete ? ", complete" : "")")
                }
                for (partition, n) in try state.deadLetterCounts(pipeline: name) {
                    console.out("dead letters \(partition): \(n) (sluice status \(name) --dead-letters)")
                }
            }
            // Rows waiting for a streaming sink (BigQuery) to acknowledge them.
            for b in try state.bufferDepths(pipeline: name) {
                console.out("buffer \(b.pipeline) \(b.partition) \(b.sink): \(b.rows) rows waiting (the partition's next run sends them)")
            }
            return ExitStatus.success
        } catch {
            return failure(error, console: console)
        }
    }
}
