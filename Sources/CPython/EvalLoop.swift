/// The interpreter's eval loop as native code: the function each Python-to-C boundary runs Python frames in. The
/// splicer puts a run of Python frames where a native frame of the eval loop is (StackSplicer).
public struct EvalLoop: Sendable {
    /// What a native frame of the interpreter is to the eval loop.
    public enum Part: Equatable, Sendable {
        /// One call of the loop: `_PyEval_EvalFrameDefault` (3.6 and later; `PyEval_EvalFrameEx` is a wrapper there)
        /// or `PyEval_EvalFrameEx` (2.7), or a part the compiler split off it.
        case call
        /// An opcode handler of the tail-calling interpreter (3.14+, clang builds such as python-build-standalone's):
        /// `_TAIL_CALL_<OP>` (`.llvm.N` after ThinLTO). The handlers tail-call each other, so at most one is on the
        /// stack per call, right above the `_PyEval_EvalFrameDefault` frame that set the call up: part of that call.
        case opcodeHandler
        /// Any other code.
        case none
    }

    /// The names of the loop's function in every version: a stripped build's parts of them that no symbol names are
    /// found from their code and named `NAME.cold` (Native's SplitFunctionParts).
    public static let functionNames: Set<String> = ["_PyEval_EvalFrameDefault", "PyEval_EvalFrameEx"]

    /// The loop's function in this major version.
    public let functionName: String

    public init(pythonMajor: Int) {
        functionName = pythonMajor == 2 ? "PyEval_EvalFrameEx" : "_PyEval_EvalFrameDefault"
    }

    /// What a native frame whose function is `symbol` is: the loop itself, or a part the compiler split off it
    /// (`_PyEval_EvalFrameDefault.cold`, `.part.0`, `.isra.0`), an opcode handler, or neither.
    public func part(symbol: String) -> Part {
        if symbol.hasPrefix("_TAIL_CALL_") { return .opcodeHandler }
        let base = symbol.split(separator: ".", maxSplits: 1).first ?? ""
        return base == functionName ? .call : .none
    }
}
