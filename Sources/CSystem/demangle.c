#include "CSystem.h"

#include <stddef.h>
#include <stdlib.h>

/* Declared by <cxxabi.h>, which is C++ only; the symbol has C linkage in libstdc++. */
char *__cxa_demangle(const char *mangled_name, char *output_buffer, size_t *length, int *status);

char *csystem_demangle_cxx(const char *mangled)
{
    int status = 0;
    char *name = __cxa_demangle(mangled, NULL, NULL, &status);
    if (status != 0) {
        free(name);
        return NULL;
    }
    return name;
}
