import Foundation
import Testing
@testable import SluiceI18n

/// The matcher over every shared catalog, built once.
enum Shared {
    static let codes = ErrorCodeMap([
        "Enter a valid email address.": "INVALID_EMAIL",
        "Too many failed login attempts. Try again later.": "TOO_MANY_LOGIN_ATTEMPTS",
        "Request was throttled.": "THROTTLED",
        "Ensure this value has at most %(limit_value)d character (it has %(show_value)d).": "MAX_LENGTH",
        "errors.messages.too_long": "TOO_LONG",
        "errors.messages.taken": "TAKEN",
    ])
    static let catalogPaths: [String] = {
        let order = ["conf", "auth", "allauth", "phonenumber", "drf"]
        let gettext = (I18nTestSupport.poFiles + I18nTestSupport.moFiles).sorted { a, b in
            let da = order.firstIndex { a.contains("/gettext/\($0)/") } ?? 9, db = order.firstIndex { b.contains("/gettext/\($0)/") } ?? 9
            return da != db ? da < db : a < b
        }
        return gettext + I18nTestSupport.ymlFiles
    }()
    static let catalogs: [MessageCatalog] = catalogPaths.compactMap { try? MessageCatalog.load(path: $0) }
    static let matcher = ErrorCodeMatcher(catalogs: catalogs, codes: codes, options: .init(attributePrefixWords: 2))
}

/// Turkish upper-casing (i → İ, ı → I), independent of the process locale.
func turkishUpper(_ s: String) -> String {
    String(String.UnicodeScalarView(s.unicodeScalars.map { $0 == "i" ? "\u{130}" : $0 == "\u{131}" ? "I" : $0 })).uppercased()
}

/// The variants every text must survive.
func variants(_ s: String) -> [String] {
    [s, s.uppercased(), turkishUpper(s), s.lowercased(), s.decomposedStringWithCanonicalMapping,
     turkishUpper(s).decomposedStringWithCanonicalMapping, "  " + s.replacingOccurrences(of: " ", with: " \t\n ") + "  ",
     s.replacingOccurrences(of: " ", with: "\u{A0}"), s + "!!", s + " .", s + "…", String(s.drop(while: { _ in false }).reversed().drop { ".!。".contains($0) }.reversed())]
}

struct Case: Sendable, CustomStringConvertible {
    var text: String
    var code: String
    var values: [String: String] = [:]
    var locale: String? = nil
    var description: String { text }
}

