import Foundation
import GRDB
import SluiceCore

// The sliding windows of `rate_limit`, ordered by time (migration v9-window-events-by-time,
// issue #7):
//
//     window_scopes(id, name, next_seq)              one row per scope
//     window_events(scope_id, event_time, seq, window_key, record_key)
//         PRIMARY KEY (scope_id, event_time, seq) WITHOUT ROWID
//
// One B-tree, in time order: a segment's events go to the end of their scope's range (but
// for late ones), so a commit writes a few new pages instead of rewriting pages all over
// three indexes; the prune deletes a range at the front. Before v9 each event went into a
// rowid table, an index on (scope, key hash, time) and a unique index on the record key,
// two of them at random places: half of the runner's SQLite time at 1M lines.
//
// Counts come from a copy in memory of every stored event of a scope with a time in a
// range (`StoredWindow`: the batch's windows and a little before), loaded by time range
// and kept up to date by the store's own writes, so no count reads the store. A scope
// whose range holds more events than `StoredWindow.Limits` is counted per batch instead
// (the range read again, only the batch's keys kept).
//
// A replayed record is found by its event time and record key (the primary key's range of
// that time), so the record key needs no index of its own; and only a record whose window
// key has a stored event at its time in the copy is looked up at all. A record replayed
// with another event time (its pipeline's `time` changed between the runs) is not found,
// and counts as a new event.
//
// Sequence numbers (the order in which the store first saw events) count up per scope
// from `window_scopes.next_seq`, above every number the scope ever held.
extension SQLiteStateStore {
    static func registerTimeOrderedWindows(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v9-window-events-by-time") { db in
            // The keys' texts come back from `window_keys` (their hashes are not needed any
            // more); sequence numbers stay, and new ones start above the old table's.
            try db.execute(sql: """
                ALTER TABLE window_scopes ADD COLUMN next_seq INTEGER NOT NULL DEFAULT 1;
                CREATE TABLE window_events_v9 (
                    scope_id INTEGER NOT NULL,
                    event_time INTEGER NOT NULL,
                    seq INTEGER NOT NULL,
                    window_key TEXT NOT NULL,
                    record_key BLOB NOT NULL,
                    PRIMARY KEY (scope_id, event_time, seq)
                ) WITHOUT ROWID;
                INSERT INTO window_events_v9 (scope_id, event_time, seq, window_key, record_key)
                    SELECT w.scope_id, w.event_time, w.seq, k.key, w.record_key FROM window_events w
                    JOIN window_keys k ON k.scope_id = w.scope_id AND k.key_hash = w.key_hash
                    ORDER BY w.scope_id, w.event_time, w.seq;
                UPDATE window_scopes SET next_seq = 1 + max(
                    coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'window_events'), 0),
                    coalesce((SELECT max(seq) FROM window_events), 0));
                DROP TABLE window_events;
                DROP TABLE window_keys;
                DELETE FROM sqlite_sequence WHERE name = 'window_events';
                ALTER TABLE window_events_v9 RENAME TO window_events;
                """)
        }
    }

    // Window events are kept in memory (`pending`) from `addWindowEvents` until the next
    // segment commit (or run end), which writes them in the same transaction as the
    // segment's checkpoints and deliveries. Events not committed are lost with a crash,
    // together with the records they belong to (neither delivered nor checkpointed): the
    // next run reads those records again and counts them anew, in the same order, with
    // the same result. Events written before their records were delivered (past
    // `maxPendingWindowEvents`, or of the batches the runner's stateful stages work ahead
    // of its writes) are replays for the next run: `windowSequences` finds them, and each
    // record gets its first count.
    // Lock order: `pendingLock`, then the database queue, then `ledgerLock`.

    /// Finds `rows` (event time, record key) pairs of a scope, events a pending prune will
    /// delete excepted: each looked up on the primary key's range of its time. `CROSS JOIN`
    /// keeps the list as the outer loop: with a plain join, SQLite's planner chose for some
    /// list lengths (100 of them, but not 50 or 250) to scan the scope's whole range against
    /// an automatic index of the list (at 4M lines, 94% of the run's time).
    static func windowReplaySQL(rows: Int) -> String {
        """
        WITH q(t, r) AS (VALUES \(Database.marks(rows, "(?, ?)")))
        SELECT q.r, w.seq FROM q CROSS JOIN window_events w
        ON w.scope_id = ? AND w.event_time = q.t AND w.record_key = q.r WHERE q.t >= ?
        """
    }

    /// Only events whose window key has a stored event at the same time can be replays:
    /// while the store's copy of the scope's events (`StoredWindow`) covers the batch's
    /// times, it says which, and only those are looked up.
    public func windowSequences(scope: String, _ events: [WindowEvent]) throws -> [String: Int64] {
        guard !events.isEmpty else { return [:] }
        return try pendingLock.withLock {
            // Stored events a pending prune will delete are not replays any more.
            let before = pending.pruneBefore[scope] ?? .min
            var out: [String: Int64] = try queue.read { db in
                guard let scopeID = try cachedScopeID(db, scope, create: false) else { return [:] }
                var lo = Int64.max, hi = Int64.min
                for e in events where e.time >= before {
                    lo = min(lo, e.time)
                    hi = max(hi, e.time)
                }
                guard lo <= hi else { return [:] }
                let (from, overflow) = lo.subtractingReportingOverflow(1)
                let candidates = overflow ? events.filter { $0.time >= before }
                    : try withStoredWindow(db, scope: scope, scopeID: scopeID, after: from, upTo: hi, span: nil) { window in
                        guard let window else { return events.filter { $0.time >= before } }
                        var out: [WindowEvent] = []
                        for (i, e) in events.enumerated() where e.time >= before {
                            if i + 8 < events.count { window.prefetch(events[i + 8].keyHash) }
                            if window.has(e.keyHash, at: e.time) { out.append(e) }
                        }
                        return out
                    }
                return try storedSequences(db, scopeID: scopeID, of: candidates, before: before)
            }
            addPendingSequences(scope: scope, events, to: &out)
            return out
        }
    }

    /// The stored sequence numbers of those of `candidates` the store holds (the same
    /// record key at the same time), by record key; events a pending prune will delete
    /// (times before `before`) excepted.
    func storedSequences(_ db: Database, scopeID: Int64, of candidates: [WindowEvent], before: Int64) throws -> [String: Int64] {
        var out: [String: Int64] = [:]
        try db.forEachChunk(of: candidates, size: Self.keysPerStatement / 2, sql: Self.windowReplaySQL) { chunk, statement in
            var arguments: [(any DatabaseValueConvertible)?] = []
            arguments.reserveCapacity(chunk.count * 2 + 2)
            var original: [DatabaseValue: String] = [:]
            for e in chunk {
                let stored = WindowKeys.recordKey(e.recordKey).databaseValue
                original[stored] = e.recordKey
                arguments.append(e.time)
                arguments.append(stored)
            }
            arguments.append(scopeID)
            arguments.append(before)
            let rows = try GRDB.Row.fetchCursor(statement, arguments: StatementArguments(arguments))
            while let row = try rows.next() {
                if let key = original[row[0] as DatabaseValue] { out[key] = row[1] as Int64 }
            }
        }
        return out
    }

    /// Adds the sequence numbers of the pending events among `events` (the same record key
    /// at the same time) to `out`. Called with `pendingLock` held.
    func addPendingSequences(scope: String, _ events: [WindowEvent], to out: inout [String: Int64]) {
        guard let p = pending.scopes[scope] else { return }
        // (The found ones are few, usually none: no hash of a record key then.)
        for e in events where out.isEmpty || out[e.recordKey] == nil {
            if let seq = p.sequenceOf[PendingWindowScope.Identity(e)] { out[e.recordKey] = seq }
        }
    }

    /// `windowSequences` and `windowCounts` in one (what rate_limit asks for a batch): each
    /// event's key is searched once in the store's copy of the scope's events, for its count
    /// and for whether the copy holds an event of that key at its time (only those can be
    /// replays, and are looked up). Two searches of the copy an event, in two calls, were
    /// ~3.5% of a 4M-line run (docs/benchmarks.md). A replay's count (up to its own sequence
    /// number: rare, after a crash or in a replace) is then asked of `windowCounts`.
    /// Without the copy (no scope yet, or a range with too many events to keep), as
    /// `windowSequences`, then `windowCounts`.
    public func windowLookup(scope: String, _ events: [WindowEvent], window: Int64) throws -> WindowLookup {
        guard !events.isEmpty else { return WindowLookup(sequences: [:], counts: []) }
        let found: WindowLookup? = try pendingLock.withLock {
            let before = pending.pruneBefore[scope] ?? .min
            // As `windowCounts`: events a pending prune forgets are not counted.
            func after(_ e: WindowEvent) -> Int64 { before == .min ? e.time - window : max(e.time - window, before - 1) }
            var lo = Int64.max, hi = Int64.min, span: Int64 = 0
            for e in events where after(e) < e.time {
                lo = min(lo, after(e))
                hi = max(hi, e.time)
                span = max(span, e.time - after(e))
            }
            guard lo < hi else { return nil }
            guard var result = try queue.read({ db -> WindowLookup? in
                guard let scopeID = try cachedScopeID(db, scope, create: false) else { return nil }
                var counts = [Int](repeating: 0, count: events.count)
                var candidates: [WindowEvent] = []
                // (lo, hi] holds every event's time from `before` on: an event's window ends at it.
                let covered = try withStoredWindow(db, scope: scope, scopeID: scopeID, after: lo, upTo: hi, span: span) { w -> Bool in
                    guard let w else { return false }
                    for (n, e) in events.enumerated() {
                        if n + 8 < events.count { w.prefetch(events[n + 8].keyHash) }
                        let (count, stored) = w.countAndHas(e.keyHash, after: after(e), upTo: e.time)
                        counts[n] = count
                        if stored, e.time >= before { candidates.append(e) }
                    }
                    return true
                }
                guard covered else { return nil }
                return WindowLookup(sequences: try storedSequences(db, scopeID: scopeID, of: candidates, before: before), counts: counts)
            }) else { return nil }
            addPendingSequences(scope: scope, events, to: &result.sequences)
            if let p = pending.scopes[scope] {
                for (n, e) in events.enumerated() where result.sequences.isEmpty || result.sequences[e.recordKey] == nil {
                    result.counts[n] += p.count(WindowQuery(window: window, of: e, maxSequence: nil))
                }
            }
            return result
        }
        guard var result = found else { return try windowLookupInTwo(scope: scope, events, window: window) }
        if !result.sequences.isEmpty {
            let replays = events.indices.filter { result.sequences[events[$0].recordKey] != nil }
            let counts = try windowCounts(scope: scope, replays.map {
                WindowQuery(window: window, of: events[$0], maxSequence: result.sequences[events[$0].recordKey])
            })
            for (n, count) in zip(replays, counts) { result.counts[n] = count }
        }
        return result
    }

    /// Runs `body` with the store's copy of the scope's stored events, made to cover
    /// (lo, hi] (nil when the scope's range holds too many events to keep); `span`, the
    /// longest window of the batch, lets the copy forget what no window reaches any more.
    /// The copy is trusted like the ledger's filters (`LedgerKnowledge`): only while
    /// nothing but this store's write path wrote the database.
    func withStoredWindow<T>(_ db: Database, scope: String, scopeID: Int64, after lo: Int64, upTo hi: Int64, span: Int64?,
                             _ body: (StoredWindow?) throws -> T) throws -> T {
        let epoch = try LedgerKnowledge.Epoch(db)
        var window = ledgerLock.withLock { () -> StoredWindow in
            if ledgerKnown.epoch != epoch { ledgerKnown = LedgerKnowledge(epoch: epoch) }
            return ledgerKnown.windows.removeValue(forKey: scope) ?? StoredWindow()
        }
        defer { ledgerLock.withLock { if ledgerKnown.epoch == epoch { ledgerKnown.windows[scope] = window } } }
        let covered = try window.cover(after: lo, upTo: hi, span: span, limit: windowMemory.events) { a, b, keep, add in
            try loadWindowEvents(db, scopeID: scopeID, after: a, upTo: b, keys: nil, limit: keep, add)
        }
        return try body(covered ? window : nil)
    }

    /// The id of a scope (created in a write transaction when `create`), through the cache.
    /// Rows of `window_scopes` are never deleted, so an id once read stays right.
    func cachedScopeID(_ db: Database, _ scope: String, create: Bool) throws -> Int64? {
        if let id = idsLock.withLock({ windowScopeIDs[scope] }) { return id }
        guard let id = try WindowKeys.scopeID(db, scope, create: create) else { return nil }
        idsLock.withLock { windowScopeIDs[scope] = id }
        return id
    }

    /// Forgets cached ids after a failed write (ids created in it were rolled back).
    func forgetCachedIDs() {
        idsLock.withLock {
            windowScopeIDs = [:]
            ledgerIDs = LedgerIDCache()
        }
    }

    /// `queue.write` for the writes that may add ids: on failure, the ids cached are forgotten.
    func writeForgettingIDsOnFailure<T>(_ body: (Database) throws -> T) throws -> T {
        do { return try write(body) } catch {
            forgetCachedIDs()
            throw error
        }
    }

    public func windowCount(scope: String, key: String, after from: Int64, upTo to: Int64, maxSequence: Int64?) throws -> Int {
        try windowCounts(scope: scope, [WindowQuery(key: key, after: from, upTo: to, maxSequence: maxSequence)])[0]
    }

    /// Counts are answered from `StoredWindow`, a copy in memory of every stored event of
    /// the scope in a time range, extended to cover the batch's windows (by reading only the
    /// part of the range it lacks), plus the pending events. The copy is trusted like the
    /// filters (`LedgerKnowledge`): only while nothing but this store's write path wrote the
    /// database.
    public func windowCounts(scope: String, _ queries: [WindowQuery]) throws -> [Int] {
        guard !queries.isEmpty else { return [] }
        return try pendingLock.withLock {
            // Events a pending prune forgets are not counted (event_time >= before).
            let before = pending.pruneBefore[scope] ?? .min
            func after(_ q: WindowQuery) -> Int64 { before == .min ? q.after : max(q.after, before - 1) }
            // The batch's range (lo, hi], and its longest window.
            var lo = Int64.max, hi = Int64.min, span: Int64 = 0
            for q in queries where after(q) < q.upTo {
                lo = min(lo, after(q))
                hi = max(hi, q.upTo)
                let (width, overflow) = q.upTo.subtractingReportingOverflow(after(q))
                span = max(span, overflow ? .max : width)
            }
            var counts = [Int](repeating: 0, count: queries.count)
            if lo < hi {
                try queue.read { db in
                    guard let scopeID = try cachedScopeID(db, scope, create: false) else { return }
                    let covered = try withStoredWindow(db, scope: scope, scopeID: scopeID, after: lo, upTo: hi, span: span) { window in
                        guard let window else { return false }
                        for (n, q) in queries.enumerated() {
                            if n + 8 < queries.count { window.prefetch(queries[n + 8].keyHash) }
                            counts[n] = window.count(q.keyHash, after: after(q), upTo: q.upTo, maxSequence: q.maxSequence)
                        }
                        return true
                    }
                    if !covered {
                        // Too many events in the range to keep: this batch's keys only, for this batch.
                        let keys = Set(queries.lazy.map(\.key))
                        var batch: [String: [StoredWindow.Event]] = [:]
                        _ = try loadWindowEvents(db, scopeID: scopeID, after: lo, upTo: hi, keys: keys, limit: nil) { key, time, sequence in
                            batch[key, default: []].append(StoredWindow.Event(time: time, sequence: sequence))
                            return true
                        }
                        for (n, q) in queries.enumerated() {
                            counts[n] = batch[q.key]?.eventCount(after: after(q), upTo: q.upTo, maxSequence: q.maxSequence) ?? 0
                        }
                    }
                }
            }
            if let p = pending.scopes[scope] {
                for (n, q) in queries.enumerated() { counts[n] += p.count(q) }
            }
            return counts
        }
    }

    /// The stored events of a scope with times in (after, upTo], in the order of time and
    /// sequence number, each through `add` (only those of `keys` when given); false, after
    /// `limit` of them, when there are more, or when `add` refused one.
    func loadWindowEvents(_ db: Database, scopeID: Int64, after: Int64, upTo: Int64, keys: Set<String>?,
                          limit: Int?, _ add: (String, Int64, Int64) -> Bool) throws -> Bool {
        var count = 0
        let statement = try db.cachedStatement(sql: """
            SELECT window_key, event_time, seq FROM window_events WHERE scope_id = ? AND event_time > ? AND event_time <= ?
            ORDER BY event_time, seq
            """)
        let rows = try GRDB.Row.fetchCursor(statement, arguments: [scopeID, after, upTo])
        while let row = try rows.next() {
            let key: String = row[0]
            if let keys, !keys.contains(key) { continue }
            count += 1
            if let limit, count > limit { return false }
            guard add(key, row[1], row[2]) else { return false }
        }
        return true
    }

    /// Keeps the events in memory until the next commit (see above). An event pending
    /// already (same record key and time) is ignored; callers add only events that
    /// `windowSequences` did not find.
    public func addWindowEvents(scope: String, _ events: [WindowEvent]) throws {
        guard !events.isEmpty else { return }
        try pendingLock.withLock {
            // The scope found once for the batch, not hashed again for every event.
            let first = pending.nextSequence
            let added = PendingWindowScope.add(events, to: &pending.scopes[scope, default: PendingWindowScope()], from: first)
            pending.nextSequence = first + Int64(added)
            pending.count += added
            // A bound on memory when segments are long: write them in a transaction of their own.
            if pending.count >= Self.maxPendingWindowEvents {
                try writeForgettingIDsOnFailure { db in try writePendingWindowEvents(db) }
            }
        }
    }

    /// Forgets pending events at once, and stored ones at the next commit (a range of the
    /// primary key). Until then, queries skip the events it will delete.
    public func pruneWindowEvents(scope: String, before: Int64) throws {
        pendingLock.withLock {
            pending.count -= pending.scopes[scope]?.prune(before: before) ?? 0
            pending.pruneBefore[scope] = max(pending.pruneBefore[scope] ?? .min, before)
        }
    }

    /// Pending window events, most events per statement. Called with `pendingLock` held,
    /// inside a write transaction.
    static let windowEventsPerStatement = 300

    /// `OR FAIL`: a statement of many rows that may abort halfway (the default, `ABORT`)
    /// makes SQLite keep a statement journal, the first content of each page it changes,
    /// to undo that statement alone; past 64 KiB (four of the state store's pages) the
    /// journal goes to a temporary file. That was 65% of a 1M-line run's writes (15,490
    /// pages, 254 MB; docs/benchmarks.md). With `FAIL` a failing statement keeps the rows
    /// before it, and needs no journal; a failure here (no two events share a `seq`) ends
    /// the whole transaction anyway, which the caller rolls back.
    static func windowInsertSQL(rows: Int) -> String {
        "INSERT OR FAIL INTO window_events (scope_id, event_time, seq, window_key, record_key) VALUES \(Database.marks(rows, "(?, ?, ?, ?, ?)"))"
    }

    func writePendingWindowEvents(_ db: Database) throws {
        for (scope, p) in pending.scopes where !p.events.isEmpty {
            let scopeID = try cachedScopeID(db, scope, create: true)!
            // Sequence numbers in the order added (the order records were seen), above every
            // number the scope held; rows in the primary key's order (time, then sequence).
            let base = try Int64.fetchOne(db, sql: "SELECT next_seq FROM window_scopes WHERE id = ?", arguments: [scopeID])!
            try db.execute(sql: "UPDATE window_scopes SET next_seq = ? WHERE id = ?", arguments: [base + Int64(p.events.count), scopeID])
            var window = ledgerLock.withLock { ledgerKnown.windows.removeValue(forKey: scope) }
            var order = p.events.indices.map { (p.events[$0].time, $0) }
            order.sort { $0 < $1 }
            // Plain `?` parameters (see `insertLedger`).
            try db.forEachChunk(of: order, size: Self.windowEventsPerStatement, sql: Self.windowInsertSQL) { chunk, statement in
                try statement.executeBound(db) { b in
                    for (time, n) in chunk { // (the event's parts read in place, the event not copied)
                        b.bind(scopeID)
                        b.bind(time)
                        b.bind(base + Int64(n))
                        b.bind(p.events[n].key)
                        b.bind(recordKey: p.events[n].recordKey, bits: p.events[n].recordKeyBits)
                    }
                }
                for (time, n) in chunk { window?.inserted(p.events[n].keyHash, time: time, sequence: base + Int64(n)) }
            }
            if let window { ledgerLock.withLock { ledgerKnown.windows[scope] = window } }
        }
        for (scope, before) in pending.pruneBefore {
            guard let scopeID = try cachedScopeID(db, scope, create: false) else { continue }
            try db.execute(sql: "DELETE FROM window_events WHERE scope_id = ? AND event_time < ?", arguments: [scopeID, before])
            ledgerLock.withLock { ledgerKnown.windows[scope]?.forget(upTo: before - 1) }
        }
        // Emptied, their tables kept: rebuilt from nothing, they grew (every entry hashed
        // again) a dozen times between two writes.
        // (By index, in place: a view of the keys would share the table, and make every
        // scope's tables copies.)
        var i = pending.scopes.startIndex
        while i != pending.scopes.endIndex {
            pending.scopes.values[i].removeAll()
            pending.scopes.formIndex(after: &i)
        }
        pending.pruneBefore = [:]
        pending.count = 0
    }

    /// Writes pending window events now (a run ends; tests).
    public func flushWindowEvents() throws {
        try pendingLock.withLock {
            guard pending.count > 0 || pending.scopes.values.contains(where: { !$0.events.isEmpty }) || !pending.pruneBefore.isEmpty else { return }
            try writeForgettingIDsOnFailure { db in try writePendingWindowEvents(db) }
        }
    }
}

