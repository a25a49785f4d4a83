import Foundation
import SluiceCore

/// One stage as written in a pipeline file: its `kind` and the rest of its options.
public struct StageSpec: Sendable {
    public var kind: String
    public var kindLocation: SourceLocation
    public var node: ConfigNode
}

/// What `sluice test` runs and compares with.
public struct TestSpec: Sendable {
    public var dates: [(String, SourceLocation)]
    public var expected: String
    public var expectedLocation: SourceLocation
    /// Environment variables for the test runs only (a vendor's documented test key, a
    /// test HMAC secret), over the process environment. Never real secrets: the file is
    /// committed.
    public var environment: [String: String] = [:]
}

/// A pipeline file, read but not yet built into stages.
public struct PipelineSpec: Sendable {
    public var file: String
    public var name: String
    public var description: String?
    public var schedule: String?
    public var scheduleLocation: SourceLocation?
    public var partition: Partition.Granularity
    public var key: [FieldPath]
    /// Records per segment commit (sinks and state); nil for the default.
    public var commitEvery: Int?
    public var extract: StageSpec
    public var transform: [StageSpec]
    public var load: [StageSpec]
    public var test: TestSpec?
    public var location: SourceLocation

    /// Reads a pipeline file. `displayPath` is how messages name it (relative to the project).
    public static func load(path: String, displayPath: String, diagnostics: DiagnosticCollector) -> PipelineSpec? {
        guard let data = FileManager.default.contents(atPath: path) else {
            diagnostics.error(SourceLocation(file: displayPath, line: 1, column: 1), "cannot read pipeline file")
            return nil
        }
        guard let text = String(data: data, encoding: .utf8) else {
            diagnostics.error(SourceLocation(file: displayPath, line: 1, column: 1), "pipeline file is not UTF-8")
            return nil
        }
        return parse(text: text, file: displayPath, diagnostics: diagnostics)
    }

    public static func parse(text: String, file: String, diagnostics: DiagnosticCollector) -> PipelineSpec? {
        let root: ConfigNode
        do {
            guard let node = try ConfigNode.parse(yaml: text, file: file) else {
                diagnostics.error(SourceLocation(file: file, line: 1, column: 1), "pipeline file is empty")
                return nil
            }
            root = node
        } catch {
            for d in error.diagnostics { diagnostics.error(d.location, d.message) }
            return nil
        }
        guard var o = Options(root, what: "a pipeline file", diagnostics: diagnostics) else { return nil }
        let name = o.string("name", required: true)
        if let name, !SchemaFile.isValidColumnName(name) {
            diagnostics.error(o.node("name")!.location, "pipeline name `\(name)` must be letters, digits and underscores")
        }
        let description = o.string("description")
        let schedule = o.string("schedule")
        let scheduleLocation = o.node("schedule")?.location
        if let schedule, let scheduleLocation {
            do { _ = try CronExpression(schedule) } catch { diagnostics.error(scheduleLocation, "invalid schedule `\(schedule)`: \(error)") }
        }
        let partition = o.oneOf("partition", Partition.Granularity.self) ?? .day
        var key: [FieldPath] = []
        for (k, loc) in o.stringList("key") ?? [] {
            if let p = FieldPath(k) { key.append(p) } else { diagnostics.error(loc, "`\(k)` is not a valid field path") }
        }
        let commitEvery = o.int("commit_every", range: 1...100_000_000)
        let extract: StageSpec? = o.node("extract").flatMap { stage($0, what: "extract", diagnostics: diagnostics) }
        if !o.has("extract") { diagnostics.error(root.location, "missing required key `extract`") }
        let transform = stages(o.node("transform"), what: "transform", diagnostics: diagnostics)
        let load = stages(o.node("load"), what: "load", diagnostics: diagnostics)
        if !o.has("load") { diagnostics.error(root.location, "missing required key `load`") }
        else if load.isEmpty, o.node("load")?.items?.isEmpty == true { diagnostics.error(o.node("load")!.location, "`load` needs at least one stage") }
        var test: TestSpec?
        if let t = o.node("test"), var to = Options(t, what: "`test`", diagnostics: diagnostics) {
            let dates = to.stringList("dates") ?? []
            for (d, loc) in dates where Partition(d, granularity: partition) == nil {
                diagnostics.error(loc, "`\(d)` is not a \(partition.rawValue) partition (\(partition == .day ? "YYYY-MM-DD" : "YYYY-MM-DDTHH"))")
            }
            if dates.isEmpty { diagnostics.error(t.location, "`test` needs `dates`") }
            let expected = to.string("expected", required: true)
            let expectedLocation = to.node("expected")?.location ?? t.location
            var environment: [String: String] = [:]
            if let env = to.node("environment") {
                if let entries = env.entries {
                    for e in entries {
                        if let v = e.value.scalar { environment[e.key] = v } else { diagnostics.error(e.value.location, "`\(e.key)` must be a string") }
                    }
                } else {
                    diagnostics.error(env.location, "`environment` must map variable names to values")
                }
            }
            to.finish()
            if let expected { test = TestSpec(dates: dates, expected: expected, expectedLocation: expectedLocation, environment: environment) }
        }
        o.finish()
        guard let name, let extract else { return nil }
        return PipelineSpec(file: file, name: name, description: description, schedule: schedule,
                            scheduleLocation: scheduleLocation, partition: partition, key: key, commitEvery: commitEvery, extract: extract,
                            transform: transform, load: load, test: test, location: root.location)
    }

    static func stage(_ node: ConfigNode, what: String, diagnostics: DiagnosticCollector) -> StageSpec? {
        guard node.entries != nil else {
            diagnostics.error(node.location, "\(what) stage must be a mapping with `kind`, found \(node.typeName)")
            return nil
        }
        guard let kindNode = node["kind"] else {
            diagnostics.error(node.location, "\(what) stage needs `kind`")
            return nil
        }
        guard let kind = kindNode.scalar, !kindNode.isNull else {
            diagnostics.error(kindNode.location, "`kind` must be a string")
            return nil
        }
        return StageSpec(kind: kind, kindLocation: kindNode.location, node: node)
    }

    static func stages(_ node: ConfigNode?, what: String, diagnostics: DiagnosticCollector) -> [StageSpec] {
        guard let node, !node.isNull else { return [] }
        if node.entries != nil { return stage(node, what: what, diagnostics: diagnostics).map { [$0] } ?? [] }
        guard let items = node.items else {
            diagnostics.error(node.location, "`\(what)` must be a list of stages, found \(node.typeName)")
            return []
        }
        return items.compactMap { stage($0, what: what, diagnostics: diagnostics) }
    }
}

