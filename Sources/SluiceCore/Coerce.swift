/// Why a record does not fit a table schema. Names the column and the problem, never
/// the value.
public struct CoercionError: Error, Sendable, Hashable, CustomStringConvertible {
    public var column: String
    public var problem: String
    public var description: String { "column \(column): \(problem)" }
}

/// Coerces records to a table schema, following what BigQuery's streaming inserts
/// accept. A value that cannot be represented in its column's type is an error, never
/// silently changed. The normalized forms (`docs/types.md`):
///
/// - STRING: strings as they are; numbers and booleans as their JSON text.
/// - INTEGER: integers; integral floats and decimal strings within Int64.
/// - FLOAT: numbers; numeric strings (including `NaN`, `Infinity`).
/// - NUMERIC / BIGNUMERIC: a canonical decimal string within the type's precision and scale.
/// - BOOLEAN: booleans; `"true"`/`"false"` in any case; `0`/`1`.
/// - TIMESTAMP: `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC, microseconds) from RFC 3339 text
///   with any offset, or epoch seconds.
/// - DATE `YYYY-MM-DD`, TIME `HH:MM:SS.ffffff`, DATETIME `YYYY-MM-DDTHH:MM:SS.ffffff`.
/// - BYTES: base64 text, validated.
/// - JSON: compact JSON text (a string is taken as JSON text and must parse).
/// - GEOGRAPHY, INTERVAL, RANGE: text as is.
/// - RECORD: an object with the sub-fields in schema order; REPEATED: an array (null is empty).
/// Fields of the record that the schema does not name are not loaded.
public struct SchemaCoercer: Sendable {
    public let schema: TableSchema
    /// The column that receives the record key, if the schema has it.
    public let keyColumn: Int?

    /// Per column, what the common cases need (`Value`s already of the column's type, or
    /// null where null is allowed), read without copying the column's `SchemaField` (its
    /// name, sub-fields and description: several retains a column, on every record).
    private let columns: [Column]
    private let names: [String]
    /// Each name's `Fields.nameBits`, worked out once.
    private let nameBits: [UInt64]

    private struct Column {
        var type: SchemaField.FieldType
        var nullable: Bool
        var plain: Bool
    }

    public init(schema: TableSchema, keyColumn: String?) {
        self.schema = schema
        self.keyColumn = keyColumn.flatMap { schema.index(of: $0) }
        columns = schema.fields.map { Column(type: $0.type, nullable: $0.mode == .nullable, plain: $0.mode != .repeated) }
        names = schema.fields.map(\.name)
        nameBits = names.map(Fields.nameBits)
    }

    public func row(for record: Record) -> Result<Row, CoercionError> {
        row(for: record, byName(record))
    }

    /// `forEachValue(of:through:...)` for a record without a projection: columns by name.
    public func forEachValue(of record: Record, _ body: (Int, Value) -> Void) -> CoercionError? {
        forEachValue(of: record, byName(record), body)
    }

    /// Each column's value by its name. Records usually hold their fields in the schema's
    /// order (a select before the load): each name is looked for where the previous one
    /// was found first.
    private func byName(_ record: Record) -> (Int) -> Value? {
        var next = 0
        return { index in
            guard let i = record.fields.index(of: names[index], bits: nameBits[index], from: next) else { return nil }
            next = i + 1
            return record.fields.storage[i].value
        }
    }

    /// For each schema column, the projection's column of that name (nil: the projection
    /// has none, the value is null).
    public func plan(_ projection: Projection) -> [Int?] {
        schema.fields.map { field in projection.columns.firstIndex { $0.name == field.name } }
    }

    /// The row of the record that `projection` would make of `record`: the same as
    /// `row(for:)` after the projection's `select`, without building the selected record.
    public func row(for record: Record, through projection: Projection, plan: [Int?], readers: inout [PathReader]) -> Result<Row, CoercionError> {
        row(for: record) { index in plan[index].map { projection.value($0, in: record.fields, reader: &readers[$0]) } }
    }

