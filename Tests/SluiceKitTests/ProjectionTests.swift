import SluiceCore
@testable import SluiceKit
import Testing

/// A trailing `select` is read through by coercion (`Projection`) instead of being
/// applied: for every record, the row (or the error) must be what applying the select
/// and coercing its output gives. The sample pipelines' end-to-end tests check the same
/// against the samples' independent Python model; these cases are the edges.
@Suite struct ProjectionTests {
    static let mapping: [(String, FieldSource)] = [
        ("ts", FieldSource(path: FieldPath("timestamp")!, mode: .value)),
        ("ua", FieldSource(path: FieldPath("headers.user-agent")!, mode: .value)),
        ("n", FieldSource(path: FieldPath("body.count")!, mode: .value)),
        ("extra", FieldSource(path: FieldPath("body.extra")!, mode: .json)),
        ("list1", FieldSource(path: FieldPath("list.1")!, mode: .value)),
        ("action", FieldSource(path: FieldPath("action")!, mode: .value)),
    ]
    static let schema = TableSchema(fields: [
        SchemaField(name: "ts", type: .timestamp, mode: .required),
        SchemaField(name: "action", type: .string, mode: .required), // out of the mapping's order
        SchemaField(name: "ua", type: .string),
        SchemaField(name: "n", type: .integer),
        SchemaField(name: "extra", type: .string),
        SchemaField(name: "list1", type: .string),
        SchemaField(name: "not_selected", type: .string),
        SchemaField(name: "record_key", type: .string, mode: .required),
    ])
    static let records = [
        #"{"timestamp":"2026-11-18T01:02:03+03:00","action":"signup","headers":{"user-agent":"ua"},"body":{"count":3,"extra":{"a":[1,"x"]}},"list":[0,"one"]}"#,
        #"{"action":"login","timestamp":"2026-11-18T00:00:00Z","body":{"extra":null,"count":"7"},"headers":"text","not_selected":"x"}"#,
        #"{"timestamp":1763424000,"action":"deposit","body":{"count":2.0,"extra":"a \"quoted\" text"},"list":[1]}"#,
        #"{"timestamp":"2026-11-18T00:00:00Z","body":{"count":1.5}}"#, // action missing: REQUIRED
        #"{"timestamp":"2026-11-18T00:00:00Z","action":"x","body":{"count":"many"}}"#, // n not an integer
        #"{"timestamp":"not a time","action":"x"}"#,
    ]

    @Test(arguments: 0..<records.count)
    func rowIsTheRowOfTheSelectedRecord(n: Int) throws {
        guard case .object(let fields) = try JSONParser.parse(Self.records[n]) else { Issue.record("not an object"); return }
        let record = Record(fields: fields, position: SourcePosition(file: "f", line: n + 1), key: "k\(n)")
        let select = FieldStage(operation: .select(Self.mapping))
        let coercer = SchemaCoercer(schema: Self.schema, keyColumn: "record_key")

        var batch = RecordBatch(records: [record])
        try select.apply(&batch, context: RunContext(projectRoot: "/", outputRoot: "/", pipeline: "p",
                                                   partition: Partition("2026-11-18", granularity: .day)!, logger: .init(label: "t")))
        let expected = coercer.row(for: batch.records[0])

        let projection = try #require(select.projection)
        var readers = projection.columns.map { PathReader($0.path) }
        let ours = coercer.row(for: record, through: projection, plan: coercer.plan(projection), readers: &readers)
        switch (ours, expected) {
        case (.success(let a), .success(let b)):
            #expect(a.values == b.values)
            #expect(a.key == b.key)
        case (.failure(let a), .failure(let b)):
            #expect(a == b)
        default:
            Issue.record("record \(n): \(ours) but the selected record gives \(expected)")
        }
    }

    /// Only `select` projects: the other field stages are applied as they are.
    @Test func onlySelectProjects() {
        #expect(FieldStage(operation: .copy(Self.mapping)).projection == nil)
        #expect(FieldStage(operation: .drop([FieldPath("a")!])).projection == nil)
    }
}

/// `copy`: every target gets its source's value as the record had it before the stage
/// (a target that is another's source is read first), other fields stay. Expected
/// records written by hand.
@Suite struct CopyStageTests {
    static let cases: [(mapping: [(String, String)], input: String, output: String)] = [
        ([("a", "b"), ("b", "a")], #"{"a":1,"b":"two","c":true}"#, #"{"a":"two","b":1,"c":true}"#),
        ([("x", "h.ua"), ("y", "h")], #"{"h":{"ua":"u"}}"#, #"{"h":{"ua":"u"},"x":"u","y":{"ua":"u"}}"#),
        ([("h", "h.ua"), ("z", "h.ua")], #"{"h":{"ua":"u"}}"#, #"{"h":"u","z":"u"}"#),
        ([("m", "missing")], #"{"a":1}"#, #"{"a":1,"m":null}"#),
    ]

    @Test(arguments: cases.indices)
    func targetsGetTheirSourcesAsTheRecordHadThem(n: Int) throws {
        let c = Self.cases[n]
        let mapping = c.mapping.map { ($0.0, FieldSource(path: FieldPath($0.1)!, mode: .value)) }
        var batch = RecordBatch(records: try (0..<3).map { i in
            guard case .object(let fields) = try JSONParser.parse(c.input) else { throw CancellationError() }
            return Record(fields: fields, position: SourcePosition(file: "f", line: i + 1))
        })
        try FieldStage(operation: .copy(mapping)).apply(&batch, context: RunContext(projectRoot: "/", outputRoot: "/", pipeline: "p",
                                                                                    partition: Partition("2026-11-18", granularity: .day)!, logger: .init(label: "t")))
        guard case .object(let want) = try JSONParser.parse(c.output) else { Issue.record("not an object"); return }
        for record in batch.records { #expect(record.fields == want) }
    }
}
