import SluiceCore
import Testing

/// `sortKeys()` (a segment commit's keys for the ledger's run) orders keys as the standard
/// library's `sort()` does, whatever their bits: a hash's uniform keys (buckets of a key or
/// two), keys that share their leading bits (long buckets, sorted apart), equal halves,
/// duplicates, the extremes, and the sizes around the counting pass's threshold.
@Suite struct RecordKeySortTests {
    /// A deterministic generator (splitmix64), so that a failing case can be run again.
    struct Bits {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static func keys(_ shape: String) -> [RecordKeyBits] {
        var r = Bits(state: UInt64(truncatingIfNeeded: shape.utf8.reduce(7) { $0 &* 31 &+ Int($1) }))
        func uniform(_ n: Int) -> [RecordKeyBits] { (0..<n).map { _ in RecordKeyBits(high: r.next(), low: r.next()) } }
        switch shape {
        case "empty": return []
        case "one": return uniform(1)
        case "two": return uniform(2)
        case "64 (no counting pass)": return uniform(64)
        case "65": return uniform(65)
        case "1,000 uniform": return uniform(1_000)
        case "100,000 uniform (a segment)": return uniform(100_000)
        case "600,000 uniform (the most buckets)": return uniform(600_000)
        case "5,000 of one high half (one bucket, sorted apart)":
            let high = r.next()
            return (0..<5_000).map { _ in RecordKeyBits(high: high, low: r.next()) }
        case "3,000 in groups of 20 sharing their leading 8 bits (256 buckets: insertion)":
            return (0..<3_000).map { i in RecordKeyBits(high: UInt64(i / 20) << 56 | r.next() >> 8, low: r.next()) }
        case "3,000 in groups of 80 sharing their leading 8 bits (sorted apart)":
            return (0..<3_000).map { i in RecordKeyBits(high: UInt64(i / 80) << 56 | r.next() >> 8, low: r.next()) }
        case "small highs (every key in bucket 0)":
            return (0..<2_000).map { _ in RecordKeyBits(high: r.next() >> 40, low: r.next()) }
        case "duplicates, shuffled":
            var keys = uniform(700)
            keys += keys + keys
            for i in keys.indices.reversed() where i > 0 { keys.swapAt(i, Int(r.next() % UInt64(i + 1))) }
            return keys
        case "extremes":
            let edges: [UInt64] = [0, 1, UInt64.max, UInt64.max - 1, 1 << 63, (1 << 63) - 1]
            var keys = edges.flatMap { h in edges.map { RecordKeyBits(high: h, low: $0) } }
            keys += uniform(200)
            return keys.reversed()
        case "already sorted": return uniform(10_000).sorted()
        case "reversed": return uniform(10_000).sorted().reversed()
        default: preconditionFailure(shape)
        }
    }

    @Test(arguments: [
        "empty", "one", "two", "64 (no counting pass)", "65", "1,000 uniform", "100,000 uniform (a segment)", "600,000 uniform (the most buckets)",
        "5,000 of one high half (one bucket, sorted apart)", "3,000 in groups of 20 sharing their leading 8 bits (256 buckets: insertion)",
        "3,000 in groups of 80 sharing their leading 8 bits (sorted apart)", "small highs (every key in bucket 0)", "duplicates, shuffled",
        "extremes", "already sorted", "reversed",
    ])
    func ordersAsTheStandardSort(shape: String) {
        let keys = Self.keys(shape)
        var sorted = keys
        sorted.sortKeys()
        #expect(sorted.count == keys.count)
        #expect(sorted == keys.sorted(), "\(shape)")
    }
}
