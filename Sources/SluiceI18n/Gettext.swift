import Foundation

/// Reader of gettext `.po` files.
public enum GettextPO {
    /// Parses `.po` bytes (UTF-8; a BOM is skipped).
    /// - Throws: `CatalogError` with the line and column of the first problem.
    public static func parse(_ data: Data, file: String) throws -> GettextFile {
        var bytes = [UInt8](data)
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            // Find the line and column of the first invalid byte.
            var line = 1, column = 1
            var it = bytes.makeIterator()
            var decoder = UTF8()
            loop: while true {
                switch decoder.decode(&it) {
                case .scalarValue(let c): if c == "\n" { line += 1; column = 1 } else { column += 1 }
                case .emptyInput, .error: break loop
                }
            }
            throw CatalogError(file: file, line: line, column: column, message: "invalid UTF-8")
        }
        return try parse(text: text, file: file)
    }

    private enum Field { case ctx, id, idPlural, str(Int) }

    private struct Pending {
        var ctx: String?
        var id: String?
        var idPlural: String?
        var strs: [Int: String] = [:]
        var flags: [String] = []
        var line: Int?
        var last: Field?
        var hasStr: Bool { !strs.isEmpty }
        var isEmpty: Bool { ctx == nil && id == nil && idPlural == nil && strs.isEmpty }
    }

    /// Parses `.po` text.
    public static func parse(text: String, file: String) throws -> GettextFile {
        var messages: [GettextMessage] = []
        var cur = Pending()
        var lineNo = 0

        func fail(_ msg: String, _ line: Int, _ col: Int? = nil) -> CatalogError {
            CatalogError(file: file, line: line, column: col, message: msg)
        }
        func finish(at line: Int) throws {
            defer { cur = Pending() }
            if cur.isEmpty { return }  // only comments
            guard let id = cur.id else { throw fail("message without msgid", cur.line ?? line) }
            guard cur.hasStr else { throw fail("msgid without msgstr", cur.line ?? line) }
            var translations: [String] = []
            if cur.idPlural != nil {
                let n = (cur.strs.keys.max() ?? -1) + 1
                for i in 0..<n {
                    guard let s = cur.strs[i] else { throw fail("missing msgstr[\(i)]", cur.line ?? line) }
                    translations.append(s)
                }
            } else {
                guard cur.strs.count == 1, let s = cur.strs[-1] else { throw fail("msgstr[n] in a message without msgid_plural", cur.line ?? line) }
                translations = [s]
            }
            messages.append(GettextMessage(context: cur.ctx, id: id, idPlural: cur.idPlural, translations: translations, flags: cur.flags, line: cur.line))
        }

        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNo += 1
            var line = Substring(rawLine)
            if line.hasSuffix("\r") { line = line.dropLast() }
            let trimmed = line.drop(while: { $0 == " " || $0 == "\t" })
            let indent = line.count - trimmed.count
            if trimmed.isEmpty {
                if cur.hasStr { try finish(at: lineNo) }
                continue
            }
            if trimmed.hasPrefix("#") {
                if trimmed.hasPrefix("#~") { continue }  // obsolete message
                if cur.hasStr { try finish(at: lineNo) }
                if trimmed.hasPrefix("#,") {
                    cur.flags += trimmed.dropFirst(2).split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
                }
                continue
            }
            if trimmed.hasPrefix("\"") {
                guard let field = cur.last else { throw fail("string continuation without a keyword", lineNo, indent + 1) }
                let s = try unquote(trimmed, line: lineNo, column: indent + 1, file: file)
                switch field {
                case .ctx: cur.ctx! += s
                case .id: cur.id! += s
                case .idPlural: cur.idPlural! += s
                case .str(let i): cur.strs[i]! += s
                }
                continue
            }
            // keyword "string"
            let kwEnd = trimmed.firstIndex(where: { $0 == " " || $0 == "\t" || $0 == "\"" }) ?? trimmed.endIndex
            let keyword = String(trimmed[..<kwEnd])
            let rest = trimmed[kwEnd...].drop(while: { $0 == " " || $0 == "\t" })
            let restCol = indent + 1 + (trimmed.count - rest.count)
            guard rest.hasPrefix("\"") else { throw fail("expected a quoted string after \(keyword)", lineNo, restCol) }
            let value = try unquote(rest, line: lineNo, column: restCol, file: file)
            switch keyword {
            case "msgctxt":
                if cur.hasStr || cur.id != nil { try finish(at: lineNo) }
                guard cur.ctx == nil else { throw fail("duplicate msgctxt", lineNo, indent + 1) }
                cur.ctx = value; cur.last = .ctx; cur.line = cur.line ?? lineNo
            case "msgid":
                if cur.hasStr { try finish(at: lineNo) }
                guard cur.id == nil else { throw fail("duplicate msgid (missing msgstr?)", lineNo, indent + 1) }
                cur.id = value; cur.last = .id; cur.line = cur.line ?? lineNo
            case "msgid_plural":
                guard cur.id != nil, !cur.hasStr, cur.idPlural == nil else { throw fail("unexpected msgid_plural", lineNo, indent + 1) }
                cur.idPlural = value; cur.last = .idPlural
            case "msgstr":
                guard cur.id != nil else { throw fail("msgstr without msgid", lineNo, indent + 1) }
                guard cur.idPlural == nil else { throw fail("msgstr without index in a plural message", lineNo, indent + 1) }
                guard cur.strs[-1] == nil else { throw fail("duplicate msgstr", lineNo, indent + 1) }
                cur.strs[-1] = value; cur.last = .str(-1)
            default:
                if keyword.hasPrefix("msgstr["), keyword.hasSuffix("]"), let n = Int(keyword.dropFirst(7).dropLast()), n >= 0 {
                    guard cur.id != nil else { throw fail("msgstr without msgid", lineNo, indent + 1) }
                    guard cur.idPlural != nil else { throw fail("msgstr[\(n)] without msgid_plural", lineNo, indent + 1) }
                    guard cur.strs[n] == nil else { throw fail("duplicate msgstr[\(n)]", lineNo, indent + 1) }
                    cur.strs[n] = value; cur.last = .str(n)
                } else {
                    throw fail("unknown keyword \(keyword)", lineNo, indent + 1)
                }
            }
        }
        try finish(at: lineNo)
        return GettextFile(messages: messages)
    }

    /// Decodes a C-style quoted string; only whitespace may follow the closing quote.
    static func unquote(_ s: Substring, line: Int, column: Int, file: String) throws -> String {
        let scalars = Array(s.unicodeScalars)
        var out = String.UnicodeScalarView()
        var bytes: [UInt8] = []  // pending octal/hex bytes, decoded as UTF-8 together
        func flushBytes() {
            if !bytes.isEmpty { out.append(contentsOf: String(decoding: bytes, as: UTF8.self).unicodeScalars); bytes = [] }
        }
        func fail(_ msg: String, _ i: Int) -> CatalogError {
            CatalogError(file: file, line: line, column: column + i, message: msg)
        }
        var i = 1
        while i < scalars.count {
            let c = scalars[i]
            if c == "\"" {
                flushBytes()
                var j = i + 1
                while j < scalars.count {
                    if scalars[j] == "#" { break }  // a trailing comment is tolerated
                    guard scalars[j] == " " || scalars[j] == "\t" else { throw fail("unexpected text after closing quote", j) }
                    j += 1
                }
                return String(out)
            }
            if c == "\\" {
                guard i + 1 < scalars.count else { throw fail("unterminated escape", i) }
                let e = scalars[i + 1]
                var simple: Unicode.Scalar?
                switch e {
                case "n": simple = "\n"
                case "t": simple = "\t"
                case "r": simple = "\r"
                case "\"": simple = "\""
                case "\\": simple = "\\"
                case "a": simple = "\u{07}"
                case "b": simple = "\u{08}"
                case "f": simple = "\u{0C}"
                case "v": simple = "\u{0B}"
                case "?": simple = "?"
                case "'": simple = "'"
                case "0"..."7":
                    var v: UInt32 = 0, k = i + 1
                    while k < scalars.count, k < i + 4, ("0"..."7").contains(scalars[k]) { v = v * 8 + scalars[k].value - 48; k += 1 }
                    guard v < 256 else { throw fail("octal escape out of range", i) }
                    bytes.append(UInt8(v)); i = k; continue
                case "x":
                    var v: UInt32 = 0, k = i + 2
                    while k < scalars.count, let d = Int(String(scalars[k]), radix: 16), k < i + 4 { v = v * 16 + UInt32(d); k += 1 }
                    guard k > i + 2 else { throw fail("\\x without hex digits", i) }
                    bytes.append(UInt8(v)); i = k; continue
                default:
                    throw fail("invalid escape \\\(e)", i)
                }
                flushBytes()
                out.append(simple!)
                i += 2
                continue
            }
            flushBytes()
            out.append(c)
            i += 1
        }
        throw fail("unterminated string", scalars.count)
    }
}

