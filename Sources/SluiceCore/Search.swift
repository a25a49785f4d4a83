extension RandomAccessCollection where Index == Int {
    /// The index of the first element for which `isBefore` is false, in a collection where
    /// every element for which it is true comes first (binary search).
    @inlinable
    public func partitionPoint(_ isBefore: (Element) -> Bool) -> Int {
        var lo = startIndex, hi = endIndex
        while lo < hi {
            let mid = (lo + hi) / 2
            if isBefore(self[mid]) { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// The index of the first element whose key is greater than `t`, in a collection
    /// sorted by that key: the events of a sliding window up to `t`.
    @inlinable
    public func upperBound(_ t: Int64, by key: (Element) -> Int64) -> Int {
        partitionPoint { key($0) <= t }
    }
}
