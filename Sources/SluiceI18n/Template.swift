/// One piece of a message template: literal text or a placeholder.
public enum TemplatePart: Sendable, Hashable {
    /// Literal text (raw, not normalized).
    case literal(String)
    /// A placeholder whose filled-in value is captured under `name`.
    case placeholder(name: String, kind: PlaceholderKind)
}

/// What a placeholder's value may look like in a filled-in text.
public enum PlaceholderKind: Sendable, Hashable {
    /// Any non-empty text (`%s`, `%(x)s`, `%{x}`, `{x}`, `{0}`).
    case text
    /// An integer: optional sign and ASCII digits (`%d`, `%i`, `%(x)d`, `%(x)i`).
    case integer
    /// A number: optional sign, digits, optional `.` or `,` and digits, optional exponent (`%f`, `%(x)f`, `%e`, `%g`).
    case number
}

/// Splits message templates into literals and placeholders.
///
/// Recognized syntaxes (in every catalog format):
/// - `%{name}` (Rails i18n) — named, any text (never containing a sentence break `. `, `! `, `? `); `%{count}` is a number (Rails pluralizes on it);
/// - `%(name)s`, `%(name)d`, `%(name)i`, `%(name)f` with optional printf flags/width/precision
///   (Python named) — `d`/`i` integer, `f`/`e`/`g` number, other conversions any text;
/// - `%s`, `%d`, `%i`, `%f` (with optional flags/width/precision) — positional, numbered
///   `"0"`, `"1"`, ... in order of appearance;
/// - `%1$s`, `%2$d`, ... — positional, explicit: `%1$s` is captured as `"0"` (1-based to 0-based);
/// - `{0}`, `{1}` — positional `"0"`, `"1"`; `{name}` (identifier) — named, any text;
/// - `%%` — a literal `%`.
/// Anything else (a lone `%`, `%e` not followed by a conversion context, `{not valid}`) is literal text.
public enum TemplateParser {
    /// Parses a template into parts; adjacent literals are merged.
    public static func parse(_ template: String) -> [TemplatePart] {
        let s = Array(template.unicodeScalars)
        var parts: [TemplatePart] = []
        var literal = String.UnicodeScalarView()
        var sequential = 0
        var i = 0
        func flush() {
            if !literal.isEmpty { parts.append(.literal(String(literal))); literal = String.UnicodeScalarView() }
        }
        func isIdent(_ c: Unicode.Scalar) -> Bool {
            c == "_" || (c.value < 0x80 && (c.properties.isAlphabetic || ("0"..."9").contains(c))) || c == "-" || c == "."
        }
        func isDigit(_ c: Unicode.Scalar) -> Bool { ("0"..."9").contains(c) }
        func kind(for conv: Unicode.Scalar) -> PlaceholderKind {
            switch conv {
            case "d", "i", "u": return .integer
            case "f", "F", "e", "E", "g", "G": return .number
            default: return .text
            }
        }
        /// Skips printf flags, width and precision from `j`; returns the index after them.
        func skipSpec(_ j: Int) -> Int {
            var k = j
            while k < s.count, "-+#0".unicodeScalars.contains(s[k]) { k += 1 }  // not " ": "100% sure" is text
            while k < s.count, isDigit(s[k]) { k += 1 }
            if k < s.count, s[k] == "." {
                k += 1
                while k < s.count, isDigit(s[k]) { k += 1 }
            }
            return k
        }
        while i < s.count {
            let c = s[i]
            if c == "%", i + 1 < s.count {
                let n = s[i + 1]
                if n == "%" { literal.append("%"); i += 2; continue }
                if n == "{" {  // %{name}
                    var k = i + 2
                    while k < s.count, isIdent(s[k]) { k += 1 }
                    if k < s.count, s[k] == "}", k > i + 2 {
                        flush()
                        let name = String(String.UnicodeScalarView(s[(i + 2)..<k]))
                        // Rails pluralizes on %{count}, so it is always a number.
                        parts.append(.placeholder(name: name, kind: name == "count" ? .number : .text))
                        i = k + 1; continue
                    }
                }
                if n == "(" {  // %(name)s
                    var k = i + 2
                    while k < s.count, s[k] != ")", s[k] != "\n" { k += 1 }
                    if k < s.count, s[k] == ")", k > i + 2 {
                        let e = skipSpec(k + 1)
                        if e < s.count, "sdifreEgGFuxXoc".unicodeScalars.contains(s[e]) {
                            flush()
                            parts.append(.placeholder(name: String(String.UnicodeScalarView(s[(i + 2)..<k])), kind: kind(for: s[e])))
                            i = e + 1; continue
                        }
                    }
                }
                if isDigit(n), n != "0" {  // %1$s
                    var k = i + 1
                    while k < s.count, isDigit(s[k]) { k += 1 }
                    if k < s.count, s[k] == "$" {
                        let e = skipSpec(k + 1)
                        if e < s.count, "sdif".unicodeScalars.contains(s[e]), let pos = Int(String(String.UnicodeScalarView(s[(i + 1)..<k]))) {
                            flush()
                            parts.append(.placeholder(name: String(pos - 1), kind: kind(for: s[e])))
                            i = e + 1; continue
                        }
                    }
                }
                let e = skipSpec(i + 1)  // %s %d %i %f, %5.2f
                if e < s.count, "sdif".unicodeScalars.contains(s[e]) {
                    flush()
                    parts.append(.placeholder(name: String(sequential), kind: kind(for: s[e])))
                    sequential += 1
                    i = e + 1; continue
                }
            }
            if c == "{" {  // {0} {name}
                var k = i + 1
                while k < s.count, isIdent(s[k]) { k += 1 }
                if k < s.count, s[k] == "}", k > i + 1 {
                    flush()
                    parts.append(.placeholder(name: String(String.UnicodeScalarView(s[(i + 1)..<k])), kind: .text))
                    i = k + 1; continue
                }
            }
            literal.append(c)
            i += 1
        }
        flush()
        return parts
    }
}