    /// The record's coerced values through `projection`, given to `body` in column order
    /// instead of gathered into a row (a sink that encodes them writes each at once). Stops
    /// at the first column that does not coerce. A column the projection takes as JSON text
    /// (`as: json`) into a STRING column is given to `json` as the value itself, whose JSON
    /// text is the column's value (an encoder writes it without making the text a string
    /// first); absent or null, it is coerced as null. (Not an optional closure: that would
    /// escape, and box what it captures.)
    public func forEachValue(of record: Record, through projection: Projection, plan: [Int?], readers: inout [PathReader],
                             json: (Int, Value) -> Void, _ body: (Int, Value) -> Void) -> CoercionError? {
        // Each value borrowed where it lies in the record (`Projection.withValue`), not
        // copied out of it: a copy is a retain and a release, on every column of every record.
        for index in columns.indices {
            if index == keyColumn {
                body(index, .string(record.key))
                continue
            }
            guard let c = plan[index] else {
                if let error = coerce(nil, index, body) { return error }
                continue
            }
            if projection.columns[c].asJSON, columns[index].plain, columns[index].type == .string {
                let present = readers[c].withValue(in: record.fields) { v -> Bool in
                    guard let v, !v.isNull else { return false }
                    json(index, v)
                    return true
                }
                // Absent or null: null, or the error of a REQUIRED column.
                if !present, let error = coerce(nil, index, body) { return error }
                continue
            }
            // The closure takes what the common case needs, not `self` (a copy of the
            // coercer, its schema's arrays retained, on every value); a value to change
            // is copied out to `coerce`.
            let column = columns[index]
            let toChange = projection.withValue(c, in: record.fields, reader: &readers[c]) { v -> Value? in
                guard Self.isUnchanged(v, column) else { return v }
                body(index, v)
                return nil
            }
            if let toChange, let error = coerce(toChange, index, body) { return error }
        }
        return nil
    }

    /// `body` of column `index`'s value made of `v`: `v` itself when it needs no change.
    @inline(__always)
    private func coerce(_ v: Value?, _ index: Int, _ body: (Int, Value) -> Void) -> CoercionError? {
        if Self.isUnchanged(v, columns[index]) {
            if let v { body(index, v) } else { body(index, .null) }
            return nil
        }
        switch changed(v, index) {
        case .success(let value): body(index, value); return nil
        case .failure(let error): return error
        }
    }

    /// `coerce` of a value that changes, apart: the column's `SchemaField` it reads was
    /// copied on every value when this was inlined.
    @inline(never)
    private func changed(_ v: Value?, _ index: Int) -> Result<Value, CoercionError> {
        Result { () throws(CoercionError) -> Value in try Self.coerce(v, to: schema.fields[index], path: names[index]) }
    }

    /// The row with each column's value from `value(index)` (nil: absent), asked in
    /// schema order for every column but the key's.
    private func row(for record: Record, _ value: (Int) -> Value?) -> Result<Row, CoercionError> {
        var values: [Value] = []
        values.reserveCapacity(columns.count)
        if let error = forEachValue(of: record, value, { _, v in values.append(v) }) { return .failure(error) }
        return .success(Row(key: record.key, position: record.position, values: values))
    }

    /// Each column's coerced value, from `value(index)` (nil: absent), in schema order (the
    /// key column's is the record key); the first column that does not coerce ends it.
    private func forEachValue(of record: Record, _ value: (Int) -> Value?, _ body: (Int, Value) -> Void) -> CoercionError? {
        for index in columns.indices {
            if index == keyColumn {
                body(index, .string(record.key))
                continue
            }
            if let error = coerce(value(index), index, body) { return error }
        }
        return nil
    }

