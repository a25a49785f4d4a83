import Logging
import SluiceCore

/// The `warehouse` sink on a `bigquery` target: rows streamed into a table with
/// `tabledata.insertAll`, through the state store's durable buffer.
public struct BigQueryTableLoader: Loader {
    public let schema: TableSchema
    public let table: String
    /// The column that holds the record key (also each row's `insertId`).
    public let keyColumn: String
    /// The TIMESTAMP or DATE column a new table is partitioned on by day.
    public let partitionColumn: String?
    /// The schema file, as messages name it.
    public let schemaFile: String
    public let settings: BigQuerySettings

    public init(schema: TableSchema, table: String, keyColumn: String, partitionColumn: String?, schemaFile: String,
                settings: BigQuerySettings) {
        self.schema = schema
        self.table = table
        self.keyColumn = keyColumn
        self.partitionColumn = partitionColumn
        self.schemaFile = schemaFile
        self.settings = settings
    }

    public var label: String { "bigquery \(settings.project).\(settings.dataset).\(table)" }

    public func open(_ context: RunContext) async throws -> any LoadSession {
        guard context.mode == .append else {
            throw BigQueryError("\(label): --replace is not supported on a BigQuery target (streamed rows cannot be swapped); run without it: rows already loaded are not sent again")
        }
        guard let store = context.state as? any StreamBufferStore else {
            throw BigQueryError("\(label): streaming into BigQuery needs a state store with a durable buffer")
        }
        guard schema.index(of: keyColumn) != nil else {
            throw BigQueryError("\(label): the schema \(schemaFile) has no column `\(keyColumn)` for the record key; add it (STRING) so deliveries can be checked by query")
        }
        let api = try BigQueryAPI(settings: settings)
        guard let runID = context.runID else {
            throw BigQueryError("\(label): streaming into BigQuery needs a run recorded in the state store")
        }
        let streamer = Streamer(api: api, table: table, store: store, pipeline: context.pipeline, sink: label, logger: context.logger,
                                runID: runID, partition: context.partition.description, keyColumn: keyColumn, stop: context.stop)
        // Rows an earlier process left in this partition's buffer: their outcome is unknown.
        // (Their payloads stay in the store until their requests are made.)
        let left = try store.bufferedRows(pipeline: context.pipeline, sink: label, partition: context.partition.description, limit: Int.max,
                                          withPayloads: false)
        if !left.isEmpty { await streamer.recover(left, keyColumn: keyColumn) }
        let (table, schema, schemaFile, partitionColumn) = (table, schema, schemaFile, partitionColumn)
        await streamer.start { () async throws(BigQueryError) in
            try await TableSchemas.prepare(api: api, table: table, schema: schema, schemaFile: schemaFile, partitionColumn: partitionColumn)
        }
        return BigQuerySession(loader: self, streamer: streamer, store: store, context: context)
    }
}

final class BigQuerySession: LoadSession {
    let loader: BigQueryTableLoader
    let streamer: Streamer
    let store: any StreamBufferStore
    let context: RunContext
    let names: [[UInt8]]

    init(loader: BigQueryTableLoader, streamer: Streamer, store: any StreamBufferStore, context: RunContext) {
        self.loader = loader
        self.streamer = streamer
        self.store = store
        self.context = context
        names = Self.names(loader.schema.fields.map(\.name))
    }

    /// The row as insertAll's `json` object (NULLs left out), written straight from the
    /// values: each column's name as JSON text (`"name":`) is made once (`names`).
    static func payload(_ values: [Value], names: [[UInt8]]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(512)
        out.append(UInt8(ascii: "{"))
        for (name, value) in zip(names, values) where !value.isNull {
            if out.count > 1 { out.append(UInt8(ascii: ",")) }
            out += name
            JSONWriter.write(value, into: &out)
        }
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// `"name":` of each column, for `payload`.
    static func names(_ columns: [String]) -> [[UInt8]] {
        columns.map { column in
            var name: [UInt8] = []
            JSONWriter.writeString(column, into: &name)
            return name + [UInt8(ascii: ":")]
        }
    }

    func write(_ rows: [Row]) async throws -> Int {
        guard !rows.isEmpty else { return 0 }
        try await streamer.waitForRoom()
        let partition = context.partition.description
        var buffered: [BufferedRow] = []
        buffered.reserveCapacity(rows.count)
        var seen: Set<String> = []
        for row in rows where seen.insert(row.key).inserted {
            buffered.append(BufferedRow(key: row.key, partition: partition, position: row.position,
                                        payload: Self.payload(row.values, names: names)))
        }
        // Durable before the first request: a crash from here on loses nothing.
        let added = Set(try store.bufferRows(pipeline: context.pipeline, sink: loader.label, buffered))
        CrashPoints.reach("bigquery.buffered")
        await streamer.enqueue(buffered.filter { added.contains($0.key) }.map {
            Streamer.Pending(key: $0.key, payloadBytes: $0.payload.count, position: $0.position, ofRun: true)
        })
        return added.count
    }

    func commitSegment(final: Bool) async throws -> SegmentResult {
        // Rows are durable in the buffer already; a segment only reports what BigQuery refused.
        var buffered = 0
        if final { buffered = await streamer.drain(timeout: loader.settings.drainTimeout) }
        let rejected = try await streamer.takeRejected()
        return SegmentResult(buffered: buffered, rejectedOfRun: rejected)
    }

    func rollback() async {
        // Nothing to undo: rows in the buffer are sent by the partition's next run.
        await streamer.abandon()
    }
}
