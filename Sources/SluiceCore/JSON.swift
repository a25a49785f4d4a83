#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a JSON text could not be parsed. Messages name the byte column, never the text.
public struct JSONError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable { case malformed, invalidUTF8, tooDeep }
    public let kind: Kind
    /// 0-based byte offset of the problem in the input.
    public let offset: Int
    public let problem: String

    public var description: String { "\(problem) at byte \(offset + 1)" }
}

/// A byte-level JSON parser (RFC 8259) that builds `Value`s directly from UTF-8 bytes,
/// without Foundation. Integers that fit Int64 become `.int`, other numbers `.double`.
/// Duplicate object keys: the last one wins, as in most JSON readers.
public struct JSONParser {
    public static let maxDepth = 512

    /// Parses one complete JSON text; short strings through `strings` when given (a reader
    /// of many lines of one log keeps one).
    public static func parse(_ bytes: UnsafeRawBufferPointer, strings: JSONStringCache? = nil) throws(JSONError) -> Value {
        var p = JSONParser(bytes, strings: strings)
        p.skipWhitespace()
        let v = try p.parseValue(depth: 0)
        p.skipWhitespace()
        if p.i != p.end { throw p.error(.malformed, "unexpected data after the JSON value") }
        return v
    }

    /// Parses one complete JSON text that is an object, its fields returned as they are
    /// (not wrapped in a `Value`, which a record would unwrap: a copy); nil when the text
    /// is JSON but not an object (`parse` tells what it is).
    public static func parseObject(_ bytes: UnsafeRawBufferPointer, strings: JSONStringCache? = nil) throws(JSONError) -> Fields? {
        var p = JSONParser(bytes, strings: strings)
        p.skipWhitespace()
        guard p.i < p.end, p.byte(p.i) == UInt8(ascii: "{") else {
            _ = try parse(bytes, strings: strings) // a malformed text throws as `parse` would
            return nil
        }
        let fields = try p.parseObject(depth: 1)
        p.skipWhitespace()
        if p.i != p.end { throw p.error(.malformed, "unexpected data after the JSON value") }
        return fields
    }

    public static func parse(_ bytes: [UInt8]) throws(JSONError) -> Value {
        var result: Result<Value, JSONError> = .success(.null)
        bytes.withUnsafeBytes { buffer in
            do throws(JSONError) { result = .success(try parse(buffer)) } catch { result = .failure(error) }
        }
        return try result.get()
    }

    public static func parse(_ text: String) throws(JSONError) -> Value {
        try parse(Array(text.utf8))
    }

    private let base: UnsafePointer<UInt8>?
    private let end: Int
    private var i = 0
    private let strings: JSONStringCache?