/// How window events were stored compactly by migration v7 (scopes by an integer id,
/// window keys by an 8-byte hash, record keys by their 16 bytes); v9 keeps the scope ids
/// and the record keys' form, and stores the window keys' texts again.
///
/// In v7, hash collisions were harmless: `window_keys` held each key's text under its
/// hash, and a key whose hash another key of the scope held already took the next free
/// value (hash + 1, + 2, ...: open addressing).
enum WindowKeys {
    /// FNV-1a, 64 bits, of the key's UTF-8 bytes.
    @Sendable static func hash(_ key: String) -> Int64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in key.utf8 {
            h ^= UInt64(b)
            h &*= 0x0000_0100_0000_01b3
        }
        return Int64(bitPattern: h)
    }

    /// A record key as stored: the 16 bytes of sluice's own keys (32 lowercase hex
    /// digits), the text of any other (a BLOB and a TEXT never compare equal in SQLite).
    static func recordKey(_ key: String) -> any DatabaseValueConvertible {
        LedgerKeys.stored(key)
    }

    static func scopeID(_ db: Database, _ scope: String, create: Bool) throws -> Int64? {
        if let id = try Int64.fetchOne(db, sql: "SELECT id FROM window_scopes WHERE name = ?", arguments: [scope]) { return id }
        guard create else { return nil }
        try db.execute(sql: "INSERT INTO window_scopes (name) VALUES (?)", arguments: [scope])
        return db.lastInsertedRowID
    }

    /// The v7 hashes of these keys (migration v7 only); with `create` (in a write
    /// transaction), keys not stored yet are added, else left out.
    static func ids(_ db: Database, scopeID: Int64, _ keys: [String], hash: (String) -> Int64, create: Bool) throws -> [String: Int64] {
        var out: [String: Int64] = [:]
        // First the keys' own hashes, 500 per statement; then, for the rare key whose
        // hash holds another key, its chain one value at a time.
        var holder: [Int64: String] = [:]
        let hashes = keys.map(hash)
        try db.forEachChunk(of: hashes, size: SQLiteStateStore.keysPerStatement, sql: {
            "SELECT key_hash, key FROM window_keys WHERE scope_id = ? AND key_hash IN (\(Database.marks($0)))"
        }) { chunk, statement in
            var arguments: [(any DatabaseValueConvertible)?] = [scopeID]
            for h in chunk { arguments.append(h) }
            let rows = try GRDB.Row.fetchCursor(statement, arguments: StatementArguments(arguments))
            while let row = try rows.next() { holder[row[0]] = row[1] }
        }
        for (key, first) in zip(keys, hashes) where out[key] == nil {
            var h = first
            while true {
                let text: String?
                if let t = holder[h] { text = t } else if h == first {
                    text = nil // looked up above
                } else {
                    text = try String.fetchOne(db, sql: "SELECT key FROM window_keys WHERE scope_id = ? AND key_hash = ?", arguments: [scopeID, h])
                    if let text { holder[h] = text }
                }
                if text == key { out[key] = h; break }
                if text == nil {
                    if create {
                        try db.cachedStatement(sql: "INSERT INTO window_keys (scope_id, key_hash, key) VALUES (?, ?, ?)")
                            .execute(arguments: [scopeID, h, key])
                        holder[h] = key
                        out[key] = h
                    }
                    break
                }
                h &+= 1
            }
        }
        return out
    }
}

