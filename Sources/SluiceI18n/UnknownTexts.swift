import Foundation

/// Counts texts that matched no template, grouped by their normalized form, for the run
/// report. Thread-safe: every access goes through one lock.
///
/// At most `capacity` distinct texts are kept; texts first seen after that are only counted
/// in `overflow`.
public final class UnknownTexts: @unchecked Sendable {
    // @unchecked: all mutable state below is read and written only while holding `lock`.
    private let lock = NSLock()
    private var counts: [String: (sample: String, count: Int)] = [:]
    private var totalCount = 0
    private var overflowCount = 0
    /// The most distinct texts kept.
    public let capacity: Int

    /// One unknown text and how often it was seen.
    public struct Item: Sendable, Hashable {
        /// The first original text seen of this normalized form.
        public var text: String
        /// Its normalized form (the grouping key).
        public var normalized: String
        /// How many times it was seen.
        public var count: Int
    }

    /// Creates an empty counter.
    public init(capacity: Int = 100_000) {
        self.capacity = capacity
    }

    /// Counts an unmatched text, seen `count` times (in a row: the first of them is the
    /// sample, if its normalized form is new).
    public func record(_ text: String, count: Int = 1) {
        guard count > 0 else { return }
        let key = TextNormalizer.normalize(text)
        lock.withLock {
            totalCount += count
            if let existing = counts[key] {
                counts[key] = (existing.sample, existing.count + count)
            } else if counts.count < capacity {
                counts[key] = (text, count)
            } else {
                overflowCount += count
            }
        }
    }

    /// All texts counted, including overflow.
    public var total: Int { lock.withLock { totalCount } }
    /// Distinct normalized texts kept.
    public var distinct: Int { lock.withLock { counts.count } }
    /// Texts counted after `capacity` distinct ones were kept.
    public var overflow: Int { lock.withLock { overflowCount } }

    /// The `n` most frequent texts, most frequent first (ties by normalized text).
    public func top(_ n: Int) -> [Item] {
        let all = lock.withLock { counts.map { Item(text: $0.value.sample, normalized: $0.key, count: $0.value.count) } }
        return Array(all.sorted { $0.count != $1.count ? $0.count > $1.count : $0.normalized < $1.normalized }.prefix(max(0, n)))
    }
}