/// A template compiled for matching: normalized literal segments between placeholders.
struct CompiledTemplate: Sendable {
    /// `placeholders.count + 1` normalized literals (possibly empty).
    let literals: [[UInt8]]
    let names: [String]
    let kinds: [PlaceholderKind]
    /// Number of literal Unicode scalars after normalization (the ambiguity tie-break).
    let literalLength: Int
    /// Number of literal letters (templates without any are not indexed).
    let literalLetters: Int

    /// Private-use scalars stand for placeholders while the template is normalized.
    static let sentinelBase: UInt32 = 0xE000

    init?(parts: [TemplatePart]) {
        var marked = String.UnicodeScalarView()
        var names: [String] = []
        var kinds: [PlaceholderKind] = []
        for part in parts {
            switch part {
            case .literal(let text):
                marked.append(contentsOf: text.unicodeScalars.filter { !(0xE000...0xE0FF).contains($0.value) })
            case .placeholder(let name, let kind):
                guard names.count < 256 else { return nil }
                marked.append(Unicode.Scalar(Self.sentinelBase + UInt32(names.count))!)
                names.append(name)
                kinds.append(kind)
            }
        }
        var bytes: [UInt8] = []
        TextNormalizer.normalize(String(marked), into: &bytes)
        // Split at sentinels (UTF-8 EE 80..83 xx).
        var literals: [[UInt8]] = []
        var current: [UInt8] = []
        var order: [Int] = []
        var i = 0
        while i < bytes.count {
            if bytes[i] == 0xEE, i + 2 < bytes.count, (0x80...0x83).contains(bytes[i + 1]) {
                let v = (UInt32(bytes[i] & 0x0F) << 12) | (UInt32(bytes[i + 1] & 0x3F) << 6) | UInt32(bytes[i + 2] & 0x3F)
                order.append(Int(v - Self.sentinelBase))
                literals.append(current)
                current = []
                i += 3
                continue
            }
            current.append(bytes[i])
            i += 1
        }
        literals.append(current)
        self.literals = literals
        self.names = order.map { names[$0] }
        self.kinds = order.map { kinds[$0] }
        var length = 0, letters = 0
        for lit in literals {
            for scalar in String(decoding: lit, as: UTF8.self).unicodeScalars {
                length += 1
                if scalar.properties.isAlphabetic { letters += 1 }
            }
        }
        self.literalLength = length
        self.literalLetters = letters
    }

