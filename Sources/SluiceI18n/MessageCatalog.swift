import Foundation

/// A malformed catalog or codes file: names the file and, where known, the line and
/// column (text formats) or the byte offset (`.mo`).
public struct CatalogError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The file (path as given, or a name for in-memory data).
    public var file: String
    /// 1-based line, when the format has lines.
    public var line: Int?
    /// 1-based column (in Unicode scalars), where it makes sense.
    public var column: Int?
    /// Byte offset, for binary formats.
    public var offset: Int?
    /// What is wrong.
    public var message: String

    /// Creates an error.
    public init(file: String, line: Int? = nil, column: Int? = nil, offset: Int? = nil, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.offset = offset
        self.message = message
    }

    /// `file:line:column: message` (or `file: offset N: message`).
    public var description: String {
        var s = file
        if let line {
            s += ":\(line)"
            if let column { s += ":\(column)" }
        } else if let offset {
            s += ": offset \(offset)"
        }
        return s + ": " + message
    }
}

/// One message of a catalog in one locale and one plural form.
public struct MessageEntry: Sendable, Hashable {
    /// The stable key: the gettext msgid, or the dotted key without the locale prefix
    /// (`errors.messages.too_long`) for Rails YAML and JSON.
    public var key: String
    /// The gettext message context (`msgctxt`), if any.
    public var context: String?
    /// The locale of `text` (`tr`, `pt_BR`, `pt-BR`, ...).
    public var locale: String
    /// The plural form: the gettext `msgstr[n]` index as `"0"`, `"1"`, ...; a CLDR category
    /// (`one`, `few`, `many`, `other`, `zero`, `two`) for Rails/JSON; nil for a message without plurals.
    public var pluralForm: String?
    /// The template text, placeholders unexpanded.
    public var text: String
    /// True when `text` is a gettext source string (msgid or msgid_plural) rather than a translation.
    public var isSource: Bool
    /// 1-based line in the catalog file where the entry starts (nil for `.mo`).
    public var line: Int?

    /// Creates an entry.
    public init(key: String, context: String? = nil, locale: String, pluralForm: String? = nil, text: String,
                isSource: Bool = false, line: Int? = nil) {
        self.key = key
        self.context = context
        self.locale = locale
        self.pluralForm = pluralForm
        self.text = text
        self.isSource = isSource
        self.line = line
    }
}

/// The entries of one catalog file.
public struct MessageCatalog: Sendable {
    /// The file formats understood.
    public enum Format: String, Sendable, CaseIterable {
        /// gettext source catalog.
        case po
        /// gettext compiled catalog.
        case mo
        /// Rails i18n YAML (`<locale>: errors: messages: ...`).
        case yaml
        /// Plain JSON, nested objects flattened to dotted keys.
        case json

        /// The format for a path's extension, or nil.
        public init?(path: String) {
            switch URL(fileURLWithPath: path).pathExtension.lowercased() {
            case "po", "pot": self = .po
            case "mo": self = .mo
            case "yml", "yaml": self = .yaml
            case "json": self = .json
            default: return nil
            }
        }
    }

    /// Where it was read from (or the name given to `parse`).
    public var source: String
    /// Its format.
    public var format: Format
    /// All entries in file order. gettext catalogs give, for each message that is not fuzzy
    /// and not the header, its source strings (`isSource`, locale = `sourceLocale`) and its
    /// non-empty translations.
    public var entries: [MessageEntry]

    /// Creates a catalog from entries.
    public init(source: String, format: Format, entries: [MessageEntry]) {
        self.source = source
        self.format = format
        self.entries = entries
    }

    /// The locales that occur among the entries, in first-seen order.
    public var locales: [String] {
        var seen = Set<String>()
        return entries.compactMap { seen.insert($0.locale).inserted ? $0.locale : nil }
    }

