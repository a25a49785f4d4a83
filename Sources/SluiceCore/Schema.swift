/// A BigQuery table schema, as `bq mk --schema` takes it (a JSON array of fields).
public struct TableSchema: Sendable, Hashable {
    public var fields: [SchemaField]
    /// Where the schema came from (for messages).
    public var source: String

    public init(fields: [SchemaField], source: String = "") {
        self.fields = fields
        self.source = source
    }

    public var columnNames: [String] { fields.map(\.name) }

    public func index(of column: String) -> Int? {
        fields.firstIndex { $0.name.lowercased() == column.lowercased() }
    }
}

public struct SchemaField: Sendable, Hashable {
    public enum FieldType: String, Sendable, Hashable, CaseIterable {
        case string = "STRING"
        case bytes = "BYTES"
        case integer = "INTEGER"
        case float = "FLOAT"
        case numeric = "NUMERIC"
        case bignumeric = "BIGNUMERIC"
        case boolean = "BOOLEAN"
        case timestamp = "TIMESTAMP"
        case date = "DATE"
        case time = "TIME"
        case datetime = "DATETIME"
        case geography = "GEOGRAPHY"
        case json = "JSON"
        case record = "RECORD"
        case interval = "INTERVAL"
        case range = "RANGE"

        /// Legacy and standard SQL names alike (`INT64`, `FLOAT64`, `BOOL`, `STRUCT`, `DECIMAL`, ...).
        public init?(name: String) {
            switch name.uppercased() {
            case "STRING": self = .string
            case "BYTES": self = .bytes
            case "INTEGER", "INT64": self = .integer
            case "FLOAT", "FLOAT64": self = .float
            case "NUMERIC", "DECIMAL": self = .numeric
            case "BIGNUMERIC", "BIGDECIMAL": self = .bignumeric
            case "BOOLEAN", "BOOL": self = .boolean
            case "TIMESTAMP": self = .timestamp
            case "DATE": self = .date
            case "TIME": self = .time
            case "DATETIME": self = .datetime
            case "GEOGRAPHY": self = .geography
            case "JSON": self = .json
            case "RECORD", "STRUCT": self = .record
            case "INTERVAL": self = .interval
            case "RANGE": self = .range
            default: return nil
            }
        }
    }

    public enum Mode: String, Sendable, Hashable, CaseIterable {
        case nullable = "NULLABLE"
        case required = "REQUIRED"
        case repeated = "REPEATED"
    }

    public var name: String
    public var type: FieldType
    public var mode: Mode
    public var fields: [SchemaField]
    public var description: String?

    public init(name: String, type: FieldType, mode: Mode = .nullable, fields: [SchemaField] = [], description: String? = nil) {
        self.name = name
        self.type = type
        self.mode = mode
        self.fields = fields
        self.description = description
    }
}
