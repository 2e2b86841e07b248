import CSystem
import FoundationEssentials
import Glibc
import Native

/// A cgroup v2 directory a recording is restricted to (`--cgroup`, `--container`), held open: the BPF program is
/// given its descriptor, and the directory cannot be confused with another one created later at the same path.
public final class CgroupDirectory: Sendable, Equatable, CustomStringConvertible {
    /// Where it is on this host, e.g. `/sys/fs/cgroup/system.slice/docker-ab….scope`.
    public let hostPath: String
    /// Its path in the hierarchy, as `/proc/PID/cgroup` prints it: `/system.slice/docker-ab….scope`.
    public let hierarchyPath: String
    /// An `O_RDONLY | O_DIRECTORY` descriptor of it, closed on deinit.
    public let fd: Int32

    init(hostPath: String, hierarchyPath: String, fd: Int32) {
        self.hostPath = hostPath
        self.hierarchyPath = hierarchyPath
        self.fd = fd
    }

    deinit { close(fd) }

    public static func == (lhs: CgroupDirectory, rhs: CgroupDirectory) -> Bool { lhs === rhs }

    public var description: String { hostPath }
}

/// A `--cgroup` or `--container` that names no usable cgroup; worded for the user, with the fix.
public struct ContainerError: Error, CustomStringConvertible {
    public let description: String

    init(_ description: String) {
        self.description = description
    }
}

/// Containers as the kernel knows them: cgroup v2 directories named by the engine that made them.
public enum Containers {
    /// `statfs.f_type` of cgroup2 (include/uapi/linux/magic.h).
    static let cgroup2SuperMagic = 0x6367_7270

    /// A cgroup line is a path; one longer than this is not something an engine made.
    static let maximumCgroupFileSize = 64 << 10
    /// Bounds of the walk that looks for a `--container` ID: a host has hundreds of cgroups, rarely thousands.
    static let maximumWalkDepth = 16
    static let maximumWalkDirectories = 100_000

    // MARK: - The hierarchy

    /// Where the cgroup v2 hierarchy is mounted on this host: `/sys/fs/cgroup` on a unified system,
    /// `/sys/fs/cgroup/unified` on a hybrid one (v1 controllers beside it). Read from `/proc/self/mountinfo`.
    public static func cgroupV2Mount() throws -> String {
        let text: String
        do {
            text = try KernelFile.text("/proc/self/mountinfo", maximumSize: 16 << 20)
        } catch {
            throw ContainerError("cannot read /proc/self/mountinfo to find the cgroup v2 hierarchy: \(error)")
        }
        guard let mount = cgroupV2Mount(mountInfo: text) else {
            throw ContainerError("no cgroup v2 hierarchy is mounted (none in /proc/self/mountinfo): mount one with "
                + "`mount -t cgroup2 none /sys/fs/cgroup/unified`, or give --pid instead")
        }
        return mount
    }

