import Foundation
import GRDB
import GRDBSQLite
import SluiceCore
@testable import SluiceSQLite
import SluiceTestSupport
import Testing

/// Window events through the migrations: v7 (scope ids, 8-byte hashes of window keys with
/// collisions resolved by open addressing, record keys as 16 bytes) and v9 (in time
/// order, window keys as text again).
@Suite struct WindowStoreTests {
    struct Event: Hashable {
        var scope: String; var key: String; var time: Int64; var recordKey: String
        var windowEvent: WindowEvent { WindowEvent(key: key, time: time, recordKey: recordKey) }
    }

    /// The definition, written plainly: events of the scope and key with times in (after, upTo].
    static func count(_ events: [Event], scope: String, key: String, after: Int64, upTo: Int64) -> Int {
        events.filter { $0.scope == scope && $0.key == key && $0.time > after && $0.time <= upTo }.count
    }

    /// A record key as sluice makes them (32 lowercase hex digits) or any other text.
    static func recordKey(_ n: Int) -> String {
        n % 3 == 0 ? "r\(n)" : String(repeating: "0", count: 24) + String(format: "%08x", n * 2_654_435_761 % 4_294_967_291)
    }

    static func events(scopes: [String], keys: Int, count: Int, seed: UInt64) -> [Event] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { n in
            Event(scope: scopes[Int(rng.next() % UInt64(scopes.count))], key: "fp\(rng.next() % UInt64(keys))",
                  time: 1_000_000 + Int64(rng.next() % 10_000), recordKey: recordKey(n))
        }
    }

    static let commit = SegmentCommit(pipeline: "p", partition: "2026-11-18", checkpoints: [], delivered: [:], receipts: [], finishesReplace: false)

    /// Every count the store answers equals the definition's, for every key of both scopes
    /// and a few windows; replayed records are all found, and only at their own event time.
    static func expectCounts(_ state: SQLiteStateStore, _ events: [Event], scopes: [String], keys: Int) throws {
        for scope in scopes {
            let windows: [(Int64, Int64)] = [(0, 2_000_000), (1_002_000, 1_005_000), (1_009_000, 1_009_999)]
            var queries: [WindowQuery] = []
            var expected: [Int] = []
            for k in 0..<keys + 1 { // one key more, never seen
                for (a, b) in windows {
                    queries.append(WindowQuery(key: "fp\(k)", after: a, upTo: b, maxSequence: nil))
                    expected.append(count(events, scope: scope, key: "fp\(k)", after: a, upTo: b))
                }
            }
            #expect(try state.windowCounts(scope: scope, queries) == expected, "scope \(scope)")
            let mine = events.filter { $0.scope == scope }.map(\.windowEvent)
            let probe = mine + [WindowEvent(key: "fp1", time: 1_000_000, recordKey: "never-seen")]
            #expect(try Set(state.windowSequences(scope: scope, probe).keys) == Set(mine.map(\.recordKey)))
            // The same record keys at other times are other records.
            let moved = mine.map { WindowEvent(key: $0.key, time: $0.time + 20_000, recordKey: $0.recordKey) }
            #expect(try state.windowSequences(scope: scope, moved).isEmpty)
        }
    }

    /// Writes events the way a store before v7 did (texts); returns their sequence numbers.
    static func writeOldStore(_ path: String, _ events: [Event]) throws -> [String: Int64] {
        var sequences: [String: Int64] = [:]
        let old = try SQLiteStateStore(path: path, windowKeyHash: WindowKeys.hash, migratingUpTo: "v5-checkpoints-by-partition")
        try old.queue.write { db in
            for e in events {
                try db.execute(sql: "INSERT INTO window_events (scope, window_key, event_time, record_key) VALUES (?, ?, ?, ?)",
                               arguments: [e.scope, e.key, e.time, e.recordKey])
                sequences[e.recordKey] = db.lastInsertedRowID
            }
        }
        return sequences
    }

    /// Hashes that made keys collide in v7 (all of them, some of them, at the top of the
    /// range where the probe wraps) leave the counts of the definition after v9, before and
    /// after more events are written, and in a store opened anew.
    @Test(arguments: ["default", "all collide", "by length", "top of the range"])
    func hashCollisionsOfV7AreHarmless(hashing: String) throws {
        let hash: @Sendable (String) -> Int64 = switch hashing {
        case "all collide": { _ in 42 }
        case "by length": { Int64($0.count) }
        case "top of the range": { _ in .max - 1 }
        default: WindowKeys.hash
        }
        let dir = try TestSupport.scratchDirectory("windows")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/state.sqlite"
        let scopes = ["p/rate_limit/fp", "q/rate_limit/ip"]
        let events = Self.events(scopes: scopes, keys: 12, count: 600, seed: 7)
        _ = try Self.writeOldStore(path, Array(events[..<250]))
        let state = try SQLiteStateStore(path: path, windowKeyHash: hash, migratingUpTo: nil)
        try Self.expectCounts(state, Array(events[..<250]), scopes: scopes, keys: 12)
        for e in events[250...] { try state.addWindowEvents(scope: e.scope, [e.windowEvent]) }
        try Self.expectCounts(state, events, scopes: scopes, keys: 12)
        try state.commit(Self.commit)
        try Self.expectCounts(state, events, scopes: scopes, keys: 12)
        let reopened = try SQLiteStateStore(path: path, windowKeyHash: hash, migratingUpTo: nil)
        try Self.expectCounts(reopened, events, scopes: scopes, keys: 12)
        // Twelve distinct keys per scope, stored by their texts; the hashes' table is gone.
        let (stored, tables) = try reopened.queue.read { db in
            (try Int.fetchOne(db, sql: "SELECT count(DISTINCT scope_id || '/' || window_key) FROM window_events"),
             try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE name LIKE 'window%' ORDER BY name"))
        }
        #expect(stored == 24)
        #expect(tables == ["window_events", "window_scopes"])
    }

    /// A store written before v7 (text scopes, window keys and record keys) keeps its
    /// events through the migrations: same counts, same sequence numbers (replays find
    /// their records and count what came before them), and new events number after
    /// every old one, deleted ones included.
    @Test func migrationConvertsExistingEvents() throws {
        let dir = try TestSupport.scratchDirectory("windows")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/state.sqlite"
        let scopes = ["p/rate_limit/fp", "q/rate_limit/ip"]
        let events = Self.events(scopes: scopes, keys: 9, count: 500, seed: 11)
        let deleted = Event(scope: scopes[0], key: "gone", time: 5, recordKey: "deleted")
        let sequences = try Self.writeOldStore(path, events + [deleted])
        do {
            let old = try SQLiteStateStore(path: path, windowKeyHash: WindowKeys.hash, migratingUpTo: "v5-checkpoints-by-partition")
            try old.queue.write { db in try db.execute(sql: "DELETE FROM window_events WHERE record_key = 'deleted'") }
        }
        let state = try SQLiteStateStore(path: path)
        try Self.expectCounts(state, events, scopes: scopes, keys: 9)
        for scope in scopes {
            let mine = events.filter { $0.scope == scope }
            let expected = Dictionary(uniqueKeysWithValues: mine.map { ($0.recordKey, sequences[$0.recordKey]!) })
            #expect(try state.windowSequences(scope: scope, mine.map(\.windowEvent)) == expected)
        }
        // A replayed record counts only the events stored before it.
        let replayed = events[300]
        let before = events[...300].filter { $0.scope == replayed.scope && $0.key == replayed.key && $0.time > replayed.time - 500 && $0.time <= replayed.time }.count
        #expect(try state.windowCount(scope: replayed.scope, key: replayed.key, after: replayed.time - 500, upTo: replayed.time,
                                      maxSequence: sequences[replayed.recordKey]) == before)
        // The old text columns are gone; sluice's own record keys are 16 bytes.
        let (columns, blobs) = try state.queue.read { db in
            (try db.columns(in: "window_events").map(\.name),
             try Int.fetchOne(db, sql: "SELECT count(*) FROM window_events WHERE typeof(record_key) = 'blob' AND length(record_key) = 16")!)
        }
        #expect(columns == ["scope_id", "event_time", "seq", "window_key", "record_key"])
        #expect(blobs == events.filter { !$0.recordKey.hasPrefix("r") }.count)
        // New events number after every old one.
        let new = WindowEvent(key: "fp1", time: 1_000_000, recordKey: "new")
        try state.addWindowEvents(scope: scopes[0], [new])
        try state.flushWindowEvents()
        let newSequence = try #require(try state.windowSequences(scope: scopes[0], [new])["new"])
        #expect(newSequence > sequences["deleted"]!)
    }
}

