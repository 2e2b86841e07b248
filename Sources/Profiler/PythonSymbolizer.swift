import CBPF
import CPython
import ProfileModel

/// Turns one process's sampled Python frames into profile frames, through its code object cache.
final class PythonSymbolizer {
    private let resolver: CodeObjectResolver?

    init(interpreter: PythonInterpreter) {
        resolver = CodeObjectResolver(pid: interpreter.pid, offsets: interpreter.offsets, codeType: interpreter.codeTypeAddress)
    }

    func frame(_ sampled: py_frame) -> Result<Frame, CodeObjectError> {
        guard let resolver else { return .failure(.malformed) }
        return resolver.resolve(code: sampled.code, checksum: sampled.checksum, instruction: sampled.instr).map {
            Frame(kind: .python, name: $0.name, file: $0.file, line: $0.line)
        }
    }
}
