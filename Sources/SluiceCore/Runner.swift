import Logging

/// A loader together with how rows reach it.
public struct LoaderBinding: Sendable {
    public var loader: any Loader
    /// The schema column that receives the record key (`record_key` by default).
    public var keyColumn: String?

    public init(loader: any Loader, keyColumn: String?) {
        self.loader = loader
        self.keyColumn = keyColumn
    }
}

/// A pipeline ready to run: stages built from a pipeline file.
public struct Pipeline: Sendable {
    public var name: String
    public var granularity: Partition.Granularity
    public var extractor: any Extractor
    public var keyer: RecordKeyer
    /// The event-time field. A record without a valid time is a dead letter.
    public var timeField: FieldPath?
    /// When true, records whose event time falls outside the partition are skipped
    /// (they belong to another partition's run). When the extractor selects the
    /// partition's input itself (a `{date}` path), every record read counts.
    public var timeSelectsPartition: Bool
    public var transformers: [any Transformer]
    public var loaders: [LoaderBinding]
    /// Records per segment commit.
    public var commitEvery: Int = 100_000

    public init(name: String, granularity: Partition.Granularity, extractor: any Extractor, keyer: RecordKeyer,
                timeField: FieldPath?, timeSelectsPartition: Bool, transformers: [any Transformer], loaders: [LoaderBinding]) {
        self.name = name
        self.granularity = granularity
        self.extractor = extractor
        self.keyer = keyer
        self.timeField = timeField
        self.timeSelectsPartition = timeSelectsPartition
        self.transformers = transformers
        self.loaders = loaders
    }
}

/// The counts of one run. They add up: `read == loaded + filtered + rejected + buffered`.
public struct RunSummary: Sendable, Hashable {
    public var pipeline: String
    public var partition: String
    public var read = 0
    public var loaded = 0
    public var filtered = 0
    public var rejected = 0
    public var buffered = 0
    /// Rows that were new to each sink, by loader label.
    public var newRows: [String: Int] = [:]
    /// What stages report at the end of the run.
    public var notes: [String] = []
    public var seconds: Double = 0

    public init(pipeline: String, partition: String) {
        self.pipeline = pipeline
        self.partition = partition
    }

    /// The one summary line a run ends with.
    public var line: String {
        let t = (seconds * 100).rounded() / 100
        return "\(pipeline) \(partition): read \(read), loaded \(loaded), filtered \(filtered), rejected \(rejected), buffered \(buffered) in \(t) s"
    }
}

/// Stops a run between batches (SIGINT/SIGTERM): what was read so far is committed.
public final class StopFlag: Sendable {
    private let flag = Lock()
    // Guarded by `flag`.
    nonisolated(unsafe) private var stopped = false
    public init() {}
    public func stop() { flag.withLock { stopped = true } }
    public var isStopped: Bool { flag.withLock { stopped } }
}

/// Runs one partition of a pipeline: extract, key, transform, coerce, load, and commit
/// in segments. Each segment is made durable in every sink first, then its checkpoints
/// and deliveries are recorded in the state store in one transaction.
public struct Runner: Sendable {
    /// Records per batch. Several batches are in flight (read ahead, in the stateful
    /// stages, on the worker), each record a parsed tree with its key and raw line: 1,024
    /// rather than 2,048 keeps ~11 MB less resident on the benchmark's log for no
    /// measurable CPU (issue #7, docs/benchmarks.md).
    public var batchSize: Int
    /// Records per segment (a commit of sinks and state); a replace commits once, at the end.
    public var commitEvery: Int
    public var stop: StopFlag?
    /// Shown the counts after every batch (a terminal's progress line), if any.
    public var progress: (any RunProgress)?

    public init(batchSize: Int = 1024, commitEvery: Int = 100_000, stop: StopFlag? = nil, progress: (any RunProgress)? = nil) {
        self.batchSize = batchSize
        self.commitEvery = commitEvery
        self.stop = stop
        self.progress = progress
    }

