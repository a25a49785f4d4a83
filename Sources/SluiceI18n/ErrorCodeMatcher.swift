import Foundation
import Yams

/// Maps catalog keys or source messages to stable error codes.
///
/// A codes file is a small YAML or JSON mapping, e.g.
/// ```yaml
/// errors.messages.taken: EMAIL_TAKEN
/// "Enter a valid email address.": INVALID_EMAIL
/// ```
/// Nested mappings are flattened with `.` (`errors: {messages: {taken: X}}` is `errors.messages.taken`).
/// A gettext message with a context is looked up as `"<context>\u{4}<msgid>"` first, then as its msgid.
public struct ErrorCodeMap: Sendable {
    /// The mapping as written (flattened).
    public let codes: [String: String]
    private let normalizedCodes: [String: String]

    /// Creates a map from key (or msgid) to code.
    public init(_ codes: [String: String]) {
        self.codes = codes
        var normalized: [String: String] = [:]
        for (k, v) in codes.sorted(by: { $0.key < $1.key }) where normalized[TextNormalizer.normalize(k)] == nil {
            normalized[TextNormalizer.normalize(k)] = v
        }
        self.normalizedCodes = normalized
    }

    /// The code for a catalog entry: by `context\u{4}key`, then `key`, then the key normalized
    /// like message texts (so `"Enter a valid email address"` also maps the msgid with the period).
    public func code(for entry: MessageEntry) -> String? {
        if let ctx = entry.context, let c = codes[ctx + "\u{4}" + entry.key] { return c }
        if let c = codes[entry.key] { return c }
        return normalizedCodes[TextNormalizer.normalize(entry.key)]
    }

    /// Reads a codes file (`.yml`/`.yaml` or `.json`).
    /// - Throws: `CatalogError` naming the file and line for malformed content or non-scalar codes.
    public static func load(path: String) throws -> ErrorCodeMap {
        guard let data = FileManager.default.contents(atPath: path) else { throw CatalogError(file: path, message: "cannot read") }
        var out: [String: String] = [:]
        if path.lowercased().hasSuffix(".json") {
            var parser = JSONParser(bytes: [UInt8](data), file: path)
            let root = try parser.parseDocument()
            func walk(_ node: KVNode, _ prefix: String) throws {
                switch node {
                case .map(let pairs, _):
                    for (k, v) in pairs { try walk(v, prefix.isEmpty ? k : prefix + "." + k) }
                case .string(let s, _):
                    out[prefix] = s
                case .other(let line):
                    throw CatalogError(file: path, line: abs(line), message: "the code for \"\(prefix)\" must be a string")
                }
            }
            guard case .map = root else { throw CatalogError(file: path, line: root.line, message: "the root must be an object") }
            try walk(root, "")
        } else {
            guard let text = String(data: data, encoding: .utf8) else { throw CatalogError(file: path, line: 1, message: "invalid UTF-8") }
            let root: Node?
            // Scalars are taken as their text: no tags resolved (see `ConfigNode.parse`).
            do { root = try Yams.compose(yaml: text, .basic) } catch let e as YamlError { throw KeyValueCatalog.catalogError(e, file: path) }
            guard let root else { return ErrorCodeMap([:]) }
            func walk(_ node: Node, _ prefix: String) throws {
                switch node {
                case .mapping(let m):
                    for (k, v) in m {
                        guard let ks = k.string else { throw CatalogError(file: path, line: k.mark?.line, column: k.mark?.column, message: "keys must be scalars") }
                        try walk(v, prefix.isEmpty ? ks : prefix + "." + ks)
                    }
                case .scalar(let s):
                    out[prefix] = s.string
                default:
                    throw CatalogError(file: path, line: node.mark?.line, column: node.mark?.column, message: "the code for \"\(prefix)\" must be a scalar")
                }
            }
            guard case .mapping = root else { throw CatalogError(file: path, line: root.mark?.line, column: root.mark?.column, message: "the root must be a mapping") }
            try walk(root, "")
        }
        return ErrorCodeMap(out)
    }
}

/// The result of matching a text.
public struct ErrorCodeMatch: Sendable, Hashable {
    /// The stable code (from the code map, else the entry's key).
    public var code: String
    /// The catalog key (gettext msgid; dotted key for Rails/JSON).
    public var key: String
    /// The gettext context, if any.
    public var context: String?
    /// The locale of the template that matched (the source locale for a gettext msgid).
    public var locale: String
    /// The plural form of the template that matched (see `MessageEntry.pluralForm`).
    public var pluralForm: String?
    /// Captured placeholder values by name (`"count"`, `"wait"`; positional ones as `"0"`, `"1"`, ...),
    /// cut from the original text (in NFC); `"attribute"` holds a stripped leading attribute (see
    /// `ErrorCodeMatcher.Options.attributePrefixWords`).
    public var values: [String: String]
    /// Literal (non-placeholder) characters of the matched template, after normalization.
    public var literalLength: Int
}

