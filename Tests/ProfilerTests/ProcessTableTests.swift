@testable import Profiler
import CBPF
import ProfileModel
import XCTest

/// The process table keeps one state per process and forgets all of it at once; work begun for one registration is
/// never applied to the next process under the same pid.
final class ProcessTableTests: XCTestCase {
    private func decoder() -> StackDecoder<Int32> {
        StackDecoder(interpreter: nil, native: nil, kernelSymbols: nil, showInterpreterFrames: false) { _ in 0 }
    }

    private func register(_ table: inout ProcessTable, _ pid: Int32) -> UInt64 {
        table.register(pid: pid, description: ProfiledProcess(pid: pid, commandLine: "python app.py", pythonVersion: "3.12.1"),
                       interpreter: nil, decoder: decoder())
    }

    private func native(_ pid: Int32, start: UInt64) -> NativeProcess {
        NativeProcess(pid: pid, mappings: [ExecutableMapping(
            start: start, end: start + 0x1000, path: "/usr/lib/libfoo.so", file: nil, bias: 0, table: nil, symbolizer: nil,
            isInterpreter: false)])
    }

    func testForgettingAProcessForgetsAllOfIt() {
        var table = ProcessTable()
        let registration = register(&table, 100)
        XCTAssertTrue(table.setNative(native(100, start: 0x1000), pid: 100, registration: registration))
        XCTAssertTrue(table.markStale(100, now: 1))
        _ = table.takeDueRefreshes(now: 5_000_000_000, interval: Recorder.refreshInterval)
        table.setInstance(7, pid: 100, registration: registration)
        XCTAssertEqual(table[100]?.instance, 7)

        XCTAssertNotNil(table.forget(100))
        XCTAssertNil(table[100])
        XCTAssertEqual(table.count, 0)
        XCTAssertEqual(table.forgotten, 1)
        XCTAssertNil(table.nextRefresh(interval: Recorder.refreshInterval), "nothing of the process is left to refresh")
        XCTAssertNil(table.forget(100), "forgotten once")
        XCTAssertEqual(table.forgotten, 1)

        // The kernel reuses the pid: the new process starts with nothing of the old one, not its refresh time either.
        let next = register(&table, 100)
        XCTAssertNotEqual(next, registration)
        XCTAssertNil(table[100]?.instance)
        XCTAssertNil(table[100]?.native)
        XCTAssertEqual(table[100]?.lastRefresh, 0)
        XCTAssertFalse(table[100]?.mappingsStale ?? true)
    }

    func testWorkForAnEarlierRegistrationIsNotApplied() {
        var table = ProcessTable()
        let old = register(&table, 200)
        _ = table.forget(200)
        let current = register(&table, 200)
        // Tables compiled for the process that exec'ed, arriving after the new program was registered.
        XCTAssertFalse(table.setNative(native(200, start: 0x1000), pid: 200, registration: old))
        XCTAssertNil(table[200]?.native)
        table.setInstance(3, pid: 200, registration: old)
        XCTAssertNil(table[200]?.instance)
        XCTAssertTrue(table.setNative(native(200, start: 0x2000), pid: 200, registration: current))
        XCTAssertEqual(table[200]?.native?.mappings.first?.start, 0x2000)
    }

    func testTheDecoderGetsNewMappingsOnce() {
        var table = ProcessTable()
        let registration = register(&table, 300)
        XCTAssertTrue(table.setNative(native(300, start: 0x4000), pid: 300, registration: registration))
        XCTAssertEqual(table.stateForDecoding(300)?.decoder.native?.mappings.first?.start, 0x4000)
        XCTAssertFalse(table[300]?.nativeChanged ?? true, "given to the decoder")
    }

    func testStaleMappingsAreReadAgainAtMostEveryInterval() {
        var table = ProcessTable()
        let interval = Recorder.refreshInterval
        XCTAssertFalse(table.markStale(400, now: 1), "not registered")
        let registration = register(&table, 400)
        XCTAssertFalse(table.markStale(400, now: 1), "no mappings to read again yet")
        XCTAssertTrue(table.setNative(native(400, start: 0x1000), pid: 400, registration: registration))
        XCTAssertTrue(table.markStale(400, now: 2_000))
        XCTAssertFalse(table.markStale(400, now: 3_000), "marked already")

        let now: UInt64 = 10_000_000_000
        XCTAssertEqual(table.takeDueRefreshes(now: now, interval: interval).map(\.pid), [400])
        XCTAssertTrue(table.takeDueRefreshes(now: now, interval: interval).isEmpty, "taken")
        XCTAssertTrue(table.markStale(400, now: now))
        XCTAssertEqual(table.nextRefresh(interval: interval), now + interval)
        XCTAssertTrue(table.takeDueRefreshes(now: now + interval - 1, interval: interval).isEmpty, "too soon")
        XCTAssertEqual(table.takeDueRefreshes(now: now + interval, interval: interval).map(\.registration), [registration])

        // The gap a library loaded while recording leaves: from the first sample that reached it (2,000 ns, not the
        // later marks) to its tables, once; not for another registration.
        XCTAssertNil(table.closeUnknownCodeGap(400, registration: registration + 1, now: now))
        XCTAssertEqual(table.closeUnknownCodeGap(400, registration: registration, now: now), now - 2_000)
        XCTAssertNil(table.closeUnknownCodeGap(400, registration: registration, now: now), "closed")
    }
}

/// Every counter the BPF program keeps has a label of its own in the summary.
final class CounterCatalogTests: XCTestCase {
    func testEveryCounterHasADistinctLabel() {
        let entries = CounterCatalog.entries
        XCTAssertEqual(entries.count, Int(COUNTER_COUNT.rawValue))
        for (index, entry) in entries.enumerated() {
            XCTAssertEqual(entry.counter.rawValue, UInt32(index))
            XCTAssertFalse(entry.name.isEmpty, "counter \(index) has no label")
        }
        XCTAssertEqual(Set(entries.map(\.name)).count, entries.count, "labels are distinct")
        XCTAssertEqual(entries.first { $0.counter == COUNTER_RINGBUF_FULL }?.isError, true)
        XCTAssertEqual(entries.first { $0.counter == COUNTER_SENT }?.isError, false)
    }
}
