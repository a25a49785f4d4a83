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
    // `@unchecked`: `queue`, `finished` and `cancelled` are only read and written with
    // `mutex` held; `source` and `prepare` are used by the reading thread alone (after
    // `start`, the creating thread never touches them again, unless no thread could be
    // started); `thread` is used by the creating thread alone.
    private let source: any RecordSource
    private let prepare: (inout RecordBatch) throws -> Int
    private let limit: Int
    private let capacity: Int
    private var queue: [Result<(RecordBatch, Int), any Error>] = []
    private var finished = false
    private var cancelled = false
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let changed = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var thread: pthread_t?

    /// `prepare` runs on the reading thread on each batch and returns how many records
    /// and dead letters it accounts for as read. An error it throws is rethrown by
    /// `next()` in the batch's place, after the batches before it, like a source's.
    init(source: any RecordSource, limit: Int, capacity: Int = 2, prepare: @escaping (inout RecordBatch) throws -> Int) {
        self.source = source
        self.limit = limit
        self.capacity = max(1, capacity)
        self.prepare = prepare
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(changed, nil)
    }

    deinit {
        pthread_cond_destroy(changed)
        pthread_mutex_destroy(mutex)
        changed.deallocate()
        mutex.deallocate()
    }

    func start() {
        let box = Unmanaged.passRetained(self).toOpaque()
        var t = pthread_t()
        let rc = pthread_create(&t, nil, { arg in
            let me = Unmanaged<ReadAhead>.fromOpaque(arg!).takeRetainedValue()
            me.produce()
            return nil
        }, box)
        if rc == 0 {
            thread = t
        } else {
            // No thread: read on the caller's thread instead (next() finds nothing queued).
            Unmanaged<ReadAhead>.fromOpaque(box).release()
        }
    }

    private func produce() {
        while true {
            pthread_mutex_lock(mutex)
            while queue.count >= capacity && !cancelled { pthread_cond_wait(changed, mutex) }
            let stop = cancelled
            pthread_mutex_unlock(mutex)
            if stop { break }
            let item: Result<(RecordBatch, Int), any Error>?
            do {
                if var batch = try source.next(limit: limit) {
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
            pthread_mutex_lock(mutex)
            if let item { queue.append(item) }
            if item == nil || failed { finished = true }
            pthread_cond_broadcast(changed)
            let end = finished
            pthread_mutex_unlock(mutex)
            if end { break }
        }
        pthread_mutex_lock(mutex)
        finished = true
        pthread_cond_broadcast(changed)
        pthread_mutex_unlock(mutex)
    }

    /// The next prepared batch and its read count; nil at the end. Rethrows the source's
    /// or `prepare`'s error.
    func next() throws -> (RecordBatch, Int)? {
        if thread == nil {
            guard var batch = try source.next(limit: limit) else { return nil }
            let read = try prepare(&batch)
            return (batch, read)
        }
        pthread_mutex_lock(mutex)
        while queue.isEmpty && !finished { pthread_cond_wait(changed, mutex) }
        let item = queue.isEmpty ? nil : queue.removeFirst()
        pthread_cond_broadcast(changed)
        pthread_mutex_unlock(mutex)
        return try item?.get()
    }

    /// Stops reading ahead and waits for the reading thread to end.
    func stop() {
        pthread_mutex_lock(mutex)
        cancelled = true
        pthread_cond_broadcast(changed)
        pthread_mutex_unlock(mutex)
        if let thread {
            pthread_join(thread, nil)
            self.thread = nil
        }
    }
}
