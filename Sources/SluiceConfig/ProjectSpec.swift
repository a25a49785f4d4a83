import Foundation
import SluiceCore

/// Where warehouse tables live.
public struct TargetSpec: Sendable {
    public enum Kind: String, Sendable, CaseIterable { case sqlite, bigquery }
    public var name: String
    public var kind: Kind
    /// `sqlite`: the database file (relative to the project root).
    public var path: String?
    /// `bigquery`: project, dataset, location, credentials, endpoint, as written.
    public var settings: [String: String]
    public var location: SourceLocation

    public init(name: String, kind: Kind, path: String?, settings: [String: String], location: SourceLocation) {
        self.name = name
        self.kind = kind
        self.path = path
        self.settings = settings
        self.location = location
    }
}

/// `sluice.yml`: targets and the state store.
public struct ProjectSpec: Sendable {
    public var file: String
    public var defaultTarget: String
    public var targets: [String: TargetSpec]
    public var statePath: String

    /// The settings used when a project has no `sluice.yml`.
    public static func defaults(file: String = "sluice.yml") -> ProjectSpec {
        let loc = SourceLocation(file: file, line: 1, column: 1)
        return ProjectSpec(file: file, defaultTarget: "local",
                           targets: ["local": TargetSpec(name: "local", kind: .sqlite, path: ".sluice/warehouse.sqlite", settings: [:], location: loc)],
                           statePath: ".sluice/state.sqlite")
    }

    public static func load(path: String, displayPath: String, diagnostics: DiagnosticCollector) -> ProjectSpec? {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            diagnostics.error(SourceLocation(file: displayPath, line: 1, column: 1), "cannot read project file")
            return nil
        }
        return parse(text: text, file: displayPath, diagnostics: diagnostics)
    }

    /// The text settings of a `bigquery` target (SluiceBigQuery's `BigQuerySettings` reads them).
    public static let bigQueryTextKeys: [String] = ["project", "dataset", "location", "credentials", "endpoint"]
    /// The numeric streaming knobs of a `bigquery` target and their ranges, checked here (at the
    /// key's line and column) so that `validate` reports a bad value before any run.
    public static let bigQueryNumbers: [String: ClosedRange<Int>] = [
        "max_rows": 1...50_000, "max_bytes": 1_000...10_000_000, "flush_ms": 1...1_000, "max_in_flight": 1...64,
        "buffer_rows": 1...100_000_000, "drain_timeout_s": 0...86_400, "retry_max_ms": 10...600_000,
        "request_timeout_s": 1...3_600,
    ]
    /// Every key a `bigquery` target accepts.
    public static var bigQueryKeys: Set<String> {
        Set(bigQueryTextKeys).union(bigQueryNumbers.keys).union(["allow_new_columns"])
    }

    public static func parse(text: String, file: String, diagnostics: DiagnosticCollector) -> ProjectSpec? {
        let root: ConfigNode
        do {
            guard let node = try ConfigNode.parse(yaml: text, file: file) else { return defaults(file: file) }
            root = node
        } catch {
            for d in error.diagnostics { diagnostics.error(d.location, d.message) }
            return nil
        }
        guard var o = Options(root, what: "sluice.yml", diagnostics: diagnostics) else { return nil }
        var spec = defaults(file: file)
        if let t = o.string("default_target") { spec.defaultTarget = t }
        if let targets = o.node("targets") {
            if let entries = targets.entries {
                spec.targets = [:]
                for entry in entries {
                    guard var to = Options(entry.value, what: "target `\(entry.key)`", diagnostics: diagnostics) else { continue }
                    guard let kind = to.oneOf("kind", TargetSpec.Kind.self) else {
                        if !to.has("kind") { diagnostics.error(entry.value.location, "target `\(entry.key)` needs `kind` (sqlite or bigquery)") }
                        to.finish(allowed: Set(["path"]).union(bigQueryKeys))
                        continue
                    }
                    var target = TargetSpec(name: entry.key, kind: kind, path: nil, settings: [:], location: entry.keyLocation)
                    switch kind {
                    case .sqlite:
                        target.path = to.string("path", required: true)
                        to.finish()
                    case .bigquery:
                        for key in bigQueryTextKeys { if let v = to.string(key) { target.settings[key] = v } }
                        for (key, range) in bigQueryNumbers.sorted(by: { $0.key < $1.key }) {
                            if let n = to.int(key, range: range) { target.settings[key] = String(n) }
                        }
                        if let b = to.bool("allow_new_columns") { target.settings["allow_new_columns"] = String(b) }
                        for key in ["project", "dataset"] where target.settings[key] == nil {
                            diagnostics.error(entry.value.location, "bigquery target `\(entry.key)` needs `\(key)`")
                        }
                        to.finish()
                    }
                    spec.targets[entry.key] = target
                }
            } else {
                diagnostics.error(targets.location, "`targets` must be a mapping of target names")
            }
        }
        if let state = o.node("state"), var so = Options(state, what: "`state`", diagnostics: diagnostics) {
            if let kind = so.string("kind"), kind != "sqlite" {
                diagnostics.error(so.node("kind")!.location, "state store kind `\(kind)` is not supported; use `sqlite`")
            }
            if let p = so.string("path", required: true) { spec.statePath = p }
            so.finish()
        }
        if spec.targets[spec.defaultTarget] == nil {
            diagnostics.error(o.node("default_target")?.location ?? root.location, "default target `\(spec.defaultTarget)` is not defined in `targets`")
        }
        o.finish()
        return spec
    }
}