    private init(_ bytes: UnsafeRawBufferPointer, strings: JSONStringCache? = nil) {
        base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self)
        end = bytes.count
        self.strings = strings
    }

    @inline(__always) private func byte(_ at: Int) -> UInt8 { base![at] }

    private func error(_ kind: JSONError.Kind, _ problem: String) -> JSONError {
        JSONError(kind: kind, offset: min(i, end), problem: problem)
    }

    @inline(__always) private mutating func skipWhitespace() {
        while i < end {
            let c = byte(i)
            if c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { i += 1 } else { return }
        }
    }

    private mutating func parseValue(depth: Int) throws(JSONError) -> Value {
        guard i < end else { throw error(.malformed, "unexpected end of input") }
        switch byte(i) {
        case UInt8(ascii: "{"): return .object(try parseObject(depth: depth + 1))
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw error(.malformed, "unexpected character")
        }
    }

    private mutating func literal(_ word: StaticString) throws(JSONError) {
        let n = word.utf8CodeUnitCount
        guard i + n <= end else { throw error(.malformed, "unexpected end of input") }
        let w = word.utf8Start
        for k in 0..<n where byte(i + k) != w[k] { throw error(.malformed, "invalid literal") }
        i += n
    }

    private mutating func parseObject(depth: Int) throws(JSONError) -> Fields {
        guard depth <= Self.maxDepth else { throw error(.tooDeep, "nesting deeper than \(Self.maxDepth)") }
        i += 1
        var fields = Fields()
        // Room from the start: no regrowth while parsing a small object, nor (a record's
        // top level) while stages add their fields to it.
        fields.reserveCapacity(depth == 1 ? 24 : 4)
        skipWhitespace()
        if i < end, byte(i) == UInt8(ascii: "}") { i += 1; return fields }
        while true {
            skipWhitespace()
            guard i < end, byte(i) == UInt8(ascii: "\"") else { throw error(.malformed, "expected a string key") }
            let keyStart = i + 1
            let key = try parseString(name: true)
            // The name's bits from its bytes in the line when it had no escapes (its text is
            // as long as its bytes: an escape is always longer than what it stands for), not
            // read back from the string: every key of every object comes here.
            let keyBytes = i - 1 - keyStart
            let bits = keyBytes == key.utf8.count
                ? Fields.nameBits(count: keyBytes, first: keyBytes == 0 ? 0 : byte(keyStart), last: keyBytes == 0 ? 0 : byte(i - 2))
                : Fields.nameBits(key)
            skipWhitespace()
            guard i < end, byte(i) == UInt8(ascii: ":") else { throw error(.malformed, "expected ':'") }
            i += 1
            skipWhitespace()
            let value = try parseValue(depth: depth)
            // A duplicate key: the last value wins, at the first one's place. (The object's
            // name bits answer most new keys without comparing them with earlier keys.)
            fields.set(value, key, bits: bits)
            skipWhitespace()
            guard i < end else { throw error(.malformed, "unexpected end of input in an object") }
            let c = byte(i)
            i += 1
            if c == UInt8(ascii: ",") { continue }
            if c == UInt8(ascii: "}") { return fields }
            i -= 1
            throw error(.malformed, "expected ',' or '}'")
        }
    }

    private mutating func parseArray(depth: Int) throws(JSONError) -> Value {
        guard depth <= Self.maxDepth else { throw error(.tooDeep, "nesting deeper than \(Self.maxDepth)") }
        i += 1
        var items: [Value] = []
        skipWhitespace()
        if i < end, byte(i) == UInt8(ascii: "]") { i += 1; return .array(items) }
        while true {
            skipWhitespace()
            items.append(try parseValue(depth: depth))
            skipWhitespace()
            guard i < end else { throw error(.malformed, "unexpected end of input in an array") }
            let c = byte(i)
            i += 1
            if c == UInt8(ascii: ",") { continue }
            if c == UInt8(ascii: "]") { return .array(items) }
            i -= 1
            throw error(.malformed, "expected ',' or ']'")
        }
    }

    /// The string of a text without escapes (`ascii`: known to be ASCII, not validated);
    /// `start` is its offset, for the error.
    @inline(__always)
    private static func text(_ buffer: UnsafeBufferPointer<UInt8>, ascii: Bool, at start: Int) throws(JSONError) -> String {
        if ascii { return String(decoding: buffer, as: UTF8.self) }
        guard let s = String(validating: buffer, as: UTF8.self) else {
            throw JSONError(kind: .invalidUTF8, offset: start, problem: "invalid UTF-8 in a string")
        }
        return s
    }

    /// A string's text; a field name (`name`) of up to 15 bytes through `strings`.
    private mutating func parseString(name: Bool = false) throws(JSONError) -> String {
        i += 1
        let start = i
        // Fast path: no escapes, plain bytes up to the closing quote.
        var hasEscape = false
        var ascii = true
        // Eight bytes at a time while none is a quote, a backslash, a control character or
        // (while the text is ASCII so far) non-ASCII: a byte equal to one of them is a zero
        // byte of the word XORed with it repeated; a byte below 0x20, a set high bit of
        // `(w - 0x20..) & ~w`; a byte above 0x7F, a set high bit of `w`. The lowest flagged
        // byte is exact (a borrow only reaches the bytes above a flagged one), so the scan
        // goes straight to it, looks at that byte alone, and goes on eight at a time: a
        // non-ASCII text (Turkish, Russian, Chinese error texts) stays in the word loop.
        let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
        while true {
            while i + 8 <= end {
                let w = UnsafeRawPointer(base! + i).loadUnaligned(as: UInt64.self)
                let quote = w ^ (0x22 &* ones), backslash = w ^ (0x5C &* ones)
                let special = ((quote &- ones) & ~quote) | ((backslash &- ones) & ~backslash) | ((w &- 0x20 &* ones) & ~w)
                    | (ascii ? w : 0)
                let hit = special & highs
                if hit != 0 {
                    i += hit.trailingZeroBitCount >> 3
                    break
                }
                i += 8
            }
            guard i < end else { break }
            let c = byte(i)
            if c == UInt8(ascii: "\"") { break }
            if c == UInt8(ascii: "\\") { hasEscape = true; break }
            if c < 0x20 { throw error(.malformed, "control character in a string") }
            if c >= 0x80 { ascii = false }
            i += 1
        }
        guard i < end else { throw error(.malformed, "unterminated string") }
        if !hasEscape {
            let buffer = UnsafeBufferPointer(start: base! + start, count: i - start)
            i += 1
            // Names only: a log's values of up to 15 bytes (IPv4 addresses, fingerprints)
            // are too many, and would push its few names out.
            if name, let strings, buffer.count <= JSONStringCache.longest {
                return try strings.string(buffer, paddedTo: end - start) { () throws(JSONError) -> String in
                    try Self.text(buffer, ascii: ascii, at: start)
                }
            }
            return try Self.text(buffer, ascii: ascii, at: start)
        }
        var out: [UInt8] = Array(UnsafeBufferPointer(start: base! + start, count: i - start))
        while i < end {
            let c = byte(i)
            if c == UInt8(ascii: "\"") {
                i += 1
                guard let s = String(validating: out, as: UTF8.self) else {
                    throw JSONError(kind: .invalidUTF8, offset: start, problem: "invalid UTF-8 in a string")
                }
                return s
            }
            if c < 0x20 { throw error(.malformed, "control character in a string") }
            if c != UInt8(ascii: "\\") { out.append(c); i += 1; continue }
            i += 1
            guard i < end else { break }
            let e = byte(i)
            i += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if (0xD800...0xDBFF).contains(scalar) {
                    guard i + 1 < end, byte(i) == UInt8(ascii: "\\"), byte(i + 1) == UInt8(ascii: "u") else {
                        throw error(.malformed, "unpaired surrogate escape")
                    }
                    i += 2
                    let low = try hex4()
                    guard (0xDC00...0xDFFF).contains(low) else { throw error(.malformed, "unpaired surrogate escape") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00...0xDFFF).contains(scalar) {
                    throw error(.malformed, "unpaired surrogate escape")
                }
                guard let u = Unicode.Scalar(scalar) else { throw error(.malformed, "invalid \\u escape") }
                out.append(contentsOf: UTF8.encode(u)!)
            default:
                i -= 1
                throw error(.malformed, "invalid escape")
            }
        }
        throw error(.malformed, "unterminated string")
    }

    private mutating func hex4() throws(JSONError) -> UInt32 {
        guard i + 4 <= end else { throw error(.malformed, "truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = byte(i)
            let d: UInt8
            switch c {
            case 0x30...0x39: d = c - 0x30
            case 0x41...0x46: d = c - 0x41 + 10
            case 0x61...0x66: d = c - 0x61 + 10
            default: throw error(.malformed, "invalid \\u escape")
            }
            v = v << 4 | UInt32(d)
            i += 1
        }
        return v
    }

    private mutating func parseNumber() throws(JSONError) -> Value {
        let start = i
        var negative = false
        if byte(i) == UInt8(ascii: "-") { negative = true; i += 1 }
        guard i < end, (0x30...0x39).contains(byte(i)) else { throw error(.malformed, "invalid number") }
        var integral = true
        var magnitude: UInt64 = 0
        var overflow = false
        if byte(i) == 0x30 {
            i += 1
            if i < end, (0x30...0x39).contains(byte(i)) { throw error(.malformed, "leading zero in a number") }
        } else {
            while i < end, (0x30...0x39).contains(byte(i)) {
                let (m, o1) = magnitude.multipliedReportingOverflow(by: 10)
                let (a, o2) = m.addingReportingOverflow(UInt64(byte(i) - 0x30))
                if o1 || o2 { overflow = true }
                magnitude = a
                i += 1
            }
        }
        if i < end, byte(i) == UInt8(ascii: ".") {
            integral = false
            i += 1
            guard i < end, (0x30...0x39).contains(byte(i)) else { throw error(.malformed, "invalid number") }
            while i < end, (0x30...0x39).contains(byte(i)) { i += 1 }
        }
        if i < end, byte(i) == UInt8(ascii: "e") || byte(i) == UInt8(ascii: "E") {
            integral = false
            i += 1
            if i < end, byte(i) == UInt8(ascii: "+") || byte(i) == UInt8(ascii: "-") { i += 1 }
            guard i < end, (0x30...0x39).contains(byte(i)) else { throw error(.malformed, "invalid number") }
            while i < end, (0x30...0x39).contains(byte(i)) { i += 1 }
        }
        if integral, !overflow {
            if negative {
                if magnitude <= UInt64(Int64.max) + 1 {
                    return .int(magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude))
                }
            } else if magnitude <= UInt64(Int64.max) {
                return .int(Int64(magnitude))
            }
        }
        if integral {
            // Beyond Int64: keep the digits exactly.
            return .largeInteger(String(decoding: UnsafeBufferPointer(start: base! + start, count: i - start), as: UTF8.self))
        }
        // strtod over a NUL-terminated copy of the number's bytes.
        var buffer = [CChar](repeating: 0, count: i - start + 1)
        for k in start..<i { buffer[k - start] = CChar(bitPattern: byte(k)) }
        let d = buffer.withUnsafeBufferPointer { strtod($0.baseAddress!, nil) }
        return .double(d)
    }
}

