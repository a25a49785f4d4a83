@testable import SluiceCore
import Testing
import Foundation
import Logging

/// The runner's read-ahead: batches come out in order, prepared on the reading thread;
/// a source's error comes out after the batches before it; stopping early ends the
/// reading thread even when it waits for room in the queue.
@Suite struct ReadAheadTests {
    final class Counting: RecordSource {
        var sent = 0
        let total: Int
        let failAt: Int?
        init(total: Int, failAt: Int? = nil) {
            self.total = total
            self.failAt = failAt
        }
        struct Broken: Error {}
        func next(limit: Int) throws -> RecordBatch? {
            if sent == failAt { throw Broken() }
            guard sent < total else { return nil }
            sent += 1
            return RecordBatch(records: (0..<limit).map { Record(fields: Fields(), position: SourcePosition(file: "f", line: (sent - 1) * limit + $0 + 1)) })
        }
    }

    static func prepareKeys(_ batch: inout RecordBatch) -> Int {
        for i in batch.records.indices { batch.records[i].key = "k\(batch.records[i].position.line)" }
        return batch.records.count
    }

    @Test func batchesInOrderThenTheEnd() throws {
        let reader = ReadAhead(source: Counting(total: 50), limit: 3, prepare: Self.prepareKeys)
        reader.start()
        defer { reader.stop() }
        var lines: [Int] = []
        var read = 0
        while let item = try reader.next() {
            lines += item.0.records.map(\.position.line)
            #expect(item.0.records.allSatisfy { $0.key == "k\($0.position.line)" })
            read += item.1
        }
        #expect(lines == Array(1...150))
        #expect(read == 150)
        #expect(try reader.next() == nil)
    }

    /// Records handed back with `recycle` are freed on the reading thread (where they were
    /// allocated), before it reads its next batch; with no reading thread, where they are.
    final class Tracked: @unchecked Sendable {
        // `@unchecked`: `freedOn` is written once, in deinit, and read after the join.
        let box: FreedOn
        init(_ box: FreedOn) { self.box = box }
        deinit { box.set(pthread_self()) }
    }
    final class FreedOn: @unchecked Sendable {
        // `@unchecked`: `thread` is read and written with `lock` held.
        private let lock = NSLock()
        private var thread: pthread_t?
        func set(_ t: pthread_t) { lock.lock(); thread = t; lock.unlock() }
        var value: pthread_t? { lock.lock(); defer { lock.unlock() }; return thread }
    }
    final class ThreadRecording: RecordSource {
        let inner = Counting(total: 6)
        let readOn = FreedOn()
        func next(limit: Int) throws -> RecordBatch? {
            readOn.set(pthread_self())
            return try inner.next(limit: limit)
        }
    }

    @Test func recycledRecordsAreFreedOnTheReadingThread() throws {
        let source = ThreadRecording()
        let reader = ReadAhead(source: source, limit: 2, prepare: Self.prepareKeys)
        reader.start()
        let freed = FreedOn()
        _ = try reader.next()
        reader.recycle(Tracked(freed))
        while try reader.next() != nil {}
        reader.stop()
        let on = try #require(freed.value)
        #expect(pthread_equal(on, try #require(source.readOn.value)) != 0)
        #expect(pthread_equal(on, pthread_self()) == 0)
    }

