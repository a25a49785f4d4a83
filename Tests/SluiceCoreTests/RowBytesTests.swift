import SluiceCore
import Testing

/// `RowBytes` holds what was appended, in order, whatever its room at the start (it grows
/// by copying): the same bytes as an array given the same appends.
@Suite struct RowBytesTests {
    @Test(arguments: [0, 1, 16, 100, 4096])
    func holdsWhatWasAppended(capacity: Int) {
        var row = RowBytes(capacity: capacity)
        var array: [UInt8] = []
        for n in 0..<300 {
            let chunk = (0..<(n % 37)).map { UInt8(truncatingIfNeeded: n &* 31 &+ $0) }
            chunk.withUnsafeBufferPointer { row.append(contentsOf: $0) }
            array += chunk
            row.append(UInt8(n % 256))
            array.append(UInt8(n % 256))
            if n % 50 == 7 {
                row.appendZeros(n % 5)
                array += [UInt8](repeating: 0, count: n % 5)
            }
        }
        #expect(row.count == array.count)
        #expect(row.bytes == array)
        var joined: [UInt8] = [9]
        joined.append(row)
        #expect(joined == [9] + array)
        row.removeAll()
        #expect(row.count == 0 && row.bytes.isEmpty)
        "abc".utf8.withContiguousStorageIfAvailable { row.append(contentsOf: $0) }
        #expect(row.bytes == Array("abc".utf8))
    }
}
