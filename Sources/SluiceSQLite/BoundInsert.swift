import GRDB
import GRDBSQLite
import SluiceCore

/// Values bound to a prepared statement straight through SQLite's C API, for bulk inserts
/// (the store's window events and ledger keys, the local warehouse's rows: hundreds of
/// values per statement, a million rows a run). Through GRDB each value became an
/// existential, then a `DatabaseValue`, in an array of arguments (~4% of a 1M-line run's
/// CPU); here an integer is bound as an integer, and a string's or a blob's bytes are
/// copied into the binder's own buffers (`BindBytes`) and bound from there.
struct SQLiteBinder {
    fileprivate let statement: SQLiteStatement
    fileprivate var index: Int32 = 1
    fileprivate var code = SQLITE_OK
    fileprivate var bytes = BindBytes()

    mutating func bind(_ value: Int64) {
        if code == SQLITE_OK { code = sqlite3_bind_int64(statement, index, value) }
        index += 1
    }

    mutating func bind(_ value: String) {
        var value = value
        value.withUTF8 { bind(text: UnsafeRawBufferPointer($0)) }
    }

    mutating func bind(double value: Double) {
        if code == SQLITE_OK { code = sqlite3_bind_double(statement, index, value) }
        index += 1
    }

    mutating func bindNull() {
        if code == SQLITE_OK { code = sqlite3_bind_null(statement, index) }
        index += 1
    }

    /// UTF-8 bytes as a text (copied into the binder's chunks; empty: an empty text, not
    /// NULL, bound from a literal: a nil pointer would bind NULL).
    mutating func bind(text: UnsafeRawBufferPointer) {
        if code == SQLITE_OK {
            if text.isEmpty {
                code = sqlite3_bind_text(statement, index, "", 0, sqliteTransient)
            } else {
                let (p, destructor) = bytes.keep(text)
                code = sqlite3_bind_text(statement, index, p.assumingMemoryBound(to: CChar.self), Int32(text.count), destructor)
            }
        }
        index += 1
    }

    /// A record key as the store keeps it (`LedgerKeys.stored`): the 16 bytes of sluice's
    /// own keys, the text of any other.
    mutating func bind(recordKey key: String) {
        bind(recordKey: key, bits: RecordKeyBits(key))
    }

    /// `bind(recordKey:)` with the key's bits read already (`WindowEvent.recordKeyBits`).
    mutating func bind(recordKey key: String, bits: RecordKeyBits?) {
        if let bits { bind(bits) } else { bind(key) }
    }

    /// A 16-byte blob of two big-endian halves (a record key's bits).
    mutating func bind(_ bits: RecordKeyBits) {
        bits.withBytes { bind(blob: $0) }
    }
}

extension SQLiteBinder {
    /// Bytes as a blob (copied into the binder's chunks; an empty buffer binds an empty blob, not NULL).
    mutating func bind(blob: UnsafeRawBufferPointer) {
        if code == SQLITE_OK {
            if blob.isEmpty {
                code = sqlite3_bind_zeroblob(statement, index, 0)
            } else {
                let (p, destructor) = bytes.keep(blob)
                code = sqlite3_bind_blob(statement, index, p, Int32(blob.count), destructor)
            }
        }
        index += 1
    }
}

/// SQLite's SQLITE_TRANSIENT: it copies the bytes before the call returns.
private let sqliteTransient = unsafeBitCast(OpaquePointer(bitPattern: -1), to: sqlite3_destructor_type.self)

/// Copies of the texts and blobs bound in one execution of a statement, which SQLite reads
/// where they lie (SQLITE_STATIC) until the execution's end clears the bindings.
///
/// With SQLITE_TRANSIENT, SQLite made its own copy of each: a `malloc` a value (a window
/// event's key and record key, a ledger key: ~2 of a 1M-line run's ~21 allocations a
/// record), freed when the parameter was bound again. Here the copies go into chunks of
/// 16 KiB, one or two a statement of hundreds of rows; a value larger than a quarter
/// of a chunk is left to SQLite to copy.
struct BindBytes {
    static let chunkSize = 16 * 1024
    private var chunks: [UnsafeMutableRawPointer] = []
    private var next: UnsafeMutableRawPointer?
    private var left = 0

    /// Where `b` (not empty) is to be bound from, and the destructor to bind it with.
    mutating func keep(_ b: UnsafeRawBufferPointer) -> (UnsafeRawPointer, sqlite3_destructor_type?) {
        guard b.count <= Self.chunkSize / 4 else { return (b.baseAddress!, sqliteTransient) }
        if b.count > left {
            let chunk = UnsafeMutableRawPointer.allocate(byteCount: Self.chunkSize, alignment: 16)
            chunks.append(chunk)
            next = chunk
            left = Self.chunkSize
        }
        let p = next!
        p.copyMemory(from: b.baseAddress!, byteCount: b.count)
        next = p + b.count
        left -= b.count
        return (UnsafeRawPointer(p), nil) // nil: SQLITE_STATIC
    }

    var isEmpty: Bool { chunks.isEmpty }

    /// Frees the copies: only once no parameter of the statement is bound to them.
    mutating func release() {
        for chunk in chunks { chunk.deallocate() }
        chunks = []
        next = nil
        left = 0
    }
}

extension Statement {
    /// Runs the statement (an INSERT, UPDATE or DELETE: rows it returns are skipped) with
    /// every parameter bound by `bind`, in order. Must be called inside the transaction
    /// of a `Database` write (the store's bulk writes are). Errors are GRDB's
    /// `DatabaseError`, naming the statement's SQL, never the values.
    func executeBound(_ db: Database, _ bind: (inout SQLiteBinder) -> Void) throws {
        try forEachRow(db, bind: bind) { _ in true }
    }

    /// Runs a query with its parameters bound by `bind` and hands each row to `row` as
    /// the C statement (read its columns with `sqlite3_column_*`, valid until `row`
    /// returns); `row` returns false to stop. For scans of many rows (the ledger's keys
    /// into a filter): through GRDB each row's blob became a `Data`, an allocation a key.
    func forEachRow(_ db: Database, bind: (inout SQLiteBinder) -> Void, _ row: (SQLiteStatement) throws -> Bool) throws {
        let s = sqliteStatement
        var code = sqlite3_reset(s)
        var binder = SQLiteBinder(statement: s)
        if code == SQLITE_OK {
            bind(&binder)
            code = binder.code
            if code == SQLITE_OK, binder.index - 1 != sqlite3_bind_parameter_count(s) { code = SQLITE_RANGE }
        }
        defer {
            sqlite3_reset(s) // no statement stays active between uses
            // No parameter is left bound to the copies that are freed.
            if !binder.bytes.isEmpty {
                sqlite3_clear_bindings(s)
                binder.bytes.release()
            }
        }
        while code == SQLITE_OK {
            let step = sqlite3_step(s)
            if step == SQLITE_DONE { break }
            guard step == SQLITE_ROW else { code = step; break }
            if try !row(s) { break }
        }
        guard code == SQLITE_OK else {
            // The message is read before the reset (the deferred one) can clear it.
            throw DatabaseError(resultCode: ResultCode(rawValue: code), message: String(cString: sqlite3_errmsg(db.sqliteConnection)), sql: sql)
        }
    }
}
