import SluiceConfig
import SluiceCore
import SluiceI18n

/// `error_code`: a localized error text to a stable code, from the product's catalogs
/// (gettext .po/.mo, Rails i18n YAML, JSON) and an optional codes file. Texts that match
/// no entry get `UNKNOWN` (the text itself stays in its field), and the run reports the
/// most frequent of them so that the catalogs can be extended.
public struct ErrorCode: Transformer {
    /// Depends on the batch alone: may run on the read-ahead thread.
    public var isBatchLocal: Bool { true }

    public var text: FieldPath
    public var target: String
    public var valuesTarget: String?
    public var matcher: ErrorCodeMatcher
    /// Unknown texts, counted per run: a backfill's partitions (one after another, or at
    /// the same time) each report their own.
    public var unknown: UnknownTallies
    public var report: Int
    /// Outcomes of the texts matched so far, shared by the batches that follow.
    public var outcomes = ErrorOutcomes()

    public func apply(_ batch: inout RecordBatch, context: RunContext) throws {
        let unknown = unknown.of(context)
        var reader = PathReader(text)
        // A log repeats few texts (the benchmark's 250,000 error texts a day are 2,592
        // distinct ones, ~150 of them in each batch): each is matched once, not once a
        // batch (`shared`), or, if its outcome holds a string of its own, once a batch.
        var shared = outcomes.take()
        defer { outcomes.keep(shared) }
        var memo: [String: ErrorOutcomes.Outcome] = [:]
        // Unknown texts seen again, counted per batch and recorded once each after it (each
        // record normalized the text again and took the counter's lock: 0.7% of a run's
        // CPU), in the order first seen.
        var again: [TextHash: Int] = [:]
        var againTexts: [(text: String, count: Int)] = []
        defer { for (text, count) in againTexts { unknown.record(text, count: count) } }
        let target = FieldName(target), valuesTarget = valuesTarget.map(FieldName.init)
        for i in batch.records.indices {
            // The text read where it lies in the record (copied out of it only to be kept:
            // an unknown text's first time in the batch, or an outcome of its own).
            let found = reader.withValue(in: batch.records[i].fields) { v -> ErrorOutcomes.Outcome? in
                guard case .string(let message)? = v, !message.isEmpty else { return nil }
                let hash = TextHash(message)
                if let known = shared[hash] ?? memo[message] {
                    if known.unknown { // counted each time it occurs
                        if let n = again[hash] { againTexts[n].count += 1 } else {
                            again[hash] = againTexts.count
                            againTexts.append((message, 1))
                        }
                    }
                    return known
                }
                let made = outcome(message, unknown: unknown)
                if ErrorOutcomes.holdsNoString(made) { shared[hash] = made } else { memo[message] = made }
                return made
            }
            guard let result = found else {
                batch.records[i].fields[target] = .null
                if let valuesTarget { batch.records[i].fields[valuesTarget] = .null }
                continue
            }
            batch.records[i].fields[target] = result.code
            if let valuesTarget { batch.records[i].fields[valuesTarget] = result.values }
        }
    }

    /// The code and the captured values (JSON text, null when none) of a text; an unknown
    /// text is recorded and coded `UNKNOWN`.
    func outcome(_ message: String, unknown: UnknownTexts) -> (code: Value, values: Value, unknown: Bool) {
        guard let m = matcher.match(message, recordingUnknownIn: unknown) else { return (.string("UNKNOWN"), .null, true) }
        let values: Value = m.values.isEmpty ? .null
            : .string(JSONWriter.string(.object(Fields(m.values.sorted { $0.key < $1.key }.map { Fields.Field($0.key, Self.typed($0.value)) }))))
        return (.string(m.code), values, false)
    }

    /// A captured value: a number when it is one (`{"count": 30}`), else text.
    static func typed(_ s: String) -> Value {
        if let n = Int64(s) { return .int(n) }
        return .string(s)
    }

    public func finish(context: RunContext) -> [String] {
        guard let unknown = unknown.take(context) else { return [] }
        let top = unknown.top(report)
        guard !top.isEmpty else { return [] }
        // Error texts of the product's API, not user data: listed so catalogs can grow.
        return ["error_code: \(unknown.total) texts matched no catalog entry; most frequent:"]
            + top.map { "  \($0.count) × \($0.text)" }
    }

