/// An IPv4 or IPv6 address, parsed from text without Foundation or allocation.
///
/// The address is kept as 128 bits in two big-endian halves; an IPv4 address keeps
/// its 32 bits in the low half of `low` and has `family == .v4`. Parsing accepts
/// IPv4 dotted quads (four decimal parts 0...255, no leading zeros, as `inet_pton`)
/// and every IPv6 text form of RFC 4291: full, `::`-compressed, upper or lower case
/// hex, and a trailing embedded IPv4 part (`::ffff:1.2.3.4`, `64:ff9b::1.2.3.4`).
/// Zones (`fe80::1%eth0`), brackets, prefixes and surrounding spaces are rejected.
public struct IPAddress: Sendable, Hashable, CustomStringConvertible {
    /// The address family.
    public enum Family: Sendable, Hashable {
        case v4, v6
    }

    /// IPv4 or IPv6.
    public let family: Family
    /// The high 64 bits of an IPv6 address (0 for IPv4).
    public let high: UInt64
    /// The low 64 bits of an IPv6 address, or the IPv4 address in the low 32 bits.
    public let low: UInt64

    /// An IPv4 address from its 32 bits (`0x01020304` is 1.2.3.4).
    public init(v4 bits: UInt32) {
        family = .v4
        high = 0
        low = UInt64(bits)
    }

    /// An IPv6 address from its 128 bits.
    public init(v6High high: UInt64, low: UInt64) {
        family = .v6
        self.high = high
        self.low = low
    }

    /// Parses an IPv4 or IPv6 address; nil when `text` is not exactly one address.
    public init?(_ text: String) {
        var copy = text
        let parsed = copy.withUTF8 { IPAddress.parse($0) }
        guard let parsed else { return nil }
        self = parsed
    }

    /// Parses an IPv4 or IPv6 address from its text as UTF-8 bytes; nil when invalid.
    public init?(utf8 bytes: UnsafeBufferPointer<UInt8>) {
        guard let parsed = IPAddress.parse(bytes) else { return nil }
        self = parsed
    }

    /// The 32 bits of an IPv4 address, nil for IPv6 (see `ipv4Mapped` for `::ffff:a.b.c.d`).
    public var v4: UInt32? { family == .v4 ? UInt32(truncatingIfNeeded: low) : nil }

    /// For an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, i.e. `::ffff:0:0/96`) the IPv4
    /// address it holds; nil otherwise.
    public var ipv4Mapped: IPAddress? {
        guard family == .v6, high == 0, low >> 32 == 0xFFFF else { return nil }
        return IPAddress(v4: UInt32(truncatingIfNeeded: low))
    }

    /// The number of bits in the address: 32 or 128.
    public var bitCount: Int { family == .v4 ? 32 : 128 }

    /// The 16 (IPv6) or 4 (IPv4) bytes of the address, most significant first.
    public var bytes: [UInt8] {
        if family == .v4 { return (0..<4).map { UInt8(truncatingIfNeeded: low >> (24 - 8 * $0)) } }
        return (0..<8).map { UInt8(truncatingIfNeeded: high >> (56 - 8 * $0)) }
            + (0..<8).map { UInt8(truncatingIfNeeded: low >> (56 - 8 * $0)) }
    }

    /// The first address of the network of `prefixLength` bits that holds this address
    /// (the lower bits cleared). `prefixLength` is clamped to 0...bitCount.
    public func masked(to prefixLength: Int) -> IPAddress {
        let p = max(0, min(prefixLength, bitCount))
        if family == .v4 {
            let mask: UInt32 = p == 0 ? 0 : ~UInt32(0) << (32 - p)
            return IPAddress(v4: UInt32(truncatingIfNeeded: low) & mask)
        }
        let highMask: UInt64 = p >= 64 ? ~0 : (p == 0 ? 0 : ~UInt64(0) << (64 - p))
        let lowMask: UInt64 = p <= 64 ? 0 : (p == 128 ? ~0 : ~UInt64(0) << (128 - p))
        return IPAddress(v6High: high & highMask, low: low & lowMask)
    }

    /// The last address of the network of `prefixLength` bits that holds this address
    /// (the lower bits set).
    public func lastAddress(prefixLength: Int) -> IPAddress {
        let p = max(0, min(prefixLength, bitCount))
        if family == .v4 {
            let hostBits: UInt32 = p == 0 ? ~0 : ~(~UInt32(0) << (32 - p))
            return IPAddress(v4: UInt32(truncatingIfNeeded: low) | (p == 32 ? 0 : hostBits))
        }
        let highHost: UInt64 = p >= 64 ? 0 : (p == 0 ? ~0 : ~(~UInt64(0) << (64 - p)))
        let lowHost: UInt64 = p <= 64 ? ~0 : (p == 128 ? 0 : ~(~UInt64(0) << (128 - p)))
        return IPAddress(v6High: high | highHost, low: low | lowHost)
    }

    /// IPv4 as a dotted quad; IPv6 in the RFC 5952 form (lower case, the longest run of
    /// two or more zero groups as `::`, `::ffff:a.b.c.d` for IPv4-mapped addresses).
    public var description: String {
        if family == .v4 { return Self.dotted(UInt32(truncatingIfNeeded: low)) }
        if let mapped = ipv4Mapped, let v4 = mapped.v4 { return "::ffff:" + Self.dotted(v4) }
        var groups = [UInt16](repeating: 0, count: 8)
        for i in 0..<4 {
            groups[i] = UInt16(truncatingIfNeeded: high >> (48 - 16 * i))
            groups[4 + i] = UInt16(truncatingIfNeeded: low >> (48 - 16 * i))
        }
        var bestStart = -1, bestLength = 0, runStart = -1
        for i in 0...8 {
            if i < 8, groups[i] == 0 {
                if runStart < 0 { runStart = i }
            } else if runStart >= 0 {
                if i - runStart > bestLength { bestStart = runStart; bestLength = i - runStart }
                runStart = -1
            }
        }
        if bestLength < 2 { bestStart = -1 }
        var out = ""
        var i = 0
        while i < 8 {
            if i == bestStart {
                out += "::"
                i += bestLength
                continue
            }
            if !out.isEmpty, !out.hasSuffix(":") { out += ":" }
            out += String(groups[i], radix: 16)
            i += 1
        }
        return out
    }