/// The copies in memory of stored windows (`StoredWindow`): every count equals the
/// definition, computed here by brute force over the events in the order they were added,
/// whatever the memory limit (a scope kept in memory, or counted per batch once its range
/// outgrows the limit, at once or after a while), across commits, prunes,
/// late records, replays (counted once, with the events first seen before them), writes
/// by another store on the file or by this connection outside the store, and reopening.
@Suite struct StoredWindowTests {
    struct Event {
        var key: String; var time: Int64; var recordKey: String
        var windowEvent: WindowEvent { WindowEvent(key: key, time: time, recordKey: recordKey) }
    }
    static let scope = "p/rate_limit/fp"
    static let window: Int64 = 1_000

    /// Events of `key` in (time - window, time] not pruned, among `events` (in the order added).
    static func count(_ events: ArraySlice<Event>, key: String, time: Int64, prunedBefore: Int64) -> Int {
        events.filter { $0.key == key && $0.time > time - window && $0.time <= time && $0.time >= prunedBefore }.count
    }

    @Test(arguments: [1 << 18, 300, 60, 1])
    func countsFollowTheDefinition(limit: Int) throws {
        let dir = try TestSupport.scratchDirectory("storedwindows")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/state.sqlite"
        let memory = StoredWindow.Limits(events: limit)
        func open() throws -> SQLiteStateStore {
            try SQLiteStateStore(path: path, windowKeyHash: WindowKeys.hash, migratingUpTo: nil, windowMemory: memory)
        }
        var state = try open()
        var rng = SplitMix64(seed: 99)
        var added: [Event] = [] // in the order the store saw them first
        var prunedBefore = Int64.min
        var clock: Int64 = 1_000_000
        var nextID = 0
        var checked = (replays: 0, late: 0)
        var countedPerBatch = Set<Int>()
        for round in 0..<90 {
            // A batch: new records (some late, some sharing a time), and replays of earlier ones.
            var batch: [Event] = []
            var inBatch = Set<String>()
            for _ in 0..<30 {
                let replayable = added.indices.filter { added[$0].time >= prunedBefore && !inBatch.contains(added[$0].recordKey) }
                if rng.next() % 4 == 0, let pick = replayable.randomElement(using: &rng) {
                    batch.append(added[pick])
                } else {
                    clock += Int64(rng.next() % 40)
                    let late = rng.next() % 8 == 0
                    let time = max(prunedBefore, late ? clock - Int64(rng.next() % UInt64(3 * Self.window)) : clock)
                    batch.append(Event(key: "fp\(rng.next() % 9)", time: time, recordKey: String(format: "%032x", nextID * 7_919 + 13)))
                    nextID += 1
                    if late { checked.late += 1 }
                }
                inBatch.insert(batch.last!.recordKey)
            }
            // What RateLimit asks: which are replays, then one count per record; in one call
            // (`windowLookup`), before the two calls in even rounds and after them in odd ones
            // (the store's copy of the window as either left it).
            let position = Dictionary(uniqueKeysWithValues: added.enumerated().map { ($0.element.recordKey, $0.offset) })
            let early = round % 2 == 0 ? try state.windowLookup(scope: Self.scope, batch.map(\.windowEvent), window: Self.window) : nil
            let sequences = try state.windowSequences(scope: Self.scope, batch.map(\.windowEvent))
            #expect(Set(sequences.keys) == Set(batch.map(\.recordKey).filter { position[$0] != nil }), "round \(round)")
            let queries = batch.map { WindowQuery(key: $0.key, after: $0.time - Self.window, upTo: $0.time, maxSequence: sequences[$0.recordKey]) }
            let expected = batch.map { e -> Int in
                // A replay counts the events added up to itself; a new record all of them.
                let upTo = position[e.recordKey].map { added[...$0] } ?? added[...]
                return Self.count(upTo, key: e.key, time: e.time, prunedBefore: prunedBefore)
            }
            #expect(try state.windowCounts(scope: Self.scope, queries) == expected, "round \(round)")
            let lookup = try early ?? state.windowLookup(scope: Self.scope, batch.map(\.windowEvent), window: Self.window)
            #expect(lookup.sequences == sequences, "round \(round)")
            #expect(lookup.counts == expected, "round \(round)")
            // In memory within the limit, or counted per batch once the range outgrew it.
            if let window = state.ledgerLock.withLock({ state.ledgerKnown.windows[Self.scope] }) {
                #expect(window.events <= limit, "round \(round)")
                if window.tooLarge { countedPerBatch.insert(round) }
            }
            checked.replays += sequences.count
            let new = batch.filter { position[$0.recordKey] == nil }
            try state.addWindowEvents(scope: Self.scope, new.map(\.windowEvent))
            added += new
            if round % 11 == 10 {
                prunedBefore = max(prunedBefore, clock - 2 * Self.window)
                try state.pruneWindowEvents(scope: Self.scope, before: prunedBefore)
            }
            if round % 3 == 2 {
                try state.commit(WindowStoreTests.commit)
                // Stored events number in the order they were first seen.
                let stored = try state.windowSequences(scope: Self.scope, added.map(\.windowEvent))
                let order = added.compactMap { stored[$0.recordKey] }
                #expect(order == order.sorted() && Set(order).count == order.count, "round \(round)")
                #expect(order.count == added.filter { $0.time >= prunedBefore }.count, "round \(round)")
                let outside = Event(key: "fp\(rng.next() % 9)", time: clock, recordKey: "outside-\(round)")
                switch round % 4 {
                case 0: // Another store on the file adds an event.
                    let other = try open()
                    try other.addWindowEvents(scope: Self.scope, [outside.windowEvent])
                    try other.commit(WindowStoreTests.commit)
                    added.append(outside)
                case 1: // This connection, outside the store's write path.
                    try state.queue.write { db in
                        let scopeID = try #require(try Int64.fetchOne(db, sql: "SELECT id FROM window_scopes WHERE name = ?", arguments: [Self.scope]))
                        try WindowFilterTests.insertOutside(db, scopeID: scopeID, key: "fp0", time: clock, recordKey: "outside-\(round)")
                    }
                    added.append(Event(key: "fp0", time: clock, recordKey: "outside-\(round)"))
                case 2: state = try open() // reopened: nothing in memory
                default: break
                }
            }
        }
        #expect(checked.replays > 100 && checked.late > 100)
        // With 300, the scope is kept in memory for the first 20 rounds, then counted per batch.
        #expect(countedPerBatch.isEmpty == (limit > 300))
        #expect((countedPerBatch.min() ?? .max) > (limit == 300 ? 10 : 0))
    }

