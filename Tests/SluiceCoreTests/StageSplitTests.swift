@testable import SluiceCore
import Testing

/// Where the runner applies each stage: the leading batch-local stages on the read-ahead
/// thread, the stateful span on the runner, the rest on the worker, and a trailing
/// `select` always on the worker (which reads the sinks' columns through it instead of
/// building the selected records). The expected ranges are worked out by hand.
@Suite struct StageSplitTests {
    /// A stage of a given shape: batch-local (`l`), stateful (`s`), or a batch-local
    /// `select` (`p`, it has a projection).
    struct Shape: Transformer {
        let kind: Character
        func apply(_ batch: inout RecordBatch, context: RunContext) throws {}
        var isBatchLocal: Bool { kind != "s" }
        var projection: Projection? { kind == "p" ? Projection(columns: []) : nil }
    }

    static let cases: [(shapes: String, ahead: Range<Int>, stateful: Range<Int>, after: Range<Int>)] = [
        ("", 0..<0, 0..<0, 0..<0),
        ("l", 0..<1, 1..<1, 1..<1),
        ("p", 0..<0, 0..<0, 0..<1),
        ("llp", 0..<2, 2..<2, 2..<3),
        ("pl", 0..<2, 2..<2, 2..<2),
        ("s", 0..<0, 0..<1, 1..<1),
        ("sp", 0..<0, 0..<1, 1..<2),
        ("lslp", 0..<1, 1..<2, 2..<4),
        ("lslsl", 0..<1, 1..<4, 4..<5),
        ("llls", 0..<3, 3..<4, 4..<4),
        ("lllslp", 0..<3, 3..<4, 4..<6),
    ]

    @Test(arguments: cases)
    func stagesRunWhereTheirShapeSays(_ c: (shapes: String, ahead: Range<Int>, stateful: Range<Int>, after: Range<Int>)) {
        let split = Runner.split(c.shapes.map { Shape(kind: $0) })
        #expect(split.ahead == c.ahead)
        #expect(split.stateful == c.stateful)
        #expect(split.after == c.after)
    }
}
