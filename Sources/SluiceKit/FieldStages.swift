import SluiceConfig
import SluiceCore

/// How `copy` and `select` take a value from a path.
public struct FieldSource: Sendable {
    public enum Mode: String, Sendable, CaseIterable {
        /// The value as it is.
        case value
        /// The value serialized as compact JSON text (objects, arrays, anything).
        case json
    }
    public var path: FieldPath
    public var mode: Mode
}

/// The field stages: few and general.
///
/// - `copy`: `fields: {target: source.path}` or `{target: {from: path, as: json}}`; adds or
///   replaces top-level fields with values read from paths (absent → null).
/// - `select`: the same mapping (or a list of field names), and afterwards only those fields exist.
/// - `rename`: `fields: {old: new}`.
/// - `set`: `fields: {name: constant}` (YAML scalars: strings, numbers, booleans, null).
/// - `drop`: `fields: [name, path.inside]`.
public struct FieldStage: Transformer {
    /// Depends on the batch alone: may run on the read-ahead thread.
    public var isBatchLocal: Bool { true }

    public enum Operation: Sendable {
        case copy([(String, FieldSource)])
        case select([(String, FieldSource)])
        case rename([(String, String)])
        case set([(String, Value)])
        case drop([FieldPath])
    }

    public var operation: Operation

    public func apply(_ batch: inout RecordBatch, context: RunContext) throws {
        switch operation {
        case .copy(let mapping):
            // Every value read before any is set (a target may be another's source), into
            // one array: a copy of the record's fields kept to read from was a copy of
            // all of them once the first target was set.
            var readers = mapping.map { PathReader($0.1.path) }
            var values: [Value] = []
            values.reserveCapacity(mapping.count)
            for i in batch.records.indices {
                values.removeAll(keepingCapacity: true)
                for (m, (_, from)) in mapping.enumerated() { values.append(Self.read(from, with: &readers[m], in: batch.records[i].fields)) }
                for (m, (target, _)) in mapping.enumerated() { batch.records[i].fields[target] = values[m] }
            }
        case .select(let mapping):
            var readers = mapping.map { PathReader($0.1.path) }
            for i in batch.records.indices {
                var out = Fields()
                out.reserveCapacity(mapping.count)
                for (m, (target, from)) in mapping.enumerated() {
                    out.appendUnchecked(target, Self.read(from, with: &readers[m], in: batch.records[i].fields))
                }
                batch.records[i].fields = out
            }
        case .rename(let pairs):
            for i in batch.records.indices {
                for (old, new) in pairs {
                    if let v = batch.records[i].fields[old] {
                        batch.records[i].fields[old] = nil
                        batch.records[i].fields[new] = v
                    }
                }
            }
        case .set(let pairs):
            for i in batch.records.indices {
                for (name, value) in pairs { batch.records[i].fields[name] = value }
            }
        case .drop(let paths):
            for i in batch.records.indices {
                for path in paths { batch.records[i].fields.removeValue(at: path) }
            }
        }
    }

    static func read(_ source: FieldSource, with reader: inout PathReader, in fields: Fields) -> Value {
        Projection.value(in: fields, reader: &reader, asJSON: source.mode == .json)
    }

    /// A `select` is a projection (the run may read a sink's columns through it).
    public var projection: Projection? {
        guard case .select(let mapping) = operation else { return nil }
        return Projection(columns: mapping.map { Projection.Column(name: $0.0, path: $0.1.path, asJSON: $0.1.mode == .json) })
    }

    static func register(into registry: inout StageRegistry) {
        registry.transformer("copy") { o, ctx in
            guard let mapping = sourceMapping(&o, ctx) else { return nil }
            o.finish()
            return BuiltTransformer(transformer: FieldStage(operation: .copy(mapping)), effects: [.add(mapping.map(\.0))])
        }
        registry.transformer("select") { o, ctx in
            guard let mapping = sourceMapping(&o, ctx) else { return nil }
            o.finish()
            return BuiltTransformer(transformer: FieldStage(operation: .select(mapping)), effects: [.select(mapping.map(\.0))])
        }
        registry.transformer("rename") { o, ctx in
            guard let n = o.node("fields") else { ctx.diagnostics.error(o.location, "missing required key `fields`"); return nil }
            o.finish()
            guard let entries = n.entries else { ctx.diagnostics.error(n.location, "`fields` must map old names to new names"); return nil }
            var pairs: [(String, String)] = []
            for e in entries {
                guard let new = e.value.scalar, !e.value.isNull else { ctx.diagnostics.error(e.value.location, "the new name of `\(e.key)` must be a string"); continue }
                pairs.append((e.key, new))
            }
            return BuiltTransformer(transformer: FieldStage(operation: .rename(pairs)), effects: [.remove(pairs.map(\.0)), .add(pairs.map(\.1))])
        }
        registry.transformer("set") { o, ctx in
            guard let n = o.node("fields") else { ctx.diagnostics.error(o.location, "missing required key `fields`"); return nil }
            o.finish()
            guard let entries = n.entries else { ctx.diagnostics.error(n.location, "`fields` must map names to constants"); return nil }
            var pairs: [(String, Value)] = []
            for e in entries {
                guard case .scalar(let s, let quoted) = e.value.kind else { ctx.diagnostics.error(e.value.location, "the value of `\(e.key)` must be a constant scalar"); continue }
                pairs.append((e.key, constant(s, quoted: quoted)))
            }
            return BuiltTransformer(transformer: FieldStage(operation: .set(pairs)), effects: [.add(pairs.map(\.0))])
        }
        registry.transformer("drop") { o, ctx in
            let list = o.stringList("fields")
            if !o.has("fields") { ctx.diagnostics.error(o.location, "missing required key `fields`") }
            o.finish()
            var paths: [FieldPath] = []
            for (s, loc) in list ?? [] {
                if let p = FieldPath(s) { paths.append(p) } else { ctx.diagnostics.error(loc, "`\(s)` is not a valid field path") }
            }
            return BuiltTransformer(transformer: FieldStage(operation: .drop(paths)), effects: [.remove(paths.filter(\.isSingle).map(\.description))])
        }
    }