    /// A batch whose windows reach back over more events than the copy may hold (a record
    /// far in the past) is counted per batch; the next, ordinary batch is counted from
    /// memory again.
    /// Pending events written by the multi-row `INSERT OR FAIL` (one statement, several,
    /// and a last one shorter than the rest), from two batches, in one commit: every event
    /// stored, and counted as the definition counts them. (That the statement keeps no
    /// statement journal was measured with `strace`: docs/benchmarks.md.)
    @Test(arguments: [1, SQLiteStateStore.windowEventsPerStatement, 2 * SQLiteStateStore.windowEventsPerStatement + 7])
    func pendingEventsAreAllWritten(events n: Int) throws {
        let dir = try TestSupport.scratchDirectory("storedwindows")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let state = try SQLiteStateStore(path: dir + "/state.sqlite", windowKeyHash: WindowKeys.hash, migratingUpTo: nil)
        let events = (0..<n).map { WindowStoreTests.Event(scope: Self.scope, key: "fp\($0 % 3)", time: 10_000 + Int64($0 / 2), recordKey: "r\($0)") }
        try state.addWindowEvents(scope: Self.scope, events.prefix(n / 2).map(\.windowEvent))
        try state.addWindowEvents(scope: Self.scope, events.dropFirst(n / 2).map(\.windowEvent))
        try state.commit(WindowStoreTests.commit)
        let stored = try state.queue.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM window_events") }
        #expect(stored == n)
        for key in ["fp0", "fp1", "fp2"] {
            for (after, upTo) in [(Int64(0), Int64(20_000)), (Int64(10_000), Int64(10_000 + n / 4))] {
                #expect(try state.windowCount(scope: Self.scope, key: key, after: after, upTo: upTo, maxSequence: nil)
                        == WindowStoreTests.count(events, scope: Self.scope, key: key, after: after, upTo: upTo))
            }
        }
    }

    /// A statement of pending events that fails halfway (`OR FAIL` keeps the rows before
    /// the failing one) fails the whole commit: none of its events is stored, and the
    /// events stored before stay as they were. The failure is made by setting the scope's
    /// next sequence number back, so that the second event of the next write takes the
    /// time and number of a stored one, and the first does not.
    @Test func aFailedWriteOfPendingEventsLeavesNoneOfThem() throws {
        let dir = try TestSupport.scratchDirectory("storedwindows")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let state = try SQLiteStateStore(path: dir + "/state.sqlite", windowKeyHash: WindowKeys.hash, migratingUpTo: nil)
        try state.addWindowEvents(scope: Self.scope, [WindowEvent(key: "fp0", time: 150, recordKey: "a"), WindowEvent(key: "fp0", time: 200, recordKey: "b")])
        try state.commit(WindowStoreTests.commit)
        func rows() throws -> [[Int64]] {
            try state.queue.read { db in
                try GRDB.Row.fetchAll(db, sql: "SELECT event_time, seq FROM window_events ORDER BY event_time").map { [$0[0], $0[1]] }
            }
        }
        let before = try rows()
        #expect(before.map { $0[0] } == [150, 200])
        try state.queue.write { db in try db.execute(sql: "UPDATE window_scopes SET next_seq = ?", arguments: [before[0][1]]) }
        try state.addWindowEvents(scope: Self.scope, [WindowEvent(key: "fp1", time: 100, recordKey: "c"), WindowEvent(key: "fp1", time: 200, recordKey: "d")])
        #expect(throws: (any Error).self) { try state.commit(WindowStoreTests.commit) }
        #expect(try rows() == before)
    }

    @Test func oneFarReachingBatchDoesNotEndTheCopy() throws {
        let dir = try TestSupport.scratchDirectory("storedwindows")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let state = try SQLiteStateStore(path: dir + "/state.sqlite", windowKeyHash: WindowKeys.hash, migratingUpTo: nil,
                                         windowMemory: StoredWindow.Limits(events: 100))
        let stored = (0..<300).map { WindowEvent(key: "fp\($0 % 3)", time: 10_000 + Int64($0) * 10, recordKey: "s\($0)") }
        try state.addWindowEvents(scope: Self.scope, stored)
        try state.commit(WindowStoreTests.commit)
        func copy() -> StoredWindow? { state.ledgerLock.withLock { state.ledgerKnown.windows[Self.scope] } }
        // Ordinary: the last 500 time units hold 49 events, 16 of fp0 (counts by Python, by hand).
        #expect(try state.windowCount(scope: Self.scope, key: "fp0", after: 12_500, upTo: 13_000, maxSequence: nil) == 16)
        #expect(copy()?.tooLarge == false)
        // Reaching back over all 300: counted per batch, right all the same.
        #expect(try state.windowCounts(scope: Self.scope, [WindowQuery(key: "fp0", after: 0, upTo: 13_000, maxSequence: nil),
                                                           WindowQuery(key: "fp1", after: 12_500, upTo: 13_000, maxSequence: nil)]) == [100, 16])
        #expect(copy()?.tooLarge == true)
        // Ordinary again: from memory.
        #expect(try state.windowCount(scope: Self.scope, key: "fp2", after: 12_500, upTo: 13_000, maxSequence: nil) == 17)
        #expect(copy()?.tooLarge == false)
        #expect(copy()?.events == 49)
    }

    /// A scope whose sequence numbers pass 40 bits (the copy's `Entry`) is counted per
    /// batch, and right: the counts by hand.
    @Test func sequenceNumbersPast40BitsAreCountedPerBatch() throws {
        let dir = try TestSupport.scratchDirectory("storedwindows")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let state = try SQLiteStateStore(path: dir + "/state.sqlite")
        try state.addWindowEvents(scope: Self.scope, [WindowEvent(key: "fp", time: 1_000, recordKey: "first")])
        try state.commit(WindowStoreTests.commit)
        try state.queue.write { db in
            try db.execute(sql: "UPDATE window_scopes SET next_seq = ?", arguments: [Int64(1) << 40 - 2])
        }
        let more = (0..<4).map { WindowEvent(key: "fp", time: 1_001 + Int64($0), recordKey: "m\($0)") }
        try state.addWindowEvents(scope: Self.scope, more)
        try state.commit(WindowStoreTests.commit)
        func copy() -> StoredWindow? { state.ledgerLock.withLock { state.ledgerKnown.windows[Self.scope] } }
        #expect(try state.windowCount(scope: Self.scope, key: "fp", after: 0, upTo: 2_000, maxSequence: nil) == 5)
        #expect(copy()?.tooLarge == true)
        // The event first seen second has the number 2^40 - 2: it and the first one.
        #expect(try state.windowCount(scope: Self.scope, key: "fp", after: 0, upTo: 2_000, maxSequence: Int64(1) << 40 - 2) == 2)
        #expect(try state.windowCount(scope: Self.scope, key: "fp", after: 1_001, upTo: 1_003, maxSequence: nil) == 2)
    }

    /// Events added without being counted first (a store's caller may), at times past the
    /// range the copy holds, are counted once when the copy reaches them.
    @Test func eventsPastTheCopysRangeAreCountedOnce() throws {
        let dir = try TestSupport.scratchDirectory("storedwindows")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let state = try SQLiteStateStore(path: dir + "/state.sqlite")
        let early = (0..<10).map { WindowEvent(key: "fp", time: 1_000 + Int64($0), recordKey: "e\($0)") }
        try state.addWindowEvents(scope: Self.scope, early)
        try state.commit(WindowStoreTests.commit)
        #expect(try state.windowCount(scope: Self.scope, key: "fp", after: 0, upTo: 1_100, maxSequence: nil) == 10)
        let late = (0..<10).map { WindowEvent(key: "fp", time: 5_000 + Int64($0), recordKey: "l\($0)") }
        try state.addWindowEvents(scope: Self.scope, late)
        try state.commit(WindowStoreTests.commit)
        #expect(try state.windowCount(scope: Self.scope, key: "fp", after: 0, upTo: 6_000, maxSequence: nil) == 20)
        #expect(try state.windowCount(scope: Self.scope, key: "fp", after: 1_004, upTo: 5_004, maxSequence: nil) == 10)
    }
}

