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
            root = try Yams.compose(yaml: text)
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
            return node.tag.rawValue == Tag.Name.str.rawValue ? .string(s.string, line: line) : .other(line: line)
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
