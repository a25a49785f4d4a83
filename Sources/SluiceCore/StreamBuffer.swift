/// One row waiting for a streaming sink (BigQuery) to acknowledge it: kept durably in the
/// state store from the moment the run hands it over until the sink says it holds it.
public struct BufferedRow: Sendable, Hashable {
    public var key: String
    public var partition: String
    public var position: SourcePosition
    /// The row as the sink sends it (a JSON object), opaque to the store; empty when read
    /// without it (`bufferedRows(…, withPayloads: false)`).
    public var payload: [UInt8]
    /// The payload's size, also when it was not read.
    public var payloadBytes: Int

    public init(key: String, partition: String, position: SourcePosition, payload: [UInt8]) {
        self.init(key: key, partition: partition, position: position, payload: payload, payloadBytes: payload.count)
    }

    public init(key: String, partition: String, position: SourcePosition, payload: [UInt8], payloadBytes: Int) {
        self.key = key
        self.partition = partition
        self.position = position
        self.payload = payload
        self.payloadBytes = payloadBytes
    }
}

extension StreamBufferStore {
    /// The rows of a partition that wait in the buffer, oldest first, with their payloads.
    public func bufferedRows(pipeline: String, sink: String, partition: String, limit: Int) throws -> [BufferedRow] {
        try bufferedRows(pipeline: pipeline, sink: sink, partition: partition, limit: limit, withPayloads: true)
    }
}

/// The durable buffer of streaming sinks, part of the state store. A row enters the
/// buffer before it is first sent and leaves it in the same transaction that adds its key
/// to the delivery ledger (acknowledged) or when the sink rejected it (a dead letter).
/// Rows still in the buffer when a process dies have an unknown outcome.
public protocol StreamBufferStore: Sendable {
    /// Adds rows whose key is neither in the ledger of the sink nor in its buffer already,
    /// in one transaction; returns the keys that were added.
    func bufferRows(pipeline: String, sink: String, _ rows: [BufferedRow]) throws -> [String]
    /// The rows of a partition that wait in the buffer (of an earlier process), oldest
    /// first; without their payloads (only their sizes) unless `withPayloads`: a sink that
    /// sends them reads those back by key (`bufferedPayloads`), a request at a time.
    func bufferedRows(pipeline: String, sink: String, partition: String, limit: Int, withPayloads: Bool) throws -> [BufferedRow]
    /// The payloads of the rows of these keys that are in the buffer (a sink reads them back
    /// to send them, rather than holding every waiting row's payload in memory).
    func bufferedPayloads(pipeline: String, sink: String, keys: [String]) throws -> [String: [UInt8]]
    /// The sink holds these rows: removed from the buffer, added to the ledger.
    func acknowledgeBuffered(pipeline: String, sink: String, keys: [String]) throws
    /// The sink refused these rows for good: removed from the buffer and kept as dead
    /// letters of the run, in one transaction (a crash cannot lose them in between).
    func rejectBuffered(pipeline: String, sink: String, runID: Int64, partition: String, _ rows: [(key: String, letter: DeadLetter)]) throws
    /// Rows waiting in the buffer, by pipeline, sink and partition.
    func bufferDepths(pipeline: String?) throws -> [(pipeline: String, sink: String, partition: String, rows: Int)]
}