/// The compact copy itself (`StoredWindow`: events by 128-bit key hashes in sorted
/// buckets, split as they fill): every count and `has` equals a brute-force answer over
/// the events held in a plain list, through adds in random order (many events per key,
/// shared times), the store's own inserts (kept only inside the range), forgets, and the
/// buckets' splits.
@Suite struct StoredWindowCopyTests {
    struct Held { var key: String; var time: Int64; var sequence: Int64 }

    @Test(arguments: [(keys: 3, events: 600), (keys: 2_000, events: 12_000), (keys: 30_000, events: 40_000)])
    func answersLikeAList(keys: Int, events: Int) {
        var rng = SplitMix64(seed: UInt64(keys * 31 + events))
        var copy = StoredWindow(from: 0, upTo: 100_000)
        var held: [Held] = []
        var sequence: Int64 = 0
        var forgotten: Int64 = 0
        func check(_ round: Int) {
            #expect(copy.events == held.count, "round \(round)")
            for _ in 0..<300 {
                let key = "fp-\(rng.next() % UInt64(keys))"
                let upTo = forgotten + 1 + Int64(rng.next() % UInt64(100_000 - forgotten))
                let after = max(forgotten, upTo - 1 - Int64(rng.next() % 20_000))
                let maxSequence: Int64? = rng.next() % 3 == 0 ? Int64(rng.next() % UInt64(sequence + 1)) : nil
                // A hint for a later lookup, as the store's loops give it: it changes no answer
                // (and reads only the copy's own words, whatever the buckets' split).
                copy.prefetch(WindowKeyHash("fp-\(rng.next() % UInt64(keys + 1))"))
                var expected = 0
                for e in held where e.key == key && e.time > after && e.time <= upTo && e.sequence <= (maxSequence ?? .max) {
                    expected += 1
                }
                #expect(copy.count(WindowKeyHash(key), after: after, upTo: upTo, maxSequence: maxSequence) == expected,
                        "round \(round): \(key) (\(after), \(upTo)] up to \(String(describing: maxSequence))")
                let at = held.randomElement(using: &rng)
                if let at {
                    #expect(copy.has(WindowKeyHash(at.key), at: at.time), "round \(round)")
                }
                let time = upTo
                #expect(copy.has(WindowKeyHash(key), at: time) == held.contains { $0.key == key && $0.time == time }, "round \(round)")
            }
        }
        for round in 0..<4 {
            for _ in 0..<(events / 4) {
                sequence += 1
                let key = "fp-\(rng.next() % UInt64(keys))"
                // Times in coarse steps, so that keys share times and a key has several events.
                let time = 1 + Int64(rng.next() % 120_000) / 7 * 7
                if rng.next() % 2 == 0 {
                    copy.inserted(WindowKeyHash(key), time: time, sequence: sequence) // kept only within the range
                    if time > forgotten, time <= 100_000 { held.append(Held(key: key, time: time, sequence: sequence)) }
                } else if time > forgotten, time <= 100_000 {
                    let added = copy.add(WindowKeyHash(key), time: time, sequence: sequence)
                    #expect(added)
                    held.append(Held(key: key, time: time, sequence: sequence))
                }
            }
            check(round)
            forgotten += 9_000
            copy.forget(upTo: forgotten)
            held.removeAll { $0.time <= forgotten }
            check(round)
        }
        // Enough events split the buckets (the 64 first ones hold 32 events each on average).
        #expect((copy.buckets.count > StoredWindow.initialBuckets) == (events > 2 * StoredWindow.initialBuckets * StoredWindow.perBucket))
        copy.forget(upTo: 100_000)
        #expect(copy.events == 0 && copy.buckets.count == StoredWindow.initialBuckets)
    }

    /// A scope counted per batch (its range held too many events) stays so when a prune
    /// forgets everything: the next batch of as wide a range does not read it again.
    @Test func aForgetKeepsPerBatchCounting() {
        var copy = StoredWindow()
        #expect(!copy.cover(after: 0, upTo: 1_000, span: 1_000, limit: 1) { _, _, _, add in
            _ = add("a", 10, 1)
            _ = add("b", 20, 2)
            return false // past the limit
        })
        #expect(copy.tooLarge)
        copy.forget(upTo: 5_000)
        #expect(copy.tooLarge)
        var reads = 0
        #expect(!copy.cover(after: 100, upTo: 1_100, span: 1_000, limit: 1) { _, _, _, _ in
            reads += 1
            return true
        })
        #expect(reads == 0)
    }

    /// An event is 24 bytes: its sequence number has 40 bits. One past them is refused by
    /// `add` and empties the copy when the store writes it.
    @Test func sequenceNumbersPast40BitsAreNotKept() {
        #expect(MemoryLayout<StoredWindow.Entry>.stride == 24)
        var copy = StoredWindow(from: 0, upTo: 100)
        let fits = copy.add(WindowKeyHash("a"), time: 5, sequence: 1 << 40 - 1)
        #expect(fits)
        #expect(copy.count(WindowKeyHash("a"), after: 0, upTo: 10, maxSequence: 1 << 40 - 1) == 1)
        let past = copy.add(WindowKeyHash("a"), time: 6, sequence: 1 << 40)
        #expect(!past)
        #expect(copy.count(WindowKeyHash("a"), after: 0, upTo: 10, maxSequence: nil) == 1)
        copy.inserted(WindowKeyHash("b"), time: 7, sequence: 1 << 40)
        #expect(copy.events == 0 && copy.upTo == 0)
    }
}