    /// Runs the partition. With `retrying`, instead of reading new input the run reads
    /// the records at these positions again (dead letters after a fix) through the same
    /// stages and sinks; the returned run id tells which dead letters it wrote anew.
    public func run(_ pipeline: Pipeline, context: RunContext, retrying: [SourcePosition]? = nil) async throws -> RunSummary {
        try await runReturningID(pipeline, context: context, retrying: retrying).0
    }

    public func runReturningID(_ pipeline: Pipeline, context: RunContext, retrying: [SourcePosition]? = nil) async throws -> (RunSummary, Int64?) {
        var context = context
        let clock = ContinuousClock()
        let started = clock.now
        let partition = context.partition.description
        var summary = RunSummary(pipeline: pipeline.name, partition: partition)
        let state = context.state
        try state?.acquireLease(pipeline: pipeline.name, partition: partition)
        defer { try? state?.releaseLease(pipeline: pipeline.name, partition: partition) }
        if let state, context.mode == .append, retrying == nil, try state.replacePending(pipeline: pipeline.name, partition: partition) {
            // A replace was cut short: finish it before anything else.
            context.mode = .replace
            context.logger.notice("\(pipeline.name) \(partition): finishing an interrupted replace")
        }
        if let state, context.mode == .replace { try state.beginReplace(pipeline: pipeline.name, partition: partition) }
        let runID = try state?.beginRun(pipeline: pipeline.name, partition: partition, mode: context.mode)
        context.runID = runID
        context.stop = stop

        // One coercer per distinct (schema, key column); loaders that share a schema share rows.
        var coercers: [SchemaCoercer] = []
        var coercerOf: [Int] = []
        for binding in pipeline.loaders {
            let keyIndex = binding.loader.schema.index(of: binding.keyColumn ?? "")
            if let i = coercers.firstIndex(where: { $0.schema == binding.loader.schema && $0.keyColumn == keyIndex }) {
                coercerOf.append(i)
            } else {
                coercers.append(SchemaCoercer(schema: binding.loader.schema, keyColumn: binding.keyColumn))
                coercerOf.append(coercers.count - 1)
            }
        }

        var sessions: [any LoadSession] = []
        do {
            let source: any RecordSource
            if let retrying {
                guard let rereader = pipeline.extractor as? any PositionRereader else {
                    throw RetryUnsupported(pipeline: pipeline.name)
                }
                source = try rereader.reread(retrying, context: context)
            } else {
                source = try pipeline.extractor.open(context)
            }
            for binding in pipeline.loaders {
                sessions.append(try await binding.loader.open(context))
            }
            var newRows = [Int](repeating: 0, count: sessions.count)
            var checkpoints: [String: SourceCheckpoint] = [:]
            var sinceCommit = 0
            func commitSegment(final: Bool) async throws {
                var delivered: [String: [String]] = [:]
                var receipts: [SinkReceipt] = []
                var (rejectedOfRun, buffered) = (0, 0)
                for (i, session) in sessions.enumerated() {
                    let result = try await session.commitSegment(final: final)
                    if !result.deliveredKeys.isEmpty { delivered[pipeline.loaders[i].loader.label, default: []] += result.deliveredKeys }
                    receipts += result.receipts
                    // A streaming sink: rows it refused or still buffers are not loaded (the largest
                    // count of any sink, as a record counts once however many sinks it reaches).
                    rejectedOfRun = max(rejectedOfRun, result.rejectedOfRun)
                    buffered = max(buffered, result.buffered)
                }
                summary.loaded -= rejectedOfRun + buffered
                summary.rejected += rejectedOfRun
                summary.buffered += buffered
                CrashPoints.reach("sinks.committed")
                try state?.commit(SegmentCommit(pipeline: pipeline.name, partition: partition,
                                                checkpoints: Array(checkpoints.values), delivered: delivered,
                                                receipts: receipts, finishesReplace: final && context.mode == .replace))
                CrashPoints.reach("state.committed")
                for warning in state?.takeWarnings() ?? [] { context.logger.warning("\(pipeline.name) \(partition): \(warning)") }
                if !final { try state?.renewLease(pipeline: pipeline.name, partition: partition) }
                sinceCommit = 0
            }
            // Segments end on batch boundaries: a batch is never larger than a segment.
            let limit = context.mode == .append ? max(1, min(batchSize, commitEvery)) : batchSize
            // Three threads, each a step of the batches in order: reading, parsing, event
            // times, keys and the leading batch-local stages a few batches ahead (`ReadAhead`);
            // the stateful stages here; the batch-local stages after the last stateful one,
            // coercion and the sinks' row encoding on a worker (`BatchWorker`); then
            // writing and committing here again.
            let split = Self.split(pipeline.transformers)
            let ahead = pipeline.transformers[split.ahead]
            let stateful = pipeline.transformers[split.stateful]
            let after = pipeline.transformers[split.after]
            let readAhead = ReadAhead(source: source, limit: limit) { [self, pipeline, context, partition, ahead] batch in
                var counted = RunSummary(pipeline: pipeline.name, partition: partition)
                prepare(&batch, pipeline: pipeline, context: context, summary: &counted)
                do {
                    for transformer in ahead { try transformer.apply(&batch, context: context) }
                } catch {
                    throw FailedAfterReading(read: counted.read, error: error)
                }
                return counted.read
            }
            let encoders = sessions.map(\.encoder)
            let spare = SpareBuffers(capacity: encoders.count { $0 != nil })
            // The worker's thread a little below the others (nice +5): three threads share two
            // cores, and the reading thread is the one the others wait for (the runner at 4M
            // lines a day); the worker has the most room, and yields to them when they would
            // otherwise wait for a core. −5% to −7% wall at 1M lines in interleaved rounds
            // (docs/benchmarks.md).
            let worker = BatchWorker<RecordBatch, FinishedBatch>(niceness: 5) { [after, context, coercers, coercerOf, encoders, readAhead] batch in
                try Self.finish(batch, after: after, context: context, coercers: coercers, coercerOf: coercerOf, encoders: encoders,
                                recycle: readAhead.recycle, spare: spare)
            }
            readAhead.start()
            defer { readAhead.stop() }
            worker.start()
            defer { worker.stop() }
            var endOfInput = false
            while true {
                // Keep the worker busy: the stateful stages of the next batches while it finishes earlier ones.
                while !endOfInput, !worker.isFull {
                    if stop?.isStopped ?? false { endOfInput = true; break }
                    var batch: RecordBatch
                    do {
                        guard let (next, read) = try readAhead.next() else { endOfInput = true; break }
                        batch = next
                        summary.read += read
                    } catch let failed as FailedAfterReading {
                        // The batch was read (counted as before stages ran on the read-ahead thread).
                        summary.read += failed.read
                        throw failed.error
                    }
                    for transformer in stateful {
                        try transformer.apply(&batch, context: context)
                    }
                    worker.submit(consume batch)
                }
                guard var finished = try worker.take() else { break }
                for (i, session) in sessions.enumerated() {
                    newRows[i] += try await session.write(finished.rows[coercerOf[i]], encoded: finished.encoded[i])
                    // Written: the buffer goes back to the worker for a batch to come.
                    if let bytes = finished.encoded[i]?.takeBytes() { spare.put(consume bytes) }
                }
                CrashPoints.reach("batch.written")
                let batch = finished.batch
                summary.loaded += finished.loaded
                summary.filtered += batch.filtered
                summary.rejected += batch.deadLetters.count
                progress?.update(summary, elapsed: (clock.now - started).seconds)
                if let runID, !batch.deadLetters.isEmpty {
                    try state?.addDeadLetters(runID: runID, pipeline: pipeline.name, partition: partition, batch.deadLetters)
                }
                for c in batch.checkpoints { checkpoints[c.fileID] = c }
                sinceCommit += finished.loaded + batch.deadLetters.count + batch.filtered
                if context.mode == .append, sinceCommit >= commitEvery { try await commitSegment(final: false) }
            }
            try await commitSegment(final: true)
            for transformer in pipeline.transformers { summary.notes += transformer.finish(context: context) }
            for (i, binding) in pipeline.loaders.enumerated() { summary.newRows[binding.loader.label, default: 0] += newRows[i] }
        } catch {
            for session in sessions { await session.rollback() }
            summary.seconds = (clock.now - started).seconds
            if let runID { try? state?.finishRun(runID: runID, summary: summary, failure: String(describing: error)) }
            throw error
        }
        summary.seconds = (clock.now - started).seconds
        if let runID { try state?.finishRun(runID: runID, summary: summary, failure: nil) }
        return (summary, runID)
    }

