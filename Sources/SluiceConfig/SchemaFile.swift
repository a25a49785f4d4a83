import Foundation
import SluiceCore

/// Reads BigQuery JSON schema files (`bq mk --schema` / `bq show --schema` format: an
/// array of fields, or an object with a `fields` array) with the line and column of
/// every problem.
public enum SchemaFile {
    /// Keys BigQuery's TableFieldSchema has that sluice accepts and ignores.
    static let tolerated: Set<String> = [
        "policyTags", "maxLength", "precision", "scale", "defaultValueExpression", "collation",
        "roundingMode", "rangeElementType", "foreignTypeDefinition", "dataPolicies",
    ]

    public static func load(path: String, displayPath: String, diagnostics: DiagnosticCollector) -> TableSchema? {
        guard let data = FileManager.default.contents(atPath: path) else {
            diagnostics.error(SourceLocation(file: displayPath, line: 1, column: 1), "cannot read schema file")
            return nil
        }
        guard let text = String(data: data, encoding: .utf8) else {
            diagnostics.error(SourceLocation(file: displayPath, line: 1, column: 1), "schema file is not UTF-8")
            return nil
        }
        return parse(text: text, file: displayPath, diagnostics: diagnostics)
    }

    public static func parse(text: String, file: String, diagnostics: DiagnosticCollector) -> TableSchema? {
        let root: ConfigNode
        do {
            guard let node = try ConfigNode.parse(yaml: text, file: file) else {
                diagnostics.error(SourceLocation(file: file, line: 1, column: 1), "schema file is empty")
                return nil
            }
            root = node
        } catch {
            for d in error.diagnostics { diagnostics.error(d.location, d.message) }
            return nil
        }
        var list = root
        if root.entries != nil {
            guard let f = root["fields"] else {
                diagnostics.error(root.location, "a schema must be a list of fields or an object with `fields`")
                return nil
            }
            list = f
        }
        guard let fields = parseFields(list, diagnostics: diagnostics, what: "schema") else { return nil }
        if fields.isEmpty { diagnostics.error(list.location, "a schema needs at least one field") }
        return TableSchema(fields: fields, source: file)
    }

    static func parseFields(_ node: ConfigNode, diagnostics: DiagnosticCollector, what: String) -> [SchemaField]? {
        guard let items = node.items else {
            diagnostics.error(node.location, "\(what) must be a list of fields, found \(node.typeName)")
            return nil
        }
        var out: [SchemaField] = []
        var seen: [String: SourceLocation] = [:]
        for item in items {
            guard var o = Options(item, what: "a schema field", diagnostics: diagnostics) else { continue }
            let name = o.string("name", required: true)
            let typeName = o.string("type", required: true)
            let modeName = o.string("mode")
            let description = o.string("description")
            let sub = o.node("fields")
            o.finish(allowed: tolerated)
            guard let name, let typeName else { continue }
            let nameLoc = o.node("name")!.location
            if !isValidColumnName(name) {
                diagnostics.error(nameLoc, "invalid column name `\(name)`: use letters, digits and underscores, not starting with a digit, at most 300 characters")
            }
            if let first = seen[name.lowercased()] {
                diagnostics.error(nameLoc, "duplicate column `\(name)` (first at line \(first.line))")
            }
            seen[name.lowercased()] = nameLoc
            guard let type = SchemaField.FieldType(name: typeName) else {
                diagnostics.error(o.node("type")!.location, "unknown type `\(typeName)` for column `\(name)`")
                continue
            }
            var mode = SchemaField.Mode.nullable
            if let modeName {
                guard let m = SchemaField.Mode(rawValue: modeName.uppercased()) else {
                    diagnostics.error(o.node("mode")!.location, "unknown mode `\(modeName)` for column `\(name)`: use NULLABLE, REQUIRED or REPEATED")
                    continue
                }
                mode = m
            }
            var subfields: [SchemaField] = []
            if type == .record {
                guard let sub else {
                    diagnostics.error(item.location, "RECORD column `\(name)` needs `fields`")
                    continue
                }
                subfields = parseFields(sub, diagnostics: diagnostics, what: "`fields` of `\(name)`") ?? []
                if subfields.isEmpty, sub.items != nil { diagnostics.error(sub.location, "RECORD column `\(name)` needs at least one field") }
            } else if let sub, !sub.isNull {
                diagnostics.error(sub.location, "only RECORD columns have `fields`; `\(name)` is \(type.rawValue)")
            }
            out.append(SchemaField(name: name, type: type, mode: mode, fields: subfields, description: description))
        }
        return out
    }

    public static func isValidColumnName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, name.unicodeScalars.count <= 300 else { return false }
        let isLetter = { (c: Unicode.Scalar) in (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || c == "_" }
        let isDigit = { (c: Unicode.Scalar) in c >= "0" && c <= "9" }
        guard isLetter(first) else { return false }
        return name.unicodeScalars.allSatisfy { isLetter($0) || isDigit($0) }
    }
}