/// A copy in memory of a scope's stored window events: every one with a time in
/// (from, upTo] (none when the range is empty). Loaded by `windowCounts` one part of the
/// range at a time (the part a batch's windows reach and the copy lacks), kept up to date
/// by the store's own writes (`writePendingWindowEvents`: inserts with the sequence
/// numbers they are given, and prunes), and dropped with the rest of `LedgerKnowledge`
/// when anything else wrote the database, or a write of the store failed.
///
/// Compact (issue #7: it is what grows with the events of a window, 4x at 4M lines a day):
/// an event is 24 bytes (`Entry`: its window key as 88 bits of keyed hashes, its time,
/// its sequence number in 40 bits), in sorted arrays (by key, time and sequence number)
/// of a few dozen events each, one per range of the keys' hashes (`buckets`; split in two
/// as they fill). No string, no dictionary bucket: ~27 bytes an event against ~77 for
/// dictionaries of keys (12.3 MB of the 1-hour window's copy at 4M lines a day).
struct StoredWindow {
    struct Event {
        var time: Int64
        var sequence: Int64
    }
    /// Past this many events in the range, the scope is counted per batch (`tooLarge`).
    struct Limits: Sendable {
        var events = 1 << 20
    }
    /// A window key as the copy holds it (`WindowKeyHash`).
    typealias KeyHash = WindowKeyHash
    /// One event in 24 bytes, ordered by key, time and sequence number: the key's `high`
    /// hash, the time, and `rest`, the key's `low` hash above the sequence number's 40
    /// bits (sequence numbers count a scope's events from 1: 2^40 is centuries of 4M a
    /// day; an event past them is not kept, and its scope is counted per batch).
    struct Entry {
        var high: UInt64
        var time: Int64
        var rest: UInt64
        static let sequenceMask: UInt64 = 1 << 40 - 1
        init?(key: KeyHash, time: Int64, sequence: Int64) {
            guard sequence >= 0, UInt64(sequence) <= Self.sequenceMask else { return nil }
            high = key.high
            self.time = time
            rest = key.low << 40 | UInt64(sequence)
        }
        var low: UInt64 { rest >> 40 }
        var sequence: Int64 { Int64(rest & Self.sequenceMask) }
        func isKey(_ key: KeyHash) -> Bool { high == key.high && low == key.low }
        func keyPrecedes(_ key: KeyHash) -> Bool { (high, low) < (key.high, key.low) }
        func precedes(_ e: Entry) -> Bool { (high, low, time, sequence) < (e.high, e.low, e.time, e.sequence) }
    }
    var from: Int64 = 0
    var upTo: Int64 = 0
    /// The events, sorted, in arrays by the leading bits of their key's `high` hash: bucket
    /// `i` holds the keys whose `high >> shift` is `i`. Past `perBucket` events a bucket on
    /// average, each is split in two by the next bit (a split holds two copies of one
    /// bucket at a time, not of the whole copy).
    private(set) var buckets = [[Entry]](repeating: [], count: Self.initialBuckets)
    private var shift: UInt64 = 64 - 6
    static let initialBuckets = 64
    static let perBucket = 32
    var events = 0
    /// The width of a range that held more events than the limit: batches whose ranges
    /// are not much narrower are counted per batch; a narrower one tries the copy again
    /// (one batch with a record far in the past, whose range reached back over everything
    /// stored, does not send the scope to per-batch counts for good).
    var tooLargeWidth: Int64?
    var tooLarge: Bool { tooLargeWidth != nil }