    /// Whether `coerce` would give a value back as it is (absent: null): null in a
    /// NULLABLE column, a string in a STRING column, an integer in an INTEGER one, ...
    @inline(__always)
    private static func isUnchanged(_ value: Value?, _ column: Column) -> Bool {
        guard column.plain else { return false }
        switch value {
        case nil, .null?: return column.nullable
        case .string?: return column.type == .string
        case .int?: return column.type == .integer
        case .bool?: return column.type == .boolean
        case .double?: return column.type == .float
        default: return false
        }
    }

    public static func coerce(_ value: Value?, to field: SchemaField, path: String) throws(CoercionError) -> Value {
        let value = value ?? .null
        if field.mode == .repeated {
            switch value {
            case .null: return .array([])
            case .array(let items):
                var out: [Value] = []
                out.reserveCapacity(items.count)
                for (i, item) in items.enumerated() {
                    let itemPath = path + "[\(i)]"
                    if item.isNull { throw CoercionError(column: itemPath, problem: "null inside a REPEATED field") }
                    out.append(try coerceScalar(item, to: field, path: itemPath))
                }
                return .array(out)
            default:
                throw CoercionError(column: path, problem: "expects an array (REPEATED \(field.type.rawValue)), got \(value.typeName)")
            }
        }
        if value.isNull {
            if field.mode == .required { throw CoercionError(column: path, problem: "REQUIRED value is missing") }
            return .null
        }
        return try coerceScalar(value, to: field, path: path)
    }

    static func mismatch(_ path: String, _ field: SchemaField, _ value: Value, _ detail: String = "") -> CoercionError {
        CoercionError(column: path, problem: "expects \(field.type.rawValue), got \(value.typeName)" + (detail.isEmpty ? "" : " " + detail))
    }

