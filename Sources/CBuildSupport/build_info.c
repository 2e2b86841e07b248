#include "build_support.h"

#ifndef PYBPFPROF_COMMIT
#define PYBPFPROF_COMMIT ""
#endif

const char *pybpfprof_build_commit(void) { return PYBPFPROF_COMMIT; }
