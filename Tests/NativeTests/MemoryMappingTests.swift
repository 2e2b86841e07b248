import Foundation
import XCTest

@testable import Native

final class MemoryMappingTests: XCTestCase {
    func testParsesFileBackedPseudoAndAnonymousMappings() {
        let maps = """
            55d4a2a00000-55d4a2a02000 r--p 00000000 fd:01 1835042                    /usr/bin/python3.11
            7f3b5c306000-7f3b5c579000 r-xp 00106000 fd:01 2097345                    /root/.pyenv/versions/3.12.1/lib/libpython3.12.so.1.0
            55d4a3e9c000-55d4a3f6a000 rw-p 00000000 00:00 0                          [heap]
            7f3b5c000000-7f3b5c021000 rw-p 00000000 00:00 0 
            7f3b5c021000-7f3b5c022000 rw-p 00000000 00:00 0
            7ffd1a9f4000-7ffd1a9f8000 r--p 00000000 00:00 0                          [vvar]
            7ffd1a9f8000-7ffd1a9fa000 r-xp 00000000 00:00 0                          [vdso]
            ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
            7f3b5d000000-7f3b5d100000 rw-s 00000000 00:05 4242                       /dev/shm/ring buffer
            """
        let mappings = MemoryMapping.parse(maps)
        XCTAssertEqual(mappings.count, 9)

        XCTAssertEqual(mappings[0], MemoryMapping(
            start: 0x55d4_a2a0_0000, end: 0x55d4_a2a0_2000, readable: true, writable: false, executable: false,
            shared: false, offset: 0, device: "fd:01", inode: 1_835_042, path: "/usr/bin/python3.11"
        ))
        XCTAssertEqual(mappings[1].offset, 0x106000)
        XCTAssertTrue(mappings[1].executable)
        XCTAssertEqual(mappings[1].path, "/root/.pyenv/versions/3.12.1/lib/libpython3.12.so.1.0")
        XCTAssertEqual(mappings[2].path, "[heap]")
        XCTAssertEqual(mappings[3].path, "", "anonymous, with the trailing space the kernel prints")
        XCTAssertEqual(mappings[4].path, "", "anonymous, without trailing space")
        XCTAssertEqual(mappings[4].inode, 0)
        XCTAssertEqual(mappings[6].path, "[vdso]")
        XCTAssertEqual(mappings[7].start, 0xffff_ffff_ff60_0000)
        XCTAssertFalse(mappings[7].readable)
        XCTAssertTrue(mappings[7].executable)
        XCTAssertTrue(mappings[8].shared)
        XCTAssertEqual(mappings[8].device, "00:05")
        XCTAssertEqual(mappings[8].path, "/dev/shm/ring buffer")
    }

    func testKeepsSpacesAndDeletedMarkerInPaths() {
        let mappings = MemoryMapping.parse("""
            7f0000000000-7f0000001000 r-xp 00001000 103:02 77  /opt/my app/lib python.so
            7f0000001000-7f0000002000 r--p 00002000 fd:01 78                         /tmp/libpython3.12.so (deleted)
            """)
        XCTAssertEqual(mappings.map(\.path), ["/opt/my app/lib python.so", "/tmp/libpython3.12.so (deleted)"])
        XCTAssertEqual(mappings[0].device, "103:02")
    }

    func testSkipsMalformedLines() {
        let maps = """
            garbage
            7f0000000000 r-xp 00000000 fd:01 1 /no/end/address
            7f000000000g-7f0000001000 r-xp 00000000 fd:01 1 /bad/hex
            7f0000002000-7f0000001000 r-xp 00000000 fd:01 1 /start/after/end
            7f0000000000-7f0000001000 r-x 00000000 fd:01 1 /three/permission/letters
            7f0000000000-7f0000001000 rwzp 00000000 fd:01 1 /unknown/permission
            7f0000000000-7f0000001000 r-xp zz fd:01 1 /bad/offset
            7f0000000000-7f0000001000 r-xp 00000000 fd01 1 /bad/device
            7f0000000000-7f0000001000 r-xp 00000000 fd:01 -1 /bad/inode
            7f0000000000-7f0000001000 r-xp 00000000 fd:01

            7f0000000000-7f0000001000 r-xp 00000000 fd:01 9 /the/good/one
            """
        XCTAssertEqual(MemoryMapping.parse(maps).map(\.path), ["/the/good/one"])
        XCTAssertEqual(MemoryMapping.parse(""), [])
    }

    func testReadsOwnMaps() throws {
        let mappings = try MemoryMapping.read(pid: getpid())
        XCTAssertFalse(mappings.isEmpty)
        let ownExecutable = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        let executableMappings = mappings.filter { $0.path == ownExecutable }
        XCTAssertTrue(executableMappings.contains { $0.executable })
        XCTAssertTrue(mappings.contains { $0.path == "[stack]" })
    }

    func testReadingAnExitedProcessSaysSo() {
        XCTAssertThrowsError(try MemoryMapping.read(pid: Int32.max)) { error in
            XCTAssertTrue(error is MemoryMapsError)
            XCTAssertTrue("\(error)".contains("process 2147483647 does not exist"), "\(error)")
        }
    }
}
