import SluiceCore

/// Schema files and BigQuery table schemas: to JSON, and their differences.
public enum TableSchemas {
    static func json(_ field: SchemaField) -> Value {
        var f = Fields()
        f.appendUnchecked("name", .string(field.name))
        f.appendUnchecked("type", .string(field.type.rawValue))
        f.appendUnchecked("mode", .string(field.mode.rawValue))
        if !field.fields.isEmpty { f.appendUnchecked("fields", .array(field.fields.map(json))) }
        if let d = field.description { f.appendUnchecked("description", .string(d)) }
        return .object(f)
    }

    /// A table's `schema.fields` as sluice reads them (unknown types kept by name).
    struct Remote: Equatable {
        var name: String
        var type: String
        var mode: String
        var fields: [Remote]
        var json: Value
    }

    static func remote(_ table: Value) -> [Remote] {
        guard case .object(let t) = table, case .object(let s)? = t["schema"], case .array(let fs)? = s["fields"] else { return [] }
        return fs.compactMap(remoteField)
    }

    static func remoteField(_ v: Value) -> Remote? {
        guard case .object(let o) = v, let name = o["name"]?.stringValue else { return nil }
        let type = o["type"]?.stringValue ?? "STRING"
        var sub: [Remote] = []
        if case .array(let fs)? = o["fields"] { sub = fs.compactMap(remoteField) }
        return Remote(name: name, type: SchemaField.FieldType(name: type)?.rawValue ?? type.uppercased(),
                      mode: (o["mode"]?.stringValue ?? "NULLABLE").uppercased(), fields: sub, json: v)
    }

    public struct Comparison: Sendable, Equatable {
        /// Columns of the file that the table lacks (top level).
        public var missing: [SchemaField]
        /// Differences that no column addition can fix, as sentences.
        public var conflicts: [String]
    }

    /// Compares the table's schema (`remote`) with the file's. Extra NULLABLE columns of
    /// the table are fine (rows leave them NULL); extra REQUIRED ones are a conflict.
    static func compare(file: [SchemaField], remote: [Remote], prefix: String = "") -> Comparison {
        var out = Comparison(missing: [], conflicts: [])
        for f in file {
            let path = prefix + f.name
            guard let r = remote.first(where: { $0.name.lowercased() == f.name.lowercased() }) else {
                if prefix.isEmpty { out.missing.append(f) } else { out.conflicts.append("column \(path) is missing in the table") }
                continue
            }
            if r.type != f.type.rawValue {
                out.conflicts.append("column \(path) is \(r.type) in the table, \(f.type.rawValue) in the schema file")
            } else if r.mode != f.mode.rawValue, !(r.mode == "NULLABLE" && f.mode == .required) {
                out.conflicts.append("column \(path) is \(r.mode) in the table, \(f.mode.rawValue) in the schema file")
            }
            if f.type == .record, r.type == "RECORD" {
                let sub = compare(file: f.fields, remote: r.fields, prefix: path + ".")
                out.conflicts += sub.conflicts
                out.conflicts += sub.missing.map { "column \(path).\($0.name) is missing in the table" }
            }
        }
        for r in remote where r.mode == "REQUIRED" && !file.contains(where: { $0.name.lowercased() == r.name.lowercased() }) {
            out.conflicts.append("column \(prefix + r.name) is REQUIRED in the table and not in the schema file")
        }
        return out
    }

    /// Makes the table match the schema file: creates it (day partitions on
    /// `partitionColumn`), or checks it and, when allowed, adds the missing columns as NULLABLE.
    public static func prepare(api: BigQueryAPI, table: String, schema: TableSchema, schemaFile: String,
                               partitionColumn: String?) async throws(BigQueryError) {
        try await api.ensureDataset()
        guard let existing = try await api.getTable(table) else {
            try await api.insertTable(table, schema: schema, partitionColumn: partitionColumn)
            return
        }
        let remote = remote(existing)
        let comparison = compare(file: schema.fields, remote: remote)
        if !comparison.conflicts.isEmpty {
            throw BigQueryError("table \(api.tableName(table)) does not match \(schemaFile): " + comparison.conflicts.joined(separator: "; "))
        }
        guard !comparison.missing.isEmpty else { return }
        let names = comparison.missing.map(\.name).joined(separator: ", ")
        guard api.settings.allowNewColumns else {
            throw BigQueryError("table \(api.tableName(table)) lacks columns \(names) of \(schemaFile); add them, or set `allow_new_columns: true` on the target to add them as NULLABLE")
        }
        let added = comparison.missing.map { f -> Value in
            var n = f
            if n.mode == .required { n.mode = .nullable }
            return json(n)
        }
        try await api.patchSchema(table, fields: remote.map(\.json) + added)
    }
}
