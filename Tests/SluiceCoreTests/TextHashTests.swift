import SluiceCore
import Testing

/// `TextHash` (and the window keys' `WindowKeyHash` made of it) is of a text's UTF-8
/// bytes: texts equal byte for byte hash alike, and a text in another Unicode form is
/// another text, as SQLite's TEXT comparison has it (Swift's `==` and `String`'s own hash
/// would call the two forms of `é` one text).
@Suite struct TextHashTests {
    @Test(arguments: [
        ("abc", "abc", true),
        ("", "", true),
        ("E-posta zaten kullanılıyor", "E-posta zaten kullanılıyor", true),
        (String(repeating: "Пароль слишком короткий ", count: 8), String(repeating: "Пароль слишком короткий ", count: 8), true),
        ("\u{E9}", "e\u{301}", false),
        ("caf\u{E9}", "cafe\u{301}", false),
        ("ı", "i", false),
        ("abc", "abd", false),
        ("ab", "abc", false),
    ])
    func hashesTheBytes(a: String, b: String, same: Bool) {
        #expect((TextHash(a) == TextHash(b)) == same)
        #expect((WindowKeyHash(a) == WindowKeyHash(b)) == same)
        #expect(Array(a.utf8) == Array(b.utf8) || !same)
    }
}
