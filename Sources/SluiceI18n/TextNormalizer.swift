import Foundation

/// The normalization that both catalog templates and incoming texts go through before
/// they are compared. The result is a byte string (UTF-8); two texts "mean the same
/// message" when their normalized bytes are equal.
///
/// Rules, in order:
/// 1. **Unicode normalization**: a text with any non-ASCII byte is put in canonical
///    decomposition (NFD), so NFC and NFD inputs compare equal. (Pure ASCII skips this.)
/// 2. **Whitespace**: every run of Unicode whitespace (space, tab, newlines, NBSP U+00A0,
///    narrow NBSP U+202F, ideographic space U+3000, ...) becomes one ASCII space; leading
///    and trailing whitespace is dropped. Default-ignorable characters (zero-width space,
///    soft hyphen, BOM, bidi marks, ...) are dropped.
/// 3. **Case**: every scalar is lowercased with the locale-independent Unicode mapping,
///    then folded further with an explicit table, so the process locale never matters:
///    - `I` (U+0049), `İ` (U+0130, which NFD makes `I` + U+0307), `ı` (U+0131) and `i`
///      all fold to plain `i`; a combining dot above (U+0307) right after a folded `i`
///      is dropped. So Turkish "GEÇERSİZ" = "geçersiz" and English "INVALID" = "invalid".
///    - `ß` (U+00DF) and `ẞ` (U+1E9E) fold to `ss`; final sigma `ς` folds to `σ`.
/// 4. **Quotes**: typographic quotes fold to ASCII: `‘ ’ ‚ ‛ ʼ ′` to `'`, `“ ” „ ‟ ″` to `"`.
/// 5. **Trailing punctuation**: any run of sentence-final punctuation at the end (with the
///    whitespace between it) is dropped: `. ! ? : ; …` and `։ 。 ｡ ． ！ ？ ： ； ؟ ۔ । ॥ ። ‼ ⁇ ⁈ ⁉ ‽ ;`(U+037E).
public enum TextNormalizer {
    /// Precomputed per-scalar properties of the Basic Multilingual Plane (built once, ~0.3 MB).
    struct BMPTable: Sendable {
        static let whitespace: UInt8 = 1, ignorable: UInt8 = 2, multiLower: UInt8 = 4
        var lower: [UInt32]
        var flags: [UInt8]
        init() {
            lower = [UInt32](repeating: 0, count: 0x10000)
            flags = [UInt8](repeating: 0, count: 0x10000)
            for v in 0..<0x10000 {
                lower[v] = UInt32(v)
                guard let scalar = Unicode.Scalar(UInt32(v)) else { continue }
                let p = scalar.properties
                if p.isWhitespace { flags[v] |= Self.whitespace }
                if p.isDefaultIgnorableCodePoint { flags[v] |= Self.ignorable }
                if p.changesWhenLowercased {
                    let l = Array(p.lowercaseMapping.unicodeScalars)
                    if l.count == 1 { lower[v] = l[0].value } else { flags[v] |= Self.multiLower }
                }
            }
        }
    }
    static let bmpTable = BMPTable()

