@testable import SluiceCore
import Testing

/// `BatchPrefetcher` follows the records' memory where a probe of the build's layout found
/// it; if a compiler lays records out otherwise, the probe turns prefetching off and runs
/// lose its speed silently. These tests say so instead, and check what the probe found
/// against records made here.
@Suite struct PrefetchTests {
    @Test func theProbeFindsThisBuildsLayout() throws {
        let layout = try #require(RecordLayout.current, "prefetching is off: the record layout is not the one BatchPrefetcher reads")
        #expect(layout.recordStride == MemoryLayout<Record>.stride)
        #expect(layout.fieldStride == MemoryLayout<Fields.Field>.stride)
    }

    /// Records of several shapes: the words the prefetcher reads give each record's fields'
    /// array, its count, and exactly the arrays of its object values.
    @Test(arguments: [0, 1, 5, 23, 40])
    func theWordsReadAreTheRecordsArrays(fieldCount: Int) throws {
        let layout = try #require(RecordLayout.current)
        var records: [Record] = []
        for r in 0..<6 {
            var fields = Fields()
            for f in 0..<fieldCount {
                let value: Value = switch (f + r) % 5 {
                case 0: .object(Fields([Fields.Field("x", .int(Int64(f)))]))
                case 1: .string(String(repeating: "s", count: f + r))
                case 2: .array([.object(Fields())])
                case 3: .null
                default: .double(Double(f))
                }
                fields.appendUnchecked("f\(f)", value)
            }
            records.append(Record(fields: fields, position: SourcePosition(file: "t", line: r + 1)))
        }
        records.withUnsafeBytes { raw in
            for (r, record) in records.enumerated() {
                let array = layout.fieldsArray(of: raw.baseAddress!, r)
                let base = record.fields.storage.withUnsafeBufferPointer { UnsafeRawPointer($0.baseAddress) }
                if fieldCount > 0 { #expect(array.map { $0 + layout.elements } == base) }
                guard let array else { continue }
                #expect(array.load(fromByteOffset: layout.elements - 16, as: Int.self) == fieldCount)
                for (f, field) in record.fields.storage.enumerated() {
                    let at = array + layout.elements + f * layout.fieldStride
                    let isObject = at.load(fromByteOffset: layout.tagByte, as: UInt8.self) == layout.objectTag
                    if case .object(let nested) = field.value {
                        #expect(isObject)
                        let nestedBase = nested.storage.withUnsafeBufferPointer { UnsafeRawPointer($0.baseAddress) }
                        #expect(UnsafeRawPointer(bitPattern: at.loadUnaligned(fromByteOffset: layout.objectWord, as: UInt.self)).map { $0 + layout.elements } == nestedBase)
                    } else {
                        #expect(!isObject, "field \(f) of record \(r)")
                    }
                }
            }
        }
        // And a loop with it runs over every record, the last ones included.
        let prefetch = BatchPrefetcher(&records)
        for r in records.indices { prefetch(r) }
    }
}
