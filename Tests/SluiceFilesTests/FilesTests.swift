import CWriteBehind
import Foundation
import SluiceConfig
import SluiceCore
@testable import SluiceFiles
import SluiceSQLite
import SluiceTestSupport
import Testing

/// Reads a whole source through a LineReader, collecting lines and errors.
func readAll(_ path: String, maxLineBytes: Int = 1 << 20, chunk: Int = 1 << 16) throws -> (lines: [String], tooLong: [Int], error: InputError?, lastLine: Int) {
    let source = try openByteSource(path: path, display: "f")
    let reader = LineReader(source: source, maxLineBytes: maxLineBytes, chunkSize: chunk)
    var lines: [String] = []
    var tooLong: [Int] = []
    do {
        while try reader.read(maxEvents: 100, { event in
            switch event {
            case .line(let b, _, _): lines.append(String(decoding: b, as: UTF8.self))
            case .tooLong(let line, _, _): tooLong.append(line)
            }
        }) {}
    } catch {
        return (lines, tooLong, error, reader.nextLineNumber)
    }
    return (lines, tooLong, nil, reader.nextLineNumber)
}

func gzipWithCLI(_ data: Data, in dir: String, name: String) throws -> String {
    let plain = dir + "/" + name
    try data.write(to: URL(fileURLWithPath: plain))
    let r = try TestSupport.run("/bin/gzip", ["-f", "-k", "-9", plain])
    #expect(r.status == 0, "gzip failed: \(r.stderr)")
    return plain + ".gz"
}

@Suite struct GzipTests {
    static func sampleLines(_ n: Int) -> [String] {
        (0..<n).map { #"{"i":\#($0),"text":"line \#($0) İstanbul \#(String(repeating: "x", count: $0 % 97))"}"# }
    }

    @Test func readsGzipDetectedByContentWhateverItsName() throws {
        let dir = try TestSupport.scratchDirectory("gz")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let lines = Self.sampleLines(5000)
        let gz = try gzipWithCLI(Data((lines.joined(separator: "\n") + "\n").utf8), in: dir, name: "a.jsonl")
        let misnamed = dir + "/not-compressed-by-name.jsonl"
        try FileManager.default.copyItem(atPath: gz, toPath: misnamed)
        for path in [gz, misnamed] {
            let r = try readAll(path)
            #expect(r.error == nil)
            #expect(r.lines == lines)
        }
    }

    @Test func readsConcatenatedMembers() throws {
        let dir = try TestSupport.scratchDirectory("gz")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = try gzipWithCLI(Data("one\ntwo\n".utf8), in: dir, name: "a")
        let b = try gzipWithCLI(Data("three\nfour".utf8), in: dir, name: "b")
        var both = try Data(contentsOf: URL(fileURLWithPath: a))
        both += try Data(contentsOf: URL(fileURLWithPath: b))
        let path = dir + "/both.gz"
        try both.write(to: URL(fileURLWithPath: path))
        let r = try readAll(path)
        #expect(r.error == nil)
        #expect(r.lines == ["one", "two", "three", "four"])
    }

    /// Truncated at many points: every complete line that zlib can decode before the cut
    /// is read (as Python's zlib says), then the truncation is reported at the next line.
    @Test(arguments: [0.05, 0.2, 0.37, 0.5, 0.61, 0.8, 0.95, 0.999])
    func truncatedGzipGivesEveryCompleteLineThenAnError(fraction: Double) throws {
        let dir = try TestSupport.scratchDirectory("gz")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let lines = Self.sampleLines(3000)
        let gz = try gzipWithCLI(Data((lines.joined(separator: "\n") + "\n").utf8), in: dir, name: "t.jsonl")
        let full = try Data(contentsOf: URL(fileURLWithPath: gz))
        let cut = Int(Double(full.count) * fraction)
        let truncated = dir + "/cut.gz"
        try full.prefix(cut).write(to: URL(fileURLWithPath: truncated))
        let reference = try JSONSerialization.jsonObject(with: TestSupport.python(
            script: TestSupport.repoRoot + "/Tests/SluiceFilesTests/gzip_reference.py", [gz, String(cut)])) as! [String: Int]
        let r = try readAll(truncated)
        #expect(r.error?.kind == .truncatedGzip)
        #expect(r.lines.count == reference["lines"])
        #expect(r.lines == Array(lines.prefix(reference["lines"]!)))
        #expect(r.lastLine == reference["lines"]! + 1)
    }

    @Test func corruptGzipIsAnErrorNotACrash() throws {
        let dir = try TestSupport.scratchDirectory("gz")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let gz = try gzipWithCLI(Data((Self.sampleLines(2000).joined(separator: "\n")).utf8), in: dir, name: "c")
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: gz)))
        for i in stride(from: 200, to: min(bytes.count, 400), by: 7) { bytes[i] ^= 0x5A }
        try Data(bytes).write(to: URL(fileURLWithPath: gz))
        let r = try readAll(gz)
        #expect(r.error != nil)
    }
}

