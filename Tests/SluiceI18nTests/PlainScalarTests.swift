import Foundation
import Testing
import Yams
@testable import SluiceI18n

/// Catalogs are read without Yams' resolver rules (regular expressions: ICU in resident
/// memory); `YAMLPlainScalar` decides which plain scalars are strings. The reference is
/// Yams' own default resolver, on chosen texts and on many generated ones.
@Suite struct PlainScalarTests {
    static func yamsSaysString(_ text: String) -> Bool {
        Resolver.default.resolveTag(of: Node(text)) == .str
    }

    @Test(arguments: [
        "yes", "Yes", "YES", "yES", "y", "n", "no", "on", "Off", "true", "False", "TRUE", "tRUE",
        "~", "null", "Null", "NULL", "nULL", "", "<<", "=", "==", "<",
        "0", "-0", "+0", "00", "017", "08", "0o17", "0o8", "0b101", "0b102", "0b", "0x1F", "0xg", "0x", "0_", "-0x1_f",
        "1", "12", "1_000", "-12", "+12", "1:30", "1:3", "1:60", "1:5:07", "190:20:30", "0:30", "1:", ":30",
        "1.5", "1.", ".5", "._", ".", "-.5", "1e3", "1E+3", "1e", "1.5e-3", ".5e3", ".5e+3", "1_0.0_1", "6.8523015e+5",
        "190:20:30.15", "1:30.", "1:30.5e3", ".inf", "-.Inf", "+.INF", ".nan", ".NaN", "-.nan", "inf", "nan",
        "2026-11-18", "2026-1-18", "2026-11-8", "2026-11-18T10:00:00", "2026-11-18t10:00:00Z", "2026-11-18 10:00:00",
        "2026-11-18  \t10:00:00.5", "2026-1-8T1:00:00", "2026-11-18T10:00", "2026-11-18T10:00:00.123456 +03:00",
        "2026-11-18T10:00:00-3", "2026-11-18T10:00:00 Z", "2026-11-18T10:00:00+03:0", "2026-11-18T10:00:00ZZ", "20261118",
        "plain text", "Enter a valid email", "ığdır", "١٢٣", "12 monkeys", "1-2", "+", "-", "e3", "0.0.0",
    ])
    func plainScalarsLikeYams(text: String) {
        #expect(YAMLPlainScalar.isString(text) == Self.yamsSaysString(text), "\(text)")
    }

    /// Generated texts over the characters the rules look at (a fixed seed: the same
    /// 20,000 texts every run).
    @Test func generatedScalarsLikeYams() {
        let alphabet = Array("0123456789012345.-+:_eExXbBoOTtZ ._:-nNaAiIfF~<=ys")
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> UInt64 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return state >> 33
        }
        var differ: [String] = []
        for _ in 0..<20_000 {
            let length = Int(next() % 12) + 1
            let text = String((0..<length).map { _ in alphabet[Int(next() % UInt64(alphabet.count))] })
            if YAMLPlainScalar.isString(text) != Self.yamsSaysString(text) { differ.append(text) }
        }
        #expect(differ.isEmpty, "\(differ.prefix(20))")
    }

    /// In a catalog: strings are messages whatever they look like once quoted, tagged
    /// `!!str` or in a block; plain scalars that YAML types are not.
    @Test func catalogValuesAsYamsTypesThem() throws {
        let yaml = """
        en:
          a: yes
          b: "yes"
          c: !!str 12
          d: 12
          e: Enter a valid email
          f: |
            1.5
          g: !!int "7"
          h: 2026-11-18
        """
        let entries = try KeyValueCatalog.parseYAML(Data(yaml.utf8), file: "t.yml")
        #expect(Set(entries.map(\.key)) == ["b", "c", "e", "f"])
    }
}