/// Matches localized error texts (possibly with values filled in) back to stable codes.
///
/// Matching compares normalized texts (see `TextNormalizer`: NFD, whitespace collapsed and
/// trimmed, case folded with the Turkish i table, typographic quotes folded, trailing
/// punctuation dropped).
///
/// - Texts equal to a template without placeholders are found by one hash lookup.
/// - Templates with placeholders are indexed by their first literal word (or their last
///   literal word, or any whole literal word) and only those candidates are tried.
/// - **Ambiguity**: when several templates match, the one with the most literal characters
///   wins (an exact literal match always beats a template with placeholders); on a tie, the
///   entry loaded first wins (catalog order as given, then file order).
/// - Templates without any literal letter (e.g. Rails `"%{attribute} %{message}"`) are not
///   indexed: they would match anything.
/// - Identical entries (same normalized template and code) from several files are kept once.
///
/// Immutable after `init`, so safe to share between threads.
public final class ErrorCodeMatcher: Sendable {
    /// Build options.
    public struct Options: Sendable {
        /// Index only entries that the code map names (default false: unmapped entries use their key as code).
        public var onlyMappedEntries: Bool
        /// When a text does not match, try again without its first 1...N words, capturing them as
        /// `"attribute"` (Rails full messages: "Email is too long (maximum is 30 characters)"). Default 0.
        public var attributePrefixWords: Int
        /// When a text with several sentences does not match as a whole, match sentence by
        /// sentence (DRF: "Request was throttled. Expected available in 30 seconds."). Default true.
        public var sentenceFallback: Bool

        /// Creates options.
        public init(onlyMappedEntries: Bool = false, attributePrefixWords: Int = 0, sentenceFallback: Bool = true) {
            self.onlyMappedEntries = onlyMappedEntries
            self.attributePrefixWords = attributePrefixWords
            self.sentenceFallback = sentenceFallback
        }
    }

    struct Template: Sendable {
        let compiled: CompiledTemplate
        let prototype: ErrorCodeMatch
        let order: Int
    }

    private let exact: [NormKey: ErrorCodeMatch]
    private let templates: [Template]
    private let byFirstWord: [UInt64: [Int]]
    private let byLastWord: [UInt64: [Int]]
    private let byInnerWord: [UInt64: [Int]]
    private let unindexed: [Int]
    private let options: Options

    /// Number of distinct literal texts indexed.
    public var literalCount: Int { exact.count }
    /// Number of distinct templates with placeholders indexed.
    public var templateCount: Int { templates.count }

    /// Builds the indexes from catalogs (earlier catalogs win ties) and an optional code map.
    public init(catalogs: [MessageCatalog], codes: ErrorCodeMap? = nil, options: Options = Options()) {
        self.options = options
        var exact: [NormKey: ErrorCodeMatch] = [:]
        var templates: [Template] = []
        var seenTemplates = Set<String>()
        var order = 0
        for catalog in catalogs {
            for entry in catalog.entries {
                order += 1
                let mapped = codes?.code(for: entry)
                if mapped == nil && options.onlyMappedEntries { continue }
                let code = mapped ?? entry.key
                guard let compiled = CompiledTemplate(parts: TemplateParser.parse(entry.text)), compiled.literalLetters > 0 else { continue }
                let proto = ErrorCodeMatch(code: code, key: entry.key, context: entry.context, locale: entry.locale,
                                           pluralForm: entry.pluralForm, values: [:], literalLength: compiled.literalLength)
                if compiled.isLiteral {
                    let k = NormKey(compiled.literals[0])
                    if exact[k] == nil { exact[k] = proto }
                } else {
                    var sig = "\(code)\u{1}\(entry.key)\u{1}\(entry.context ?? "")\u{1}\(entry.locale)\u{1}\(compiled.names)"
                    for lit in compiled.literals { sig += "\u{2}" + String(decoding: lit, as: UTF8.self) }
                    if seenTemplates.insert(sig).inserted {
                        templates.append(Template(compiled: compiled, prototype: proto, order: order))
                    }
                }
            }
        }
        // Index the templates.
        var first: [UInt64: [Int]] = [:], last: [UInt64: [Int]] = [:], inner: [UInt64: [Int]] = [:]
        var rest: [Int] = []
        for (i, t) in templates.enumerated() {
            let lits = t.compiled.literals
            if let sp = lits[0].firstIndex(of: 0x20), sp > 0 {
                first[Self.hash(lits[0][..<sp]), default: []].append(i)
            } else if let lastLit = lits.last, let sp = lastLit.lastIndex(of: 0x20), sp < lastLit.count - 1 {
                last[Self.hash(lastLit[(sp + 1)...]), default: []].append(i)
            } else if let word = Self.longestInnerWord(lits) {
                inner[Self.hash(word), default: []].append(i)
            } else {
                rest.append(i)
            }
        }
        func sorted(_ list: [Int]) -> [Int] {
            list.sorted { a, b in
                let ta = templates[a], tb = templates[b]
                return ta.compiled.literalLength != tb.compiled.literalLength
                    ? ta.compiled.literalLength > tb.compiled.literalLength : ta.order < tb.order
            }
        }
        self.exact = exact
        self.templates = templates
        self.byFirstWord = first.mapValues(sorted)
        self.byLastWord = last.mapValues(sorted)
        self.byInnerWord = inner.mapValues(sorted)
        self.unindexed = sorted(rest)
    }

