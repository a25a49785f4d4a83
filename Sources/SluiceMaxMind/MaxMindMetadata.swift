/// The metadata of a MaxMind DB file (the map after the last
/// `\xAB\xCD\xEFMaxMind.com` marker), with every key of format version 2.0.
public struct MaxMindMetadata: Sendable, Equatable {
    /// The number of nodes in the search tree.
    public var nodeCount: UInt32
    /// Bits per search-tree record: 24, 28 or 32.
    public var recordSize: UInt16
    /// 4 or 6: whether the tree holds IPv4 (32-bit) or IPv6 (128-bit) addresses.
    public var ipVersion: UInt16
    /// What the records hold, e.g. "GeoLite2-City".
    public var databaseType: String
    /// Locale codes of the localized names in the records (empty when absent).
    public var languages: [String]
    /// The major version of the binary format (always 2 here).
    public var binaryFormatMajorVersion: UInt16
    /// The minor version of the binary format.
    public var binaryFormatMinorVersion: UInt16
    /// When the database was built, in seconds since the Unix epoch.
    public var buildEpoch: UInt64
    /// Descriptions by language code (empty when absent).
    public var description: [String: String]
    /// The whole metadata map as decoded, unknown keys included.
    public var raw: MMDBValue

    /// Reads and checks the metadata map; `problem` describes what is wrong.
    init(_ value: MMDBValue) throws(MetadataProblem) {
        guard case .map = value else { throw MetadataProblem("the metadata is not a map") }
        raw = value
        nodeCount = try UInt32(Self.unsigned(value, "node_count", max: UInt64(UInt32.max)))
        recordSize = try UInt16(Self.unsigned(value, "record_size", max: UInt64(UInt16.max)))
        ipVersion = try UInt16(Self.unsigned(value, "ip_version", max: UInt64(UInt16.max)))
        binaryFormatMajorVersion = try UInt16(Self.unsigned(value, "binary_format_major_version", max: UInt64(UInt16.max)))
        binaryFormatMinorVersion = try UInt16(Self.unsigned(value, "binary_format_minor_version", max: UInt64(UInt16.max)))
        buildEpoch = try Self.unsigned(value, "build_epoch", max: UInt64.max)
        guard let type = value["database_type"] else { throw MetadataProblem("database_type is missing") }
        guard case .string(let typeName) = type else { throw MetadataProblem("database_type is not a string") }
        databaseType = typeName
        languages = []
        if let list = value["languages"] {
            guard case .array(let items) = list else { throw MetadataProblem("languages is not an array") }
            for item in items {
                guard case .string(let code) = item else { throw MetadataProblem("languages holds a value that is not a string") }
                languages.append(code)
            }
        }
        description = [:]
        if let map = value["description"] {
            guard case .map(let entries) = map else { throw MetadataProblem("description is not a map") }
            for entry in entries {
                guard case .string(let text) = entry.value else {
                    throw MetadataProblem("description holds a value that is not a string")
                }
                description[entry.key] = text
            }
        }
    }

    /// A required unsigned integer key (any unsigned integer type, in range).
    private static func unsigned(_ map: MMDBValue, _ key: String, max: UInt64) throws(MetadataProblem) -> UInt64 {
        guard let v = map[key] else { throw MetadataProblem("\(key) is missing") }
        let n: UInt64
        switch v {
        case .uint16(let x): n = UInt64(x)
        case .uint32(let x): n = UInt64(x)
        case .uint64(let x): n = x
        case .uint128(let high, let low) where high == 0: n = low
        default: throw MetadataProblem("\(key) is not an unsigned integer in range")
        }
        guard n <= max else { throw MetadataProblem("\(key) (\(n)) is out of range") }
        return n
    }
}

/// Why the metadata map is not valid.
struct MetadataProblem: Error {
    var message: String
    init(_ message: String) { self.message = message }
}
