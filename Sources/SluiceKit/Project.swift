import Foundation
import Logging
import SluiceBigQuery
import SluiceCallbacks
import SluiceConfig
import SluiceCore
import SluiceEnrich
import SluiceFiles
import SluiceSQLite

extension StageRegistry {
    /// Every stage sluice ships, by kind. Adding a stage: register it here.
    public static let builtIn: StageRegistry = {
        var r = StageRegistry()
        JSONLinesExtractor.register(into: &r)
        TableFileExtractor.register(into: &r)
        CallbackExtractor.register(into: &r)
        SQLiteExtractor.register(into: &r)
        FieldStage.register(into: &r)
        FilterStage.register(into: &r)
        RateLimit.register(into: &r)
        Redact.register(into: &r)
        EmailDomain.register(into: &r)
        GeoIP.register(into: &r)
        ASN.register(into: &r)
        ErrorCode.register(into: &r)
        Lookup.register(into: &r)
        registerWarehouse(into: &r)
        CSVLoader.register(into: &r)
        return r
    }()

    /// `warehouse`: the table lives where the target says.
    static func registerWarehouse(into r: inout StageRegistry) {
        r.loader("warehouse") { o, ctx, _ in
            let table = o.string("table", required: true)
            if let table, !SchemaFile.isValidColumnName(table) {
                ctx.diagnostics.error(o.node("table")!.location, "table name `\(table)` must be letters, digits and underscores")
            }
            let schemaPath = o.string("schema", required: true)
            let schemaLocation = o.node("schema")?.location ?? o.location
            let keyColumn = o.string("key_column") ?? "record_key"
            let partitionColumn = o.string("partition_column")
            let partitionLocation = o.node("partition_column")?.location ?? o.location
            o.finish()
            guard let table, let schemaPath, let schema = ctx.schema(schemaPath, at: schemaLocation) else { return nil }
            switch ctx.target.kind {
            case .sqlite:
                let loader = SQLiteTableLoader(schema: schema, table: table, databasePath: ctx.target.path ?? ".sluice/warehouse.sqlite",
                                               keyColumn: keyColumn)
                return BuiltLoader(loader: loader, keyColumn: keyColumn, schemaLocation: schemaLocation)
            case .bigquery:
                return bigQueryLoader(schema: schema, table: table, schemaPath: schemaPath, schemaLocation: schemaLocation, keyColumn: keyColumn,
                                      partitionColumn: partitionColumn, partitionLocation: partitionLocation, ctx: ctx)
            }
        }
    }
}

/// A sluice project: a folder with `sluice.yml`, `Pipelines/`, `Schemas/`.
public struct Project: Sendable {
    public var root: String
    public var spec: ProjectSpec
    public var registry: StageRegistry

    /// Reads `sluice.yml` in `root` (defaults when there is none).
    public static func load(root: String, registry: StageRegistry = .builtIn) throws(ConfigurationError) -> Project {
        let absoluteRoot = absolutePath(root)
        let file = RunContext.resolve("sluice.yml", in: absoluteRoot)
        var spec = ProjectSpec.defaults()
        if FileManager.default.fileExists(atPath: file) {
            let diagnostics = DiagnosticCollector()
            guard let s = ProjectSpec.load(path: file, displayPath: "sluice.yml", diagnostics: diagnostics), !diagnostics.hasErrors else {
                throw ConfigurationError(diagnostics.diagnostics)
            }
            spec = s
        }
        return Project(root: absoluteRoot, spec: spec, registry: registry)
    }

    /// A path as messages show it: relative to the project root when inside it.
    public func display(_ path: String) -> String {
        let abs = Self.absolutePath(path)
        let prefix = root.hasSuffix("/") ? root : root + "/"
        return abs.hasPrefix(prefix) ? String(abs.dropFirst(prefix.count)) : path
    }

    public static func absolutePath(_ path: String) -> String {
        let full = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        return (full as NSString).standardizingPath
    }

    public func target(named name: String?) throws(ConfigurationError) -> TargetSpec {
        let n = name ?? spec.defaultTarget
        guard let t = spec.targets[n] else {
            throw ConfigurationError([Diagnostic(SourceLocation(file: spec.file, line: 1, column: 1),
                                                 "unknown target `\(n)`; defined: \(spec.targets.keys.sorted().joined(separator: ", "))")])
        }
        return t
    }

    /// Reads and builds a pipeline; every problem is reported at once.
    public func pipeline(at path: String, target: String? = nil) throws(ConfigurationError) -> (PipelineSpec, Pipeline) {
        let diagnostics = DiagnosticCollector()
        let display = self.display(path)
        let chosen = try self.target(named: target)
        guard FileManager.default.fileExists(atPath: Self.absolutePath(path)) else {
            throw ConfigurationError([Diagnostic(SourceLocation(file: display, line: 1, column: 1), "pipeline file does not exist")])
        }
        guard let spec = PipelineSpec.load(path: Self.absolutePath(path), displayPath: display, diagnostics: diagnostics) else {
            throw ConfigurationError(diagnostics.diagnostics)
        }
        let ctx = BuildContext(projectRoot: root, pipelineFile: display, pipelineName: spec.name, project: self.spec,
                               target: chosen, diagnostics: diagnostics)
        let pipeline = PipelineBuilder(registry: registry).build(spec, ctx)
        guard let pipeline, !diagnostics.hasErrors else { throw ConfigurationError(diagnostics.diagnostics) }
        return (spec, pipeline)
    }

    public func stateStore(outputRoot: String? = nil) throws -> SQLiteStateStore {
        try SQLiteStateStore(path: RunContext.resolve(spec.statePath, in: outputRoot ?? root))
    }

    public func logger() -> Logger { Logger(label: "sluice") }
}