    /// Convenience: loads the catalog files and the optional codes file.
    public convenience init(catalogPaths: [String], codesPath: String? = nil, options: Options = Options()) throws {
        let catalogs = try catalogPaths.map { try MessageCatalog.load(path: $0) }
        let codes = try codesPath.map { try ErrorCodeMap.load(path: $0) }
        self.init(catalogs: catalogs, codes: codes, options: options)
    }

    /// A whole word (spaces on both sides) inside a literal between two placeholders.
    static func longestInnerWord(_ lits: [[UInt8]]) -> ArraySlice<UInt8>? {
        var best: ArraySlice<UInt8>?
        for lit in lits {
            let words = lit.split(separator: 0x20, omittingEmptySubsequences: false)
            guard words.count >= 3 else { continue }
            for w in words.dropFirst().dropLast() where w.count > (best?.count ?? 0) { best = w }
        }
        return best
    }

    @inline(__always)
    static func hash<C: Collection<UInt8>>(_ bytes: C) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return h
    }

    /// Matches a text; nil when no template matches.
    ///
    /// Order: the whole text; then, with `attributePrefixWords`, the text without its first
    /// 1...N words; then, with `sentenceFallback`, each sentence in turn (the first sentence that
    /// matches gives the code, values captured by later matching sentences are added).
    public func match(_ text: String) -> ErrorCodeMatch? {
        var buf: [UInt8] = []
        buf.reserveCapacity(text.utf8.count + 8)
        TextNormalizer.normalize(text, into: &buf)
        guard !buf.isEmpty else { return nil }
        if let hit = exact[NormKey(buf)] { return hit }
        if let hit = matchTemplates(buf, 0..<buf.count, original: text) { return hit }
        return matchFallbacks(buf, original: text)
    }

    /// Matches a text and, when nothing matches, records it in `unknown`.
    public func match(_ text: String, recordingUnknownIn unknown: UnknownTexts) -> ErrorCodeMatch? {
        if let m = match(text) { return m }
        unknown.record(text)
        return nil
    }

    private func matchFallbacks(_ buf: [UInt8], original: String) -> ErrorCodeMatch? {
        if options.attributePrefixWords > 0 {
            var start = 0
            for _ in 1...options.attributePrefixWords {
                guard let sp = buf[start...].firstIndex(of: 0x20) else { break }
                start = sp + 1
                if var m = matchRange(buf, start..<buf.count, original: original) {
                    m.values["attribute"] = Self.captures(original, ranges: [0..<(start - 1)], names: ["attribute"])["attribute"]
                    return m
                }
            }
        }
        if options.sentenceFallback {
            let sentences = Self.sentences(buf)
            guard sentences.count > 1 else { return nil }
            var result: ErrorCodeMatch?
            for r in sentences {
                guard let m = matchRange(buf, r, original: original) else { continue }
                if result == nil {
                    result = m
                } else {
                    result!.values.merge(m.values) { old, _ in old }
                }
            }
            return result
        }
        return nil
    }

    /// Sentence ranges of normalized text: split after `.`, `!`, `?` followed by a space, and
    /// after `。`; trailing punctuation of each sentence is left out.
    static func sentences(_ b: [UInt8]) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var start = 0
        var i = 0
        while i < b.count {
            var cut: Int?
            var next = i + 1
            if (b[i] == 0x2E || b[i] == 0x21 || b[i] == 0x3F), i + 1 < b.count, b[i + 1] == 0x20 {
                cut = i; next = i + 2
            } else if b[i] == 0xE3, i + 2 < b.count, b[i + 1] == 0x80, b[i + 2] == 0x82 {
                cut = i; next = i + 3
                if next < b.count, b[next] == 0x20 { next += 1 }
            }
            if let c = cut {
                let r = trimTrailingPunct(b, start..<c)
                if !r.isEmpty { out.append(r) }
                start = next
            }
            i = next
        }
        let r = trimTrailingPunct(b, start..<b.count)
        if !r.isEmpty { out.append(r) }
        return out
    }

    static func trimTrailingPunct(_ b: [UInt8], _ r: Range<Int>) -> Range<Int> {
        var end = r.upperBound
        while end > r.lowerBound {
            var s = end - 1
            while s > r.lowerBound, b[s] & 0xC0 == 0x80 { s -= 1 }
            let scalar = String(decoding: b[s..<end], as: UTF8.self).unicodeScalars.first!
            guard scalar == " " || TextNormalizer.isTrailingPunct(scalar.value) else { break }
            end = s
        }
        return r.lowerBound..<end
    }

    /// Exact lookup then templates, on a part of the normalized text.
    private func matchRange(_ buf: [UInt8], _ r: Range<Int>, original: String) -> ErrorCodeMatch? {
        guard !r.isEmpty else { return nil }
        let sub = Array(buf[r])
        if let hit = exact[NormKey(sub)] { return hit }
        return matchTemplates(buf, r, original: original)
    }

    /// Tries the candidate templates on `buf[r]` (the whole normalized text when `r` covers it).
    private func matchTemplates(_ buf: [UInt8], _ r: Range<Int>, original: String) -> ErrorCodeMatch? {
        guard !templates.isEmpty else { return nil }
        let found: (Int, [Range<Int>])? = buf.withUnsafeBufferPointer { whole in
            let text = UnsafeBufferPointer(rebasing: whole[r])
            var best: (Int, [Range<Int>])?
            func consider(_ list: [Int]) {
                for idx in list {
                    let t = templates[idx]
                    if let (b, _) = best {
                        let bt = templates[b]
                        if t.compiled.literalLength < bt.compiled.literalLength
                            || (t.compiled.literalLength == bt.compiled.literalLength && t.order >= bt.order) { break }
                    }
                    if let ranges = t.compiled.match(text) { best = (idx, ranges) }
                }
            }
            let firstEnd = text.firstIndex(of: 0x20) ?? text.count
            if !byFirstWord.isEmpty, let list = byFirstWord[Self.hash(text[0..<firstEnd])] { consider(list) }
            if !byLastWord.isEmpty {
                var s = text.count
                while s > 0, text[s - 1] != 0x20 { s -= 1 }
                if let list = byLastWord[Self.hash(text[s..<text.count])] { consider(list) }
            }
            if !byInnerWord.isEmpty {
                var s = 0
                while s < text.count {
                    var e = s
                    while e < text.count, text[e] != 0x20 { e += 1 }
                    if let list = byInnerWord[Self.hash(text[s..<e])] { consider(list) }
                    s = e + 1
                }
            }
            if !unindexed.isEmpty { consider(unindexed) }
            return best
        }
        guard let (idx, ranges) = found else { return nil }
        var m = templates[idx].prototype
        let shifted = ranges.map { ($0.lowerBound + r.lowerBound)..<($0.upperBound + r.lowerBound) }
        m.values = Self.captures(original, ranges: shifted, names: templates[idx].compiled.names)
        return m
    }

    /// Cuts the placeholder values (byte ranges of the normalized text) out of the original text.
    static func captures(_ original: String, ranges: [Range<Int>], names: [String]) -> [String: String] {
        let (_, origins, source) = TextNormalizer.normalizeWithOrigins(original)
        var values: [String: String] = [:]
        for (name, r) in zip(names, ranges) where values[name] == nil {
            values[name] = Self.slice(source, origins, r)
        }
        return values
    }

    static func slice(_ source: [Unicode.Scalar], _ origins: [Int32], _ r: Range<Int>) -> String {
        guard !r.isEmpty, r.upperBound <= origins.count else { return "" }
        let a = Int(origins[r.lowerBound]), b = Int(origins[r.upperBound - 1])
        var view = String.UnicodeScalarView()
        view.append(contentsOf: source[a...b])
        let s = String(view)
        return s.utf8.allSatisfy { $0 < 0x80 } ? s : s.precomposedStringWithCanonicalMapping
    }
}

/// Normalized text bytes as a dictionary key (hashes the bytes in one call).
struct NormKey: Hashable, Sendable {
    let bytes: [UInt8]
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    func hash(into hasher: inout Hasher) {
        bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
    }
    static func == (a: NormKey, b: NormKey) -> Bool {
        guard a.bytes.count == b.bytes.count else { return false }
        if a.bytes.isEmpty { return true }
        return a.bytes.withUnsafeBytes { pa in b.bytes.withUnsafeBytes { pb in memcmp(pa.baseAddress!, pb.baseAddress!, pa.count) == 0 } }
    }
}