    var isLiteral: Bool { names.isEmpty }

    /// Matches normalized `text`; returns the byte ranges of the placeholder values.
    func match(_ text: UnsafeBufferPointer<UInt8>) -> [Range<Int>]? {
        let n = names.count
        let first = literals[0], last = literals[n]
        guard text.count >= first.count + last.count + n else { return nil }
        guard Self.hasPrefix(text, first, at: 0), Self.hasPrefix(text, last, at: text.count - last.count) else { return nil }
        var ranges = [Range<Int>](repeating: 0..<0, count: n)
        return search(text, placeholder: 0, from: first.count, end: text.count - last.count, ranges: &ranges) ? ranges : nil
    }

    private func search(_ text: UnsafeBufferPointer<UInt8>, placeholder p: Int, from pos: Int, end: Int, ranges: inout [Range<Int>]) -> Bool {
        if p == names.count - 1 {
            guard end > pos, Self.valueFits(text, pos..<end, kinds[p]) else { return false }
            ranges[p] = pos..<end
            return true
        }
        let lit = literals[p + 1]
        var q = pos + 1
        while q + lit.count <= end {
            if let found = Self.find(text, lit, from: q, end: end) {
                if Self.valueFits(text, pos..<found, kinds[p]) {
                    ranges[p] = pos..<found
                    if search(text, placeholder: p + 1, from: found + lit.count, end: end, ranges: &ranges) { return true }
                }
                q = found + 1
            } else {
                return false
            }
        }
        return false
    }

    @inline(__always)
    static func hasPrefix(_ text: UnsafeBufferPointer<UInt8>, _ lit: [UInt8], at offset: Int) -> Bool {
        if lit.isEmpty { return true }
        guard offset >= 0, offset + lit.count <= text.count else { return false }
        for j in 0..<lit.count where text[offset + j] != lit[j] { return false }
        return true
    }

    static func find(_ text: UnsafeBufferPointer<UInt8>, _ lit: [UInt8], from: Int, end: Int) -> Int? {
        if lit.isEmpty { return from <= end ? from : nil }
        let first = lit[0]
        var i = from
        while i + lit.count <= end {
            if text[i] == first && hasPrefix(text, lit, at: i) { return i }
            i += 1
        }
        return nil
    }

    static func valueFits(_ text: UnsafeBufferPointer<UInt8>, _ r: Range<Int>, _ kind: PlaceholderKind) -> Bool {
        switch kind {
        case .text:
            // Non-empty, and no sentence break inside (". ", "! ", "? "): a value does not swallow
            // a neighbouring sentence, so joined messages fall back to sentence matching.
            guard !r.isEmpty else { return false }
            var i = r.lowerBound
            while i + 1 < r.upperBound {
                if text[i + 1] == 0x20, text[i] == 0x2E || text[i] == 0x21 || text[i] == 0x3F { return false }
                i += 1
            }
            return true
        case .integer:
            var i = r.lowerBound
            if i < r.upperBound, text[i] == 0x2D || text[i] == 0x2B { i += 1 }
            guard i < r.upperBound else { return false }
            while i < r.upperBound { guard (0x30...0x39).contains(text[i]) else { return false }; i += 1 }
            return true
        case .number:
            var i = r.lowerBound
            if i < r.upperBound, text[i] == 0x2D || text[i] == 0x2B { i += 1 }
            var digits = 0, seps = 0
            while i < r.upperBound {
                let b = text[i]
                if (0x30...0x39).contains(b) { digits += 1 } else if b == 0x2E || b == 0x2C { seps += 1; if seps > 1 { return false } } else if b == 0x65, digits > 0 {
                    // exponent: e[+-]digits
                    i += 1
                    if i < r.upperBound, text[i] == 0x2D || text[i] == 0x2B { i += 1 }
                    guard i < r.upperBound else { return false }
                    while i < r.upperBound { guard (0x30...0x39).contains(text[i]) else { return false }; i += 1 }
                    return true
                } else { return false }
                i += 1
            }
            return digits > 0
        }
    }
}