    @Test func anErrorComesAfterTheBatchesBeforeIt() throws {
        let reader = ReadAhead(source: Counting(total: 10, failAt: 4), limit: 2, prepare: Self.prepareKeys)
        reader.start()
        defer { reader.stop() }
        var batches = 0
        #expect(throws: Counting.Broken.self) {
            while try reader.next() != nil { batches += 1 }
        }
        #expect(batches == 4)
    }

    /// The batch-local stages run in `prepare` on the reading thread: an error of a stage
    /// comes out in its batch's place too, after the batches before it, on either thread.
    @Test(arguments: [true, false])
    func aPrepareErrorComesAfterTheBatchesBeforeIt(threaded: Bool) throws {
        struct StageFailed: Error {}
        let reader = ReadAhead(source: Counting(total: 10), limit: 2) { batch in
            if batch.records.first?.position.line == 7 { throw StageFailed() }
            return Self.prepareKeys(&batch)
        }
        if threaded { reader.start() }
        defer { reader.stop() }
        var lines: [Int] = []
        #expect(throws: StageFailed.self) {
            while let item = try reader.next() { lines += item.0.records.map(\.position.line) }
        }
        #expect(lines == [1, 2, 3, 4, 5, 6])
    }

    /// A source of `total` batches whose checkpoint moves its file by `bytes` a batch (none
    /// when nil); `sent` is read after the reading thread has been joined.
    final class Sized: RecordSource {
        var sent = 0
        let bytes: Int?
        init(bytes: Int?) { self.bytes = bytes }
        func next(limit: Int) throws -> RecordBatch? {
            sent += 1
            let records = (0..<limit).map { Record(fields: Fields(), position: SourcePosition(file: "f", line: (sent - 1) * limit + $0 + 1)) }
            let checkpoints = bytes.map { [SourceCheckpoint(fileID: "f", path: "f", offset: Int64(sent * $0), line: sent * limit, complete: false)] } ?? []
            return RecordBatch(records: records, checkpoints: checkpoints)
        }
    }

    /// With nobody taking batches, the reader fills its queue and waits: up to `capacity`
    /// batches, a second or later only while the queued ones came from less than the byte
    /// budget of input (expected counts worked out by hand from the rule).
    struct QueueCase: Sendable, CustomTestStringConvertible {
        var bytes: Int?
        var capacity: Int
        var budget: Int
        var queued: Int
        var testDescription: String { "\(bytes.map(String.init) ?? "no") bytes a batch, capacity \(capacity): \(queued) queued" }
    }
    static let queueCases: [QueueCase] = [
        QueueCase(bytes: nil, capacity: 3, budget: 4 << 20, queued: 3),  // no checkpoints: batches counted only
        QueueCase(bytes: 1_000, capacity: 3, budget: 4 << 20, queued: 3),  // small batches: the count bounds
        QueueCase(bytes: 3 << 20, capacity: 3, budget: 4 << 20, queued: 2),  // 3 MiB queued < 4 MiB: one more, then 6 MiB
        QueueCase(bytes: 5 << 20, capacity: 3, budget: 4 << 20, queued: 1),  // one wide batch fills the budget
        QueueCase(bytes: 1_000, capacity: 1, budget: 4 << 20, queued: 1),
        QueueCase(bytes: 1_000, capacity: 6, budget: 4 << 20, queued: 6),
    ]

    @Test(arguments: queueCases)
    func theQueueHoldsCapacityBatchesWithinTheByteBudget(_ c: QueueCase) throws {
        let source = Sized(bytes: c.bytes)
        let reader = ReadAhead(source: source, limit: 2, capacity: c.capacity, byteBudget: c.budget, prepare: Self.prepareKeys)
        reader.start()
        usleep(300_000)
        reader.stop()
        #expect(source.sent == c.queued)
    }

    @Test func stoppingEarlyEndsTheReader() throws {
        let source = Counting(total: 1_000_000)
        let reader = ReadAhead(source: source, limit: 1, capacity: 2, prepare: Self.prepareKeys)
        reader.start()
        _ = try reader.next()
        reader.stop()
        // Taken 1, at most `capacity` queued, and at most one more in hand when stopped.
        #expect(source.sent <= 4)
    }
}

/// The runner's worker thread (the stages after the last stateful one, coercion, row
/// encoding): batches come back in the order submitted, each done once; an error comes
/// back in its batch's place, after the batches before it; with or without a thread.
@Suite struct BatchWorkerTests {
    struct Failed: Error, Equatable { var n: Int }

    @Test(arguments: [(true, 1), (true, 2), (true, 5), (false, 2)])
    func batchesComeBackInOrder(threaded: Bool, capacity: Int) throws {
        let worker = BatchWorker<Int, Int>(capacity: capacity) { n in
            if n % 7 == 0 { usleep(200) } // some take longer: the order must not change
            return n * n
        }
        if threaded { worker.start() }
        defer { worker.stop() }
        var out: [Int] = []
        var next = 1
        while next <= 100 || worker.pending > 0 {
            while next <= 100, !worker.isFull { worker.submit(next); next += 1 }
            guard let r = try worker.take() else { break }
            out.append(r)
        }
        #expect(out == (1...100).map { $0 * $0 })
        #expect(try worker.take() == nil)
    }