@Suite struct MatcherTests {
    static let cases: [Case] = [
        Case(text: "Enter a valid email address.", code: "INVALID_EMAIL", locale: "en"),
        Case(text: "Geçerli bir e-posta adresi girin.", code: "INVALID_EMAIL", locale: "tr"),
        Case(text: "Введите правильный адрес электронной почты.", code: "INVALID_EMAIL", locale: "ru"),
        Case(text: "Bitte gültige E-Mail-Adresse eingeben.", code: "INVALID_EMAIL", locale: "de"),
        Case(text: "Too many failed login attempts. Try again later.", code: "TOO_MANY_LOGIN_ATTEMPTS", locale: "en"),
        Case(text: "Çok fazla hatalı giriş yapıldı. Lütfen daha sonra tekrar deneyin.", code: "TOO_MANY_LOGIN_ATTEMPTS", locale: "tr"),
        Case(text: "Слишком много неудачных попыток входа в систему. Повторите попытку позже.", code: "TOO_MANY_LOGIN_ATTEMPTS", locale: "ru"),
        Case(text: "Zu viele gescheiterte Anmeldeversuche. Bitte versuche es später erneut.", code: "TOO_MANY_LOGIN_ATTEMPTS", locale: "de"),
        // DRF: two catalog messages joined into one text (sentence fallback), value captured.
        Case(text: "Request was throttled. Expected available in 30 seconds.", code: "THROTTLED", values: ["wait": "30"], locale: "en"),
        Case(text: "Üst üste çok fazla istek yapıldı. 30 saniye içinde erişilebilir olması bekleniyor.", code: "THROTTLED", values: ["wait": "30"], locale: "tr"),
        Case(text: "Die Anfrage wurde gedrosselt. Erwarte Verfügbarkeit in 1 Sekunde.", code: "THROTTLED", values: ["wait": "1"], locale: "de"),
        Case(text: "Запрос был проигнорирован.", code: "THROTTLED", locale: "ru"),
        // Django python-format plural entries.
        Case(text: "Ensure this value has at most 150 characters (it has 200).", code: "MAX_LENGTH", values: ["limit_value": "150", "show_value": "200"], locale: "en"),
        Case(text: "Убедитесь, что это значение содержит не более 150 символов (сейчас 200).", code: "MAX_LENGTH", values: ["limit_value": "150", "show_value": "200"], locale: "ru"),
        // Rails %{count}, plural forms.
        Case(text: "is too long (maximum is 30 characters)", code: "TOO_LONG", values: ["count": "30"], locale: "en"),
        Case(text: "is too long (maximum is 1 character)", code: "TOO_LONG", values: ["count": "1"], locale: "en"),
        Case(text: "çok uzun (en fazla 30 karakter)", code: "TOO_LONG", values: ["count": "30"], locale: "tr"),
        Case(text: "слишком большой длины (не может быть больше чем 30 символов)", code: "TOO_LONG", values: ["count": "30"], locale: "ru"),
        Case(text: "слишком большой длины (не может быть больше чем 21 символ)", code: "TOO_LONG", values: ["count": "21"], locale: "ru"),
        Case(text: "слишком большой длины (не может быть больше чем 3 символа)", code: "TOO_LONG", values: ["count": "3"], locale: "ru"),
        Case(text: "ist zu lang (mehr als 30 Zeichen)", code: "TOO_LONG", values: ["count": "30"], locale: "de"),
        Case(text: "занадто довгий (максимум 5 знаків)", code: "TOO_LONG", values: ["count": "5"], locale: "uk"),
        // Rails full message: leading attribute stripped and captured.
        Case(text: "Email is too long (maximum is 30 characters)", code: "TOO_LONG", values: ["count": "30", "attribute": "Email"], locale: "en"),
        Case(text: "E-posta hali hazırda kullanılmakta", code: "TAKEN", values: ["attribute": "E-posta"], locale: "tr"),
        // Unmapped: the key is the code.
        Case(text: "This field is required.", code: "This field is required.", locale: "en"),
        Case(text: "has already been taken", code: "TAKEN", locale: "en"),
    ]

