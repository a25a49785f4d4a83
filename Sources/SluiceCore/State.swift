/// How far a source (one input file, known by its identity) has been read and delivered.
public struct SourceCheckpoint: Sendable, Hashable {
    /// The file's identity: a hash of its first line, stable across renames and
    /// compression (see `FileIdentity`).
    public var fileID: String
    /// Where the file was last seen, relative to the project root.
    public var path: String
    /// Bytes of the (decompressed) stream that were consumed.
    public var offset: Int64
    /// Lines consumed (so numbering continues).
    public var line: Int
    /// The source will not grow any more (a gzip stream read to its end, or cut short).
    public var complete: Bool

    public init(fileID: String, path: String, offset: Int64, line: Int, complete: Bool) {
        self.fileID = fileID
        self.path = path
        self.offset = offset
        self.line = line
        self.complete = complete
    }
}

/// What a sink has durably holding after a segment commit: for a file sink, the file
/// and its committed length (anything past it is repaired away on the next start).
public struct SinkReceipt: Sendable, Hashable {
    public var sink: String
    public var target: String
    public var length: Int64
    public init(sink: String, target: String, length: Int64) {
        self.sink = sink
        self.target = target
        self.length = length
    }
}

/// Whether a run appends what is new, or rebuilds its partition's output.
public enum LoadMode: String, Sendable, Hashable {
    case append
    case replace
}

/// One atomic step of the state: the checkpoints a segment reached together with what
/// the sinks hold after it. Applied in one transaction after every sink made its part
/// durable, so a checkpoint never moves ahead of a delivery.
public struct SegmentCommit: Sendable {
    public var pipeline: String
    public var partition: String
    public var checkpoints: [SourceCheckpoint]
    /// Record keys newly delivered, by sink (the delivery ledger).
    public var delivered: [String: [String]]
    public var receipts: [SinkReceipt]
    /// The last segment of a `replace` run: the partition's old checkpoints and ledger
    /// entries are replaced by this run's, and the replace intent is cleared.
    public var finishesReplace: Bool

    public init(pipeline: String, partition: String, checkpoints: [SourceCheckpoint], delivered: [String: [String]],
                receipts: [SinkReceipt], finishesReplace: Bool) {
        self.pipeline = pipeline
        self.partition = partition
        self.checkpoints = checkpoints
        self.delivered = delivered
        self.receipts = receipts
        self.finishesReplace = finishesReplace
    }
}

/// One record's appearance in a sliding window: its window key, event time, record key,
/// and the order in which the store first saw it.
public struct WindowEvent: Sendable, Hashable {
    public var key: String
    /// `key`'s hash, made once with the event (a store looks it up several times).
    public var keyHash: WindowKeyHash
    public var time: Int64
    public var recordKey: String {
        didSet { recordKeyBits = RecordKeyBits(recordKey) }
    }
    /// `recordKey`'s bits when it is one of sluice's keys, read once with the event (a
    /// store hashes and binds them several times).
    public private(set) var recordKeyBits: RecordKeyBits?
    public var sequence: Int64
    public init(key: String, keyHash: WindowKeyHash? = nil, time: Int64, recordKey: String, sequence: Int64 = 0) {
        self.key = key
        self.keyHash = keyHash ?? WindowKeyHash(key)
        self.time = time
        self.recordKey = recordKey
        recordKeyBits = RecordKeyBits(recordKey)
        self.sequence = sequence
    }
}

/// One count of `StateStore.windowCounts`: events of `key` with times in (after, upTo],
/// optionally only those first seen up to `maxSequence`.
public struct WindowQuery: Sendable, Hashable {
    public var key: String
    public var keyHash: WindowKeyHash
    public var after: Int64
    public var upTo: Int64
    public var maxSequence: Int64?
    public init(key: String, keyHash: WindowKeyHash? = nil, after: Int64, upTo: Int64, maxSequence: Int64?) {
        self.key = key
        self.keyHash = keyHash ?? WindowKeyHash(key)
        self.after = after
        self.upTo = upTo
        self.maxSequence = maxSequence
    }

    /// The count of an event's window: its key's events with times in (time - window,
    /// time], optionally only those first seen up to `maxSequence` (a replay's).
    public init(window: Int64, of event: WindowEvent, maxSequence: Int64?) {
        self.init(key: event.key, keyHash: event.keyHash, after: event.time - window, upTo: event.time, maxSequence: maxSequence)
    }
}

/// What `rate_limit` asks of the store for a batch's events (`StateStore.windowLookup`).
public struct WindowLookup: Sendable, Equatable {
    /// The stored sequence numbers of the events that are replays, by record key (as
    /// `windowSequences` gives them).
    public var sequences: [String: Int64]
    /// Per event, in order: the stored events of its window key with times in
    /// (time - window, time]; for a replay, only those first seen up to its own sequence
    /// number (as `windowCounts` gives them).
    public var counts: [Int]
    public init(sequences: [String: Int64], counts: [Int]) {
        self.sequences = sequences
        self.counts = counts
    }
}

