#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only view of one data section (the data section, or the metadata, which is
/// encoded the same way) and its decoder. Offsets, and the targets of pointers, are
/// relative to the section's start; every read is checked against `size`. Reads go
/// through the file's page cache: the caller holds its lock.
///
/// Limits, as MaxMind's readers apply them, keep a crafted file from costing more
/// than a bounded amount of work or memory per decode: container nesting (which
/// also stops pointer cycles, since a pointer may not point to a pointer), values
/// per record (which stops pointer fan-out) and string/bytes payload per record.
struct DataSection {
    static let maxDepth = 512
    static let maxValues = 1 << 16
    static let maxPayloadBytes = 1 << 21

    let file: PagedFile
    /// The section's first byte in the file.
    let start: Int
    let size: Int

    /// A field's control information.
    struct Control {
        /// 1...15 (extended types resolved).
        var type: UInt8
        /// Payload bytes; entries for maps and arrays; the target for pointers.
        var size: Int
        /// Where the payload starts; for a pointer, where the next field starts.
        var payload: Int
    }

    /// What one decode may still use.
    struct Budget {
        var values = DataSection.maxValues - 1
        var payloadBytes = DataSection.maxPayloadBytes
    }

    @inline(__always)
    func byte(_ offset: Int) -> UInt8 {
        file.byte(start + offset)
    }

    /// `count` (0...8) bytes at `offset` as a big-endian unsigned integer; unchecked.
    @inline(__always)
    func uint(at offset: Int, count: Int) -> UInt64 {
        var v: UInt64 = 0
        var i = 0
        while i < count {
            v = v << 8 | UInt64(byte(offset + i))
            i += 1
        }
        return v
    }

    /// Reads the control byte(s) of the field at `offset`.
    @inline(__always)
    func control(at offset: Int) throws(DataFault) -> Control {
        guard offset >= 0, offset < size else { throw .outOfBounds(offset: offset) }
        let c = byte(offset)
        var p = offset + 1
        var type = c >> 5
        if type == 1 {
            // 001SSVVV: SS+1 more bytes; VVV are high bits except for 4-byte pointers.
            let n = Int((c >> 3) & 3) + 1
            guard n <= size - p else { throw .outOfBounds(offset: offset) }
            var v = Int(uint(at: p, count: n))
            let high = Int(c & 7)
            switch n {
            case 1: v |= high << 8
            case 2: v = (v | high << 16) + 2048
            case 3: v = (v | high << 24) + 526_336
            default: break
            }
            return Control(type: 1, size: v, payload: p + n)
        }
        if type == 0 {
            guard p < size else { throw .outOfBounds(offset: offset) }
            let extended = Int(byte(p)) + 7
            p += 1
            guard extended >= 8, extended <= 15 else { throw .invalidType(offset: offset, type: extended) }
            type = UInt8(extended)
        }
        var s = Int(c & 0x1F)
        if s >= 29 {
            let n = s - 28
            guard n <= size - p else { throw .outOfBounds(offset: offset) }
            let v = Int(uint(at: p, count: n))
            p += n
            s = n == 1 ? 29 + v : (n == 2 ? 285 + v : 65_821 + v)
        }
        return Control(type: type, size: s, payload: p)
    }

    /// Follows `c` when it is a pointer: the target's control and offset.
    @inline(__always)
    func resolve(_ c: Control, at offset: Int) throws(DataFault) -> (Control, Int) {
        guard c.type == 1 else { return (c, offset) }
        let target = c.size
        guard target < size else { throw .pointerOutOfBounds(offset: offset, target: target) }
        let t = try control(at: target)
        guard t.type != 1 else { throw .pointerToPointer(offset: target) }
        return (t, target)
    }

    /// The bytes of the map key at `offset` (a string, or a pointer to one) and where the
    /// field after the key starts.
    @inline(__always)
    func key(at offset: Int) throws(DataFault) -> (start: Int, count: Int, next: Int) {
        let c = try control(at: offset)
        let (t, at) = try resolve(c, at: offset)
        guard t.type == 2 else { throw .keyNotString(offset: at, type: t.type) }
        guard t.size <= size - t.payload else { throw .payloadPastEnd(offset: at, type: 2, size: t.size) }
        return (t.payload, t.size, c.type == 1 ? c.payload : t.payload + t.size)
    }

