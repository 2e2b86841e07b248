/// The interpreter's eval loop as native code: the function each Python-to-C boundary runs Python frames in. The
/// splicer puts a run of Python frames where a native frame of the eval loop is (StackSplicer).
public enum EvalLoop {
    /// `_PyEval_EvalFrameDefault` (3.6 and later), `PyEval_EvalFrameEx` (2.7). A stripped build's parts of
    /// them that no symbol names are found from their code and named `NAME.cold` (Native's SplitFunctionParts).
    public static let functionNames: Set<String> = ["_PyEval_EvalFrameDefault", "PyEval_EvalFrameEx"]

    /// Whether a native frame's function is the eval loop: one of `functionNames`, or a part the compiler split off
    /// one (`_PyEval_EvalFrameDefault.cold`, `.part.0`, `.isra.0`).
    public static func contains(symbol: String) -> Bool {
        let base = symbol.split(separator: ".", maxSplits: 1).first ?? ""
        return functionNames.contains(String(base))
    }
}
