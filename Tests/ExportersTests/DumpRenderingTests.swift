import Exporters
import ProfileModel
import XCTest

final class DumpRenderingTests: XCTestCase {
    private let dump = ProcessDump(
        pid: 4242, commandLine: "python3 -c \"print('hi')\"", pythonVersion: "3.12.1", interpreterPath: "/usr/bin/python3.12",
        threads: [
            ThreadDump(tid: 4242, name: "MainThread", state: "sleeping", frames: [
                Frame(kind: .kernel, name: "do_syscall_64"),
                Frame(kind: .kernel, name: "nvme_irq", file: "nvme"),
                Frame(kind: .native, name: "_PyEval_EvalFrameDefault", file: "/usr/lib/libpython3.12.so.1.0"),
                Frame(kind: .python, name: "wait", file: "/usr/lib/python3.12/threading.py", line: 355),
                Frame(kind: .python, name: "helper", file: "dir\\f.py"),
                Frame.truncated,
            ], sampledOnCPU: nil, notes: []),
            ThreadDump(tid: 4243, name: "wörker\n\u{1F}", state: "running", frames: [Frame(kind: .native, name: "spin")],
                       sampledOnCPU: 3, notes: ["a \"quoted\" note"]),
        ],
        warnings: [], threadReader: .userspace, limits: ["no kernel frames"])

    func testText() {
        XCTAssertEqual(DumpRendering.text(dump), """
            Process 4242: python3 -c "print('hi')"
            Python 3.12.1 (/usr/bin/python3.12)
            Note: no kernel frames

            Thread 4242 (MainThread): sleeping
                do_syscall_64 [kernel]
                nvme_irq [kernel: nvme]
                _PyEval_EvalFrameDefault (/usr/lib/libpython3.12.so.1.0)
                wait (/usr/lib/python3.12/threading.py:355)
                helper (dir\\f.py)
                [truncated]

            Thread 4243 (wörker\n\u{1F}): running (on CPU 3, sampled)
                [a "quoted" note]
                spin

            """)
    }

    /// Keys in a fixed order, each frame's file under the name of what it is for its kind, strings escaped as JSON
    /// requires and otherwise as they are (UTF-8).
    func testJSON() {
        XCTAssertEqual(DumpRendering.json(dump), #"""
            {"pid":4242,"command":"python3 -c \"print('hi')\"","python":"3.12.1","interpreter":"/usr/bin/python3.12",\#
            "reader":"userspace","limits":["no kernel frames"],"threads":[{"tid":4242,"name":"MainThread",\#
            "state":"sleeping","sampled":false,"notes":[],"frames":[{"kind":"kernel","name":"do_syscall_64"},\#
            {"kind":"kernel","name":"nvme_irq","module":"nvme"},{"kind":"native","name":"_PyEval_EvalFrameDefault",\#
            "library":"/usr/lib/libpython3.12.so.1.0"},{"kind":"python","name":"wait",\#
            "file":"/usr/lib/python3.12/threading.py","line":355},{"kind":"python","name":"helper","file":"dir\\f.py",\#
            "line":0},{"kind":"marker","name":"[truncated]"}]},{"tid":4243,"name":"wörker\n\u001f","state":"running",\#
            "sampled":true,"notes":["a \"quoted\" note"],"frames":[{"kind":"native","name":"spin","library":""}]}]}

            """#)
    }
}