    init() {}

    init(from: Int64, upTo: Int64) {
        self.from = from
        self.upTo = upTo
    }

    private func bucket(_ high: UInt64) -> Int { Int(truncatingIfNeeded: high >> shift) }

    /// The events of `key` in its bucket: a range of indices, sorted by time and sequence.
    private func range(of key: KeyHash, in b: Int) -> Range<Int> {
        let entries = buckets[b]
        let start = entries.partitionPoint { $0.keyPrecedes(key) }
        var end = start
        while end < entries.count, entries[end].isKey(key) { end += 1 }
        return start..<end
    }

    /// The first index in `r` (of bucket `b`) of an event with a time above `time`.
    private func firstAfter(_ time: Int64, in r: Range<Int>, of b: Int) -> Int {
        buckets[b][r].upperBound(time, by: \.time)
    }

    /// Asks the CPU for the start of `key`'s bucket, for a loop that looks up keys a few
    /// events later: the bucket's array (its count, then the middle of its entries) was a
    /// cache miss for most of the lookups' time (`perf annotate` of `range(of:in:)`). Only
    /// a hint: it reads the word of `buckets` that points to the bucket's array object
    /// (an `Array` is that one word) and asks for the lines from there.
    func prefetch(_ key: KeyHash) {
        guard MemoryLayout<[Entry]>.size == MemoryLayout<UInt>.size else { return }
        let b = bucket(key.high)
        buckets.withUnsafeBufferPointer { outer in
            guard b < outer.count, let words = UnsafeRawPointer(outer.baseAddress) else { return }
            guard let object = UnsafeRawPointer(bitPattern: words.load(fromByteOffset: b * MemoryLayout<[Entry]>.stride, as: UInt.self)) else { return }
            // A bucket holds ~32 entries of 24 bytes after a 32-byte header (splits past
            // that): its 13 lines. (Only the lines of the binary search's first probes,
            // 0, 3, 6 and 9, left `range(of:in:)` at 1.0% of the samples against 0.4%.)
            prefetchHint(object, lines: 13)
        }
    }

