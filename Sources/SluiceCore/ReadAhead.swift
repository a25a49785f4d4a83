#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads a source's batches on a thread of its own, a few batches ahead of the runner,
/// so that reading and parsing input (and the runner's `prepare`: event times and record
/// keys) use one core while transforming and loading use another.
///
/// Only the reading thread touches the source (and the preparing closure) once the
/// thread has started; the runner takes finished batches from a bounded queue. Read-ahead
/// batches that the runner never takes (a stop, an error) were never loaded nor
/// checkpointed: the next run reads them again, as without read-ahead.
final class ReadAhead: @unchecked Sendable {
    // `@unchecked`: `queue`, `queuedBytes`, `finished` and `cancelled` are only read and
    // written with `monitor` locked; `source`, `prepare` and `offsets` are used by the
    // reading thread alone (after `start`, the creating thread never touches them again,
    // unless no thread could be started); `thread` is used by the creating thread alone.
    private let source: any RecordSource
    private let prepare: (inout RecordBatch) throws -> Int
    private let limit: Int
    private let capacity: Int
    private let byteBudget: Int
    /// Each queued batch (or error) and the input bytes it was read from.
    private var queue: [(item: Result<(RecordBatch, Int), any Error>, bytes: Int)] = []
    /// The input bytes of the queued batches (`byteBudget`).
    private var queuedBytes = 0
    /// Where the reading thread last saw each file (`SourceCheckpoint.offset` by file id),
    /// to tell a batch's input bytes. Used by the reading thread alone.
    private var offsets: [String: Int64] = [:]
    private var finished = false
    private var cancelled = false
    /// Spent batches' records and values handed back to be freed here (`recycle`).
    private var spent: [any Sendable] = []
    private let monitor = Monitor()
    private var thread: pthread_t?

    /// How many prepared batches wait for the runner at most (`defaultCapacity`).
    ///
    /// The reading thread is the one the others wait for in the benchmark's run
    /// (docs/benchmarks.md). With one batch of room it slept ~15% of the run: whenever the
    /// runner was busy longer than usual (a segment commit, a batch its worker was slow
    /// with), the reader stopped after one batch and lost that time for good. Three
    /// batches absorb those moments: −14% wall time at 1M lines, −19% at 4M, ~2.7 MB of
    /// memory a batch of the benchmark's records.
    static let defaultCapacity = 3
    /// The most input bytes the queued batches beyond the first may come from
    /// (`defaultByteBudget`): batches of wide records (each batch is `limit` records,
    /// whatever their size) keep one batch of room, as before, instead of `capacity`.
    static let defaultByteBudget = 4 << 20

    /// `prepare` runs on the reading thread on each batch and returns how many records
    /// and dead letters it accounts for as read. An error it throws is rethrown by
    /// `next()` in the batch's place, after the batches before it, like a source's.
    /// At most `capacity` batches wait, and a second or later one only while those
    /// before it came from less than `byteBudget` bytes of input (told by the batches'
    /// checkpoints; a source without checkpoints counts batches only).
    init(source: any RecordSource, limit: Int, capacity: Int = ReadAhead.defaultCapacity, byteBudget: Int = ReadAhead.defaultByteBudget,
         prepare: @escaping (inout RecordBatch) throws -> Int) {
        self.source = source
        self.limit = limit
        self.capacity = max(1, capacity)
        self.byteBudget = byteBudget
        self.prepare = prepare
    }

    /// Whether the queue has room for another batch. Under `monitor`.
    private var hasRoom: Bool {
        queue.isEmpty || (queue.count < capacity && queuedBytes < byteBudget)
    }

    /// The input bytes a batch was read from: how far its checkpoints moved each file
    /// since the batch before. A file seen first counts from its start, so the first batch
    /// of a file resumed where a run before stopped counts more than it read (on the safe
    /// side: less read ahead for one batch).
    private func inputBytes(of batch: RecordBatch) -> Int {
        var bytes: Int64 = 0
        for c in batch.checkpoints {
            let before = offsets.updateValue(c.offset, forKey: c.fileID) ?? 0
            bytes += max(0, c.offset - before)
        }
        return Int(clamping: bytes)
    }