    static func coerceScalar(_ value: Value, to field: SchemaField, path: String) throws(CoercionError) -> Value {
        switch field.type {
        case .string, .geography, .interval, .range:
            switch value {
            case .string: return value
            case .int, .double, .bool, .largeInteger: return .string(JSONWriter.string(value))
            case .object where field.type == .geography: return .string(JSONWriter.string(value))
            default: throw mismatch(path, field, value, "(serialize it to JSON text in a transform)")
            }
        case .integer:
            switch value {
            case .int: return value
            case .double(let d):
                guard d.rounded() == d else { throw mismatch(path, field, value, "with a fractional part") }
                guard d >= -9.223372036854775808e18, d < 9.223372036854775808e18 else {
                    throw mismatch(path, field, value, "out of the INTEGER range")
                }
                return .int(Int64(d))
            case .string(let s):
                guard let n = Int64(s.trimmingASCIISpaces()) else { throw mismatch(path, field, value, "that is not an integer") }
                return .int(n)
            case .largeInteger: throw mismatch(path, field, value, "out of the INTEGER range")
            default: throw mismatch(path, field, value)
            }
        case .float:
            switch value {
            case .double: return value
            case .int(let n): return .double(Double(n))
            case .largeInteger(let digits): return .double(Double(digits) ?? .nan)
            case .string(let s):
                let t = s.trimmingASCIISpaces()
                switch t.lowercased() {
                case "nan": return .double(.nan)
                case "infinity", "inf", "+infinity", "+inf": return .double(.infinity)
                case "-infinity", "-inf": return .double(-.infinity)
                default:
                    guard let d = Double(t), d.isFinite else { throw mismatch(path, field, value, "that is not a number") }
                    return .double(d)
                }
            default: throw mismatch(path, field, value)
            }
        case .numeric, .bignumeric:
            let text: String
            switch value {
            case .int(let n): text = String(n)
            case .largeInteger(let digits): text = digits
            case .double(let d):
                guard d.isFinite else { throw mismatch(path, field, value, "that is not finite") }
                text = JSONWriter.formatDouble(d)
            case .string(let s): text = s.trimmingASCIISpaces()
            default: throw mismatch(path, field, value)
            }
            let (maxInt, maxScale) = field.type == .numeric ? (29, 9) : (38, 38)
            guard let canonical = Decimal.canonical(text, maxIntegerDigits: maxInt, maxScale: maxScale) else {
                throw mismatch(path, field, value, "that is not a decimal within precision \(maxInt + maxScale), scale \(maxScale)")
            }
            return .string(canonical)
        case .boolean:
            switch value {
            case .bool: return value
            case .int(let n) where n == 0 || n == 1: return .bool(n == 1)
            case .string(let s):
                switch s.trimmingASCIISpaces().lowercased() {
                case "true": return .bool(true)
                case "false": return .bool(false)
                default: throw mismatch(path, field, value, "that is not true or false")
                }
            default: throw mismatch(path, field, value)
            }
        case .timestamp:
            switch value {
            case .string(let s):
                guard let micros = Timestamp.parse(s) else { throw mismatch(path, field, value, "that is not a valid timestamp") }
                return .string(Timestamp.canonical(micros, of: s))
            case .int(let n):
                let (m, o) = n.multipliedReportingOverflow(by: 1_000_000)
                guard !o, m >= Timestamp.minMicros, m <= Timestamp.maxMicros else {
                    throw mismatch(path, field, value, "out of the TIMESTAMP range")
                }
                return .string(Timestamp.format(m))
            case .double(let d):
                let m = (d * 1_000_000).rounded(.down)
                guard m.isFinite, m >= Double(Timestamp.minMicros), m <= Double(Timestamp.maxMicros) else {
                    throw mismatch(path, field, value, "out of the TIMESTAMP range")
                }
                return .string(Timestamp.format(Int64(m)))
            default: throw mismatch(path, field, value)
            }
        case .date:
            guard case .string(let s) = value, let d = CivilDate(s.trimmingASCIISpaces()) else {
                throw mismatch(path, field, value, "that is not a valid YYYY-MM-DD date")
            }
            return .string(d.description)
        case .time:
            guard case .string(let s) = value, let t = Timestamp.parseTimeOfDay(s.trimmingASCIISpaces()) else {
                throw mismatch(path, field, value, "that is not a valid HH:MM:SS time")
            }
            return .string(Timestamp.formatTime(t))
        case .datetime:
            guard case .string(let s) = value, let t = Timestamp.parseDateTime(s.trimmingASCIISpaces()) else {
                throw mismatch(path, field, value, "that is not a valid civil date-time")
            }
            return .string(Timestamp.formatCivil(t))
        case .bytes:
            guard case .string(let s) = value, let bytes = Base64.decode(s) else {
                throw mismatch(path, field, value, "that is not base64")
            }
            return .string(Base64.encode(bytes))
        case .json:
            if case .string(let s) = value {
                do {
                    return .string(JSONWriter.string(try JSONParser.parse(s)))
                } catch {
                    throw mismatch(path, field, value, "that is not JSON text")
                }
            }
            return .string(JSONWriter.string(value))
        case .record:
            guard case .object(let fields) = value else { throw mismatch(path, field, value) }
            var out = Fields()
            out.reserveCapacity(field.fields.count)
            for sub in field.fields {
                out.appendUnchecked(sub.name, try coerce(fields[sub.name], to: sub, path: path + "." + sub.name))
            }
            return .object(out)
        }
    }
}

extension String {
    func trimmingASCIISpaces() -> String {
        let u = Array(utf8)
        var a = 0, b = u.count
        while a < b, u[a] == 0x20 || u[a] == 0x09 { a += 1 }
        while b > a, u[b - 1] == 0x20 || u[b - 1] == 0x09 { b -= 1 }
        if a == 0, b == u.count { return self }
        return String(decoding: u[a..<b], as: UTF8.self)
    }
}