/// Reader of compiled gettext `.mo` files (little- or big-endian).
public enum GettextMO {
    /// Parses `.mo` bytes.
    /// - Throws: `CatalogError` with the byte offset of the first problem.
    public static func parse(_ data: Data, file: String) throws -> GettextFile {
        let b = [UInt8](data)
        func fail(_ msg: String, _ offset: Int) -> CatalogError { CatalogError(file: file, offset: offset, message: msg) }
        guard b.count >= 20 else { throw fail("too short for a .mo header (\(b.count) bytes)", 0) }
        let little: Bool
        switch (b[0], b[1], b[2], b[3]) {
        case (0xDE, 0x12, 0x04, 0x95): little = true
        case (0x95, 0x04, 0x12, 0xDE): little = false
        default: throw fail("bad magic number (not a .mo file)", 0)
        }
        func u32(_ o: Int) throws -> Int {
            guard o >= 0, o + 4 <= b.count else { throw fail("read past end of file", o) }
            let v = little
                ? UInt32(b[o]) | UInt32(b[o + 1]) << 8 | UInt32(b[o + 2]) << 16 | UInt32(b[o + 3]) << 24
                : UInt32(b[o + 3]) | UInt32(b[o + 2]) << 8 | UInt32(b[o + 1]) << 16 | UInt32(b[o]) << 24
            return Int(v)
        }
        let revision = try u32(4)
        guard revision >> 16 <= 1 else { throw fail("unsupported .mo major revision \(revision >> 16)", 4) }
        let count = try u32(8), origTable = try u32(12), transTable = try u32(16)
        func bytes(_ table: Int, _ i: Int) throws -> ArraySlice<UInt8> {
            let at = table + 8 * i
            let len = try u32(at), off = try u32(at + 4)
            guard off + len <= b.count else { throw fail("string \(i) (\(len) bytes at \(off)) runs past end of file", at) }
            return b[off..<(off + len)]
        }
        var raw: [(ArraySlice<UInt8>, ArraySlice<UInt8>, Int)] = []
        for i in 0..<count {
            raw.append((try bytes(origTable, i), try bytes(transTable, i), transTable + 8 * i))
        }
        // Charset from the header (msgid ""), default UTF-8.
        var encoding = String.Encoding.utf8
        if let h = raw.first(where: { $0.0.isEmpty }), let header = String(bytes: h.1, encoding: .isoLatin1),
           let r = header.range(of: "charset=", options: .caseInsensitive) {
            let cs = header[r.upperBound...].prefix(while: { !$0.isWhitespace && $0 != ";" }).lowercased()
            switch cs {
            case "utf-8", "utf8", "ascii", "us-ascii", "charset": encoding = .utf8
            case "iso-8859-1", "latin1", "latin-1": encoding = .isoLatin1
            default: throw fail("unsupported charset \(cs)", h.2)
            }
        }
        func decode(_ s: ArraySlice<UInt8>, _ at: Int) throws -> String {
            guard let str = String(bytes: s, encoding: encoding) else { throw fail("string is not valid \(encoding == .utf8 ? "UTF-8" : "Latin-1")", at) }
            return str
        }
        var messages: [GettextMessage] = []
        for (orig, trans, at) in raw {
            var id = orig[...]
            var context: String?
            if let eot = id.firstIndex(of: 0x04) {
                context = try decode(id[..<eot], at)
                id = id[(eot + 1)...]
            }
            var idPlural: String?
            var msgid: String
            if let nul = id.firstIndex(of: 0) {
                msgid = try decode(id[..<nul], at)
                idPlural = try decode(id[(nul + 1)...], at)
            } else {
                msgid = try decode(id, at)
            }
            let translations = idPlural == nil
                ? [try decode(trans, at)]
                : try trans.split(separator: 0, omittingEmptySubsequences: false).map { try decode($0, at) }
            messages.append(GettextMessage(context: context, id: msgid, idPlural: idPlural, translations: translations, flags: [], line: nil))
        }
        return GettextFile(messages: messages)
    }
}
