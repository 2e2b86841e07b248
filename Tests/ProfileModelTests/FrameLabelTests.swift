import ProfileModel
import XCTest

final class FrameLabelTests: XCTestCase {
    private let python = Frame(kind: .python, name: "Server.serve", file: "/srv/app/server.py", line: 12)
    private let pythonWithoutLine = Frame(kind: .python, name: "compute", file: "/srv/batch.py")
    private let pythonWithoutFile = Frame(kind: .python, name: "helper")
    private let native = Frame(kind: .native, name: "_PyEval_EvalFrameDefault", file: "/usr/lib/libpython3.12.so.1.0", line: 4)
    private let nativeWithoutFile = Frame(kind: .native, name: "[unknown 0x7f00]")
    private let kernel = Frame(kind: .kernel, name: "do_syscall_64")
    private let kernelModule = Frame(kind: .kernel, name: "nvme_irq", file: "nvme")

    /// Summary and top: no line, the file's last path component, the kernel in brackets.
    func testFunctionStyle() {
        XCTAssertEqual(python.label(.function), "Server.serve (server.py)")
        XCTAssertEqual(pythonWithoutLine.label(.function), "compute (batch.py)")
        XCTAssertEqual(pythonWithoutFile.label(.function), "helper")
        XCTAssertEqual(native.label(.function), "_PyEval_EvalFrameDefault (libpython3.12.so.1.0)")
        XCTAssertEqual(nativeWithoutFile.label(.function), "[unknown 0x7f00]")
        XCTAssertEqual(kernel.label(.function), "do_syscall_64 [kernel]")
        XCTAssertEqual(kernelModule.label(.function), "nvme_irq [kernel nvme]")
        XCTAssertEqual(Frame.truncated.label(.function), "[truncated]")
    }

    /// dump: the whole path, a Python frame's line, no native line, the kernel's module after a colon.
    func testLocationStyle() {
        XCTAssertEqual(python.label(.location), "Server.serve (/srv/app/server.py:12)")
        XCTAssertEqual(pythonWithoutLine.label(.location), "compute (/srv/batch.py)")
        XCTAssertEqual(pythonWithoutFile.label(.location), "helper")
        XCTAssertEqual(native.label(.location), "_PyEval_EvalFrameDefault (/usr/lib/libpython3.12.so.1.0)")
        XCTAssertEqual(nativeWithoutFile.label(.location), "[unknown 0x7f00]")
        XCTAssertEqual(kernel.label(.location), "do_syscall_64 [kernel]")
        XCTAssertEqual(kernelModule.label(.location), "nvme_irq [kernel: nvme]")
        XCTAssertEqual(Frame.noPython.label(.location), "[no Python frame]")
    }

    /// Folded stacks: the whole path and any known line, native ones too; kernel frames suffixed `_[k]`.
    func testFoldedStyle() {
        XCTAssertEqual(python.label(.folded), "Server.serve (/srv/app/server.py:12)")
        XCTAssertEqual(pythonWithoutLine.label(.folded), "compute (/srv/batch.py)")
        XCTAssertEqual(pythonWithoutFile.label(.folded), "helper")
        XCTAssertEqual(native.label(.folded), "_PyEval_EvalFrameDefault (/usr/lib/libpython3.12.so.1.0:4)")
        XCTAssertEqual(nativeWithoutFile.label(.folded), "[unknown 0x7f00]")
        XCTAssertEqual(kernel.label(.folded), "do_syscall_64_[k]")
        XCTAssertEqual(kernelModule.label(.folded), "nvme_irq_[k]")
        XCTAssertEqual(Frame.truncated.label(.folded), "[truncated]")
    }
}