/// The ledger lookups a store skips (keys its filter never saw, while it knows every key
/// the ledger holds): a key in the ledger is found however it got there.
@Suite struct LedgerFilterTests {
    static func commit(_ state: SQLiteStateStore, _ keys: [String], partition: String = "2026-11-18", sink: String = "csv") throws {
        try state.commit(SegmentCommit(pipeline: "p", partition: partition, checkpoints: [], delivered: [sink: keys], receipts: [],
                                       finishesReplace: false))
    }

    @Test(arguments: ["this store's commit", "another store on the file", "this connection, outside the store",
                      "a store before this one", "a replace of the partition"])
    func keysInTheLedgerAreFound(how: String) throws {
        let dir = try TestSupport.scratchDirectory("ledger")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/state.sqlite"
        if how == "a store before this one" { try Self.commit(SQLiteStateStore(path: path), ["k2"]) }
        let state = try SQLiteStateStore(path: path)
        let keys = (0..<3000).map { "k\($0)" }
        // The filter is made on the first lookup (an empty ledger, unless a store before this one wrote it).
        let first = try state.delivered(pipeline: "p", sink: "csv", keys: keys, excludingPartition: nil)
        #expect(first == (how == "a store before this one" ? ["k2"] : []))
        try Self.commit(state, ["k0", "k1"])
        switch how {
        case "another store on the file": try Self.commit(SQLiteStateStore(path: path), ["k2"])
        case "this connection, outside the store":
            try state.queue.write { db in
                try db.execute(sql: """
                    INSERT INTO ledger (sink_id, key, partition_id, segment)
                    SELECT s.id, 'k2', p.id, 1 FROM ledger_sinks s, ledger_partitions p
                    WHERE s.pipeline = 'p' AND s.sink = 'csv' AND p.pipeline = 'p' AND p.partition = '2026-11-18'
                    """)
            }
        case "a replace of the partition":
            try state.commit(SegmentCommit(pipeline: "p", partition: "2026-11-18", checkpoints: [], delivered: ["csv": ["k2", "k1"]],
                                           receipts: [], finishesReplace: true))
        case "this store's commit": try Self.commit(state, ["k2"])
        default: break
        }
        // Another sink and another pipeline hold none of them.
        try Self.commit(state, ["k5"], sink: "other")
        let expected: Set<String> = how == "a replace of the partition" ? ["k1", "k2"] : ["k0", "k1", "k2"]
        #expect(try state.delivered(pipeline: "p", sink: "csv", keys: keys, excludingPartition: nil) == expected)
        #expect(try state.delivered(pipeline: "p", sink: "csv", keys: keys, excludingPartition: "2026-11-18") == [])
        #expect(try state.delivered(pipeline: "p", sink: "other", keys: keys, excludingPartition: nil) == ["k5"])
        #expect(try state.delivered(pipeline: "q", sink: "csv", keys: keys, excludingPartition: nil) == [])
        // Many keys over several segments: every committed one is found, no other.
        for segment in 0..<3 { try Self.commit(state, (0..<50_000).map { "s\(segment)-\($0)" }) }
        let probe = (0..<20_000).map { "s\($0 % 4)-\($0 * 7 % 50_000)" }
        #expect(try state.delivered(pipeline: "p", sink: "csv", keys: probe, excludingPartition: nil) == Set(probe.filter { !$0.hasPrefix("s3") }))
    }
}