    /// A YAML scalar as a constant: plain `true`/`false`, `null`/`~`, integers and floats
    /// keep their type; quoted scalars are strings.
    static func constant(_ s: String, quoted: Bool) -> Value {
        if quoted { return .string(s) }
        switch s {
        case "true", "True", "TRUE": return .bool(true)
        case "false", "False", "FALSE": return .bool(false)
        case "null", "Null", "NULL", "~", "": return .null
        default:
            if let n = Int64(s) { return .int(n) }
            if let d = Double(s), s.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }) { return .double(d) }
            return .string(s)
        }
    }

    /// `fields:` as `{target: path}`, `{target: {from: path, as: json}}`, or a list of names.
    static func sourceMapping(_ o: inout Options, _ ctx: BuildContext) -> [(String, FieldSource)]? {
        guard let n = o.node("fields") else { ctx.diagnostics.error(o.location, "missing required key `fields`"); return nil }
        if let items = n.items {
            var out: [(String, FieldSource)] = []
            for item in items {
                guard let s = item.scalar, let p = FieldPath(s) else { ctx.diagnostics.error(item.location, "expected a field name"); continue }
                out.append((p.components.last!, FieldSource(path: p, mode: .value)))
            }
            return out
        }
        guard let entries = n.entries else {
            ctx.diagnostics.error(n.location, "`fields` must map target names to source paths, found \(n.typeName)")
            return nil
        }
        var out: [(String, FieldSource)] = []
        for e in entries {
            if let s = e.value.scalar, !e.value.isNull {
                guard let p = FieldPath(s) else { ctx.diagnostics.error(e.value.location, "`\(s)` is not a valid field path"); continue }
                out.append((e.key, FieldSource(path: p, mode: .value)))
            } else if var so = Options(e.value, what: "the source of `\(e.key)`", diagnostics: ctx.diagnostics) {
                let p = so.path("from", required: true)
                let mode = so.oneOf("as", FieldSource.Mode.self) ?? .value
                so.finish()
                if let p { out.append((e.key, FieldSource(path: p, mode: mode))) }
            }
        }
        return out
    }
}

extension Fields {
    /// Removes the value at a path (inside nested objects too).
    mutating func removeValue(at path: FieldPath) {
        let c = path.components
        if c.count == 1 { self[c[0]] = nil; return }
        guard case .object(var child)? = self[c[0]] else { return }
        child.removeValue(at: FieldPath(components: Array(c.dropFirst())))
        self[c[0]] = .object(child)
    }
}

/// `filter`: keeps the records whose field passes a test, drops the others (counted as
/// filtered, not dead letters). `field` is a path; exactly one test of `equals` (a
/// scalar), `in` / `not_in` (lists of scalars) or `exists` (true: present and not null).
/// A string field compares by its text; a number or boolean by its JSON text (`200`,
/// `true`); a missing or null field equals nothing, so it is dropped by `equals` and `in`
/// and kept by `not_in`.
public struct FilterStage: Transformer {
    /// Depends on the batch alone: may run on the read-ahead thread.
    public var isBatchLocal: Bool { true }

    public enum Test: Sendable {
        case equals(String)
        case oneOf(Set<String>)
        case noneOf(Set<String>)
        case exists(Bool)
    }

    public var field: FieldPath
    public var test: Test

    public func apply(_ batch: inout RecordBatch, context: RunContext) throws {
        let before = batch.records.count
        batch.records.removeAll { !keeps($0.fields.value(at: field)) }
        batch.filtered += before - batch.records.count
    }

    func keeps(_ value: Value?) -> Bool {
        let text: String?
        switch value {
        case .string(let s)?: text = s
        case .int(let n)?: text = String(n)
        case .largeInteger(let s)?: text = s
        case .double(let d)?: text = JSONWriter.formatDouble(d)
        case .bool(let b)?: text = b ? "true" : "false"
        case .array?, .object?: text = JSONWriter.string(value!)
        case .null?, nil: text = nil
        }
        switch test {
        case .equals(let s): return text == s
        case .oneOf(let set): return text.map(set.contains) ?? false
        case .noneOf(let set): return !(text.map(set.contains) ?? false)
        case .exists(let wanted): return (text != nil) == wanted
        }
    }

    static func register(into registry: inout StageRegistry) {
        registry.transformer("filter") { o, ctx in
            let field = o.path("field", required: true)
            var tests: [Test] = []
            if let n = o.node("equals") {
                if let s = n.scalar, !n.isNull { tests.append(.equals(s)) } else { ctx.diagnostics.error(n.location, "`equals` must be a scalar") }
            }
            if o.has("in") { tests.append(.oneOf(Set((o.stringList("in") ?? []).map(\.0)))) }
            if o.has("not_in") { tests.append(.noneOf(Set((o.stringList("not_in") ?? []).map(\.0)))) }
            if o.has("exists") { tests.append(.exists(o.bool("exists") ?? true)) }
            o.finish()
            guard tests.count == 1 else {
                ctx.diagnostics.error(o.location, "filter needs exactly one of `equals`, `in`, `not_in` or `exists`")
                return nil
            }
            guard let field else { return nil }
            return BuiltTransformer(transformer: FilterStage(field: field, test: tests[0]), effects: [])
        }
    }
}