/// Writes `Value`s as compact JSON text: keys in their order, no spaces, non-ASCII
/// characters as they are, the escapes of RFC 8259 for `"`, `\` and control characters
/// (the same text as Python's `json.dumps(v, ensure_ascii=False, separators=(",", ":"))`).
/// The short strings (up to 15 UTF-8 bytes, which a `String` holds in place) a parser
/// made last, by their bytes, in 1,024 slots: the field names and the values a log repeats
/// on every line (`timestamp`, `POST`, `error`) are made once and then copied, not
/// validated and made again. One per reading thread: not `Sendable`.
public final class JSONStringCache {
    public static let longest = 15
    private static let slotBits = 10
    /// Per slot: the bytes (zero-padded, little-endian) with the length in the top byte,
    /// and the string.
    private let keys: UnsafeMutablePointer<(UInt64, UInt64)>
    private let values: UnsafeMutablePointer<String>

    public init() {
        keys = .allocate(capacity: 1 << Self.slotBits)
        keys.initialize(repeating: (0, 0), count: 1 << Self.slotBits) // length 0: the empty string
        values = .allocate(capacity: 1 << Self.slotBits)
        values.initialize(repeating: "", count: 1 << Self.slotBits)
    }

    deinit {
        keys.deallocate()
        values.deinitialize(count: 1 << Self.slotBits)
        values.deallocate()
    }

