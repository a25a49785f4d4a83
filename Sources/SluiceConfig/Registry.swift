import Foundation
import SluiceCore

/// What building a stage can see: the project, the pipeline, the chosen target, and
/// where to report problems.
public struct BuildContext {
    public var projectRoot: String
    public var pipelineFile: String
    public var pipelineName: String
    public var project: ProjectSpec
    public var target: TargetSpec
    public var diagnostics: DiagnosticCollector
    /// The extract's event-time field, for transforms that work on event time.
    public var eventTime: FieldPath?

    public init(projectRoot: String, pipelineFile: String, pipelineName: String, project: ProjectSpec,
                target: TargetSpec, diagnostics: DiagnosticCollector) {
        self.projectRoot = projectRoot
        self.pipelineFile = pipelineFile
        self.pipelineName = pipelineName
        self.project = project
        self.target = target
        self.diagnostics = diagnostics
    }

    public func absolute(_ path: String) -> String { RunContext.resolve(path, in: projectRoot) }

    /// Loads a schema file named in a pipeline (relative to the project root), reporting a
    /// missing file at the place that names it.
    public func schema(_ path: String, at location: SourceLocation) -> TableSchema? {
        let full = absolute(path)
        guard FileManager.default.fileExists(atPath: full) else {
            diagnostics.error(location, "schema file `\(path)` does not exist")
            return nil
        }
        return SchemaFile.load(path: full, displayPath: path, diagnostics: diagnostics)
    }
}

/// How a transform changes the set of fields of a record, for the static check that
/// every REQUIRED column of a schema is produced by some stage.
public enum FieldEffect: Sendable {
    /// After this stage, only these top-level fields exist.
    case select([String])
    case add([String])
    case remove([String])
    /// Anything may happen to the fields.
    case unknown
}

public struct BuiltExtractor {
    public var extractor: any Extractor
    /// True when the input paths themselves select the partition (a `{date}` pattern);
    /// false when the extractor reads everything and event time decides.
    public var pathSelectsPartition: Bool
    public init(extractor: any Extractor, pathSelectsPartition: Bool) {
        self.extractor = extractor
        self.pathSelectsPartition = pathSelectsPartition
    }
}

public struct BuiltTransformer {
    public var transformer: any Transformer
    public var effects: [FieldEffect]
    public init(transformer: any Transformer, effects: [FieldEffect]) {
        self.transformer = transformer
        self.effects = effects
    }
}

public struct BuiltLoader {
    public var loader: any Loader
    public var keyColumn: String?
    /// Where the stage names its schema (for messages about the schema).
    public var schemaLocation: SourceLocation
    public init(loader: any Loader, keyColumn: String?, schemaLocation: SourceLocation) {
        self.loader = loader
        self.keyColumn = keyColumn
        self.schemaLocation = schemaLocation
    }
}

/// Stage builders by `kind`. A builder reads its options (reporting problems to the
/// context's diagnostics) and returns the stage, or nil when the options are wrong.
public struct StageRegistry: Sendable {
    public typealias ExtractorBuilder = @Sendable (inout Options, BuildContext) -> BuiltExtractor?
    public typealias TransformerBuilder = @Sendable (inout Options, BuildContext) -> BuiltTransformer?
    /// Loaders also see the schema of the pipeline's first warehouse stage, for sinks
    /// (like csv) that default to it.
    public typealias LoaderBuilder = @Sendable (inout Options, BuildContext, _ defaultSchema: (TableSchema, String)?) -> BuiltLoader?

    public private(set) var extractors: [String: ExtractorBuilder] = [:]
    public private(set) var transformers: [String: TransformerBuilder] = [:]
    public private(set) var loaders: [String: LoaderBuilder] = [:]

    public init() {}

    public mutating func extractor(_ kind: String, _ build: @escaping ExtractorBuilder) { extractors[kind] = build }
    public mutating func transformer(_ kind: String, _ build: @escaping TransformerBuilder) { transformers[kind] = build }
    public mutating func loader(_ kind: String, _ build: @escaping LoaderBuilder) { loaders[kind] = build }
}
