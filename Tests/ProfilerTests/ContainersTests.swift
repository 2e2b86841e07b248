import Foundation
import XCTest

@testable import Profiler

/// Container IDs from cgroup paths as the engines write them, the cgroup v2 mount from mountinfo, and `--cgroup`
/// paths given either way.
final class ContainersTests: XCTestCase {
    private let id = "9ec39b91f3d70e1beff50a308f77067065ea6be0d91a3378375056cd4422cf3d"
    private let inner = "4f797c539e6c745de61a93ca3ff892358ecbcaccd8414d5db545c38428142970"

    func testDockerCgroupfsAndSystemdDrivers() {
        XCTAssertEqual(Containers.containerID(inCgroupPath: "/docker/\(id)"), id)
        XCTAssertEqual(Containers.containerID(inCgroupPath: "/system.slice/docker-\(id).scope"), id)
    }

    func testContainerdUnderKubernetesWithEitherCgroupDriver() {
        XCTAssertEqual(Containers.containerID(inCgroupPath: "/kubepods/burstable/pod5c0e7a3c-8d9e-4b4e-9f3a-0a1b2c3d4e5f/\(id)"), id)
        XCTAssertEqual(Containers.containerID(inCgroupPath: "/kubepods/besteffort/pod5c0e7a3c-8d9e-4b4e-9f3a-0a1b2c3d4e5f/\(id)"), id)
        XCTAssertEqual(Containers.containerID(inCgroupPath:
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod5c0e7a3c_8d9e_4b4e_9f3a_0a1b2c3d4e5f.slice/cri-containerd-\(id).scope"), id)
        // The pod's own cgroup is no container.
        XCTAssertNil(Containers.containerID(inCgroupPath:
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod5c0e7a3c_8d9e_4b4e_9f3a_0a1b2c3d4e5f.slice"))
    }

    func testCRIOContainerButNotItsMonitor() {
        let pod = "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0f1e2d3c_4b5a_6978_8796_a5b4c3d2e1f0.slice"
        XCTAssertEqual(Containers.containerID(inCgroupPath: "\(pod)/crio-\(id).scope"), id)
        XCTAssertNil(Containers.containerID(inCgroupPath: "\(pod)/crio-conmon-\(id).scope"))
    }

    func testPodmanContainerButNotItsMonitor() {
        XCTAssertEqual(Containers.containerID(inCgroupPath: "/machine.slice/libpod-\(id).scope"), id)
        XCTAssertEqual(Containers.containerID(inCgroupPath:
            "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-\(id).scope/container"), id)
        XCTAssertEqual(Containers.containerID(inCgroupPath: "/libpod_parent/libpod-\(id)"), id)
        XCTAssertNil(Containers.containerID(inCgroupPath: "/machine.slice/libpod-conmon-\(id).scope"))
        XCTAssertNil(Containers.containerID(inCgroupPath:
            "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-conmon-\(id).scope"))
    }

    func testInnermostContainerWins() {
        XCTAssertEqual(Containers.containerID(inCgroupPath: "/docker/\(id)/docker/\(inner)"), inner)
        XCTAssertEqual(Containers.containerID(inCgroupPath: "/system.slice/docker-\(id).scope/docker/\(inner)"), inner)
    }

    func testHostPathsAndLookalikesHaveNoContainer() {
        XCTAssertNil(Containers.containerID(inCgroupPath: "/"))
        XCTAssertNil(Containers.containerID(inCgroupPath: "/user.slice/user-1000.slice/session-3.scope"))
        XCTAssertNil(Containers.containerID(inCgroupPath: "/system.slice/docker.service"))
        XCTAssertNil(Containers.containerID(inCgroupPath: "/system.slice/containerd.service"))
        // A bare ID outside an engine's directory, a short or upper-case one, are not containers.
        XCTAssertNil(Containers.containerID(inCgroupPath: "/system.slice/\(id)"))
        XCTAssertNil(Containers.containerID(inCgroupPath: "/system.slice/docker-\(id.prefix(12)).scope"))
        XCTAssertNil(Containers.containerID(inCgroupPath: "/system.slice/docker-\(id.uppercased()).scope"))
    }

    func testCgroupFileLinesAreSplitAtTheFirstTwoColons() {
        let text = """
            12:memory:/docker/\(id)
            1:name=systemd:/docker/\(id)
            0::/system.slice/docker-\(id).scope
            garbage
            """
        let lines = Containers.cgroupLines(text)
        XCTAssertEqual(lines.count, 3)
        XCTAssertEqual(lines.last?.path, "/system.slice/docker-\(id).scope")
        XCTAssertEqual(Containers.cgroupLines("0::/a:b").first?.path, "/a:b")
    }

    func testOwnProcessHasACgroupV2Path() throws {
        let path = try XCTUnwrap(Containers.cgroupPath(pid: getpid()))
        XCTAssertTrue(path.hasPrefix("/"), path)
        XCTAssertNil(Containers.cgroupPath(pid: Int32.max))
        XCTAssertNil(Containers.containerID(pid: Int32.max))
    }

    func testCgroupV2MountOfHybridAndUnifiedHosts() {
        let hybrid = """
            31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
            32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
            41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
            """
        XCTAssertEqual(Containers.cgroupV2Mount(mountInfo: hybrid), "/sys/fs/cgroup/unified")
        let unified = "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot"
        XCTAssertEqual(Containers.cgroupV2Mount(mountInfo: unified), "/sys/fs/cgroup")
        // A bind mount of a sub-cgroup is taken only when the root is mounted nowhere; escapes are decoded.
        let bound = """
            50 24 0:30 /system.slice /mnt/sub rw - cgroup2 cgroup2 rw
            51 24 0:30 / /mnt/my\\040cgroups rw - cgroup2 cgroup2 rw
            """
        XCTAssertEqual(Containers.cgroupV2Mount(mountInfo: bound), "/mnt/my cgroups")
        XCTAssertNil(Containers.cgroupV2Mount(mountInfo: hybrid.split(separator: "\n").dropLast().joined(separator: "\n")))
    }

    func testPathUnderCgroupOnlyAtAComponentBoundary() {
        XCTAssertTrue(Containers.isPath("/a/b", under: "/a"))
        XCTAssertTrue(Containers.isPath("/a", under: "/a"))
        XCTAssertTrue(Containers.isPath("/a/b", under: "/"))
        XCTAssertFalse(Containers.isPath("/ab", under: "/a"))
        XCTAssertFalse(Containers.isPath("/", under: "/a"))
    }

    /// The machine's own cgroup v2 hierarchy: its root, given both ways, and what is not a v2 directory.
    func testCgroupIsAcceptedAbsoluteOrAsTheHierarchyPrintsIt() throws {
        let mount = try Containers.cgroupV2Mount()
        let own = try XCTUnwrap(Containers.cgroupPath(pid: getpid()))
        let byHierarchyPath = try Containers.cgroup(own)
        XCTAssertEqual(byHierarchyPath.hierarchyPath, own)
        let absolute = try Containers.cgroup(byHierarchyPath.hostPath)
        XCTAssertEqual(absolute.hierarchyPath, own)
        XCTAssertEqual(try Containers.cgroup(mount).hierarchyPath, "/")
        XCTAssertTrue(Containers.isProcess(getpid(), under: absolute))

        XCTAssertThrowsError(try Containers.cgroup("/no-such-cgroup-\(getpid())")) { error in
            XCTAssertTrue("\(error)".contains("cannot open"), "\(error)")
        }
        XCTAssertThrowsError(try Containers.cgroup("/tmp", mount: "/")) { error in
            XCTAssertTrue("\(error)".contains("is not a cgroup v2 directory"), "\(error)")
        }
        XCTAssertThrowsError(try Containers.cgroup("/a/../b"))
    }

    func testContainerPrefixMustBeHex() {
        for bad in ["abc", "xyz123", "", String(repeating: "a", count: 65)] {
            XCTAssertThrowsError(try Containers.container(bad, mount: "/nonexistent")) { error in
                XCTAssertTrue("\(error)".contains("hexadecimal"), "\(error)")
            }
        }
        XCTAssertThrowsError(try Containers.container("abcd1234", mount: "/nonexistent")) { error in
            XCTAssertTrue("\(error)".contains("no container"), "\(error)")
        }
    }

    /// A fake hierarchy in a temporary directory (the walk only reads directory names): one match, an ambiguous
    /// prefix, and a container's sub-cgroup that must not count as a second container.
    func testContainerWalkFindsTheContainersOwnDirectory() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("containers-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let first = "abcd1" + String(repeating: "1", count: 59)
        let second = "abcd2" + String(repeating: "2", count: 59)
        for path in ["/system.slice/docker-\(first).scope", "/machine.slice/libpod-\(second).scope/container",
                     "/machine.slice/libpod-conmon-\(second).scope"] {
            try FileManager.default.createDirectory(atPath: root + path, withIntermediateDirectories: true)
        }
        let found = Containers.containerDirectories(under: root)
        XCTAssertEqual(Set(found.map(\.path)), ["/system.slice/docker-\(first).scope", "/machine.slice/libpod-\(second).scope",
                                                "/machine.slice/libpod-\(second).scope/container"])
        XCTAssertThrowsError(try Containers.container("abcd", mount: root)) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains("matches 2 containers") && message.contains("/system.slice/docker-\(first).scope")
                          && message.contains("/machine.slice/libpod-\(second).scope)"), message)
        }
        // One container (its sub-cgroup is not a second one): found, then refused as the test's directory is no cgroup.
        for prefix in ["abcd1", "ABCD2"] {
            XCTAssertThrowsError(try Containers.container(prefix, mount: root)) { error in
                XCTAssertTrue("\(error)".contains("is not a cgroup v2 directory"), "\(error)")
            }
        }
        XCTAssertThrowsError(try Containers.container("abcd3", mount: root)) { error in
            XCTAssertTrue("\(error)".contains("no container"), "\(error)")
        }
    }
}