    /// The string of `bytes` (at most `longest` of them): the one made before from the same
    /// bytes, or `make()`'s, kept for the next time. `readable` bytes from the start may be
    /// read: with fewer than 16 (two words, masked to the string's bytes), `make()`'s.
    @inline(__always)
    func string<E: Error>(_ bytes: UnsafeBufferPointer<UInt8>, paddedTo readable: Int, make: () throws(E) -> String) throws(E) -> String {
        let n = bytes.count
        guard readable >= 16, let base = bytes.baseAddress else { return try make() }
        let raw = UnsafeRawPointer(base)
        let w0 = UInt64(littleEndian: raw.loadUnaligned(as: UInt64.self))
        let w1 = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        var words = (n >= 8 ? w0 : w0 & ((1 << UInt64(8 * n)) &- 1), n <= 8 ? 0 : w1 & ((1 << UInt64(8 * (n - 8))) &- 1))
        words.1 |= UInt64(n) << 56
        let slot = Int(truncatingIfNeeded: ((words.0 &* 0x9E37_79B9_7F4A_7C15) ^ (words.1 &* 0xC2B2_AE3D_27D4_EB4F)) >> (64 - Self.slotBits))
        if keys[slot] == words { return values[slot] }
        let made = try make()
        keys[slot] = words
        values[slot] = made
        return made
    }
}

