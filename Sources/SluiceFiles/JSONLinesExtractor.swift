import SluiceConfig
import SluiceCore

/// Reads JSON Lines files: one object per line, plain or gzip (detected by content),
/// globbed by partition, incrementally. Each file is known by its identity (the hash of
/// its first line), so a renamed (rotated) file resumes where it was left, a file
/// truncated and written anew is read from its start, and a file read whole is not read
/// again. Blank lines are skipped; every other line becomes a record or a dead letter
/// with its file and line.
public struct JSONLinesExtractor: Extractor {
    public var patterns: [String]
    public var maxLineBytes: Int

    public init(patterns: [String], maxLineBytes: Int) {
        self.patterns = patterns
        self.maxLineBytes = maxLineBytes
    }

    public func open(_ context: RunContext) throws -> any RecordSource {
        var files: [String] = []
        for pattern in patterns {
            for file in globFiles(context.inputPath(context.partition.expand(pattern))) where !files.contains(file) {
                files.append(file)
            }
        }
        return JSONLinesSource(files: files, root: context.projectRoot, maxLineBytes: maxLineBytes,
                               checkpoints: try context.checkpoints())
    }

    /// A source over these files (already globbed), for extractors built on JSON Lines
    /// (callback archives).
    public static func source(files: [String], context: RunContext, maxLineBytes: Int) throws -> any RecordSource {
        JSONLinesSource(files: files, root: context.projectRoot, maxLineBytes: maxLineBytes, checkpoints: try context.checkpoints())
    }

    /// Keeps at most this many bytes of a bad line in its dead letter.
    static let rawLimit = 64 * 1024

    public static func register(into registry: inout StageRegistry) {
        registry.extractor("jsonl") { o, ctx in
            let (patterns, selects) = pathPatterns(&o, ctx)
            let maxLine = o.int("max_line_bytes", range: 1...(1 << 30)) ?? 16 << 20
            o.finish()
            guard !patterns.isEmpty else { return nil }
            return BuiltExtractor(extractor: JSONLinesExtractor(patterns: patterns, maxLineBytes: maxLine),
                                  pathSelectsPartition: selects)
        }
    }
}

final class JSONLinesSource: RecordSource {
    private var files: [String]
    private let root: String
    private let maxLineBytes: Int
    private let checkpoints: [String: SourceCheckpoint]
    private var seen: Set<String> = []
    private var reader: LineReader?
    private var byteSource: (any ByteSource)?
    private var current: InputFile?
    /// Short strings made for earlier lines (field names, repeated values).
    private let strings = JSONStringCache()

    init(files: [String], root: String, maxLineBytes: Int, checkpoints: [String: SourceCheckpoint]) {
        self.files = files.reversed()
        self.root = root.hasSuffix("/") ? root : root + "/"
        self.maxLineBytes = maxLineBytes
        self.checkpoints = checkpoints
    }

    deinit { byteSource?.close() }

    /// Opens the next file that has something new; nil when none is left.
    private func openNext(into batch: inout RecordBatch) -> Bool {
        while let path = files.popLast() {
            let display = path.hasPrefix(root) ? String(path.dropFirst(root.count)) : path
            let file: InputFile
            do {
                file = try InputFile.inspect(path: path, display: display)
            } catch {
                batch.deadLetters.append(DeadLetter(kind: .readError, position: SourcePosition(file: display, line: 0), message: error.detail))
                continue
            }
            // No complete first line yet (a file being created), or the same content
            // twice in one run (a copy): nothing to read now.
            guard let id = file.identity, seen.insert(id).inserted else { continue }
            var offset: Int64 = 0
            var line = 0
            if let cp = checkpoints[id] {
                if cp.complete { continue }
                if !file.isGzip {
                    if cp.offset == file.size { continue }
                    if cp.offset < file.size { offset = cp.offset; line = cp.line }
                    // Shorter than what was read: the file was cut; read it anew.
                } else {
                    offset = cp.offset
                    line = cp.line
                }
            }
            do {
                let source = try openByteSource(path: path, display: display, skip: offset)
                byteSource = source
                reader = LineReader(source: source, maxLineBytes: maxLineBytes, startOffset: offset, startLine: line,
                                    readUnterminatedTail: file.settled)
                current = file
                return true
            } catch {
                batch.deadLetters.append(DeadLetter(kind: .readError, position: SourcePosition(file: display, line: 0), message: error.detail))
            }
        }
        return false
    }

    func next(limit: Int) throws -> RecordBatch? {
        var batch = RecordBatch()
        batch.records.reserveCapacity(limit)
        var progressed = false
        while batch.records.count + batch.deadLetters.count < limit {
            if reader == nil {
                guard openNext(into: &batch) else { break }
            }
            guard let reader, let file = current, let id = file.identity else { break }
            progressed = true
            let display = file.display
            var more: Bool
            var complete = false
            do {
                more = try reader.read(maxEvents: limit - batch.records.count - batch.deadLetters.count) { event in
                    switch event {
                    case .line(let bytes, let line, let offset):
                        Self.parse(bytes, position: SourcePosition(file: display, line: line, offset: offset, fileID: id), strings: strings, into: &batch)
                    case .tooLong(let line, let offset, let length):
                        batch.deadLetters.append(DeadLetter(kind: .lineTooLong, position: SourcePosition(file: display, line: line, offset: offset, fileID: id),
                                                            message: "line of \(length) bytes is longer than max_line_bytes (\(maxLineBytes))"))
                    }
                }
                if !more, file.isGzip { complete = true }
            } catch {
                let kind: DeadLetter.Kind = error.kind == .truncatedGzip ? .truncatedGzip : .readError
                batch.deadLetters.append(DeadLetter(kind: kind, position: SourcePosition(file: display, line: reader.nextLineNumber, offset: reader.consumedOffset, fileID: id),
                                                    message: error.detail))
                more = false
                complete = true
            }
            batch.checkpoints.append(SourceCheckpoint(fileID: id, path: display, offset: reader.consumedOffset,
                                                      line: reader.linesConsumed, complete: complete))
            if !more { closeFile() }
        }
        return progressed || !batch.isEmpty ? batch : nil
    }