/// 128 bits of a text for tables kept in memory only: two SipHashes with the process's
/// random seed (Swift's `Hasher`), told apart by a leading byte. Two texts share them
/// with a chance of 2^-128 a pair, and nobody outside the process can aim for it.
///
/// Of the text's UTF-8 bytes, as SQLite compares TEXT: a text in another Unicode form
/// (`é` as `e` and a combining accent) is another text. `String`'s own hash is of its
/// canonical form: a text that is not ASCII was checked for NFC on every hash (the
/// benchmark's error texts in Turkish, Russian and four more languages: 1.2% of a run's
/// CPU, on the reading thread), and window keys in memory could be one where the store's
/// were two.
public struct TextHash: Sendable, Hashable {
    public var high: UInt64
    public var low: UInt64

    public init(_ text: String) {
        var text = text
        self = text.withUTF8 { bytes in TextHash { $0.combine(bytes: UnsafeRawBufferPointer(bytes)) } }
    }

    /// The two hashes of what `feed` gives each of them (several byte strings: each with
    /// its length before it, so that no two lists of them feed the same bytes).
    @inline(__always)
    public init(feeding feed: (inout Hasher) -> Void) {
        var a = Hasher(), b = Hasher()
        a.combine(0 as UInt8)
        b.combine(1 as UInt8)
        feed(&a)
        feed(&b)
        high = UInt64(bitPattern: Int64(a.finalize()))
        low = UInt64(bitPattern: Int64(b.finalize()))
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(high)
        hasher.combine(low)
    }

    /// A dictionary's hash of the two words (`foldedHash`), not SipHash over them again.
    public func _rawHashValue(seed: Int) -> Int { foldedHash(high, low, seed: seed) }
}

/// The hash a `Dictionary` or `Set` asks of a key (`Hashable._rawHashValue(seed:)`, the
/// standard library's requirement behind `hash(into:)`) for keys that are two words of
/// a hash already (`TextHash`, `WindowKeyHash`, `RecordKeyBits`): the 128-bit product of
/// the words, each XORed with the table's seed (random per process) and a constant,
/// folded to 64 bits (wyhash's mixing). SipHash again over words that are hash bits
/// was 2.7% of a 1M-line run's CPU, on the runner's thread: six dictionary lookups an
/// event in `rate_limit`'s window counts. A key whose words an outsider picks (a 32-digit
/// hex record key) still gets its table's secret seed in both factors.
@inline(__always)
public func foldedHash(_ a: UInt64, _ b: UInt64, seed: Int) -> Int {
    let s = UInt64(bitPattern: Int64(seed))
    let product = (a ^ s ^ 0xA076_1D64_78BD_642F).multipliedFullWidth(by: b ^ s ^ 0xE703_7ED1_A0B4_28DB)
    return Int(truncatingIfNeeded: product.high ^ product.low)
}

/// A window key as stores hold it in memory: 88 bits of its text's `TextHash` (two
/// SipHashes with the process's random seed): 64 of one, the top 24 of the other (an
/// event of a store's copy takes 24 bytes). Two keys share them with a chance of 2^-88 a pair (~10^-16
/// for the 170,000 keys of the benchmark's busiest window), and nobody outside the
/// process can aim for it (the seed is random per process; it is never stored). Made
/// once per event (`WindowEvent.keyHash`), not at each of a store's lookups.
public struct WindowKeyHash: Sendable, Hashable {
    public var high: UInt64
    /// 24 bits.
    public var low: UInt64

    public init(_ key: String) {
        let hash = TextHash(key)
        high = hash.high
        low = hash.low >> 40
    }

    /// Two words of a Hasher (cheaper than the key's text to hash again).
    public func hash(into hasher: inout Hasher) {
        hasher.combine(high)
        hasher.combine(low)
    }

    /// A dictionary's hash of the two words (`foldedHash`).
    public func _rawHashValue(seed: Int) -> Int { foldedHash(high, low, seed: seed) }
}

extension StateStore {
    public func takeWarnings() -> [String] { [] }

    /// One `windowCount` per query; stores override it to answer them in one read.
    public func windowCounts(scope: String, _ queries: [WindowQuery]) throws -> [Int] {
        try queries.map { try windowCount(scope: scope, key: $0.key, after: $0.after, upTo: $0.upTo, maxSequence: $0.maxSequence) }
    }

    /// `windowSequences`, then `windowCounts` of each event's window; stores override it
    /// to look each event up once.
    public func windowLookup(scope: String, _ events: [WindowEvent], window: Int64) throws -> WindowLookup {
        try windowLookupInTwo(scope: scope, events, window: window)
    }

    /// `windowLookup` as `windowSequences`, then `windowCounts`: what an override falls back to.
    public func windowLookupInTwo(scope: String, _ events: [WindowEvent], window: Int64) throws -> WindowLookup {
        let sequences = try windowSequences(scope: scope, events)
        let counts = try windowCounts(scope: scope, events.map {
            WindowQuery(window: window, of: $0, maxSequence: sequences.isEmpty ? nil : sequences[$0.recordKey])
        })
        return WindowLookup(sequences: sequences, counts: counts)
    }
}