    /// `count(k, after:upTo:maxSequence: nil)`, and whether `key` has an event at `upTo`
    /// (`has(k, at: upTo)`), from one search of the key's events. The copy must cover
    /// (after, upTo] when after < upTo, else upTo.
    func countAndHas(_ k: KeyHash, after: Int64, upTo: Int64) -> (count: Int, has: Bool) {
        let b = bucket(k.high)
        let r = range(of: k, in: b)
        guard !r.isEmpty else { return (0, false) }
        let hi = firstAfter(upTo, in: r, of: b)
        let has = hi > r.lowerBound && buckets[b][hi - 1].time == upTo
        guard after < upTo else { return (0, has) }
        return (hi - firstAfter(after, in: r, of: b), has)
    }

    /// Whether `key` has an event at `time` (which the copy must cover).
    func has(_ k: KeyHash, at time: Int64) -> Bool {
        countAndHas(k, after: time, upTo: time).has
    }

    /// Events of `key` with times in (after, upTo], optionally only those with sequence
    /// numbers up to `maxSequence`. The copy must cover (after, upTo].
    func count(_ k: KeyHash, after: Int64, upTo: Int64, maxSequence: Int64?) -> Int {
        let b = bucket(k.high)
        let r = range(of: k, in: b)
        guard !r.isEmpty else { return 0 }
        let lo = firstAfter(after, in: r, of: b), hi = firstAfter(upTo, in: r, of: b)
        guard hi > lo else { return 0 }
        guard let maxSequence else { return hi - lo }
        var n = 0
        for i in lo..<hi where buckets[b][i].sequence <= maxSequence { n += 1 }
        return n
    }

