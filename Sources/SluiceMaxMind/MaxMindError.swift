#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a MaxMind DB file could not be opened, searched or decoded.
///
/// The message names the file and the problem (with the offset where it applies);
/// it never holds data from the file beyond sizes, offsets and type numbers.
public struct MaxMindError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The kind of problem.
    public enum Kind: Sendable, Equatable {
        /// The file could not be opened, read or mapped (the `errno`).
        case cannotOpen(errno: Int32)
        /// No `\xAB\xCD\xEFMaxMind.com` metadata marker in the last 128 KiB.
        case missingMetadataMarker
        /// The metadata is not a map, lacks a required key or holds a bad value.
        case invalidMetadata(String)
        /// A format version or record size this reader does not read.
        case unsupported(String)
        /// A search-tree record or node is invalid.
        case corruptSearchTree(String)
        /// A data-section value is invalid (offset relative to the section's start).
        case corruptData(section: Section, offset: Int, reason: String)
        /// An IPv6 address was looked up in an IPv4-only database.
        case ipv6LookupInIPv4Database
        /// Text that is not an IP address was given to a lookup.
        case invalidAddress(String)
    }

    /// Which data section a `corruptData` offset is in.
    public enum Section: String, Sendable, Equatable {
        case data, metadata
    }

    /// The database file.
    public let path: String
    /// What went wrong.
    public let kind: Kind

    public init(path: String, kind: Kind) {
        self.path = path
        self.kind = kind
    }

    public var description: String {
        let problem: String
        switch kind {
        case .cannotOpen(let code):
            problem = "cannot open the file (\(Self.errnoName(code)))"
        case .missingMetadataMarker:
            problem = "not a MaxMind DB file: no metadata marker (\\xAB\\xCD\\xEFMaxMind.com) in its last 128 KiB"
        case .invalidMetadata(let why):
            problem = "invalid metadata: \(why)"
        case .unsupported(let why):
            problem = "unsupported database: \(why)"
        case .corruptSearchTree(let why):
            problem = "corrupt search tree: \(why)"
        case .corruptData(let section, let offset, let reason):
            problem = "corrupt \(section.rawValue) section at offset \(offset): \(reason)"
        case .ipv6LookupInIPv4Database:
            problem = "an IPv6 address cannot be looked up in an IPv4-only database"
        case .invalidAddress(let text):
            let shown = text.count > 64 ? String(text.prefix(64)) + "..." : text
            problem = "not an IP address: \"\(shown)\""
        }
        return "MaxMind DB \(path): \(problem)"
    }

    private static func errnoName(_ code: Int32) -> String {
        switch code {
        case ENOENT: return "no such file or directory"
        case EACCES: return "permission denied"
        case EISDIR: return "is a directory"
        case ENOMEM: return "out of memory"
        case ENODEV: return "the file cannot be memory-mapped"
        case EINVAL: return "invalid argument"
        default: return "errno \(code)"
        }
    }
}

/// A problem found while decoding a data section, before the file path is known.
/// Kept small and allocation-free so that the typed-throwing decoder stays fast.
enum DataFault: Error {
    case outOfBounds(offset: Int)
    case payloadPastEnd(offset: Int, type: UInt8, size: Int)
    case containerPastEnd(offset: Int, type: UInt8, count: Int)
    case invalidType(offset: Int, type: Int)
    case deprecatedType(offset: Int, type: UInt8)
    case badSize(offset: Int, type: UInt8, size: Int)
    case pointerToPointer(offset: Int)
    case pointerOutOfBounds(offset: Int, target: Int)
    case keyNotString(offset: Int, type: UInt8)
    case invalidUTF8(offset: Int)
    case tooDeep(offset: Int)
    case tooManyValues(offset: Int)
    case payloadTooLarge(offset: Int)

    static func typeName(_ t: UInt8) -> String {
        switch t {
        case 1: return "pointer"
        case 2: return "UTF-8 string"
        case 3: return "double"
        case 4: return "bytes"
        case 5: return "uint16"
        case 6: return "uint32"
        case 7: return "map"
        case 8: return "int32"
        case 9: return "uint64"
        case 10: return "uint128"
        case 11: return "array"
        case 12: return "data cache container"
        case 13: return "end marker"
        case 14: return "boolean"
        case 15: return "float"
        default: return "type \(t)"
        }
    }

    func error(path: String, section: MaxMindError.Section) -> MaxMindError {
        let offset: Int
        let reason: String
        switch self {
        case .outOfBounds(let o):
            offset = o
            reason = "a value starts or continues past the end of the section"
        case .payloadPastEnd(let o, let t, let size):
            offset = o
            reason = "the \(Self.typeName(t)) payload of \(size) bytes extends past the end of the section"
        case .containerPastEnd(let o, let t, let count):
            offset = o
            reason = "the \(Self.typeName(t)) of \(count) entries extends past the end of the section"
        case .invalidType(let o, let t):
            offset = o
            reason = "unknown data type \(t)"
        case .deprecatedType(let o, let t):
            offset = o
            reason = "unsupported deprecated data type \(t) (\(Self.typeName(t)))"
        case .badSize(let o, let t, let size):
            offset = o
            reason = "invalid size \(size) for a \(Self.typeName(t))"
        case .pointerToPointer(let o):
            offset = o
            reason = "a pointer points to another pointer"
        case .pointerOutOfBounds(let o, let target):
            offset = o
            reason = "a pointer to offset \(target) is past the end of the section"
        case .keyNotString(let o, let t):
            offset = o
            reason = "a map key is a \(Self.typeName(t)), not a UTF-8 string"
        case .invalidUTF8(let o):
            offset = o
            reason = "a string is not valid UTF-8"
        case .tooDeep(let o):
            offset = o
            reason = "maps and arrays nest deeper than \(DataSection.maxDepth) levels (or form a cycle)"
        case .tooManyValues(let o):
            offset = o
            reason = "one record holds more than \(DataSection.maxValues) values (or pointers form a cycle)"
        case .payloadTooLarge(let o):
            offset = o
            reason = "one record holds more than \(DataSection.maxPayloadBytes) bytes of strings and bytes"
        }
        return MaxMindError(path: path, kind: .corruptData(section: section, offset: offset, reason: reason))
    }
}