/// Thrown when another process holds a partition.
public struct PartitionBusy: Error, Sendable, CustomStringConvertible {
    public var pipeline: String
    public var partition: String
    public var holder: String
    public init(pipeline: String, partition: String, holder: String) {
        self.pipeline = pipeline
        self.partition = partition
        self.holder = holder
    }
    public var description: String { "\(pipeline) \(partition) is being run by \(holder); try again when it finishes" }
}

/// The state store: runs, partition leases, checkpoints, the delivery ledger, sink
/// receipts and dead letters. SQLite is the embedded implementation; the protocol is
/// what a shared (PostgreSQL) store implements for several machines.
public protocol StateStore: Sendable {
    func beginRun(pipeline: String, partition: String, mode: LoadMode) throws -> Int64
    func finishRun(runID: Int64, summary: RunSummary, failure: String?) throws
    /// Keeps dead letters; one per source position, so a re-run does not add the same twice.
    func addDeadLetters(runID: Int64, pipeline: String, partition: String, _ letters: [DeadLetter]) throws

    /// Takes the partition for this process, or throws `PartitionBusy`. A lease whose
    /// holder died (same host, process gone) or went silent is taken over.
    func acquireLease(pipeline: String, partition: String) throws
    func renewLease(pipeline: String, partition: String) throws
    func releaseLease(pipeline: String, partition: String) throws

    /// The checkpoints of a pipeline's sources in one partition, by file identity.
    func checkpoints(pipeline: String, partition: String) throws -> [String: SourceCheckpoint]
    /// The committed length of a file sink's target.
    func receipt(pipeline: String, sink: String, target: String) throws -> Int64?
    /// Which of these keys the sink holds already (outside `excludingPartition`, whose
    /// output a replace is rebuilding).
    func delivered(pipeline: String, sink: String, keys: [String], excludingPartition: String?) throws -> Set<String>
    func commit(_ segment: SegmentCommit) throws
    /// What went wrong after a commit without undoing it (a merge of the ledger's levels
    /// that failed: the segment is committed, and the next commit tries again), for the
    /// run's log; each given once.
    func takeWarnings() -> [String]

    /// Sliding-window events (for `rate_limit`): the sequence numbers, by record key, of
    /// those of these events that the store holds already (replayed records: the same
    /// record key at the same event time).
    func windowSequences(scope: String, _ events: [WindowEvent]) throws -> [String: Int64]
    /// How many events of a window key have times in (from, to], optionally only those
    /// first seen up to a sequence number.
    func windowCount(scope: String, key: String, after from: Int64, upTo to: Int64, maxSequence: Int64?) throws -> Int
    /// Several `windowCount`s in one read of the store (one per record of a batch), in order.
    func windowCounts(scope: String, _ queries: [WindowQuery]) throws -> [Int]
    /// `windowSequences` of the events and, per event, `windowCount` of its key in
    /// (time - window, time] (a replay's up to its own sequence number): what rate_limit
    /// asks for a batch. `window` is at most `RateLimit.maxDuration`, and the events' times
    /// are `EventTime`s, so `time - window` does not overflow.
    func windowLookup(scope: String, _ events: [WindowEvent], window: Int64) throws -> WindowLookup
    /// Adds events in order; callers add only events `windowSequences` did not find.
    func addWindowEvents(scope: String, _ events: [WindowEvent]) throws
    /// Forgets events older than `before`.
    func pruneWindowEvents(scope: String, before: Int64) throws

    /// A replace that started and did not finish; the next run of the partition redoes it.
    func replacePending(pipeline: String, partition: String) throws -> Bool
    func beginReplace(pipeline: String, partition: String) throws
}

/// Deterministic crash points for the exactly-once tests: with
/// `SLUICE_CRASH_AT=name#n` in the environment the process kills itself with SIGKILL
/// the n-th time it reaches the point `name`. Without it, a point costs one branch.
public enum CrashPoints {
    static let spec: (String, Int)? = {
        guard let raw = getenv("SLUICE_CRASH_AT").map({ String(cString: $0) }), let hash = raw.firstIndex(of: "#"),
              let n = Int(raw[raw.index(after: hash)...]) else { return nil }
        return (String(raw[..<hash]), n)
    }()
    // Guarded by `lock`.
    nonisolated(unsafe) static var hits = 0
    static let lock = Lock()

    @inline(__always)
    public static func reach(_ name: String) {
        guard let spec, spec.0 == name else { return }
        let n = lock.withLock { hits += 1; return hits }
        if n == spec.1 { kill(getpid(), SIGKILL) }
    }
}

/// A small mutex (pthread) for the few shared counters.
public final class Lock: @unchecked Sendable {
    // The mutex itself is the synchronization; it is only touched through withLock.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    public init() { pthread_mutex_init(mutex, nil) }
    deinit { pthread_mutex_destroy(mutex); mutex.deallocate() }
    public func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