    /// One coercer's part of `finish`: its plan through the projection, the encoding sinks
    /// it feeds a value at a time (`slots`, `encoders`) when it feeds only such sinks
    /// (`streamed`), or else rows of values.
    struct Lane {
        var coercer: SchemaCoercer
        var plan: [Int?]?
        var slots: [Int]
        var encoders: [any RowEncoder]
        var streamed: Bool

        /// Coerces `record`: its values encoded into the rows' bytes of `slots` (and an empty
        /// row of its key and position appended to `rows`), or its row of values appended;
        /// the error when a value does not coerce.
        mutating func coerce(_ record: inout Record, projection: Projection?, readers: inout [PathReader],
                             rowBytes: UnsafeMutablePointer<RowBytes>, rows: inout [Row]) -> CoercionError? {
            var failure: CoercionError?
            if streamed {
                // (Closures written in place: non-escaping, so nothing is boxed. The lane's
                // arrays walked by index: an array iterated in the closure was retained on
                // every value.)
                if slots.count == 1 {
                    // One sink takes these rows (the usual case): its encoder opened once a
                    // record (`stream` is generic over it). Through the array of
                    // existentials, every value copied the encoder's box, and the
                    // closures' captures were retained at each call.
                    failure = Runner.stream(&record, coercer: &coercer, projection: projection, plan: plan, readers: &readers,
                                            encoder: encoders[0], into: &rowBytes[slots[0]])
                } else if let projection, let plan {
                    let slots = slots, encoders = encoders
                    failure = coercer.forEachValue(of: record, through: projection, plan: plan, readers: &readers, json: { column, value in
                        for n in slots.indices { encoders[n].appendJSON(value, column: column, to: &rowBytes[slots[n]]) }
                    }) { column, value in
                        for n in slots.indices { encoders[n].append(value, column: column, to: &rowBytes[slots[n]]) }
                    }
                } else {
                    let slots = slots, encoders = encoders
                    failure = coercer.forEachValue(of: record) { column, value in
                        for n in slots.indices { encoders[n].append(value, column: column, to: &rowBytes[slots[n]]) }
                    }
                }
                if failure == nil { rows.append(Row(key: record.key, position: record.position, values: [])) }
                return failure
            }
            let result = if let projection, let plan {
                coercer.row(for: record, through: projection, plan: plan, readers: &readers)
            } else {
                coercer.row(for: record)
            }
            switch result {
            case .success(let row): rows.append(row)
            case .failure(let e): failure = e
            }
            return failure
        }

