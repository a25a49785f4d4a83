import SluiceCore
import Testing

/// Schema coercion of every BigQuery type: (type, mode, input as JSON, expected value as
/// JSON, or nil when the row must be rejected). Expected values follow BigQuery's
/// documented canonical forms.
@Suite struct CoercionTests {
    static let cases: [(String, String, String, String?)] = [
        // STRING
        ("STRING", "NULLABLE", #""abc""#, #""abc""#),
        ("STRING", "NULLABLE", "42", #""42""#),
        ("STRING", "NULLABLE", "true", #""true""#),
        ("STRING", "NULLABLE", "1.5", #""1.5""#),
        ("STRING", "NULLABLE", #"{"a":1}"#, nil),
        ("STRING", "NULLABLE", "[1]", nil),
        ("STRING", "NULLABLE", "null", "null"),
        ("STRING", "REQUIRED", "null", nil),
        // INTEGER
        ("INTEGER", "NULLABLE", "42", "42"),
        ("INT64", "NULLABLE", #""-17""#, "-17"),
        ("INTEGER", "NULLABLE", "5.0", "5"),
        ("INTEGER", "NULLABLE", "12.5", nil),
        ("INTEGER", "NULLABLE", #""abc""#, nil),
        ("INTEGER", "NULLABLE", "99999999999999999999", nil),
        ("INTEGER", "NULLABLE", "true", nil),
        // FLOAT
        ("FLOAT", "NULLABLE", "1.5", "1.5"),
        ("FLOAT64", "NULLABLE", "3", "3.0"),
        ("FLOAT", "NULLABLE", #""2.5e3""#, "2500.0"),
        ("FLOAT", "NULLABLE", #""x""#, nil),
        // NUMERIC, BIGNUMERIC
        ("NUMERIC", "NULLABLE", #""00123.4500""#, #""123.45""#),
        ("NUMERIC", "NULLABLE", "1.5", #""1.5""#),
        ("DECIMAL", "NULLABLE", #""-0.000000001""#, #""-0.000000001""#),
        ("NUMERIC", "NULLABLE", #""0.0000000001""#, nil),
        ("NUMERIC", "NULLABLE", #""1e3""#, #""1000""#),
        ("NUMERIC", "NULLABLE", #""123456789012345678901234567890""#, nil),
        ("BIGNUMERIC", "NULLABLE", #""123456789012345678901234567890.5""#, #""123456789012345678901234567890.5""#),
        ("NUMERIC", "NULLABLE", #""1,5""#, nil),
        // BOOLEAN
        ("BOOLEAN", "NULLABLE", "true", "true"),
        ("BOOL", "NULLABLE", #""FALSE""#, "false"),
        ("BOOLEAN", "NULLABLE", "1", "true"),
        ("BOOLEAN", "NULLABLE", #""yes""#, nil),
        // TIMESTAMP
        ("TIMESTAMP", "NULLABLE", #""2026-11-18T03:00:00.5+03:00""#, #""2026-11-18T00:00:00.500000Z""#),
        ("TIMESTAMP", "NULLABLE", #""2026-11-18 10:00:00""#, #""2026-11-18T10:00:00.000000Z""#),
        ("TIMESTAMP", "NULLABLE", "1700000000", #""2023-11-14T22:13:20.000000Z""#),
        ("TIMESTAMP", "NULLABLE", "1700000000.25", #""2023-11-14T22:13:20.250000Z""#),
        ("TIMESTAMP", "NULLABLE", #""2026-13-45T00:00:00Z""#, nil),
        ("TIMESTAMP", "NULLABLE", #""yesterday""#, nil),
        // DATE, TIME, DATETIME
        ("DATE", "NULLABLE", #""2024-02-29""#, #""2024-02-29""#),
        ("DATE", "NULLABLE", #""2023-02-29""#, nil),
        ("TIME", "NULLABLE", #""23:59:59.5""#, #""23:59:59.500000""#),
        ("TIME", "NULLABLE", #""24:00:00""#, nil),
        ("DATETIME", "NULLABLE", #""2026-11-18 10:00:00.25""#, #""2026-11-18T10:00:00.250000""#),
        ("DATETIME", "NULLABLE", #""2026-11-18T10:00:00Z""#, nil),
        // BYTES
        ("BYTES", "NULLABLE", #""aGVsbG8""#, #""aGVsbG8=""#),
        ("BYTES", "NULLABLE", #""not base64!""#, nil),
        // JSON, GEOGRAPHY, INTERVAL, RANGE
        ("JSON", "NULLABLE", #"{"a": [1, "x"]}"#, #""{\"a\":[1,\"x\"]}""#),
        ("JSON", "NULLABLE", #""{\"b\": true}""#, #""{\"b\":true}""#),
        ("JSON", "NULLABLE", #""{not json""#, nil),
        ("GEOGRAPHY", "NULLABLE", #""POINT(30 10)""#, #""POINT(30 10)""#),
        ("INTERVAL", "NULLABLE", #""1-2 3 4:5:6""#, #""1-2 3 4:5:6""#),
        ("RANGE", "NULLABLE", #""[2024-01-01, UNBOUNDED)""#, #""[2024-01-01, UNBOUNDED)""#),
        // REPEATED
        ("INTEGER", "REPEATED", "[1, \"2\", 3.0]", "[1,2,3]"),
        ("STRING", "REPEATED", "null", "[]"),
        ("INTEGER", "REPEATED", "[1, null]", nil),
        ("INTEGER", "REPEATED", "5", nil),
    ]

    @Test(arguments: cases)
    func coercesLikeBigQuery(type: String, mode: String, input: String, expected: String?) throws {
        let field = SchemaField(name: "c", type: SchemaField.FieldType(name: type)!, mode: SchemaField.Mode(rawValue: mode)!)
        let value = try JSONParser.parse(input)
        let want = try expected.map { try JSONParser.parse($0) }
        do throws(CoercionError) {
            let out = try SchemaCoercer.coerce(value, to: field, path: "c")
            #expect(want != nil, "accepted a value BigQuery rejects")
            if let want { #expect(out == want) }
        } catch {
            #expect(expected == nil, "rejected: \(error)")
            #expect(error.column == "c" || error.column.hasPrefix("c["))
        }
    }

    /// A row takes the common cases (a value already of its column's type, null in a
    /// NULLABLE column) without calling `coerce`: every case of the table gives the same
    /// through a row, and a missing field counts as null.
    @Test(arguments: cases)
    func rowsCoerceLikeBigQuery(type: String, mode: String, input: String, expected: String?) throws {
        let field = SchemaField(name: "c", type: SchemaField.FieldType(name: type)!, mode: SchemaField.Mode(rawValue: mode)!)
        let coercer = SchemaCoercer(schema: TableSchema(fields: [field]), keyColumn: nil)
        let value = try JSONParser.parse(input)
        let want = try expected.map { try JSONParser.parse($0) }
        let records = [Record(fields: Fields(["c": value]), position: SourcePosition(file: "f", line: 1), key: "k")]
            + (value.isNull ? [Record(fields: Fields(), position: SourcePosition(file: "f", line: 2), key: "k")] : [])
        for record in records {
            switch coercer.row(for: record) {
            case .success(let row):
                #expect(want != nil, "accepted a value BigQuery rejects")
                if let want { #expect(row.values == [want]) }
            case .failure(let error):
                #expect(expected == nil, "rejected: \(error)")
            }
        }
    }

    @Test func recordsCoerceNestedFieldsInSchemaOrder() throws {
        let schema = SchemaField(name: "r", type: .record, mode: .nullable, fields: [
            SchemaField(name: "b", type: .integer, mode: .required),
            SchemaField(name: "a", type: .string),
            SchemaField(name: "t", type: .timestamp, mode: .repeated),
        ])
        let out = try SchemaCoercer.coerce(try JSONParser.parse(#"{"a":"x","b":"7","extra":1,"t":["2026-11-18T00:00:00Z"]}"#), to: schema, path: "r")
        #expect(JSONWriter.string(out) == #"{"b":7,"a":"x","t":["2026-11-18T00:00:00.000000Z"]}"#)
        #expect(throws: CoercionError.self) { try SchemaCoercer.coerce(try JSONParser.parse(#"{"a":"x"}"#), to: schema, path: "r") }
        let bad = try JSONParser.parse(#"{"b":"zz"}"#)
        do throws(CoercionError) {
            _ = try SchemaCoercer.coerce(bad, to: schema, path: "r")
            Issue.record("accepted a bad nested value")
        } catch {
            #expect(error.column == "r.b")
            #expect(!error.description.contains("zz"), "a message must not hold the value")
        }
    }

    @Test func rowsCarryTheKeyAndIgnoreUnknownFields() throws {
        let schema = TableSchema(fields: [SchemaField(name: "x", type: .integer), SchemaField(name: "record_key", type: .string, mode: .required)])
        let coercer = SchemaCoercer(schema: schema, keyColumn: "record_key")
        let record = Record(fields: Fields(["x": .int(1), "other": .string("ignored")]), position: SourcePosition(file: "f", line: 3), key: "k1")
        let row = try coercer.row(for: record).get()
        #expect(row.values == [.int(1), .string("k1")])
    }

    /// Rows take each column's value by name whatever the order of the record's fields
    /// (the coercer looks where the previous column was found first): the same row as
    /// the plain definition, for the schema's order, its reverse, a shuffle, and fields missing.
    @Test(arguments: ["schema order", "reversed", "shuffled", "some missing", "extra fields between"])
    func rowsTakeValuesByNameInAnyFieldOrder(order: String) throws {
        let names = (0..<12).map { "c\($0)" }
        let schema = TableSchema(fields: names.map { SchemaField(name: $0, type: .integer) })
        var present: [(String, Value)] = names.enumerated().map { ($0.element, .int(Int64($0.offset))) }
        switch order {
        case "reversed": present.reverse()
        case "shuffled": present = [5, 0, 11, 1, 2, 3, 10, 4, 6, 9, 7, 8].map { present[$0] }
        case "some missing": present = present.enumerated().filter { $0.offset % 3 != 1 }.map(\.element)
        case "extra fields between": present = present.flatMap { [("x_" + $0.0, .string("no")), $0] }
        default: break
        }
        let record = Record(fields: Fields(present.map { Fields.Field($0.0, $0.1) }), position: SourcePosition(file: "f", line: 1), key: "k")
        let expected = names.map { name in present.first { $0.0 == name }?.1 ?? .null }
        #expect(try SchemaCoercer(schema: schema, keyColumn: nil).row(for: record).get().values == expected)
    }

    /// A column a projection takes as JSON text into a STRING column: streamed (its value
    /// given to `json` as it is) it must give what the row of the same projection holds
    /// (the text made a string first): the JSON text, null for an absent or null value in
    /// a NULLABLE column, and the error of a REQUIRED one.
    @Test(arguments: [("NULLABLE", #"{"j":{"a":[1,"x"]}}"#), ("NULLABLE", #"{"j":null}"#), ("NULLABLE", "{}"), ("NULLABLE", #"{"j":"s"}"#),
                      ("REQUIRED", #"{"j":{"a":1}}"#), ("REQUIRED", #"{"j":null}"#), ("REQUIRED", "{}"), ("REQUIRED", #"{"j":5}"#)])
    func jsonColumnsStreamedAsTheirRows(mode: String, input: String) throws {
        let schema = TableSchema(fields: [SchemaField(name: "j", type: .string, mode: SchemaField.Mode(rawValue: mode)!),
                                          SchemaField(name: "n", type: .integer)])
        let coercer = SchemaCoercer(schema: schema, keyColumn: nil)
        let projection = Projection(columns: [Projection.Column(name: "j", path: FieldPath("j")!, asJSON: true),
                                              Projection.Column(name: "n", path: FieldPath("n")!, asJSON: false)])
        guard case .object(var fields) = try JSONParser.parse(input) else { Issue.record("not an object"); return }
        fields["n"] = .int(7)
        let record = Record(fields: fields, position: SourcePosition(file: "f", line: 1), key: "k")
        let plan = coercer.plan(projection)
        var readers = projection.columns.map { PathReader($0.path) }
        let row = coercer.row(for: record, through: projection, plan: plan, readers: &readers)
        var streamed: [Value] = []
        let error = coercer.forEachValue(of: record, through: projection, plan: plan, readers: &readers,
                                         json: { _, v in streamed.append(.string(JSONWriter.string(v))) }) { _, v in streamed.append(v) }
        switch row {
        case .success(let r):
            #expect(error == nil)
            #expect(streamed == r.values)
        case .failure(let e):
            #expect(error == e)
        }
        #expect((mode == "REQUIRED" && (input == "{}" || input.contains("null"))) == (error != nil))
    }

    @Test(arguments: [(1.0, "1.0"), (0.1, "0.1"), (1e-05, "1e-05"), (1e16, "1e+16"), (123456789012.0, "123456789012.0"),
                      (1.5e300, "1.5e+300"), (-2.5, "-2.5"), (0.0001, "0.0001"), (1e15, "1000000000000000.0"), (Double.leastNonzeroMagnitude, "5e-324")])
    func doublesAreWrittenAsPythonReprDoes(value: Double, text: String) {
        #expect(JSONWriter.formatDouble(value) == text)
    }
}