    @Test(arguments: cases)
    func everyVariantMapsToTheSameCode(c: Case) throws {
        for v in variants(c.text) {
            let m = try #require(Shared.matcher.match(v), "no match for \(v.debugDescription)")
            #expect(m.code == c.code, "\(v.debugDescription) -> \(m)")
            if let l = c.locale { #expect(m.locale == l, "\(v.debugDescription) -> \(m)") }
            // Captured values come from the original text: compare them folded.
            #expect(m.values.mapValues(TextNormalizer.normalize) == c.values.mapValues(TextNormalizer.normalize), "\(v.debugDescription) -> \(m.values)")
            if v == c.text { #expect(m.values == c.values) }
        }
    }

    /// Every translation of a catalog entry, in every language, with values filled in, gives the entry's code.
    @Test(arguments: ["Enter a valid email address.", "Too many failed login attempts. Try again later.",
                      "errors.messages.too_long", "errors.messages.too_short", "errors.messages.taken", "errors.messages.greater_than",
                      "Ensure this value has at most %(limit_value)d character (it has %(show_value)d).",
                      "Expected available in {wait} seconds.", "\"{input}\" is not a valid choice."])
    func everyLanguageOfAnEntry(key: String) throws {
        let entries = Shared.catalogs.flatMap(\.entries).filter { $0.key == key }
        #expect(Set(entries.map(\.locale)).count >= 6, "\(key) in \(Set(entries.map(\.locale)))")
        let all = Shared.catalogs.flatMap(\.entries)
        for e in entries {
            var text = "", expected: [String: String] = [:]
            for part in TemplateParser.parse(e.text) {
                switch part {
                case .literal(let s): text += s
                case .placeholder(let name, let kind):
                    let v = kind == .text ? "Zeynep İnce" : "42"
                    text += v
                    expected[name] = expected[name] ?? v
                }
            }
            for v in [text, turkishUpper(text), text.decomposedStringWithCanonicalMapping] {
                let m = try #require(Shared.matcher.match(v), "\(e.locale) \(v)")
                // Another key whose text in this locale is the very same (e.g. tr "second"/"seconds") may win the tie.
                let twins = Set(all.filter { $0.locale == e.locale && TextNormalizer.normalize($0.text) == TextNormalizer.normalize(e.text) }.map(\.key))
                #expect(m.key == key || twins.contains(m.key), "\(e.locale) \(v.debugDescription) -> \(m)")
                if m.key == key { #expect(m.code == (Shared.codes.code(for: e) ?? key)) }
                if v == text { #expect(m.values == expected, "\(e.locale) \(v)") }
            }
        }
    }

    @Test(arguments: ["connection reset by peer", "Geçersiz kullanıcı tanımlayıcı 0x1F", "", "   ", "...", "Введите что-нибудь"])
    func unknownTextIsNilAndCounted(text: String) {
        let unknown = UnknownTexts()
        #expect(Shared.matcher.match(text, recordingUnknownIn: unknown) == nil)
        #expect(unknown.total == 1)
    }

    @Test func unknownTextsTopN() async {
        let unknown = UnknownTexts(capacity: 3)
        await withTaskGroup(of: Void.self) { g in
            for i in 0..<8 {
                g.addTask {
                    for j in 0..<100 {
                        unknown.record(["Disk full", "DISK  FULL.", "timeout", "x\(i)"][j % 4])
                    }
                }
            }
        }
        #expect(unknown.total == 800)
        let top = unknown.top(2)
        #expect(top.map(\.normalized) == ["disk full", "timeout"])
        #expect(top.map(\.count) == [400, 200])
        #expect(unknown.distinct == 3)
        #expect(unknown.overflow == 200 - 25)
    }

    @Test func codesFileYAMLAndJSON() throws {
        let dir = try I18nTestSupport.tempDir()
        try "errors:\n  messages:\n    taken: EMAIL_TAKEN\n\"Enter a valid email address\": INVALID_EMAIL\n".write(toFile: dir + "/codes.yml", atomically: true, encoding: .utf8)
        try #"{"errors.messages.taken": "EMAIL_TAKEN", "Enter a valid email address.": "INVALID_EMAIL"}"#.write(toFile: dir + "/codes.json", atomically: true, encoding: .utf8)
        for f in ["codes.yml", "codes.json"] {
            let map = try ErrorCodeMap.load(path: dir + "/" + f)
            #expect(map.code(for: MessageEntry(key: "errors.messages.taken", locale: "tr", text: "x")) == "EMAIL_TAKEN")
            #expect(map.code(for: MessageEntry(key: "Enter a valid email address.", locale: "de", text: "x")) == "INVALID_EMAIL")
            #expect(map.code(for: MessageEntry(key: "other", locale: "de", text: "x")) == nil)
        }
        try "a: [1, 2]\n".write(toFile: dir + "/bad.yml", atomically: true, encoding: .utf8)
        #expect(throws: CatalogError.self) { try ErrorCodeMap.load(path: dir + "/bad.yml") }
    }

    @Test func ambiguityPrefersMostLiteralCharacters() throws {
        let cat = MessageCatalog(source: "t", format: .json, entries: [
            MessageEntry(key: "short", locale: "en", text: "%{thing} is invalid"),
            MessageEntry(key: "long", locale: "en", text: "%{thing} value is invalid"),
            MessageEntry(key: "any", locale: "en", text: "%{a} %{b}"),  // no literal letters: not indexed
            MessageEntry(key: "tie1", locale: "en", text: "error %s here"),
            MessageEntry(key: "tie2", locale: "en", text: "error here %s"),
        ])
        let m = ErrorCodeMatcher(catalogs: [cat])
        #expect(m.match("Email value is invalid")?.key == "long")
        #expect(m.match("Email value is invalid")?.values == ["thing": "Email"])
        #expect(m.match("Email is invalid")?.key == "short")
        #expect(m.match("foo bar") == nil)
        #expect(m.match("error here here")?.key == "tie1")  // equal literal length: first loaded wins
        #expect(m.templateCount == 4)
    }

    @Test func onlyMappedEntries() {
        let m = ErrorCodeMatcher(catalogs: Shared.catalogs, codes: Shared.codes, options: .init(onlyMappedEntries: true))
        #expect(m.match("This field is required.") == nil)
        #expect(m.match("GEÇERLİ BİR E-POSTA ADRESİ GİRİN")?.code == "INVALID_EMAIL")
    }
}

@Suite struct NormalizationTests {
    static let equal: [(String, String)] = [
        ("GEÇERSİZ", "geçersiz"), ("Invalid", "INVALID"), ("İSTANBUL", "istanbul"), ("ISTANBUL", "ıstanbul"),
        ("i̇stanbul", "istanbul"), ("Straße", "STRASSE"), ("ΟΔΟΣ", "οδος"), ("οδός", "ΟΔΌΣ"),
        ("Café", "Cafe\u{301}"), ("  a \t\n b  ", "a b"), ("a\u{A0}b", "a b"), ("a\u{200B}b", "ab"),
        ("Done.", "done"), ("Fait !", "fait"), ("完成。", "完成"), ("Wait…", "wait"), ("Ok?!", "ok"),
        ("“quoted”", "\"quoted\""), ("Didn’t", "didn't"), ("Ошибка", "ОШИБКА"),
    ]
    @Test(arguments: equal)
    func foldsEqual(a: String, b: String) {
        #expect(TextNormalizer.normalize(a) == TextNormalizer.normalize(b), "\(TextNormalizer.normalize(a).debugDescription) vs \(TextNormalizer.normalize(b).debugDescription)")
    }

    @Test(arguments: [("a.b", "a b"), ("résumé", "resume"), ("is (x)", "is x"), ("1.5", "15")])
    func staysDifferent(a: String, b: String) {
        #expect(TextNormalizer.normalize(a) != TextNormalizer.normalize(b))
    }

    static let templates: [(String, [TemplatePart])] = [
        ("%{count} gün", [.placeholder(name: "count", kind: .number), .literal(" gün")]),
        ("%(wait)d s, %(name)s", [.placeholder(name: "wait", kind: .integer), .literal(" s, "), .placeholder(name: "name", kind: .text)]),
        ("%s of %d (%.2f%%)", [.placeholder(name: "0", kind: .text), .literal(" of "), .placeholder(name: "1", kind: .integer),
                              .literal(" ("), .placeholder(name: "2", kind: .number), .literal("%)")]),
        ("%2$s %1$s", [.placeholder(name: "1", kind: .text), .literal(" "), .placeholder(name: "0", kind: .text)]),
        ("{0} and {name}", [.placeholder(name: "0", kind: .text), .literal(" and "), .placeholder(name: "name", kind: .text)]),
        ("100% sure {not valid}", [.literal("100% sure {not valid}")]),
        ("%e %B %Y", [.literal("%e %B %Y")]),
    ]
    @Test(arguments: templates)
    func placeholderSyntaxes(template: String, parts: [TemplatePart]) {
        #expect(TemplateParser.parse(template) == parts)
    }

    @Test func capturesComeFromTheOriginalText() throws {
        let cat = MessageCatalog(source: "t", format: .json, entries: [
            MessageEntry(key: "k", locale: "en", text: "User %(name)s has %(n)d items: %s.")])
        let m = try #require(ErrorCodeMatcher(catalogs: [cat]).match("USER  Zeynep İnce HAS 3 ITEMS:  Çay  Kahve"))
        #expect(m.values == ["name": "Zeynep İnce", "n": "3", "0": "Çay  Kahve"])
    }
}