        /// Ends the record's row of each sink and appends it to the batch's bytes.
        mutating func endRows(_ rowBytes: UnsafeMutablePointer<RowBytes>, into encoded: inout [EncodedRows?]) {
            for n in slots.indices {
                let i = slots[n]
                encoders[n].endRow(&rowBytes[i])
                encoded[i]!.bytes.append(rowBytes[i])
                encoded[i]!.ends.append(encoded[i]!.bytes.count)
            }
        }
    }

    /// A record's coerced values encoded by one sink's encoder into `row` (see `finish`).
    /// The record and the coercer are `inout` to be read where they lie, not changed.
    static func stream<E: RowEncoder>(_ record: inout Record, coercer: inout SchemaCoercer, projection: Projection?, plan: [Int?]?,
                                      readers: inout [PathReader], encoder: E, into row: inout RowBytes) -> CoercionError? {
        if let projection, let plan {
            return coercer.forEachValue(of: record, through: projection, plan: plan, readers: &readers, json: { column, value in
                encoder.appendJSON(value, column: column, to: &row)
            }) { column, value in
                encoder.append(value, column: column, to: &row)
            }
        }
        return byName(record, coercer: coercer, encoder: encoder, into: &row)
    }

    /// `stream` without a projection, apart: inlined, its copies of the record and the
    /// coercer (for `forEachValue(of:)`'s name lookups) were made for either path.
    @inline(never)
    static func byName<E: RowEncoder>(_ record: borrowing Record, coercer: SchemaCoercer, encoder: E, into row: inout RowBytes) -> CoercionError? {
        coercer.forEachValue(of: record) { column, value in encoder.append(value, column: column, to: &row) }
    }

