import Logging
import SluiceCore

/// Streams rows to one table with `tabledata.insertAll`: batches of at most `maxRows` rows
/// and `maxBytes` bytes, sent as soon as a batch is full and at least every
/// `flushInterval`, with up to `maxInFlight` requests at once. Every row it is given is
/// in the state store's buffer already; a row leaves the buffer when BigQuery holds it
/// (into the ledger) or refused it (a dead letter). Failures of whole requests are
/// retried with exponential backoff and full jitter for as long as the run waits.
actor Streamer {
    /// A row waiting to be sent. Its payload is in the state store's buffer, read back when
    /// its request is made: the queue holds up to `bufferRows` rows (50,000 by default),
    /// and with their payloads it held ~2 KB a row (a 100,000-row run peaked at 187 MiB,
    /// 96–98 MiB without them; the session of 2026-12-01 from 06:53).
    struct Pending: Sendable {
        var key: String
        /// What the row counts toward a request's `maxBytes`: its payload and key, and the
        /// request's JSON around them.
        var size: Int
        var position: SourcePosition
        /// Read by this run (counted in its summary), or left in the buffer by an earlier process.
        var ofRun: Bool

        init(key: String, payloadBytes: Int, position: SourcePosition, ofRun: Bool) {
            self.key = key
            size = payloadBytes + key.utf8.count + 24
            self.position = position
            self.ofRun = ofRun
        }
    }

    let api: BigQueryAPI
    let table: String
    let store: any StreamBufferStore
    let pipeline: String
    let sink: String
    let logger: Logger
    let settings: BigQuerySettings

    private var queue = PendingQueue()
    private var oldestQueued: ContinuousClock.Instant?
    private var inFlightRequests = 0
    private var inFlightRows = 0
    /// Rows of an earlier process still being checked by key before they are sent again.
    private var recovering = 0
    private var rejectedOfRun = 0
    /// This run's rows that BigQuery has not acknowledged or refused yet.
    private var outstandingOfRun = 0
    private var failure: BigQueryError?
    /// Set when the run gives up waiting: retry loops end, rows stay in the durable buffer.
    private var abandoned = false
    private var pump: Task<Void, Never>?
    private var sentRequests = 0
    private var lastWarning: ContinuousClock.Instant?

    let runID: Int64
    let partition: String
    let keyColumn: String
    /// The run's stop (SIGINT/SIGTERM): back-pressure and the drain stop waiting, rows stay
    /// in the durable buffer for the partition's next run. Before, a stop during an outage
    /// waited up to `drainTimeout` twice (for room, then for the drain): 20 minutes.
    let stop: StopFlag?

    init(api: BigQueryAPI, table: String, store: any StreamBufferStore, pipeline: String, sink: String, logger: Logger,
         runID: Int64, partition: String, keyColumn: String, stop: StopFlag? = nil) {
        self.stop = stop
        self.keyColumn = keyColumn
        self.runID = runID
        self.partition = partition
        self.api = api
        self.table = table
        self.store = store
        self.pipeline = pipeline
        self.sink = sink
        self.logger = logger
        self.settings = api.settings
    }

    /// Starts sending once `prepare` (the table's creation or check) succeeded; it is
    /// retried while BigQuery cannot be reached, rows meanwhile wait in the buffer.
    func start(prepare: @escaping @Sendable () async throws(BigQueryError) -> Void) {
        guard pump == nil else { return }
        pump = Task {
            var attempt = 0
            if await self.untilDone("preparing the table", attempt: &attempt, prepare) == nil, self.failure != nil { return }
            self.ready = true
            await self.pumpLoop()
        }
    }

    /// The table is ready: rows of earlier runs may be checked and rows sent.
    private var ready = false

    var waiting: Int { queue.count + inFlightRows + recovering }

    func enqueue(_ rows: [Pending]) {
        if oldestQueued == nil, !rows.isEmpty { oldestQueued = .now }
        for r in rows where r.ofRun { outstandingOfRun += 1 }
        queue.append(rows)
    }

    /// Back-pressure: returns when fewer than `bufferRows` rows wait, or throws the failure
    /// that stopped the stream.
    /// When BigQuery last acknowledged or refused rows.
    private var lastProgress = ContinuousClock.now

    /// A run that waits for room while BigQuery takes no rows for `drainTimeout` fails: what it read so far is
    /// in the durable buffer, and its checkpoints did not move, so nothing is lost.
    func waitForRoom() async throws(BigQueryError) {
        let started = ContinuousClock.now
        while true {
            if let failure { throw failure }
            // Stopping: the runner buffers the batch in hand (durable) and ends the run.
            if waiting < settings.bufferRows || isStopping { return }
            if ContinuousClock.now - max(started, lastProgress) > settings.drainTimeout {
                throw BigQueryError("\(sink): BigQuery took no rows for \(settings.drainTimeout) while \(waiting) rows waited; they stay in the state store's buffer and the partition's next run sends them")
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    /// The rows of an earlier process that are in the buffer: checked by key with a query
    /// (their requests may have reached BigQuery before the process died); those found are
    /// acknowledged, the others sent again.
    func recover(_ rows: [BufferedRow], keyColumn: String) {
        recovering += rows.count
        Task {
            while !self.ready {
                if self.isAbandoned { return }
                try? await Task.sleep(for: .milliseconds(20))
            }
            let chunk = 500
            var i = 0
            while i < rows.count {
                let part = Array(rows[i..<min(rows.count, i + chunk)])
                let (api, table, keys) = (self.api, self.table, part.map(\.key))
                var attempt = 0
                guard let found = await self.untilDone("checking buffered rows of an earlier run", attempt: &attempt, { () async throws(BigQueryError) -> Set<String> in
                    try await api.existingKeys(table, column: keyColumn, keys: keys)
                }) else { return }
                self.recovered(part, found: found)
                i += chunk
            }
        }
    }

    private func recovered(_ rows: [BufferedRow], found: Set<String>) {
        recovering -= rows.count
        lastProgress = .now
        let present = rows.filter { found.contains($0.key) }.map(\.key)
        do {
            try store.acknowledgeBuffered(pipeline: pipeline, sink: sink, keys: present)
        } catch {
            failure = BigQueryError("cannot record deliveries in the state store: \(error)")
            return
        }
        let resend = rows.filter { !found.contains($0.key) }
        if !present.isEmpty || !resend.isEmpty {
            logger.notice("\(sink): \(rows.count) rows of an earlier run were waiting: \(present.count) found in BigQuery, \(resend.count) sent again")
        }
        enqueue(resend.map { Pending(key: $0.key, payloadBytes: $0.payloadBytes, position: $0.position, ofRun: false) })
    }

    private var isAbandoned: Bool { abandoned }

    private var isStopping: Bool { stop?.isStopped ?? false }

    private func fail(_ error: BigQueryError) {
        if failure == nil { failure = error }
    }

    private func warn(_ what: String, _ error: BigQueryError) {
        // At most one warning every 10 seconds during an outage.
        if let last = lastWarning, ContinuousClock.now - last < .seconds(10) { return }
        lastWarning = .now
        logger.warning("\(sink): \(what): \(error.description); retrying, \(waiting) rows wait in the buffer")
    }

    /// Runs `body` until it succeeds: a failure worth retrying is logged as `what` and
    /// tried again after a backoff (`attempt` counts them), one that is not stops the
    /// stream. nil when the stream was abandoned or failed.
    private nonisolated func untilDone<T: Sendable>(_ what: String, attempt: inout Int,
                                                    _ body: @Sendable () async throws(BigQueryError) -> T) async -> T? {
        while true {
            if await isAbandoned { return nil }
            do {
                return try await body()
            } catch {
                guard error.retryable else { await fail(error); return nil }
                attempt += 1
                await warn(what, error)
                await backoff(attempt)
            }
        }
    }

    nonisolated func backoff(_ attempt: Int) async {
        let base = Double(settings.retryBase.components.seconds) + Double(settings.retryBase.components.attoseconds) / 1e18
        let cap = Double(settings.retryMax.components.seconds) + Double(settings.retryMax.components.attoseconds) / 1e18
        let ceiling = min(cap, base * pow2(min(attempt, 30)))
        let delay = Double.random(in: (ceiling / 2)...max(ceiling / 2, ceiling))
        try? await Task.sleep(for: .milliseconds(Int(delay * 1000)))
    }

    private nonisolated func pow2(_ n: Int) -> Double { Double(1 << n) }

    /// Takes the next request's rows when one should be sent now.
    private func takeBatch(draining: Bool) -> [Pending]? {
        guard failure == nil, inFlightRequests < settings.maxInFlight, queue.count > 0 else { return nil }
        let due = draining || queue.count >= settings.maxRows || queue.bytes >= settings.maxBytes
            || (oldestQueued.map { ContinuousClock.now - $0 >= settings.flushInterval } ?? false)
        guard due else { return nil }
        let batch = queue.take(maxRows: settings.maxRows, maxBytes: settings.maxBytes)
        oldestQueued = queue.count == 0 ? nil : .now
        inFlightRequests += 1
        inFlightRows += batch.count
        return batch
    }

    private var draining = false

    private func pumpLoop() async {
        while !abandoned {
            while let batch = takeBatch(draining: draining) {
                Task { await self.deliver(batch) }
            }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Sends one request's rows until each is acknowledged or refused (or the run gives up).
    private nonisolated func deliver(_ batch: [Pending]) async {
        await send(batch)
        await finished(batch.count)
    }

    private func finished(_ n: Int) {
        inFlightRequests -= 1
        inFlightRows -= n
    }

    private nonisolated func send(_ rows: [Pending]) async {
        var rows = rows
        var attempt = 0
        // A failed request may have reached the table (a broken connection, a timeout, a
        // 5xx): insertId de-duplication is best effort, so the keys are checked by query
        // before the rows are sent again.
        var mustCheck = false
        while !rows.isEmpty {
            if await isAbandoned { return }
            if mustCheck {
                let (api, table, keyColumn, keys) = (api, table, keyColumn, rows.map(\.key))
                guard let found = await untilDone("checking keys after a failed insertAll", attempt: &attempt, { () async throws(BigQueryError) -> Set<String> in
                    try await api.existingKeys(table, column: keyColumn, keys: keys)
                }) else { return }
                if !found.isEmpty {
                    await settle(acknowledged: rows.filter { found.contains($0.key) }, refused: [])
                    rows = rows.filter { !found.contains($0.key) }
                }
                mustCheck = false
                continue
            }
            // The payloads, from the durable buffer; a row no longer there was settled already
            // (acknowledged or refused), and is not sent.
            let payloads: [String: [UInt8]]
            do {
                payloads = try store.bufferedPayloads(pipeline: pipeline, sink: sink, keys: rows.map(\.key))
            } catch {
                await fail(BigQueryError("cannot read the state store's buffer: \(error)"))
                return
            }
            if payloads.count < rows.count {
                await settle(acknowledged: rows.filter { payloads[$0.key] == nil }, refused: [])
                rows = rows.filter { payloads[$0.key] != nil }
                if rows.isEmpty { return }
            }
            let outcome: BigQueryAPI.InsertOutcome
            do {
                outcome = try await api.insertAll(table, rows: rows.map { ($0.key, payloads[$0.key]!) })
            } catch {
                guard error.retryable else { await fail(error); return }
                attempt += 1
                mustCheck = error.outcomeUnknown
                await warn("insertAll", error)
                await backoff(attempt)
                continue
            }
            switch outcome {
            case .tooLarge:
                if rows.count == 1 {
                    await settle(acknowledged: [], refused: [(rows[0], [BigQueryAPI.RowError(reason: "requestTooLarge", location: "",
                        message: "the row alone is larger than an insertAll request may be")])])
                    return
                }
                let half = rows.count / 2
                await send(Array(rows[..<half]))
                await send(Array(rows[half...]))
                return
            case .inserted(let errors):
                CrashPoints.reach("bigquery.inserted")
                var acknowledged: [Pending] = []
                var refused: [(Pending, [BigQueryAPI.RowError])] = []
                var again: [Pending] = []
                for (i, row) in rows.enumerated() {
                    guard let e = errors[i] else { acknowledged.append(row); continue }
                    // `stopped`: the row was fine, another row of the request was not. Transient reasons: send again.
                    if e.allSatisfy({ Self.transientReasons.contains($0.reason) }) {
                        again.append(row)
                    } else {
                        refused.append((row, e.filter { !Self.transientReasons.contains($0.reason) }))
                    }
                }
                await settle(acknowledged: acknowledged, refused: refused)
                if !again.isEmpty, again.count == rows.count { attempt += 1; await backoff(attempt) }
                rows = again
            }
        }
    }

    static let transientReasons: Set<String> = ["stopped", "backendError", "timeout", "internalError", "rateLimitExceeded"]

    private func settle(acknowledged: [Pending], refused: [(Pending, [BigQueryAPI.RowError])]) {
        sentRequests += 1
        lastProgress = .now
        let letters = refused.map { (row, errors) in
            let text = errors.map { e in
                var s = e.reason
                if !e.location.isEmpty { s += " at " + e.location }
                if !e.message.isEmpty { s += ": " + e.message }
                return s
            }.joined(separator: "; ")
            return (key: row.key, letter: DeadLetter(kind: .warehouse, position: row.position, message: "BigQuery refused the row: " + text))
        }
        do {
            try store.acknowledgeBuffered(pipeline: pipeline, sink: sink, keys: acknowledged.map(\.key))
            try store.rejectBuffered(pipeline: pipeline, sink: sink, runID: runID, partition: partition, letters)
        } catch {
            fail(BigQueryError("cannot record deliveries in the state store: \(error)"))
            return
        }
        outstandingOfRun -= acknowledged.filter(\.ofRun).count + refused.filter(\.0.ofRun).count
        rejectedOfRun += refused.filter(\.0.ofRun).count
    }

    /// How many of this run's rows were refused since the last call (their dead letters
    /// are in the state store already).
    func takeRejected() throws(BigQueryError) -> Int {
        if let failure { throw failure }
        defer { rejectedOfRun = 0 }
        return rejectedOfRun
    }

    /// Sends everything now and waits until nothing waits, BigQuery took no rows for
    /// `timeout`, or the stream failed; then stops. Returns this run's rows that are still unacknowledged.
    func drain(timeout: Duration) async -> Int {
        draining = true
        let started = ContinuousClock.now
        while !ready || waiting > 0, failure == nil, !isStopping, ContinuousClock.now - max(started, lastProgress) < timeout {
            try? await Task.sleep(for: .milliseconds(10))
        }
        if waiting > 0, failure == nil {
            logger.warning("\(sink): \(waiting) rows still wait for BigQuery\(isStopping ? " (stopping)" : ""); they stay in the state store's buffer and the partition's next run sends them")
        }
        abandon()
        return max(0, outstandingOfRun)
    }

    func abandon() {
        abandoned = true
        pump?.cancel()
    }
}

/// The rows a `Streamer` has not sent yet, first in, first out: an array read from `head`.
/// Rows taken from the front are let go once they are half of the array (and at least
/// `compactAfter` rows). While rows keep coming the queue may never be empty, and before
/// this (the session of 2026-12-01 from 06:53) the array kept every row of a run, with its
/// payload, until it was: with `buffer_rows: 5000`, a 100,000-row run peaked at 192 MB
/// (95 MB with this), and the peak grew with the run.
struct PendingQueue {
    private var rows: [Streamer.Pending] = []
    private var head = 0
    /// The bytes of the rows waiting, as a request counts them.
    private(set) var bytes = 0

    static let compactAfter = 1024

    /// Rows waiting.
    var count: Int { rows.count - head }
    /// Rows the array holds: those waiting and those taken that it has not let go yet.
    var held: Int { rows.count }

    mutating func append(_ new: [Streamer.Pending]) {
        for r in new { bytes += r.size }
        rows += new
    }

    /// The next rows of a request: at most `maxRows`, and no more than `maxBytes` but for
    /// a first row larger than that (sent alone; BigQuery says whether it is too large).
    mutating func take(maxRows: Int, maxBytes: Int) -> [Streamer.Pending] {
        var size = 0
        var end = head
        while end < rows.count, end - head < maxRows {
            let next = rows[end].size
            if end > head, size + next > maxBytes { break }
            size += next
            end += 1
        }
        let batch = Array(rows[head..<end])
        head = end
        bytes -= size
        if head == rows.count {
            rows.removeAll(keepingCapacity: true)
            head = 0
            bytes = 0
        } else if head >= Self.compactAfter, head * 2 >= rows.count {
            rows.removeSubrange(0..<head)
            head = 0
        }
        return batch
    }
}