    public static func register(into registry: inout StageRegistry) {
        registry.transformer("error_code") { o, ctx in
            let text = o.path("text", required: true)
            var catalogs: [String] = []
            for (p, loc) in o.stringList("catalogs") ?? [] {
                for file in globFiles(ctx.absolute(p)) { catalogs.append(file) }
                if globFiles(ctx.absolute(p)).isEmpty { ctx.diagnostics.error(loc, "no catalog file matches `\(p)`") }
            }
            if !o.has("catalogs") { ctx.diagnostics.error(o.location, "missing required key `catalogs`") }
            let codes = o.string("codes")
            let codesLocation = o.keyLocation("codes")
            let target = o.string("to") ?? "error_code"
            let valuesTarget = o.string("values_to")
            let report = o.int("report_unknown", range: 0...1000) ?? 10
            o.finish()
            guard let text, !catalogs.isEmpty else { return nil }
            do {
                let matcher = try ErrorCodeMatcher(catalogPaths: catalogs, codesPath: codes.map(ctx.absolute))
                return BuiltTransformer(transformer: ErrorCode(text: text, target: target, valuesTarget: valuesTarget, matcher: matcher,
                                                               unknown: UnknownTallies(), report: report),
                                        effects: [.add([target] + (valuesTarget.map { [$0] } ?? []))])
            } catch {
                ctx.diagnostics.error(codes != nil && "\(error)".contains(codes!) ? codesLocation : o.keyLocation("catalogs"), "\(error)")
                return nil
            }
        }
    }
}


/// What `error_code` made of the texts it matched (code, values, whether unknown), kept
/// from batch to batch up to `limit` texts (then started over: memory stays bounded
/// whatever a log holds). A batch takes the table out and puts it back (a batch working
/// at the same time on another thread starts from an empty one); the outcome of a text
/// depends on the stage's catalogs alone.
///
/// The table holds no string of its own, so that it pins nothing in the heap: texts by a
/// 128-bit hash (`TextHash`: two texts share one with a chance of 2^-128 a pair), and only
/// outcomes whose strings are the matcher's own codes and values of up to 15 bytes (held
/// in place). Keyed by the texts themselves, the table kept texts that the read-ahead
/// thread had allocated among its records: a 3-day backfill peaked 5 MB higher.
public final class ErrorOutcomes: Sendable {
    public typealias Outcome = (code: Value, values: Value, unknown: Bool)
    public static let limit = 2_048
    private let lock = Lock()
    // Guarded by `lock`.
    nonisolated(unsafe) private var table: [TextHash: Outcome] = [:]

    public init() {}

    /// Whether an outcome can be kept: no string but a code (the matcher's, or `UNKNOWN`)
    /// and values short enough to be held in place.
    static func holdsNoString(_ outcome: Outcome) -> Bool {
        switch outcome.values {
        case .null: true
        case .string(let s): s.utf8.count <= 15
        default: false
        }
    }

    func take() -> [TextHash: Outcome] {
        lock.withLock {
            var out: [TextHash: Outcome] = [:]
            swap(&out, &table)
            return out
        }
    }

    func keep(_ outcomes: [TextHash: Outcome]) {
        let kept = outcomes.count <= Self.limit ? outcomes : [:]
        lock.withLock { table = kept }
    }
}

/// The unknown texts of each run of a pipeline's `error_code` stage, by partition: a
/// stage is built once for a backfill and its partitions' runs share it.
public final class UnknownTallies: Sendable {
    private let lock = Lock()
    // Guarded by `lock`.
    nonisolated(unsafe) private var runs: [String: UnknownTexts] = [:]

    public init() {}

    /// The run's tally (made on its first batch).
    public func of(_ context: RunContext) -> UnknownTexts {
        let run = Self.run(context)
        return lock.withLock {
            if let tally = runs[run] { return tally }
            let tally = UnknownTexts()
            runs[run] = tally
            return tally
        }
    }

    /// The run's tally, forgotten here (its run ends); nil if it counted nothing.
    public func take(_ context: RunContext) -> UnknownTexts? {
        let run = Self.run(context)
        return lock.withLock { runs.removeValue(forKey: run) }
    }

    private static func run(_ context: RunContext) -> String { context.pipeline + "\u{0}" + context.partition.description }
}
