// elfutils' libdebuginfod, opened with dlopen: the release binary links only glibc, and a host without the library
// still profiles (names from debuginfod are then unavailable, and the profiler says why).
#define _GNU_SOURCE
#include "CSystem.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct debuginfod_client debuginfod_client;
typedef int (*progress_function)(debuginfod_client *, long, long);

static struct {
    debuginfod_client *(*begin)(void);
    void (*end)(debuginfod_client *);
    int (*find_debuginfo)(debuginfod_client *, const unsigned char *, int, char **);
    void (*set_progressfn)(debuginfod_client *, progress_function);
    void (*set_user_data)(debuginfod_client *, void *);
    void *(*get_user_data)(debuginfod_client *);
} library;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static int loaded;
static char load_error[256];

static void load(void) {
    void *handle = dlopen("libdebuginfod.so.1", RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        const char *error = dlerror();
        snprintf(load_error, sizeof load_error, "%s", error != NULL ? error : "libdebuginfod.so.1 not found");
        return;
    }
#define BIND(field, symbol)                                                                        \
    *(void **)&library.field = dlsym(handle, symbol);                                              \
    if (library.field == NULL) {                                                                   \
        snprintf(load_error, sizeof load_error, "libdebuginfod.so.1 has no %s (elfutils 0.179 or later is needed)", symbol); \
        return;                                                                                    \
    }
    BIND(begin, "debuginfod_begin")
    BIND(end, "debuginfod_end")
    BIND(find_debuginfo, "debuginfod_find_debuginfo")
    BIND(set_progressfn, "debuginfod_set_progressfn")
    BIND(set_user_data, "debuginfod_set_user_data")
    BIND(get_user_data, "debuginfod_get_user_data")
#undef BIND
    loaded = 1;
}

int csystem_debuginfod_load(char *why, size_t why_size) {
    pthread_once(&load_once, load);
    if (!loaded && why != NULL && why_size > 0) snprintf(why, why_size, "%s", load_error);
    return loaded;
}

struct query {
    uint64_t deadline_ns;
    const volatile int *cancel;
    int timed_out;
    int cancelled;
};

static uint64_t monotonic_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

// Called by libdebuginfod while it waits on its transfers; non-zero ends the query.
static int progress(debuginfod_client *client, long done, long total) {
    (void)done;
    (void)total;
    struct query *query = library.get_user_data(client);
    if (query == NULL) return 0;
    if (query->cancel != NULL && *query->cancel) {
        query->cancelled = 1;
        return 1;
    }
    if (monotonic_ns() >= query->deadline_ns) {
        query->timed_out = 1;
        return 1;
    }
    return 0;
}

int csystem_debuginfod_find_debuginfo(const unsigned char *build_id, int build_id_size, uint64_t deadline_ns,
                                      const volatile int *cancel, char **path) {
    *path = NULL;
    if (!csystem_debuginfod_load(NULL, 0)) return -ENOSYS;
    if (build_id == NULL || build_id_size <= 0) return -EINVAL;
    debuginfod_client *client = library.begin();
    if (client == NULL) return -ENOMEM;
    struct query query = {.deadline_ns = deadline_ns, .cancel = cancel};
    library.set_user_data(client, &query);
    library.set_progressfn(client, progress);
    int result = library.find_debuginfo(client, build_id, build_id_size, path);
    library.end(client);
    if (result < 0) {
        if (*path != NULL) {
            free(*path);
            *path = NULL;
        }
        if (query.timed_out) return -ETIME;
        if (query.cancelled) return -ECANCELED;
    }
    return result;
}