    private func closeFile() {
        byteSource?.close()
        byteSource = nil
        reader = nil
        current = nil
    }

    static func parse(_ bytes: UnsafeRawBufferPointer, position: consuming SourcePosition, strings: JSONStringCache? = nil, into batch: inout RecordBatch) {
        // Blank lines are not records.
        var blank = true
        for b in bytes where !(b == 0x20 || b == 0x09 || b == 0x0D) { blank = false; break }
        if blank { return }
        do {
            // The fields as the parser made them (not unwrapped from a `Value`: a copy), and
            // the position moved into the record.
            guard let fields = try JSONParser.parseObject(bytes, strings: strings) else {
                let value = try JSONParser.parse(bytes)
                batch.deadLetters.append(DeadLetter(kind: .notAnObject, position: position, message: "line is JSON \(value.typeName), not an object", raw: raw(bytes)))
                return
            }
            batch.records.append(Record(fields: fields, position: position))
        } catch {
            let invalidUTF8 = error.kind == .invalidUTF8 || String(validating: bytes.bindMemory(to: UInt8.self), as: UTF8.self) == nil
            batch.deadLetters.append(DeadLetter(kind: invalidUTF8 ? .invalidUTF8 : .malformedJSON, position: position,
                                                message: invalidUTF8 ? "line is not valid UTF-8" : "malformed JSON: \(error.description)",
                                                raw: raw(bytes)))
        }
    }

    static func raw(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        Array(bytes.prefix(JSONLinesExtractor.rawLimit))
    }
}

extension JSONLinesExtractor: PositionRereader {
    /// Reads the lines at these positions again. A position whose file is gone, or whose
    /// file no longer has the same identity, stays a dead letter (kind `read_error`).
    public func reread(_ positions: [SourcePosition], context: RunContext) throws -> any RecordSource {
        RereadSource(positions: positions, context: context, maxLineBytes: maxLineBytes)
    }
}

final class RereadSource: RecordSource {
    private var positions: [SourcePosition]
    private let context: RunContext
    private let maxLineBytes: Int

    init(positions: [SourcePosition], context: RunContext, maxLineBytes: Int) {
        self.positions = positions.reversed()
        self.context = context
        self.maxLineBytes = maxLineBytes
    }

    func next(limit: Int) throws -> RecordBatch? {
        guard !positions.isEmpty else { return nil }
        var batch = RecordBatch()
        while batch.records.count + batch.deadLetters.count < limit, let p = positions.popLast() {
            let path = context.inputPath(p.file)
            do throws(InputError) {
                let file = try InputFile.inspect(path: path, display: p.file)
                if let id = p.fileID, file.identity != id {
                    throw InputError(kind: .cannotOpen, file: p.file, detail: "the file no longer has the content this record came from")
                }
                let source = try openByteSource(path: path, display: p.file, skip: p.offset)
                defer { source.close() }
                let reader = LineReader(source: source, maxLineBytes: maxLineBytes, chunkSize: 1 << 16,
                                        startOffset: p.offset, startLine: p.line - 1)
                var found = false
                _ = try reader.read(maxEvents: 1) { event in
                    found = true
                    switch event {
                    case .line(let bytes, let line, let offset):
                        JSONLinesSource.parse(bytes, position: SourcePosition(file: p.file, line: line, offset: offset, fileID: p.fileID), into: &batch)
                    case .tooLong(let line, let offset, let length):
                        batch.deadLetters.append(DeadLetter(kind: .lineTooLong, position: SourcePosition(file: p.file, line: line, offset: offset, fileID: p.fileID),
                                                            message: "line of \(length) bytes is longer than max_line_bytes (\(maxLineBytes))"))
                    }
                }
                if !found { throw InputError(kind: .readFailed, file: p.file, detail: "no line at this position any more") }
            } catch {
                batch.deadLetters.append(DeadLetter(kind: error.kind == .truncatedGzip ? .truncatedGzip : .readError, position: p, message: error.detail))
            }
        }
        return batch
    }
}

/// The `path` option of file extractors: one pattern or a list, with partition
/// placeholders checked; and whether a placeholder makes the path select the partition.
public func pathPatterns(_ o: inout Options, _ ctx: BuildContext) -> ([String], Bool) {
    var out: [String] = []
    for (p, loc) in o.stringList("path") ?? [] {
        checkPlaceholders(p, at: loc, diagnostics: ctx.diagnostics)
        out.append(p)
    }
    if !o.has("path") { ctx.diagnostics.error(o.location, "missing required key `path`") }
    return (out, out.contains { $0.contains("{") })
}