    /// Which of a pipeline's stages run where (consecutive ranges of `transformers`): the
    /// leading batch-local ones on the read-ahead thread (`ahead`), from the first stateful
    /// one to the last on the runner (`stateful`), the trailing batch-local ones on the
    /// worker (`after`). A last stage that only picks fields (a `select`) is always the
    /// worker's, even when no stage is stateful: the worker reads the sinks' columns
    /// through it. Applied ahead, it built every selected record on the reading thread
    /// (a quarter of the CPU of a 1M-line run of a pipeline with only a `select`).
    static func split(_ transformers: [any Transformer]) -> (ahead: Range<Int>, stateful: Range<Int>, after: Range<Int>) {
        let n = transformers.count
        let firstStateful = transformers.firstIndex { !$0.isBatchLocal }
        let afterStart = transformers.lastIndex { !$0.isBatchLocal }.map { $0 + 1 }
            ?? (transformers.last?.projection != nil ? n - 1 : n)
        let aheadEnd = min(firstStateful ?? n, afterStart)
        return (0..<aheadEnd, aheadEnd..<afterStart, afterStart..<n)
    }

    /// The worker's step: the trailing batch-local stages, coercion (a record is loaded to
    /// every sink or, if any schema rejects it, to none) and the sinks' row encoding. The
    /// batch comes back without its records (their rows replace them).
    static func finish(_ input: consuming RecordBatch, after: ArraySlice<any Transformer>, context: RunContext, coercers: [SchemaCoercer],
                       coercerOf: [Int], encoders: [(any RowEncoder)?], recycle: (consuming any Sendable) -> Void = { _ in },
                       spare: SpareBuffers? = nil) throws -> FinishedBatch {
        var batch = consume input // owned: the stages change its records in place, not a copy of them
        // A trailing `select` is not applied: the sinks' columns are read through it.
        var stages = after
        let projection = coercers.isEmpty ? nil : stages.last?.projection
        if projection != nil { stages = stages.dropLast() }
        for transformer in stages { try transformer.apply(&batch, context: context) }
        let plans = projection.map { p in coercers.map { $0.plan(p) } }
        var readers = projection?.columns.map { PathReader($0.path) } ?? []
        // Rows that only encoding sinks take are encoded a value at a time, as each value is
        // coerced: no row of values is made (`streamed`, its sinks' encoders in `targets`).
        let targets = coercers.indices.map { c in encoders.indices.filter { coercerOf[$0] == c } }
        let streamed = targets.map { $0.allSatisfy { encoders[$0] != nil } }
        // The streamed targets' encoders unwrapped once: `encoders[i]!` copied the
        // existential (its box retained and released) for every value of every record.
        let streamEncoders: [[any RowEncoder]] = targets.indices.map { c in streamed[c] ? targets[c].map { encoders[$0]! } : [] }
        var encoded: [EncodedRows?] = encoders.indices.map { encoders[$0] != nil && streamed[coercerOf[$0]] ? EncodedRows() : nil }
        for i in encoded.indices where encoded[i] != nil {
            if var bytes = spare?.take() {
                bytes.removeAll(keepingCapacity: true)
                encoded[i]!.bytes = consume bytes
            }
            encoded[i]!.bytes.reserveCapacity(batch.records.count * 512)
            encoded[i]!.ends.reserveCapacity(batch.records.count)
        }
        // Each encoding sink's row of the record at hand, written a value at a time and
        // appended to the batch's bytes whole once the record coerced (`RowBytes`).
        let rowBytes = UnsafeMutablePointer<RowBytes>.allocate(capacity: max(1, encoders.count))
        for i in encoders.indices { (rowBytes + i).initialize(to: RowBytes()) }
        defer {
            rowBytes.deinitialize(count: encoders.count)
            rowBytes.deallocate()
        }
        var rows = [[Row]](repeating: [], count: coercers.count)
        for i in rows.indices { rows[i].reserveCapacity(batch.records.count) }
        // The records taken out of the batch and reached through their buffer `inout`: a
        // record read as `batch.records[r]` was copied (its five references retained and
        // released) to be passed on; an exclusive access is read where it lies.
        var records: [Record] = []
        swap(&records, &batch.records)
        let prefetch = BatchPrefetcher(&records)
        // Each coercer's part, reached `inout` (`Lane`): read as `coercers[c]`, `targets[c]`
        // and `streamEncoders[c]`, its arrays were retained and released for every record.
        var lanes = coercers.indices.map { c in
            Lane(coercer: coercers[c], plan: plans?[c], slots: targets[c], encoders: streamEncoders[c], streamed: streamed[c])
        }
        records.withUnsafeMutableBufferPointer { records in
            for r in records.indices {
                prefetch(r)
                for i in encoded.indices where encoded[i] != nil { rowBytes[i].removeAll() }
                var failure: CoercionError?
                var failedAt = 0
                for c in lanes.indices {
                    failure = lanes[c].coerce(&records[r], projection: projection, readers: &readers, rowBytes: rowBytes, rows: &rows[c])
                    if failure != nil { failedAt = c; break }
                }
                if let failure {
                    // None of the record reaches any sink: the rows of the coercers before the one
                    // that failed are taken back, its rows' bytes left unappended.
                    for c in 0..<failedAt { rows[c].removeLast() }
                    batch.deadLetters.append(DeadLetter(kind: .schema, position: records[r].position, message: failure.description,
                                                        raw: records[r].raw))
                } else {
                    for c in lanes.indices where lanes[c].streamed { lanes[c].endRows(rowBytes, into: &encoded) }
                }
            }
        }
        let loaded = rows.first?.count ?? records.count
        recycle(records)
        // Encoding sinks that share their rows with a sink that takes values: from the rows.
        for i in encoders.indices where encoders[i] != nil && !streamed[coercerOf[i]] {
            encoded[i] = encoders[i]!.encode(rows[coercerOf[i]])
        }
        return FinishedBatch(batch: batch, rows: rows, encoded: encoded, loaded: loaded)
    }

