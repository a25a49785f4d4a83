/// The bytes of one row as a `RowEncoder` writes them: a growable buffer appended to
/// through a pointer.
///
/// An array (`inout [UInt8]`) checks, at every append, that its buffer is not shared and
/// has room, and goes through its buffer object for its count; the worker writes ~27
/// values a record, two or three appends each, and those appends were ~10% of its
/// samples (docs/benchmarks.md). Here an append is a compare and a copy. Not copyable:
/// one owner writes it, and no copy can free or grow the memory under another. The
/// worker encodes each record into one and appends it to the batch's bytes whole.
public struct RowBytes: ~Copyable {
    @usableFromInline var base: UnsafeMutablePointer<UInt8>
    @usableFromInline var capacity: Int
    @usableFromInline var length = 0

    /// An empty buffer with room for `capacity` bytes (it grows as needed).
    public init(capacity: Int = 1024) {
        self.capacity = max(16, capacity)
        base = .allocate(capacity: self.capacity)
    }

    deinit { base.deallocate() }

    /// The bytes written.
    public var count: Int { length }

    @inlinable
    public mutating func append(_ byte: UInt8) {
        if length == capacity { grow(by: 1) }
        base[length] = byte
        length += 1
    }

    @inlinable
    public mutating func append(contentsOf bytes: UnsafeBufferPointer<UInt8>) {
        append(contentsOf: UnsafeRawBufferPointer(bytes))
    }

    /// Appends raw bytes (copied as bytes, whatever type their memory holds).
    @inlinable
    public mutating func append(contentsOf bytes: UnsafeRawBufferPointer) {
        let n = bytes.count
        guard n > 0, let from = bytes.baseAddress else { return }
        if length + n > capacity { grow(by: n) }
        UnsafeMutableRawPointer(base + length).copyMemory(from: from, byteCount: n)
        length += n
    }

    /// Appends `n` zero bytes (room that `withMutableBytes` then fills).
    public mutating func appendZeros(_ n: Int) {
        guard n > 0 else { return }
        if length + n > capacity { grow(by: n) }
        (base + length).initialize(repeating: 0, count: n)
        length += n
    }

    /// Room for `n` more bytes: the capacity at least doubles, so that appends stay
    /// amortized O(1).
    @usableFromInline
    mutating func grow(by n: Int) {
        let wanted = max(capacity * 2, length + n)
        let bigger = UnsafeMutablePointer<UInt8>.allocate(capacity: wanted)
        bigger.initialize(from: base, count: length)
        base.deallocate()
        base = bigger
        capacity = wanted
    }

    /// Forgets the bytes, keeping the room.
    public mutating func removeAll() { length = 0 }

    public func withBytes<R, E: Error>(_ body: (UnsafeBufferPointer<UInt8>) throws(E) -> R) throws(E) -> R {
        try body(UnsafeBufferPointer(start: base, count: length))
    }

    public mutating func withMutableBytes<R, E: Error>(_ body: (UnsafeMutableBufferPointer<UInt8>) throws(E) -> R) throws(E) -> R {
        try body(UnsafeMutableBufferPointer(start: base, count: length))
    }

    /// The bytes as an array (tests, and rows encoded apart).
    public var bytes: [UInt8] { withBytes { Array($0) } }
}

extension Array where Element == UInt8 {
    /// Appends a row's bytes.
    public mutating func append(_ row: borrowing RowBytes) {
        row.withBytes { append(contentsOf: $0) }
    }
}
