import Foundation
import GRDB
import SluiceCore
@testable import SluiceSQLite
import SluiceTestSupport
import Testing

/// The compact ledger of migration v8: sink and partition ids, record keys as 16 bytes
/// (other keys as text), and the stream buffer's moves into it through the store's
/// write path.
@Suite struct LedgerTests {
    /// A key as sluice makes them: 32 lowercase hex digits.
    static func hexKey(_ n: Int) -> String {
        var rng = SplitMix64(seed: UInt64(n) &+ 1)
        return String(format: "%016llx%016llx", rng.next(), rng.next())
    }

    /// Keys that are not sluice's own must still work: stored as text, never equal to a
    /// 16-byte key (an upper-case twin of a stored hex key is another key).
    static let otherKeys = ["k0", "", String(repeating: "A", count: 32), Self.hexKey(1).uppercased(), Self.hexKey(2) + "0",
                            String(Self.hexKey(3).dropLast()) + "g", "ключ-ü", String(repeating: "f", count: 31)]

    /// The ledger as a plain SQL query on the file reads it (no store API): pipeline,
    /// sink, key (hex of the bytes, or the text), partition.
    static func ledgerRows(_ path: String) throws -> Set<[String]> {
        let db = try DatabaseQueue(path: path)
        return try db.read { db in
            Set(try GRDB.Row.fetchAll(db, sql: """
                SELECT s.pipeline, s.sink, CASE typeof(l.key) WHEN 'blob' THEN lower(hex(l.key)) ELSE l.key END, p.partition
                FROM ledger l JOIN ledger_sinks s ON s.id = l.sink_id JOIN ledger_partitions p ON p.id = l.partition_id
                """).map { [$0[0], $0[1], $0[2], $0[3]] as [String] })
        }
    }

