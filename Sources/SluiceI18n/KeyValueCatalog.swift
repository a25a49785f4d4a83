import Foundation
import Yams

/// A parsed YAML/JSON tree, in file order, with lines.
indirect enum KVNode {
    case map([(key: String, value: KVNode)], line: Int)
    case string(String, line: Int)
    /// Numbers, booleans, null, sequences: not messages.
    case other(line: Int)

    var line: Int {
        switch self {
        case .map(_, let l), .string(_, let l), .other(let l): return l
        }
    }
}

/// Rails i18n YAML and nested JSON catalogs, flattened to dotted keys.
///
/// Flattening rules (the test suite checks them against an independent PyYAML reader):
/// - nested mappings join their keys with `.`: `errors: messages: too_long:` → `errors.messages.too_long`;
/// - a mapping whose keys are all CLDR plural categories (`zero`, `one`, `two`, `few`, `many`,
///   `other`) and whose values are all strings or null is one message with plural forms;
/// - string values are messages; numbers, booleans, null and sequences are skipped;
/// - Rails YAML: every root key is a locale and is not part of the key.
enum KeyValueCatalog {
    static let pluralCategories: Set<String> = ["zero", "one", "two", "few", "many", "other"]

    static func flatten(_ node: KVNode, prefix: String, locale: String, into out: inout [MessageEntry]) {
        guard case .map(let pairs, _) = node else { return }
        for (key, value) in pairs {
            let full = prefix.isEmpty ? key : prefix + "." + key
            switch value {
            case .string(let text, let line):
                out.append(MessageEntry(key: full, locale: locale, text: text, line: line))
            case .map(let sub, _):
                let isPlural = !sub.isEmpty && sub.allSatisfy { pair in
                    guard pluralCategories.contains(pair.key) else { return false }
                    if case .map = pair.value { return false }
                    if case .other(let l) = pair.value, l < 0 { return false }  // sequences
                    return true
                }
                if isPlural {
                    for (form, v) in sub {
                        if case .string(let text, let line) = v {
                            out.append(MessageEntry(key: full, locale: locale, pluralForm: form, text: text, line: line))
                        }
                    }
                } else {
                    flatten(value, prefix: full, locale: locale, into: &out)
                }
            case .other:
                continue
            }
        }
    }

    // MARK: YAML

    static func parseYAML(_ data: Data, file: String) throws -> [MessageEntry] {
        guard let text = String(data: data, encoding: .utf8) else { throw CatalogError(file: file, line: 1, message: "invalid UTF-8") }
        let root: Node?
        do {
            // No resolver rules: they are regular expressions, and compiling them puts
            // ICU's regex engine and tables (~2.5 MB) in the process's resident memory
            // for the rest of the run. `convert` resolves plain scalars itself.
            root = try Yams.compose(yaml: text, .basic)
        } catch let error as YamlError {
            throw Self.catalogError(error, file: file)
        } catch {
            throw CatalogError(file: file, message: "\(error)")
        }
        guard let root else { return [] }
        guard case .mapping(let mapping) = root else {
            throw CatalogError(file: file, line: root.mark?.line ?? 1, column: root.mark?.column ?? 1,
                               message: "the root must be a mapping of locales (`en: ...`)")
        }
        var out: [MessageEntry] = []
        for (k, v) in mapping {
            guard case .mapping = v else { continue }
            let locale = k.string ?? String(describing: k.any)
            flatten(try convert(v, file: file), prefix: "", locale: locale, into: &out)
        }
        return out
    }

    static func convert(_ node: Node, file: String) throws -> KVNode {
        let line = node.mark?.line ?? 1  // Yams marks are 1-based
        switch node {
        case .mapping(let m):
            var pairs: [(key: String, value: KVNode)] = []
            for (k, v) in m {
                guard case .scalar(let ks) = k else {
                    throw CatalogError(file: file, line: k.mark?.line ?? 1, column: k.mark?.column ?? 1, message: "mapping keys must be scalars")
                }
                pairs.append((ks.string, try convert(v, file: file)))
            }
            return .map(pairs, line: line)
        case .scalar(let s):
            // The tag as written, read before anything resolves it (resolving sets it):
            // empty for a plain scalar without one, `str` for a quoted or block one.
            let given = s.tag.description
            let isString = given == Tag.Name.implicit.rawValue ? YAMLPlainScalar.isString(s.string) : given == Tag.Name.str.rawValue
            return isString ? .string(s.string, line: line) : .other(line: line)
        case .sequence:
            return .other(line: -line)  // negative: marks a sequence
        case .alias:
            return .other(line: line)
        }
    }