/// A process that starts on a ledger with keys reads them into its filter (up to a
/// limit): every key of the ledger is found, sluice's own (stored as 16 bytes) and other
/// text alike, and the keys of the ledger are the only candidates the store looks up.
@Suite struct LedgerFilterFromHistoryTests {
    @Test(arguments: [false, true])
    func aStoreOnALedgerWithKeysFiltersByThem(pastTheLimit: Bool) throws {
        let dir = try TestSupport.scratchDirectory("ledger")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/state.sqlite"
        let own = (0..<3_000).map { BloomFilterTests.ownKey(UInt64($0)) }
        let other = (0..<50).map { "order-\($0)" }
        try LedgerFilterTests.commit(SQLiteStateStore(path: path), own + other)
        try LedgerFilterTests.commit(SQLiteStateStore(path: path), ["elsewhere"], sink: "other")
        let state = try SQLiteStateStore(path: path)
        let probe = own.prefix(500) + other.prefix(20) + (3_000..<4_000).map { BloomFilterTests.ownKey(UInt64($0)) } + ["order-x", "elsewhere"]
        // Every key of the sink's ledger is a candidate; of the others, few (false positives).
        let sinkID = try #require(try state.queue.read { db in try state.ledgerSinkID(db, pipeline: "p", sink: "csv", create: false) })
        let limited = try SQLiteStateStore(path: path, windowKeyHash: WindowKeys.hash, migratingUpTo: nil,
                                           ledgerLevels: LedgerLevels(filterKeys: pastTheLimit ? 3_049 : 3_050))
        let filter = try limited.queue.read { db in try limited.ledgerFilter(db, sinkID: sinkID) }
        // 3,050 keys, all in `ledger_recent`: covered with `ledger` (empty), or not at all.
        #expect(filter.covered == (pastTheLimit ? 0 : 2))
        if !pastTheLimit {
            #expect((own + other).allSatisfy { filter.bloom.mayContain($0) })
            let strangers = probe.filter { !own.contains($0) && !other.contains($0) }
            #expect(strangers.filter { filter.bloom.mayContain($0) }.count < strangers.count / 10)
        } else {
            #expect(filter.bloom.count == 0)
        }
        // Through the store (the default limit): found exactly.
        #expect(try state.delivered(pipeline: "p", sink: "csv", keys: Array(probe), excludingPartition: nil) == Set(own.prefix(500) + other.prefix(20)))
        #expect(try state.delivered(pipeline: "p", sink: "other", keys: Array(probe), excludingPartition: nil) == ["elsewhere"])
    }

    /// A key of sluice's hashes the same from its stored 16 bytes as from its hex text.
    @Test func storedKeysHashAsTheirText() throws {
        for n in 0..<1_000 {
            let key = BloomFilterTests.ownKey(UInt64(n))
            guard case .blob(let bytes) = LedgerKeys.stored(key).storage else { Issue.record("not stored as bytes"); return }
            let bits = try #require(bytes.withUnsafeBytes { RecordKeyBits(bytes: $0) })
            #expect(BloomFilter.hash(bits) == BloomFilter.hash(key))
        }
    }
}

/// The ledger's Bloom filter: every inserted key is found, and keys never inserted are
/// found rarely (4 probes a key; 300,000 keys in a block of 2^23 bits: ~0.03% in theory,
/// a full block at 6 bits a key ~5.6%), for sluice's own keys (whose
/// 16 bytes serve as the hashes) and for other text alike.
@Suite struct BloomFilterTests {
    static func ownKey(_ n: UInt64) -> String {
        var rng = SplitMix64(seed: n)
        return String(format: "%016llx%016llx", rng.next(), rng.next())
    }

    @Test(arguments: ["sluice's keys", "other text"])
    func insertedKeysAreFoundOthersRarely(kind: String) {
        func key(_ n: UInt64) -> String { kind == "other text" ? "order-\(n)" : Self.ownKey(n) }
        var filter = BloomFilter()
        let n: UInt64 = 300_000
        for i in 0..<n { filter.insert(key(i)) }
        #expect((0..<n).allSatisfy { filter.mayContain(key($0)) })
        let falsePositives = (n..<(2 * n)).filter { filter.mayContain(key($0)) }.count
        #expect(Double(falsePositives) / Double(n) < 0.04, "\(falsePositives) false positives in \(n)")
        // The batch answer (hashes first, probes with prefetching) is the key-by-key one,
        // over the filter's blocks (a second block past 2^20 keys), in order.
        for i in n..<(UInt64(BloomFilter.keysPerBlock) + 100) { filter.insert(key(i * 7)) }
        let probe = (0..<UInt64(20_000)).map { key($0 * 3 + n) } + [key(0), key(1)] + (0..<3).map { key($0 * 7) }
        #expect(filter.mayContain(probe) == probe.filter { filter.mayContain($0) })
        #expect(BloomFilter().mayContain(probe).isEmpty && filter.mayContain([String]()).isEmpty)
    }
}