    /// Where the field after the one at `offset` starts, without decoding it: walks
    /// nested maps and arrays with a counter (no recursion); pointers are not followed.
    func skip(at offset: Int) throws(DataFault) -> Int {
        var pos = offset
        var pending = 1
        while pending > 0 {
            pending -= 1
            let c = try control(at: pos)
            switch c.type {
            case 1:
                pos = c.payload
            case 7:
                guard c.size <= (size - c.payload) / 2 else { throw .containerPastEnd(offset: pos, type: 7, count: c.size) }
                pending += 2 * c.size
                pos = c.payload
            case 11:
                guard c.size <= size - c.payload else { throw .containerPastEnd(offset: pos, type: 11, count: c.size) }
                pending += c.size
                pos = c.payload
            case 12, 13:
                throw .deprecatedType(offset: pos, type: c.type)
            case 14:
                guard c.size <= 1 else { throw .badSize(offset: pos, type: 14, size: c.size) }
                pos = c.payload
            default:
                guard c.size <= size - c.payload else { throw .payloadPastEnd(offset: pos, type: c.type, size: c.size) }
                pos = c.payload + c.size
            }
        }
        return pos
    }

    /// The offset of the field reached from the value at `offset` by one path component:
    /// a map's value under the key equal to `component` (compared as bytes, siblings
    /// skipped), or an array's element at the decimal index `component` (negative from
    /// the end). Nil when the key or index is absent or the value is not a container.
    func find(from offset: Int, component: UnsafeBufferPointer<UInt8>) throws(DataFault) -> Int? {
        let c0 = try control(at: offset)
        let (c, at) = try resolve(c0, at: offset)
        switch c.type {
        case 7:
            guard c.size <= (size - c.payload) / 2 else { throw .containerPastEnd(offset: at, type: 7, count: c.size) }
            var pos = c.payload
            for _ in 0..<c.size {
                let k = try key(at: pos)
                if k.count == component.count,
                   k.count == 0 || memcmp(file.bytes(at: start + k.start, count: k.count), component.baseAddress!, k.count) == 0 {
                    return k.next
                }
                pos = try skip(at: k.next)
            }
            return nil
        case 11:
            guard c.size <= size - c.payload else { throw .containerPastEnd(offset: at, type: 11, count: c.size) }
            guard let index = Self.index(component) else { return nil }
            let i = index < 0 ? c.size + index : index
            guard i >= 0, i < c.size else { return nil }
            var pos = c.payload
            for _ in 0..<i { pos = try skip(at: pos) }
            return pos
        default:
            return nil
        }
    }

    /// A decimal integer, optionally negative; nil otherwise (or when absurdly long).
    static func index(_ b: UnsafeBufferPointer<UInt8>) -> Int? {
        guard !b.isEmpty, b.count <= 10 else { return nil }
        var negative = false
        var i = 0
        if b[0] == UInt8(ascii: "-") {
            negative = true
            i = 1
            guard b.count > 1 else { return nil }
        }
        var v = 0
        while i < b.count {
            let d = Int(b[i]) - Int(UInt8(ascii: "0"))
            guard d >= 0, d <= 9 else { return nil }
            v = v * 10 + d
            i += 1
        }
        return negative ? -v : v
    }

    /// A map or array being decoded.
    private struct Frame {
        var isMap: Bool
        var remaining: Int
        var entries: [MMDBMapEntry] = []
        var items: [MMDBValue] = []
        var key = ""
        /// When the container was reached through a pointer: where the field after the
        /// pointer starts.
        var resume: Int?

        var value: MMDBValue { isMap ? .map(entries) : .array(items) }
    }

