import Foundation
import SluiceDumps
import Testing

struct CSVCase: Sendable, CustomStringConvertible {
    var name: String
    var bytes: [UInt8]
    var delimiter: Unicode.Scalar = ","
    var quote: Unicode.Scalar? = "\""
    var description: String { name }

    init(_ name: String, _ text: String, delimiter: Unicode.Scalar = ",", quote: Unicode.Scalar? = "\"") {
        self.name = name
        bytes = Array(text.utf8)
        self.delimiter = delimiter
        self.quote = quote
    }
    init(_ name: String, bytes: [UInt8]) { self.name = name; self.bytes = bytes }
}

private let bigField = String(repeating: "é,\"x\"\r\n", count: 200_000)

let csvCases: [CSVCase] = [
    CSVCase("simple", "a,b,c\n1,2,3\n4,5,6\n"),
    CSVCase("crlf and no final newline", "a,b\r\n1,2\r\n3,4"),
    CSVCase("quoted newlines LF and CRLF", "id,text\n1,\"line1\nline2\"\n2,\"x\r\ny\r\nz\"\n3,plain\n"),
    CSVCase("doubled quotes", "a,b\n\"he said \"\"hi\"\"\",\"\"\"\"\n\"\",x\n"),
    CSVCase("bom", bytes: [0xEF, 0xBB, 0xBF] + Array("name,n\nİstanbul,1\nПривет 😀,2\n".utf8)),
    CSVCase("semicolon", "a;b\n\"1;2\";3\n", delimiter: ";"),
    CSVCase("tab", "a\tb\n\"x\ty\"\tz\n,\t\n", delimiter: "\t"),
    CSVCase("pipe", "a|b\n1|\"|\"\n", delimiter: "|"),
    CSVCase("single quote char", "a,b\n'it''s, ok',2\n\"x\",3\n", quote: "'"),
    CSVCase("ragged rows", "a,b,c\n1,2,3\n1,2\n\"multi\nline\",2,3,4\n7,8,9\n"),
    CSVCase("blank lines", "a,b\n\n1,2\n\r\n3,4\n\n"),
    CSVCase("empty fields", "a,b,c\n,,\n\"\",\"\",\"\"\n"),
    CSVCase("lone CR line ends", "a,b\r1,2\r3,\"x\ry\"\r"),
    CSVCase("quote inside unquoted field", "a,b\nab\"c,d\n"),
    CSVCase("large quoted field", "a,b\n1,\"" + bigField.replacingOccurrences(of: "\"", with: "\"\"") + "\"\n2,x\n"),
    CSVCase("unterminated quote", "a,b\n1,2\n3,\"open\n4,5\n"),
    CSVCase("garbage after closing quote", "a,b\n1,2\n\"x\"y,3\n"),
]

@Test("CSV records equal Python's csv module on the same bytes", arguments: csvCases)
func csvMatchesPython(_ c: CSVCase) throws {
    let dir = try Support.scratchDirectory("csv")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let path = dir + "/in.csv"
    try Data(c.bytes).write(to: URL(fileURLWithPath: path))
    let out = try Support.run(try Support.python(), [Support.testsFolder + "/csv_reference.py", path, String(c.delimiter),
                                                      c.quote.map { String($0) } ?? ""]).stdout
    let json = try #require(try JSONSerialization.jsonObject(with: out) as? [String: Any])
    let records = try #require(json["records"] as? [[String: Any]])
    let errorLine = (json["error"] as? [String: Any])?["line"] as? Int

    let reader = try CSVFileReader(path: path, options: .init(delimiter: c.delimiter, quote: c.quote, chunkSize: 4096))
    let (rows, errors) = try Support.collect(reader)

    // Python's header is its first record; every later record must be a row (same fields,
    // same start line) or, when its field count differs, an error at its line.
    let header = try #require(records.first)
    let headerFields = header["fields"] as! [String]
    var expectedRows: [(Int, [String])] = [], expectedErrorLines: [Int] = []
    for r in records.dropFirst() {
        let fields = r["fields"] as! [String], line = r["line"] as! Int
        if fields.count == headerFields.count { expectedRows.append((line, fields)) } else { expectedErrorLines.append(line) }
    }
    if let errorLine { expectedErrorLines.append(errorLine) }
    // Compared without printing the values (one case has megabyte fields).
    let same = rows.map(\.strings) == expectedRows.map(\.1)
    #expect(same, "values differ from Python's (\(rows.count) rows vs \(expectedRows.count))")
    #expect(rows.map(\.line) == expectedRows.map(\.0))
    #expect(rows.allSatisfy { $0.columns == headerFields })
    let gotErrorLines = errors.map(\.line)
    if errorLine != nil {
        // After a malformed quote Python stops; we go on, so only the lines up to it must agree.
        #expect(Array(gotErrorLines.prefix(expectedErrorLines.count)) == expectedErrorLines)
    } else {
        #expect(gotErrorLines == expectedErrorLines)
    }
    for e in errors {
        #expect(e.description.hasPrefix("\(path):\(e.line):"))
    }
}

@Test func csvNullTextAndRaggedMessage() throws {
    let dir = try Support.scratchDirectory("csv")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let path = dir + "/in.csv"
    try Data("a,b\nNULL,\"NULL\"\n,x\n1,2,secret\n".utf8).write(to: URL(fileURLWithPath: path))
    let (rows, errors) = try Support.collect(try CSVFileReader(path: path, options: .init(nullText: "NULL")))
    #expect(rows.map(\.values) == [[nil, "NULL"], ["", "x"]])
    #expect(rows[0]["a"] == .some(nil))
    #expect(rows[0]["zz"] == nil)
    #expect(errors.count == 1)
    #expect(errors.first?.line == 4)
    #expect(errors.first?.description.contains("secret") == false)
    let (rows2, _) = try Support.collect(try CSVFileReader(path: path, options: .init(nullText: "")))
    #expect(rows2.map(\.values) == [["NULL", "NULL"], [nil, "x"]])
}

@Test func csvInvalidUTF8IsARowError() throws {
    let dir = try Support.scratchDirectory("csv")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let path = dir + "/in.csv"
    try Data(Array("a,b\n1,2\n".utf8) + [0x33, 0x2C, 0xFF, 0x0A] + Array("5,6\n".utf8)).write(to: URL(fileURLWithPath: path))
    let (rows, errors) = try Support.collect(try CSVFileReader(path: path))
    #expect(rows.map(\.strings) == [["1", "2"], ["5", "6"]])
    #expect(errors.map(\.line) == [3])
    #expect(errors.first?.column == 2)
}

@Test func csvMissingFileThrows() {
    #expect(throws: DumpFileError.self) { try CSVFileReader(path: "/nonexistent/x.csv").rows { _ in } }
}
