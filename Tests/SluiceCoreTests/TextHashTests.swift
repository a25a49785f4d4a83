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

/// Keys that are hash words already hash in dictionaries and sets through `foldedHash`
/// (their `_rawHashValue(seed:)`), not `hash(into:)`: every key put in is found, none
/// that was not, whatever their words share (keys alike in one word but the other, or
/// in all but one bit), through the tables' growth and after removals.
@Suite struct FoldedHashTests {
    /// Pairs of words: `i` in one word and a constant in the other, either way round;
    /// a single bit set (past the first 128 keys, one in each word); and hash words.
    static func words(_ family: String, _ i: Int) -> (UInt64, UInt64) {
        switch family {
        case "high varies": (UInt64(i), 7)
        case "low varies": (7, UInt64(i))
        case "one bit": i < 64 ? (1 << UInt64(i), 0) : i < 128 ? (0, 1 << UInt64(i - 64)) : (1 << UInt64(i % 64), 1 << UInt64(i / 64 % 64))
        case "both": (UInt64(i) &* 0x9E37_79B9_7F4A_7C15, UInt64(i) ^ 0xFF)
        default: { let h = TextHash("key \(i)"); return (h.high, h.low) }()
        }
    }

    @Test(arguments: ["high varies", "low varies", "one bit", "both", "hashes"])
    func everyKeyIsFound(family: String) {
        let words = { Self.words(family, $0) }
        let n = family == "one bit" ? 128 : 20_000
        var bits: [RecordKeyBits: Int] = [:], set = Set<RecordKeyBits>()
        for i in 0..<n {
            let (a, b) = words(i)
            bits[RecordKeyBits(high: a, low: b)] = i
            set.insert(RecordKeyBits(high: a, low: b))
        }
        #expect(bits.count == n && set.count == n)
        // No two of the keys share a hash (64 bits: a chance of ~10^-11 for 20,000 keys).
        #expect(Set((0..<n).map { i in let (a, b) = words(i); return foldedHash(a, b, seed: 12_345) }).count == n)
        for i in 0..<n {
            let (a, b) = words(i)
            #expect(bits[RecordKeyBits(high: a, low: b)] == i)
            #expect(set.contains(RecordKeyBits(high: a, low: b)))
        }
        // Absent keys: the words of keys beyond `n`.
        for i in n..<(n + 100) {
            let (a, b) = words(i)
            #expect(bits[RecordKeyBits(high: a, low: b)] == nil)
        }
        // Half removed: the rest are still found.
        for i in stride(from: 0, to: n, by: 2) {
            let (a, b) = words(i)
            bits[RecordKeyBits(high: a, low: b)] = nil
        }
        #expect(bits.count == n / 2)
        for i in 0..<n {
            let (a, b) = words(i)
            #expect(bits[RecordKeyBits(high: a, low: b)] == (i % 2 == 1 ? i : nil))
        }
    }

    /// The same words hash alike in one table, and the hash depends on the table's seed.
    @Test func seededAndDeterministic() {
        #expect(foldedHash(1, 2, seed: 5) == foldedHash(1, 2, seed: 5))
        #expect(foldedHash(1, 2, seed: 5) != foldedHash(1, 2, seed: 6))
        #expect(foldedHash(1, 2, seed: 5) != foldedHash(2, 1, seed: 5))
    }
}
