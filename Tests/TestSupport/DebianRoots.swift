import Foundation

/// Where the Debian roots Scripts/setup --tests makes with debootstrap are: PYBPFPROF_ROOTS_DIR, default
/// /var/cache/pybpfprof-roots, one directory per suite (`trixie`, `sid`). Their interpreters run there with chroot, since
/// their libc is newer than the host's.
public enum DebianRoots {
    public static let chroot = "/usr/sbin/chroot"
    public static let defaultDirectory = "/var/cache/pybpfprof-roots"

    /// The directory holding the roots.
    public static var directory: String {
        var directory = ProcessInfo.processInfo.environment["PYBPFPROF_ROOTS_DIR"] ?? ""
        if directory.isEmpty { directory = defaultDirectory }
        while directory.count > 1 && directory.hasSuffix("/") { directory.removeLast() }
        return directory
    }

    /// The root of `suite`, whether it exists or not.
    public static func path(_ suite: String) -> String {
        directory + "/" + suite
    }
}
