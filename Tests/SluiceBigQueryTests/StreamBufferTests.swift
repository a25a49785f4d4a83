import Foundation
@testable import SluiceBigQuery
import SluiceCore
@testable import SluiceSQLite
import SluiceTestSupport
import Testing

/// The durable buffer in the SQLite state store (migrations v6-stream-buffer and
/// v12-stream-buffer-in-order): a key enters once, leaves into the ledger when
/// acknowledged, or into the dead letters when refused, and is never buffered again once
/// delivered.
@Suite struct StreamBufferTests {
    static func row(_ key: String, line: Int, partition: String = "2026-11-18") -> BufferedRow {
        BufferedRow(key: key, partition: partition, position: SourcePosition(file: "in/a.jsonl", line: line, offset: Int64(line * 10)),
                    payload: Array(#"{"k":"\#(key)"}"#.utf8))
    }

    @Test func rowsMoveFromTheBufferToTheLedgerOrTheDeadLetters() throws {
        let dir = try TestSupport.scratchDirectory("buffer")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try SQLiteStateStore(path: dir + "/state.sqlite")
        let sink = "bigquery p.d.t"
        #expect(try store.bufferRows(pipeline: "p", sink: sink, [Self.row("a", line: 1), Self.row("b", line: 2), Self.row("c", line: 3)]) == ["a", "b", "c"])
        // Already buffered: not added again.
        #expect(try store.bufferRows(pipeline: "p", sink: sink, [Self.row("a", line: 1), Self.row("d", line: 4, partition: "2026-11-19")]) == ["d"])
        let waiting = try store.bufferedRows(pipeline: "p", sink: sink, partition: "2026-11-18", limit: 10)
        #expect(waiting.map(\.key) == ["a", "b", "c"])
        #expect(waiting[1].payload == Array(#"{"k":"b"}"#.utf8) && waiting[1].position.line == 2)
        #expect(try store.bufferedRows(pipeline: "p", sink: sink, partition: "2026-11-18", limit: 2).count == 2)
        // Without payloads: their sizes only.
        let heads = try store.bufferedRows(pipeline: "p", sink: sink, partition: "2026-11-18", limit: 10, withPayloads: false)
        #expect(heads.map(\.key) == ["a", "b", "c"] && heads.allSatisfy { $0.payload.isEmpty && $0.payloadBytes == 9 } && heads[1].position.line == 2)
        // Payloads are read back by key, of this sink's buffered rows only.
        #expect(try store.bufferedPayloads(pipeline: "p", sink: sink, keys: ["c", "a", "zz", "d"])
                == ["a": Array(#"{"k":"a"}"#.utf8), "c": Array(#"{"k":"c"}"#.utf8), "d": Array(#"{"k":"d"}"#.utf8)])
        #expect(try store.bufferedPayloads(pipeline: "p", sink: "bigquery p.d.other", keys: ["a"]).isEmpty)
        #expect(try store.bufferedPayloads(pipeline: "q", sink: sink, keys: ["a"]).isEmpty)

        try store.acknowledgeBuffered(pipeline: "p", sink: sink, keys: ["a", "b"])
        let runID = try store.beginRun(pipeline: "p", partition: "2026-11-18", mode: .append)
        try store.rejectBuffered(pipeline: "p", sink: sink, runID: runID, partition: "2026-11-18",
                                 [(key: "c", letter: DeadLetter(kind: .warehouse, position: waiting[2].position, message: "BigQuery refused the row: invalid"))])
        #expect(try store.bufferedRows(pipeline: "p", sink: sink, partition: "2026-11-18", limit: 10).isEmpty)
        // Acknowledged keys are in the ledger: never buffered (sent) again.
        #expect(try store.delivered(pipeline: "p", sink: sink, keys: ["a", "b", "c"], excludingPartition: nil) == ["a", "b"])
        #expect(try store.bufferRows(pipeline: "p", sink: sink, [Self.row("a", line: 1), Self.row("c", line: 3)]) == ["c"])
        let letters = try store.deadLetters(pipeline: "p", limit: 10)
        #expect(letters.map { "\($0.partition) \($0.file):\($0.line) \($0.kind)" } == ["2026-11-18 in/a.jsonl:3 warehouse"])
        let depths = try store.bufferDepths(pipeline: "p").map { "\($0.partition) \($0.sink) \($0.rows)" }
        #expect(depths == ["2026-11-18 bigquery p.d.t 1", "2026-11-19 bigquery p.d.t 1"])
        #expect(try store.bufferDepths(pipeline: "other").isEmpty)
        #expect(try store.bufferedPayloads(pipeline: "p", sink: sink, keys: ["a", "b", "c"]) == ["c": Array(#"{"k":"c"}"#.utf8)])
    }

    /// Rows of one call with a key twice, and a call of many rows (several statements):
    /// each key once, the first row of a key kept, in the order given.
    @Test(arguments: [1, 99, 100, 101, 250, 1000])
    func manyRowsAreBufferedInOrderEachKeyOnce(_ count: Int) throws {
        let dir = try TestSupport.scratchDirectory("buffer")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try SQLiteStateStore(path: dir + "/state.sqlite")
        let sink = "bigquery p.d.t"
        let keys = (0..<count).map { String(format: "%032x", ($0 * 7919) % 100_003) }
        var rows = keys.enumerated().map { Self.row($1, line: $0 + 1) }
        rows.insert(Self.row(keys[0], line: 999_999), at: max(1, rows.count / 2)) // the same key again: not added
        #expect(try store.bufferRows(pipeline: "p", sink: sink, rows) == keys)
        let waiting = try store.bufferedRows(pipeline: "p", sink: sink, partition: "2026-11-18", limit: .max)
        #expect(waiting.map(\.key) == keys && waiting.map(\.position.line) == Array(1...count))
        #expect(try store.bufferRows(pipeline: "p", sink: sink, Array(rows.reversed())).isEmpty)
    }

    /// A store written before v12 (v11: the buffer's primary key on pipeline, sink and key,
    /// `WITHOUT ROWID`) with rows of two sinks waiting, opened by this code: every row is
    /// still there, in the order it entered, with its position and payload; the table is
    /// read by Python's `sqlite3`, and new rows come after the old ones.
    @Test func rowsWaitingInAV11BufferAreKeptInTheirOrder() throws {
        let dir = try TestSupport.scratchDirectory("buffer-v12")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/state.sqlite"
        let (one, two) = ("bigquery p.d.t", "bigquery p.d.u")
        // (sink, key, partition, line, file id, payload), in the order they entered: keys out of key order.
        let old: [(String, String, String, Int, String?, [UInt8])] = [
            (one, "ffff0000ffff0000ffff0000ffff0000", "2026-11-18", 1, "fid-1", Array(#"{"n":1}"#.utf8)),
            (two, "0000ffff0000ffff0000ffff0000ffff", "2026-11-18", 2, nil, [0, 1, 2, 255]),
            (one, "a-text-key", "2026-11-19", 3, nil, Array(#"{"n":"ü"}"#.utf8)),
            (one, "00000000000000000000000000000001", "2026-11-18", 4, "fid-1", Array(#"{"n":4}"#.utf8)),
        ]
        do {
            let store = try SQLiteStateStore(path: path, windowKeyHash: WindowKeys.hash, migratingUpTo: "v11-ledger-runs")
            try store.queue.write { db in
                for (n, r) in old.enumerated() {
                    // v6's SQL of then: `seq` one above the largest.
                    try db.execute(sql: """
                        INSERT INTO stream_buffer (pipeline, sink, record_key, partition, file, line, byte_offset, file_id, payload, seq)
                        VALUES ('p', ?, ?, ?, 'in/a.jsonl', ?, ?, ?, ?, ?)
                        """, arguments: [r.0, r.1, r.2, r.3, r.3 * 100, r.4, Data(r.5), n + 41])
                }
            }
        }
        let store = try SQLiteStateStore(path: path)
        let read = """
            import sqlite3, sys, json
            c = sqlite3.connect('file:' + sys.argv[1] + '?mode=ro', uri=True)
            rows = c.execute("SELECT s.sink, b.record_key, b.partition, b.file, b.line, b.byte_offset, b.file_id, b.payload "
                             "FROM stream_buffer b JOIN ledger_sinks s ON s.id = b.sink_id ORDER BY b.rowid")
            print(json.dumps([list(r[:7]) + [list(r[7])] for r in rows]))
            print(json.dumps([r[0] for r in c.execute("SELECT sql FROM sqlite_master WHERE tbl_name = 'stream_buffer' AND sql IS NOT NULL ORDER BY name")]))
            """
        func table() throws -> (rows: [[String]], schema: [String]) {
            let result = try TestSupport.run(TestSupport.python, ["-c", read, path])
            #expect(result.status == 0, "\(result.stderr)")
            let lines = String(decoding: result.stdout, as: UTF8.self).split(separator: "\n")
            let rows = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as! [[Any]]
            return (rows.map { $0.map { "\($0 is NSNull ? "nil" : $0)" } }, try JSONSerialization.jsonObject(with: Data(lines[1].utf8)) as! [String])
        }
        let (rows, schema) = try table()
        #expect(rows == old.map { [$0.0, $0.1, $0.2, "in/a.jsonl", "\($0.3)", "\($0.3 * 100)", $0.4 ?? "nil", "\($0.5.map(Int.init))"] })
        // A rowid table (rows in the order they enter), its key index without payloads.
        #expect(schema.count == 3 && schema[0].contains("seq INTEGER PRIMARY KEY") && !schema[0].contains("WITHOUT ROWID")
                && schema[2].contains("UNIQUE INDEX stream_buffer_keys ON stream_buffer(sink_id, record_key)"), "\(schema)")
        // Through the store: the same rows, and a new one after them; keys buffered once.
        #expect(try store.bufferedRows(pipeline: "p", sink: one, partition: "2026-11-18", limit: 10).map(\.key) == [old[0].1, old[3].1])
        #expect(try store.bufferedRows(pipeline: "p", sink: two, partition: "2026-11-18", limit: 10).map(\.payload) == [old[1].5])
        #expect(try store.bufferRows(pipeline: "p", sink: one, [Self.row("0", line: 5), Self.row(old[0].1, line: 6)]) == ["0"])
        #expect(try store.bufferedRows(pipeline: "p", sink: one, partition: "2026-11-18", limit: 10).map(\.key) == [old[0].1, old[3].1, "0"])
        try store.acknowledgeBuffered(pipeline: "p", sink: one, keys: [old[0].1, "a-text-key"])
        #expect(try store.delivered(pipeline: "p", sink: one, keys: old.map(\.1), excludingPartition: nil) == [old[0].1, "a-text-key"])
        #expect(try store.bufferDepths(pipeline: "p").map { "\($0.sink) \($0.partition) \($0.rows)" }
                == ["\(one) 2026-11-18 2", "\(two) 2026-11-18 1"])
    }

    /// The streamer's queue hands rows out first in, first out, and lets go of the rows it
    /// handed out while rows keep coming (it is never empty): before, it held every row of
    /// a run until it was.
    @Test(arguments: [(add: 7, take: 5), (add: 500, take: 500), (add: 2000, take: 500), (add: 1, take: 1), (add: 50, take: 49)])
    func theQueueLetsGoOfRowsItHandedOut(add: Int, take: Int) {
        var queue = PendingQueue()
        var next = 0, taken: [Int] = [], most = 0
        let position = SourcePosition(file: "in/a.jsonl", line: 1)
        while next < 200_000 {
            queue.append((next..<next + add).map { Streamer.Pending(key: String($0), payloadBytes: 10, position: position, ofRun: true) })
            next += add
            // Fewer taken than added until the queue holds a backlog, then as many: never empty.
            for _ in 0..<(queue.count > 3 * add + take ? (add + take - 1) / take : max(0, add / take - 1)) {
                taken += queue.take(maxRows: take, maxBytes: .max).map { Int($0.key)! }
            }
            #expect(queue.count > 0)
            most = max(most, queue.held)
        }
        #expect(taken == Array(0..<taken.count))
        #expect(queue.bytes == queue.count * (10 + 24) + (taken.count..<next).reduce(0) { $0 + String($1).utf8.count })
        #expect(most <= 2 * (4 * add + 2 * take) + PendingQueue.compactAfter, "the queue held \(most) rows")
        while queue.count > 0 { taken += queue.take(maxRows: take, maxBytes: .max).map { Int($0.key)! } }
        #expect(taken == Array(0..<next) && queue.held == 0 && queue.bytes == 0)
    }
}

/// A row's insertAll `json` object, as Python's `json` reads it: NULL columns left out,
/// names and strings escaped, numbers and booleans as they are.
@Suite struct PayloadTests {
    @Test(arguments: [
        ([Value.string("a"), .null, .int(-3)], #"{"name": "a", "n": -3}"#),
        ([Value.null, .null, .null], "{}"),
        ([Value.string("q\"\\\n\u{1}ü"), .bool(true), .double(1.5)], #"{"name": "q\"\\\n\u0001\u00fc", "flag \"x\"": true, "n": 1.5}"#),
        ([Value.string(#"{"k":[1,2]}"#), .bool(false), .largeInteger("123456789012345678901234567890")],
         #"{"name": "{\"k\":[1,2]}", "flag \"x\"": false, "n": 123456789012345678901234567890}"#),
    ])
    func payloadsAreTheRowsJSONObjects(values: [Value], expected: String) throws {
        let payload = BigQuerySession.payload(values, names: BigQuerySession.names(["name", "flag \"x\"", "n"]))
        let script = "import json, sys\na, b = sys.stdin.read().split('\\u0000')\nprint(json.loads(a) == json.loads(b), list(json.loads(a)) == list(json.loads(b)))"
        let result = try TestSupport.run(TestSupport.python, ["-c", script], input: Data(payload + [0] + Array(expected.utf8)))
        #expect(String(decoding: result.stdout, as: UTF8.self) == "True True\n", "\(String(decoding: payload, as: UTF8.self)) \(result.stderr)")
    }
}