    static func row(_ key: String, line: Int, partition: String) -> BufferedRow {
        BufferedRow(key: key, partition: partition, position: SourcePosition(file: "in/a.jsonl", line: line, offset: Int64(line * 10)),
                    payload: Array(#"{"k":"\#(key)"}"#.utf8))
    }

    /// A store written before v8 (v7: text rows, some moved in by the BigQuery buffer,
    /// one still buffered) opened by this code: every key is still delivered, to its sink
    /// and partition only; buffered and committed again, none is taken twice.
    @Test func migrationKeepsEveryKey() throws {
        let dir = try TestSupport.scratchDirectory("ledger-v8")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/state.sqlite"
        let bq = "bigquery p.d.t"
        // (pipeline, sink, key, partition), written the way v7 wrote them.
        var rows: [[String]] = []
        for n in 0..<1200 { rows.append(["p", "csv signups", Self.hexKey(n), n % 3 == 0 ? "2026-11-18" : "2026-11-19"]) }
        for (n, key) in Self.otherKeys.enumerated() { rows.append(["p", "csv signups", key, n % 2 == 0 ? "2026-11-18" : "2026-11-19"]) }
        for n in 0..<300 { rows.append(["q", "csv signups", Self.hexKey(n), "2026-11-18"]) } // the same keys, another pipeline
        for n in 500..<520 { rows.append(["p", "csv other", Self.hexKey(n), "2026-11-20"]) }
        let viaBuffer = [Self.hexKey(5000), "bq-text-key"], stillBuffered = Self.hexKey(5001)
        do {
            let old = try SQLiteStateStore(path: path, windowKeyHash: WindowKeys.hash, migratingUpTo: "v7-compact-window-events")
            try old.queue.write { db in
                for r in rows {
                    try db.execute(sql: "INSERT INTO ledger (pipeline, sink, record_key, partition) VALUES (?, ?, ?, ?)", arguments: StatementArguments(r))
                }
                // The BigQuery buffer of v6/v7: rows enter `stream_buffer`, and an
                // acknowledgement moves them into the ledger (its SQL of then).
                for (n, key) in (viaBuffer + [stillBuffered]).enumerated() {
                    try db.execute(sql: """
                        INSERT INTO stream_buffer (pipeline, sink, record_key, partition, file, line, byte_offset, file_id, payload, seq)
                        VALUES ('p', ?, ?, '2026-11-18', 'in/a.jsonl', ?, 0, NULL, X'7B7D', ?)
                        """, arguments: [bq, key, n + 1, n + 1])
                }
                for key in viaBuffer {
                    try db.execute(sql: """
                        INSERT OR IGNORE INTO ledger (pipeline, sink, record_key, partition)
                        SELECT pipeline, sink, record_key, partition FROM stream_buffer WHERE pipeline = ? AND sink = ? AND record_key = ?
                        """, arguments: ["p", bq, key])
                    try db.execute(sql: "DELETE FROM stream_buffer WHERE pipeline = ? AND sink = ? AND record_key = ?", arguments: ["p", bq, key])
                }
            }
        }
        rows += viaBuffer.map { ["p", bq, $0, "2026-11-18"] }

        let state = try SQLiteStateStore(path: path)
        // The file, read with plain SQL, holds exactly the old rows; sluice's keys as 16 bytes.
        #expect(try Self.ledgerRows(path) == Set(rows))
        let (columns, blobs, texts) = try state.queue.read { db in
            (try db.columns(in: "ledger").map(\.name),
             try Int.fetchOne(db, sql: "SELECT count(*) FROM ledger WHERE typeof(key) = 'blob' AND length(key) = 16")!,
             try Int.fetchOne(db, sql: "SELECT count(*) FROM ledger WHERE typeof(key) = 'text'")!)
        }
        #expect(columns == ["sink_id", "key", "partition_id", "segment"])
        #expect(texts == Self.otherKeys.count + 1 && blobs == rows.count - texts)

        // Every key deduplicates, for its own pipeline and sink only, with its partition.
        let probe = (0..<1500).map(Self.hexKey) + Self.otherKeys + viaBuffer + [stillBuffered, Self.hexKey(7000), "never"]
        for (pipeline, sink) in [("p", "csv signups"), ("q", "csv signups"), ("p", "csv other"), ("p", bq), ("q", bq), ("p", "csv new")] {
            let mine = rows.filter { $0[0] == pipeline && $0[1] == sink }
            #expect(try state.delivered(pipeline: pipeline, sink: sink, keys: probe, excludingPartition: nil) == Set(mine.map { $0[2] }),
                    "\(pipeline) \(sink)")
            #expect(try state.delivered(pipeline: pipeline, sink: sink, keys: probe, excludingPartition: "2026-11-19")
                    == Set(mine.filter { $0[3] != "2026-11-19" }.map { $0[2] }), "\(pipeline) \(sink) excluding a partition")
        }
        // The key the buffer moved in is not buffered (sent) again; the one still waiting
        // is acknowledged into the ledger now.
        #expect(try state.bufferRows(pipeline: "p", sink: bq, viaBuffer.enumerated().map { Self.row($1, line: $0 + 1, partition: "2026-11-18") }).isEmpty)
        #expect(try state.bufferedRows(pipeline: "p", sink: bq, partition: "2026-11-18", limit: 10).map(\.key) == [stillBuffered])
        try state.acknowledgeBuffered(pipeline: "p", sink: bq, keys: [stillBuffered])
        #expect(try state.delivered(pipeline: "p", sink: bq, keys: probe, excludingPartition: nil) == Set(viaBuffer + [stillBuffered]))
        // A commit of old keys again keeps their rows (and partitions); new keys are added.
        try state.commit(SegmentCommit(pipeline: "p", partition: "2026-11-21", checkpoints: [],
                                       delivered: ["csv signups": [Self.hexKey(1), "k0", Self.hexKey(7000)]], receipts: [], finishesReplace: false))
        rows += [["p", bq, stillBuffered, "2026-11-18"], ["p", "csv signups", Self.hexKey(7000), "2026-11-21"]]
        #expect(try Self.ledgerRows(path) == Set(rows))
        // A replace of a partition forgets its keys, of every sink of that pipeline only.
        try state.commit(SegmentCommit(pipeline: "p", partition: "2026-11-18", checkpoints: [], delivered: [:], receipts: [], finishesReplace: true))
        rows.removeAll { $0[0] == "p" && $0[3] == "2026-11-18" }
        #expect(try Self.ledgerRows(path) == Set(rows))
        #expect(try state.delivered(pipeline: "p", sink: "csv signups", keys: probe, excludingPartition: nil)
                == Set(rows.filter { $0[0] == "p" && $0[1] == "csv signups" }.map { $0[2] }))
    }

    /// Keys the stream buffer moves into the ledger are added to the sink's Bloom filter:
    /// `delivered` finds every key the file's ledger holds (a plain SQL query), the filter
    /// is kept (buffer writes go through the store's write path), and `bufferRows` does
    /// not take an acknowledged key again.
    @Test(arguments: ["filter made by delivered", "filter made by bufferRows", "committed keys too", "text keys"])
    func keysAcknowledgedByTheBufferAreDelivered(how: String) throws {
        let dir = try TestSupport.scratchDirectory("ledger-buffer")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/state.sqlite"
        let state = try SQLiteStateStore(path: path)
        let sink = "bigquery p.d.t"
        let keys = how == "text keys" ? (0..<3000).map { "t\($0)" } : (0..<3000).map(Self.hexKey)
        if how == "filter made by delivered" {
            #expect(try state.delivered(pipeline: "p", sink: sink, keys: keys, excludingPartition: nil).isEmpty)
        }
        let rows = keys[..<2400].enumerated().map { Self.row($1, line: $0 + 1, partition: $0 % 2 == 0 ? "2026-11-18" : "2026-11-19") }
        for batch in stride(from: 0, to: rows.count, by: 800) {
            #expect(try state.bufferRows(pipeline: "p", sink: sink, Array(rows[batch..<batch + 800])) == rows[batch..<batch + 800].map(\.key))
        }
        if how == "committed keys too" {
            try state.commit(SegmentCommit(pipeline: "p", partition: "2026-11-20", checkpoints: [], delivered: [sink: Array(keys[2900...])],
                                           receipts: [], finishesReplace: false))
        }
        // Acknowledged in pieces (some twice, some never); refused ones become dead letters.
        try state.acknowledgeBuffered(pipeline: "p", sink: sink, keys: Array(keys[0..<700]))
        try state.acknowledgeBuffered(pipeline: "p", sink: sink, keys: Array(keys[600..<1800]) + ["not buffered"])
        let runID = try state.beginRun(pipeline: "p", partition: "2026-11-18", mode: .append)
        try state.rejectBuffered(pipeline: "p", sink: sink, runID: runID, partition: "2026-11-18",
                                 [(key: keys[1800], letter: DeadLetter(kind: .warehouse, position: rows[1800].position, message: "refused"))])

        let inFile = try Self.ledgerRows(path).filter { $0[0] == "p" && $0[1] == sink }
        #expect(inFile.count == 1800 + (how == "committed keys too" ? 100 : 0))
        #expect(try state.delivered(pipeline: "p", sink: sink, keys: keys + ["not buffered"], excludingPartition: nil) == Set(inFile.map { $0[2] }))
        #expect(try state.delivered(pipeline: "p", sink: sink, keys: keys, excludingPartition: "2026-11-18")
                == Set(inFile.filter { $0[3] != "2026-11-18" }.map { $0[2] }))
        // Still known: the buffer's writes did not make the store forget its filter.
        let filter = state.ledgerLock.withLock { state.ledgerKnown.filters["p\u{0}" + sink] }
        guard case .keys? = filter else {
            Issue.record("the ledger filter was forgotten: \(String(describing: filter))")
            return
        }
        // Buffered again: only keys neither in the ledger nor still in the buffer.
        let again = keys.enumerated().map { Self.row($1, line: $0 + 1, partition: "2026-11-18") }
        let delivered = Set(inFile.map { $0[2] }), waiting = Set(keys[1801..<2400])
        let expected = keys.filter { !delivered.contains($0) && !waiting.contains($0) }
        #expect(try state.bufferRows(pipeline: "p", sink: sink, again) == expected)
    }
}