    /// Reads a catalog, choosing the parser by extension (`.po`, `.mo`, `.yml`/`.yaml`, `.json`).
    ///
    /// - Parameters:
    ///   - locale: overrides the locale (gettext: otherwise the header's `Language`, else the
    ///     folder name `<lang>/django.po` or `<lang>/LC_MESSAGES/x.po`; JSON: otherwise the root key
    ///     when it equals the file's locale, else the file stem or folder name). Rails YAML takes
    ///     the locale from its root keys and ignores this.
    ///   - sourceLocale: the locale reported for gettext msgid/msgid_plural texts.
    /// - Throws: `CatalogError` naming the file and line (and column) for malformed content.
    public static func load(path: String, locale: String? = nil, sourceLocale: String = "en") throws -> MessageCatalog {
        guard let format = Format(path: path) else {
            throw CatalogError(file: path, message: "unknown catalog extension (expected .po, .mo, .yml, .yaml or .json)")
        }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw CatalogError(file: path, message: "cannot read: \(error.localizedDescription)")
        }
        return try parse(data, format: format, name: path, locale: locale, sourceLocale: sourceLocale)
    }

    /// Parses catalog bytes of a known format; `name` is used in errors and to guess the locale.
    public static func parse(_ data: Data, format: Format, name: String, locale: String? = nil,
                             sourceLocale: String = "en") throws -> MessageCatalog {
        switch format {
        case .po, .mo:
            let file = format == .po ? try GettextPO.parse(data, file: name) : try GettextMO.parse(data, file: name)
            let loc = locale ?? file.language ?? Self.localeFromPath(name)
            return MessageCatalog(source: name, format: format, entries: file.entries(locale: loc, sourceLocale: sourceLocale))
        case .yaml:
            let entries = try KeyValueCatalog.parseYAML(data, file: name)
            return MessageCatalog(source: name, format: format, entries: entries)
        case .json:
            let entries = try KeyValueCatalog.parseJSON(data, file: name, locale: locale ?? Self.localeFromPath(name))
            return MessageCatalog(source: name, format: format, entries: entries)
        }
    }

    static func looksLikeLocale(_ s: String) -> Bool {
        let parts = s.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "-" || $0 == "_" })
        guard let first = parts.first, (2...3).contains(first.count), first.allSatisfy({ $0.isASCII && $0.isLetter }) else { return false }
        return parts.dropFirst().allSatisfy { (2...8).contains($0.count) && $0.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) } }
    }

    /// `tr.json` -> `tr`; `.../pt_BR/LC_MESSAGES/django.po` -> `pt_BR`; `.../de/django.po` -> `de`.
    static func localeFromPath(_ path: String) -> String {
        var url = URL(fileURLWithPath: path)
        let stem = url.deletingPathExtension().lastPathComponent
        if looksLikeLocale(stem) { return stem }
        url = url.deletingLastPathComponent()
        if url.lastPathComponent == "LC_MESSAGES" { url = url.deletingLastPathComponent() }
        let dir = url.lastPathComponent
        return looksLikeLocale(dir) ? dir : stem
    }
}

/// One gettext message as written in a `.po`/`.mo` file.
public struct GettextMessage: Sendable, Hashable {
    /// `msgctxt`, if present.
    public var context: String?
    /// `msgid`.
    public var id: String
    /// `msgid_plural`, if present.
    public var idPlural: String?
    /// `msgstr` (one element) or `msgstr[0]`, `msgstr[1]`, ... for plural messages.
    public var translations: [String]
    /// Flags from `#,` comments (`fuzzy`, `python-format`, ...).
    public var flags: [String]
    /// 1-based line of the first keyword of the message (nil for `.mo`).
    public var line: Int?

    /// Whether the message is marked fuzzy (such messages are not used for matching).
    public var isFuzzy: Bool { flags.contains("fuzzy") }
    /// Whether this is the header entry (empty msgid, no context).
    public var isHeader: Bool { id.isEmpty && context == nil }
}

/// A parsed gettext file.
public struct GettextFile: Sendable {
    /// Every message, including the header and fuzzy ones (obsolete `#~` messages are dropped).
    public var messages: [GettextMessage]

    /// The header fields (`Language`, `Content-Type`, `Plural-Forms`, ...).
    public var header: [String: String] {
        guard let h = messages.first(where: { $0.isHeader })?.translations.first else { return [:] }
        var fields: [String: String] = [:]
        for line in h.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[line[..<colon].trimmingCharacters(in: .whitespaces)] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return fields
    }

    /// The header's `Language`, when not empty.
    public var language: String? {
        guard let l = header["Language"], !l.isEmpty else { return nil }
        return l
    }

    /// Catalog entries: for each message that is neither the header nor fuzzy, the source
    /// strings and the non-empty translations.
    func entries(locale: String, sourceLocale: String) -> [MessageEntry] {
        var out: [MessageEntry] = []
        for m in messages where !m.isHeader && !m.isFuzzy {
            if let plural = m.idPlural {
                out.append(MessageEntry(key: m.id, context: m.context, locale: sourceLocale, pluralForm: "0", text: m.id, isSource: true, line: m.line))
                out.append(MessageEntry(key: m.id, context: m.context, locale: sourceLocale, pluralForm: "1", text: plural, isSource: true, line: m.line))
                for (i, t) in m.translations.enumerated() where !t.isEmpty {
                    out.append(MessageEntry(key: m.id, context: m.context, locale: locale, pluralForm: String(i), text: t, line: m.line))
                }
            } else {
                out.append(MessageEntry(key: m.id, context: m.context, locale: sourceLocale, text: m.id, isSource: true, line: m.line))
                if let t = m.translations.first, !t.isEmpty {
                    out.append(MessageEntry(key: m.id, context: m.context, locale: locale, text: t, line: m.line))
                }
            }
        }
        return out
    }
}
