import SluiceConfig
import SluiceCore

/// `rate_limit`: counts, for each record, the records with the same key (a fingerprint)
/// whose event time lies in the window `(t - window, t]` of its own event time, and tags
/// it when the count passes `limit` (e.g. more than 30 sign-ups an hour).
///
/// Counting is in input order: a record counts itself and the records seen before it
/// (in earlier batches, earlier runs or earlier partitions) whose times fall in its
/// window. The window's events live in the state store with their record keys, so:
/// - one run, many small incremental runs, or a backfill give the same tags;
/// - a replayed record (after a crash, or a replace: the same record key at the same
///   event time) is not counted twice and gets the tag it had, because its count only
///   includes events first seen before it;
/// - a late record (arriving after records with later times) is counted by the records
///   that come after it, not by those already delivered: tags once delivered never change.
/// Partitions processed out of time order (`backfill --parallel`) can under-count
/// windows that cross a partition boundary; run rate-limited pipelines in order.
public struct RateLimit: Transformer {
    public var key: FieldPath
    public var time: FieldPath
    public var window: Int64
    public var limit: Int
    public var countField: String
    public var tagField: String
    /// Events older than this before a batch's earliest time are forgotten.
    public var retention: Int64

    public func apply(_ batch: inout RecordBatch, context: RunContext) throws {
        guard let state = context.state else {
            throw RateLimitNeedsState()
        }
        let scope = context.pipeline + "/rate_limit/" + key.description
        // Keys and times of the batch.
        var items: [(Int, String, Int64, WindowKeyHash)] = []
        var keyReader = PathReader(key), timeReader = PathReader(time)
        let countField = FieldName(countField), tagField = FieldName(tagField)
        let prefetch = BatchPrefetcher(&batch.records) // the runner's first pass over the batch
        for i in batch.records.indices {
            prefetch(i)
            guard let k = keyReader.value(in: batch.records[i].fields), !k.isNull,
                  let t = timeReader.withValue(in: batch.records[i].fields, { v in v.flatMap(EventTime.micros) }) else {
                batch.records[i].fields[countField] = .null
                batch.records[i].fields[tagField] = .null
                continue
            }
            let text = k.stringValue ?? JSONWriter.string(k)
            items.append((i, text, t, WindowKeyHash(text)))
        }
        guard let minT = items.map(\.2).min() else { return }
        let events = items.map { WindowEvent(key: $0.1, keyHash: $0.3, time: $0.2, recordKey: batch.records[$0.0].key) }
        // Which records are replays, and each one's stored count, in one look at the store.
        let lookup = try state.windowLookup(scope: scope, events, window: window)
        let replayed = lookup.sequences
        // New events of this batch, per key, as sorted times (binary search keeps a hot key cheap).
        var pending: [WindowKeyHash: BatchTimes] = [:]
        pending.reserveCapacity(items.count)
        for (n, (i, _, t, h)) in items.enumerated() {
            var count = lookup.counts[n]
            if replayed.isEmpty || replayed[batch.records[i].key] == nil {
                // New: what the store holds in its window, this batch's earlier events, and itself.
                count += pending[h, default: BatchTimes()].countThenInsert(t, after: t - window) + 1
            }
            batch.records[i].fields[countField] = .int(Int64(count))
            batch.records[i].fields[tagField] = .bool(count > limit)
        }
        // The new events: all of them unless some records were replays (then the others),
        // the array handed on as it is, not each event copied into another.
        try state.addWindowEvents(scope: scope, replayed.isEmpty ? events : events.filter { replayed[$0.recordKey] == nil })
        try state.pruneWindowEvents(scope: scope, before: minT - window - retention)
    }

    /// The times of one window key's new events in a batch so far, sorted. Most keys
    /// have one event in a batch: that time is held in place, and an array is only made
    /// for a second one (an array per key was ~3% of a run's allocations).
    struct BatchTimes {
        private var first: Int64?
        private var more: [Int64] = []

        /// How many of the times are in (from, t], then adds `t`.
        mutating func countThenInsert(_ t: Int64, after from: Int64) -> Int {
            guard let first else {
                self.first = t
                return 0
            }
            if more.isEmpty { more = [first] }
            return RateLimit.countThenInsert(&more, t, after: from)
        }
    }

    /// Index of the first element greater than `t` in a sorted array.
    static func upperBound(_ a: [Int64], _ t: Int64) -> Int { a.upperBound(t) { $0 } }

    /// How many of the sorted times are in (from, t], then adds `t` (in place: a
    /// dictionary's value is not copied).
    static func countThenInsert(_ times: inout [Int64], _ t: Int64, after from: Int64) -> Int {
        let at = upperBound(times, t)
        let n = max(0, at - upperBound(times, from))
        times.insert(t, at: at)
        return n
    }

    /// How many of the sorted times are in (from, to].
    static func count(_ a: [Int64], after from: Int64, upTo to: Int64) -> Int {
        max(0, upperBound(a, to) - upperBound(a, from))
    }

    /// The longest window or retention: 36,500 days. Event times are within years 1–9999
    /// (`EventTime`), so a time minus a window and a retention never overflows.
    public static let maxDuration: Int64 = 36_500 * 86_400_000_000

    /// `30s`, `15m`, `1h`, `2d` → microseconds; nil past `maxDuration`.
    public static func duration(_ text: String) -> Int64? {
        guard let unit = text.last, let n = Int64(text.dropLast()), n > 0 else { return nil }
        let scale: Int64
        switch unit {
        case "s": scale = 1_000_000
        case "m": scale = 60_000_000
        case "h": scale = 3_600_000_000
        case "d": scale = 86_400_000_000
        default: return nil
        }
        let (micros, overflow) = n.multipliedReportingOverflow(by: scale)
        return overflow || micros > maxDuration ? nil : micros
    }

    public static func register(into registry: inout StageRegistry) {
        registry.transformer("rate_limit") { o, ctx in
            let key = o.path("key", required: true)
            let time = o.path("time") ?? ctx.eventTime
            let windowText = o.string("window", required: true)
            let limit = o.int("limit", range: 1...1_000_000_000)
            if !o.has("limit") { ctx.diagnostics.error(o.location, "missing required key `limit`") }
            let countField = o.string("count_field") ?? "rate_count"
            let tagField = o.string("tag_field") ?? "rate_limited"
            let retentionText = o.string("retention") ?? "2d"
            var window: Int64?
            if let windowText {
                window = duration(windowText)
                if window == nil { ctx.diagnostics.error(o.node("window")!.location, "`window` must be a duration like 30s, 15m, 1h or 2d, at most 36500d") }
            }
            let retention = duration(retentionText)
            if retention == nil { ctx.diagnostics.error(o.node("retention")!.location, "`retention` must be a duration like 1h or 7d, at most 36500d") }
            if time == nil { ctx.diagnostics.error(o.location, "rate_limit needs `time` (or an extract `time`)") }
            o.finish()
            guard let key, let time, let window, let limit, let retention else { return nil }
            return BuiltTransformer(transformer: RateLimit(key: key, time: time, window: window, limit: limit, countField: countField,
                                                           tagField: tagField, retention: retention),
                                    effects: [.add([countField, tagField])])
        }
    }
}

public struct RateLimitNeedsState: Error, Sendable, CustomStringConvertible {
    public var description: String { "rate_limit keeps its windows in the state store; run it with one" }
}
