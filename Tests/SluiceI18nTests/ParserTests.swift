import Foundation
import Testing
@testable import SluiceI18n

/// Compares our message to one reference record `{ctx, id, id_plural, strs}`.
private func same(_ m: GettextMessage, _ r: [String: Any]) -> Bool {
    m.context == (r["ctx"] as? String) && m.id == (r["id"] as? String) && m.idPlural == (r["id_plural"] as? String)
        && m.translations == (r["strs"] as? [String] ?? [])
}

@Suite struct GettextReferenceTests {
    @Test func sharedDataIsThere() {
        #expect(I18nTestSupport.poFiles.count >= 31, "no .po files under \(I18nTestSupport.i18n)")
        #expect(I18nTestSupport.moFiles.count >= 8)
        #expect(I18nTestSupport.ymlFiles.count >= 8)
    }

    @Test("every .po entry equals polib's", arguments: I18nTestSupport.poFiles)
    func poMatchesPolib(path: String) throws {
        let ours = try GettextPO.parse(try Data(contentsOf: URL(fileURLWithPath: path)), file: path)
            .messages.filter { !$0.isHeader && !$0.isFuzzy }
        let ref = try I18nTestSupport.referenceFor(path)
        #expect(ours.count == ref.count, "\(path)")
        for (m, r) in zip(ours, ref) {
            #expect(same(m, r), "\(path):\(m.line ?? 0): \(m) vs \(r)")
        }
        #expect(!ours.isEmpty)
    }

    @Test("every .mo entry equals the gettext module's", arguments: I18nTestSupport.moFiles)
    func moMatchesGettext(path: String) throws {
        let ours = try GettextMO.parse(try Data(contentsOf: URL(fileURLWithPath: path)), file: path).messages.filter { !$0.isHeader }
        let ref = try I18nTestSupport.referenceFor(path)
        var byKey: [String: [String: Any]] = [:]
        for r in ref { byKey["\(r["ctx"] as? String ?? "")\u{4}\(r["id"] as? String ?? "")"] = r }
        #expect(ours.count == ref.count, "\(path)")
        for m in ours {
            let r = try #require(byKey["\(m.context ?? "")\u{4}\(m.id)"], "\(m.id) not in reference")
            #expect(same(m, r), "\(m) vs \(r)")
        }
    }

    /// Both byte orders: re-encode a real catalog big- and little-endian, read it back with
    /// our reader and with Python's gettext module.
    @Test(arguments: [true, false])
    func moBothByteOrders(littleEndian: Bool) throws {
        let path = try #require(I18nTestSupport.moFiles.first { $0.contains("/tr/") })
        let original = try GettextMO.parse(try Data(contentsOf: URL(fileURLWithPath: path)), file: path).messages
        let data = makeMO(original, littleEndian: littleEndian)
        #expect(data[0] == (littleEndian ? 0xDE : 0x95))
        let back = try GettextMO.parse(data, file: "x.mo").messages
        #expect(Set(back) == Set(original))
        let tmp = try I18nTestSupport.tempDir() + "/django.mo"
        try data.write(to: URL(fileURLWithPath: tmp))
        let ref = try I18nTestSupport.reference([tmp])[tmp] as? [[String: Any]] ?? []
        #expect(ref.count == back.filter { !$0.isHeader }.count)
        let ours = Dictionary(uniqueKeysWithValues: back.map { ("\($0.context ?? "")\u{4}\($0.id)", $0) })
        for r in ref {
            let m = try #require(ours["\(r["ctx"] as? String ?? "")\u{4}\(r["id"] as? String ?? "")"])
            #expect(same(m, r))
        }
    }

