extension StringProtocol {
    /// Without the characters at either end that satisfy `isTrimmed`: what Foundation's trimmingCharacters(in:) did,
    /// without Foundation. `\.isWhitespace` is its `.whitespacesAndNewlines`, `\.isNewline` its `.newlines`.
    func trimming(while isTrimmed: (Character) -> Bool) -> SubSequence {
        guard let first = firstIndex(where: { !isTrimmed($0) }), let last = lastIndex(where: { !isTrimmed($0) }) else {
            return self[endIndex...]
        }
        return self[first...last]
    }
}