@Suite struct LineReaderTests {
    static let cases: [(String, String, [String], [Int])] = [
        ("plain lines", "a\nb\nc\n", ["a", "b", "c"], []),
        ("no final newline", "a\nb", ["a", "b"], []),
        ("CRLF", "a\r\nb\r\n", ["a", "b"], []),
        ("blank lines kept as lines", "a\n\n\nb\n", ["a", "", "", "b"], []),
        ("a line over the limit", "short\n" + String(repeating: "x", count: 40) + "\nafter\n", ["short", "after"], [2]),
        ("over the limit at the end", "short\n" + String(repeating: "y", count: 100), ["short"], [2]),
        ("exactly the limit", String(repeating: "z", count: 32) + "\n", [String(repeating: "z", count: 32)], []),
    ]

    @Test(arguments: cases)
    func splitsLines(name: String, text: String, expected: [String], tooLong: [Int]) throws {
        let dir = try TestSupport.scratchDirectory("lines")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try text.write(toFile: dir + "/f", atomically: true, encoding: .utf8)
        let r = try readAll(dir + "/f", maxLineBytes: 32, chunk: 16)
        #expect(r.lines == expected)
        #expect(r.tooLong == tooLong)
    }

    @Test func linesOfSeveralMebibytesAreRead() throws {
        let dir = try TestSupport.scratchDirectory("lines")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let long = #"{"blob":""# + String(repeating: "q", count: 3 << 20) + #""}"#
        try (long + "\n{\"after\":1}\n").write(toFile: dir + "/f", atomically: true, encoding: .utf8)
        let r = try readAll(dir + "/f", maxLineBytes: 16 << 20)
        #expect(r.lines.count == 2)
        #expect(r.lines.first?.utf8.count == long.utf8.count)
    }
}

