import CPrefetch

/// Asks the CPU for the cache line at `address` (only a hint: never faults, whatever the
/// address), for a loop that reads it a few iterations later.
@inline(__always) public func prefetchHint(_ address: UnsafeRawPointer) {
    sluice_prefetch(address)
}

/// `prefetchHint` of `lines` cache lines from `address` (one call from another module,
/// where `prefetchHint` is not inlined; inlined in this one).
@inline(__always) public func prefetchHint(_ address: UnsafeRawPointer, lines: Int) {
    for line in 0..<lines { sluice_prefetch(address + line * 64) }
}

/// Asks the CPU for the records a loop over a batch reaches next: their fields' arrays
/// (8 records ahead) and the arrays of the objects among those fields (4 ahead).
///
/// A batch is made on one thread and read on the next (reader, runner, worker): each
/// thread's first pass finds every record cold in its caches, and waits on memory at
/// the first field of each array it reads (`Fields.index(of:from:)` stalled there for
/// most of its samples). Prefetching overlaps those waits.
///
/// Only a hint. It reads the records' own memory (the words that point to their arrays,
/// and the byte that tells an object from other values) where a probe of this build's
/// layout (`RecordLayout.probe`) found them; with any other layout it does nothing. A
/// prefetch of any address never faults. It reads the records' array where it was made:
/// the loop may change records in place, but must not add or remove any.
public struct BatchPrefetcher {
    private let base: UnsafeRawPointer?
    private let count: Int
    private let layout: RecordLayout?

    /// `records` is made unique here (copied if it shares its buffer), so that changing a
    /// record in the loop does not move the array the prefetcher reads (a copy on write
    /// would leave it reading one another owner may free).
    public init(_ records: inout [Record]) {
        layout = RecordLayout.current
        count = records.count
        records.reserveCapacity(records.count)
        base = records.withUnsafeBytes { $0.baseAddress }
    }

    /// Call at each record `r` of the loop.
    @inline(__always) public func callAsFunction(_ r: Int) {
        guard let layout, let base else { return }
        if r + 8 < count { layout.prefetchArray(layout.fieldsArray(of: base, r + 8), lines: 16) }
        if r + 4 < count { layout.prefetchObjects(in: layout.fieldsArray(of: base, r + 4)) }
    }
}

/// Where this build keeps what `BatchPrefetcher` follows, found by `probe`.
struct RecordLayout: Sendable {
    let recordStride: Int
    /// Offset in a `Record` of its fields' array object (the pointer word).
    let fieldsWord: Int
    let fieldStride: Int
    /// Offset in a `Fields.Field` of an object value's array object.
    let objectWord: Int
    /// Offset in a `Fields.Field` of the byte that holds an object value's case, and its value there.
    let tagByte: Int
    let objectTag: UInt8
    /// Offset of an array's first element from its object.
    let elements: Int

    static let current = probe()

    @inline(__always) func fieldsArray(of records: UnsafeRawPointer, _ r: Int) -> UnsafeRawPointer? {
        UnsafeRawPointer(bitPattern: records.loadUnaligned(fromByteOffset: r * recordStride + fieldsWord, as: UInt.self))
    }

    @inline(__always) func prefetchArray(_ object: UnsafeRawPointer?, lines: Int) {
        guard let object else { return }
        prefetchHint(object, lines: lines)
    }

    /// The arrays of the object values among a fields' array's elements (whose lines an
    /// earlier `prefetchArray` asked for).
    @inline(__always) func prefetchObjects(in object: UnsafeRawPointer?) {
        guard let object else { return }
        let n = object.loadUnaligned(fromByteOffset: elements - 16, as: Int.self) // the array's count
        guard n > 0, n <= 64 else { return }
        for i in 0..<n {
            let field = object + elements + i * fieldStride
            if field.load(fromByteOffset: tagByte, as: UInt8.self) == objectTag {
                prefetchArray(UnsafeRawPointer(bitPattern: field.loadUnaligned(fromByteOffset: objectWord, as: UInt.self)), lines: 4)
            }
        }
    }

    /// The layout as this build has it, checked on values of every kind: nil (no
    /// prefetching) unless every offset is where it is looked for.
    static func probe() -> RecordLayout? {
        guard let fieldsOffset = MemoryLayout<Record>.offset(of: \Record.fields),
              let storageOffset = MemoryLayout<Fields>.offset(of: \Fields.storage),
              let valueOffset = MemoryLayout<Fields.Field>.offset(of: \Fields.Field.value),
              MemoryLayout<Value>.size > 8 else { return nil }
        let inner = Fields([Fields.Field("n", .int(1)), Fields.Field("m", .string("a string longer than fifteen bytes"))])
        let kinds: [Value] = [.null, .bool(true), .int(-1), .double(1.5), .largeInteger("123456789012345678901234"), .string("s"),
                              .string("a string longer than fifteen bytes"), .array([.int(1)]), .object(inner), .object(Fields())]
        let record = Record(fields: Fields(kinds.enumerated().map { Fields.Field("f\($0.offset)", $0.element) }),
                            position: SourcePosition(file: "probe", line: 1, offset: 0))
        let layout = RecordLayout(recordStride: MemoryLayout<Record>.stride, fieldsWord: fieldsOffset + storageOffset,
                                  fieldStride: MemoryLayout<Fields.Field>.stride, objectWord: valueOffset + storageOffset,
                                  tagByte: valueOffset + MemoryLayout<Value>.size - 1, objectTag: 0, elements: 0)
        return withUnsafeBytes(of: record) { recordBytes -> RecordLayout? in
            let top = recordBytes.loadUnaligned(fromByteOffset: layout.fieldsWord, as: UInt.self)
            let topBase = record.fields.storage.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }
            let innerBase = inner.storage.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }
            guard top != 0, topBase > top, topBase - top < 64 else { return nil }
            let elements = Int(topBase - top)
            return record.fields.storage.withUnsafeBytes { raw -> RecordLayout? in
                guard raw.count == kinds.count * layout.fieldStride,
                      UnsafeRawPointer(bitPattern: top)!.loadUnaligned(fromByteOffset: elements - 16, as: Int.self) == kinds.count else { return nil }
                func byte(_ i: Int) -> UInt8 { raw.load(fromByteOffset: i * layout.fieldStride + layout.tagByte, as: UInt8.self) }
                func word(_ i: Int) -> UInt { raw.loadUnaligned(fromByteOffset: i * layout.fieldStride + layout.objectWord, as: UInt.self) }
                let object = kinds.count - 2
                let tag = byte(object)
                guard byte(object + 1) == tag, (0..<object).allSatisfy({ byte($0) != tag }),
                      word(object) + UInt(elements) == innerBase else { return nil }
                return RecordLayout(recordStride: layout.recordStride, fieldsWord: layout.fieldsWord, fieldStride: layout.fieldStride,
                                    objectWord: layout.objectWord, tagByte: layout.tagByte, objectTag: tag, elements: elements)
            }
        }
    }
}