    static func catalogError(_ error: YamlError, file: String) -> CatalogError {
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            let what = [context?.text, problem].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: ": ")
            // Yams marks are already 1-based.
            return CatalogError(file: file, line: mark.line, column: mark.column, message: "invalid YAML: \(what)")
        case .reader(let problem, let offset, _, _):
            return CatalogError(file: file, offset: offset, message: "invalid YAML: \(problem)")
        default:
            return CatalogError(file: file, message: "invalid YAML: \(error)")
        }
    }

    // MARK: JSON

    static func parseJSON(_ data: Data, file: String, locale: String) throws -> [MessageEntry] {
        var parser = JSONParser(bytes: [UInt8](data), file: file)
        let root = try parser.parseDocument()
        guard case .map(let pairs, _) = root else {
            throw CatalogError(file: file, line: root.line, column: 1, message: "the root must be an object")
        }
        var out: [MessageEntry] = []
        func canon(_ s: String) -> String { s.lowercased().replacingOccurrences(of: "_", with: "-") }
        if pairs.count == 1, case .map = pairs[0].value, canon(pairs[0].key) == canon(locale) {
            flatten(pairs[0].value, prefix: "", locale: pairs[0].key, into: &out)
        } else {
            flatten(root, prefix: "", locale: locale, into: &out)
        }
        return out
    }
}

/// A small JSON reader that keeps key order and reports line and column.
struct JSONParser {
    let bytes: [UInt8]
    let file: String
    var i = 0
    var line = 1
    var lineStart = 0

    init(bytes: [UInt8], file: String) {
        self.bytes = bytes
        self.file = file
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { i = 3; lineStart = 3 }
    }

    func fail(_ msg: String) -> CatalogError {
        let col = String(decoding: bytes[lineStart..<min(i, bytes.count)], as: UTF8.self).unicodeScalars.count + 1
        return CatalogError(file: file, line: line, column: col, message: "invalid JSON: " + msg)
    }

    mutating func skipSpace() {
        while i < bytes.count {
            switch bytes[i] {
            case 0x0A: line += 1; i += 1; lineStart = i
            case 0x20, 0x09, 0x0D: i += 1
            default: return
            }
        }
    }

    mutating func parseDocument() throws -> KVNode {
        skipSpace()
        let v = try parseValue(depth: 0)
        skipSpace()
        guard i == bytes.count else { throw fail("unexpected text after the document") }
        return v
    }

