import Foundation
import SluiceConfig
import SluiceCore
import SluiceSQLite

/// `sluice schedule`: runs each pipeline on its cron schedule (UTC).
///
/// Each pass reads the pipeline files again (a file that became invalid is reported and
/// skipped; the others keep running), computes the fire times due since the last one
/// claimed in the state store (at most `maxCatchUp` after downtime; older ones are
/// skipped with a message), and claims them with a compare-and-set on the state store, so
/// that of several schedulers sharing one store exactly one runs a given fire. A fire
/// runs the partition it falls in, and first the partition of the previous fire when that
/// was another one (so a day's last minutes are read after midnight), and the partitions
/// whose rows still wait in a streaming sink's buffer (so they drain once the warehouse
/// is back, without a manual backfill). Partition leases
/// keep a backfill and the scheduler off the same partition at the same time.
public struct Scheduler: Sendable {
    public var pipelines: [String]
    public var projectRoot: String
    public var maxCatchUp: Int
    public var stop: StopFlag
    /// The clock (microseconds since the epoch); `SLUICE_NOW` (RFC 3339) overrides it for tests.
    public var now: @Sendable () -> Int64

    public init(pipelines: [String], projectRoot: String, maxCatchUp: Int, stop: StopFlag,
                now: @escaping @Sendable () -> Int64 = Scheduler.systemNow) {
        self.pipelines = pipelines
        self.projectRoot = projectRoot
        self.maxCatchUp = maxCatchUp
        self.stop = stop
        self.now = now
    }

    public static let systemNow: @Sendable () -> Int64 = {
        if let fixed = ProcessInfo.processInfo.environment["SLUICE_NOW"], let t = Timestamp.parse(fixed) { return t }
        return Int64(Date().timeIntervalSince1970 * 1_000_000)
    }

    /// One pass: runs what is due. Returns false if a pipeline was broken or a run failed.
    public func pass(console: any Console) async -> Bool {
        var ok = true
        let project: Project
        let state: SQLiteStateStore
        do {
            project = try Project.load(root: projectRoot)
            state = try project.stateStore()
        } catch let error as ConfigurationError {
            for d in error.diagnostics { console.err(d.description) }
            return false
        } catch {
            console.err("error: \(error)")
            return false
        }
        for path in pipelineFiles(project) {
            if stop.isStopped { break }
            let spec: PipelineSpec
            let pipeline: Pipeline
            do {
                (spec, pipeline) = try project.pipeline(at: path)
            } catch {
                console.err("schedule: skipping \(project.display(path)): it is invalid")
                for d in error.diagnostics { console.err(d.description) }
                ok = false
                continue
            }
            guard let text = spec.schedule, let cron = try? CronExpression(text) else { continue }
            let t = now()
            do {
                let last = try state.lastFire(pipeline: spec.name)
                var due: [Int64]
                if let last {
                    // Count what was missed (bounded), keep the most recent `maxCatchUp`.
                    due = cron.fireTimes(after: last, upTo: t, limit: 100_000)
                } else {
                    // First time: the latest fire that is due, if any.
                    let recent = cron.fireTimes(after: t - 366 * 86_400_000_000, upTo: t, limit: 1_000_000)
                    due = recent.last.map { [$0] } ?? []
                }
                guard let newest = due.last else { continue }
                if due.count > maxCatchUp {
                    console.err("schedule: \(spec.name): \(due.count - maxCatchUp) missed runs skipped (max catch-up \(maxCatchUp))")
                    due = Array(due.suffix(maxCatchUp))
                }
                guard try state.claimFires(pipeline: spec.name, from: last, to: newest) else { continue }
                var partitions: [Partition] = []
                var previous = last
                for fire in due {
                    for p in [previous.map { Partition(granularity: spec.partition, containing: $0) },
                              Partition(granularity: spec.partition, containing: fire)].compactMap({ $0 }) where !partitions.contains(p) {
                        partitions.append(p)
                    }
                    previous = fire
                }
                // Rows of earlier partitions still waiting for a streaming sink (BigQuery was
                // down when their run ended) are sent by a run of their own partition: the
                // fire runs those partitions too, so no row waits for a manual backfill.
                for p in try partitionsWithBufferedRows(pipeline, state: state) where !partitions.contains(p) {
                    partitions.append(p)
                }
                for partition in partitions.sorted() {
                    if stop.isStopped { break }
                    do {
                        let summary = try await Commands.runOne(pipeline, partition: partition, project: project, outputRoot: project.root,
                                                                state: state, environment: ProcessInfo.processInfo.environment, stop: stop)
                        console.out(summary.line)
                    } catch let busy as PartitionBusy {
                        console.err("schedule: \(busy)")
                    } catch {
                        console.err("error: \(spec.name) \(partition): \(error)")
                        ok = false
                    }
                }
            } catch {
                console.err("error: \(spec.name): \(error)")
                ok = false
            }
        }
        return ok
    }

    /// The partitions whose rows wait in the durable buffer of one of this pipeline's sinks.
    func partitionsWithBufferedRows(_ pipeline: Pipeline, state: SQLiteStateStore) throws -> [Partition] {
        let sinks = Set(pipeline.loaders.map(\.loader.label))
        var out: [Partition] = []
        for depth in try state.bufferDepths(pipeline: pipeline.name) where depth.rows > 0 && sinks.contains(depth.sink) {
            if let p = Partition(depth.partition, granularity: pipeline.granularity), !out.contains(p) { out.append(p) }
        }
        return out
    }

    func pipelineFiles(_ project: Project) -> [String] {
        if !pipelines.isEmpty { return pipelines }
        let dir = RunContext.resolve("Pipelines", in: project.root)
        return ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
            .filter { $0.hasSuffix(".yml") || $0.hasSuffix(".yaml") }.map { dir + "/" + $0 }
    }

    /// Runs passes until stopped; between passes sleeps until the next minute (cron's
    /// resolution), waking every second to notice a stop.
    public func loop(console: any Console) async {
        while !stop.isStopped {
            _ = await pass(console: console)
            let t = now()
            let nextMinute = (t / 60_000_000 + 1) * 60_000_000
            var waited: Int64 = 0
            while !stop.isStopped, t + waited < nextMinute {
                try? await Task.sleep(for: .seconds(1))
                waited += 1_000_000
            }
        }
    }
}