    @Test(arguments: [true, false])
    func anErrorComesBackInItsBatchsPlace(threaded: Bool) throws {
        let worker = BatchWorker<Int, Int>(capacity: 3) { n in
            if n == 4 { throw Failed(n: n) }
            return n
        }
        if threaded { worker.start() }
        defer { worker.stop() }
        for n in 1...3 { worker.submit(n) }
        #expect(try worker.take() == 1)
        worker.submit(4)
        #expect(try worker.take() == 2)
        worker.submit(5)
        #expect(try worker.take() == 3)
        #expect(throws: Failed(n: 4)) { try worker.take() }
        #expect(try worker.take() == 5)
    }

    #if os(Linux)
    /// A thread's nice value as the kernel reports it (`/proc/thread-self/stat`, field 19).
    static func threadNice() throws -> Int {
        let stat = try String(contentsOfFile: "/proc/thread-self/stat", encoding: .utf8)
        let fields = stat[stat.index(after: stat.lastIndex(of: ")")!)...].split(separator: " ")
        return Int(fields[16])! // fields 3... after the command's name
    }

    /// The worker's thread runs `niceness` below the thread that started it (its nice value
    /// that much higher, at most 19); the starting thread's own is unchanged.
    @Test(arguments: [Int32(0), 5, 30])
    func theWorkersThreadRunsBelowItsStarter(niceness: Int32) throws {
        let before = try Self.threadNice()
        let worker = BatchWorker<Int, Int>(capacity: 1, niceness: niceness) { _ in (try? Self.threadNice()) ?? -100 }
        worker.start()
        defer { worker.stop() }
        worker.submit(0)
        #expect(try worker.take() == min(19, before + Int(niceness)))
        #expect(try Self.threadNice() == before)
    }
    #endif

    @Test func stoppingDropsWhatWasNotDone() throws {
        let worker = BatchWorker<Int, Int>(capacity: 4) { n in usleep(20_000); return n }
        worker.start()
        for n in 1...4 { worker.submit(n) }
        worker.stop() // returns once the thread ended, without finishing all four
        #expect(worker.pending == 4)
    }
}

/// The worker's coercion and encoding (`Runner.finish`): rows that only encoding sinks
/// take are encoded a value at a time; a record that one schema rejects reaches no sink,
/// and what another schema had encoded of it already is cut away. Expected bytes are
/// written out by hand.
@Suite struct FinishTests {
    /// `a|b|...` rows of compact JSON values, one per line.
    struct BarEncoder: RowEncoder {
        func append(_ value: Value, column: Int, to out: inout RowBytes) {
            if column > 0 { out.append(UInt8(ascii: "|")) }
            JSONWriter.write(value, into: &out)
        }
        func endRow(_ out: inout RowBytes) { out.append(0x0A) }
    }

    static let context = RunContext(projectRoot: "/", outputRoot: "/", pipeline: "p", partition: Partition("2026-11-18", granularity: .day)!,
                                    logger: Logger(label: "test"))