    /// Decodes the field at `offset` (following a pointer); returns the value and where
    /// the next field starts. Iterative, with an explicit stack of open containers, so
    /// that nesting costs heap, not thread stack.
    func decode(at offset: Int, budget: inout Budget) throws(DataFault) -> (MMDBValue, Int) {
        var stack: [Frame] = []
        var pos = offset
        while true {
            // `pos` is a value's field (a map's key has been read already).
            var c = try control(at: pos)
            var at = pos
            var resume: Int?
            if c.type == 1 {
                resume = c.payload
                (c, at) = try resolve(c, at: pos)
            }
            var value: MMDBValue
            var next: Int
            switch c.type {
            case 7, 11:
                let isMap = c.type == 7
                guard stack.count < Self.maxDepth else { throw .tooDeep(offset: at) }
                guard c.size <= (size - c.payload) / (isMap ? 2 : 1) else {
                    throw .containerPastEnd(offset: at, type: c.type, count: c.size)
                }
                budget.values -= isMap ? 2 * c.size : c.size
                guard budget.values >= 0 else { throw .tooManyValues(offset: at) }
                if c.size == 0 {
                    value = isMap ? .map([]) : .array([])
                    next = resume ?? c.payload
                } else {
                    var frame = Frame(isMap: isMap, remaining: c.size, resume: resume)
                    if isMap { frame.entries.reserveCapacity(c.size) } else { frame.items.reserveCapacity(c.size) }
                    pos = c.payload
                    if isMap { (frame.key, pos) = try readKey(at: pos, budget: &budget) }
                    stack.append(frame)
                    continue
                }
            case 12, 13:
                throw .deprecatedType(offset: at, type: c.type)
            case 14:
                guard c.size <= 1 else { throw .badSize(offset: at, type: 14, size: c.size) }
                value = .boolean(c.size == 1)
                next = resume ?? c.payload
            default:
                guard c.size <= size - c.payload else { throw .payloadPastEnd(offset: at, type: c.type, size: c.size) }
                value = try scalar(c, at: at, budget: &budget)
                next = resume ?? c.payload + c.size
            }
            // Hand the finished value to the open containers, closing those it completes.
            while true {
                guard !stack.isEmpty else { return (value, next) }
                let top = stack.count - 1
                if stack[top].isMap {
                    stack[top].entries.append(MMDBMapEntry(key: stack[top].key, value: value))
                } else {
                    stack[top].items.append(value)
                }
                stack[top].remaining -= 1
                if stack[top].remaining > 0 {
                    pos = next
                    if stack[top].isMap { (stack[top].key, pos) = try readKey(at: pos, budget: &budget) }
                    break
                }
                let done = stack.removeLast()
                value = done.value
                next = done.resume ?? next
            }
        }
    }

    /// A map key as a String, and where its value starts.
    @inline(__always)
    private func readKey(at offset: Int, budget: inout Budget) throws(DataFault) -> (String, Int) {
        let k = try key(at: offset)
        budget.payloadBytes -= k.count
        guard budget.payloadBytes >= 0 else { throw .payloadTooLarge(offset: offset) }
        guard let name = string(start: k.start, count: k.count) else { throw .invalidUTF8(offset: offset) }
        return (name, k.next)
    }

    /// A string, number or bytes value whose payload is known to be in bounds.
    @inline(__always)
    func scalar(_ c: Control, at offset: Int, budget: inout Budget) throws(DataFault) -> MMDBValue {
        let p = c.payload, n = c.size
        switch c.type {
        case 2:
            budget.payloadBytes -= n
            guard budget.payloadBytes >= 0 else { throw .payloadTooLarge(offset: offset) }
            guard let s = string(start: p, count: n) else { throw .invalidUTF8(offset: offset) }
            return .string(s)
        case 3:
            guard n == 8 else { throw .badSize(offset: offset, type: 3, size: n) }
            return .double(Double(bitPattern: uint(at: p, count: 8)))
        case 4:
            budget.payloadBytes -= n
            guard budget.payloadBytes >= 0 else { throw .payloadTooLarge(offset: offset) }
            return .bytes(n == 0 ? [] : Array(UnsafeRawBufferPointer(start: file.bytes(at: start + p, count: n), count: n)))
        case 5:
            guard n <= 2 else { throw .badSize(offset: offset, type: 5, size: n) }
            return .uint16(UInt16(uint(at: p, count: n)))
        case 6:
            guard n <= 4 else { throw .badSize(offset: offset, type: 6, size: n) }
            return .uint32(UInt32(uint(at: p, count: n)))
        case 8:
            guard n <= 4 else { throw .badSize(offset: offset, type: 8, size: n) }
            // Shorter than 4 bytes is positive; 4 bytes carry the sign (two's complement).
            return .int32(Int32(bitPattern: UInt32(uint(at: p, count: n))))
        case 9:
            guard n <= 8 else { throw .badSize(offset: offset, type: 9, size: n) }
            return .uint64(uint(at: p, count: n))
        case 10:
            guard n <= 16 else { throw .badSize(offset: offset, type: 10, size: n) }
            let lowCount = min(n, 8)
            let low = uint(at: p + n - lowCount, count: lowCount)
            let high = uint(at: p, count: n - lowCount)
            return .uint128(high: high, low: low)
        case 15:
            guard n == 4 else { throw .badSize(offset: offset, type: 15, size: n) }
            return .float(Float(bitPattern: UInt32(uint(at: p, count: 4))))
        default:
            throw .invalidType(offset: offset, type: Int(c.type))
        }
    }

    /// Validated UTF-8 at an in-bounds range; nil when invalid.
    @inline(__always)
    func string(start offset: Int, count: Int) -> String? {
        if count == 0 { return "" }
        return String(validating: UnsafeRawBufferPointer(start: file.bytes(at: start + offset, count: count), count: count), as: UTF8.self)
    }
}