    @Test func poFeatures() throws {
        let po = #"""
        # comment
        msgid ""
        msgstr ""
        "Language: tr\n"
        "Plural-Forms: nplurals=2; plural=(n > 1);\n"

        #, fuzzy
        msgid "Fuzzy one"
        msgstr "Bulanık"

        #, python-format
        msgctxt "field label"
        msgid "Login"
        msgstr "Giriş"

        msgid ""
        "Line one\n"
        "line \"two\"\t\\ \101\x42"
        msgstr "Satır"

        msgid "%(count)d file"
        msgid_plural "%(count)d files"
        msgstr[0] "%(count)d dosya"
        msgstr[1] "%(count)d dosyalar"

        #~ msgid "Obsolete"
        #~ msgstr "Eski"
        """#
        let file = try GettextPO.parse(text: po, file: "t.po")
        #expect(file.language == "tr")
        #expect(file.messages.count == 5)
        let live = file.messages.filter { !$0.isHeader && !$0.isFuzzy }
        #expect(live.map(\.id) == ["Login", "Line one\nline \"two\"\t\\ AB", "%(count)d file"])
        #expect(live[0].context == "field label")
        #expect(live[0].flags == ["python-format"])
        #expect(live[2].idPlural == "%(count)d files")
        #expect(live[2].translations == ["%(count)d dosya", "%(count)d dosyalar"])
        let cat = try MessageCatalog.parse(Data(po.utf8), format: .po, name: "x/tr/django.po")
        #expect(!cat.entries.contains { $0.text == "Bulanık" || $0.text == "Eski" })
        #expect(cat.entries.contains { $0.key == "%(count)d file" && $0.locale == "tr" && $0.pluralForm == "1" && $0.text == "%(count)d dosyalar" })
        #expect(cat.entries.contains { $0.key == "%(count)d file" && $0.locale == "en" && $0.isSource && $0.text == "%(count)d files" })
    }

    struct BadPO: Sendable, CustomStringConvertible {
        var text: String; var line: Int; var column: Int?; var message: String
        var description: String { message }
    }
    static let badPOs: [BadPO] = [
        BadPO(text: "msgid \"a\"\nmsgstr \"b\\q\"\n", line: 2, column: 10, message: "invalid escape"),
        BadPO(text: "msgid \"a\"\nmsgstr \"b\n", line: 2, column: nil, message: "unterminated string"),
        BadPO(text: "msgid \"a\"\n\nmsgid \"b\"\nmsgstr \"c\"\n", line: 3, column: 1, message: "duplicate msgid"),
        BadPO(text: "msgid \"a\"\nmsgstr[0] \"b\"\n", line: 2, column: 1, message: "without msgid_plural"),
        BadPO(text: "msgid \"a\"\nfoo \"b\"\n", line: 2, column: 1, message: "unknown keyword"),
        BadPO(text: "msgid \"a\"\nmsgstr \"b\" x\n", line: 2, column: 12, message: "after closing quote"),
        BadPO(text: "\"x\"\n", line: 1, column: 1, message: "continuation"),
        BadPO(text: "msgid \"a\"\n", line: 1, column: nil, message: "without msgstr"),
    ]
    @Test(arguments: badPOs)
    func malformedPONamesFileAndLine(bad: BadPO) {
        do {
            _ = try GettextPO.parse(text: bad.text, file: "bad.po")
            Issue.record("no error for \(bad.message)")
        } catch let e as CatalogError {
            #expect(e.file == "bad.po")
            #expect(e.line == bad.line, "\(e)")
            if let c = bad.column { #expect(e.column == c, "\(e)") }
            #expect(e.message.contains(bad.message), "\(e)")
            #expect(e.description.hasPrefix("bad.po:\(bad.line)"))
        } catch { Issue.record("\(error)") }
    }

    @Test func malformedMO() throws {
        let good = makeMO([GettextMessage(context: nil, id: "a", idPlural: nil, translations: ["b"], flags: [], line: nil)], littleEndian: true)
        #expect(throws: CatalogError.self) { try GettextMO.parse(Data([1, 2, 3]), file: "x.mo") }
        do { _ = try GettextMO.parse(Data(repeating: 7, count: 40), file: "x.mo"); Issue.record("no error") } catch let e as CatalogError {
            #expect(e.offset == 0 && e.message.contains("magic") && e.description.contains("x.mo"))
        }
        do { _ = try GettextMO.parse(good.prefix(good.count - 3), file: "t.mo"); Issue.record("no error") } catch let e as CatalogError {
            #expect(e.offset != nil && e.message.contains("past end"), "\(e)")
        }
    }
}

@Suite struct KeyValueCatalogTests {
    @Test("Rails YAML flattening equals PyYAML's", arguments: I18nTestSupport.ymlFiles)
    func yamlMatchesPyYAML(path: String) throws {
        let cat = try MessageCatalog.load(path: path)
        let ref = try I18nTestSupport.referenceFor(path)
        #expect(cat.entries.count == ref.count, "\(path)")
        for (e, r) in zip(cat.entries, ref) {
            #expect(e.locale == r["locale"] as? String && e.key == r["key"] as? String
                    && e.pluralForm == r["form"] as? String && e.text == r["text"] as? String, "\(e) vs \(r)")
        }
    }

    @Test func railsPluralsAndKeys() throws {
        let path = try #require(I18nTestSupport.ymlFiles.first { $0.hasSuffix("/ru.yml") })
        let cat = try MessageCatalog.load(path: path)
        let tooLong = cat.entries.filter { $0.key == "errors.messages.too_long" }
        #expect(tooLong.map(\.pluralForm) == ["one", "few", "many", "other"])
        #expect(tooLong.allSatisfy { $0.locale == "ru" && $0.text.contains("%{count}") })
        #expect(cat.entries.contains { $0.key == "errors.messages.blank" && $0.pluralForm == nil })
    }

    @Test func jsonFlatteningAndLocale() throws {
        let json = #"{"tr": {"errors": {"messages": {"blank": "doldurulmalı", "too_long": {"one": "çok uzun (%{count})", "other": "çok uzun (%{count})"}, "n": 3, "list": ["a"]}}}}"#
        let cat = try MessageCatalog.parse(Data(json.utf8), format: .json, name: "/x/tr.json")
        #expect(cat.entries.map(\.key) == ["errors.messages.blank", "errors.messages.too_long", "errors.messages.too_long"])
        #expect(cat.entries.allSatisfy { $0.locale == "tr" })
        #expect(cat.entries.map(\.pluralForm) == [nil, "one", "other"])
        let plain = try MessageCatalog.parse(Data(#"{"auth": {"failed": "Giri\u015f ba\u015far\u0131s\u0131z"}}"#.utf8), format: .json, name: "/x/tr/messages.json")
        #expect(plain.entries == [MessageEntry(key: "auth.failed", locale: "tr", text: "Giriş başarısız", line: 1)])
    }

    struct Bad: Sendable, CustomStringConvertible {
        var format: MessageCatalog.Format; var text: String; var line: Int; var column: Int
        var description: String { "\(format) \(text)" }
    }
    static let bad: [Bad] = [
        Bad(format: .json, text: "{\n  \"a\": \"b\",\n  \"c\" \"d\"\n}", line: 3, column: 7),
        Bad(format: .json, text: "{\"a\": [1, 2,, 3]}", line: 1, column: 13),
        Bad(format: .json, text: "{\n\"a\": \"x\\q\"}", line: 2, column: 8),
        Bad(format: .yaml, text: "en:\n  a: \"unterminated\n  b: c\n", line: 4, column: 1),
        Bad(format: .yaml, text: "en:\n  a: b\n   c: d\n", line: 3, column: 5),
    ]
    @Test(arguments: bad)
    func malformedNamesFileLineColumn(bad: Bad) {
        do {
            _ = try MessageCatalog.parse(Data(bad.text.utf8), format: bad.format, name: "bad.\(bad.format)")
            Issue.record("no error")
        } catch let e as CatalogError {
            #expect(e.file == "bad.\(bad.format)")
            #expect(e.line == bad.line && e.column == bad.column, "\(e)")
        } catch { Issue.record("\(error)") }
    }

    @Test func loadChoosesParserByExtension() throws {
        #expect(MessageCatalog.Format(path: "a/b.PO") == .po)
        #expect(MessageCatalog.Format(path: "a/b.yaml") == .yaml)
        #expect(MessageCatalog.Format(path: "a/b.txt") == nil)
        #expect(throws: CatalogError.self) { try MessageCatalog.load(path: "/nonexistent/x.po") }
        #expect(throws: CatalogError.self) { try MessageCatalog.load(path: "/nonexistent/x.txt") }
    }
}
