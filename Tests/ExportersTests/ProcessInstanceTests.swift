@testable import Exporters
import Foundation
import ProfileModel
import TestSupport
import XCTest

/// A pid the kernel reused during a recording names two processes, and a process in a container carries its
/// container ID: every format keeps the two processes apart and shows the container.
final class ProcessInstanceTests: XCTestCase {
    static let containerID = "3f4e8a1b2c9d0e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f"

    /// pid 300 runs `old.py`, exits, and the kernel gives 300 to `new.py`, which runs in a container; pid 400
    /// is on the host.
    static var profile: Profile {
        var profile = Profile(sampleRate: 100, startDate: 1_714_564_800)
        let old = Frame(kind: .python, name: "old_work", file: "/srv/old.py", line: 3)
        let new = Frame(kind: .python, name: "new_work", file: "/app/new.py", line: 7)
        let host = Frame(kind: .python, name: "host_work", file: "/srv/host.py", line: 9)
        _ = profile.add(ProfiledProcess(pid: 300, commandLine: "python3 old.py", pythonVersion: "3.12.1"))
        for time in 0..<3 { profile.append(time: UInt64(time), pid: 300, tid: 300, threadName: "MainThread", stack: [old]) }
        _ = profile.add(ProfiledProcess(pid: 400, commandLine: "python3 host.py", pythonVersion: "3.11.2"))
        profile.append(time: 4, pid: 400, tid: 400, threadName: "MainThread", stack: [host])
        _ = profile.add(ProfiledProcess(pid: 300, commandLine: "python3 new.py", pythonVersion: "3.13.0",
                                        containerID: containerID))
        for time in 5..<10 { profile.append(time: UInt64(time), pid: 300, tid: 300, threadName: "MainThread", stack: [new]) }
        profile.duration = 10
        return profile
    }

    func testProfileLabelsTheSecondProcessOfAPid() {
        XCTAssertEqual(Self.profile.processLabels, ["300", "400", "300.2"])
        XCTAssertEqual(Self.profile.samples.map(\.process), [0, 0, 0, 1, 2, 2, 2, 2, 2])
        let filtered = Self.profile.filtered(SampleFilter(pids: [300]))
        XCTAssertEqual(filtered.processes.map(\.commandLine), ["python3 old.py", "python3 new.py"])
        XCTAssertEqual(filtered.samples.count, 8)
    }

    func testFoldedKeepsTheProcessesApartAndStartsContainerStacksWithTheContainer() {
        XCTAssertEqual(FoldedExporter(prefixesThreads: true).lines(Self.profile), [
            "300;MainThread (300);old_work (/srv/old.py:3) 3",
            "400;MainThread (400);host_work (/srv/host.py:9) 1",
            "container 3f4e8a1b2c9d;300.2;MainThread (300);new_work (/app/new.py:7) 5",
        ].sorted())
        XCTAssertEqual(FoldedExporter().lines(Self.profile), [
            "container 3f4e8a1b2c9d;new_work (/app/new.py:7) 5",
            "host_work (/srv/host.py:9) 1",
            "old_work (/srv/old.py:3) 3",
        ])
    }

    func testFlameGraphHasAContainerLevelAboveItsProcess() throws {
        let graph = try EmbeddedFlameGraph.read(html: String(decoding: FlameGraphHTMLExporter().render(Self.profile), as: UTF8.self))
        let parents = graph.parents()
        func path(_ node: Int) -> [String] {
            parents[node] < 0 ? [] : path(parents[node]) + [graph.frame(ofNode: node).name]
        }
        var totals: [[String]: Int] = [:]
        for node in 0..<graph.nodeCount { totals[path(node)] = graph.nodeTotal[node] }
        XCTAssertEqual(totals, [
            []: 9,
            ["python3 old.py (pid 300)"]: 3,
            ["python3 old.py (pid 300)", "old_work"]: 3,
            ["python3 host.py (pid 400)"]: 1,
            ["python3 host.py (pid 400)", "host_work"]: 1,
            ["container 3f4e8a1b2c9d"]: 5,
            ["container 3f4e8a1b2c9d", "python3 new.py (pid 300)"]: 5,
            ["container 3f4e8a1b2c9d", "python3 new.py (pid 300)", "new_work"]: 5,
        ])
        let container = try XCTUnwrap(graph.frames.first { $0.name == "container 3f4e8a1b2c9d" })
        XCTAssertEqual(container.kind, 6)
        XCTAssertEqual(container.file, Self.containerID)
    }