    /// Counts what was read, assigns record keys and checks event times.
    func prepare(_ batch: inout RecordBatch, pipeline: Pipeline, context: RunContext, summary: inout RunSummary) {
        var outside = 0
        if let timeField = pipeline.timeField {
            var time = PathReader(timeField)
            batch.reject(kind: .badTime) { record in
                // The time read where it lies (not copied out of the record).
                let (present, read) = time.withValue(in: record.fields) { v -> (Bool, Int64?) in
                    guard let v, !v.isNull else { return (false, nil) }
                    return (true, EventTime.micros(v))
                }
                guard present else {
                    return "event time field \(timeField) is missing"
                }
                guard let micros = read else {
                    return "event time field \(timeField) is not a valid timestamp"
                }
                if pipeline.timeSelectsPartition, !context.partition.contains(micros) { outside += 1 }
                return nil
            }
            if outside > 0 {
                // Records of other partitions are theirs to load; this run does not read them.
                batch.records.removeAll { record in
                    guard let value = record.fields.value(at: timeField), let micros = EventTime.micros(value) else { return false }
                    return !context.partition.contains(micros)
                }
            }
        }
        summary.read += batch.records.count + batch.deadLetters.count
        pipeline.keyer.keys(&batch.records)
    }
}

/// A batch as the worker hands it back: its dead letters, counts and checkpoints, the rows
/// of each coercer and each sink's encoded rows (nil for a sink without an encoder).
struct FinishedBatch: Sendable {
    var batch: RecordBatch
    var rows: [[Row]]
    var encoded: [EncodedRows?]
    var loaded: Int
}