/// The state file's page size: 16 KiB for a file the store creates, read from the file's
/// header (bytes 16-17, big-endian, by SQLite's file format); a file made with another
/// page size keeps it, and the store works on it.
@Suite struct StateFilePageTests {
    static func headerPageSize(_ path: String) throws -> Int {
        let header = try FileHandle(forReadingFrom: URL(fileURLWithPath: path)).read(upToCount: 100) ?? Data()
        let size = Int(header[16]) << 8 | Int(header[17])
        return size == 1 ? 65_536 : size
    }

    @Test(arguments: [nil, 4096, 1024] as [Int?])
    func newFilesGet16KiBPagesOldOnesKeepTheirs(existing: Int?) throws {
        let dir = try TestSupport.scratchDirectory("page-size")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/state.sqlite"
        if let existing {
            // A file made before this change (or by hand): plain SQLite, WAL, its own page size.
            let db = try DatabaseQueue(path: path)
            try db.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA page_size = \(existing)")
                try db.execute(sql: "PRAGMA journal_mode = WAL")
                try db.execute(sql: "CREATE TABLE before_sluice (x)")
            }
        }
        let keys = (0..<2000).map(LedgerTests.hexKey)
        do {
            let store = try SQLiteStateStore(path: path)
            try store.commit(SegmentCommit(pipeline: "p", partition: "2026-11-18", checkpoints: [], delivered: ["csv out": keys],
                                           receipts: [], finishesReplace: false))
        }
        #expect(try Self.headerPageSize(path) == (existing ?? 16_384))
        let reopened = try SQLiteStateStore(path: path)
        #expect(try reopened.delivered(pipeline: "p", sink: "csv out", keys: keys + ["not delivered"], excludingPartition: nil) == Set(keys))
        #expect(Set(try LedgerTests.ledgerRows(path).map { $0[2] }) == Set(keys))
    }
}
