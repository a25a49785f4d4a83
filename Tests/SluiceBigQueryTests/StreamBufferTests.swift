import Foundation
import SluiceCore
import SluiceSQLite
import SluiceTestSupport
import Testing

/// The durable buffer in the SQLite state store (migration v6-stream-buffer): a key enters
/// once, leaves into the ledger when acknowledged, or into the dead letters when refused,
/// and is never buffered again once delivered.
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
    }
}