    /// The mount point of the first `cgroup2` file system in mountinfo text (proc(5)), preferring one that shows the
    /// hierarchy's root; nil when there is none.
    static func cgroupV2Mount(mountInfo: String) -> String? {
        var found: String?
        for line in mountInfo.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: false)
            // id parent major:minor root mount-point options [optional fields...] - type source super-options
            guard fields.count >= 7, let separator = fields.firstIndex(of: "-"), separator >= 6,
                  separator + 1 < fields.count, fields[separator + 1] == "cgroup2"
            else { continue }
            let mountPoint = unescapeMountField(fields[4])
            if fields[3] == "/" { return mountPoint }
            if found == nil { found = mountPoint }
        }
        return found
    }

    /// mountinfo writes space, tab, newline and backslash in paths as `\ooo` octal escapes.
    private static func unescapeMountField(_ field: Substring) -> String {
        let utf8 = Array(field.utf8)
        func isOctalDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "7") }
        var bytes: [UInt8] = []
        var index = 0
        while index < utf8.count {
            if utf8[index] == UInt8(ascii: "\\"), index + 3 < utf8.count, utf8[(index + 1)...(index + 3)].allSatisfy(isOctalDigit),
               let value = UInt8(String(decoding: utf8[(index + 1)...(index + 3)], as: UTF8.self), radix: 8) {
                bytes.append(value)
                index += 4
            } else {
                bytes.append(utf8[index])
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    // MARK: - A process's cgroup and container

    /// Process `pid`'s cgroup v2 path (the `0::/path` line of `/proc/PID/cgroup`), e.g. `/system.slice/x.scope`; nil
    /// when the process is gone or the file has no such line.
    public static func cgroupPath(pid: Int32) -> String? {
        guard let text = try? KernelFile.text("/proc/\(pid)/cgroup", maximumSize: maximumCgroupFileSize) else { return nil }
        return cgroupLines(text).first { $0.hierarchy == "0" && $0.controllers.isEmpty }?.path
    }

    /// The lines of a `/proc/PID/cgroup` file: `hierarchy-ID:controllers:path` (cgroups(7)).
    static func cgroupLines(_ text: String) -> [(hierarchy: Substring, controllers: Substring, path: String)] {
        text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3, fields[2].hasPrefix("/") else { return nil }
            return (fields[0], fields[1], String(fields[2]))
        }
    }

    /// The ID of the container process `pid` runs in, from its cgroup v2 path, else from a v1 hierarchy's (a hybrid
    /// host where the engine uses v1); nil on the host or when the process is gone.
    public static func containerID(pid: Int32) -> String? {
        guard let text = try? KernelFile.text("/proc/\(pid)/cgroup", maximumSize: maximumCgroupFileSize) else { return nil }
        let lines = cgroupLines(text)
        let isUnified = { (line: (hierarchy: Substring, controllers: Substring, path: String)) in
            line.hierarchy == "0" && line.controllers.isEmpty
        }
        for line in lines.filter(isUnified) + lines.filter({ !isUnified($0) }) {
            if let id = containerID(inCgroupPath: line.path) { return id }
        }
        return nil
    }

    /// The container ID a cgroup path names, by the naming of the engines; the innermost one when containers nest
    /// (Docker in Docker); nil for a path no engine made.
    ///
    /// - Docker: `/docker/<id>` (cgroupfs driver), `/system.slice/docker-<id>.scope` (systemd driver);
    /// - containerd under Kubernetes: `/kubepods/<qos>/pod<uid>/<id>`, `/kubepods.slice/…/cri-containerd-<id>.scope`;
    /// - CRI-O: `/kubepods.slice/…/crio-<id>.scope` (its monitor `crio-conmon-<id>.scope` is not the container);
    /// - Podman: `/machine.slice/libpod-<id>.scope`, `/libpod_parent/libpod-<id>` (its monitor `libpod-conmon-<id>`
    ///   is not the container); a container's own sub-cgroups (`libpod-<id>.scope/container`) are still its.
    ///
    /// IDs are 64 lowercase hexadecimal digits.
    public static func containerID(inCgroupPath path: String) -> String? {
        var found: String?
        var underEngine = false  // a bare ID names a container only below an engine's own directory
        for component in path.split(separator: "/") {
            if let id = scopeID(component) {
                found = id
            } else if underEngine, isContainerID(component) {
                found = String(component)
            }
            if component == "docker" || component.hasPrefix("kubepods") || component == "libpod_parent" {
                underEngine = true
            }
        }
        return found
    }

    /// `docker-<id>.scope`, `cri-containerd-<id>.scope`, `crio-<id>.scope`, `libpod-<id>.scope` or `libpod-<id>`: the
    /// ID. The monitors' `crio-conmon-<id>` and `libpod-conmon-<id>` have no ID where one is expected, so do not match.
    private static func scopeID(_ component: Substring) -> String? {
        let name = component.hasSuffix(".scope") ? component.dropLast(6) : component
        for prefix in ["docker-", "cri-containerd-", "crio-", "libpod-"] where name.hasPrefix(prefix) {
            let id = name.dropFirst(prefix.count)
            return isContainerID(id) ? String(id) : nil
        }
        return nil
    }

    private static func isContainerID(_ text: Substring) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy { isLowercaseHexDigit($0) }
    }

    private static func isLowercaseHexDigit(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "f"))
    }

    /// Whether process `pid` is in the cgroup `directory` or one below it; false when it is gone.
    public static func isProcess(_ pid: Int32, under directory: CgroupDirectory) -> Bool {
        guard let path = cgroupPath(pid: pid) else { return false }
        return isPath(path, under: directory.hierarchyPath)
    }

    /// Whether cgroup path `path` is `ancestor` or below it: a prefix ending at a component boundary
    /// (`/a/b` is under `/a`, `/ab` is not).
    static func isPath(_ path: String, under ancestor: String) -> Bool {
        let base = ancestor.hasSuffix("/") ? String(ancestor.dropLast()) : ancestor
        return base.isEmpty || path == base || path.hasPrefix(base + "/")
    }

    // MARK: - --cgroup and --container

    /// The cgroup v2 directory `path` names: an absolute path under the v2 mount
    /// (`/sys/fs/cgroup/unified/system.slice/x.scope`), or its path in the hierarchy as `/proc/PID/cgroup` prints it
    /// (`/system.slice/x.scope`).
    public static func cgroup(_ path: String, mount: String? = nil) throws -> CgroupDirectory {
        let mount = try mount ?? cgroupV2Mount()
        let mountPrefix = mount.hasSuffix("/") ? String(mount.dropLast()) : mount
        guard !path.isEmpty, path.utf8.count <= Int(PATH_MAX) else {
            throw ContainerError("--cgroup needs a cgroup v2 directory, e.g. /system.slice/name.scope as /proc/PID/cgroup shows it")
        }
        let components = path.split(separator: "/")
        guard !components.contains(where: { $0 == ".." || $0 == "." }) else {
            throw ContainerError("--cgroup \(path): give the path without '.' or '..' components")
        }
        let relative: String
        if path == mountPrefix || path.hasPrefix(mountPrefix + "/") {
            relative = String(path.dropFirst(mountPrefix.count))
        } else {
            relative = "/" + components.joined(separator: "/")
        }
        let hierarchyPath = relative.isEmpty ? "/" : "/" + relative.split(separator: "/").joined(separator: "/")
        let hostPath = hierarchyPath == "/" ? mountPrefix : mountPrefix + hierarchyPath
        let fd = open(hostPath, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else {
            let reason = String(cString: strerror(errno))
            var isDirectory = false
            if path.hasPrefix("/"), FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory {
                throw ContainerError("--cgroup \(path) is not in the cgroup v2 hierarchy (mounted at \(mountPrefix)), the only "
                    + "one the kernel can restrict sampling to: give the path of /proc/PID/cgroup's 0:: line")
            }
            throw ContainerError("--cgroup \(path): cannot open \(hostPath) (\(reason)): give a directory of the cgroup v2 "
                + "hierarchy mounted at \(mountPrefix), as /proc/PID/cgroup's 0:: line shows it")
        }
        guard csystem_file_system_type(fd) == cgroup2SuperMagic else {
            close(fd)
            throw ContainerError("--cgroup \(path): \(hostPath) is not a cgroup v2 directory: give one of the hierarchy "
                + "mounted at \(mountPrefix), as /proc/PID/cgroup's 0:: line shows it")
        }
        return CgroupDirectory(hostPath: hostPath, hierarchyPath: hierarchyPath, fd: fd)
    }

    /// The cgroup of the container whose ID starts with `idPrefix` (at least 4 hexadecimal digits; `docker ps`
    /// prints 12), found by walking the cgroup v2 hierarchy. No match, or several containers, is an error that says
    /// what to give instead.
    public static func container(_ idPrefix: String, mount: String? = nil) throws -> CgroupDirectory {
        let prefix = idPrefix.lowercased()
        guard (4...64).contains(prefix.utf8.count), prefix.utf8.allSatisfy(isLowercaseHexDigit) else {
            throw ContainerError("--container \(idPrefix): give the container's ID, 4 to 64 hexadecimal digits "
                + "(the 12 `docker ps`, `podman ps` or `crictl ps` print)")
        }
        let mount = try mount ?? cgroupV2Mount()
        let mountPrefix = mount.hasSuffix("/") ? String(mount.dropLast()) : mount
        let matches = containerDirectories(under: mountPrefix).filter { $0.id.hasPrefix(prefix) }
        // A container's sub-cgroups carry its ID too: its own directory is the shallowest.
        var byID: [String: String] = [:]
        for match in matches where byID[match.id].map({ match.path.utf8.count < $0.utf8.count }) ?? true {
            byID[match.id] = match.path
        }
        guard !byID.isEmpty else {
            throw ContainerError("--container \(idPrefix): no container with an ID starting so in the cgroup v2 hierarchy at "
                + "\(mountPrefix): check `docker ps` (or podman/crictl), or give its cgroup with --cgroup PATH")
        }
        guard byID.count == 1, let (_, hierarchyPath) = byID.first else {
            let candidates = byID.sorted { $0.key < $1.key }.prefix(8).map { "\($0.key.prefix(16))… (\($0.value))" }
            throw ContainerError("--container \(idPrefix) matches \(byID.count) containers: give more of its digits; "
                + "candidates: \(candidates.joined(separator: ", "))")
        }
        return try cgroup(hierarchyPath, mount: mountPrefix)
    }

    /// Every directory of the hierarchy mounted at `mount` whose path names a container: (ID, hierarchy path).
    /// Breadth first, at most `maximumWalkDepth` deep and `maximumWalkDirectories` directories.
    static func containerDirectories(under mount: String) -> [(id: String, path: String)] {
        var found: [(id: String, path: String)] = []
        var queue: [(path: String, depth: Int)] = [("", 0)]
        var visited = 0
        var next = 0
        while next < queue.count, visited < maximumWalkDirectories {
            let (relative, depth) = queue[next]
            next += 1
            visited += 1
            if let id = containerID(inCgroupPath: relative) { found.append((id, relative)) }
            guard depth < maximumWalkDepth, let directory = opendir(mount + relative) else { continue }
            defer { closedir(directory) }
            while let entry = readdir(directory), queue.count < maximumWalkDirectories {
                guard entry.pointee.d_type == UInt8(DT_DIR) else { continue }
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                }
                guard name != ".", name != ".." else { continue }
                queue.append((relative + "/" + name, depth + 1))
            }
        }
        return found
    }
}
