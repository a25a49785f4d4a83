import SluiceConfig
import SluiceCore
import SluiceDumps

/// Extracts rows of table files: CSV files with a header (`csv`) and one table of
/// PostgreSQL plain-format dumps (`pg_dump`: COPY blocks or INSERT statements). Values
/// are strings (NULL as null); the schema coerces them. Files are globbed by partition
/// and read whole once: a file whose identity (first line) was read completely is not
/// read again. A row that cannot be read is a dead letter (`bad_row`) with its line.
public struct TableFileExtractor: Extractor {
    public enum Format: Sendable {
        case csv(CSVFileReader.Options)
        case pgDump(table: String)
    }

    public var patterns: [String]
    public var format: Format

    public func open(_ context: RunContext) throws -> any RecordSource {
        var files: [String] = []
        for pattern in patterns {
            for file in globFiles(context.inputPath(context.partition.expand(pattern))) where !files.contains(file) { files.append(file) }
        }
        return TableFileSource(files: files, root: context.projectRoot, format: format, checkpoints: try context.checkpoints())
    }

    public static func register(into registry: inout StageRegistry) {        registry.extractor("csv") { o, ctx in
            let (paths, selects) = pathPatterns(&o, ctx)
            var options = CSVFileReader.Options()
            if let d = o.string("delimiter") {
                let scalar: Unicode.Scalar? = d == "\\t" ? "\t" : (d.unicodeScalars.count == 1 ? d.unicodeScalars.first : nil)
                if let scalar, scalar.isASCII, scalar != "\"", scalar != "\n", scalar != "\r" { options.delimiter = scalar }
                else { ctx.diagnostics.error(o.node("delimiter")!.location, "`delimiter` must be one ASCII character other than a quote or newline") }
            }
            options.nullText = o.string("null")
            o.finish()
            guard !paths.isEmpty else { return nil }
            return BuiltExtractor(extractor: TableFileExtractor(patterns: paths, format: .csv(options)), pathSelectsPartition: selects)
        }
        registry.extractor("pg_dump") { o, ctx in
            let (paths, selects) = pathPatterns(&o, ctx)
            let table = o.string("table", required: true)
            if let table, PgTableName(parsing: table) == nil { ctx.diagnostics.error(o.node("table")!.location, "`\(table)` is not a table name") }
            o.finish()
            guard !paths.isEmpty, let table else { return nil }
            return BuiltExtractor(extractor: TableFileExtractor(patterns: paths, format: .pgDump(table: table)), pathSelectsPartition: selects)
        }
    }
}

final class TableFileSource: RecordSource {
    private var files: [String]
    private let root: String
    private let format: TableFileExtractor.Format
    private let checkpoints: [String: SourceCheckpoint]
    private var next: (() throws -> (columns: [String], values: [String?], line: Int, offset: Int64)?)?
    private var current: InputFile?
    private var lastLine = 0
    private var lastOffset: Int64 = 0

    init(files: [String], root: String, format: TableFileExtractor.Format, checkpoints: [String: SourceCheckpoint]) {
        self.files = files.reversed()
        self.root = root.hasSuffix("/") ? root : root + "/"
        self.format = format
        self.checkpoints = checkpoints
    }

    func next(limit: Int) throws -> RecordBatch? {
        var batch = RecordBatch()
        var progressed = false
        while batch.records.count + batch.deadLetters.count < limit {
            if next == nil {
                guard let path = files.popLast() else { break }
                let display = path.hasPrefix(root) ? String(path.dropFirst(root.count)) : path
                do {
                    let file = try InputFile.inspect(path: path, display: display)
                    guard file.settled, let id = file.identity, checkpoints[id]?.complete != true else { continue }
                    current = file
                    lastLine = 0
                    lastOffset = 0
                    switch format {
                    case .csv(let options):
                        let it = try CSVFileReader(path: path, options: options).makeIterator()
                        next = { [display] in
                            guard let r = try it.next() else { return nil }
                            switch r {
                            case .success(let row): return (row.columns, row.values, row.line, row.offset)
                            case .failure(let e): throw RowFailure(position: SourcePosition(file: display, line: e.line, offset: e.offset), message: e.message)
                            }
                        }
                    case .pgDump(let table):
                        let it = try PgDumpReader(path: path, table: table).makeIterator()
                        next = { [display] in
                            guard let r = try it.next() else { return nil }
                            switch r {
                            case .success(let row): return (row.columns, row.values, row.line, row.offset)
                            case .failure(let e): throw RowFailure(position: SourcePosition(file: display, line: e.line, offset: e.offset), message: e.message)
                            }
                        }
                    }
                } catch {
                    batch.deadLetters.append(DeadLetter(kind: .readError, position: SourcePosition(file: display, line: 0), message: "\(error)"))
                    continue
                }
            }
            guard let read = next, let file = current, let id = file.identity else { break }
            progressed = true
            do {
                if let row = try read() {
                    var fields = Fields()
                    fields.reserveCapacity(row.columns.count)
                    for (name, value) in zip(row.columns, row.values) { fields.appendUnchecked(name, value.map(Value.string) ?? .null) }
                    batch.records.append(Record(fields: fields, position: SourcePosition(file: file.display, line: row.line, offset: row.offset, fileID: id)))
                    lastLine = row.line
                    lastOffset = row.offset
                } else {
                    batch.checkpoints.append(SourceCheckpoint(fileID: id, path: file.display, offset: file.size, line: lastLine, complete: true))
                    next = nil
                    current = nil
                }
            } catch let failure as RowFailure {
                var position = failure.position
                position.fileID = id
                batch.deadLetters.append(DeadLetter(kind: .badRow, position: position, message: failure.message))
            } catch {
                // The rest of the file cannot be read.
                batch.deadLetters.append(DeadLetter(kind: .readError, position: SourcePosition(file: file.display, line: lastLine + 1, fileID: id), message: "\(error)"))
                batch.checkpoints.append(SourceCheckpoint(fileID: id, path: file.display, offset: file.size, line: lastLine, complete: true))
                next = nil
                current = nil
            }
        }
        return progressed || !batch.isEmpty ? batch : nil
    }
}

struct RowFailure: Error {
    var position: SourcePosition
    var message: String
}
