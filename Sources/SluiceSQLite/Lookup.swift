import Foundation
import GRDB
import SluiceConfig
import SluiceCore
import SluiceDumps

/// `lookup`: joins each record with a row of a table from a PostgreSQL dump, a CSV file
/// or a SQLite database, by a key, adding chosen columns. The table is indexed once into
/// a SQLite file under `.sluice/lookup/` (named after the source's path, size and
/// modification time, so a changed source is indexed again), so tables larger than
/// memory work. A record without a match is kept with nulls, dropped (counted as
/// filtered) or made a dead letter, as `missing` says.
public struct Lookup: Transformer {
    public enum Source: Sendable {
        case pgDump(path: String, table: String)
        case csv(path: String)
        case sqlite(path: String, table: String)
    }
    public enum Missing: String, Sendable, CaseIterable { case keep, drop, dead_letter }

    public var source: Source
    public var keyColumn: String
    public var on: FieldPath
    /// Target field → table column.
    public var columns: [(String, String)]
    public var missing: Missing

    /// The index opened by an earlier batch (a run opens it once, not once a batch).
    let opened = OpenedIndex()

    public func apply(_ batch: inout RecordBatch, context: RunContext) throws {
        let index = try opened.index(source: source, keyColumn: keyColumn, columns: columns.map(\.1), context: context)
        // Each record's key, read once; the table asked once per distinct key.
        var reader = PathReader(on)
        let keys: [String?] = batch.records.indices.map { i in
            reader.value(in: batch.records[i].fields).flatMap { $0.isNull ? nil : ($0.stringValue ?? JSONWriter.string($0)) }
        }
        let found = try index.find(Array(Set(keys.lazy.compactMap { $0 })))
        // In place: a record copied out of the batch and changed was a copy of all its
        // fields (most of a lookup's time). The kept records move up over the others, in
        // their order.
        var kept = 0
        for i in batch.records.indices {
            if let key = keys[i], let row = found[key] {
                for ((target, _), value) in zip(columns, row) { batch.records[i].fields[target] = value.map(Value.string) ?? .null }
            } else {
                switch missing {
                case .keep:
                    for (target, _) in columns { batch.records[i].fields[target] = .null }
                case .drop:
                    batch.filtered += 1
                    continue
                case .dead_letter:
                    batch.deadLetters.append(DeadLetter(kind: .transform, position: batch.records[i].position,
                                                        message: "no row in the lookup table for field \(on)", raw: batch.records[i].raw))
                    continue
                }
            }
            if kept != i { batch.records.swapAt(kept, i) }
            kept += 1
        }
        batch.records.removeLast(batch.records.count - kept)
    }

    /// The lookup's index, kept from batch to batch while its source is the same file
    /// (the same size and modification time; `LookupIndex.file`).
    final class OpenedIndex: @unchecked Sendable {
        // `file` and `index` are only read and written under `lock`.
        private let lock = Lock()
        private var file: String?
        private var index: LookupIndex?

        func index(source: Source, keyColumn: String, columns: [String], context: RunContext) throws -> LookupIndex {
            let (path, file) = try LookupIndex.file(source: source, keyColumn: keyColumn, columns: columns, context: context)
            return try lock.withLock {
                if let index, self.file == file { return index }
                let index = try LookupIndex.open(source: source, path: path, file: file, keyColumn: keyColumn, columns: columns)
                (self.file, self.index) = (file, index)
                return index
            }
        }
    }

    public static func register(into registry: inout StageRegistry) {
        registry.transformer("lookup") { o, ctx in
            var source: Source?
            if let n = o.node("from"), var so = Options(n, what: "`from`", diagnostics: ctx.diagnostics) {
                let kind = so.string("kind", required: true)
                let path = so.string("path", required: true)
                let table = so.string("table")
                so.finish()
                if let path, !FileManager.default.fileExists(atPath: ctx.absolute(path)) {
                    ctx.diagnostics.error(n.location, "lookup source `\(path)` does not exist")
                }
                switch (kind, path, table) {
                case ("pg_dump", let p?, let t?): source = .pgDump(path: p, table: t)
                case ("sqlite", let p?, let t?): source = .sqlite(path: p, table: t)
                case ("csv", let p?, _): source = .csv(path: p)
                case (let k?, _, nil) where k == "pg_dump" || k == "sqlite":
                    ctx.diagnostics.error(n.location, "a \(k) lookup source needs `table`")
                case (let k?, _, _) where !["pg_dump", "sqlite", "csv"].contains(k):
                    ctx.diagnostics.error(n.location, "lookup source kind must be pg_dump, sqlite or csv")
                default: break
                }
            } else if !o.has("from") {
                ctx.diagnostics.error(o.location, "missing required key `from`")
            }
            let key = o.string("key", required: true)
            let on = o.path("on", required: true)
            var columns: [(String, String)] = []
            if let n = o.node("columns") {
                if let entries = n.entries {
                    for e in entries { if let c = e.value.scalar { columns.append((e.key, c)) } }
                } else {
                    for (c, _) in o.stringList("columns") ?? [] { columns.append((c, c)) }
                }
            } else {
                ctx.diagnostics.error(o.location, "missing required key `columns`")
            }
            let missing = o.oneOf("missing", Missing.self) ?? .keep
            o.finish()
            guard let source, let key, let on, !columns.isEmpty else { return nil }
            return BuiltTransformer(transformer: Lookup(source: source, keyColumn: key, on: on, columns: columns, missing: missing),
                                    effects: [.add(columns.map(\.0))])
        }
    }
}