    /// Makes the copy cover (lo, hi], reading from the store (`load(after, upTo, limit,
    /// add)`: each event through `add`; false past `limit` events, or when `add` refused
    /// one) only what it lacks, and
    /// forgets what lies more than a sixteenth of `span` (the longest window; nil: nothing
    /// is forgotten) before `lo`. False when the range holds too many events (the copy is
    /// then empty and `tooLarge`), or a range not much narrower did.
    mutating func cover(after lo: Int64, upTo hi: Int64, span: Int64?, limit: Int,
                        load: (Int64, Int64, Int, (String, Int64, Int64) -> Bool) throws -> Bool) rethrows -> Bool {
        let (difference, overflow) = hi.subtractingReportingOverflow(lo)
        let width = overflow ? Int64.max : difference
        if let big = tooLargeWidth {
            guard width < big / 2 else { return false }
            self = StoredWindow() // try again, from nothing
        }
        func giveUp() -> Bool {
            self = StoredWindow()
            tooLargeWidth = width
            return false
        }
        if from >= upTo || lo >= upTo || hi <= from {
            // Nothing held, or nothing of use: start over with the batch's range.
            self = StoredWindow(from: lo, upTo: lo)
        } else if let span {
            // Forget what no window reaches any more, keeping a margin for late records
            // (a late record reaching further back reads the part it lacks).
            let margin = span / 16
            let (gap, overflow) = lo.subtractingReportingOverflow(from)
            if !overflow, gap > 2 * margin { forget(upTo: lo - margin) }
        }
        if lo < from {
            guard try load(lo, from, limit - events, { add(KeyHash($0), time: $1, sequence: $2) }) else { return giveUp() }
            from = lo
        }
        if hi > upTo {
            guard try load(upTo, hi, limit - events, { add(KeyHash($0), time: $1, sequence: $2) }) else { return giveUp() }
            upTo = hi
        }
        return events <= limit || giveUp()
    }