    func testOneProcessInAContainerStillShowsTheContainer() throws {
        var profile = Profile(sampleRate: 100, startDate: 0)
        _ = profile.add(ProfiledProcess(pid: 5, commandLine: "python3 app.py", pythonVersion: "3.12.1", containerID: Self.containerID))
        profile.append(time: 0, pid: 5, tid: 5, threadName: "MainThread", stack: [Frame(kind: .python, name: "work")])
        let graph = try EmbeddedFlameGraph.read(html: String(decoding: FlameGraphHTMLExporter().render(profile), as: UTF8.self))
        XCTAssertEqual((0..<graph.nodeCount).map { graph.frame(ofNode: $0).name }, ["all", "container 3f4e8a1b2c9d", "work"])
    }

    func testPprofLabelsContainerSamplesAndKeepsThePidLabel() throws {
        let decoded = try DecodedProfile(PprofExporter().encode(Self.profile))
        var byContainer: [String: Int64] = [:]
        var byPID: [Int64: Int64] = [:]
        for sample in decoded.samples {
            let container = sample.labels.first { $0.key == "container" }?.string ?? "-"
            byContainer[container, default: 0] += sample.values[0]
            byPID[sample.labels.first { $0.key == "pid" }?.number ?? -1, default: 0] += sample.values[0]
        }
        XCTAssertEqual(byContainer, [Self.containerID: 5, "-": 4])
        XCTAssertEqual(byPID, [300: 8, 400: 1])
        XCTAssertEqual(decoded.comments, [
            "pid 300: python3 old.py (Python 3.12.1)",
            "pid 400: python3 host.py (Python 3.11.2)",
            "pid 300: python3 new.py (Python 3.13.0) container \(Self.containerID)",
        ])
    }

    func testFirefoxProfileHasOneProcessPerInstance() throws {
        let document = FirefoxProfilerExporter().render(Self.profile)
        XCTAssertEqual(FirefoxProfileChecker.problems(in: document), [])
        let read = try FirefoxProfileChecker.read(document)
        XCTAssertEqual(read.threads.map(\.pid), ["300", "400", "300.2"])
        XCTAssertEqual(read.threads.map(\.processName), ["python3 old.py", "python3 host.py", "python3 new.py (container 3f4e8a1b2c9d)"])
        XCTAssertEqual(read.threads.map(\.stacks.count), [3, 1, 5])
    }

    func testSpeedscopeNamesTheContainer() throws {
        let document = try JSONSerialization.jsonObject(with: Data(SpeedscopeExporter().render(Self.profile))) as? [String: Any]
        let names = (document?["profiles"] as? [[String: Any]])?.compactMap { $0["name"] as? String }
        XCTAssertEqual(names, [
            "python3 pid 300 tid 300 (MainThread)",
            "python3 pid 400 tid 400 (MainThread)",
            "container 3f4e8a1b2c9d python3 pid 300 tid 300 (MainThread)",
        ])
    }

    func testRecordingKeepsInstancesAndContainers() throws {
        let decoded = try RecordingFile.decode(RecordingFile.encode(Self.profile))
        XCTAssertEqual(decoded.processes, Self.profile.processes)
        XCTAssertEqual(decoded.samples.map(\.process), Self.profile.samples.map(\.process))
        XCTAssertEqual(FoldedExporter(prefixesThreads: true).render(decoded), FoldedExporter(prefixesThreads: true).render(Self.profile))
    }

    /// A version 1 file (one process per pid, samples naming their pid) still reads, written here byte by byte.
    func testVersionOneRecordingStillReads() throws {
        var bytes = Array("PYBPFREC".utf8) + [1, 0, 0, 0]
        bytes += [100]                                      // sample rate
        bytes += Array(repeating: 0, count: 8)              // start date 0.0
        bytes += [10]                                       // duration
        bytes += [1, 0xD8, 0x04]                            // 1 process: pid 300 (zigzag 600)
        bytes += [6] + Array("python".utf8) + [4] + Array("3.12".utf8)
        bytes += [1, 0, 4] + Array("work".utf8) + [0, 0]    // 1 frame: python "work", no file, line 0
        bytes += [1, 1, 0]                                  // 1 stack: [frame 0]
        bytes += [1, 1] + Array("M".utf8)                   // 1 thread name
        // 2 samples: pid 300 and pid 7 (not in the process table), tid 300, thread name 0, stack 0.
        bytes += [2, 0, 0, 0xD8, 0x04, 0xD8, 0x04, 0, 0, 1, 0, 14, 0xD8, 0x04, 0, 0]
        let profile = try RecordingFile.decode(bytes)
        XCTAssertEqual(profile.processes, [
            ProfiledProcess(pid: 300, commandLine: "python", pythonVersion: "3.12"),
            ProfiledProcess(pid: 7, commandLine: "", pythonVersion: ""),
        ])
        XCTAssertEqual(profile.samples.map(\.process), [0, 1])
        XCTAssertEqual(profile.samples.map(\.time), [0, 1])
    }
}
