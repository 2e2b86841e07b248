#ifndef PYBPFPROF_BUILD_SUPPORT_H
#define PYBPFPROF_BUILD_SUPPORT_H

/// The git commit the binary was built from (`abc1234`, `abc1234-dirty`), or "" when the build was not told
/// (PYBPFPROF_COMMIT in the environment of `swift build`; Scripts/package and Scripts/demo set it).
const char *pybpfprof_build_commit(void);

#endif