    mutating func parseValue(depth: Int) throws -> KVNode {
        guard depth < 512 else { throw fail("nesting too deep") }
        guard i < bytes.count else { throw fail("unexpected end of input") }
        let startLine = line
        switch bytes[i] {
        case UInt8(ascii: "{"):
            i += 1
            var pairs: [(key: String, value: KVNode)] = []
            skipSpace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return .map(pairs, line: startLine) }
            while true {
                skipSpace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
                let key = try parseString()
                skipSpace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                i += 1
                skipSpace()
                pairs.append((key, try parseValue(depth: depth + 1)))
                skipSpace()
                guard i < bytes.count else { throw fail("unterminated object") }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                if bytes[i] == UInt8(ascii: "}") { i += 1; return .map(pairs, line: startLine) }
                throw fail("expected ',' or '}'")
            }
        case UInt8(ascii: "["):
            i += 1
            skipSpace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .other(line: -startLine) }
            while true {
                skipSpace()
                _ = try parseValue(depth: depth + 1)
                skipSpace()
                guard i < bytes.count else { throw fail("unterminated array") }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                if bytes[i] == UInt8(ascii: "]") { i += 1; return .other(line: -startLine) }
                throw fail("expected ',' or ']'")
            }
        case UInt8(ascii: "\""):
            return .string(try parseString(), line: startLine)
        default:
            for word in ["true", "false", "null"] where bytes[i...].starts(with: word.utf8) {
                i += word.utf8.count
                return .other(line: startLine)
            }
            let start = i
            while i < bytes.count, "+-0123456789.eE".utf8.contains(bytes[i]) { i += 1 }
            guard i > start, Double(String(decoding: bytes[start..<i], as: UTF8.self)) != nil else {
                i = start
                throw fail("unexpected character")
            }
            return .other(line: startLine)
        }
    }

    mutating func parseString() throws -> String {
        i += 1  // opening quote
        var out: [UInt8] = []
        while i < bytes.count {
            let b = bytes[i]
            if b == UInt8(ascii: "\"") {
                i += 1
                guard let s = String(validating: out, as: UTF8.self) else { throw fail("invalid UTF-8 in string") }
                return s
            }
            if b < 0x20 { throw fail("control character in string") }
            if b == UInt8(ascii: "\\") {
                guard i + 1 < bytes.count else { throw fail("unterminated escape") }
                let e = bytes[i + 1]
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var v = try hex4(at: i + 2)
                    i += 6
                    if (0xD800..<0xDC00).contains(v), i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") {
                        let lo = try hex4(at: i + 2)
                        if (0xDC00..<0xE000).contains(lo) { v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00); i += 6 }
                    }
                    let scalar = Unicode.Scalar(v) ?? "\u{FFFD}"
                    out.append(contentsOf: Array(String(scalar).utf8))
                    continue
                default:
                    throw fail("invalid escape")
                }
                i += 2
                continue
            }
            out.append(b)
            i += 1
        }
        throw fail("unterminated string")
    }

    func hex4(at j: Int) throws -> UInt32 {
        guard j + 4 <= bytes.count, let v = UInt32(String(decoding: bytes[j..<(j + 4)], as: UTF8.self), radix: 16) else {
            throw fail("invalid \\u escape")
        }
        return v
    }
}

/// What Yams' default resolver makes of a plain scalar without a tag (YAML 1.1: its
/// `bool`, `int`, `float`, `merge`, `null`, `timestamp` and `value` rules, in that
/// order), decided without its regular expressions: a string unless one of them matches.
enum YAMLPlainScalar {
    static func isString(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { !matchesAnyRule(Array($0)) }
    }

    private static let words: Set<String> = [
        "yes", "Yes", "YES", "no", "No", "NO", "true", "True", "TRUE", "false", "False", "FALSE",
        "on", "On", "ON", "off", "Off", "OFF", // bool
        "~", "null", "Null", "NULL", "", // null
        "<<", "=", // merge, value
    ]

    static func matchesAnyRule(_ b: [UInt8]) -> Bool {
        if b.count <= 5, words.contains(String(decoding: b, as: UTF8.self)) { return true }
        return isInt(b) || isFloat(b) || isTimestamp(b)
    }

    private static func digit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
    private static func sign(_ c: UInt8) -> Bool { c == 0x2B || c == 0x2D }

    /// `[-+]?(0b[01_]+ | 0o?[0-7_]+ | 0 | [1-9][0-9_]* | 0x[0-9a-fA-F_]+ | [1-9][0-9_]*(:[0-5]?[0-9])+)`
    static func isInt(_ b: [UInt8]) -> Bool {
        var i = 0
        if i < b.count, sign(b[i]) { i += 1 }
        guard i < b.count else { return false }
        let rest = b[i...]
        func all(_ from: Int, _ ok: (UInt8) -> Bool) -> Bool { from < b.count && b[from...].allSatisfy(ok) }
        if rest.first == 0x30 { // 0
            if rest.count == 1 { return true }
            let next = b[i + 1]
            if next == UInt8(ascii: "b") { return all(i + 2) { $0 == 0x30 || $0 == 0x31 || $0 == 0x5F } }
            if next == UInt8(ascii: "x") { return all(i + 2) { digit($0) || $0 == 0x5F || (0x61...0x66).contains($0) || (0x41...0x46).contains($0) } }
            let octal: (UInt8) -> Bool = { (0x30...0x37).contains($0) || $0 == 0x5F }
            return next == UInt8(ascii: "o") ? all(i + 2, octal) : all(i + 1, octal)
        }
        guard let first = rest.first, (0x31...0x39).contains(first) else { return false }
        var j = i + 1
        while j < b.count, digit(b[j]) || b[j] == 0x5F { j += 1 }
        if j == b.count { return true }
        return sexagesimal(b, from: j) == b.count
    }

