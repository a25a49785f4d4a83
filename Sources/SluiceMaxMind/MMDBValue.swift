/// One decoded value of a MaxMind DB data section.
///
/// Every data type of the format has a case; pointers are followed transparently.
/// Maps keep the order of their keys in the file. A uint128 is kept as its two
/// 64-bit halves (`decimalString` renders it). The deprecated types "data cache
/// container" (12) and "end marker" (13) have no case: like MaxMind's own readers,
/// the decoder rejects them as corrupt data.
public indirect enum MMDBValue: Sendable, Equatable {
    /// UTF-8 string (type 2), validated.
    case string(String)
    /// IEEE-754 binary64 (type 3).
    case double(Double)
    /// Raw bytes (type 4).
    case bytes([UInt8])
    /// Unsigned 16-bit integer (type 5).
    case uint16(UInt16)
    /// Unsigned 32-bit integer (type 6).
    case uint32(UInt32)
    /// Map (type 7): string keys in file order.
    case map([MMDBMapEntry])
    /// Signed 32-bit integer (type 8).
    case int32(Int32)
    /// Unsigned 64-bit integer (type 9).
    case uint64(UInt64)
    /// Unsigned 128-bit integer (type 10) as its high and low 64 bits.
    case uint128(high: UInt64, low: UInt64)
    /// Array (type 11).
    case array([MMDBValue])
    /// Boolean (type 14).
    case boolean(Bool)
    /// IEEE-754 binary32 (type 15).
    case float(Float)

    /// The value under `key` when this is a map (first match), else nil.
    public subscript(key: String) -> MMDBValue? {
        guard case .map(let entries) = self else { return nil }
        return entries.first { $0.key == key }?.value
    }

    /// The element at `index` when this is an array and the index is in range, else nil.
    public subscript(index: Int) -> MMDBValue? {
        guard case .array(let items) = self, items.indices.contains(index) else { return nil }
        return items[index]
    }

    /// Walks maps by key and arrays by index (a decimal component, negative from the
    /// end), like `MaxMindDatabase.value(_:at:)`.
    public subscript(path path: [String]) -> MMDBValue? {
        var current = self
        for component in path {
            switch current {
            case .map:
                guard let next = current[component] else { return nil }
                current = next
            case .array(let items):
                guard let i = Int(component) else { return nil }
                let index = i < 0 ? items.count + i : i
                guard items.indices.contains(index) else { return nil }
                current = items[index]
            default:
                return nil
            }
        }
        return current
    }

    /// The string, when this is a string.
    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// Any number as a Double (uint64 and uint128 may round).
    public var doubleValue: Double? {
        switch self {
        case .double(let d): return d
        case .float(let f): return Double(f)
        case .uint16(let v): return Double(v)
        case .uint32(let v): return Double(v)
        case .int32(let v): return Double(v)
        case .uint64(let v): return Double(v)
        case .uint128(let h, let l): return Double(h) * 18_446_744_073_709_551_616.0 + Double(l)
        default: return nil
        }
    }

    /// Any integer that fits an Int64.
    public var int64Value: Int64? {
        switch self {
        case .uint16(let v): return Int64(v)
        case .uint32(let v): return Int64(v)
        case .int32(let v): return Int64(v)
        case .uint64(let v): return Int64(exactly: v)
        case .uint128(let h, let l): return h == 0 ? Int64(exactly: l) : nil
        default: return nil
        }
    }

    /// The boolean, when this is a boolean.
    public var boolValue: Bool? {
        if case .boolean(let b) = self { return b }
        return nil
    }

    /// An integer in decimal (uint128 included); nil for non-integers.
    public var decimalString: String? {
        switch self {
        case .uint16(let v): return String(v)
        case .uint32(let v): return String(v)
        case .int32(let v): return String(v)
        case .uint64(let v): return String(v)
        case .uint128(let h, let l): return Self.decimal(high: h, low: l)
        default: return nil
        }
    }

    /// 128-bit unsigned to decimal, by repeated division by 10^19.
    static func decimal(high: UInt64, low: UInt64) -> String {
        if high == 0 { return String(low) }
        var h = high, l = low
        var chunks: [UInt64] = []
        let divisor: UInt64 = 10_000_000_000_000_000_000
        while h != 0 || l != 0 {
            let (qh, rh) = h.quotientAndRemainder(dividingBy: divisor)
            let (ql, r) = divisor.dividingFullWidth((rh, l))
            chunks.append(r)
            h = qh
            l = ql
        }
        var out = String(chunks.removeLast())
        for chunk in chunks.reversed() {
            let s = String(chunk)
            out += String(repeating: "0", count: 19 - s.count) + s
        }
        return out
    }

    /// The value as JSON text, keys in file order. Integers (uint128 too) are exact
    /// decimal numbers; bytes are a lower-case hex string; a non-finite double or
    /// float is the string "NaN", "Infinity" or "-Infinity".
    public var jsonString: String {
        var out = ""
        writeJSON(to: &out)
        return out
    }

    private func writeJSON(to out: inout String) {
        switch self {
        case .string(let s): Self.writeJSONString(s, to: &out)
        case .double(let d): out += Self.jsonNumber(d)
        case .float(let f): out += Self.jsonNumber(Double(f))
        case .bytes(let b):
            out += "\""
            for byte in b {
                let hex = String(byte, radix: 16)
                out += byte < 16 ? "0" + hex : hex
            }
            out += "\""
        case .uint16, .uint32, .int32, .uint64, .uint128: out += decimalString ?? "0"
        case .boolean(let b): out += b ? "true" : "false"
        case .array(let items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                item.writeJSON(to: &out)
            }
            out += "]"
        case .map(let entries):
            out += "{"
            for (i, entry) in entries.enumerated() {
                if i > 0 { out += "," }
                Self.writeJSONString(entry.key, to: &out)
                out += ":"
                entry.value.writeJSON(to: &out)
            }
            out += "}"
        }
    }

    private static func jsonNumber(_ d: Double) -> String {
        if d.isNaN { return "\"NaN\"" }
        if d.isInfinite { return d < 0 ? "\"-Infinity\"" : "\"Infinity\"" }
        return "\(d)"
    }

    private static func writeJSONString(_ s: String, to out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }
}

extension MMDBValue: CustomStringConvertible {
    /// The JSON rendering (`jsonString`).
    public var description: String { jsonString }
}

/// One key/value pair of a map, in file order.
public struct MMDBMapEntry: Sendable, Equatable {
    public var key: String
    public var value: MMDBValue

    public init(key: String, value: MMDBValue) {
        self.key = key
        self.value = value
    }
}
