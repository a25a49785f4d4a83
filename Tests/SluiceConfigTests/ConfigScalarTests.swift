import SluiceConfig
import Testing
import Yams

/// Configuration files are read without YAML tag resolution (`Resolver.basic`: no ICU
/// regex engine in the process): every scalar is its text, quoted or not, as Yams with
/// its default resolver reads the same text. The options give it a meaning.
@Suite struct ConfigScalarTests {
    @Test(arguments: ["yes", "No", "on", "OFF", "true", "0x1F", "0o17", "017", "0b101", "1_000", "-12", "1:30", "1.5", ".5",
                      "1e3", "-.inf", ".NaN", "~", "null", "NULL", "", "2026-11-18", "2026-11-18 10:00:00", "2026-11-18T10:00:00Z",
                      "<<", "=", "plain text", "'yes'", "\"1\"", "|\n  literal\n", ">\n  folded\n", "ığdır", "\"tab\\tand\\u00e9\""])
    func scalarsAreTheirText(yaml: String) throws {
        let text = "key: " + yaml + "\n"
        let node = try #require(try ConfigNode.parse(yaml: text, file: "f.yml"))
        let reference = try #require(try Yams.compose(yaml: text)?.mapping?["key"]?.scalar)
        let scalar = try #require(node["key"]?.scalar)
        #expect(scalar == reference.string)
        guard case .scalar(_, let quoted) = node["key"]!.kind else { Issue.record("not a scalar"); return }
        #expect(quoted == (reference.style != .plain && reference.style != .any))
    }
}
