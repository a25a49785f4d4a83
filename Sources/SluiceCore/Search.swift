extension RandomAccessCollection where Index == Int {
    /// The index of the first element whose key is greater than `t`, in a collection
    /// sorted by that key (binary search): the events of a sliding window up to `t`.
    @inlinable
    public func upperBound(_ t: Int64, by key: (Element) -> Int64) -> Int {
        var lo = startIndex, hi = endIndex
        while lo < hi {
            let mid = (lo + hi) / 2
            if key(self[mid]) <= t { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
}