    /// Adds an event read from the store (its range is the caller's to extend); false
    /// (nothing added) when its sequence number does not fit an `Entry`.
    mutating func add(_ key: KeyHash, time: Int64, sequence: Int64) -> Bool {
        guard let e = Entry(key: key, time: time, sequence: sequence) else { return false }
        insert(e)
        return true
    }

    /// An event the store just wrote (its sequence number above every stored one of its
    /// time); kept if its time is in the range. One that does not fit an `Entry` empties
    /// the copy (the next batch reads its range again, and finds it too many).
    mutating func inserted(_ key: KeyHash, time: Int64, sequence: Int64) {
        guard time > from, time <= upTo else { return }
        if !add(key, time: time, sequence: sequence) { self = StoredWindow() }
    }

    private mutating func insert(_ e: Entry) {
        let b = bucket(e.high)
        let at = buckets[b].partitionPoint { $0.precedes(e) } // after every event that orders before it
        let count = buckets[b].count
        if count == buckets[b].capacity {
            // Room for an eighth more (at least 4): no doubling, whose slack would be a
            // quarter of the copy on average.
            buckets[b].reserveCapacity(count + max(4, count / 8))
        }
        buckets[b].insert(e, at: at)
        events += 1
        if events > buckets.count * Self.perBucket { split() }
    }

    /// Twice the buckets: each split in two by the next bit of its keys' `high` hash.
    private mutating func split() {
        guard shift > 1 else { return }
        let bit: UInt64 = 1 << (shift - 1)
        var next: [[Entry]] = []
        next.reserveCapacity(buckets.count * 2)
        for i in buckets.indices {
            let old = buckets[i]
            buckets[i] = []
            let at = old.firstIndex { $0.high & bit != 0 } ?? old.count
            next.append(Self.exact(old[..<at]))
            next.append(Self.exact(old[at...]))
        }
        buckets = next
        shift -= 1
    }

    /// An array of these entries with room for an eighth more.
    private static func exact(_ entries: ArraySlice<Entry>) -> [Entry] {
        var out: [Entry] = []
        guard !entries.isEmpty else { return out }
        out.reserveCapacity(entries.count + entries.count / 8)
        out.append(contentsOf: entries)
        return out
    }

    /// Forgets the events with times up to `reach` (the store deleted them, or no window
    /// reaches them any more); the range starts there.
    mutating func forget(upTo reach: Int64) {
        guard reach > from else { return }
        guard reach < upTo else {
            let tooLargeWidth = tooLargeWidth // a scope counted per batch stays so
            self = StoredWindow(from: upTo, upTo: upTo)
            self.tooLargeWidth = tooLargeWidth
            return
        }
        // In place, bucket by bucket; a bucket left with much room is copied smaller.
        for b in buckets.indices {
            let before = buckets[b].count
            buckets[b].removeAll { $0.time <= reach }
            let after = buckets[b].count
            events -= before - after
            if buckets[b].capacity > 2 * after + 8 {
                buckets[b] = Self.exact(buckets[b][...])
            }
        }
        from = reach
    }
}

/// The events of one window key, sorted by time and sequence number; the first held
/// inline, so that a key with one event in the range (most of them) costs no allocation.
struct KeyEvents: RandomAccessCollection {
    private var first: StoredWindow.Event
    private var rest: [StoredWindow.Event] = []

    init(first: StoredWindow.Event) { self.first = first }

    /// What a dictionary's `default:` holds for a key until the event `insert` puts in
    /// its place (a sequence number no event has); never counted or kept as it is.
    static let placeholder = KeyEvents(first: StoredWindow.Event(time: .min, sequence: -1))

    /// From a sorted, non-empty array.
    init(_ events: [StoredWindow.Event]) {
        first = events[0]
        rest = Array(events.dropFirst())
    }

    var startIndex: Int { 0 }
    var endIndex: Int { rest.count + 1 }
    subscript(i: Int) -> StoredWindow.Event { i == 0 ? first : rest[i - 1] }