/// Decimal text for NUMERIC and BIGNUMERIC.
enum Decimal {
    /// `[+-]digits[.digits][e[+-]digits]` → canonical `-123.45` (no exponent, no redundant
    /// zeros), or nil when malformed or beyond the limits.
    static func canonical(_ text: String, maxIntegerDigits: Int, maxScale: Int) -> String? {
        var b = Array(text.utf8)[...]
        guard !b.isEmpty else { return nil }
        var negative = false
        if b.first == UInt8(ascii: "-") || b.first == UInt8(ascii: "+") {
            negative = b.first == UInt8(ascii: "-")
            b = b.dropFirst()
        }
        var intDigits: [UInt8] = []
        var fracDigits: [UInt8] = []
        var seenPoint = false
        var exponent = 0
        var i = b.startIndex
        while i < b.endIndex {
            let c = b[i]
            if c >= 0x30, c <= 0x39 {
                if seenPoint { fracDigits.append(c) } else { intDigits.append(c) }
            } else if c == UInt8(ascii: "."), !seenPoint {
                seenPoint = true
            } else if c == UInt8(ascii: "e") || c == UInt8(ascii: "E") {
                guard let e = Int(String(decoding: b[(i + 1)...], as: UTF8.self)), abs(e) < 1000 else { return nil }
                exponent = e
                break
            } else {
                return nil
            }
            i += 1
        }
        guard !intDigits.isEmpty || !fracDigits.isEmpty else { return nil }
        // Shift the point by the exponent.
        var all = intDigits + fracDigits
        var point = intDigits.count + exponent
        if point < 0 { all = [UInt8](repeating: 0x30, count: -point) + all; point = 0 }
        if point > all.count { all += [UInt8](repeating: 0x30, count: point - all.count) }
        var ip = Array(all[..<point])
        var fp = Array(all[point...])
        while ip.first == 0x30 { ip.removeFirst() }
        while fp.last == 0x30 { fp.removeLast() }
        guard ip.count <= maxIntegerDigits, fp.count <= maxScale else { return nil }
        if ip.isEmpty { ip = [0x30] }
        let isZero = ip == [0x30] && fp.isEmpty
        var out = (negative && !isZero) ? "-" : ""
        out += String(decoding: ip, as: UTF8.self)
        if !fp.isEmpty { out += "." + String(decoding: fp, as: UTF8.self) }
        return out
    }
}

/// Standard base64 (RFC 4648), padded or not.
public enum Base64 {
    public static func decode(_ text: String) -> [UInt8]? {
        var out: [UInt8] = []
        var acc: UInt32 = 0
        var bits = 0
        var padding = 0
        for c in text.utf8 {
            let v: UInt32
            switch c {
            case 0x41...0x5A: v = UInt32(c - 0x41)
            case 0x61...0x7A: v = UInt32(c - 0x61 + 26)
            case 0x30...0x39: v = UInt32(c - 0x30 + 52)
            case UInt8(ascii: "+"), UInt8(ascii: "-"): v = 62
            case UInt8(ascii: "/"), UInt8(ascii: "_"): v = 63
            case UInt8(ascii: "="): padding += 1; continue
            default: return nil
            }
            if padding > 0 { return nil }
            acc = acc << 6 | v
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8((acc >> UInt32(bits)) & 0xFF))
            }
        }
        guard padding <= 2, bits < 6 else { return nil }
        return out
    }

    public static func encode(_ bytes: [UInt8]) -> String {
        let table = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var out: [UInt8] = []
        var i = 0
        while i + 2 < bytes.count {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            out += [table[Int(n >> 18 & 63)], table[Int(n >> 12 & 63)], table[Int(n >> 6 & 63)], table[Int(n & 63)]]
            i += 3
        }
        let rest = bytes.count - i
        if rest == 1 {
            let n = UInt32(bytes[i]) << 16
            out += [table[Int(n >> 18 & 63)], table[Int(n >> 12 & 63)], 0x3D, 0x3D]
        } else if rest == 2 {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8
            out += [table[Int(n >> 18 & 63)], table[Int(n >> 12 & 63)], table[Int(n >> 6 & 63)], 0x3D]
        }
        return String(decoding: out, as: UTF8.self)
    }
}
