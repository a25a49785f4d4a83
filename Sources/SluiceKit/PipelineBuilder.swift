import SluiceConfig
import SluiceCore

/// Builds a runnable `Pipeline` from a pipeline file's stages, and checks what can be
/// checked before a run: stage kinds, options, files, and that every REQUIRED column of
/// each schema is produced by some stage.
public struct PipelineBuilder {
    public var registry: StageRegistry

    public init(registry: StageRegistry) { self.registry = registry }

    public func build(_ spec: PipelineSpec, _ ctx: BuildContext) -> Pipeline? {
        var ctx = ctx
        let d = ctx.diagnostics
        // Extract.
        var extractor: BuiltExtractor?
        var timeField: FieldPath?
        if let builder = registry.extractors[spec.extract.kind] {
            if var o = Options(spec.extract.node, what: "extract", diagnostics: d) {
                _ = o.node("kind")
                timeField = o.path("time")
                ctx.eventTime = timeField
                extractor = builder(&o, ctx)
            }
        } else {
            unknownKind(spec.extract, role: "extract", known: registry.extractors.keys, ctx)
        }
        // Transform.
        var transformers: [any Transformer] = []
        var effects: [FieldEffect] = []
        for stage in spec.transform {
            guard let builder = registry.transformers[stage.kind] else {
                unknownKind(stage, role: "transform", known: registry.transformers.keys, ctx)
                effects.append(.unknown)
                continue
            }
            guard var o = Options(stage.node, what: "transform stage", diagnostics: d) else { continue }
            _ = o.node("kind")
            if let built = builder(&o, ctx) {
                transformers.append(built.transformer)
                effects += built.effects
            } else {
                effects.append(.unknown)
            }
        }
        // Load: warehouse stages first, so that others can default to their schema.
        var loaders: [(Int, BuiltLoader)] = []
        var defaultSchema: (TableSchema, String)?
        let order = spec.load.indices.sorted { (spec.load[$0].kind == "warehouse" ? 0 : 1, $0) < (spec.load[$1].kind == "warehouse" ? 0 : 1, $1) }
        for i in order {
            let stage = spec.load[i]
            guard let builder = registry.loaders[stage.kind] else {
                unknownKind(stage, role: "load", known: registry.loaders.keys, ctx)
                continue
            }
            guard var o = Options(stage.node, what: "load stage", diagnostics: d) else { continue }
            _ = o.node("kind")
            if let built = builder(&o, ctx, defaultSchema) {
                loaders.append((i, built))
                if defaultSchema == nil, stage.kind == "warehouse" { defaultSchema = (built.loader.schema, built.keyColumn ?? "record_key") }
            }
        }
        loaders.sort { $0.0 < $1.0 }
        checkRequiredColumns(effects: effects, loaders: loaders.map(\.1), ctx)
        guard let extractor, !d.hasErrors else { return nil }
        var pipeline = Pipeline(name: spec.name, granularity: spec.partition, extractor: extractor.extractor,
                        keyer: RecordKeyer(pipeline: spec.name, fields: spec.key), timeField: timeField,
                        timeSelectsPartition: !extractor.pathSelectsPartition, transformers: transformers,
                        loaders: loaders.map { LoaderBinding(loader: $0.1.loader, keyColumn: $0.1.keyColumn) })
        if let every = spec.commitEvery { pipeline.commitEvery = every }
        return pipeline
    }

    func unknownKind(_ stage: StageSpec, role: String, known: Dictionary<String, some Any>.Keys, _ ctx: BuildContext) {
        var message = "unknown \(role) kind `\(stage.kind)`"
        let elsewhere = [("extract", registry.extractors.keys.contains(stage.kind)),
                         ("transform", registry.transformers.keys.contains(stage.kind)),
                         ("load", registry.loaders.keys.contains(stage.kind))].filter(\.1).map(\.0)
        if !elsewhere.isEmpty {
            let roles = elsewhere.joined(separator: " and ")
            message += " (it is \(elsewhere.first == "extract" ? "an" : "a") \(roles) stage)"
        }
        message += "; known: \(known.sorted().joined(separator: ", "))"
        ctx.diagnostics.error(stage.kindLocation, message)
    }

    /// After the transforms, is every REQUIRED column of each sink produced? Only
    /// decidable when a `select` closed the set of fields.
    func checkRequiredColumns(effects: [FieldEffect], loaders: [BuiltLoader], _ ctx: BuildContext) {
        var closed: Set<String>?
        for effect in effects {
            switch effect {
            case .select(let names): closed = Set(names)
            case .add(let names): closed?.formUnion(names)
            case .remove(let names): closed?.subtract(names)
            case .unknown: closed = nil
            }
        }
        guard let fields = closed else { return }
        for built in loaders {
            let schema = built.loader.schema
            for field in schema.fields where field.mode == .required && field.name != built.keyColumn && !fields.contains(field.name) {
                ctx.diagnostics.error(built.schemaLocation, "column `\(field.name)` is REQUIRED in \(schema.source) but no stage produces it")
            }
        }
    }
}