    /// Inserts an event in order: after every event of an earlier time, or of the same
    /// time and a lower sequence number.
    mutating func insert(_ e: StoredWindow.Event) {
        if first.sequence == -1, rest.isEmpty { first = e; return } // the placeholder's place
        var at = upperBound(e.time, by: \.time)
        while at > 0, self[at - 1].time == e.time, self[at - 1].sequence > e.sequence { at -= 1 }
        insert(e, at: at)
    }

    private mutating func insert(_ e: StoredWindow.Event, at i: Int) {
        if i == 0 {
            rest.insert(first, at: 0)
            first = e
        } else {
            rest.insert(e, at: i - 1)
        }
    }

    /// Removes the first `k` events, fewer than all of them.
    mutating func removeFirst(_ k: Int) {
        guard k > 0 else { return }
        first = rest[k - 1]
        rest.removeFirst(k)
    }
}

/// Window events added since the last commit, per scope. Their sequence numbers are
/// provisional, from 2^62 on, above any the database assigns, so that they order after
/// every stored event, as they will once written.
struct PendingWindows {
    var scopes: [String: PendingWindowScope] = [:]
    /// Per scope: stored events older than this are to be deleted at the next commit.
    var pruneBefore: [String: Int64] = [:]
    var count = 0
    var nextSequence: Int64 = 1 << 62
}

struct PendingWindowScope {
    /// What makes two events one: the record key and the event time. The key as its 128
    /// bits (sluice's own keys, 32 hex digits), or as the `TextHash` of any other key's
    /// text (two keys share one with a chance of 2^-128 a pair; the seed is the process's,
    /// never stored): this table is hashed twice for every event (the replay check and
    /// the add), and a 32-byte string's hash and comparison cost several times two words'.
    struct Identity: Hashable {
        var key: RecordKeyBits
        var time: Int64
        init(_ e: borrowing WindowEvent) {
            if let bits = e.recordKeyBits {
                key = bits
            } else {
                let hash = TextHash(e.recordKey)
                key = RecordKeyBits(high: hash.high, low: hash.low)
            }
            time = e.time
        }

        /// A dictionary's hash (`foldedHash`): the key's bits with the time in one.
        func _rawHashValue(seed: Int) -> Int { foldedHash(key.high, key.low ^ UInt64(bitPattern: time), seed: seed) }
    }
    /// In the order added (the order they are written in).
    var events: [WindowEvent] = []
    var sequenceOf: [Identity: Int64] = [:]
    /// Per window key, sorted by time (the first inline: most keys have one event here).
    var byKey: [WindowKeyHash: KeyEvents] = [:]
    var minTime = Int64.max

    /// Adds an event unless it is pending already (same record key and time).
    /// Each dictionary is hashed once per event (its `default:` subscript finds or makes
    /// the entry in one probe): this is on every event of every record.
    mutating func add(_ e: consuming WindowEvent, sequence: Int64) -> Bool {
        var added = false
        Self.setIfAbsent(&sequenceOf[Identity(e), default: -1], sequence, &added)
        guard added else { return false }
        minTime = min(minTime, e.time)
        let event = StoredWindow.Event(time: e.time, sequence: sequence)
        byKey[e.keyHash, default: KeyEvents.placeholder].insert(event) // in place
        e.sequence = sequence
        events.append(e) // the caller's copy moved in, not copied again
        return true
    }

    /// Adds `events` (`add`), numbered from `first` on; returns how many were added.
    static func add(_ events: [WindowEvent], to scope: inout PendingWindowScope, from first: Int64) -> Int {
        var next = first
        for e in events where scope.add(e, sequence: next) { next += 1 }
        return Int(next - first)
    }

    @inline(__always) private static func setIfAbsent(_ slot: inout Int64, _ value: Int64, _ added: inout Bool) {
        if slot == -1 { slot = value; added = true }
    }

    /// Forgets every event, keeping the tables' room for the next ones.
    mutating func removeAll() {
        events.removeAll(keepingCapacity: true)
        sequenceOf.removeAll(keepingCapacity: true)
        byKey.removeAll(keepingCapacity: true)
        minTime = .max
    }

    /// Forgets events older than `before`; returns how many.
    mutating func prune(before: Int64) -> Int {
        guard minTime < before else { return 0 }
        let old = events.count
        events.removeAll { $0.time < before }
        for (key, entries) in byKey {
            let kept = entries.filter { $0.time >= before }
            byKey[key] = kept.isEmpty ? nil : KeyEvents(kept)
        }
        sequenceOf = [:]
        for e in events { sequenceOf[Identity(e)] = e.sequence }
        minTime = events.map(\.time).min() ?? .max
        return old - events.count
    }

    /// The pending part of a window count.
    func count(_ q: WindowQuery) -> Int {
        byKey[q.keyHash]?.eventCount(after: q.after, upTo: q.upTo, maxSequence: q.maxSequence) ?? 0
    }
}

extension RandomAccessCollection where Element == StoredWindow.Event, Index == Int {
    /// Events (sorted by time) with times in (after, upTo], optionally only those first
    /// seen up to `maxSequence`: a count of the copy of stored events or of pending ones.
    func eventCount(after: Int64, upTo: Int64, maxSequence: Int64?) -> Int {
        let lo = upperBound(after, by: \.time), hi = upperBound(upTo, by: \.time)
        guard hi > lo else { return 0 }
        guard let maxSequence else { return hi - lo }
        var n = 0
        for i in lo..<hi where self[i].sequence <= maxSequence { n += 1 }
        return n
    }
}
