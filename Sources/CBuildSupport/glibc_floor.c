// Keeps the glibc the binary needs at 2.34 (RHEL 9, Amazon Linux 2023, Ubuntu 22.04 and later), where the static
// archives it links, built against Debian 12's glibc 2.36, would raise it to 2.36: four symbols are newer than 2.34,
//   hypot, hypotf      GLIBC_2.35  (Foundation's CGFloat, the Glibc module): glibc 2.35 added faster versions and
//                                   kept the old ones; the old ones are bound here;
//   _dl_find_object   GLIBC_2.35  (libgcc_eh's unwinder, for C++ exceptions): answered from dl_iterate_phdr;
//   arc4random        GLIBC_2.36  (libstdc++'s std::random_device): answered from getrandom(2).
// Definitions in the executable win over the shared libraries', so the references of the static archives bind
// here. Scripts/package checks the floor (the highest GLIBC_ version the binary needs) and names the wheel after it.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>

extern double pybpfprof_hypot_2_2_5(double, double);
extern float pybpfprof_hypotf_2_2_5(float, float);
__asm__(".symver pybpfprof_hypot_2_2_5, hypot@GLIBC_2.2.5");
__asm__(".symver pybpfprof_hypotf_2_2_5, hypotf@GLIBC_2.2.5");

double hypot(double x, double y) { return pybpfprof_hypot_2_2_5(x, y); }
float hypotf(float x, float y) { return pybpfprof_hypotf_2_2_5(x, y); }

uint32_t arc4random(void) {
    uint32_t value;
    // getrandom never returns short for 4 bytes once the pool is initialised; EINTR only before.
    while (getrandom(&value, sizeof value, 0) != (ssize_t)sizeof value) {
    }
    return value;
}

struct find_object_search {
    uintptr_t address;
    struct dl_find_object *result;
    int found;
};

static int find_object_in(struct dl_phdr_info *info, size_t size, void *context) {
    (void)size;
    struct find_object_search *search = context;
    uintptr_t start = UINTPTR_MAX, end = 0, eh_frame = 0;
    int contains = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *header = &info->dlpi_phdr[i];
        uintptr_t segment = info->dlpi_addr + header->p_vaddr;
        if (header->p_type == PT_LOAD) {
            if (segment < start) start = segment;
            if (segment + header->p_memsz > end) end = segment + header->p_memsz;
            if (search->address >= segment && search->address < segment + header->p_memsz) contains = 1;
        } else if (header->p_type == PT_GNU_EH_FRAME) {
            eh_frame = segment;
        }
    }
    if (!contains) return 0;
    memset(search->result, 0, sizeof *search->result);
    search->result->dlfo_map_start = (void *)start;
    search->result->dlfo_map_end = (void *)end;
    search->result->dlfo_eh_frame = (void *)eh_frame;
    search->found = 1;
    return 1;
}

int _dl_find_object(void *address, struct dl_find_object *result) {
    struct find_object_search search = {(uintptr_t)address, result, 0};
    dl_iterate_phdr(find_object_in, &search);
    if (!search.found) return -1;
    // The unwinder reads the object's load bias from its link map; asked outside dl_iterate_phdr, which holds the
    // loader's lock.
    Dl_info symbol;
    struct link_map *map = NULL;
    if (dladdr1(address, &symbol, (void **)&map, RTLD_DL_LINKMAP) == 0 || map == NULL) return -1;
    result->dlfo_link_map = map;
    return 0;
}
