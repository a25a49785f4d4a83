import Crypto
import SluiceConfig
import SluiceCore

/// `redact`: removes the values at key paths, or replaces them with a keyed hash
/// (HMAC-SHA256 with a secret from the environment, hex) so that analysts can still
/// count distinct values without seeing them. A path component `*` matches every element
/// of an array or every member of an object (`users.*.ssn`), and a path may also be
/// written as a list of keys, Ruby style (`[:resolution_result, :context, :ssn]`).
/// The secret never appears in output, logs or error messages.
public struct Redact {
    public enum Mode: String, Sendable, CaseIterable { case remove, hash }
    // Built per batch inside `RedactStage` (the key is not Sendable, so it never crosses tasks).
    public var paths: [[String]]
    public var mode: Mode
    public var key: SymmetricKey?

    public func apply(_ batch: inout RecordBatch, context: RunContext) throws {
        for i in batch.records.indices {
            // The record's fields taken out of it, so that the objects on each path are
            // changed where they are: with a second reference held, every object on the
            // way was copied whole, for every record.
            var root = Value.object(batch.records[i].fields)
            batch.records[i].fields = Fields()
            for path in paths { redact(&root, path[...]) }
            if case .object(let f) = root { batch.records[i].fields = f }
        }
    }

    /// Redacts `path` below `value`, in place: each object or array on the way is held by
    /// one reference while it changes (taken out of `value`, and a child out of its
    /// parent), so none is copied.
    func redact(_ value: inout Value, _ path: ArraySlice<String>) {
        guard let head = path.first else { return }
        let rest = path.dropFirst()
        // Each container taken out of `value` (bound, then `value` set to null) before it
        // changes: a `switch` on `value` kept a copy of it alive, a second reference.
        if case .object(var fields) = value {
            value = .null
            if head == "*" {
                for name in fields.names { redact(&fields, name, rest) }
            } else if fields[head] != nil {
                redact(&fields, head, rest)
            }
            value = .object(fields)
        } else if case .array(var items) = value {
            value = .null
            let indices = head == "*" ? Array(items.indices) : (Int(head).map { items.indices.contains($0) ? [$0] : [] } ?? [])
            for j in indices.reversed() {
                if rest.isEmpty {
                    switch mode {
                    case .remove: items.remove(at: j)
                    case .hash: items[j] = hashed(items[j])
                    }
                } else {
                    redact(&items[j], rest)
                }
            }
            value = .array(items)
        }
    }

    /// Redacts `rest` below the field `name` (present) of `fields`, or the field itself.
    private func redact(_ fields: inout Fields, _ name: String, _ rest: ArraySlice<String>) {
        if rest.isEmpty {
            switch mode {
            case .remove: fields[name] = nil
            case .hash: fields[name] = hashed(fields[name]!)
            }
        } else {
            var child = fields[name]!
            fields[name] = .null // in place: the child's only reference is `child`
            redact(&child, rest)
            fields[name] = child
        }
    }

    /// The HMAC of a value: of its UTF-8 text for strings, of its JSON text otherwise.
    func hashed(_ value: Value) -> Value {
        guard let key, !value.isNull else { return value }
        let text = value.stringValue ?? JSONWriter.string(value)
        let mac = HMAC<SHA256>.authenticationCode(for: Array(text.utf8), using: key)
        return .string(Array(mac).map { String($0, radix: 16).leftPadded(2) }.joined())
    }

    /// Parses `a.b.*.c` or a Ruby-style key list `[:a, :b, :c]`.
    static func parsePath(_ text: String) -> [String]? {
        let t = text.trimmingCharacters(in: " ")
        if t.hasPrefix("["), t.hasSuffix("]") {
            let parts = t.dropFirst().dropLast().split(separator: ",").map {
                String($0.trimmingCharacters(in: " ").drop { $0 == ":" }).trimmingCharacters(in: "\"'")
            }
            return parts.isEmpty || parts.contains(where: \.isEmpty) ? nil : parts
        }
        return FieldPath(t)?.components
    }

    public static func register(into registry: inout StageRegistry) {
        registry.transformer("redact") { o, ctx in
            var paths: [[String]] = []
            for (p, loc) in o.stringList("paths") ?? [] {
                if let parsed = parsePath(p) { paths.append(parsed) } else { ctx.diagnostics.error(loc, "`\(p)` is not a key path") }
            }
            if !o.has("paths") { ctx.diagnostics.error(o.location, "missing required key `paths`") }
            let mode = o.oneOf("mode", Mode.self) ?? .remove
            let secretVar = o.string("secret_env")
            if mode == .hash, secretVar == nil {
                ctx.diagnostics.error(o.location, "redact with `mode: hash` needs `secret_env`: the environment variable that holds the key")
            }
            o.finish()
            guard !paths.isEmpty else { return nil }
            let top = Set(paths.filter { $0.count == 1 && $0[0] != "*" }.map { $0[0] })
            return BuiltTransformer(transformer: RedactStage(paths: paths, mode: mode, secretVariable: secretVar),
                                    effects: mode == .remove ? [.remove(Array(top))] : [])
        }
    }
}

/// The configured stage: the secret is read from the environment when the run starts.
struct RedactStage: Transformer {
    /// Depends on the batch alone: may run on the read-ahead thread.
    var isBatchLocal: Bool { true }

    var paths: [[String]]
    var mode: Redact.Mode
    var secretVariable: String?

    func apply(_ batch: inout RecordBatch, context: RunContext) throws {
        var key: SymmetricKey?
        if mode == .hash {
            guard let name = secretVariable, let secret = context.environment[name], !secret.isEmpty else {
                throw MissingSecret(variable: secretVariable ?? "")
            }
            key = SymmetricKey(data: Array(secret.utf8))
        }
        try Redact(paths: paths, mode: mode, key: key).apply(&batch, context: context)
    }
}

/// A secret named in a pipeline is not set. Names the variable, never a value.
public struct MissingSecret: Error, Sendable, CustomStringConvertible {
    public var variable: String
    public var description: String { "environment variable \(variable) (the redact key) is not set" }
}

extension String {
    func leftPadded(_ n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
    func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }
}

extension Substring {
    func trimmingCharacters(in set: String) -> String { String(self).trimmingCharacters(in: set) }
}