    private static func dotted(_ v: UInt32) -> String {
        "\(v >> 24).\((v >> 16) & 0xFF).\((v >> 8) & 0xFF).\(v & 0xFF)"
    }

    // MARK: - Parsing

    @inline(__always)
    private static func hexValue(_ c: UInt8) -> UInt32? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return UInt32(c &- UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return UInt32(c &- UInt8(ascii: "a") &+ 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return UInt32(c &- UInt8(ascii: "A") &+ 10)
        default: return nil
        }
    }

    static func parse(_ b: UnsafeBufferPointer<UInt8>) -> IPAddress? {
        guard !b.isEmpty, b.count <= 45 else { return nil }
        var hasColon = false
        for c in b where c == UInt8(ascii: ":") {
            hasColon = true
            break
        }
        if !hasColon {
            guard let v4 = parseV4(b, from: 0) else { return nil }
            return IPAddress(v4: v4)
        }
        return parseV6(b)
    }

    /// Four decimal parts 0...255 separated by dots, from `start` to the end of `b`.
    static func parseV4(_ b: UnsafeBufferPointer<UInt8>, from start: Int) -> UInt32? {
        var result: UInt32 = 0
        var part: UInt32 = 0
        var digits = 0
        var parts = 0
        var i = start
        while i <= b.count {
            if i == b.count || b[i] == UInt8(ascii: ".") {
                guard digits > 0 else { return nil }
                result = result << 8 | part
                parts += 1
                if i < b.count, parts == 4 { return nil }
                part = 0
                digits = 0
            } else {
                let c = b[i]
                guard c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9") else { return nil }
                // No leading zeros ("01" is octal to some parsers): reject, as inet_pton does.
                if digits == 1, part == 0 { return nil }
                part = part * 10 + UInt32(c - UInt8(ascii: "0"))
                digits += 1
                guard part <= 255 else { return nil }
            }
            i += 1
        }
        return parts == 4 ? result : nil
    }

    static func parseV6(_ b: UnsafeBufferPointer<UInt8>) -> IPAddress? {
        // Groups before and after "::" are collected separately, then placed.
        var head: (UInt64, UInt64) = (0, 0)  // groups before "::", shifted in from the right
        var headCount = 0
        var tail: (UInt64, UInt64) = (0, 0)  // groups after "::"
        var tailCount = 0
        var sawDoubleColon = false
        var i = 0
        let n = b.count

        @inline(__always) func push(_ g: UInt32, _ acc: inout (UInt64, UInt64)) {
            acc.0 = acc.0 << 16 | acc.1 >> 48
            acc.1 = acc.1 << 16 | UInt64(g)
        }

        if b[0] == UInt8(ascii: ":") {
            guard n >= 2, b[1] == UInt8(ascii: ":") else { return nil }
            sawDoubleColon = true
            i = 2
            if i == n { return IPAddress(v6High: 0, low: 0) }
        }
        while i < n {
            // One group: hex digits, or an embedded IPv4 address at the very end.
            let groupStart = i
            var value: UInt32 = 0
            var digits = 0
            while i < n, let h = hexValue(b[i]) {
                value = value << 4 | h
                digits += 1
                i += 1
            }
            if i < n, b[i] == UInt8(ascii: ".") {
                guard let v4 = parseV4(b, from: groupStart) else { return nil }
                if sawDoubleColon {
                    guard tailCount + headCount <= 5 else { return nil }
                    push(v4 >> 16, &tail); push(v4 & 0xFFFF, &tail)
                    tailCount += 2
                } else {
                    guard headCount == 6 else { return nil }
                    push(v4 >> 16, &head); push(v4 & 0xFFFF, &head)
                    headCount += 2
                }
                i = n
                break
            }
            guard digits >= 1, digits <= 4 else { return nil }
            if sawDoubleColon {
                push(value, &tail)
                tailCount += 1
            } else {
                push(value, &head)
                headCount += 1
            }
            guard headCount + tailCount <= 8 else { return nil }
            if i == n { break }
            guard b[i] == UInt8(ascii: ":") else { return nil }
            i += 1
            if i < n, b[i] == UInt8(ascii: ":") {
                guard !sawDoubleColon else { return nil }
                sawDoubleColon = true
                i += 1
                if i == n { break }
            } else if i == n {
                return nil  // a trailing single ":"
            }
        }
        let total = headCount + tailCount
        if sawDoubleColon {
            guard total <= 7 else { return nil }
        } else {
            guard total == 8 else { return nil }
        }
        // Shift the head groups to the top: they occupy the first headCount groups.
        let headShift = 16 * (8 - headCount)
        let placedHead = shiftLeft(head, by: headShift)
        return IPAddress(v6High: placedHead.0 | tail.0, low: placedHead.1 | tail.1)
    }

    @inline(__always)
    private static func shiftLeft(_ v: (UInt64, UInt64), by s: Int) -> (UInt64, UInt64) {
        if s == 0 { return v }
        if s >= 128 { return (0, 0) }
        if s >= 64 { return (v.1 << (s - 64), 0) }
        return (v.0 << s | v.1 >> (64 - s), v.1 << s)
    }
}
