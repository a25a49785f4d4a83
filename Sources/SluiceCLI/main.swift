import ArgumentParser
import Foundation
import SluiceCore
import SluiceKit
#if canImport(Glibc)
import Glibc
#endif

/// The `sluice` command line: a thin layer over SluiceKit's commands.
struct Sluice: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sluice",
        abstract: "Batch ETL that never loses or duplicates a record.",
        subcommands: [Run.self, Backfill.self, Schedule.self, Validate.self, Test.self, Status.self, Reprocess.self])
}

/// SIGINT/SIGTERM: finish the batch in hand, commit, exit 0. A second signal exits at once.
func installStopHandlers() -> StopFlag {
    let stop = StopFlag()
    for sig in [SIGINT, SIGTERM] {
        signal(sig, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
        source.setEventHandler {
            if stop.isStopped { exit(130) }
            FileHandle.standardError.write(Data("sluice: stopping after the batch in hand (again to quit now)\n".utf8))
            stop.stop()
        }
        source.resume()
        signalSources.append(source)
    }
    return stop
}

nonisolated(unsafe) var signalSources: [any DispatchSourceSignal] = []  // kept alive; touched only at start-up

struct ProjectOption: ParsableArguments {
    @Option(name: .customLong("project"), help: "The project folder (with sluice.yml, Pipelines/, Schemas/).")
    var root: String = "."
}

func todayUTC(_ granularity: Partition.Granularity) -> String {
    let micros = Int64(Date().timeIntervalSince1970 * 1_000_000)
    return Partition(granularity: granularity, containing: micros).description
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "One run of a pipeline for one partition (default: today, UTC).")
    @Argument(help: "The pipeline file.") var pipeline: String
    @Option(help: "The partition: YYYY-MM-DD (or YYYY-MM-DDTHH for hourly pipelines).") var date: String?
    @Option(help: "The target from sluice.yml (default: its default_target).") var target: String?
    @OptionGroup var project: ProjectOption

    func run() async throws {
        let date = self.date ?? todayUTC(Commands.granularity(of: pipeline, projectRoot: project.root))
        let options = Commands.RunOptions(target: target, stop: installStopHandlers(), progress: TerminalProgress.forStandardError())
        let code = await Commands.run(pipeline: pipeline, partitions: [date], options: options, projectRoot: project.root, console: StandardConsole())
        if code != 0 { throw ExitCode(code) }
    }
}

struct Backfill: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Runs every partition of a closed date range, in order.")
    @Argument(help: "The pipeline file.") var pipeline: String
    @Option(help: "First partition (included).") var from: String
    @Option(help: "Last partition (included).") var to: String
    @Option(help: "The target from sluice.yml.") var target: String?
    @Option(help: "Partitions run at the same time.") var parallel: Int = 1
    @Flag(help: "Rebuild the partitions' output (CSV files swapped, warehouse rows replaced) instead of adding what is new.")
    var replace = false
    @OptionGroup var project: ProjectOption

    func validate() throws {
        guard parallel >= 1 else { throw ValidationError("--parallel must be at least 1") }
    }

    func run() async throws {
        let granularity = Commands.granularity(of: pipeline, projectRoot: project.root)
        guard let dates = Commands.partitions(from: from, to: to, granularity: granularity) else {
            throw ValidationError("--from and --to must be \(granularity == .day ? "YYYY-MM-DD" : "YYYY-MM-DDTHH") partitions with --from <= --to")
        }
        let options = Commands.RunOptions(target: target, mode: replace ? .replace : .append, parallel: parallel, stop: installStopHandlers(),
                                          progress: TerminalProgress.forStandardError())
        let code = await Commands.run(pipeline: pipeline, partitions: dates, options: options, projectRoot: project.root, console: StandardConsole())
        if code != 0 { throw ExitCode(code) }
    }
}