/// Each line of a JSON Lines file becomes a record, a dead letter of its kind, or (blank)
/// nothing; a dead letter keeps its position and its raw bytes.
@Suite struct JSONLinesParseTests {
    static let cases: [(line: String, kind: DeadLetter.Kind?, message: String?)] = [
        (#"{"a":1,"b":{"c":"d"}}"#, nil, nil),
        (#"  {"a":1}  "#, nil, nil),
        ("   ", nil, nil),
        ("[1,2]", .notAnObject, "line is JSON array, not an object"),
        (#""text""#, .notAnObject, "line is JSON string, not an object"),
        ("null", .notAnObject, "line is JSON null, not an object"),
        (#"{"a":1}x"#, .malformedJSON, "malformed JSON: unexpected data after the JSON value at byte 8"),
        (#"{"a":"#, .malformedJSON, "malformed JSON: unexpected end of input at byte 6"),
        ("[1,", .malformedJSON, "malformed JSON: unexpected end of input at byte 4"),
        ("(made of bytes below)", .invalidUTF8, "line is not valid UTF-8"),
    ]

    @Test(arguments: cases)
    func lineBecomesARecordOrADeadLetter(line: String, kind: DeadLetter.Kind?, message: String?) throws {
        var bytes = Array(line.utf8)
        if kind == .invalidUTF8 { bytes = Array(#"{"a":""#.utf8) + [0xFF] + Array(#""}"#.utf8) }
        var batch = RecordBatch()
        bytes.withUnsafeBytes { JSONLinesSource.parse($0, position: SourcePosition(file: "f.jsonl", line: 7, offset: 40), into: &batch) }
        if let kind {
            #expect(batch.records.isEmpty)
            #expect(batch.deadLetters.map(\.kind) == [kind])
            #expect(batch.deadLetters.first?.message == message)
            #expect(batch.deadLetters.first?.position == SourcePosition(file: "f.jsonl", line: 7, offset: 40))
            #expect(batch.deadLetters.first?.raw == bytes)
        } else if line.allSatisfy({ $0 == " " }) {
            #expect(batch.isEmpty)
        } else {
            #expect(batch.deadLetters.isEmpty)
            guard case .object(let fields) = try JSONParser.parse(line) else { Issue.record("not an object"); return }
            #expect(batch.records.map(\.fields) == [fields])
            #expect(batch.records.first?.position.line == 7)
        }
    }
}

@Suite struct CSVWriterTests {
    static let values: [[Value]] = [
        [.string("plain"), .string("with,comma"), .string("with \"quotes\""), .string("multi\nline"), .string("cr\rhere")],
        [.null, .string(""), .string(" spaced "), .string("İstanbul ığ 🎉"), .string("tab\tinside")],
        [.int(-42), .double(1.5), .bool(true), .object(Fields(["a": .array([.int(1), .string("x,y")])])), .largeInteger("123456789012345678901")],
        // Quotes at either end, doubled and alone: the writer copies the runs between them.
        [.string("\"start"), .string("end\""), .string("\"\"\""), .string("a\"\"b,c"), .string("\"")],
    ] + wordPositions

    /// Each character that needs quotes (and each delimiter tested), alone, at every place
    /// of texts of 7 to 20 bytes: the writer looks for them eight bytes at a time, then at
    /// the last eight bytes of a text of eight or more (byte by byte in a shorter one); a
    /// miss in any part shows as a row Python reads apart.
    static let wordPositions: [[Value]] = ["\"", ",", ";", "\t", "\n", "\r"].flatMap { special in
        [7, 8, 9, 15, 16, 20].flatMap { length in
            (0..<length).map { at -> [Value] in
                var text = Array(repeating: "x", count: length)
                text[at] = special
                return [.string(text.joined()), .string("y"), .string("z"), .null, .string("w")]
            }
        }
    }

    /// Python's csv module must read back exactly what was written (it cannot tell NULL
    /// from "", so both read as "" there; that difference is tested byte for byte below).
    @Test(arguments: [UInt8(ascii: ","), UInt8(ascii: ";"), UInt8(ascii: "\t")])
    func pythonReadsBackWhatWasWritten(delimiter: UInt8) throws {
        let dir = try TestSupport.scratchDirectory("csv")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var out: [UInt8] = []
        let format = CSVFormat(delimiter: delimiter)
        format.appendHeader(["a", "b", "c", "d", "e"], to: &out)
        for row in Self.values { format.appendRecord(row, to: &out) }
        try Data(out).write(to: URL(fileURLWithPath: dir + "/o.csv"))
        let json = try TestSupport.python(script: TestSupport.repoRoot + "/Tests/SluiceFilesTests/csv_reference.py",
                                          [dir + "/o.csv", String(UnicodeScalar(delimiter))])
        let rows = try JSONSerialization.jsonObject(with: json) as! [[String]]
        #expect(rows.count == Self.values.count + 1)
        #expect(rows[0] == ["a", "b", "c", "d", "e"])
        for (row, values) in zip(rows.dropFirst(), Self.values) {
            #expect(row == values.map { CSVFormat.text($0) ?? "" })
        }
        // And our own reader (used by `sluice test`) gives back NULL and "" apart.
        let ours = format.parse(out)
        #expect(ours.dropFirst().map { $0 } == Self.values.map { $0.map(CSVFormat.text) })
    }

    /// JSON values whose text needs quotes or not, with quotes to double at its start, end
    /// and both, and with each delimiter inside.
    static let jsonValues: [Value] = [
        .int(5), .bool(true), .double(2.5), .string(""), .string("x"), .string("a,b;c\td"), .string("say \"hi\"\n"),
        .array([]), .array([.int(1), .int(2)]), .object(Fields()), .object(Fields(["k": .string("v\"w"), "n": .null])),
        .object(Fields(["nested": .object(Fields(["a": .array([.string("é,"), .double(-0.5), .bool(false)])]))])),
        .string("ünïcödé and \u{1F600}"), .largeInteger("123456789012345678901234567890"),
        // Quotes the writer escapes inside a string and a name (written doubled as they are
        // written, for strings and objects), and in an array (quoted after a scan).
        .string("\"\\\u{01}\""), .object(Fields(["q\"k": .array([.string("\"")]), "\\": .string("a\"")])),
        .array([.string("\"x\""), .object(Fields())]), .object(Fields(["": .string("")])),
    ]

    /// `appendJSON` writes the JSON text in place as `append` writes that text as a string:
    /// the same bytes, and Python's csv module reads back the text itself.
    @Test(arguments: [UInt8(ascii: ","), UInt8(ascii: ";"), UInt8(ascii: "\t")])
    func jsonWrittenInPlaceIsQuotedAsItsText(delimiter: UInt8) throws {
        let encoder = CSVRowEncoder(format: CSVFormat(delimiter: delimiter))
        var direct = RowBytes(capacity: 16), viaText = RowBytes(capacity: 16)
        for value in Self.jsonValues {
            for out in [0, 1] {
                let text = JSONWriter.string(value)
                if out == 0 {
                    encoder.append(.string("before"), column: 0, to: &direct)
                    encoder.appendJSON(value, column: 1, to: &direct)
                    encoder.append(.string("after"), column: 2, to: &direct)
                    encoder.endRow(&direct)
                } else {
                    encoder.append(.string("before"), column: 0, to: &viaText)
                    encoder.append(.string(text), column: 1, to: &viaText)
                    encoder.append(.string("after"), column: 2, to: &viaText)
                    encoder.endRow(&viaText)
                }
            }
        }
        #expect(direct.bytes == viaText.bytes)
        let dir = try TestSupport.scratchDirectory("csvjson")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data(direct.bytes).write(to: URL(fileURLWithPath: dir + "/o.csv"))
        let json = try TestSupport.python(script: TestSupport.repoRoot + "/Tests/SluiceFilesTests/csv_reference.py",
                                          [dir + "/o.csv", String(UnicodeScalar(delimiter))])
        let rows = try JSONSerialization.jsonObject(with: json) as! [[String]]
        #expect(rows == Self.jsonValues.map { ["before", JSONWriter.string($0), "after"] })
    }

    @Test(arguments: [
        (Value.null, ""), (.string(""), "\"\""), (.string("a"), "a"), (.string("a\"b"), "\"a\"\"b\""),
        (.string("x,y"), "\"x,y\""), (.string("l1\nl2"), "\"l1\nl2\""), (.int(7), "7"), (.bool(false), "false"),
        (.int(0), "0"), (.int(-42), "-42"), (.int(Int64.min), "-9223372036854775808"), (.int(Int64.max), "9223372036854775807"),
        (.double(1e-05), "1e-05"), (.array([.int(1), .int(2)]), "\"[1,2]\""),
    ])
    func fieldQuoting(value: Value, text: String) {
        var out: [UInt8] = []
        CSVFormat().appendField(value, to: &out)
        #expect(String(decoding: out, as: UTF8.self) == text)
    }

    static func context(_ dir: String, mode: LoadMode, state: (any StateStore)?) -> RunContext {
        RunContext(projectRoot: dir, outputRoot: dir, pipeline: "p", partition: Partition("2026-11-18", granularity: .day)!,
                   logger: .init(label: "t"), mode: mode, state: state)
    }

    static func row(_ key: String, _ x: Int64) -> Row { Row(key: key, position: SourcePosition(file: "f", line: 1), values: [.int(x)]) }

    /// A loader of two STRING columns, `k` and `t`, to `out/{date}.csv`.
    static func keyTextLoader() -> CSVLoader {
        CSVLoader(schema: TableSchema(fields: [SchemaField(name: "k", type: .string), SchemaField(name: "t", type: .string)]),
                  pathPattern: "out/{date}.csv")
    }

    /// Commits the session's segment and records it in the state store, as the runner does.
    static func commit(_ session: any LoadSession, of loader: CSVLoader, final: Bool, in state: SQLiteStateStore) async throws {
        let result = try await session.commitSegment(final: final)
        try state.commit(SegmentCommit(pipeline: "p", partition: "2026-11-18", checkpoints: [], delivered: [loader.label: result.deliveredKeys],
                                       receipts: result.receipts, finishesReplace: false))
    }

    @Test func replaceSwapsTheFileAtomically() async throws {
        let dir = try TestSupport.scratchDirectory("csv")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let loader = CSVLoader(schema: TableSchema(fields: [SchemaField(name: "x", type: .integer)]), pathPattern: "out/{date}.csv")
        let target = dir + "/out/2026-11-18.csv"
        try FileManager.default.createDirectory(atPath: dir + "/out", withIntermediateDirectories: true)
        try "old\r\n".write(toFile: target, atomically: true, encoding: .utf8)
        let session = try await loader.open(Self.context(dir, mode: .replace, state: nil))
        _ = try await session.write([Self.row("k", 1)])
        // Until the final commit the old file is untouched.
        #expect(try String(contentsOfFile: target, encoding: .utf8) == "old\r\n")
        _ = try await session.commitSegment(final: true)
        #expect(try String(contentsOfFile: target, encoding: .utf8) == "x\r\n1\r\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/out") == ["2026-11-18.csv"])
        // A rolled-back replace leaves the committed file and no temporary file.
        let second = try await loader.open(Self.context(dir, mode: .replace, state: nil))
        _ = try await second.write([Self.row("k", 2)])
        await second.rollback()
        #expect(try String(contentsOfFile: target, encoding: .utf8) == "x\r\n1\r\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/out") == ["2026-11-18.csv"])
    }

    /// Appending: what was written after the last state commit (a crash) is cut away when
    /// the file is opened again, and keys the ledger holds are not written twice.
    @Test func appendRepairsToTheCommittedLengthAndSkipsDeliveredKeys() async throws {
        let dir = try TestSupport.scratchDirectory("csv")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let state = try SQLiteStateStore(path: dir + "/state.sqlite")
        let loader = CSVLoader(schema: TableSchema(fields: [SchemaField(name: "x", type: .integer)]), pathPattern: "out/{date}.csv")
        let target = dir + "/out/2026-11-18.csv"
        let first = try await loader.open(Self.context(dir, mode: .append, state: state))
        #expect(try await first.write([Self.row("a", 1), Self.row("b", 2), Self.row("a", 1)]) == 2)
        let result = try await first.commitSegment(final: false)
        try state.commit(SegmentCommit(pipeline: "p", partition: "2026-11-18", checkpoints: [], delivered: [loader.label: result.deliveredKeys],
                                       receipts: result.receipts, finishesReplace: false))
        // Rows written and synced, but the process dies before the state commit.
        _ = try await first.write([Self.row("c", 3)])
        _ = try await first.commitSegment(final: true)
        #expect(try String(contentsOfFile: target, encoding: .utf8) == "x\r\n1\r\n2\r\n3\r\n")
        let second = try await loader.open(Self.context(dir, mode: .append, state: state))
        #expect(try String(contentsOfFile: target, encoding: .utf8) == "x\r\n1\r\n2\r\n")
        #expect(try await second.write([Self.row("b", 2), Self.row("c", 3)]) == 1)
        _ = try await second.commitSegment(final: true)
        #expect(try String(contentsOfFile: target, encoding: .utf8) == "x\r\n1\r\n2\r\n3\r\n")
        // A file cut shorter than its receipt is an error that says what to do.
        try "x\r\n".write(toFile: target, atomically: true, encoding: .utf8)
        await #expect(throws: OutputError.self) { _ = try await loader.open(Self.context(dir, mode: .append, state: state)) }
    }

    /// Write-behind: the kernel is asked to start writing every `writeBehindBytes` (8 MiB)
    /// of new bytes, counted from where the session opened the file (its committed length
    /// when appending), and the file holds exactly the rows written.
    /// (Counted from the file's start, 5 + 4 MiB would start it once.)
    @Test(arguments: [(0, 20, 2), (5, 4, 0), (5, 12, 1)])
    func writeBehindStartsEveryEightMiB(committedMiB: Int, writtenMiB: Int, starts: Int) async throws {
        let dir = try TestSupport.scratchDirectory("csv")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let state = try SQLiteStateStore(path: dir + "/state.sqlite")
        let loader = Self.keyTextLoader()
        let text = String(repeating: "y", count: 1_000)
        func rows(_ range: Range<Int>) -> [Row] {
            range.map { Row(key: "r\($0)", position: SourcePosition(file: "f", line: $0 + 1), values: [.string("r\($0)"), .string(text)]) }
        }
        // Rows of ~1 KiB: how many make `mib` MiB.
        func count(from start: Int, mib: Int) -> Int {
            var n = start
            var total = 0
            while total < mib << 20 { total += "r\(n),\(text)\r\n".utf8.count; n += 1 }
            return n - start
        }
        let first = count(from: 0, mib: committedMiB)
        if first > 0 {
            let session = try await loader.open(Self.context(dir, mode: .append, state: state))
            _ = try await session.write(rows(0..<first))
            try await Self.commit(session, of: loader, final: true, in: state)
        }
        let second = count(from: first, mib: writtenMiB)
        let session = try await loader.open(Self.context(dir, mode: .append, state: state))
        let csv = try #require(session as? CSVSession)
        for start in stride(from: first, to: first + second, by: 500) {
            _ = try await session.write(rows(start..<min(start + 500, first + second)))
        }
        _ = try await session.commitSegment(final: true)
        #expect(CSVSession.writeBehindBytes == 8 << 20)
        #expect(csv.writeBehinds == starts)
        let file = try Data(contentsOf: URL(fileURLWithPath: dir + "/out/2026-11-18.csv"))
        var expected = Data("k,t\r\n".utf8)
        for n in 0..<(first + second) { expected.append(contentsOf: Array("r\(n),\(text)\r\n".utf8)) }
        #expect(file == expected)
    }

    /// The write-behind call reaches the kernel's `sync_file_range` (a declaration of our
    /// own, as Glibc's module has none): 0 on a file, EBADF for a closed descriptor.
    @Test func writeBehindCallsTheKernel() throws {
        let dir = try TestSupport.scratchDirectory("csv")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fd = open(dir + "/f", O_WRONLY | O_CREAT, 0o644)
        #expect(fd >= 0)
        let bytes = [UInt8](repeating: 0x41, count: 1 << 16)
        #expect(write(fd, bytes, bytes.count) == bytes.count)
        #expect(sluice_start_writeback(fd, 0, Int64(bytes.count)) == 0)
        close(fd)
        #if os(Linux)
        #expect(sluice_start_writeback(fd, 0, Int64(bytes.count)) == -1)
        #expect(errno == EBADF)
        #endif
    }

    /// How many bytes of a file the page cache holds, as the kernel reports it (`mincore`
    /// on a mapping of the file, which reads no page in).
    static func cachedBytes(_ path: String) throws -> Int {
        let fd = open(path, O_RDONLY)
        try #require(fd >= 0)
        defer { close(fd) }
        var st = stat()
        try #require(fstat(fd, &st) == 0)
        let size = Int(st.st_size)
        guard size > 0 else { return 0 }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let map = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0)
        try #require(map != MAP_FAILED)
        defer { munmap(map, size) }
        var resident = [UInt8](repeating: 0, count: (size + page - 1) / page)
        try #require(mincore(map, size, &resident) == 0)
        return resident.reduce(0) { $0 + Int($1 & 1) } * page
    }

    /// True when the scratch directory is on a file system whose page cache
    /// `POSIX_FADV_DONTNEED` empties (not tmpfs, whose pages are the file itself).
    static var scratchIsOnADisk: Bool {
        guard let r = try? TestSupport.run("/usr/bin/stat", ["-f", "-c", "%T", FileManager.default.temporaryDirectory.path]),
              r.status == 0 else { return false }
        return !["tmpfs", "ramfs"].contains(r.output.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// A long output leaves the page cache as it is written: bytes `dropLagBytes` (16 MiB)
    /// behind the end (their write-behind started 8 MiB before) are dropped from it, and a
    /// commit drops all it wrote, also when the session appends to a committed file (its
    /// length not on a 2 MiB boundary). The kernel's own count of the file's cached pages
    /// says so (without the drops the whole file stays cached; with drops that split a
    /// large folio, up to 640 KiB stayed), and the file holds exactly the rows written.
    @Test(.enabled(if: scratchIsOnADisk), arguments: [(0, 12, 0), (0, 28, 1), (0, 44, 3), (5, 28, 1), (5, 44, 3)])
    func writtenBytesLeaveThePageCache(committedMiB: Int, writtenMiB: Int, dropsBeforeCommit: Int) async throws {
        let dir = try TestSupport.scratchDirectory("csv")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let state = try SQLiteStateStore(path: dir + "/state.sqlite")
        let loader = Self.keyTextLoader()
        let text = String(repeating: "z", count: 1_000)
        let path = dir + "/out/2026-11-18.csv"
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        var expected = Data("k,t\r\n".utf8)
        var n = 0
        /// Writes batches of 500 rows until the file would hold `mib` MiB more.
        func write(_ session: any LoadSession, mib: Int) async throws {
            let end = expected.count + mib << 20
            while expected.count < end {
                let rows = (n..<n + 500).map { Row(key: "r\($0)", position: SourcePosition(file: "f", line: $0 + 1), values: [.string("r\($0)"), .string(text)]) }
                for row in rows { expected.append(contentsOf: Array("\(row.key),\(text)\r\n".utf8)) }
                _ = try await session.write(rows)
                n += 500
            }
        }
        if committedMiB > 0 {
            let session = try await loader.open(Self.context(dir, mode: .append, state: state))
            try await write(session, mib: committedMiB)
            try await Self.commit(session, of: loader, final: true, in: state)
            #expect(try Self.cachedBytes(path) <= 2 * page)
            #expect(expected.count % Int(CSVSession.dropAlignment) != 0) // the next session starts mid-folio
        }
        let session = try await loader.open(Self.context(dir, mode: .append, state: state))
        let csv = try #require(session as? CSVSession)
        try await write(session, mib: writtenMiB)
        #expect(csv.drops == dropsBeforeCommit)
        let cachedBefore = try Self.cachedBytes(path)
        // At most the bytes not yet dropped: the lag, the write-behind range, the alignment and a batch.
        #expect(cachedBefore <= Int(CSVSession.dropLagBytes + CSVSession.writeBehindBytes + CSVSession.dropAlignment) + (1 << 20))
        #expect(cachedBefore >= min(writtenMiB << 20, Int(CSVSession.dropLagBytes)) / 4) // the count works
        _ = try await session.commitSegment(final: true)
        #expect(csv.drops == dropsBeforeCommit + 1)
        // The last, partial page may stay.
        let cachedAfter = try Self.cachedBytes(path)
        #expect(cachedAfter <= 2 * page, "\(cachedAfter) bytes cached")
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == expected)
    }

    /// Batches of every size around the output buffer's (1 MiB) and the direct writes'
    /// (64 KiB), encoded ahead (all rows new: written whole) or not (some rows dropped as
    /// duplicates): the file holds exactly the rows, in order, as Python's csv module reads it.
    @Test(arguments: [(1, 10), (300, 2_000), (3_000, 400), (9_000, 300), (40, 40_000), (3, 65_533), (20, 3_270)])
    func batchesAroundTheBufferSizeAreWrittenWhole(rowsPerBatch: Int, textBytes: Int) async throws {
        let dir = try TestSupport.scratchDirectory("csv")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let loader = Self.keyTextLoader()
        let session = try await loader.open(Self.context(dir, mode: .append, state: nil))
        var expected: [[String]] = [["k", "t"]]
        var n = 0
        for batch in 0..<4 {
            var rows: [Row] = []
            for i in 0..<rowsPerBatch {
                // In odd batches every seventh row repeats the one before (even batches: all new, written whole).
                let key = batch % 2 == 1 && i % 7 == 3 ? "r\(n - 1)" : "r\(n)"
                if key == "r\(n)" {
                    let text = String(repeating: ["x", ",", "\"", "\n", "ü"][n % 5], count: textBytes - (n % 5))
                    expected.append([key, text])
                    rows.append(Row(key: key, position: SourcePosition(file: "f", line: n + 1), values: [.string(key), .string(text)]))
                    n += 1
                } else {
                    rows.append(Row(key: key, position: SourcePosition(file: "f", line: n), values: [.string(key), .string("dup")]))
                }
            }
            if batch % 2 == 0, let encoder = session.encoder {
                let encoded = encoder.encode(rows)
                _ = try await session.write(rows.map { Row(key: $0.key, position: $0.position, values: []) }, encoded: encoded)
            } else {
                _ = try await session.write(rows)
            }
        }
        _ = try await session.commitSegment(final: true)
        let parsed = try TestSupport.python(script: "-c", ["""
            import csv, json, sys
            with open(sys.argv[1], newline='', encoding='utf-8') as f: print(json.dumps(list(csv.reader(f))))
            """, dir + "/out/2026-11-18.csv"])
        #expect(try JSONDecoder().decode([[String]].self, from: parsed) == expected)
    }
}