public enum JSONWriter {
    /// The JSON text of a value, made in one allocation: the text's length is counted
    /// first, then the text is written straight into the string's own storage. (Written
    /// into a growing array and then copied, the three JSON columns of the benchmark's
    /// pipeline cost ~5 allocations a record.)
    public static func string(_ value: Value) -> String {
        var counter = CountingOutput()
        emit(value, into: &counter)
        return String(unsafeUninitializedCapacity: counter.count) { buffer in
            var out = BufferOutput(buffer: buffer)
            emit(value, into: &out)
            return out.count
        }
    }

    public static func write(_ value: Value, into out: inout [UInt8]) {
        emit(value, into: &out)
    }

    /// The value's JSON text appended to a row's bytes.
    public static func write(_ value: Value, into out: inout RowBytes) {
        emit(value, into: &out)
    }

    /// The value's JSON text appended with each quote written twice: a CSV field's
    /// content, for a writer that knows the text has a quote (a string, an object with a
    /// field) and so needs the field quoted, without scanning it afterwards.
    public static func writeQuotesDoubled(_ value: Value, into out: inout RowBytes) {
        withUnsafeMutablePointer(to: &out) { pointer in
            var doubling = QuoteDoubling(out: pointer)
            emit(value, into: &doubling)
        }
    }

