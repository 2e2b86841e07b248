extension Sequence where Element == UInt8 {
    /// Two lowercase hexadecimal digits per byte, as build IDs and cache keys are spelled in file names.
    public var hexadecimalDigits: String {
        var text = ""
        for byte in self {
            text.unicodeScalars.append(hexadecimalDigit(byte >> 4))
            text.unicodeScalars.append(hexadecimalDigit(byte & 0xF))
        }
        return text
    }
}

private func hexadecimalDigit(_ nibble: UInt8) -> Unicode.Scalar {
    Unicode.Scalar(nibble < 10 ? 0x30 + nibble : 0x61 + nibble - 10)
}