/// A stage's error on the read-ahead thread, with the batch's read count.
struct FailedAfterReading: Error {
    var read: Int
    var error: any Error
}

/// Event times: RFC 3339 text or epoch seconds, within years 1–9999 (as BigQuery's
/// TIMESTAMP; a stage's arithmetic on times, e.g. a window before one, cannot overflow).
public enum EventTime {
    public static func micros(_ value: Value) -> Int64? {
        switch value {
        case .string(let s): return Timestamp.parse(s)
        case .int(let n):
            let (m, o) = n.multipliedReportingOverflow(by: 1_000_000)
            return o ? nil : bounded(m)
        case .double(let d):
            let m = d * 1_000_000
            return m.isFinite && abs(m) < 9e18 ? bounded(Int64(m)) : nil
        default: return nil
        }
    }

    static func bounded(_ micros: Int64) -> Int64? {
        micros >= Timestamp.minMicros && micros <= Timestamp.maxMicros ? micros : nil
    }
}

extension Duration {
    var seconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) / 1e18
    }
}

/// Buffers of encoded rows that the sinks have written, handed back for the worker to
/// encode later batches into. A batch's encoded rows (~450 KiB of the benchmark's CSV)
/// are past malloc's mmap threshold: a new buffer each batch was a new mapping, each of
/// its pages faulted in and zeroed, then unmapped (~80% of a 1M-line run's 150,000 page
/// faults; docs/benchmarks.md). At most `capacity` are kept, the rest freed: one per
/// encoding sink (62,000 faults; two: 33,000, for ~0.5 MiB more at the peak). A buffer
/// of more than `largest` bytes (a batch of wide records) is freed, not kept for the rest
/// of the run.
final class SpareBuffers: @unchecked Sendable {
    // `@unchecked`: `buffers` is only touched under `lock`.
    private let lock = Lock()
    private var buffers: [[UInt8]] = []
    private let capacity: Int
    private let largest: Int

    init(capacity: Int, largest: Int = 4 << 20) {
        self.capacity = capacity
        self.largest = largest
    }

    /// Keeps `bytes` for a later `take` (freed at once when `capacity` are kept, or when
    /// it can hold more than `largest` bytes).
    func put(_ bytes: consuming [UInt8]) {
        guard bytes.capacity <= largest else { return }
        lock.withLock {
            if buffers.count < capacity {
                buffers.append([])
                swap(&buffers[buffers.count - 1], &bytes)
            }
        }
    }

    /// A buffer kept before (its bytes still in it), or nil.
    func take() -> [UInt8]? { lock.withLock { buffers.popLast() } }
}
