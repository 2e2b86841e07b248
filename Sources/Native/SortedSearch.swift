extension RandomAccessCollection where Index == Int {
    /// In a collection sorted by `key`, the index of the last element whose key is at most `value`; nil if none.
    /// (Address lookups: the mapping, symbol or row that starts at or below an address.)
    @inlinable
    public func lastIndex(withKeyAtMost value: UInt64, key: (Element) -> UInt64) -> Int? {
        var low = startIndex, high = endIndex
        while low < high {
            let middle = low + (high - low) / 2
            if key(self[middle]) <= value { low = middle + 1 } else { high = middle }
        }
        return low > startIndex ? low - 1 : nil
    }
}