struct Schedule: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Runs pipelines on their cron schedules (UTC) until SIGINT/SIGTERM.")
    @Argument(help: "Pipeline files (default: every file in Pipelines/).") var pipelines: [String] = []
    @Flag(help: "Run what is due now and exit (for cron and CI).") var once = false
    @Option(help: "Missed runs caught up after downtime, at most.") var maxCatchUp: Int = 288
    @OptionGroup var project: ProjectOption

    func run() async throws {
        let scheduler = Scheduler(pipelines: pipelines, projectRoot: project.root, maxCatchUp: max(1, maxCatchUp), stop: installStopHandlers())
        if once {
            let ok = await scheduler.pass(console: StandardConsole())
            if !ok { throw ExitCode(ExitStatus.failure) }
        } else {
            await scheduler.loop(console: StandardConsole())
        }
    }
}

struct Reprocess: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Reads the records behind dead letters again, after a fix, and loads those that now pass.")
    @Argument(help: "The pipeline file.") var pipeline: String
    @Option(help: "Only this partition (default: every partition with dead letters).") var date: String?
    @OptionGroup var project: ProjectOption

    func run() async throws {
        let code = await Commands.reprocess(pipeline: pipeline, partition: date, projectRoot: project.root, console: StandardConsole())
        if code != 0 { throw ExitCode(code) }
    }
}

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Checks pipeline files, sluice.yml and schemas; each problem as file:line:column: message.")
    @Argument(help: "Files or folders (default: Pipelines/, Schemas/, sluice.yml).") var paths: [String] = []
    @OptionGroup var project: ProjectOption

    func run() throws {
        let code = Commands.validate(paths: paths, projectRoot: project.root, console: StandardConsole())
        if code != 0 { throw ExitCode(code) }
    }
}

struct Test: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Runs pipelines on their samples and compares with the expected output.")
    @Argument(help: "Pipeline files (default: every file in Pipelines/).") var pipelines: [String] = []
    @OptionGroup var project: ProjectOption

    func run() async throws {
        let code = await PipelineTest.run(pipelines: pipelines, projectRoot: project.root, console: StandardConsole())
        if code != 0 { throw ExitCode(code) }
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Recent runs and dead letters from the state store.")
    @Argument(help: "A pipeline name or file (default: all).") var pipeline: String?
    @Flag(help: "List the dead letters (file:line: kind: reason).") var deadLetters = false
    @OptionGroup var project: ProjectOption

    func run() throws {
        let code = Commands.status(pipeline: pipeline, deadLetters: deadLetters, projectRoot: project.root, console: StandardConsole())
        if code != 0 { throw ExitCode(code) }
    }
}

func runAsync<C: AsyncParsableCommand>(_ command: C) async throws {
    var command = command
    try await command.run()
}

// glibc's malloc serves blocks of 128 KiB and more with mmap at first, then raises that
// threshold up to 32 MiB each time such a block is freed: a batch's arrays and buffers
// (hundreds of KiB, freed batch after batch) then stay in the heap's arenas, where
// holes between live blocks keep their pages resident. A fixed threshold keeps them
// mapped and returned on free: 6 MB less peak RSS on the benchmark (docs/benchmarks.md).
// (`mallopt` is not in the Glibc module: looked up; M_MMAP_THRESHOLD is -3 in malloc.h.)
#if os(Linux) && canImport(Glibc)
if let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") {
    let mallopt = unsafeBitCast(symbol, to: (@convention(c) (Int32, Int32) -> Int32).self)
    _ = mallopt(-3, 128 * 1024)
}
#endif

// Exit statuses: 0 success, 1 data or configuration failure, 2 wrong usage.
do {
    var command = try Sluice.parseAsRoot()
    if let asyncCommand = command as? any AsyncParsableCommand {
        try await runAsync(asyncCommand)
    } else {
        try command.run()
    }
} catch let code as ExitCode {
    exit(code.rawValue)
} catch {
    let status = Sluice.exitCode(for: error)
    let message = Sluice.fullMessage(for: error)
    if status == .success {
        print(message)
        exit(0)
    }
    FileHandle.standardError.write(Data((message + "\n").utf8))
    exit(status == .validationFailure ? ExitStatus.usage : ExitStatus.failure)
}
