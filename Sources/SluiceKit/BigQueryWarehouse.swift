import Foundation
import SluiceBigQuery
import SluiceConfig
import SluiceCore

extension StageRegistry {
    /// `warehouse` on a `bigquery` target: the table is streamed into (see SluiceBigQuery).
    /// `partition_column` names the TIMESTAMP/DATE column a new table is partitioned on by
    /// day; by default the schema's first TIMESTAMP (or DATE) column.
    static func bigQueryLoader(schema: TableSchema, table: String, schemaPath: String, schemaLocation: SourceLocation, keyColumn: String,
                               partitionColumn: String?, partitionLocation: SourceLocation, ctx: BuildContext) -> BuiltLoader? {
        let settings: BigQuerySettings
        do {
            settings = try BigQuerySettings.from(ctx.target, root: ctx.projectRoot, environment: ProcessInfo.processInfo.environment)
        } catch {
            for d in error.diagnostics { ctx.diagnostics.error(d.location, d.message) }
            return nil
        }
        let partitionTypes: Set<SchemaField.FieldType> = [.timestamp, .date, .datetime]
        var column = partitionColumn
        if let c = column {
            guard let i = schema.index(of: c), partitionTypes.contains(schema.fields[i].type), schema.fields[i].mode != .repeated else {
                ctx.diagnostics.error(partitionLocation, "partition_column `\(c)` must be a TIMESTAMP, DATE or DATETIME column of \(schemaPath)")
                return nil
            }
        } else {
            column = schema.fields.first { $0.type == .timestamp && $0.mode != .repeated }?.name
                ?? schema.fields.first { partitionTypes.contains($0.type) && $0.mode != .repeated }?.name
        }
        if schema.index(of: keyColumn) == nil {
            ctx.diagnostics.error(schemaLocation, "a BigQuery table needs the record key as a column: add `\(keyColumn)` (STRING) to \(schemaPath), or name another with key_column")
            return nil
        }
        let loader = BigQueryTableLoader(schema: schema, table: table, keyColumn: keyColumn, partitionColumn: column, schemaFile: schemaPath,
                                         settings: settings)
        return BuiltLoader(loader: loader, keyColumn: keyColumn, schemaLocation: schemaLocation)
    }
}