/// The window-event lookups a store skips (record keys its filter never saw, while it
/// knows every record key of a scope's stored events): a replayed record is found
/// however its event got into the store, so it is never counted twice.
@Suite struct WindowFilterTests {
    static let scope = "p/rate_limit/fp"

    /// Each record key's event: its window key and time (a replay has the same).
    static func event(_ key: String) -> WindowEvent {
        let h = WindowKeys.hash(key)
        return WindowEvent(key: "fp\(h & 7)", time: 1_000_000 + (h >> 3) & 0xfff, recordKey: key)
    }

    static func add(_ state: SQLiteStateStore, _ keys: [String], commit: Bool = true) throws {
        try state.addWindowEvents(scope: scope, keys.map(event))
        if commit { try state.commit(WindowStoreTests.commit) }
    }

    static func found(_ state: SQLiteStateStore, _ keys: [String]) throws -> Set<String> {
        Set(try state.windowSequences(scope: scope, keys.map(event)).keys)
    }

    /// An event written outside the store's write path, numbered after every other one.
    static func insertOutside(_ db: Database, scopeID: Int64, key: String, time: Int64, recordKey: String) throws {
        try db.execute(sql: """
            INSERT INTO window_events (scope_id, event_time, seq, window_key, record_key)
            VALUES (?, ?, (SELECT next_seq FROM window_scopes WHERE id = ?), ?, ?)
            """, arguments: [scopeID, time, scopeID, key, recordKey])
        try db.execute(sql: "UPDATE window_scopes SET next_seq = next_seq + 1 WHERE id = ?", arguments: [scopeID])
    }

    /// The replay lookup searches the primary key for each (time, record key) of its list,
    /// whatever the list's length: SQLite's planner once chose, for some lengths, to scan
    /// the scope's whole range instead (94% of a 4M-line run).
    @Test func replayLookupsSearchThePrimaryKeyAtEveryListLength() throws {
        let dir = try TestSupport.scratchDirectory("windowfilter")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let state = try SQLiteStateStore(path: dir + "/state.sqlite")
        try Self.add(state, (0..<5_000).map { "k\($0)" })
        let scopeID = try #require(try state.queue.read { db in
            try Int64.fetchOne(db, sql: "SELECT id FROM window_scopes WHERE name = ?", arguments: [Self.scope])
        })
        for rows in 1...SQLiteStateStore.keysPerStatement / 2 {
            var arguments: [(any DatabaseValueConvertible)?] = []
            for n in 0..<rows { arguments += [1_000_000 + Int64(n), "k\(n)"] }
            arguments += [scopeID, 0]
            let plan = try state.queue.read { db in
                try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + SQLiteStateStore.windowReplaySQL(rows: rows),
                                 arguments: StatementArguments(arguments)).map { $0["detail"] as String }
            }
            #expect(plan.contains("SEARCH w USING PRIMARY KEY (scope_id=? AND event_time=?)"), "\(rows) rows: \(plan)")
            #expect(!plan.contains { $0.contains("AUTOMATIC") || $0.hasPrefix("SCAN w") }, "\(rows) rows: \(plan)")
        }
    }

    @Test(arguments: ["this store's commit", "another store on the file", "this connection, outside the store",
                      "a store before this one", "pending, not yet written"])
    func replayedRecordsAreFound(how: String) throws {
        let dir = try TestSupport.scratchDirectory("windowfilter")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/state.sqlite"
        if how == "a store before this one" { try Self.add(SQLiteStateStore(path: path), ["r2"]) }
        let state = try SQLiteStateStore(path: path)
        let keys = (0..<3000).map { String(format: "%032x", $0) } + ["r0", "r1", "r2"]
        // The filter is made on the first lookup (no events, unless a store before this one wrote some).
        #expect(try Self.found(state, keys) == (how == "a store before this one" ? ["r2"] : []))
        try Self.add(state, ["r0", "r1"])
        switch how {
        case "another store on the file": try Self.add(SQLiteStateStore(path: path), ["r2"])
        case "this connection, outside the store":
            try state.queue.write { db in
                let scopeID = try #require(try Int64.fetchOne(db, sql: "SELECT id FROM window_scopes WHERE name = ?", arguments: [Self.scope]))
                try Self.insertOutside(db, scopeID: scopeID, key: Self.event("r2").key, time: Self.event("r2").time, recordKey: "r2")
            }
        case "pending, not yet written": try Self.add(state, ["r2"], commit: false)
        case "this store's commit": try Self.add(state, ["r2"])
        default: break
        }
        #expect(try Self.found(state, keys) == ["r0", "r1", "r2"])
        // Many events over several segments: every one is found, no other.
        for segment in 0..<3 { try Self.add(state, (0..<20_000).map { "s\(segment)-\($0)" }) }
        let probe = (0..<10_000).map { "s\($0 % 4)-\($0 * 7 % 20_000)" }
        #expect(try Self.found(state, probe) == Set(probe.filter { !$0.hasPrefix("s3") }))
    }
}

/// The store's bulk inserts bind values through SQLite's C API (`executeBound`): what
/// GRDB reads back is what was bound, text and blobs alike (an empty string stays an
/// empty string, not NULL; a record key of sluice's is its 16 bytes, any other its text),
/// and a failing statement throws GRDB's error naming the SQL, never a value.
/// A window event's record key bits are its key's 16 bytes (big-endian halves) when the
/// key is 32 lowercase hex digits, nil for any other key, and follow a new key.
@Suite struct WindowEventKeyBitsTests {
    @Test(arguments: [
        ("000102030405060708090a0b0c0d0e0f", RecordKeyBits(high: 0x0001_0203_0405_0607, low: 0x0809_0a0b_0c0d_0e0f) as RecordKeyBits?),
        ("ffffffffffffffffffffffffffffffff", RecordKeyBits(high: .max, low: .max)),
        ("0000000000000000000000000000000", nil), ("ABCDEF00000000000000000000000000", nil), ("order-17", nil), ("", nil),
    ])
    func bitsFollowTheRecordKey(key: String, bits: RecordKeyBits?) {
        var event = WindowEvent(key: "fp", time: 1, recordKey: key)
        #expect(event.recordKeyBits == bits)
        event.recordKey = "k"
        #expect(event.recordKeyBits == nil)
        event.recordKey = key
        #expect(event.recordKeyBits == bits)
    }
}