/// A lookup table indexed in SQLite.
final class LookupIndex: Sendable {
    let queue: DatabaseQueue
    let columns: Int

    init(queue: DatabaseQueue, columns: Int) {
        self.queue = queue
        self.columns = columns
    }

    func find(_ keys: [String]) throws -> [String: [String?]] {
        try queue.read { db in
            let statement = try db.cachedStatement(sql: "SELECT * FROM t WHERE k = ?")
            var out: [String: [String?]] = [:]
            for key in keys {
                if let row = try GRDB.Row.fetchOne(statement, arguments: [key]) {
                    out[key] = (1...columns).map { row[$0] }
                }
            }
            return out
        }
    }

    /// The source's path, and the index file of its present content: named after the
    /// source's path, size and modification time, and the columns indexed.
    static func file(source: Lookup.Source, keyColumn: String, columns: [String], context: RunContext) throws -> (path: String, file: String) {
        let path: String
        switch source {
        case .pgDump(let p, _), .csv(let p), .sqlite(let p, _): path = context.inputPath(p)
        }
        var st = stat()
        guard stat(path, &st) == 0 else { throw SQLiteStoreError(path: path, detail: "lookup source does not exist") }
        let stamp = "\(source)|\(keyColumn)|\(columns)|\(st.st_size)|\(st.st_mtim.tv_sec)|\(st.st_mtim.tv_nsec)"
        let name = ShortDigest.hex(Array(stamp.utf8))
        return (path, context.outputPath(".sluice/lookup") + "/" + name + ".sqlite")
    }

    /// Opens the index `file` of the source at `path`, building it first if it is not there.
    static func open(source: Lookup.Source, path: String, file: String, keyColumn: String, columns: [String]) throws -> LookupIndex {
        try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        if !FileManager.default.fileExists(atPath: file) {
            let temp = file + ".building-\(getpid())"
            try? FileManager.default.removeItem(atPath: temp)
            let queue = try DatabaseQueue(path: temp)
            try queue.write { db in
                let cols = (0..<columns.count).map { ", c\($0) TEXT" }.joined()
                try db.execute(sql: "CREATE TABLE t (k TEXT PRIMARY KEY\(cols)) WITHOUT ROWID")
                let insert = try db.makeStatement(sql: "INSERT OR IGNORE INTO t VALUES (?\(String(repeating: ", ?", count: columns.count)))")
                try rows(source: source, path: path) { names, values in
                    guard let k = names.firstIndex(of: keyColumn) else {
                        throw SQLiteStoreError(path: path, detail: "lookup table has no column \(keyColumn)")
                    }
                    guard let key = values[k] else { return }
                    var args: [(any DatabaseValueConvertible)?] = [key]
                    for c in columns {
                        guard let i = names.firstIndex(of: c) else { throw SQLiteStoreError(path: path, detail: "lookup table has no column \(c)") }
                        args.append(values[i])
                    }
                    try insert.execute(arguments: StatementArguments(args))
                }
            }
            try queue.close()
            try FileManager.default.moveItem(atPath: temp, toPath: file)
        }
        return LookupIndex(queue: try DatabaseQueue(path: file), columns: columns.count)
    }

    /// Streams the source's rows: column names and values.
    static func rows(source: Lookup.Source, path: String, _ body: ([String], [String?]) throws -> Void) throws {
        switch source {
        case .pgDump(_, let table):
            let it = try PgDumpReader(path: path, table: table).makeIterator()
            while let r = try it.next() { if case .success(let row) = r { try body(row.columns, row.values) } }
        case .csv:
            let it = try CSVFileReader(path: path).makeIterator()
            while let r = try it.next() { if case .success(let row) = r { try body(row.columns, row.values) } }
        case .sqlite(_, let table):
            let db = try DatabaseQueue(path: path, configuration: { var c = Configuration(); c.readonly = true; return c }())
            try db.read { db in
                let cursor = try GRDB.Row.fetchCursor(db, sql: "SELECT * FROM \(quote(table))")
                while let row = try cursor.next() {
                    let names = Array(row.columnNames)
                    let values: [String?] = (0..<row.count).map { i in
                        let v: DatabaseValue = row[i]
                        switch v.storage {
                        case .null: return nil
                        case .int64(let n): return String(n)
                        case .double(let d): return JSONWriter.formatDouble(d)
                        case .string(let s): return s
                        case .blob(let b): return Base64.encode([UInt8](b))
                        }
                    }
                    try body(names, values)
                }
            }
        }
    }
}
