import Foundation
import SluiceCore
@testable import SluiceEnrich
import SluiceI18n
import SluiceTestSupport
import Testing

/// `error_code` keeps the outcome of each text from batch to batch (`ErrorOutcomes`, up to
/// its limit, then starting over; an outcome with a long value only within a batch). Over batches of several sizes and more distinct texts
/// than the limit, each record's code and values must be what the matcher itself gives
/// for its text, and each unknown text must be counted every time it occurs.
@Suite struct ErrorOutcomesTests {
    static let catalogs = ["en", "ru", "tr"].map { TestSupport.repoRoot + "/Samples/i18n/errors.\($0).yml" }

    @Test(arguments: [(1, 64), (2, 1_000), (3, 7)])
    func outcomesAcrossBatchesAreTheMatchersOwn(seed: UInt64, batchSize: Int) throws {
        let matcher = try ErrorCodeMatcher(catalogPaths: Self.catalogs)
        let stage = ErrorCode(text: FieldPath("error")!, target: "code", valuesTarget: "values", matcher: matcher,
                              unknown: UnknownTallies(), report: 10)
        var rng = SplitMix64(seed: seed)
        // Catalog texts in three languages, texts with numbers (more distinct ones than the
        // limit), unknown ones, repeated in a random order.
        let fixed = ["Email has already been taken", "E-posta zaten kullanılıyor", "Этот адрес электронной почты уже занят.",
                     "Something exploded", "Etwas ist kaputt"]
        let numbered = (0..<(ErrorOutcomes.limit + 500)).map { "Пароль слишком короткий (минимум \($0) символа)" }
            + (0..<300).map { "Unknown thing number \($0)" }
            // Values too long to be held in place: matched once a batch instead.
            + (0..<200).map { "Deposit amount is too small (minimum \($0 * 1_000_003).50 TRY)" }
        let texts = (0..<(3 * numbered.count)).map { n in
            n % 3 == 0 ? fixed[Int(rng.next() % UInt64(fixed.count))] : numbered[Int(rng.next() % UInt64(numbered.count))]
        }
        let context = RunContext(projectRoot: "/", outputRoot: "/", pipeline: "p", partition: Partition("2026-11-18", granularity: .day)!,
                                 logger: .init(label: "t"))
        var start = 0
        var codes: [Value] = [], values: [Value] = []
        while start < texts.count {
            let end = min(texts.count, start + batchSize)
            var batch = RecordBatch()
            batch.records = texts[start..<end].enumerated().map { n, text in
                Record(fields: Fields(["error": .string(text)]), position: SourcePosition(file: "f", line: start + n + 1))
            }
            try stage.apply(&batch, context: context)
            codes += batch.records.map { $0.fields["code"] ?? .null }
            values += batch.records.map { $0.fields["values"] ?? .null }
            start = end
        }
        var unknownExpected = 0
        for (n, text) in texts.enumerated() {
            let m = matcher.match(text)
            if m == nil { unknownExpected += 1 }
            #expect(codes[n] == .string(m?.code ?? "UNKNOWN"), "\(text)")
            let expectedValues: Value = m.map { $0.values.isEmpty ? .null
                : .string(JSONWriter.string(.object(Fields($0.values.sorted { $0.key < $1.key }.map { Fields.Field($0.key, Int64($0.value).map(Value.int) ?? .string($0.value)) }))))
            } ?? .null
            #expect(values[n] == expectedValues, "\(text)")
        }
        #expect(stage.unknown.take(context)?.total == unknownExpected)
        // Both kinds of outcome were there: values held in place, and longer ones.
        #expect(values.contains { if case .string(let v) = $0 { v.utf8.count > 15 } else { false } })
        #expect(values.contains { if case .string(let v) = $0 { v.utf8.count <= 15 } else { false } })
    }
}