    /// The normalized form of `text`, as a String (for display, tests and code-map keys).
    public static func normalize(_ text: String) -> String {
        var out: [UInt8] = []
        normalize(text, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Normalizes `text` into `out` (cleared first). Hot path: no allocation beyond `out`
    /// for pure-ASCII text.
    static func normalize(_ text: String, into out: inout [UInt8]) {
        out.removeAll(keepingCapacity: true)
        var sink = NoOrigins()
        var text = text
        let ascii: Bool = text.withUTF8 { buf in
            for b in buf where b >= 0x80 { return false }
            foldASCII(buf, into: &out, origins: &sink)
            return true
        }
        if !ascii {
            out.removeAll(keepingCapacity: true)
            foldUnicode(text.decomposedStringWithCanonicalMapping.unicodeScalars, into: &out, origins: &sink)
        }
    }

    /// Normalizes and also returns, for each output byte, the index of the source scalar it
    /// came from, plus the source scalars (the NFD form of a non-ASCII text). Used to cut the
    /// captured placeholder values out of the original text.
    static func normalizeWithOrigins(_ text: String) -> (bytes: [UInt8], origins: [Int32], source: [Unicode.Scalar]) {
        var out: [UInt8] = []
        var rec = RecordOrigins()
        let isASCII = text.utf8.allSatisfy { $0 < 0x80 }
        let source: [Unicode.Scalar] = isASCII ? Array(text.unicodeScalars) : Array(text.decomposedStringWithCanonicalMapping.unicodeScalars)
        foldUnicode(source, into: &out, origins: &rec)
        return (out, rec.origins, source)
    }

    // MARK: - Folding loops

    protocol OriginSink {
        mutating func record(_ sourceIndex: Int, count: Int)
        mutating func truncate(to count: Int)
    }
    struct NoOrigins: OriginSink {
        @inline(__always) mutating func record(_ sourceIndex: Int, count: Int) {}
        @inline(__always) mutating func truncate(to count: Int) {}
    }
    struct RecordOrigins: OriginSink {
        var origins: [Int32] = []
        mutating func record(_ sourceIndex: Int, count: Int) {
            for _ in 0..<count { origins.append(Int32(truncatingIfNeeded: sourceIndex)) }
        }
        mutating func truncate(to count: Int) { origins.removeLast(origins.count - count) }
    }

    @inline(__always)
    static func isASCIISpace(_ b: UInt8) -> Bool { b == 0x20 || (b >= 0x09 && b <= 0x0D) }

    @inline(__always)
    static func isASCIITrailingPunct(_ b: UInt8) -> Bool {
        b == 0x2E || b == 0x21 || b == 0x3F || b == 0x3A || b == 0x3B  // . ! ? : ;
    }

    static func foldASCII<S: OriginSink>(_ buf: UnsafeBufferPointer<UInt8>, into out: inout [UInt8], origins: inout S) {
        var pendingSpace = false
        var keep = 0
        for i in 0..<buf.count {
            var b = buf[i]
            if isASCIISpace(b) {
                pendingSpace = !out.isEmpty
                continue
            }
            if pendingSpace {
                out.append(0x20)
                origins.record(i, count: 1)
                pendingSpace = false
            }
            if b >= 0x41 && b <= 0x5A { b &+= 0x20 }
            out.append(b)
            origins.record(i, count: 1)
            if !isASCIITrailingPunct(b) { keep = out.count }
        }
        if keep < out.count {
            out.removeLast(out.count - keep)
            origins.truncate(to: keep)
        }
    }

    static func isTrailingPunct(_ v: UInt32) -> Bool {
        if v < 0x80 { return isASCIITrailingPunct(UInt8(v)) }
        switch v {
        case 0x2026, 0x0589, 0x3002, 0xFF61, 0xFF0E, 0xFF01, 0xFF1F, 0xFF1A, 0xFF1B, 0x061F, 0x06D4,
             0x0964, 0x0965, 0x1362, 0x203C, 0x2047, 0x2048, 0x2049, 0x203D, 0x037E:
            return true
        default:
            return false
        }
    }

    @inline(__always)
    static func append(_ v: UInt32, to out: inout [UInt8]) -> Int {
        switch v {
        case 0..<0x80:
            out.append(UInt8(v)); return 1
        case 0x80..<0x800:
            out.append(UInt8(0xC0 | (v >> 6))); out.append(UInt8(0x80 | (v & 0x3F))); return 2
        case 0x800..<0x10000:
            out.append(UInt8(0xE0 | (v >> 12))); out.append(UInt8(0x80 | ((v >> 6) & 0x3F)))
            out.append(UInt8(0x80 | (v & 0x3F))); return 3
        default:
            out.append(UInt8(0xF0 | (v >> 18))); out.append(UInt8(0x80 | ((v >> 12) & 0x3F)))
            out.append(UInt8(0x80 | ((v >> 6) & 0x3F))); out.append(UInt8(0x80 | (v & 0x3F))); return 4
        }
    }

    static func foldUnicode<C: Collection<Unicode.Scalar>, S: OriginSink>(_ scalars: C, into out: inout [UInt8], origins: inout S) {
        var pendingSpace = false
        var keep = 0
        var lastWasI = false
        var index = -1
        for scalar in scalars {
            index += 1
            var v = scalar.value
            if v < 0x80 {
                let b = UInt8(v)
                if isASCIISpace(b) { pendingSpace = !out.isEmpty; continue }
            } else if v < 0x10000 {
                let f = bmpTable.flags[Int(v)]
                if f & BMPTable.whitespace != 0 { pendingSpace = !out.isEmpty; continue }
                if f & BMPTable.ignorable != 0 { continue }
                if v == 0x0307 && lastWasI { continue }  // i + combining dot above (from İ) -> i
            } else {
                let p = scalar.properties
                if p.isWhitespace { pendingSpace = !out.isEmpty; continue }
                if p.isDefaultIgnorableCodePoint { continue }
            }
            if pendingSpace {
                out.append(0x20)
                origins.record(index, count: 1)
                pendingSpace = false
            }
            // Case folding and the explicit table.
            var emitted = 0
            if v < 0x80 {
                if v >= 0x41 && v <= 0x5A { v += 0x20 }
                emitted = append(v, to: &out)
            } else {
                switch v {
                case 0x0130, 0x0131: v = 0x69; emitted = append(v, to: &out)         // İ ı -> i
                case 0x00DF, 0x1E9E: emitted = append(0x73, to: &out) + append(0x73, to: &out); v = 0x73  // ß ẞ -> ss
                case 0x03C2: v = 0x03C3; emitted = append(v, to: &out)                // ς -> σ
                case 0x2018, 0x2019, 0x201A, 0x201B, 0x02BC, 0x2032: v = 0x27; emitted = append(v, to: &out)
                case 0x201C, 0x201D, 0x201E, 0x201F, 0x2033: v = 0x22; emitted = append(v, to: &out)
                default:
                    if v < 0x10000, bmpTable.flags[Int(v)] & BMPTable.multiLower == 0 {
                        v = bmpTable.lower[Int(v)]
                        emitted = append(v, to: &out)
                    } else if scalar.properties.changesWhenLowercased {
                        for l in scalar.properties.lowercaseMapping.unicodeScalars {
                            var lv = l.value
                            if lv == 0x0131 { lv = 0x69 }
                            if lv == 0x0307 && v == 0x0130 { continue }
                            emitted += append(lv, to: &out)
                            v = lv
                        }
                    } else {
                        emitted = append(v, to: &out)
                    }
                }
            }
            origins.record(index, count: emitted)
            lastWasI = v == 0x69
            if !isTrailingPunct(v) { keep = out.count }
        }
        if keep < out.count {
            out.removeLast(out.count - keep)
            origins.truncate(to: keep)
        }
    }
}