    func start() {
        // No thread: read on the caller's thread instead (next() finds nothing queued).
        thread = startThread { [self] in produce() }
    }

    /// Takes records (or their values) that were read here and are done with, to free
    /// them on this thread: they were allocated here, and freed here their memory goes
    /// back to this thread's malloc arena without contending for its lock, and is reused
    /// warm (11% fewer CPU samples on the benchmark, docs/benchmarks.md). Without a reading
    /// thread they are freed on the caller's.
    func recycle(_ items: consuming any Sendable) {
        guard thread != nil else { return }
        monitor.lock()
        spent.append(items)
        monitor.broadcast()
        monitor.unlock()
    }

    private func produce() {
        while true {
            monitor.lock()
            while true {
                if !spent.isEmpty {
                    // Freed here, as they come back (while waiting for room too).
                    var done: [any Sendable] = []
                    swap(&done, &spent)
                    monitor.unlock()
                    done = []
                    monitor.lock()
                    continue
                }
                if hasRoom || cancelled { break }
                monitor.wait()
            }
            let stop = cancelled
            monitor.unlock()
            if stop { break }
            let item: Result<(RecordBatch, Int), any Error>?
            var bytes = 0
            do {
                if var batch = try source.next(limit: limit) {
                    bytes = inputBytes(of: batch)
                    let read = try prepare(&batch)
                    item = .success((batch, read))
                } else {
                    item = nil
                }
            } catch {
                item = .failure(error)
            }
            var failed = false
            if case .failure? = item { failed = true }
            monitor.lock()
            if let item {
                queue.append((item, bytes))
                queuedBytes += bytes
            }
            if item == nil || failed { finished = true }
            monitor.broadcast()
            let end = finished
            monitor.unlock()
            if end { break }
        }
        monitor.lock()
        finished = true
        monitor.broadcast()
        monitor.unlock()
    }

    /// The next prepared batch and its read count; nil at the end. Rethrows the source's
    /// or `prepare`'s error.
    func next() throws -> (RecordBatch, Int)? {
        if thread == nil {
            guard var batch = try source.next(limit: limit) else { return nil }
            let read = try prepare(&batch)
            return (batch, read)
        }
        monitor.lock()
        while queue.isEmpty && !finished { monitor.wait() }
        let item = queue.isEmpty ? nil : queue.removeFirst()
        if let item { queuedBytes -= item.bytes }
        monitor.broadcast()
        monitor.unlock()
        return try item?.item.get()
    }

    /// Stops reading ahead and waits for the reading thread to end.
    func stop() {
        monitor.lock()
        cancelled = true
        monitor.broadcast()
        monitor.unlock()
        if let thread {
            pthread_join(thread, nil)
            self.thread = nil
        }
    }
}

/// A thread that does one step of the run's work on batches handed to it, in order, a
/// bounded number at a time: the runner submits a batch, goes on with the next, and takes
/// the finished batches back in the order it submitted them (the third core's worth of
/// work of a run: the stages after the last stateful one, coercion and row encoding).
///
/// Work the runner never takes back (a stop, an error) was never loaded nor
/// checkpointed: the next run reads it again.
final class BatchWorker<Input: Sendable, Output: Sendable>: @unchecked Sendable {
    // `@unchecked`: `inbox`, `outbox` and `cancelled` are only read and written with
    // `monitor` locked; `work` is called by the worker thread alone (or, when no thread
    // could be started, by the submitting thread alone); `thread` and `pending` are used
    // by the submitting thread alone.
    private let work: @Sendable (consuming Input) throws -> Output
    private let capacity: Int
    private let niceness: Int32
    private var inbox: [Input] = []
    private var outbox: [Result<Output, any Error>] = []
    private var cancelled = false
    private let monitor = Monitor()
    private var thread: pthread_t?
    /// Submitted and not yet taken back.
    private(set) var pending = 0

