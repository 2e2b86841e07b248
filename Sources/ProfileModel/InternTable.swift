/// Distinct values in the order first seen, each with its index: how profiles and formats turn repeated names, frames
/// and stacks into tables referenced by index.
public struct InternTable<Element: Hashable>: Sendable where Element: Sendable {
    public private(set) var elements: [Element] = []
    private var indices: [Element: Int32] = [:]

    public init() {}

    /// The index of `element`, added at the end if new.
    public mutating func intern(_ element: Element) -> Int32 {
        if let known = indices[element] { return known }
        let index = Int32(elements.count)
        elements.append(element)
        indices[element] = index
        return index
    }

    public var count: Int { elements.count }

    public subscript(index: Int32) -> Element { elements[Int(index)] }
}
