import CSystem
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A path that could not be opened inside a root directory, with the errno of the failing call.
public struct OpenInRootError: Error, CustomStringConvertible {
    /// As the process whose root it is sees it.
    public let path: String
    public let root: String
    public let errorNumber: Int32

    public var description: String {
        "open \(path) inside \(root): \(String(cString: strerror(errorNumber)))"
    }
}

/// Opens `path` as the process whose root directory is `rootFD` would, but never outside that root: the kernel
/// resolves it with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, so `..` stops at the root, an absolute
/// symbolic link met on the way starts again at the root, and no /proc magic link is followed.
///
/// Every file of a container is opened so: with `/proc/PID/root` + path, the kernel resolves an absolute link inside
/// the container against *our* root, and a hostile container could make us read a host file. Resolving links by
/// hand instead would race with the container changing them. Returns a descriptor the caller closes.
public func openInRoot(_ path: String, rootFD: Int32, root: String, flags: Int32 = O_RDONLY | O_CLOEXEC | O_NONBLOCK) throws -> Int32 {
    let result = csystem_open_in_root(rootFD, path, flags)
    guard result >= 0 else { throw OpenInRootError(path: path, root: root, errorNumber: -result) }
    return result
}

/// `openInRoot` with the root given by path, e.g. `/proc/PID/root` (the one magic link followed: from our side, to
/// reach the process's root) or `/` for our own.
public func openInRoot(_ path: String, root: String, flags: Int32 = O_RDONLY | O_CLOEXEC | O_NONBLOCK) throws -> Int32 {
    let rootFD = csystem_open_directory_path(root)
    guard rootFD >= 0 else { throw OpenInRootError(path: "/", root: root, errorNumber: -rootFD) }
    defer { close(rootFD) }
    return try openInRoot(path, rootFD: rootFD, root: root, flags: flags)
}

/// How a path inside a root is shown: `/proc/123/root/usr/lib/x.so`, or the path itself for our own root.
public func pathInRoot(_ path: String, root: String) -> String {
    if !root.isEmpty && root.allSatisfy({ $0 == "/" }) { return path }
    let base = root.hasSuffix("/") ? String(root.dropLast()) : root
    return path.hasPrefix("/") ? base + path : base + "/" + path
}