    /// `niceness`: how far below the starting thread's its thread's scheduling priority is
    /// (a nice increment, Linux; see `lowerThreadPriority`).
    init(capacity: Int = 2, niceness: Int32 = 0, work: @escaping @Sendable (consuming Input) throws -> Output) {
        self.capacity = max(1, capacity)
        self.niceness = niceness
        self.work = work
    }

    /// How many batches may be submitted and not yet taken back before `submit` is
    /// better left for later (the runner keeps this many in flight).
    var isFull: Bool { pending >= capacity }

    func start() {
        // No thread: `submit` does the work on the caller's thread instead.
        thread = startThread { [self] in
            lowerThreadPriority(by: niceness)
            serve()
        }
    }

    private func serve() {
        while true {
            monitor.lock()
            while inbox.isEmpty && !cancelled { monitor.wait() }
            if cancelled { monitor.unlock(); return }
            let input = inbox.removeFirst()
            monitor.unlock()
            // Handed over, not copied: the work may change the input in place (a batch's
            // records array shared with a copy here would be copied whole on its first change).
            let result: Result<Output, any Error>
            do { result = .success(try work(consume input)) } catch { result = .failure(error) }
            monitor.lock()
            outbox.append(result)
            monitor.broadcast()
            monitor.unlock()
        }
    }

    /// Hands a batch to the worker (does it here when there is no worker thread).
    func submit(_ input: consuming Input) {
        pending += 1
        if thread == nil {
            do { outbox.append(.success(try work(consume input))) } catch { outbox.append(.failure(error)) }
            return
        }
        monitor.lock()
        inbox.append(consume input)
        monitor.broadcast()
        monitor.unlock()
    }

    /// The oldest submitted batch, finished (waiting for it); nil when none is pending.
    /// Rethrows the error its work threw.
    func take() throws -> Output? {
        guard pending > 0 else { return nil }
        pending -= 1
        if thread == nil { return try outbox.removeFirst().get() }
        monitor.lock()
        while outbox.isEmpty { monitor.wait() }
        let result = outbox.removeFirst()
        monitor.unlock()
        return try result.get()
    }

    /// Stops the worker (dropping what it was not done with) and waits for its thread.
    func stop() {
        monitor.lock()
        cancelled = true
        inbox.removeAll()
        monitor.broadcast()
        monitor.unlock()
        if let thread {
            pthread_join(thread, nil)
            self.thread = nil
        }
    }
}

/// Makes the calling thread's nice value `by` higher (at most 19), on Linux, where a nice
/// value is a thread's own; nothing elsewhere (there it is the process's), nor when the
/// value cannot be read or set. Raising it needs no privilege.
func lowerThreadPriority(by n: Int32) {
    #if os(Linux)
    guard n > 0 else { return }
    errno = 0
    let current = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0) // 0: this thread
    guard current != -1 || errno == 0 else { return }
    _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, min(19, current + n))
    #endif
}

/// Runs `body` on a new thread; nil if no thread could be started.
private func startThread(_ body: @escaping @Sendable () -> Void) -> pthread_t? {
    final class Box: Sendable {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    var t = pthread_t()
    let rc = pthread_create(&t, nil, { arg in
        Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue().body()
        return nil
    }, box)
    if rc == 0 { return t }
    Unmanaged<Box>.fromOpaque(box).release()
    return nil
}

/// A mutex and its condition variable, for the run's hand-off queues between threads.
final class Monitor: @unchecked Sendable {
    // `@unchecked`: the pthread objects are made thread-safe by pthreads themselves; the
    // pointers never change after `init`.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let changed = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(changed, nil)
    }

    deinit {
        pthread_cond_destroy(changed)
        pthread_mutex_destroy(mutex)
        changed.deallocate()
        mutex.deallocate()
    }

    func lock() { pthread_mutex_lock(mutex) }
    func unlock() { pthread_mutex_unlock(mutex) }
    /// Waits for a `broadcast` (the caller holds the lock, and holds it again after).
    func wait() { pthread_cond_wait(changed, mutex) }
    func broadcast() { pthread_cond_broadcast(changed) }
}