    static func batch() throws -> RecordBatch {
        let lines = [#"{"n": 1, "s": "a"}"#, #"{"n": "2", "s": "b"}"#, #"{"n": 3, "s": null}"#, #"{"n": "x", "s": "d"}"#, #"{"n": 5}"#]
        return RecordBatch(records: try lines.enumerated().map { i, line in
            guard case .object(let fields) = try JSONParser.parse(line) else { throw CoercionError(column: "", problem: "") }
            return Record(fields: fields, position: SourcePosition(file: "f", line: i + 1), key: "k\(i + 1)")
        })
    }

    /// Schema A takes any `n` as a string; schema B wants an integer `n` and a REQUIRED `s`.
    static let a = SchemaCoercer(schema: TableSchema(fields: [SchemaField(name: "n", type: .string), SchemaField(name: "key", type: .string)]),
                                 keyColumn: "key")
    static let b = SchemaCoercer(schema: TableSchema(fields: [SchemaField(name: "s", type: .string, mode: .required),
                                                              SchemaField(name: "n", type: .integer)]), keyColumn: nil)

    @Test(arguments: [false, true])
    func rejectedRecordsLeaveNoBytes(withASinkOfValues: Bool) throws {
        // Sinks: A encoded, B encoded, and (optionally) B again taking values, not bytes.
        let encoders: [(any RowEncoder)?] = [BarEncoder(), BarEncoder()] + (withASinkOfValues ? [nil] : [])
        let coercerOf = [0, 1] + (withASinkOfValues ? [1] : [])
        let out = try Runner.finish(try Self.batch(), after: [], context: Self.context, coercers: [Self.a, Self.b],
                                    coercerOf: coercerOf, encoders: encoders)
        // Records 3 (no s), 4 (n not an integer) and 5 (no s) fail schema B: they reach no sink.
        #expect(out.loaded == 2)
        #expect(out.batch.deadLetters.map(\.position.line) == [3, 4, 5])
        #expect(out.rows[0].map(\.key) == ["k1", "k2"])
        #expect(String(decoding: out.encoded[0]!.bytes, as: UTF8.self) == "\"1\"|\"k1\"\n\"2\"|\"k2\"\n")
        #expect(String(decoding: out.encoded[1]!.bytes, as: UTF8.self) == "\"a\"|1\n\"b\"|2\n")
        #expect(out.encoded[0]!.ends == [9, 18])
        #expect(out.encoded[1]!.ends == [6, 12])
        // Values only where a sink takes them.
        #expect(out.rows[0].allSatisfy { $0.values.isEmpty })
        #expect(out.rows[1].map(\.values) == (withASinkOfValues ? [[.string("a"), .int(1)], [.string("b"), .int(2)]] : [[], []]))
    }

    /// Two encoding sinks of one schema (each of its values goes to both) and one of
    /// another (one sink alone: its encoder taken out of the array for the record): the
    /// same bytes as one sink per schema.
    @Test func sinksSharingASchemaGetTheSameBytes() throws {
        let out = try Runner.finish(try Self.batch(), after: [], context: Self.context, coercers: [Self.a, Self.b],
                                    coercerOf: [0, 1, 0], encoders: [BarEncoder(), BarEncoder(), BarEncoder()])
        #expect(out.loaded == 2)
        #expect(String(decoding: out.encoded[0]!.bytes, as: UTF8.self) == "\"1\"|\"k1\"\n\"2\"|\"k2\"\n")
        #expect(out.encoded[2]!.bytes == out.encoded[0]!.bytes && out.encoded[2]!.ends == [9, 18])
        #expect(String(decoding: out.encoded[1]!.bytes, as: UTF8.self) == "\"a\"|1\n\"b\"|2\n")
    }

    /// A buffer handed back after a sink wrote it (`SpareBuffers`) still holds that batch's
    /// bytes: the next batch is encoded into its storage, and holds the new rows alone. The
    /// pool keeps `capacity` buffers at most, and none that can hold more than `largest`
    /// bytes.
    @Test func spareBuffersAreEncodedIntoAgain() throws {
        let spare = SpareBuffers(capacity: 2, largest: 200_000)
        let old = [UInt8](repeating: UInt8(ascii: "#"), count: 100_000)
        let storage = old.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }
        spare.put(consume old)
        let out = try Runner.finish(try Self.batch(), after: [], context: Self.context, coercers: [Self.a, Self.b],
                                    coercerOf: [0, 1], encoders: [BarEncoder(), BarEncoder()], spare: spare)
        #expect(String(decoding: out.encoded[0]!.bytes, as: UTF8.self) == "\"1\"|\"k1\"\n\"2\"|\"k2\"\n")
        #expect(out.encoded[0]!.bytes.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) } == storage)
        #expect(String(decoding: out.encoded[1]!.bytes, as: UTF8.self) == "\"a\"|1\n\"b\"|2\n")
        #expect(spare.take() == nil)
        for n in 0..<3 { spare.put([UInt8(n)]) }
        #expect(spare.take() == [1])
        #expect(spare.take() == [0])
        #expect(spare.take() == nil)
        spare.put([UInt8](repeating: 0, count: 200_001))
        #expect(spare.take() == nil)
    }
}