@Suite struct BoundInsertTests {
    static let texts = ["", "a", "ü ığdır", String(repeating: "x", count: 5_000), "fp_6407a34c945e"]
    static let keys = ["000102030405060708090a0b0c0d0e0f", "ffffffffffffffffffffffffffffffff", "0000000000000000000000000000000",
                       "ABCDEF00000000000000000000000000", "order-17", ""]

    @Test func boundValuesReadBackAsGRDBReadsThem() throws {
        let folder = try TestSupport.scratchDirectory("bound")
        let db = try DatabaseQueue(path: folder + "/t.sqlite")
        try db.write { db in
            try db.execute(sql: "CREATE TABLE t (n INTEGER, s TEXT, k ANY) STRICT")
            let sql = "INSERT INTO t (n, s, k) VALUES " + repeatElement("(?, ?, ?)", count: Self.keys.count).joined(separator: ",")
            for (r, text) in Self.texts.enumerated() {
                try db.cachedStatement(sql: sql).executeBound(db) { b in
                    for (i, key) in Self.keys.enumerated() {
                        b.bind(i == 0 ? Int64.min : i == 1 ? Int64.max : Int64(r * 10 + i))
                        b.bind(text)
                        b.bind(recordKey: key)
                    }
                }
            }
        }
        let rows = try db.read { db in try Row.fetchAll(db, sql: "SELECT n, s, k, typeof(s) FROM t ORDER BY rowid") }
        #expect(rows.count == Self.texts.count * Self.keys.count)
        for (r, text) in Self.texts.enumerated() {
            for (i, key) in Self.keys.enumerated() {
                let row = rows[r * Self.keys.count + i]
                #expect(row[0] as Int64 == (i == 0 ? Int64.min : i == 1 ? Int64.max : Int64(r * 10 + i)))
                #expect(row[3] as String == "text")
                #expect(row[1] as String == text)
                #expect((row[2] as DatabaseValue) == LedgerKeys.stored(key))
            }
        }
    }

    /// Texts and blobs are bound from the binder's own copies (`BindBytes`, chunks of 16
    /// KiB): hundreds of them in one statement, across chunks, read back as bound, with the
    /// ones larger than a quarter of a chunk copied by SQLite; after the statement ran, no
    /// parameter is left bound to the freed copies (all NULL), and the statement runs again
    /// with new values.
    @Test(arguments: [1, 300, 999])
    func manyBoundTextsAcrossChunksReadBack(rows: Int) throws {
        let folder = try TestSupport.scratchDirectory("bound")
        let db = try DatabaseQueue(path: folder + "/t.sqlite")
        let keyOf = { (r: Int, round: Int) in String(format: "%032x", r &* 2_654_435_761 &+ round) }
        let textOf = { (r: Int, round: Int) in String(repeating: "é\(round)", count: r % 40) + (r % 97 == 0 ? String(repeating: "z", count: 4_100 + r) : "") }
        try db.write { db in
            try db.execute(sql: "CREATE TABLE t (r INTEGER, s TEXT, k BLOB, round INTEGER) STRICT")
            let sql = "INSERT INTO t (r, s, k, round) VALUES " + repeatElement("(?, ?, ?, ?)", count: rows).joined(separator: ",")
            for round in 0..<2 {
                let statement = try db.cachedStatement(sql: sql)
                try statement.executeBound(db) { b in
                    for r in 0..<rows {
                        b.bind(Int64(r))
                        b.bind(textOf(r, round))
                        b.bind(recordKey: keyOf(r, round))
                        b.bind(Int64(round))
                    }
                }
                // What the statement would insert now: NULLs, not the freed copies.
                let expanded = try #require(sqlite3_expanded_sql(statement.sqliteStatement))
                defer { sqlite3_free(expanded) }
                #expect(String(cString: expanded) == "INSERT INTO t (r, s, k, round) VALUES " + repeatElement("(NULL, NULL, NULL, NULL)", count: rows).joined(separator: ","))
            }
        }
        let found = try db.read { db in try Row.fetchAll(db, sql: "SELECT r, s, k, round FROM t ORDER BY round, r") }
        #expect(found.count == 2 * rows)
        for row in found {
            let r: Int = row[0], round: Int = row[3]
            #expect(row[1] as String == textOf(r, round))
            #expect((row[2] as DatabaseValue) == LedgerKeys.stored(keyOf(r, round)))
        }
    }

    @Test func failuresNameTheStatementNotTheValues() throws {
        let folder = try TestSupport.scratchDirectory("bound")
        let db = try DatabaseQueue(path: folder + "/t.sqlite")
        try db.write { db in try db.execute(sql: "CREATE TABLE t (s TEXT PRIMARY KEY)") }
        let secret = "secret-value-17"
        try db.write { db in
            try db.makeStatement(sql: "INSERT INTO t (s) VALUES (?)").executeBound(db) { $0.bind(secret) }
        }
        for bindTwice in [false, true] {
            do {
                try db.write { db in
                    try db.makeStatement(sql: "INSERT INTO t (s) VALUES (?)").executeBound(db) { b in
                        b.bind(secret)
                        if bindTwice { b.bind(secret) }
                    }
                }
                Issue.record("a duplicate key or a parameter too many was accepted")
            } catch let error as DatabaseError {
                #expect(error.resultCode == (bindTwice ? .SQLITE_RANGE : .SQLITE_CONSTRAINT))
                #expect(!"\(error)".contains(secret))
                #expect(error.sql == "INSERT INTO t (s) VALUES (?)")
            }
        }
        #expect(try db.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM t") } == 1)
    }
}
