import Foundation
import XCTest

/// `record --all` finds Python processes by what their files define, not by their names.
final class AllProcessesTests: IntegrationTestCase {
    /// Debian's static interpreter copied under a service's name: --all profiles it with its stacks.
    func testFindsRenamedStaticInterpreter() throws {
        let workload = try Workload.load()
        let renamed = scratchFile("myservice")
        try FileManager.default.copyItem(atPath: try PythonInterpreters.debian311().path, toPath: renamed)
        let running = try start(renamed, [workload.path, "shape"])
        try running.waitForLine("ready", timeout: 30)

        let output = scratchFile("all.speedscope.json")
        let result = try runPyBPFProf(["record", "--all", "--duration", "2", "--rate", "499", "-o", output])
        running.killIfRunning()
        try result.requireSuccess()

        let threads = try SpeedscopeFile.threads(at: output).filter { $0.pid == running.pid }
        let names = Set(threads.flatMap { $0.stacks.flatMap { $0.map(\.name) } })
        print("  --all: \(threads.count) threads of myservice (pid \(running.pid)), functions \(names.sorted().prefix(8))")
        XCTAssertFalse(threads.isEmpty, "--all did not profile the interpreter renamed myservice: \(result.report)")
        XCTAssertTrue(names.contains("heavy") && names.contains("worker_loop"), "functions seen: \(names.sorted())")
    }
}