    /// After the leading digits: `(:[0-5]?[0-9])+`, the index where it ends (nil: none).
    private static func sexagesimal(_ b: [UInt8], from start: Int) -> Int? {
        var j = start
        var groups = 0
        while j < b.count, b[j] == 0x3A {
            if j + 2 < b.count, (0x30...0x35).contains(b[j + 1]), digit(b[j + 2]) {
                j += 3
            } else if j + 1 < b.count, digit(b[j + 1]) {
                j += 2
            } else {
                break
            }
            groups += 1
        }
        return groups > 0 ? j : nil
    }

    /// `[-+]?[0-9][0-9_]*(\.[0-9_]*)?([eE][-+]?[0-9]+)? | \.[0-9_]+([eE][-+][0-9]+)? |
    /// [-+]?[0-9][0-9_]*(:[0-5]?[0-9])+\.[0-9_]* | [-+]?\.(inf|Inf|INF) | \.(nan|NaN|NAN)`
    static func isFloat(_ b: [UInt8]) -> Bool {
        let s = String(decoding: b, as: UTF8.self)
        if [".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF"].contains(s) { return true }
        func underscoredDigits(_ from: Int) -> Int { var j = from; while j < b.count, digit(b[j]) || b[j] == 0x5F { j += 1 }; return j }
        func exponent(_ from: Int, signRequired: Bool) -> Int? {
            guard from < b.count, b[from] == 0x65 || b[from] == 0x45 else { return nil }
            var j = from + 1
            if j < b.count, sign(b[j]) { j += 1 } else if signRequired { return nil }
            let digits = j
            while j < b.count, digit(b[j]) { j += 1 }
            return j > digits ? j : nil
        }
        if b.first == 0x2E { // \.[0-9_]+([eE][-+][0-9]+)?
            let j = underscoredDigits(1)
            guard j > 1 else { return false }
            return j == b.count || exponent(j, signRequired: true) == b.count
        }
        var i = 0
        if i < b.count, sign(b[i]) { i += 1 }
        guard i < b.count, digit(b[i]) else { return false }
        let afterDigits = underscoredDigits(i + 1)
        // Base 60 with a fraction.
        if let j = sexagesimal(b, from: afterDigits), j < b.count, b[j] == 0x2E, underscoredDigits(j + 1) == b.count { return true }
        var j = afterDigits
        if j < b.count, b[j] == 0x2E { j = underscoredDigits(j + 1) }
        if j == b.count { return true }
        return exponent(j, signRequired: false) == b.count
    }

    /// `[0-9]{4}-[0-9]{2}-[0-9]{2} | [0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([Tt]|[ \t]+)[0-9]{1,2}:[0-9]{2}:[0-9]{2}(\.[0-9]*)?([ \t]*(Z|[-+][0-9]{1,2}(:[0-9]{2})?))?`
    static func isTimestamp(_ b: [UInt8]) -> Bool {
        var j = 0
        func digits(_ min: Int, _ max: Int) -> Bool {
            var n = 0
            while n < max, j < b.count, digit(b[j]) { j += 1; n += 1 }
            return n >= min
        }
        func byte(_ c: UInt8) -> Bool { if j < b.count, b[j] == c { j += 1; return true }; return false }
        func blanks() -> Int { var n = 0; while j < b.count, b[j] == 0x20 || b[j] == 0x09 { j += 1; n += 1 }; return n }
        guard digits(4, 4), byte(0x2D) else { return false }
        let monthStart = j
        guard digits(1, 2) else { return false }
        let monthDigits = j - monthStart
        guard byte(0x2D) else { return false }
        let dayStart = j
        guard digits(1, 2) else { return false }
        if j == b.count { return monthDigits == 2 && j - dayStart == 2 }
        if !(byte(0x54) || byte(0x74)) { guard blanks() > 0 else { return false } }
        guard digits(1, 2), byte(0x3A), digits(2, 2), byte(0x3A), digits(2, 2) else { return false }
        if byte(0x2E) { _ = digits(0, Int.max) }
        if j == b.count { return true }
        _ = blanks()
        if byte(0x5A) { return j == b.count }
        guard j < b.count, sign(b[j]) else { return false }
        j += 1
        guard digits(1, 2) else { return false }
        if byte(0x3A) { guard digits(2, 2) else { return false } }
        return j == b.count
    }
}
