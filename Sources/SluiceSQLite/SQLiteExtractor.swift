import Foundation
import GRDB
import SluiceConfig
import SluiceCore

/// `sqlite`: the rows of a table, or of a query, of a SQLite file, read in pages (keyset
/// pagination by rowid for a table), so memory stays flat. A database is not a log: it
/// is read whole on every run, and record keys (from `key` fields, or the file and rowid)
/// keep the sinks from holding a row twice.
public struct SQLiteExtractor: Extractor {
    public var path: String
    public var table: String?
    public var query: String?

    public func open(_ context: RunContext) throws -> any RecordSource {
        let full = context.inputPath(context.partition.expand(path))
        var config = Configuration()
        config.readonly = true
        let queue: DatabaseQueue
        do {
            queue = try DatabaseQueue(path: full, configuration: config)
        } catch {
            throw SQLiteStoreError(path: path, detail: "cannot open the database to read it")
        }
        return SQLiteSource(queue: queue, display: context.partition.expand(path), table: table, query: query)
    }

    public static func register(into registry: inout StageRegistry) {
        registry.extractor("sqlite") { o, ctx in
            let path = o.string("path", required: true)
            if let path { checkPlaceholders(path, at: o.node("path")!.location, diagnostics: ctx.diagnostics) }
            let table = o.string("table")
            let query = o.string("query")
            if (table == nil) == (query == nil) { ctx.diagnostics.error(o.location, "sqlite needs one of `table` or `query`") }
            o.finish()
            guard let path, table != nil || query != nil else { return nil }
            return BuiltExtractor(extractor: SQLiteExtractor(path: path, table: table, query: query), pathSelectsPartition: path.contains("{"))
        }
    }
}

final class SQLiteSource: RecordSource {
    let queue: DatabaseQueue
    let display: String
    let table: String?
    let query: String?
    var lastRowID: Int64 = Int64.min
    var offset = 0
    var done = false

    init(queue: DatabaseQueue, display: String, table: String?, query: String?) {
        self.queue = queue
        self.display = display
        self.table = table
        self.query = query
    }

    func next(limit: Int) throws -> RecordBatch? {
        guard !done else { return nil }
        var batch = RecordBatch()
        let display = self.display
        let rows: [(Int64, Fields)] = try queue.read { db in
            let cursor: RowCursor
            if let table {
                cursor = try GRDB.Row.fetchCursor(db, sql: "SELECT rowid AS \"_sluice_rowid\", * FROM \(quote(table)) WHERE rowid > ? ORDER BY rowid LIMIT ?",
                                                  arguments: [lastRowID, limit])
            } else {
                cursor = try GRDB.Row.fetchCursor(db, sql: "SELECT * FROM (\(query!)) LIMIT ? OFFSET ?", arguments: [limit, offset])
            }
            var out: [(Int64, Fields)] = []
            var n = Int64(offset)
            while let row = try cursor.next() {
                n += 1
                var fields = Fields()
                var rowid = n
                for (i, name) in row.columnNames.enumerated() {
                    let v: DatabaseValue = row[i]
                    if table != nil, i == 0 { rowid = Int64.fromDatabaseValue(v) ?? n; continue }
                    let value: Value
                    switch v.storage {
                    case .null: value = .null
                    case .int64(let x): value = .int(x)
                    case .double(let d): value = .double(d)
                    case .string(let s): value = .string(s)
                    case .blob(let b): value = .string(Base64.encode([UInt8](b)))
                    }
                    fields.appendUnchecked(name, value)
                }
                out.append((rowid, fields))
            }
            return out
        }
        for (rowid, fields) in rows {
            offset += 1
            batch.records.append(SluiceCore.Record(fields: fields, position: SourcePosition(file: display, line: offset, offset: rowid)))
            lastRowID = rowid
        }
        if rows.count < limit { done = true }
        return rows.isEmpty ? nil : batch
    }
}