    static func emit<Out: JSONOutput & ~Copyable>(_ value: Value, into out: inout Out) {
        switch value {
        case .null: out.append("null")
        case .bool(let b): out.append(b ? "true" : "false")
        case .int(let n): out.append(utf8Of: String(n))
        case .double(let d): out.append(utf8Of: formatDouble(d))
        case .largeInteger(let digits): out.append(utf8Of: digits)
        case .string(let s): emitString(s, into: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (k, item) in items.enumerated() {
                if k > 0 { out.append(UInt8(ascii: ",")) }
                emit(item, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let fields):
            out.append(UInt8(ascii: "{"))
            for (k, field) in fields.enumerated() {
                if k > 0 { out.append(UInt8(ascii: ",")) }
                emitString(field.name, into: &out)
                out.append(UInt8(ascii: ":"))
                emit(field.value, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    static let hexDigits = Array("0123456789abcdef".utf8)

    public static func writeString(_ s: String, into out: inout [UInt8]) {
        emitString(s, into: &out)
    }

    static func emitString<Out: JSONOutput & ~Copyable>(_ s: String, into out: inout Out) {
        out.append(UInt8(ascii: "\""))
        // Most strings need no escape: appended whole from their own UTF-8 buffer.
        let plain = s.utf8.withContiguousStorageIfAvailable { bytes in
            for c in bytes where c < 0x20 || c == 0x22 || c == 0x5C { return false }
            out.append(contentsOf: bytes)
            return true
        }
        if plain == true {
            out.append(UInt8(ascii: "\""))
            return
        }
        for c in s.utf8 {
            switch c {
            case 0x22: out.append(0x5C); out.append(0x22)
            case 0x5C: out.append(0x5C); out.append(0x5C)
            case 0x0A: out.append(0x5C); out.append(UInt8(ascii: "n"))
            case 0x0D: out.append(0x5C); out.append(UInt8(ascii: "r"))
            case 0x09: out.append(0x5C); out.append(UInt8(ascii: "t"))
            case 0x08: out.append(0x5C); out.append(UInt8(ascii: "b"))
            case 0x0C: out.append(0x5C); out.append(UInt8(ascii: "f"))
            case 0..<0x20:
                out.append("\\u00")
                out.append(hexDigits[Int(c >> 4)])
                out.append(hexDigits[Int(c & 0xF)])
            default: out.append(c)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// Shortest round-trip text of a finite double, in the notation of Python's `repr`:
    /// exponent form below 1e-4 or from 1e16 on (`1e-05`, `1e+16`), `1.0` for integral values.
    /// Non-finite values, which JSON cannot hold, are written as `null`.
    public static func formatDouble(_ d: Double) -> String {
        guard d.isFinite else { return "null" }
        if d == 0 { return d.sign == .minus ? "-0.0" : "0.0" }
        // Swift's description is the shortest round-trip digit string; re-lay it out.
        let text = d.description
        var mantissa = text
        var exponent = 0
        if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            mantissa = String(text[..<e])
            exponent = Int(text[text.index(after: e)...])!
        }
        let negative = mantissa.hasPrefix("-")
        if negative { mantissa.removeFirst() }
        var digitsText = mantissa
        var pointPos = digitsText.count
        if let dot = digitsText.firstIndex(of: ".") {
            pointPos = digitsText.distance(from: digitsText.startIndex, to: dot)
            digitsText.remove(at: dot)
        }
        // Strip leading zeros (adjusting the point) and trailing zeros.
        while digitsText.count > 1, digitsText.first == "0" { digitsText.removeFirst(); pointPos -= 1 }
        while digitsText.count > 1, digitsText.last == "0" { digitsText.removeLast() }
        let decimalExponent = pointPos + exponent - 1 // exponent of the first digit
        var result: String
        if decimalExponent < -4 || decimalExponent >= 16 {
            result = String(digitsText.first!)
            if digitsText.count > 1 { result += "." + digitsText.dropFirst() }
            result += "e" + (decimalExponent < 0 ? "-" : "+") + pad(abs(decimalExponent), 2)
        } else if decimalExponent < 0 {
            result = "0." + String(repeating: "0", count: -decimalExponent - 1) + digitsText
        } else {
            let intCount = decimalExponent + 1
            if digitsText.count <= intCount {
                result = digitsText + String(repeating: "0", count: intCount - digitsText.count) + ".0"
            } else {
                let cut = digitsText.index(digitsText.startIndex, offsetBy: intCount)
                result = digitsText[..<cut] + "." + digitsText[cut...]
            }
        }
        return negative ? "-" + result : result
    }
}

/// Where `JSONWriter` writes: a growing array, a count of bytes (the first pass of
/// `JSONWriter.string`), or a buffer of exactly the counted size (its second pass).
protocol JSONOutput: ~Copyable {
    mutating func append(_ byte: UInt8)
    mutating func append(contentsOf bytes: UnsafeBufferPointer<UInt8>)
}

extension JSONOutput where Self: ~Copyable {
    @inline(__always) mutating func append(_ text: StaticString) {
        append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    @inline(__always) mutating func append(utf8Of text: String) {
        var text = text
        text.withUTF8 { append(contentsOf: $0) }
    }
}

extension Array: JSONOutput where Element == UInt8 {}

extension RowBytes: JSONOutput {}

/// Writes into a row's bytes with each quote twice (`writeQuotesDoubled`). `emit` writes a
/// quote only as a byte of its own: the runs of bytes it appends (a string with nothing
/// to escape, a number, a literal) hold none.
struct QuoteDoubling: JSONOutput {
    let out: UnsafeMutablePointer<RowBytes>
    @inline(__always) mutating func append(_ byte: UInt8) {
        if byte == 0x22 { out.pointee.append(0x22) }
        out.pointee.append(byte)
    }
    @inline(__always) mutating func append(contentsOf bytes: UnsafeBufferPointer<UInt8>) {
        out.pointee.append(contentsOf: bytes)
    }
}

struct CountingOutput: JSONOutput {
    var count = 0
    @inline(__always) mutating func append(_ byte: UInt8) { count += 1 }
    @inline(__always) mutating func append(contentsOf bytes: UnsafeBufferPointer<UInt8>) { count += bytes.count }
}

struct BufferOutput: JSONOutput {
    let buffer: UnsafeMutableBufferPointer<UInt8>
    var count = 0
    @inline(__always) mutating func append(_ byte: UInt8) {
        buffer[count] = byte
        count += 1
    }
    @inline(__always) mutating func append(contentsOf bytes: UnsafeBufferPointer<UInt8>) {
        guard let from = bytes.baseAddress, !bytes.isEmpty else { return }
        (buffer.baseAddress! + count).update(from: from, count: bytes.count)
        count += bytes.count
    }
}
